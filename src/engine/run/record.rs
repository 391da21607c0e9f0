//! The record stage: the worktree snapshotted, a drafted iteration written through the store
//! (commit, transcript note, metrics note, branch), and the strategies it decided taken.

use git2::Oid;

use crate::store::{NewIteration, Recorded, Run};

use super::super::decide::Strategy;
use super::super::metrics;
use super::super::review::FEEDBACK_KIND;
use super::super::worktree::{Snapshot, Worktree};
use super::iteration::Draft;
use super::{EngineError, Event, Loop, Stage, StopReason};

impl Loop<'_, '_, '_> {
    /// Records a drafted iteration. A loop that cannot make another call stops now, so that
    /// the reason is recorded on this iteration. Returns the draft as recorded, the record and
    /// the snapshot's tree.
    pub(super) fn record_draft(
        &mut self,
        run: &mut Run,
        worktree: &Worktree,
        mut draft: Draft,
    ) -> Result<(Draft, Recorded, Oid), EngineError> {
        let n = run.next_iteration;
        if draft.stop.is_none() {
            // The next prompt is about as long as this one: the input of one attempt, not of
            // the attempts cut short too.
            let lost = draft
                .metrics
                .interrupted
                .map_or(0, |i| i.tokens.total_input());
            let input = draft.usage.total_input().saturating_sub(lost);
            draft.stop = self.stop_before_call(Some(input), 1);
        } else if matches!(draft.stop, Some((StopReason::Stuck, _)))
            && let Some((StopReason::MaxIterations, limit)) = self.stop_before_call(None, 1)
        {
            // On the last iteration allowed the limit is what ends the run; being stuck is
            // told in the detail.
            let stuck = draft.stop.take().map(|(_, d)| d).unwrap_or_default();
            draft.stop = Some((StopReason::MaxIterations, format!("{limit}; {stuck}")));
        }
        if let Some(reason) = draft.stop.as_ref().map(|(r, _)| *r) {
            draft.status = reason.trailer_status(&draft.status);
            draft.metrics.stop_reason = Some(reason);
            conclude(&mut draft, reason);
        }
        draft.metrics.trailer_status = Some(draft.status.clone());
        self.stage(n, Stage::Record, None);
        let tree = match draft.tree {
            Some(tree) => tree,
            None => self.scan(worktree)?,
        };
        if let Some(fed) = self.memory.feedback_record.take() {
            let rec = self.record(run, FEEDBACK_KIND, fed.to_value());
            draft.transcript.push(rec);
        }
        let metrics = self.record(run, metrics::KIND, draft.metrics.to_value());
        let recorded = self.s.store.record_iteration(
            run,
            NewIteration {
                tree,
                status: draft.status.clone(),
                // The summary becomes the commit message: a secret the model echoed in its
                // `@mmm:summary` must not land there either.
                summary: self.s.redactor.redact(&draft.summary).into_owned(),
                body: String::new(),
                spec_revision: Some(self.job.spec.revision.clone()),
                transcript: std::mem::take(&mut draft.transcript),
                metrics: vec![metrics],
            },
        )?;
        self.checkpoint(|c| c.recorded());
        if let Some(blocks) = self.pending_system.take() {
            self.written_system = Some((recorded.commit, n, blocks));
        }
        worktree.advance(recorded.commit)?;
        self.iterations_run += 1;
        self.iterations_this_revision += 1;
        if recorded.superseded {
            draft.decisions = vec![stop_decision(StopReason::Superseded)];
        }
        self.emit(Event::Recorded {
            spec: self.name.clone(),
            iteration: n,
            status: draft.status.to_string(),
            commit: recorded.commit.to_string(),
            tokens: draft.usage,
            cost_usd: draft.cost,
            checks_passed: draft.checks_passed,
            checks_total: draft.checks_total,
            decisions: draft.decisions.clone(),
        });
        Ok((draft, recorded, tree))
    }

    /// Takes the strategies an iteration decided, for the next iteration: a roll-back resets
    /// the worktree to the last good iteration (and `previous_tree` to its tree); an
    /// escalation changes the model.
    pub(super) fn take_strategies(
        &mut self,
        worktree: &Worktree,
        strategies: &[Strategy],
        recorded: Oid,
        previous_tree: &mut Option<Oid>,
    ) -> Result<(), EngineError> {
        for strategy in strategies {
            match strategy {
                Strategy::RollBack { to, .. } => {
                    if let Ok(good) = Oid::from_str(to) {
                        worktree.reset_to(good)?;
                        worktree.advance(recorded)?;
                        self.tree = None;
                        *previous_tree = self
                            .s
                            .store
                            .repo()
                            .find_commit(good)
                            .map(|c| c.tree_id())
                            .ok();
                    }
                }
                Strategy::Escalate { to, .. } => self.model = to.clone(),
                Strategy::FeedBack
                | Strategy::CheckpointComplete
                | Strategy::CheckpointIteration => {}
            }
        }
        Ok(())
    }

    /// Snapshots the worktree; forgets the context's list of files when files were added or
    /// deleted, so that the next prompt walks the worktree again.
    pub(super) fn scan(&mut self, worktree: &Worktree) -> Result<Oid, EngineError> {
        let snap = worktree.scan()?;
        Ok(self.saw(snap))
    }

    /// [`Loop::scan`] by the cheapest exact way (see [`Worktree::refresh`]).
    pub(super) fn refresh(
        &mut self,
        worktree: &Worktree,
        written: &[String],
        nothing_else: bool,
    ) -> Result<Oid, EngineError> {
        let snap = worktree.refresh(written, nothing_else)?;
        Ok(self.saw(snap))
    }

    /// Keeps the context's list of files and what it read in step with a snapshot.
    fn saw(&mut self, snap: Snapshot) -> Oid {
        if snap.files_changed {
            self.tree = None;
        } else if let Some(tree) = &self.tree {
            tree.forget(snap.changed.iter().map(String::as_str));
        }
        snap.tree
    }
}

/// The decisions of an iteration after which the loop stops: the strategies meant for a next
/// iteration (feed back, roll back, escalate) are not taken, unless a checkpoint only pauses
/// the loop; the last decision is the stop itself, so that what is shown and recorded last
/// is what happens.
fn conclude(draft: &mut Draft, reason: StopReason) {
    if reason != StopReason::Checkpoint {
        draft.strategies.retain(|s| {
            matches!(
                s,
                Strategy::CheckpointComplete | Strategy::CheckpointIteration
            )
        });
    }
    draft.decisions = draft.strategies.iter().map(Strategy::text).collect();
    draft.decisions.push(stop_decision(reason));
    draft.metrics.strategies = draft.strategies.clone();
    draft.metrics.decisions = Some(draft.decisions.clone());
}

/// The decision that ends a loop, in words.
fn stop_decision(reason: StopReason) -> String {
    let why = match reason {
        StopReason::Complete => "the spec is complete",
        StopReason::AlreadyComplete => "the spec was complete already",
        StopReason::MaxIterations => "max_iterations is reached",
        StopReason::Budget => "the next call would exceed a budget",
        StopReason::Timeout => "the run's timeout passed",
        StopReason::Stuck => "the loop is stuck (the same change or failures again)",
        StopReason::NeedsReview => "the model asked for a human",
        StopReason::Stopped => "a stop was requested",
        StopReason::Critical => "an error that another iteration cannot fix",
        StopReason::Checkpoint => "a human checkpoint must approve first",
        StopReason::CheckpointTimeout => "no review passed the checkpoint within its timeout",
        StopReason::Superseded => "another run advanced the branch first",
        StopReason::Waiting => "a dependency is not complete",
    };
    format!("stop ({}): {why}", reason.as_str())
}
