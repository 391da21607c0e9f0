//! One iteration, stage by stage: context → budget → agent → apply → validate → decide. Each
//! stage is a function of its own (in this folder) returning a typed value; this file knows
//! their order and concludes an iteration into a [`Draft`] for the record.

use std::time::Instant;

use git2::Oid;

use crate::agent::{AgentReply, TokenUsage};
use crate::context;
use crate::store::{IterationStatus, Record, Run};
use crate::validate::GateResult;

use super::super::decide::{self, Observation, Strategy};
use super::super::metrics::{Durations, GateMetrics, Interrupted, IterationMetrics};
use super::super::worktree::Worktree;
use super::checks::Checks;
use super::edits::Answer;
use super::{CompleteWhen, EngineError, Loop, Stage, StopReason, first_line, ms, patch_id};

/// How an iteration ended.
pub(super) enum Step {
    /// Something worth recording happened: record the draft.
    Record(Box<Draft>),
    /// The loop stops before anything worth recording happened.
    Stop(StopReason, String),
}

/// What an iteration produced, before it is recorded.
pub(super) struct Draft {
    pub(super) status: IterationStatus,
    pub(super) transcript: Vec<Record>,
    pub(super) metrics: IterationMetrics,
    pub(super) summary: String,
    pub(super) usage: TokenUsage,
    pub(super) cost: f64,
    pub(super) checks_passed: usize,
    pub(super) checks_total: usize,
    pub(super) decisions: Vec<String>,
    pub(super) strategies: Vec<Strategy>,
    pub(super) stop: Option<(StopReason, String)>,
    /// The worktree's snapshot taken for the decision (`None` when none was taken), reused by
    /// the record so that the worktree is not scanned twice.
    pub(super) tree: Option<Oid>,
}

/// An iteration in flight: what its stages add to.
pub(super) struct Pending {
    /// Its number.
    pub(super) n: u32,
    /// How long each stage took.
    pub(super) durations: Durations,
    /// Its transcript so far.
    pub(super) transcript: Vec<Record>,
    /// Attempts of its model call cut short, with what they billed.
    pub(super) interrupted: Interrupted,
}

/// What the agent and the stages after it produced.
struct Work {
    reply: AgentReply,
    /// The call's whole cost, cut attempts included.
    cost: f64,
    /// The call's attempts cut short.
    interrupted: Interrupted,
    answer: Answer,
    checks: Checks,
}

impl Loop<'_, '_, '_> {
    /// One iteration up to (not including) the record.
    pub(super) fn iteration(
        &mut self,
        run: &mut Run,
        worktree: &Worktree,
        previous_tree: Option<Oid>,
    ) -> Result<Step, EngineError> {
        let n = run.next_iteration;
        let mut it = Pending {
            n,
            durations: Durations::default(),
            transcript: Vec::new(),
            interrupted: Interrupted::default(),
        };
        self.checkpoint(|c| c.begin(n));
        self.stage(n, Stage::Context, None);
        let t = Instant::now();
        let prompt = self.build_prompt(worktree, n)?;
        it.durations.context_ms = Some(ms(t.elapsed()));
        let allowance = match self.reserve(&prompt) {
            Ok(allowance) => allowance,
            Err((reason, detail)) => return Ok(Step::Stop(reason, detail)),
        };
        self.record_prompt(run, &prompt, allowance.max_tokens, &mut it);
        let reply = match self.call(worktree, &prompt, &allowance, &mut it) {
            Ok(reply) => reply,
            Err(err) => {
                let draft = self.failed_call(run, it, allowance, err);
                return Ok(Step::Record(Box::new(draft)));
            }
        };
        let cost = self.account(run, &reply, allowance, &mut it);
        let interrupted = it.interrupted;
        let answer = self.answer(run, worktree, &reply, &mut it)?;
        let checks = self.validate(run, worktree, &mut it);
        let work = Work {
            reply,
            cost,
            interrupted,
            answer,
            checks,
        };
        let draft = self.conclude(worktree, previous_tree, it, work)?;
        Ok(Step::Record(Box::new(draft)))
    }

    /// The decide stage: snapshots the worktree, decides, carries what matters into the next
    /// iteration and drafts the record.
    fn conclude(
        &mut self,
        worktree: &Worktree,
        previous_tree: Option<Oid>,
        mut it: Pending,
        work: Work,
    ) -> Result<Draft, EngineError> {
        let t = Instant::now();
        let failing = work.checks.failing();
        let status = work.status(&failing, self.job.settings.complete_when);
        let tree = self.snapshot(worktree, &work, &status)?;
        self.s.store.kill_point("after-snapshot");
        let seen = Observation {
            status: status.clone(),
            patch: patch_id(self.s.store.repo(), previous_tree, tree),
            failures: decide::failure_key(
                failing.iter().map(|r| (r.name.as_str(), r.output.as_str())),
            ),
            failing: failing.len(),
            refused: work.answer.edits.refused,
            needs_review: work.answer.parsed.directives.needs_review.clone(),
        };
        let (state, decision) = decide::decide(&self.rules, &self.memory.strategy, &seen);
        self.memory.strategy = state;
        let (strategies, stop) = decision.into_parts();
        it.durations.decide_ms = Some(ms(t.elapsed()));
        self.carry(it.n, &work, &failing);
        let checks_passed = work.checks.results.len() - failing.len();
        let summary = work
            .answer
            .parsed
            .directives
            .summary
            .as_deref()
            .map(|s| first_line(s).to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "{status}: {checks_passed}/{} checks passed",
                    work.checks.results.len()
                )
            });
        let metrics = work.metrics(
            it.n,
            self.s.agent.kind(),
            &status,
            it.durations,
            &strategies,
        );
        Ok(Draft {
            status,
            transcript: it.transcript,
            summary,
            usage: work.usage(),
            cost: work.cost,
            checks_passed,
            checks_total: work.checks.results.len(),
            decisions: metrics.decisions.clone().unwrap_or_default(),
            metrics,
            strategies,
            stop,
            tree: Some(tree),
        })
    }

    /// The snapshot stages what changed: the paths the worktree's watch saw change (gates,
    /// commands and agents may write anywhere) and mmm's own edits. Without a watch, just the
    /// edits when nothing else ran (no gate, no command, an agent that does not edit files
    /// itself, every edit applied whole); otherwise the whole worktree is scanned. An
    /// iteration about to be recorded as complete is always scanned in full, so that the final
    /// state never rests on the watch.
    fn snapshot(
        &mut self,
        worktree: &Worktree,
        work: &Work,
        status: &IterationStatus,
    ) -> Result<Oid, EngineError> {
        let own_edits_only = work.checks.results.is_empty()
            && self.gates().is_empty()
            && work.answer.parsed.commands.is_empty()
            && !work.reply.edits_in_worktree
            && work.answer.edits.failed == 0;
        if *status == IterationStatus::Complete {
            self.scan(worktree)
        } else {
            self.refresh(worktree, &work.answer.written, own_edits_only)
        }
    }

    /// Carries what matters into the next iteration's prompt.
    fn carry(&mut self, n: u32, work: &Work, failing: &[&GateResult]) {
        self.memory.failures = failing
            .iter()
            .map(|r| context::Failure {
                name: r.name.clone(),
                command: r.command.clone(),
                output: r.output.clone(),
            })
            .collect();
        self.memory.problems = work.answer.problems.clone();
        if let Some(s) = &work.answer.parsed.directives.summary {
            self.memory.summaries.push(format!("iteration {n}: {s}"));
        }
    }
}

impl Work {
    /// The call's tokens, cut attempts included.
    fn usage(&self) -> TokenUsage {
        let mut usage = self.reply.usage;
        usage.add(&self.interrupted.tokens);
        usage
    }

    /// The iteration's outcome. Complete takes every check passing and no problem, and either
    /// the agent's `@mmm:complete` or, with `complete_when = "checks"`, at least one check.
    fn status(&self, failing: &[&GateResult], complete_when: CompleteWhen) -> IterationStatus {
        let directives = &self.answer.parsed.directives;
        let claimed = match complete_when {
            CompleteWhen::Directive => directives.complete,
            CompleteWhen::Checks => directives.complete || !self.checks.results.is_empty(),
        };
        if self.checks.interrupted {
            IterationStatus::Interrupted
        } else if directives.needs_review.is_some() {
            IterationStatus::NeedsReview
        } else if claimed && failing.is_empty() && self.answer.problems.is_empty() {
            IterationStatus::Complete
        } else if failing.is_empty() {
            IterationStatus::Passed
        } else {
            IterationStatus::Failed
        }
    }

    /// The metrics of an iteration whose agent answered.
    fn metrics(
        &self,
        n: u32,
        agent: &str,
        status: &IterationStatus,
        durations: Durations,
        strategies: &[Strategy],
    ) -> IterationMetrics {
        let results = &self.checks.results;
        let directives = &self.answer.parsed.directives;
        IterationMetrics {
            iteration: n,
            agent: agent.to_owned(),
            model: self.reply.model.clone(),
            status: status.clone(),
            tokens: self.usage(),
            cost_usd: self.cost,
            interrupted: (self.interrupted.attempts > 0).then_some(self.interrupted),
            attempts: Some(self.reply.attempts),
            // Redacted with the whole record.
            agent_metrics: (!self.reply.metrics.is_empty()).then(|| self.reply.metrics.clone()),
            durations,
            gates: Some(results.iter().map(GateMetrics::from).collect()),
            checks_passed: Some(results.iter().filter(|r| r.passed).count()),
            checks_total: Some(results.len()),
            edits: Some(self.answer.edits),
            problems: Some(self.answer.problems.len()),
            decisions: Some(strategies.iter().map(Strategy::text).collect()),
            strategies: strategies.to_vec(),
            complete_claimed: Some(directives.complete),
            summary: directives.summary.clone(),
            ..IterationMetrics::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{Directives, Parsed};
    use crate::validate::GateKind;

    fn gate(name: &str, passed: bool) -> GateResult {
        GateResult {
            name: name.into(),
            kind: GateKind::Test,
            command: "check".into(),
            passed,
            exit_code: Some(if passed { 0 } else { 1 }),
            timed_out: false,
            duration_ms: 3,
            output: String::new(),
        }
    }

    fn work(directives: Directives, gates: &[bool], problems: usize, interrupted: bool) -> Work {
        Work {
            reply: AgentReply {
                model: "m".into(),
                attempts: 1,
                ..AgentReply::default()
            },
            cost: 0.5,
            interrupted: Interrupted::default(),
            answer: Answer {
                parsed: Parsed {
                    directives,
                    ..Parsed::default()
                },
                problems: vec!["a problem".into(); problems],
                written: Vec::new(),
                edits: Default::default(),
            },
            checks: Checks {
                results: gates
                    .iter()
                    .enumerate()
                    .map(|(i, p)| gate(&format!("g{i}"), *p))
                    .collect(),
                interrupted,
            },
        }
    }

    fn status(
        directives: Directives,
        gates: &[bool],
        problems: usize,
        interrupted: bool,
    ) -> String {
        let w = work(directives, gates, problems, interrupted);
        w.status(&w.checks.failing(), CompleteWhen::Directive)
            .to_string()
    }

    #[test]
    fn the_status_of_an_answered_iteration() {
        let complete = || Directives {
            complete: true,
            ..Directives::default()
        };
        assert_eq!(status(complete(), &[true], 0, false), "complete");
        assert_eq!(status(complete(), &[true, false], 0, false), "failed");
        assert_eq!(status(complete(), &[true], 1, false), "passed", "problems");
        assert_eq!(status(complete(), &[], 0, true), "interrupted");
        let review = Directives {
            needs_review: Some(String::new()),
            complete: true,
            ..Directives::default()
        };
        assert_eq!(status(review, &[false], 0, false), "needs-review");
        assert_eq!(status(Directives::default(), &[], 0, false), "passed");
    }

    #[test]
    fn with_complete_when_checks_the_checks_alone_complete() {
        let by_checks = |gates: &[bool], problems: usize| {
            let w = work(Directives::default(), gates, problems, false);
            w.status(&w.checks.failing(), CompleteWhen::Checks)
                .to_string()
        };
        assert_eq!(by_checks(&[true, true], 0), "complete");
        assert_eq!(by_checks(&[true, false], 0), "failed");
        assert_eq!(
            by_checks(&[], 0),
            "passed",
            "no check ran: nothing proves it"
        );
        assert_eq!(by_checks(&[true], 1), "passed", "problems");
        let w = work(
            Directives {
                complete: true,
                ..Directives::default()
            },
            &[],
            0,
            false,
        );
        assert_eq!(
            w.status(&w.checks.failing(), CompleteWhen::Checks)
                .to_string(),
            "complete",
            "the directive still counts"
        );
    }

    #[test]
    fn the_metrics_of_an_answered_iteration() {
        let w = work(Directives::default(), &[true, false], 2, false);
        let status = w.status(&w.checks.failing(), CompleteWhen::Directive);
        let m = w.metrics(
            4,
            "api",
            &status,
            Durations::default(),
            &[Strategy::FeedBack],
        );
        assert_eq!(
            (m.iteration, m.agent.as_str(), m.model.as_str()),
            (4, "api", "m")
        );
        assert_eq!(m.checks(), (1, 2));
        assert_eq!(m.problems, Some(2));
        assert_eq!(
            m.decisions,
            Some(vec!["feed the failures back to the model".to_owned()])
        );
        assert_eq!(m.strategies, [Strategy::FeedBack]);
        assert_eq!((m.agent_metrics, m.summary, m.error), (None, None, None));
    }
}
