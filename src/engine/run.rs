//! One spec's loop: iterations until a stop condition, each recorded through the store.
//!
//! This file holds the loop's public types and the loop over iterations; the stages of an
//! iteration are in `run/`: `iteration.rs` (their order, and the decide stage), `prompt.rs`
//! (context), `limits.rs` (stop conditions and budgets before a call), `call.rs` (the agent),
//! `edits.rs` (parse and apply), `checks.rs` (validate), `record.rs` (record and strategies),
//! `resume.rs` (what a run takes over from earlier runs).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use git2::Oid;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{Agent, Cancel, PriceTable, TokenUsage};
use crate::apply::{self, ApplyPolicy, CommandPolicy};
pub use crate::config::CompleteWhen;
use crate::context::{self, ContextOptions, RepoSnapshot, Templates, TokenBudget};
use crate::review::FeedItem;
use crate::spec::{Spec, SpecId};
use crate::store::{IterationStatus, Record, Run, Store, StoreError};
use crate::validate::{Gate, GateOptions};

use super::budget::{DailyLedger, Limits, Spent};
use super::checkpoint::Checkpointer;
use super::decide::{self, Rules};
use super::redact::Redactor;
use super::review::{FeedbackRecord, ReviewSource};
use super::worktree::Worktree;

mod call;
mod checks;
mod edits;
mod iteration;
mod limits;
mod prompt;
mod record;
mod resume;
mod review;

use iteration::Step;

/// Why a spec's loop stopped. Recorded in the metrics note of the last iteration and in its
/// `Mmm-Status` trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The model said it is done and every gate and verifiable criterion passed.
    Complete,
    /// The spec was complete already at this revision; nothing ran.
    AlreadyComplete,
    /// `max_iterations` reached.
    MaxIterations,
    /// A budget would have been exceeded by the next call.
    Budget,
    /// The wall-clock timeout passed.
    Timeout,
    /// The same diff or the same failures repeated.
    Stuck,
    /// The model asked for a human (`@mmm:needs-review`).
    NeedsReview,
    /// A human stopped the loop (`git mmm stop`, Ctrl-C).
    Stopped,
    /// Authentication failed, a spend limit was hit, the agent failed repeatedly, or the
    /// model's output was refused again and again. Named `error`, as the iteration's status
    /// and the docs name it (records written as `critical` still read).
    #[serde(rename = "error", alias = "critical")]
    Critical,
    /// A required human checkpoint waits for approval.
    Checkpoint,
    /// Another writer advanced the branch first; this run's work is archived.
    Superseded,
    /// A spec it depends on is not complete yet.
    Waiting,
    /// A required checkpoint's review did not come within its `timeout`.
    CheckpointTimeout,
}

impl StopReason {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Complete => "complete",
            StopReason::AlreadyComplete => "already-complete",
            StopReason::MaxIterations => "max-iterations",
            StopReason::Budget => "budget",
            StopReason::Timeout => "timeout",
            StopReason::Stuck => "stuck",
            StopReason::NeedsReview => "needs-review",
            StopReason::Stopped => "stopped",
            StopReason::Critical => "error",
            StopReason::Checkpoint => "checkpoint",
            StopReason::Superseded => "superseded",
            StopReason::Waiting => "waiting",
            StopReason::CheckpointTimeout => "checkpoint-timeout",
        }
    }

    /// True for the reasons that mean the spec is done.
    pub fn is_complete(self) -> bool {
        matches!(self, StopReason::Complete | StopReason::AlreadyComplete)
    }

    /// The `Mmm-Status` of the last iteration of a loop that stopped for this reason.
    fn trailer_status(self, outcome: &IterationStatus) -> IterationStatus {
        match self {
            StopReason::Complete => IterationStatus::Complete,
            StopReason::NeedsReview => IterationStatus::NeedsReview,
            StopReason::Stopped => IterationStatus::Interrupted,
            StopReason::Stuck => IterationStatus::Stuck,
            StopReason::Budget => IterationStatus::BudgetExceeded,
            StopReason::Critical => IterationStatus::Error,
            // A completed spec waiting for approval stays complete; the metrics say it waits.
            StopReason::Checkpoint if *outcome == IterationStatus::Complete => {
                IterationStatus::Complete
            }
            StopReason::CheckpointTimeout if *outcome == IterationStatus::Complete => {
                IterationStatus::Complete
            }
            StopReason::MaxIterations
            | StopReason::Timeout
            | StopReason::Checkpoint
            | StopReason::CheckpointTimeout => IterationStatus::Other(self.as_str().to_owned()),
            StopReason::AlreadyComplete | StopReason::Superseded | StopReason::Waiting => {
                outcome.clone()
            }
        }
    }
}

/// Everything that shapes one spec's loop, resolved from configuration and the spec's front
/// matter by the caller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Iterations of one spec revision.
    pub max_iterations: u32,
    /// Wall-clock limit of the run.
    pub timeout: Duration,
    /// The same diff or the same failures this many times in a row means stuck (0: never).
    pub stuck_after: u32,
    /// The model to start with.
    pub model: String,
    /// The stronger model to move to after failures.
    pub escalate_to: Option<String>,
    /// Failed iterations in a row before escalating (0: never).
    pub escalate_after: u32,
    /// Maximum output tokens per call.
    pub max_tokens: u32,
    /// Budgets.
    pub limits: Limits,
    /// Quality gates from `[validate]`.
    pub gates: Vec<Gate>,
    /// How gates run.
    pub gate_options: GateOptions,
    /// Where edits may go.
    pub apply_policy: ApplyPolicy,
    /// Which commands the model may run.
    pub command_policy: CommandPolicy,
    /// Context building.
    pub context: ContextOptions,
    /// The model's context window and the output reserve.
    pub token_budget: TokenBudget,
    /// Pause for a human after every iteration.
    pub checkpoint_after_iteration: bool,
    /// Pause for a human when the spec completes.
    pub checkpoint_after_complete: bool,
    /// How long a required checkpoint waits for a review (with a review source).
    pub checkpoint_timeout: Duration,
    /// How often the review source is asked while a checkpoint waits.
    pub review_poll: Duration,
    /// Iterations in a row with refused edits that count as hostile output (a critical stop).
    pub hostile_after: u32,
    /// Where the run's worktree goes (`None`: `.git/mmm/worktrees/`). Claude Code refuses to
    /// edit files below a `.git` directory, so its runs use a directory outside.
    pub worktree_root: Option<PathBuf>,
    /// Keep the spec's worktree between runs (`[loop] keep_worktrees`): reset, not made anew.
    pub keep_worktree: bool,
    /// An iteration unrecorded for this long is checkpointed to the run's wip ref (and again
    /// each time this long passes with something new); a quicker one is not.
    pub checkpoint_after: Duration,
    /// What completes the spec: the agent's `@mmm:complete` with every check passing, or
    /// every check passing alone.
    pub complete_when: CompleteWhen,
    /// Untracked paths (`.gitignore` patterns) that never enter an iteration commit: agents'
    /// scratch files (`[agent] ignore`).
    pub ignore: Vec<String>,
}

/// One spec to run.
#[derive(Debug)]
pub struct Job<'a> {
    /// The spec.
    pub spec: &'a Spec,
    /// The commit a new branch starts from.
    pub base: Oid,
    /// The settings.
    pub settings: Settings,
    /// The prompt templates.
    pub templates: &'a Templates,
    /// Summaries of the specs this one depends on.
    pub dependency_summaries: Vec<(String, String)>,
    /// Files the specs this one depends on changed (the context ranks them higher).
    pub dependency_files: Vec<PathBuf>,
    /// Specs already complete.
    pub completed_specs: Vec<String>,
    /// Review feedback to give the model (from a human checkpoint or a pull request).
    pub review_feedback: Vec<String>,
    /// Reviewers' items to feed the model (as `review::select` chose them); an item whose id
    /// the spec's notes record as fed already is left out.
    pub feedback: Vec<FeedItem>,
}

/// The services the loop uses.
pub struct Services<'a> {
    /// The git store.
    pub store: &'a Store,
    /// The model.
    pub agent: &'a dyn Agent,
    /// Prices for cost and budgets.
    pub prices: &'a PriceTable,
    /// Removes secrets from everything recorded.
    pub redactor: &'a Redactor,
    /// Set to stop after the current stage.
    pub cancel: &'a Cancel,
    /// What is spent today by all specs, shared with the loops running at once.
    pub daily: &'a DailyLedger,
    /// The review host of the spec's pull request, if it has one: its feedback is fed, a
    /// complete spec with changes requested is continued, a required checkpoint waits for it.
    pub review: Option<&'a dyn ReviewSource>,
}

/// A stage of an iteration, for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Building the prompt.
    Context,
    /// Waiting for the model.
    Agent,
    /// Applying edits and running commands.
    Apply,
    /// Running gates.
    Validate,
    /// Writing the commit and notes.
    Record,
}

/// What the loop reports while it runs (`--json` prints these as they are).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A run started (or resumed).
    Started {
        /// The spec.
        spec: String,
        /// The run id.
        run: String,
        /// The first iteration number of this run.
        iteration: u32,
        /// True when an earlier run's branch is continued.
        resumed: bool,
    },
    /// A stage began.
    Stage {
        /// The spec.
        spec: String,
        /// The iteration.
        iteration: u32,
        /// The stage.
        stage: Stage,
        /// The model, for the agent stage.
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// Streamed model text.
    Text {
        /// The spec.
        spec: String,
        /// The text.
        text: String,
    },
    /// The agent retries a call.
    Retry {
        /// The spec.
        spec: String,
        /// The attempt about to start.
        attempt: u32,
        /// The delay in milliseconds.
        delay_ms: u64,
        /// Why.
        reason: String,
    },
    /// A gate or an acceptance criterion's check starts.
    Checking {
        /// The spec.
        spec: String,
        /// The iteration.
        iteration: u32,
        /// The check's name (`build`, `test`, `criterion 2`, …).
        name: String,
        /// Its place among the iteration's checks, from 1.
        index: usize,
        /// How many checks the iteration runs.
        total: usize,
    },
    /// A gate or an acceptance criterion's check finished.
    Checked {
        /// The spec.
        spec: String,
        /// The iteration.
        iteration: u32,
        /// The check's name (`build`, `test`, `criterion 2`, …).
        name: String,
        /// Whether it passed.
        passed: bool,
        /// Its exit code, if it exited.
        exit_code: Option<i32>,
        /// Whether the timeout ended it.
        timed_out: bool,
        /// How long it ran.
        duration_ms: u64,
    },
    /// An iteration was recorded.
    Recorded {
        /// The spec.
        spec: String,
        /// The iteration.
        iteration: u32,
        /// Its status (the `Mmm-Status` trailer).
        status: String,
        /// The commit.
        commit: String,
        /// Tokens used.
        tokens: TokenUsage,
        /// Its cost in USD.
        cost_usd: f64,
        /// Checks passed.
        checks_passed: usize,
        /// Checks run.
        checks_total: usize,
        /// Strategy decisions taken after it.
        decisions: Vec<String>,
    },
    /// The loop stopped.
    Finished {
        /// The spec.
        spec: String,
        /// Why.
        reason: StopReason,
        /// A sentence for humans.
        detail: String,
        /// Iterations recorded by this run.
        iterations: u32,
        /// Cost of this run in USD.
        cost_usd: f64,
        /// Checkpoints of iterations in flight written to the wip ref (only iterations that
        /// ran longer than `checkpoint_after` have one).
        checkpoints: u32,
    },
}

/// The outcome of one spec's loop.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The spec.
    pub spec: String,
    /// The run id.
    pub run: String,
    /// Why it stopped.
    pub reason: StopReason,
    /// A sentence for humans.
    pub detail: String,
    /// Iterations recorded by this run.
    pub iterations: u32,
    /// The last iteration number on the branch.
    pub last_iteration: u32,
    /// Cost of this run in USD.
    pub cost_usd: f64,
    /// Tokens of this run.
    pub tokens: TokenUsage,
    /// Checkpoints written to the wip ref during the run.
    pub checkpoints: u32,
}

/// The loop could not run at all (as opposed to stopping for a reason).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The worktree failed.
    #[error(transparent)]
    Worktree(#[from] super::worktree::WorktreeError),
    /// The prompt could not be built.
    #[error(transparent)]
    Context(#[from] context::ContextError),
    /// The edits could not be applied at all (not one edit: the worktree or the policy).
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    /// The model cannot be priced, so budgets cannot be kept.
    #[error("no price is known for model `{0}`, so mmm cannot keep the budget")]
    UnknownPrice(String),
}

impl EngineError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            EngineError::UnknownPrice(model) => Some(format!(
                "add [prices.\"{model}\"] with input and output prices to .mmm/config.toml, or pick a known model"
            )),
            EngineError::Worktree(_) => {
                Some("run `git mmm doctor` to clean up leftover worktrees".into())
            }
            // These say what to do themselves.
            EngineError::Store(
                StoreError::Busy { .. }
                | StoreError::RefConflict { .. }
                | StoreError::StaleLock { .. }
                | StoreError::ForeignBranch { .. },
            ) => None,
            EngineError::Store(_) => {
                Some("run `git mmm doctor`, then run again: the loop resumes".into())
            }
            _ => None,
        }
    }
}

/// What earlier iterations leave for the next one.
#[derive(Debug, Default)]
struct Memory {
    failures: Vec<context::Failure>,
    problems: Vec<String>,
    touched: BTreeSet<PathBuf>,
    summaries: Vec<String>,
    /// What the strategies count.
    strategy: decide::State,
    /// Reviewers' items in every prompt of this run.
    feedback: Vec<FeedItem>,
    /// What the next recorded iteration's transcript says of the feedback it was first given.
    feedback_record: Option<FeedbackRecord>,
}

/// Runs one spec's loop to a stop condition.
pub fn run_spec(
    services: &Services<'_>,
    job: &Job<'_>,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, EngineError> {
    Loop::new(services, job, events).run()
}

struct Loop<'s, 'j, 'e> {
    s: &'s Services<'s>,
    job: &'j Job<'j>,
    events: &'e mut dyn FnMut(Event),
    spec: SpecId,
    name: String,
    started: Instant,
    memory: Memory,
    rules: Rules,
    spent: Spent,
    run_cost: f64,
    run_tokens: TokenUsage,
    /// The model of the next call: the strategies' state names it as soon as an escalation is
    /// decided, the loop calls it once that iteration is recorded.
    model: String,
    iterations_this_revision: u32,
    iterations_run: u32,
    /// The project metadata and repository map of this run, computed at its first prompt.
    repo: Option<Arc<RepoSnapshot>>,
    /// The worktree's visible files for the context, walked at the first prompt and again only
    /// after a snapshot saw files added or deleted (or the workspace was rolled back).
    tree: Option<Arc<context::Tree>>,
    /// Writes the iteration in flight to the wip ref when it runs long (started with the run).
    checkpoints: Option<Checkpointer>,
    /// The system prompt as last written in full in a transcript note (its iteration's commit
    /// and number). A later prompt record whose system prompt is the same refers to it
    /// instead of repeating some hundred kilobytes (see [`crate::store::SYSTEM_SAME_AS`]).
    written_system: Option<(Oid, u32, Vec<context::PromptBlock>)>,
    /// The system prompt of the iteration in flight, when its record holds it in full.
    pending_system: Option<Vec<context::PromptBlock>>,
}

impl<'s, 'j, 'e> Loop<'s, 'j, 'e> {
    fn new(s: &'s Services<'s>, job: &'j Job<'j>, events: &'e mut dyn FnMut(Event)) -> Self {
        let spec = job.spec.id.clone();
        Loop {
            s,
            job,
            events,
            name: spec.to_string(),
            spec,
            started: Instant::now(),
            memory: Memory {
                strategy: decide::State::new(&job.settings.model),
                ..Memory::default()
            },
            rules: Rules::from(&job.settings),
            spent: Spent::default(),
            run_cost: 0.0,
            run_tokens: TokenUsage::default(),
            model: job.settings.model.clone(),
            iterations_this_revision: 0,
            iterations_run: 0,
            repo: None,
            tree: None,
            checkpoints: None,
            written_system: None,
            pending_system: None,
        }
    }

    /// The loop: iterations, each recorded, until a stop condition.
    fn run(mut self) -> Result<Outcome, EngineError> {
        if let Some(outcome) = self.resume()? {
            return Ok(outcome);
        }
        let mut run = self.s.store.start_run(&self.spec, self.job.base)?;
        // One run of a spec at a time: a second one refuses here, naming the first, before it
        // calls the agent. The claim ends with this function.
        let _claim = self.s.store.claim(&self.spec, &run.id)?;
        let worktree = self.start(&run)?;
        let mut previous_tree = self
            .s
            .store
            .repo()
            .find_commit(run.parent())
            .map(|c| c.tree_id())
            .ok();
        let mut last_iteration = run.next_iteration.saturating_sub(1);
        let (reason, detail) = loop {
            if let Some(stop) = self.stop_before_call(None, 0) {
                break stop;
            }
            let draft = match self.iteration(&mut run, &worktree, previous_tree)? {
                Step::Record(draft) => *draft,
                Step::Stop(reason, detail) => break (reason, detail),
            };
            let (draft, recorded, tree) = self.record_draft(&mut run, &worktree, draft)?;
            previous_tree = Some(tree);
            last_iteration = recorded.iteration;
            if recorded.superseded {
                break (
                    StopReason::Superseded,
                    "another run advanced the branch first; this iteration is kept in the archive"
                        .into(),
                );
            }
            let (passed, total) = (draft.checks_passed, draft.checks_total);
            self.memory
                .strategy
                .recorded(recorded.commit, passed, total);
            // Strategies take effect for the next iteration.
            self.take_strategies(
                &worktree,
                &draft.strategies,
                recorded.commit,
                &mut previous_tree,
            )?;
            if let Some(stop) = draft.stop {
                let awaits = draft
                    .strategies
                    .contains(&decide::Strategy::CheckpointComplete);
                if !(awaits && self.s.review.is_some()) {
                    break stop;
                }
                match self.await_review(recorded.commit)? {
                    Some(stop) => break stop,
                    None => continue,
                }
            }
        };
        self.finish(run, worktree, reason, detail, last_iteration)
    }

    /// Starts the run's checkpoint thread and its worktree.
    fn start(&mut self, run: &Run) -> Result<Worktree, EngineError> {
        let store = self.s.store;
        self.checkpoints = Some(Checkpointer::start(
            store,
            run,
            self.s.redactor.clone(),
            self.job.settings.checkpoint_after,
        )?);
        self.emit(Event::Started {
            spec: self.name.clone(),
            run: run.id.clone(),
            iteration: run.next_iteration,
            resumed: run.tip.is_some(),
        });
        let settings = &self.job.settings;
        let name = format!("{}-{}", self.name, run.id.to_ascii_lowercase());
        let root = settings.worktree_root.as_deref();
        Ok(if settings.keep_worktree {
            Worktree::acquire(
                store.repo(),
                root,
                &self.name,
                &name,
                &settings.ignore,
                run.parent(),
            )?
        } else {
            Worktree::create(store.repo(), root, &name, &settings.ignore, run.parent())?
        })
    }

    /// Ends the run: stops the checkpoints, finishes the run in the store, removes the
    /// worktree and reports.
    fn finish(
        &mut self,
        run: Run,
        worktree: Worktree,
        reason: StopReason,
        mut detail: String,
        last_iteration: u32,
    ) -> Result<Outcome, EngineError> {
        let checkpoints = match self.checkpoints.take().map(Checkpointer::stop) {
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                // Every iteration is recorded; only a checkpoint of one in flight was missed.
                detail.push_str(&format!(" (a checkpoint could not be written: {e})"));
                0
            }
            None => 0,
        };
        self.s.store.finish_run(&run)?;
        if let Err(e) = worktree.close() {
            // Everything is recorded; a leftover worktree is for `git mmm doctor`.
            detail.push_str(&format!(
                " (the worktree could not be removed or released: {e}; run `git mmm doctor`)"
            ));
        }
        self.emit(Event::Finished {
            spec: self.name.clone(),
            reason,
            detail: detail.clone(),
            iterations: self.iterations_run,
            cost_usd: self.run_cost,
            checkpoints,
        });
        Ok(Outcome {
            spec: self.name.clone(),
            run: run.id,
            reason,
            detail,
            iterations: self.iterations_run,
            last_iteration,
            cost_usd: self.run_cost,
            tokens: self.run_tokens,
            checkpoints,
        })
    }

    fn finish_without_run(
        &mut self,
        run: String,
        last_iteration: u32,
        reason: StopReason,
        detail: String,
    ) -> Outcome {
        self.emit(Event::Finished {
            spec: self.name.clone(),
            reason,
            detail: detail.clone(),
            iterations: 0,
            cost_usd: 0.0,
            checkpoints: 0,
        });
        Outcome {
            spec: self.name.clone(),
            run,
            reason,
            detail,
            iterations: 0,
            last_iteration,
            cost_usd: 0.0,
            tokens: TokenUsage::default(),
            checkpoints: 0,
        }
    }

    fn emit(&mut self, e: Event) {
        (self.events)(e);
    }

    /// Reports that a stage of iteration `n` began.
    fn stage(&mut self, n: u32, stage: Stage, model: Option<String>) {
        self.emit(Event::Stage {
            spec: self.name.clone(),
            iteration: n,
            stage,
            model,
        });
    }

    /// Hands something to the checkpoint thread (there is one while a run is under way).
    fn checkpoint(&self, f: impl FnOnce(&Checkpointer)) {
        if let Some(c) = &self.checkpoints {
            f(c);
        }
    }

    /// A redacted record of the run for a note.
    fn record(&self, run: &mut Run, kind: &str, mut value: Value) -> Record {
        self.s.redactor.redact_json(&mut value);
        let mut r = self.s.store.new_record(run, kind);
        match value {
            // A key that names one of the record's own fields (a gate result's `kind`) would
            // be written twice and make the whole note unreadable: it gets the record's kind
            // as a prefix (`gate_kind`).
            Value::Object(map) => {
                for (k, v) in map {
                    let k = if RESERVED_FIELDS.contains(&k.as_str()) {
                        format!("{kind}_{k}")
                    } else {
                        k
                    };
                    r.data.insert(k, v);
                }
            }
            other => {
                r.data.insert("value".into(), other);
            }
        }
        r
    }
}

/// The fields of a [`Record`] itself, which its `data` must not repeat.
const RESERVED_FIELDS: [&str; 6] = ["v", "kind", "id", "run", "seq", "ts"];

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// A stable id of the change between two trees (`None` when it cannot be computed).
fn patch_id(repo: &git2::Repository, old: Option<Oid>, new: Oid) -> Option<String> {
    if old == Some(new) {
        return Some("empty".into());
    }
    let old_tree = old.and_then(|o| repo.find_tree(o).ok());
    let new_tree = repo.find_tree(new).ok()?;
    let diff = repo
        .diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), None)
        .ok()?;
    if diff.deltas().len() == 0 {
        return Some("empty".into());
    }
    diff.patchid(None).ok().map(|id| id.to_string())
}
