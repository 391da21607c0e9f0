//! What a run takes over from earlier runs on its branch: whether the spec is complete
//! already, what they spent, and what they learned (memory and the strategies' state, rebuilt
//! from their notes through the same [`decide`](super::super::decide::decide) as live).

use std::path::PathBuf;

use serde_json::Value;

use crate::context;
use crate::review::Verdict;
use crate::store::{Iteration, IterationStatus, Record, StoreError};

use super::super::decide::{self, Observation};
use super::super::metrics::{self, IterationMetrics};
use super::{EngineError, Loop, Memory, Outcome, StopReason, patch_id};

impl Loop<'_, '_, '_> {
    /// Reads the branch's history: an outcome when the spec is complete at this revision
    /// already, otherwise `None` after taking over what earlier iterations spent and learned.
    pub(super) fn resume(&mut self) -> Result<Option<Outcome>, EngineError> {
        let store = self.s.store;
        let revision = self.job.spec.revision.clone();
        let history = match store.history(&self.spec) {
            Ok(h) => h,
            Err(StoreError::NoBranch { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let verdict = self.gather_feedback(history.last().map(|l| l.commit))?;
        // Changes requested on the tip, or new writers' items, reopen a complete spec.
        let reviewed =
            verdict == Some(Verdict::ChangesRequested) || !self.memory.feedback.is_empty();
        let complete = history.last().is_some_and(|last| {
            last.status == Some(IterationStatus::Complete)
                && last.spec_revision.as_deref() == Some(revision.as_str())
        });
        if let Some(last) = history.last()
            && complete
            && !reviewed
        {
            let detail = format!(
                "complete at iteration {} and the spec has not changed since",
                last.n
            );
            return Ok(Some(self.finish_without_run(
                last.run.clone().unwrap_or_default(),
                last.n,
                StopReason::AlreadyComplete,
                detail,
            )));
        }
        for it in &history {
            if it.spec_revision.as_deref() == Some(revision.as_str()) {
                self.iterations_this_revision += 1;
            }
            if let Ok(detail) = store.iteration(&self.spec, it.n) {
                let metrics = detail.metrics.unwrap_or_default();
                let (usd, tokens) = metrics::spend_of(&metrics);
                self.spent.spec_usd += usd;
                self.spent.spec_tokens += tokens;
                remember(
                    &mut self.memory,
                    &metrics,
                    detail.transcript.as_deref().unwrap_or(&[]),
                );
                self.replay_strategy_state(it, &metrics);
            }
        }
        if complete {
            // The review starts a new round of iterations on this revision.
            self.iterations_this_revision = 0;
        }
        Ok(None)
    }

    /// Rebuilds what the strategies count (failures in a row, the last good iteration, repeated
    /// changes and failures, refused edits, escalation) from an earlier iteration, so that a
    /// resumed run (or one continued after a checkpoint) decides as an uninterrupted one would:
    /// its observation goes through [`decide::decide`] as it did live. An iteration whose agent
    /// call failed was not decided on live, and is not here.
    fn replay_strategy_state(&mut self, it: &Iteration, metrics: &[Record]) {
        let Some(m) = IterationMetrics::of(metrics) else {
            return;
        };
        if m.error.is_some() {
            return;
        }
        let (passed, total) = m.checks();
        let repo = self.s.store.repo();
        let parent_tree = it
            .parent
            .and_then(|p| repo.find_commit(p).ok())
            .map(|c| c.tree_id());
        let seen = Observation {
            status: m.status.clone(),
            patch: patch_id(repo, parent_tree, it.tree),
            failures: decide::failure_key(
                self.memory
                    .failures
                    .iter()
                    .map(|f| (f.name.as_str(), f.output.as_str())),
            ),
            failing: total - passed.min(total),
            refused: m.edits.map_or(0, |e| e.refused),
            needs_review: None,
        };
        let (mut state, _) = decide::decide(&self.rules, &self.memory.strategy, &seen);
        state.recorded(it.commit, passed, total);
        self.model = state.model.clone();
        self.memory.strategy = state;
    }
}

/// Restores memory (summaries, touched files, the last failures) from an earlier iteration's
/// notes, so that a resumed run knows what came before.
fn remember(memory: &mut Memory, metrics: &[Record], transcript: &[Record]) {
    for m in IterationMetrics::all_in(metrics) {
        if let Some(s) = &m.summary {
            memory
                .summaries
                .push(format!("iteration {}: {s}", m.iteration));
        }
    }
    memory.failures.clear();
    for t in transcript {
        match t.kind.as_str() {
            "edits" => {
                for a in t
                    .data
                    .get("applied")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(p) = a.get("path").and_then(Value::as_str) {
                        memory.touched.insert(PathBuf::from(p));
                    }
                }
            }
            "gate" if t.data.get("passed").and_then(Value::as_bool) == Some(false) => {
                let field = |k: &str| {
                    t.data
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                memory.failures.push(context::Failure {
                    name: field("name"),
                    command: field("command"),
                    output: field("output"),
                });
            }
            _ => {}
        }
    }
}
