//! What the loop does after an iteration: stop, or go on with which strategies. One pure
//! function, [`decide`], folds each iteration's [`Observation`] into the loop's [`State`]; the
//! live loop calls it after every iteration, and a resumed run calls it on the iterations its
//! notes record, so that it decides as an uninterrupted run would.
//!
//! Owns: stop conditions that follow from an iteration (complete, needs-review, stopped,
//! hostile output, stuck, checkpoints), the strategies (feed back, roll back, escalate) and the
//! counters behind them, and the stable names strategies are recorded by. Must not touch: git,
//! the worktree, the agent (the caller turns a strategy into an action).

use git2::Oid;
use serde::{Deserialize, Serialize};

use crate::store::IterationStatus;

use super::run::{Settings, StopReason};

/// The settings [`decide`] follows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// The same change or the same failures this many times in a row means stuck (0: never).
    pub stuck_after: u32,
    /// Iterations in a row with refused edits that count as hostile output.
    pub hostile_after: u32,
    /// The stronger model to move to after failures.
    pub escalate_to: Option<String>,
    /// Failed iterations in a row before escalating (0: never).
    pub escalate_after: u32,
    /// Pause for a human after every iteration.
    pub checkpoint_after_iteration: bool,
    /// Pause for a human when the spec completes.
    pub checkpoint_after_complete: bool,
}

impl From<&Settings> for Rules {
    fn from(s: &Settings) -> Self {
        Rules {
            stuck_after: s.stuck_after,
            hostile_after: s.hostile_after,
            escalate_to: s.escalate_to.clone(),
            escalate_after: s.escalate_after,
            checkpoint_after_iteration: s.checkpoint_after_iteration,
            checkpoint_after_complete: s.checkpoint_after_complete,
        }
    }
}

/// What the strategies count, carried from one iteration to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The model the next iteration calls.
    pub model: String,
    /// The last iteration whose checks all passed.
    pub last_good: Option<Oid>,
    /// Failing checks of the previous iteration.
    last_failing: Option<usize>,
    last_patch: Option<String>,
    same_patch: u32,
    last_failure_key: Option<String>,
    same_failures: u32,
    failed_in_a_row: u32,
    hostile_in_a_row: u32,
}

impl State {
    /// The state of a loop that has not run an iteration yet.
    pub fn new(model: &str) -> State {
        State {
            model: model.to_owned(),
            ..State::default()
        }
    }

    /// Notes that an iteration was recorded as `commit` with `passed` of `total` checks
    /// passing: the last good iteration a roll-back returns to.
    pub fn recorded(&mut self, commit: Oid, passed: usize, total: usize) {
        if total > 0 && passed == total {
            self.last_good = Some(commit);
        }
    }
}

/// What an iteration showed, as far as [`decide`] cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Its outcome.
    pub status: IterationStatus,
    /// An id of the change it made (`None` when it could not be computed).
    pub patch: Option<String>,
    /// An id of its failing checks ([`failure_key`]; `None` when none failed).
    pub failures: Option<String>,
    /// How many checks failed.
    pub failing: usize,
    /// How many edits were refused.
    pub refused: usize,
    /// Why the model asked for a human, when it did.
    pub needs_review: Option<String>,
}

/// A strategy taken after an iteration, recorded in the metrics note by its stable name
/// (`strategy`) next to the sentence of [`Strategy::text`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "kebab-case")]
pub enum Strategy {
    /// Give the failures to the model in the next prompt.
    FeedBack,
    /// Return the workspace to the last iteration whose checks passed.
    RollBack {
        /// That iteration's commit.
        to: String,
        /// Failing checks now.
        failing: usize,
        /// Failing checks before.
        before: usize,
    },
    /// Move to a stronger model.
    Escalate {
        /// The model so far.
        from: String,
        /// The stronger model.
        to: String,
        /// Failed iterations in a row.
        after: u32,
    },
    /// Wait for a human to approve the completed spec.
    CheckpointComplete,
    /// Wait for a human after this iteration.
    CheckpointIteration,
}

impl Strategy {
    /// The sentence recorded in the metrics note's `decisions` and shown to humans.
    pub fn text(&self) -> String {
        match self {
            Strategy::FeedBack => "feed the failures back to the model".into(),
            Strategy::RollBack {
                to,
                failing,
                before,
            } => format!(
                "roll the workspace back to the last iteration whose checks passed ({}), because this one made things worse ({failing} failing checks, {before} before)",
                &to[..10.min(to.len())]
            ),
            Strategy::Escalate { from, to, after } => {
                format!("escalate from {from} to {to} after {after} failed iterations")
            }
            Strategy::CheckpointComplete => {
                "checkpoint: wait for a human to approve the completed spec".into()
            }
            Strategy::CheckpointIteration => {
                "checkpoint: wait for a human after this iteration".into()
            }
        }
    }
}

/// What to do after an iteration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run another iteration, after taking these strategies.
    Continue(Vec<Strategy>),
    /// Stop the loop, after recording these strategies.
    Stop {
        /// Why.
        reason: StopReason,
        /// A sentence for humans.
        detail: String,
        /// Strategies recorded with the stop (a checkpoint, or what a failed iteration would
        /// have done next).
        strategies: Vec<Strategy>,
    },
}

impl Decision {
    /// The strategies, and the stop if there is one.
    pub fn into_parts(self) -> (Vec<Strategy>, Option<(StopReason, String)>) {
        match self {
            Decision::Continue(s) => (s, None),
            Decision::Stop {
                reason,
                detail,
                strategies,
            } => (strategies, Some((reason, detail))),
        }
    }
}

fn stop(reason: StopReason, detail: impl Into<String>, strategies: Vec<Strategy>) -> Decision {
    Decision::Stop {
        reason,
        detail: detail.into(),
        strategies,
    }
}

/// Stop conditions and strategies after an iteration: the state after `seen`, and what to do.
pub fn decide(rules: &Rules, state: &State, seen: &Observation) -> (State, Decision) {
    let mut next = state.clone();
    next.same_patch = repeated(&seen.patch, &state.last_patch, state.same_patch);
    next.last_patch = seen.patch.clone();
    next.same_failures = repeated(&seen.failures, &state.last_failure_key, state.same_failures);
    next.last_failure_key = seen.failures.clone();
    next.hostile_in_a_row = if seen.refused > 0 {
        state.hostile_in_a_row + 1
    } else {
        0
    };
    next.last_failing = Some(seen.failing);
    let decision = match &seen.status {
        IterationStatus::Complete => {
            next.failed_in_a_row = 0;
            if rules.checkpoint_after_complete {
                stop(
                    StopReason::Checkpoint,
                    "complete; a required checkpoint waits for a human",
                    vec![Strategy::CheckpointComplete],
                )
            } else {
                stop(
                    StopReason::Complete,
                    "the model said complete and every check passed",
                    Vec::new(),
                )
            }
        }
        IterationStatus::NeedsReview => stop(
            StopReason::NeedsReview,
            format!(
                "the model asked for a human: {}",
                seen.needs_review.as_deref().unwrap_or_default()
            ),
            Vec::new(),
        ),
        IterationStatus::Interrupted => stop(
            StopReason::Stopped,
            "stopped on request; the iteration is recorded as interrupted",
            Vec::new(),
        ),
        _ => after_work(rules, state, &mut next, seen),
    };
    (next, decision)
}

/// [`decide`] for an iteration that neither completed nor was stopped.
fn after_work(rules: &Rules, state: &State, next: &mut State, seen: &Observation) -> Decision {
    if next.hostile_in_a_row >= rules.hostile_after.max(1) {
        return stop(
            StopReason::Critical,
            format!(
                "the model's edits were refused in {} iterations in a row (hostile or confused output)",
                next.hostile_in_a_row
            ),
            Vec::new(),
        );
    }
    if rules.stuck_after > 0 {
        if next.same_patch >= rules.stuck_after {
            let detail = format!("the same change {} times in a row", next.same_patch);
            return stop(StopReason::Stuck, detail, Vec::new());
        }
        if next.same_failures >= rules.stuck_after {
            let detail = format!(
                "the same failing checks {} times in a row",
                next.same_failures
            );
            return stop(StopReason::Stuck, detail, Vec::new());
        }
    }
    let mut strategies = Vec::new();
    if seen.status == IterationStatus::Failed {
        next.failed_in_a_row = state.failed_in_a_row + 1;
        strategies.push(Strategy::FeedBack);
        if let (Some(good), Some(before)) = (state.last_good, state.last_failing)
            && seen.failing > before
        {
            strategies.push(Strategy::RollBack {
                to: good.to_string(),
                failing: seen.failing,
                before,
            });
        }
        if let Some(stronger) = &rules.escalate_to
            && rules.escalate_after > 0
            && next.failed_in_a_row >= rules.escalate_after
            && *stronger != state.model
        {
            strategies.push(Strategy::Escalate {
                from: state.model.clone(),
                to: stronger.clone(),
                after: next.failed_in_a_row,
            });
            next.model = stronger.clone();
        }
    } else {
        next.failed_in_a_row = 0;
    }
    if rules.checkpoint_after_iteration {
        strategies.push(Strategy::CheckpointIteration);
        return stop(
            StopReason::Checkpoint,
            "a required checkpoint after each iteration waits for a human",
            strategies,
        );
    }
    Decision::Continue(strategies)
}

/// How many times in a row `now` has been seen, given the last value and its count.
fn repeated(now: &Option<String>, last: &Option<String>, count: u32) -> u32 {
    if now.is_some() && now == last {
        count + 1
    } else {
        1
    }
}

/// Identifies failing checks by name and output with digits removed, so that timings and
/// addresses do not make two identical failures look different (`None` when none failed).
pub fn failure_key<'a>(failing: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<String> {
    let mut parts: Vec<String> = failing
        .into_iter()
        .map(|(name, output)| {
            let out: String = output.chars().filter(|c| !c.is_ascii_digit()).collect();
            format!("{name}\u{0}{out}")
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    parts.sort();
    Some(parts.join("\u{1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            stuck_after: 3,
            hostile_after: 2,
            ..Rules::default()
        }
    }

    fn seen(status: IterationStatus, patch: &str, failing: &[(&str, &str)]) -> Observation {
        Observation {
            status,
            patch: Some(patch.into()),
            failures: failure_key(failing.iter().copied()),
            failing: failing.len(),
            refused: 0,
            needs_review: None,
        }
    }

    /// Folds observations through [`decide`], as a resumed run does; the last decision.
    fn fold(rules: &Rules, state: &mut State, seen: &[Observation]) -> Decision {
        let mut last = Decision::Continue(Vec::new());
        for s in seen {
            let (next, d) = decide(rules, state, s);
            *state = next;
            last = d;
        }
        last
    }

    fn reason(d: &Decision) -> Option<StopReason> {
        match d {
            Decision::Stop { reason, .. } => Some(*reason),
            Decision::Continue(_) => None,
        }
    }

    #[test]
    fn the_same_change_three_times_is_stuck() {
        let mut state = State::new("m");
        let passed = |p| seen(IterationStatus::Passed, p, &[]);
        let d = fold(&rules(), &mut state, &[passed("a"), passed("a")]);
        assert_eq!(d, Decision::Continue(Vec::new()));
        let (_, d) = decide(&rules(), &state, &passed("a"));
        assert_eq!(
            d,
            stop(
                StopReason::Stuck,
                "the same change 3 times in a row",
                vec![]
            )
        );
        let (_, d) = decide(&rules(), &state, &passed("b"));
        assert_eq!(reason(&d), None);
    }

    #[test]
    fn the_same_failures_apart_from_digits_are_stuck() {
        let mut state = State::new("m");
        let failed = |p, out| seen(IterationStatus::Failed, p, &[("test", out)]);
        let d = fold(
            &rules(),
            &mut state,
            &[failed("a", "took 1ms"), failed("b", "took 22ms")],
        );
        assert_eq!(d, Decision::Continue(vec![Strategy::FeedBack]));
        let (_, d) = decide(&rules(), &state, &failed("c", "took 3ms"));
        assert_eq!(reason(&d), Some(StopReason::Stuck));
        let (_, d) = decide(&rules(), &state, &failed("c", "other"));
        assert_eq!(reason(&d), None);
    }

    #[test]
    fn a_worse_iteration_rolls_back_and_failures_escalate_once() {
        let rules = Rules {
            escalate_to: Some("strong".into()),
            escalate_after: 2,
            ..rules()
        };
        let good = Oid::from_str("0123456789abcdef0123456789abcdef01234567").expect("oid");
        let mut state = State::new("weak");
        fold(
            &rules,
            &mut state,
            &[seen(IterationStatus::Failed, "a", &[("t", "x")])],
        );
        state.recorded(good, 1, 2);
        assert_eq!(state.last_good, None, "not every check passed");
        state.recorded(good, 2, 2);
        let worse = seen(IterationStatus::Failed, "b", &[("t", "x"), ("u", "y")]);
        let (state, d) = decide(&rules, &state, &worse);
        let (strategies, stop) = d.into_parts();
        assert_eq!(stop, None);
        let texts: Vec<String> = strategies.iter().map(Strategy::text).collect();
        assert_eq!(
            texts,
            [
                "feed the failures back to the model",
                "roll the workspace back to the last iteration whose checks passed (0123456789), because this one made things worse (2 failing checks, 1 before)",
                "escalate from weak to strong after 2 failed iterations",
            ]
        );
        assert_eq!(state.model, "strong");
        let (state, d) = decide(&rules, &state, &seen(IterationStatus::Failed, "c", &[]));
        assert_eq!(d, Decision::Continue(vec![Strategy::FeedBack]), "once");
        let (state, _) = decide(&rules, &state, &seen(IterationStatus::Passed, "d", &[]));
        assert_eq!(state.failed_in_a_row, 0);
    }

    #[test]
    fn refused_edits_in_a_row_are_critical() {
        let hostile = Observation {
            refused: 1,
            ..seen(IterationStatus::Passed, "a", &[])
        };
        let (state, d) = decide(&rules(), &State::new("m"), &hostile);
        assert_eq!(reason(&d), None);
        let (_, d) = decide(&rules(), &state, &hostile);
        assert_eq!(reason(&d), Some(StopReason::Critical));
    }

    #[test]
    fn complete_review_and_interruption_stop() {
        let state = State::new("m");
        let complete = seen(IterationStatus::Complete, "a", &[]);
        let (_, d) = decide(&rules(), &state, &complete);
        assert_eq!(reason(&d), Some(StopReason::Complete));
        let approve = Rules {
            checkpoint_after_complete: true,
            ..rules()
        };
        let (_, d) = decide(&approve, &state, &complete);
        assert_eq!(
            d.into_parts(),
            (
                vec![Strategy::CheckpointComplete],
                Some((
                    StopReason::Checkpoint,
                    "complete; a required checkpoint waits for a human".into()
                ))
            )
        );
        let review = Observation {
            needs_review: Some("which API?".into()),
            ..seen(IterationStatus::NeedsReview, "a", &[])
        };
        let (_, d) = decide(&rules(), &state, &review);
        assert_eq!(
            d,
            stop(
                StopReason::NeedsReview,
                "the model asked for a human: which API?",
                vec![]
            )
        );
        let (_, d) = decide(
            &rules(),
            &state,
            &seen(IterationStatus::Interrupted, "a", &[]),
        );
        assert_eq!(reason(&d), Some(StopReason::Stopped));
    }

    #[test]
    fn a_checkpoint_after_each_iteration_keeps_the_strategies() {
        let rules = Rules {
            checkpoint_after_iteration: true,
            ..rules()
        };
        let (_, d) = decide(
            &rules,
            &State::new("m"),
            &seen(IterationStatus::Failed, "a", &[("t", "x")]),
        );
        let (strategies, stop) = d.into_parts();
        assert_eq!(
            strategies,
            [Strategy::FeedBack, Strategy::CheckpointIteration]
        );
        assert_eq!(stop.map(|s| s.0), Some(StopReason::Checkpoint));
    }

    #[test]
    fn strategies_are_recorded_by_stable_names() {
        let s = vec![
            Strategy::FeedBack,
            Strategy::Escalate {
                from: "a".into(),
                to: "b".into(),
                after: 2,
            },
        ];
        let json = serde_json::to_string(&s).expect("json");
        assert_eq!(
            json,
            r#"[{"strategy":"feed-back"},{"strategy":"escalate","from":"a","to":"b","after":2}]"#
        );
        let back: Vec<Strategy> = serde_json::from_str(&json).expect("read back");
        assert_eq!(back, s);
    }
}
