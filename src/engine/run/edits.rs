//! The apply stage: the answer parsed, its edits written into the worktree and its commands
//! run, with every problem kept for the next prompt.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::agent::AgentReply;
use crate::apply;
use crate::response::{self, Parsed, ProblemKind};
use crate::store::Run;

use super::super::metrics::EditCounts;
use super::super::worktree::Worktree;
use super::iteration::Pending;
use super::{EngineError, Loop, Stage, ms};

/// What the apply stage did.
pub(super) struct Answer {
    /// The parsed answer (edits and commands cleared when the agent edits the worktree itself).
    pub(super) parsed: Parsed,
    /// Problems to feed back: malformed blocks, failed or refused edits, failed commands.
    pub(super) problems: Vec<String>,
    /// Paths of the edits written.
    pub(super) written: Vec<String>,
    /// Edits applied, failed and refused.
    pub(super) edits: EditCounts,
}

impl Loop<'_, '_, '_> {
    /// Parses the answer and applies it (nothing is applied when a stop came during the call).
    pub(super) fn answer(
        &mut self,
        run: &mut Run,
        worktree: &Worktree,
        reply: &AgentReply,
        it: &mut Pending,
    ) -> Result<Answer, EngineError> {
        let interrupted_early = self.s.cancel.is_cancelled();
        self.stage(it.n, Stage::Apply, None);
        let t = Instant::now();
        let mut parsed = response::parse(&reply.text);
        if reply.edits_in_worktree {
            // The agent edited the worktree itself; only directives are read from its text.
            // What looks like an edit there (aider echoes its search/replace blocks) is neither
            // applied nor a problem.
            parsed.edits.clear();
            parsed.commands.clear();
            parsed.problems.retain(|p| {
                matches!(
                    p.kind,
                    ProblemKind::UnknownDirective | ProblemKind::BadDirective
                )
            });
        }
        let mut answer = Answer {
            problems: parsed.problems.iter().map(|p| p.to_string()).collect(),
            parsed,
            written: Vec::new(),
            edits: EditCounts::default(),
        };
        if !interrupted_early {
            self.apply(run, worktree, &mut answer, &mut it.transcript)?;
        }
        it.durations.apply_ms = Some(ms(t.elapsed()));
        self.checkpoint(|c| c.update(&it.transcript));
        Ok(answer)
    }

    /// Applies the parsed edits and runs the allowed commands; counts the edits applied,
    /// failed and refused, and notes the paths of the applied ones.
    fn apply(
        &mut self,
        run: &mut Run,
        worktree: &Worktree,
        answer: &mut Answer,
        transcript: &mut Vec<crate::store::Record>,
    ) -> Result<(), EngineError> {
        let settings = &self.job.settings;
        let parsed = &answer.parsed;
        let problems = &mut answer.problems;
        let report = apply::apply(worktree.path(), &parsed.edits, &settings.apply_policy)?;
        for a in &report.applied {
            self.memory.touched.insert(PathBuf::from(&a.path));
            answer.written.push(a.path.clone());
        }
        for f in &report.failed {
            problems.push(format!("the edit of `{}` failed: {}", f.path, f.reason));
        }
        for r in &report.refused {
            problems.push(format!(
                "the edit of `{}` was refused: {}",
                r.path, r.reason
            ));
        }
        let rec = self.record(
            run,
            "edits",
            json!({
                "applied": report.applied.iter().map(|a| json!({"path": a.path, "kind": format!("{:?}", a.kind).to_lowercase(), "bytes": a.bytes})).collect::<Vec<_>>(),
                "failed": report.failed.iter().map(|f| json!({"path": f.path, "reason": f.reason.to_string()})).collect::<Vec<_>>(),
                "refused": report.refused.iter().map(|r| json!({"path": r.path, "reason": r.reason.to_string()})).collect::<Vec<_>>(),
                "problems": parsed.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            }),
        );
        transcript.push(rec);
        for command in &parsed.commands {
            let outcome =
                match apply::run_command(worktree.path(), command, &settings.command_policy) {
                    Ok(o) => o,
                    Err(e) => {
                        problems.push(format!("the command `{command}` could not run: {e}"));
                        continue;
                    }
                };
            if let Some(why) = &outcome.refusal {
                problems.push(format!("the command `{command}` was not run: {why}"));
            } else if !outcome.succeeded() {
                problems.push(format!(
                    "the command `{command}` failed (exit {:?}{})",
                    outcome.exit_code,
                    if outcome.timed_out { ", timed out" } else { "" }
                ));
            }
            let rec = self.record(
                run,
                "command",
                json!({
                    "command": outcome.command,
                    "allowed": outcome.allowed,
                    "refusal": outcome.refusal,
                    "exit_code": outcome.exit_code,
                    "timed_out": outcome.timed_out,
                    "duration_ms": u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
                    "stdout": outcome.stdout,
                    "stderr": outcome.stderr,
                }),
            );
            transcript.push(rec);
        }
        answer.edits = EditCounts {
            applied: report.applied.len(),
            failed: report.failed.len(),
            refused: report.refused.len(),
        };
        Ok(())
    }
}
