//! One spec's loop: iterations until a stop condition, each recorded through the store.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use git2::Oid;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent::{
    Agent, AgentError, AgentEvent, AgentReply, AgentRequest, Cancel, PriceTable, TokenUsage,
};
use crate::apply::{self, ApplyPolicy, CommandPolicy};
use crate::context::{
    self, ContextInput, ContextOptions, Prompt, RepoSnapshot, Templates, TokenBudget,
};
use crate::response::{self, Parsed};
use crate::spec::{Spec, SpecId};
use crate::store::{IterationStatus, NewIteration, Record, Run, Store};
use crate::validate::{self, Gate, GateKind, GateOptions, GateResult};

use super::budget::{self, CallPrice, DailyLedger, Limits, Spent};
use super::checkpoint::Checkpointer;
use super::decide::{self, Observation, Rules, Strategy};
use super::metrics::{Durations, EditCounts, GateMetrics, IterationMetrics};
use super::redact::Redactor;
use super::worktree::{Snapshot, Worktree};

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
    /// model's output was refused again and again.
    Critical,
    /// A required human checkpoint waits for approval.
    Checkpoint,
    /// Another writer advanced the branch first; this run's work is archived.
    Superseded,
    /// A spec it depends on is not complete yet.
    Waiting,
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
            StopReason::Critical => "critical",
            StopReason::Checkpoint => "checkpoint",
            StopReason::Superseded => "superseded",
            StopReason::Waiting => "waiting",
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
            StopReason::MaxIterations | StopReason::Timeout | StopReason::Checkpoint => {
                IterationStatus::Other(self.as_str().to_owned())
            }
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
    /// Iterations in a row with refused edits that count as hostile output (a critical stop).
    pub hostile_after: u32,
    /// Where the run's worktree goes (`None`: `.git/mmm/worktrees/`). Claude Code refuses to
    /// edit files below a `.git` directory, so its runs use a directory outside.
    pub worktree_root: Option<PathBuf>,
    /// An iteration unrecorded for this long is checkpointed to the run's wip ref (and again
    /// each time this long passes with something new); a quicker one is not.
    pub checkpoint_after: Duration,
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
    /// Specs already complete.
    pub completed_specs: Vec<String>,
    /// Review feedback to give the model (from a human checkpoint or a pull request).
    pub review_feedback: Vec<String>,
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

/// What an iteration produced, before it is recorded.
struct Draft {
    status: IterationStatus,
    transcript: Vec<Record>,
    metrics: IterationMetrics,
    summary: String,
    usage: TokenUsage,
    cost: f64,
    checks_passed: usize,
    checks_total: usize,
    decisions: Vec<String>,
    strategies: Vec<Strategy>,
    stop: Option<(StopReason, String)>,
    /// The worktree's snapshot taken for the decision (`None` when none was taken), reused by
    /// the record so that the worktree is not scanned twice.
    tree: Option<Oid>,
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

    fn emit(&mut self, e: Event) {
        (self.events)(e);
    }

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

    fn run(mut self) -> Result<Outcome, EngineError> {
        let store = self.s.store;
        let revision = self.job.spec.revision.clone();
        let history = match store.history(&self.spec) {
            Ok(h) => h,
            Err(crate::store::StoreError::NoBranch { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if let Some(last) = history.last()
            && last.status == Some(IterationStatus::Complete)
            && last.spec_revision.as_deref() == Some(revision.as_str())
        {
            let detail = format!(
                "complete at iteration {} and the spec has not changed since",
                last.n
            );
            return Ok(self.finish_without_run(
                last.run.clone().unwrap_or_default(),
                last.n,
                StopReason::AlreadyComplete,
                detail,
            ));
        }
        // What earlier runs on this branch spent and learned.
        for it in &history {
            if it.spec_revision.as_deref() == Some(revision.as_str()) {
                self.iterations_this_revision += 1;
            }
            if let Ok(detail) = store.iteration(&self.spec, it.n) {
                let metrics = detail.metrics.unwrap_or_default();
                let (usd, tokens) = super::metrics::spend_of(&metrics);
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

        let mut run = store.start_run(&self.spec, self.job.base)?;
        self.checkpoints = Some(Checkpointer::start(
            store,
            &run,
            self.s.redactor.clone(),
            self.job.settings.checkpoint_after,
        )?);
        let start_commit = run.parent();
        self.emit(Event::Started {
            spec: self.name.clone(),
            run: run.id.clone(),
            iteration: run.next_iteration,
            resumed: run.tip.is_some(),
        });
        let worktree = Worktree::create(
            store.repo(),
            self.job.settings.worktree_root.as_deref(),
            &format!("{}-{}", self.name, run.id.to_ascii_lowercase()),
            start_commit,
        )?;
        let mut previous_tree = store
            .repo()
            .find_commit(start_commit)
            .map(|c| c.tree_id())
            .ok();
        let mut last_iteration = run.next_iteration.saturating_sub(1);

        let (reason, detail) = loop {
            if let Some(stop) = self.stop_before_call(None, 0) {
                break stop;
            }
            let n = run.next_iteration;
            let mut draft = match self.iteration(&mut run, &worktree, previous_tree)? {
                Ok(draft) => draft,
                Err(stop) => break stop,
            };
            // Look ahead: a loop that cannot make another call stops now, so that the reason
            // is recorded on this iteration.
            if draft.stop.is_none() {
                draft.stop = self.stop_before_call(Some(draft.usage.total_input()), 1);
            }
            if let Some((reason, _)) = &draft.stop {
                draft.status = reason.trailer_status(&draft.status);
                draft.metrics.stop_reason = Some(*reason);
            }
            draft.metrics.trailer_status = Some(draft.status.clone());
            self.emit(Event::Stage {
                spec: self.name.clone(),
                iteration: n,
                stage: Stage::Record,
                model: None,
            });
            let tree = match draft.tree {
                Some(tree) => tree,
                None => self.scan(&worktree)?,
            };
            let metrics = self.record(&mut run, super::metrics::KIND, draft.metrics.to_value());
            let recorded = store.record_iteration(
                &mut run,
                NewIteration {
                    tree,
                    status: draft.status.clone(),
                    // The summary becomes the commit message: a secret the model echoed in
                    // its `@mmm:summary` must not land there either.
                    summary: self.s.redactor.redact(&draft.summary).into_owned(),
                    body: String::new(),
                    spec_revision: Some(revision.clone()),
                    transcript: draft.transcript,
                    metrics: vec![metrics],
                },
            )?;
            self.checkpoint(|c| c.recorded());
            if let Some(blocks) = self.pending_system.take() {
                self.written_system = Some((recorded.commit, n, blocks));
            }
            worktree.advance(recorded.commit)?;
            previous_tree = Some(tree);
            self.iterations_run += 1;
            self.iterations_this_revision += 1;
            last_iteration = n;
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
            if recorded.superseded {
                break (
                    StopReason::Superseded,
                    "another run advanced the branch first; this iteration is kept in the archive"
                        .into(),
                );
            }
            self.memory
                .strategy
                .recorded(recorded.commit, draft.checks_passed, draft.checks_total);
            // Strategies take effect for the next iteration.
            for strategy in &draft.strategies {
                match strategy {
                    Strategy::RollBack { to, .. } => {
                        if let Ok(good) = Oid::from_str(to) {
                            worktree.reset_to(good)?;
                            worktree.advance(recorded.commit)?;
                            self.tree = None;
                            previous_tree =
                                store.repo().find_commit(good).map(|c| c.tree_id()).ok();
                        }
                    }
                    Strategy::Escalate { to, .. } => self.model = to.clone(),
                    Strategy::FeedBack
                    | Strategy::CheckpointComplete
                    | Strategy::CheckpointIteration => {}
                }
            }
            if let Some(stop) = draft.stop {
                break stop;
            }
        };
        let mut detail = detail;
        let checkpoints = match self.checkpoints.take().map(Checkpointer::stop) {
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                // Every iteration is recorded; only a checkpoint of one in flight was missed.
                detail.push_str(&format!(" (a checkpoint could not be written: {e})"));
                0
            }
            None => 0,
        };
        store.finish_run(&run)?;
        if let Err(e) = worktree.remove() {
            // Everything is recorded; a leftover worktree is for `git mmm doctor`.
            detail.push_str(&format!(
                " (the worktree could not be removed: {e}; run `git mmm doctor`)"
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

    /// Rebuilds what the strategies count (failures in a row, the last good iteration, repeated
    /// changes and failures, refused edits, escalation) from an earlier iteration, so that a
    /// resumed run (or one continued after a checkpoint) decides as an uninterrupted one would:
    /// its observation goes through [`decide::decide`] as it did live. An iteration whose agent
    /// call failed was not decided on live, and is not here.
    fn replay_strategy_state(&mut self, it: &crate::store::Iteration, metrics: &[Record]) {
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

    /// A reason not to make another call: a stop request, the timeout, `max_iterations`, or
    /// (when the next prompt's size is known or estimated) a budget. `pending` counts the
    /// iterations about to be recorded but not yet counted (1 when looking ahead from a draft).
    fn stop_before_call(
        &self,
        next_input: Option<u64>,
        pending: u32,
    ) -> Option<(StopReason, String)> {
        let settings = &self.job.settings;
        if self.s.cancel.is_cancelled() {
            return Some((StopReason::Stopped, "stopped on request".into()));
        }
        if self.started.elapsed() >= settings.timeout {
            return Some((
                StopReason::Timeout,
                format!(
                    "the run's timeout of {} passed",
                    humantime::format_duration(settings.timeout)
                ),
            ));
        }
        let iterations = self.iterations_this_revision + pending;
        if iterations >= settings.max_iterations {
            return Some((
                StopReason::MaxIterations,
                format!(
                    "{iterations} iterations of this spec revision (max_iterations = {})",
                    settings.max_iterations
                ),
            ));
        }
        let input = next_input?;
        // Other loops' calls in flight are left out: they hold their worst case, which rarely
        // comes true; the next call waits for them if it must (see `DailyLedger::reserve`).
        self.budget_check_at(input, self.s.daily.settled()).err()
    }

    /// The tightest USD limit left for the next call (per iteration, per spec, per day), with
    /// `today` USD spent today.
    fn usd_left_at(&self, today: f64) -> Option<f64> {
        let limits = &self.job.settings.limits;
        [
            limits.per_iteration_usd,
            limits.per_spec_usd.map(|l| l - self.spent.spec_usd),
            limits.daily_usd.map(|l| l - today),
        ]
        .into_iter()
        .flatten()
        .map(|l| l.max(0.0))
        .reduce(f64::min)
    }

    /// The price of the model about to be called; a model without one stops the loop, since
    /// no budget could be kept.
    fn price(&self) -> Result<&crate::agent::ModelPrice, (StopReason, String)> {
        self.s.prices.get(&self.model).ok_or_else(|| {
            (
                StopReason::Critical,
                format!(
                    "no price is known for model `{}`, so the budget cannot be kept; add [prices.\"{}\"] to .mmm/config.toml",
                    self.model, self.model
                ),
            )
        })
    }

    /// The budget check with `today` (USD, tokens) spent today: the output cap that keeps every
    /// budget and the call's worst-case cost in USD.
    fn budget_check_at(
        &self,
        input_tokens: u64,
        today: (f64, u64),
    ) -> Result<(u32, f64), (StopReason, String)> {
        let settings = &self.job.settings;
        let price = self.price()?;
        let mut spent = self.spent;
        (spent.daily_usd, spent.daily_tokens) = today;
        match budget::check(
            &settings.limits,
            &spent,
            // An upper bound: input may be written to the cache (dearer than plain input), and
            // a long prompt may be billed at the long-prompt tier.
            CallPrice {
                input: price.input.max(price.cache_write_5m).max(
                    price
                        .long_prompt
                        .as_ref()
                        .map_or(0.0, |t| t.input.max(t.cache_write_5m)),
                ),
                output: price
                    .output
                    .max(price.long_prompt.as_ref().map_or(0.0, |t| t.output)),
            },
            input_tokens,
            settings.max_tokens,
        ) {
            budget::Check::Go {
                max_tokens,
                worst_case_usd,
            } => Ok((max_tokens, worst_case_usd)),
            budget::Check::Exceeded {
                limit,
                left,
                needed,
            } => Err((
                StopReason::Budget,
                format!(
                    "the next call could exceed budget.{limit}: {left:.4} left, the smallest useful call may need {needed:.4}"
                ),
            )),
        }
    }

    /// One iteration up to (not including) the record. `Ok(Err(stop))` means the loop stops
    /// before anything worth recording happened.
    fn iteration(
        &mut self,
        run: &mut Run,
        worktree: &Worktree,
        previous_tree: Option<Oid>,
    ) -> Result<Result<Draft, (StopReason, String)>, EngineError> {
        let n = run.next_iteration;
        let settings = &self.job.settings;
        let mut durations = Durations::default();
        let mut transcript: Vec<Record> = Vec::new();
        self.checkpoint(|c| c.begin(n));

        // Context.
        self.emit(Event::Stage {
            spec: self.name.clone(),
            iteration: n,
            stage: Stage::Context,
            model: None,
        });
        let t = Instant::now();
        let prompt = self.build_prompt(worktree, n)?;
        durations.context_ms = Some(ms(t.elapsed()));

        // Budget, before the call; the call's worst case is held in the day's ledger until
        // its cost is known, so that specs running at once keep the daily cap together.
        // An agent whose cost `max_tokens` does not bound may spend all the USD left. (A model
        // without a price stops the loop at once; only a budget makes the reservation wait.)
        if let Err(stop) = self.price() {
            return Ok(Err(stop));
        }
        let estimate = prompt.token_estimate as u64;
        let daily = self.s.daily;
        let bounded = self.s.agent.output_bounds_cost();
        let cancel = self.s.cancel;
        let reserved = daily.reserve(
            |usd, tokens| {
                let (max_tokens, worst) = self.budget_check_at(estimate, (usd, tokens))?;
                let usd_left = self.usd_left_at(usd);
                let hold = match usd_left {
                    Some(left) if !bounded => worst.max(left),
                    _ => worst,
                };
                Ok((
                    (max_tokens, usd_left),
                    hold,
                    estimate + u64::from(max_tokens),
                ))
            },
            &|| cancel.is_cancelled(),
        );
        let ((max_tokens, usd_left), reservation) = match reserved {
            Ok(r) => r,
            Err(_) if cancel.is_cancelled() => {
                return Ok(Err((StopReason::Stopped, "stopped on request".into())));
            }
            Err(stop) => return Ok(Err(stop)),
        };
        // The system prompt is the same from one iteration to the next (that is what the
        // provider's cache relies on): written once per run, then referred to.
        let system = match &self.written_system {
            Some((commit, k, blocks)) if *blocks == prompt.system => {
                self.pending_system = None;
                json!({crate::store::SYSTEM_SAME_AS: commit.to_string(), "iteration": k})
            }
            _ => {
                self.pending_system = Some(prompt.system.clone());
                json!(prompt.system)
            }
        };
        let prompt_record = self.record(
            run,
            "prompt",
            json!({
                "model": self.model,
                "max_tokens": max_tokens,
                "system": system,
                "user": prompt.user,
                "omitted": prompt.omitted,
                "files": prompt.files,
                "token_estimate": prompt.token_estimate,
                "stable_tokens": prompt.stable_tokens,
            }),
        );
        transcript.push(prompt_record);
        self.checkpoint(|c| c.update(&transcript));
        let streaming = self.s.store.new_record(run, "response");
        self.checkpoint(|c| c.stream_into(streaming));

        // The agent.
        self.emit(Event::Stage {
            spec: self.name.clone(),
            iteration: n,
            stage: Stage::Agent,
            model: Some(self.model.clone()),
        });
        let t = Instant::now();
        let system: Vec<_> = prompt.system.clone();
        let user: Vec<_> = prompt.user.clone();
        let model = self.model.clone();
        let request = AgentRequest {
            system: &system,
            user: &user,
            model: &model,
            max_tokens,
            worktree: worktree.path(),
            iteration: n,
            budget_left_usd: usd_left,
            timeout: settings.timeout.saturating_sub(self.started.elapsed()),
        };
        let name = self.name.clone();
        let events = &mut self.events;
        let checkpoints = self.checkpoints.as_ref();
        let mut forward = |e: AgentEvent| match e {
            AgentEvent::Text(text) => {
                if let Some(c) = checkpoints {
                    c.streamed(&text);
                }
                events(Event::Text {
                    spec: name.clone(),
                    text,
                })
            }
            AgentEvent::Retry {
                attempt,
                delay,
                reason,
            } => events(Event::Retry {
                spec: name.clone(),
                attempt,
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                reason,
            }),
        };
        let reply = self.s.agent.invoke(&request, self.s.cancel, &mut forward);
        durations.agent_ms = Some(ms(t.elapsed()));
        let reply: AgentReply = match reply {
            Ok(reply) => reply,
            Err(err) => return Ok(Ok(self.failed_call(run, transcript, durations, err))),
        };
        let cost = reply.cost_usd.unwrap_or_else(|| {
            self.s
                .prices
                .cost(&reply.model, &(&reply.usage).into())
                // The API may answer with a dated id the table (or an override) does not
                // know: price it as the model that was asked for.
                .or_else(|| self.s.prices.cost(&self.model, &(&reply.usage).into()))
                .unwrap_or(0.0)
        });
        reservation.settle(cost, reply.usage.total());
        self.run_cost += cost;
        self.run_tokens.add(&reply.usage);
        self.spent.spec_usd += cost;
        self.spent.spec_tokens += reply.usage.total();
        let response_record = self.record(
            run,
            "response",
            json!({
                "agent": self.s.agent.kind(),
                "model": reply.model,
                "text": reply.text,
                "stop_reason": reply.stop_reason,
                "attempts": reply.attempts,
                "usage": reply.usage,
                "records": reply.records,
            }),
        );
        transcript.push(response_record);
        self.checkpoint(|c| c.update(&transcript));
        let interrupted_early = self.s.cancel.is_cancelled();

        // Parse and apply.
        self.emit(Event::Stage {
            spec: self.name.clone(),
            iteration: n,
            stage: Stage::Apply,
            model: None,
        });
        let t = Instant::now();
        let parsed = if reply.edits_in_worktree {
            // The agent edited the worktree itself; only directives are read from its text.
            let mut p = response::parse(&reply.text);
            p.edits.clear();
            p.commands.clear();
            p
        } else {
            response::parse(&reply.text)
        };
        let mut problems: Vec<String> = parsed.problems.iter().map(|p| p.to_string()).collect();
        let mut written = Vec::new();
        let (applied, failed, refused) = if interrupted_early {
            (0, 0, 0)
        } else {
            self.apply(
                run,
                worktree,
                &parsed,
                &mut problems,
                &mut transcript,
                &mut written,
            )?
        };
        durations.apply_ms = Some(ms(t.elapsed()));
        self.checkpoint(|c| c.update(&transcript));

        // Validate.
        let t = Instant::now();
        let mut results: Vec<GateResult> = Vec::new();
        // A stop that arrives while the gates run does not void an iteration whose checks all
        // ran: it is recorded for what it is, and the loop stops after it.
        let interrupted = self.s.cancel.is_cancelled();
        if !interrupted {
            self.emit(Event::Stage {
                spec: self.name.clone(),
                iteration: n,
                stage: Stage::Validate,
                model: None,
            });
            for gate in self.gates() {
                let r = validate::run_gate(worktree.path(), &gate, &self.job.settings.gate_options);
                self.emit(Event::Checked {
                    spec: self.name.clone(),
                    iteration: n,
                    name: r.name.clone(),
                    passed: r.passed,
                    exit_code: r.exit_code,
                    timed_out: r.timed_out,
                    duration_ms: r.duration_ms,
                });
                results.push(r);
            }
        }
        durations.validate_ms = Some(ms(t.elapsed()));
        for r in &results {
            let rec = self.record(run, "gate", serde_json::to_value(r).unwrap_or(Value::Null));
            transcript.push(rec);
        }
        self.checkpoint(|c| c.update(&transcript));

        // Decide.
        let t = Instant::now();
        // The snapshot stages what changed: the paths the worktree's watch saw change (gates,
        // commands and agents may write anywhere) and mmm's own edits. Without a watch, just
        // the edits when nothing else ran (no gate, no command, an agent that does not edit
        // files itself, every edit applied whole); otherwise the whole worktree is scanned.
        // An iteration about to be recorded as complete is always scanned in full, so that the
        // final state never rests on the watch.
        let own_edits_only = results.is_empty()
            && self.gates().is_empty()
            && parsed.commands.is_empty()
            && !reply.edits_in_worktree
            && failed == 0;
        let failing: Vec<&GateResult> = results.iter().filter(|r| !r.passed).collect();
        let may_complete = !interrupted
            && parsed.directives.needs_review.is_none()
            && parsed.directives.complete
            && failing.is_empty()
            && problems.is_empty();
        let tree = if may_complete {
            self.scan(worktree)?
        } else {
            self.refresh(worktree, &written, own_edits_only)?
        };
        let checks_passed = results.len() - failing.len();
        let status = if interrupted {
            IterationStatus::Interrupted
        } else if parsed.directives.needs_review.is_some() {
            IterationStatus::NeedsReview
        } else if parsed.directives.complete && failing.is_empty() && problems.is_empty() {
            IterationStatus::Complete
        } else if failing.is_empty() {
            IterationStatus::Passed
        } else {
            IterationStatus::Failed
        };
        let seen = Observation {
            status: status.clone(),
            patch: patch_id(self.s.store.repo(), previous_tree, tree),
            failures: decide::failure_key(
                failing.iter().map(|r| (r.name.as_str(), r.output.as_str())),
            ),
            failing: failing.len(),
            refused,
            needs_review: parsed.directives.needs_review.clone(),
        };
        let (state, decision) = decide::decide(&self.rules, &self.memory.strategy, &seen);
        self.memory.strategy = state;
        let (strategies, stop) = decision.into_parts();
        let decisions: Vec<String> = strategies.iter().map(Strategy::text).collect();
        durations.decide_ms = Some(ms(t.elapsed()));

        // Carry what matters into the next iteration.
        self.memory.failures = failing
            .iter()
            .map(|r| context::Failure {
                name: r.name.clone(),
                command: r.command.clone(),
                output: r.output.clone(),
            })
            .collect();
        self.memory.problems = problems.clone();
        if let Some(s) = &parsed.directives.summary {
            self.memory.summaries.push(format!("iteration {n}: {s}"));
        }

        let summary = parsed
            .directives
            .summary
            .as_deref()
            .map(|s| first_line(s).to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                format!("{status}: {checks_passed}/{} checks passed", results.len())
            });
        let metrics = IterationMetrics {
            iteration: n,
            agent: self.s.agent.kind().to_owned(),
            model: reply.model.clone(),
            status: status.clone(),
            tokens: reply.usage,
            cost_usd: cost,
            attempts: Some(reply.attempts),
            // Redacted with the whole record.
            agent_metrics: (!reply.metrics.is_empty()).then(|| reply.metrics.clone()),
            durations,
            gates: Some(results.iter().map(GateMetrics::from).collect()),
            checks_passed: Some(checks_passed),
            checks_total: Some(results.len()),
            edits: Some(EditCounts {
                applied,
                failed,
                refused,
            }),
            problems: Some(problems.len()),
            decisions: Some(decisions.clone()),
            strategies: strategies.clone(),
            complete_claimed: Some(parsed.directives.complete),
            summary: parsed.directives.summary.clone(),
            ..IterationMetrics::default()
        };
        Ok(Ok(Draft {
            status,
            transcript,
            metrics,
            summary,
            usage: reply.usage,
            cost,
            checks_passed,
            checks_total: results.len(),
            decisions,
            strategies,
            stop,
            tree: Some(tree),
        }))
    }

    fn build_prompt(&mut self, worktree: &Worktree, n: u32) -> Result<Prompt, EngineError> {
        let settings = &self.job.settings;
        let spec = self.job.spec;
        let mut input = ContextInput {
            worktree: worktree.path().to_path_buf(),
            spec_id: self.name.clone(),
            spec_content: spec.content.clone(),
            criteria: spec
                .criteria
                .iter()
                .map(|c| context::CriterionView {
                    text: c.text.clone(),
                    verify: c.verify.clone(),
                    last_result: None,
                })
                .collect(),
            context_globs: spec.context.clone(),
            iteration: n,
            max_iterations: settings.max_iterations.max(n),
            failures: self.memory.failures.clone(),
            review_feedback: self.job.review_feedback.clone(),
            problems: self.memory.problems.clone(),
            touched_files: self.memory.touched.iter().cloned().collect(),
            memory: self.memory.summaries.clone(),
            dependency_summaries: self.job.dependency_summaries.clone(),
            completed_specs: self.job.completed_specs.clone(),
            budget: settings.token_budget,
            options: settings.context.clone(),
            repo: self.repo.clone(),
            tree: self.tree.clone(),
        };
        if input.tree.is_none() {
            let tree = Arc::new(context::walk_tree(&input)?);
            self.tree = Some(tree.clone());
            input.tree = Some(tree);
        }
        if input.repo.is_none() {
            // Once per run, from the worktree at the run's start: the map stays byte-identical
            // (the cached prefix) and 2,000 files are not re-read on every iteration.
            let repo = Arc::new(context::repo_snapshot(&input)?);
            self.repo = Some(repo.clone());
            input.repo = Some(repo);
        }
        Ok(context::build_prompt(&input, self.job.templates)?)
    }

    /// Hands something to the checkpoint thread (there is one while a run is under way).
    fn checkpoint(&self, f: impl FnOnce(&Checkpointer)) {
        if let Some(c) = &self.checkpoints {
            f(c);
        }
    }

    /// Snapshots the worktree; forgets the context's list of files when files were added or
    /// deleted, so that the next prompt walks the worktree again.
    fn scan(&mut self, worktree: &Worktree) -> Result<Oid, EngineError> {
        let snap = worktree.scan()?;
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

    /// [`Loop::scan`] by the cheapest exact way (see [`Worktree::refresh`]).
    fn refresh(
        &mut self,
        worktree: &Worktree,
        written: &[String],
        nothing_else: bool,
    ) -> Result<Oid, EngineError> {
        let snap = worktree.refresh(written, nothing_else)?;
        Ok(self.saw(snap))
    }

    fn gates(&self) -> Vec<Gate> {
        let mut gates = self.job.settings.gates.clone();
        for (i, c) in self.job.spec.criteria.iter().enumerate() {
            if let Some(cmd) = &c.verify {
                gates.push(Gate {
                    name: format!("criterion {}", i + 1),
                    kind: GateKind::Criterion,
                    command: cmd.clone(),
                });
            }
        }
        gates
    }

    /// Applies the parsed edits and runs the allowed commands; returns the counts of applied,
    /// failed and refused edits, and adds the paths of the applied ones to `written`.
    fn apply(
        &mut self,
        run: &mut Run,
        worktree: &Worktree,
        parsed: &Parsed,
        problems: &mut Vec<String>,
        transcript: &mut Vec<Record>,
        written: &mut Vec<String>,
    ) -> Result<(usize, usize, usize), EngineError> {
        let settings = &self.job.settings;
        let report = apply::apply(worktree.path(), &parsed.edits, &settings.apply_policy)?;
        for a in &report.applied {
            self.memory.touched.insert(PathBuf::from(&a.path));
            written.push(a.path.clone());
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
        Ok((
            report.applied.len(),
            report.failed.len(),
            report.refused.len(),
        ))
    }

    /// Records nothing yet: turns a failed agent call into a draft iteration, so that the
    /// attempt and its cause are kept.
    fn failed_call(
        &mut self,
        run: &mut Run,
        mut transcript: Vec<Record>,
        durations: Durations,
        err: AgentError,
    ) -> Draft {
        let (status, stop) = match &err {
            AgentError::Interrupted => (
                IterationStatus::Interrupted,
                Some((
                    StopReason::Stopped,
                    "stopped on request during the model call".to_owned(),
                )),
            ),
            AgentError::Critical { .. } => (
                IterationStatus::Error,
                Some((StopReason::Critical, critical_detail(&err))),
            ),
            // The agent already retried (the API client with backoff); another iteration
            // would only burn the budget of iterations. The next `git mmm run` resumes here.
            AgentError::Failed { .. } => (
                IterationStatus::Error,
                Some((StopReason::Critical, critical_detail(&err))),
            ),
        };
        let rec = self.record(
            run,
            "agent-error",
            json!({"error": err.to_string(), "hint": err.hint()}),
        );
        transcript.push(rec);
        self.memory.problems = vec![format!("the previous model call failed: {err}")];
        // Redacted with the whole record.
        let metrics = IterationMetrics {
            iteration: run.next_iteration,
            agent: self.s.agent.kind().to_owned(),
            model: self.model.clone(),
            status: status.clone(),
            durations,
            error: Some(err.to_string()),
            ..IterationMetrics::default()
        };
        Draft {
            summary: format!("the agent call failed: {}", first_line(&err.to_string())),
            status,
            transcript,
            metrics,
            usage: TokenUsage::default(),
            cost: 0.0,
            checks_passed: 0,
            checks_total: 0,
            decisions: Vec::new(),
            strategies: Vec::new(),
            stop,
            tree: None,
        }
    }
}

/// The fields of a [`Record`] itself, which its `data` must not repeat.
const RESERVED_FIELDS: [&str; 6] = ["v", "kind", "id", "run", "seq", "ts"];

fn critical_detail(err: &AgentError) -> String {
    let message = err.to_string();
    match err.hint() {
        // API errors carry their own hint in the message.
        Some(h) if !h.is_empty() && !message.contains("hint:") => format!("{message} ({h})"),
        _ => message,
    }
}

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
