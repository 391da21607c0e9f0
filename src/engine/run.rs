//! One spec's loop: iterations until a stop condition, each recorded through the store.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use git2::Oid;
use serde::Serialize;
use serde_json::{Value, json};

use crate::agent::{
    Agent, AgentError, AgentEvent, AgentReply, AgentRequest, Cancel, PromptBlock, TokenUsage,
};
use crate::agent::pricing::PriceTable;
use crate::apply::{self, ApplyPolicy, CommandPolicy};
use crate::clock::Clock;
use crate::context::{self, ContextInput, ContextOptions, Templates, TokenBudget};
use crate::response;
use crate::spec::Spec;
use crate::store::{IterationStatus, NewIteration, Record, Run, Store};
use crate::validate::{self, Gate, GateKind, GateOptions, GateResult};

use super::budget::{self, CallPrice, Limits, Spent};
use super::redact::Redactor;
use super::worktree::Worktree;

/// Why a spec's loop stopped. Recorded in the metrics note and, for the last iteration, in the
/// `Mmm-Status` trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Authentication failed, a spend limit was hit, or the model's output was hostile again.
    Critical,
    /// A required human checkpoint is waiting for approval.
    Checkpoint,
    /// Another writer advanced the branch first; this run's work is archived.
    Superseded,
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
    /// The same diff or the same failures this many times in a row means stuck.
    pub stuck_after: u32,
    /// The model to start with.
    pub model: String,
    /// The stronger model to move to after failures.
    pub escalate_to: Option<String>,
    /// Failed iterations in a row before escalating.
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
    /// Refusals in a row (iterations with refused edits) that count as hostile output.
    pub hostile_after: u32,
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
    /// The clock.
    pub clock: &'a dyn Clock,
    /// Removes secrets from everything recorded.
    pub redactor: &'a Redactor,
    /// Set to stop after the current stage.
    pub cancel: &'a Cancel,
    /// What was spent today before this run (all specs).
    pub spent_today: Spent,
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

/// What the loop reports while it runs.
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
    /// An iteration was recorded.
    Recorded {
        /// The spec.
        spec: String,
        /// The iteration.
        iteration: u32,
        /// Its status.
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
            _ => None,
        }
    }
}

/// What one iteration looked at and produced, kept for the next decision.
#[derive(Debug, Clone, Default)]
struct Memory {
    failures: Vec<context::Failure>,
    problems: Vec<String>,
    touched: BTreeSet<PathBuf>,
    summaries: Vec<String>,
    last_patch: Option<String>,
    same_patch: u32,
    last_failure_key: Option<String>,
    same_failures: u32,
    failed_in_a_row: u32,
    hostile_in_a_row: u32,
    /// The last iteration whose gates all passed: (commit, failing checks = 0).
    last_good: Option<(Oid, u32)>,
    last_failing: Option<usize>,
}

/// Runs one spec's loop to a stop condition.
pub fn run_spec(
    services: &Services<'_>,
    job: &Job<'_>,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, EngineError> {
    let spec_id = job.spec.id.clone();
    let spec_name = spec_id.to_string();
    let settings = &job.settings;
    let store = services.store;
    let started = Instant::now();

    // What earlier runs did on this branch: resume numbering, budgets, memory.
    let history = store.history(&spec_id)?;
    let revision = job.spec.revision.clone();
    let same_revision: Vec<_> = history
        .iter()
        .filter(|i| i.spec_revision.as_deref() == Some(revision.as_str()))
        .collect();
    if let Some(last) = history.first()
        && last.status == IterationStatus::Complete
        && last.spec_revision.as_deref() == Some(revision.as_str())
    {
        let outcome = Outcome {
            spec: spec_name.clone(),
            run: last.run.clone(),
            reason: StopReason::AlreadyComplete,
            detail: format!(
                "complete at iteration {} and the spec has not changed since",
                last.iteration
            ),
            iterations: 0,
            last_iteration: last.iteration,
            cost_usd: 0.0,
            tokens: TokenUsage::default(),
        };
        events(Event::Finished {
            spec: spec_name,
            reason: outcome.reason,
            detail: outcome.detail.clone(),
            iterations: 0,
            cost_usd: 0.0,
        });
        return Ok(outcome);
    }
    let mut spent_spec = Spent {
        daily_usd: services.spent_today.daily_usd,
        daily_tokens: services.spent_today.daily_tokens,
        ..Spent::default()
    };
    for it in &history {
        let (usd, tokens) = iteration_spend(store, &spec_id, it.iteration);
        spent_spec.spec_usd += usd;
        spent_spec.spec_tokens += tokens;
    }
    let mut memory = Memory::default();
    for it in history.iter().rev() {
        if let Ok(detail) = store.iteration(&spec_id, it.iteration) {
            remember_from_notes(&mut memory, &detail.metrics, &detail.transcript);
        }
    }

    let mut run = store.start_run(&spec_id, job.base)?;
    let start_commit = run.tip.unwrap_or(job.base);
    events(Event::Started {
        spec: spec_name.clone(),
        run: run.id.clone(),
        iteration: run.next_iteration,
        resumed: run.tip.is_some(),
    });
    let worktree_name = format!("{}-{}", spec_name, run.id.to_ascii_lowercase());
    let worktree = Worktree::create(store.repo(), &worktree_name, start_commit)?;
    let mut previous_tree = store.repo().find_commit(start_commit).and_then(|c| Ok(c.tree_id())).ok();

    let deadline = started + settings.timeout;
    let mut iterations_run = 0u32;
    let mut run_cost = 0.0f64;
    let mut run_tokens = TokenUsage::default();
    let mut iterations_this_revision = same_revision.len() as u32;
    let mut model = settings.model.clone();
    let mut last_iteration = run.next_iteration.saturating_sub(1);

    let (reason, detail) = loop {
        let n = run.next_iteration;
        // Stop conditions that need no call.
        if services.cancel.is_cancelled() {
            break (StopReason::Stopped, "stopped before the next iteration".to_owned());
        }
        if Instant::now() >= deadline {
            break (
                StopReason::Timeout,
                format!(
                    "the run's timeout of {} passed",
                    humantime::format_duration(settings.timeout)
                ),
            );
        }
        if iterations_this_revision >= settings.max_iterations {
            break (
                StopReason::MaxIterations,
                format!(
                    "{} iterations of this spec revision (max_iterations = {})",
                    iterations_this_revision, settings.max_iterations
                ),
            );
        }

        // Context.
        let mut durations = serde_json::Map::new();
        let t = Instant::now();
        events(Event::Stage {
            spec: spec_name.clone(),
            iteration: n,
            stage: Stage::Context,
            model: None,
        });
        let input = ContextInput {
            worktree: worktree.path().to_path_buf(),
            spec_id: spec_name.clone(),
            spec_content: job.spec.content.clone(),
            criteria: job
                .spec
                .criteria
                .iter()
                .map(|c| context::CriterionView {
                    text: c.text.clone(),
                    verify: c.verify.clone(),
                    last_result: None,
                })
                .collect(),
            context_globs: job.spec.context.clone(),
            iteration: n,
            max_iterations: settings.max_iterations.max(n),
            failures: memory.failures.clone(),
            review_feedback: job.review_feedback.clone(),
            problems: memory.problems.clone(),
            touched_files: memory.touched.iter().cloned().collect(),
            memory: memory.summaries.clone(),
            dependency_summaries: job.dependency_summaries.clone(),
            completed_specs: job.completed_specs.clone(),
            budget: settings.token_budget,
            options: settings.context.clone(),
        };
        let prompt = context::build(&input, job.templates)?;
        durations.insert("context_ms".into(), ms(t.elapsed()));

        // Budget, before the call.
        let price = services
            .prices
            .call_price(&model, prompt.token_estimate)
            .ok_or_else(|| EngineError::UnknownPrice(model.clone()))?;
        let mut spent_now = spent_spec;
        spent_now.daily_usd = services.spent_today.daily_usd + run_cost;
        spent_now.daily_tokens = services.spent_today.daily_tokens + run_tokens.total();
        let max_tokens = match budget::check(
            &settings.limits,
            &spent_now,
            CallPrice {
                input: price.0,
                output: price.1,
            },
            prompt.token_estimate,
            settings.max_tokens,
        ) {
            budget::Check::Go { max_tokens, .. } => max_tokens,
            budget::Check::Exceeded {
                limit,
                left,
                needed,
            } => {
                break (
                    StopReason::Budget,
                    format!(
                        "the next call could exceed budget.{limit}: {left:.4} left, the smallest useful call needs up to {needed:.4}"
                    ),
                );
            }
        };

        let mut seq_records: Vec<Record> = Vec::new();
        let mut prompt_record = json!({
            "model": model,
            "max_tokens": max_tokens,
            "system": prompt.system,
            "user": prompt.user,
            "omitted": prompt.omitted,
            "token_estimate": prompt.token_estimate,
            "stable_tokens": prompt.stable_tokens,
        });
        services.redactor.redact_json(&mut prompt_record);
        seq_records.push(store.record(&mut run, "prompt", prompt_record));
        store.checkpoint(&mut run, &seq_records)?;

        // The agent.
        events(Event::Stage {
            spec: spec_name.clone(),
            iteration: n,
            stage: Stage::Agent,
            model: Some(model.clone()),
        });
        let t = Instant::now();
        let system: Vec<PromptBlock> = prompt.system.iter().map(to_block).collect();
        let user: Vec<PromptBlock> = prompt.user.iter().map(to_block).collect();
        let request = AgentRequest {
            system: &system,
            user: &user,
            model: &model,
            max_tokens,
            worktree: worktree.path(),
            iteration: n,
            budget_left_usd: settings
                .limits
                .per_spec_usd
                .map(|l| (l - spent_spec.spec_usd).max(0.0)),
            timeout: deadline.saturating_duration_since(Instant::now()),
        };
        let reply = {
            let spec_name = spec_name.clone();
            let mut forward = |e: AgentEvent| match e {
                AgentEvent::Text(text) => events(Event::Text {
                    spec: spec_name.clone(),
                    text,
                }),
                AgentEvent::Retry {
                    attempt,
                    delay,
                    reason,
                } => events(Event::Retry {
                    spec: spec_name.clone(),
                    attempt,
                    delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    reason,
                }),
            };
            services.agent.invoke(&request, services.cancel, &mut forward)
        };
        durations.insert("agent_ms".into(), ms(t.elapsed()));

        let mut decisions: Vec<String> = Vec::new();
        let reply: AgentReply = match reply {
            Ok(reply) => reply,
            Err(err) => {
                // The call failed: record the iteration so the attempt and its cause are kept.
                let (status, stop) = match &err {
                    AgentError::Interrupted => (IterationStatus::Interrupted, Some(StopReason::Stopped)),
                    AgentError::Critical { .. } => (IterationStatus::Failed, Some(StopReason::Critical)),
                    AgentError::Failed { .. } => {
                        memory.failed_in_a_row += 1;
                        let stop = (memory.failed_in_a_row >= 2).then_some(StopReason::Critical);
                        (IterationStatus::Failed, stop)
                    }
                };
                let mut err_record = json!({
                    "error": err.to_string(),
                    "hint": err.hint(),
                });
                services.redactor.redact_json(&mut err_record);
                seq_records.push(store.record(&mut run, "agent-error", err_record));
                let tree = worktree.snapshot()?;
                let metrics = json!({
                    "model": model,
                    "status": status.to_string(),
                    "tokens": TokenUsage::default(),
                    "cost_usd": 0.0,
                    "durations": durations,
                    "stop_reason": stop.map(StopReason::as_str),
                    "error": err.to_string(),
                });
                let metrics_records = vec![store.record(&mut run, "metrics", metrics)];
                let recorded = store.record_iteration(
                    &mut run,
                    NewIteration {
                        tree,
                        status: status.clone(),
                        summary: format!("agent call failed: {}", first_line(&err.to_string())),
                        spec_revision: Some(revision.clone()),
                        transcript: seq_records,
                        metrics: metrics_records,
                    },
                )?;
                worktree.advance(recorded.commit)?;
                iterations_run += 1;
                iterations_this_revision += 1;
                last_iteration = n;
                events(Event::Recorded {
                    spec: spec_name.clone(),
                    iteration: n,
                    status: status.to_string(),
                    commit: recorded.commit.to_string(),
                    tokens: TokenUsage::default(),
                    cost_usd: 0.0,
                    checks_passed: 0,
                    checks_total: 0,
                    decisions: Vec::new(),
                });
                if recorded.superseded {
                    break (StopReason::Superseded, "another run advanced the branch first; this iteration is archived".into());
                }
                if let Some(stop) = stop {
                    let mut detail = err.to_string();
                    if let Some(h) = err.hint() {
                        detail.push_str(&format!(" ({h})"));
                    }
                    break (stop, detail);
                }
                continue;
            }
        };
        memory.failed_in_a_row = 0;
        let cost = reply.cost_usd.unwrap_or_else(|| {
            services
                .prices
                .cost(&reply.model, &reply.usage)
                .unwrap_or(0.0)
        });
        run_cost += cost;
        run_tokens.add(&reply.usage);
        spent_spec.spec_usd += cost;
        spent_spec.spec_tokens += reply.usage.total();
        let mut response_record = json!({
            "model": reply.model,
            "text": reply.text,
            "stop_reason": reply.stop_reason,
            "attempts": reply.attempts,
            "agent": services.agent.kind(),
            "records": reply.records,
        });
        services.redactor.redact_json(&mut response_record);
        seq_records.push(store.record(&mut run, "response", response_record));
        store.checkpoint(&mut run, &seq_records)?;
        let stop_after_stage = services.cancel.is_cancelled();

        // Parse and apply.
        events(Event::Stage {
            spec: spec_name.clone(),
            iteration: n,
            stage: Stage::Apply,
            model: None,
        });
        let t = Instant::now();
        let parsed = response::parse(&reply.text);
        let mut problems: Vec<String> = parsed
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect();
        let mut edits_applied = 0usize;
        let mut edits_failed = 0usize;
        let mut edits_refused = 0usize;
        if !reply.edits_in_worktree && !stop_after_stage {
            let report = apply::apply(worktree.path(), &parsed.edits, &settings.apply_policy);
            edits_applied = report.applied.len();
            edits_failed = report.failed.len();
            edits_refused = report.refused.len();
            for a in &report.applied {
                memory.touched.insert(a.path.clone());
            }
            for f in &report.failed {
                problems.push(format!("edit of {} failed: {}", f.path.display(), f.reason));
            }
            for r in &report.refused {
                problems.push(format!("edit of {} refused: {}", r.path.display(), r.reason));
            }
            let mut edits_record = serde_json::to_value(&report).unwrap_or(Value::Null);
            services.redactor.redact_json(&mut edits_record);
            seq_records.push(store.record(&mut run, "edits", json!({
                "report": edits_record,
                "problems": problems,
            })));
            for command in &parsed.commands {
                let outcome = apply::run_command(worktree.path(), command, &settings.command_policy);
                let mut rec = serde_json::to_value(&outcome).unwrap_or(Value::Null);
                services.redactor.redact_json(&mut rec);
                seq_records.push(store.record(&mut run, "command", json!({
                    "command": command,
                    "outcome": rec,
                })));
                if !outcome.allowed {
                    problems.push(format!("command `{command}` was not run: {}", outcome.reason.clone().unwrap_or_default()));
                }
            }
        }
        durations.insert("apply_ms".into(), ms(t.elapsed()));

        // Validate.
        let mut results: Vec<GateResult> = Vec::new();
        let t = Instant::now();
        if !stop_after_stage && !services.cancel.is_cancelled() {
            events(Event::Stage {
                spec: spec_name.clone(),
                iteration: n,
                stage: Stage::Validate,
                model: None,
            });
            let mut gates = settings.gates.clone();
            for (i, c) in job.spec.criteria.iter().enumerate() {
                if let Some(cmd) = &c.verify {
                    gates.push(Gate {
                        name: format!("criterion {}", i + 1),
                        kind: GateKind::Criterion,
                        command: cmd.clone(),
                    });
                }
            }
            results = validate::run_gates(worktree.path(), &gates, &settings.gate_options);
        }
        durations.insert("validate_ms".into(), ms(t.elapsed()));
        let interrupted = stop_after_stage || services.cancel.is_cancelled();

        // Decide.
        let t = Instant::now();
        let tree = worktree.snapshot()?;
        let failing: Vec<&GateResult> = results.iter().filter(|r| !r.passed).collect();
        let all_passed = failing.is_empty();
        let status = if interrupted {
            IterationStatus::Interrupted
        } else if parsed.directives.needs_review.is_some() {
            IterationStatus::NeedsReview
        } else if parsed.directives.complete && all_passed && problems.is_empty() {
            IterationStatus::Complete
        } else if all_passed {
            IterationStatus::Passed
        } else {
            IterationStatus::Failed
        };

        let patch = patch_id(store.repo(), previous_tree, tree);
        if patch.is_some() && patch == memory.last_patch {
            memory.same_patch += 1;
        } else {
            memory.same_patch = 1;
        }
        memory.last_patch = patch;
        let failure_key = (!failing.is_empty()).then(|| failure_key(&failing));
        if failure_key.is_some() && failure_key == memory.last_failure_key {
            memory.same_failures += 1;
        } else {
            memory.same_failures = 1;
        }
        memory.last_failure_key = failure_key;
        memory.hostile_in_a_row = if edits_refused > 0 { memory.hostile_in_a_row + 1 } else { 0 };

        let mut stop: Option<(StopReason, String)> = None;
        match status {
            IterationStatus::Complete => {
                if settings.checkpoint_after_complete {
                    decisions.push("checkpoint: waiting for a human to approve the completed spec".into());
                    stop = Some((StopReason::Checkpoint, "complete; a required checkpoint waits for approval".into()));
                } else {
                    stop = Some((StopReason::Complete, "the model said complete and every check passed".into()));
                }
            }
            IterationStatus::NeedsReview => {
                let why = parsed.directives.needs_review.clone().unwrap_or_default();
                stop = Some((StopReason::NeedsReview, format!("the model asked for a human: {why}")));
            }
            IterationStatus::Interrupted => {
                stop = Some((StopReason::Stopped, "stopped by request; the iteration is recorded as interrupted".into()));
            }
            _ => {}
        }
        if stop.is_none() && memory.hostile_in_a_row >= settings.hostile_after.max(1) {
            stop = Some((
                StopReason::Critical,
                format!("the model's edits were refused in {} iterations in a row", memory.hostile_in_a_row),
            ));
        }
        if stop.is_none() && settings.stuck_after > 0 {
            if memory.same_patch >= settings.stuck_after {
                stop = Some((StopReason::Stuck, format!("the same change {} times in a row", memory.same_patch)));
            } else if memory.same_failures >= settings.stuck_after {
                stop = Some((StopReason::Stuck, format!("the same failing checks {} times in a row", memory.same_failures)));
            }
        }
        // Strategies after a failed iteration.
        if status == IterationStatus::Failed {
            decisions.push("feed the failures back".into());
            if let (Some((good, _)), Some(prev)) = (memory.last_good, memory.last_failing)
                && failing.len() > prev
            {
                decisions.push(format!(
                    "roll the workspace back to the last good iteration ({}) because this one made things worse",
                    short(good)
                ));
            }
            let failed_so_far = memory.failed_in_a_row_gates + 1;
            if let Some(stronger) = &settings.escalate_to
                && failed_so_far >= settings.escalate_after
                && *stronger != model
            {
                decisions.push(format!("escalate from {model} to {stronger}"));
            }
        }
        if stop.is_none() && settings.checkpoint_after_iteration {
            decisions.push("checkpoint: waiting for a human after this iteration".into());
            stop = Some((StopReason::Checkpoint, "a required checkpoint after each iteration waits for approval".into()));
        }
        if stop.is_none() && iterations_this_revision + 1 >= settings.max_iterations {
            // Recorded as the stop reason of the last iteration, so the trailer tells it.
            stop = Some((
                StopReason::MaxIterations,
                format!("{} iterations of this spec revision (max_iterations = {})", iterations_this_revision + 1, settings.max_iterations),
            ));
        }

        // Record.
        events(Event::Stage {
            spec: spec_name.clone(),
            iteration: n,
            stage: Stage::Record,
            model: None,
        });
        for r in &results {
            let mut rec = serde_json::to_value(r).unwrap_or(Value::Null);
            services.redactor.redact_json(&mut rec);
            seq_records.push(store.record(&mut run, "gate", rec));
        }
        let checks_passed = results.iter().filter(|r| r.passed).count();
        let mut metrics = json!({
            "model": reply.model,
            "agent": services.agent.kind(),
            "status": status.to_string(),
            "tokens": reply.usage,
            "cost_usd": cost,
            "attempts": reply.attempts,
            "durations": durations,
            "gates": results.iter().map(|r| json!({
                "name": r.name, "kind": r.kind, "passed": r.passed,
                "exit_code": r.exit_code, "duration_ms": r.duration_ms, "timed_out": r.timed_out,
            })).collect::<Vec<_>>(),
            "checks_passed": checks_passed,
            "checks_total": results.len(),
            "edits": {"applied": edits_applied, "failed": edits_failed, "refused": edits_refused},
            "problems": problems.len(),
            "decisions": decisions,
            "stop_reason": stop.as_ref().map(|s| s.0.as_str()),
            "summary": parsed.directives.summary,
        });
        services.redactor.redact_json(&mut metrics);
        let metrics_records = vec![store.record(&mut run, "metrics", metrics)];
        let summary = parsed
            .directives
            .summary
            .clone()
            .map(|s| first_line(&s).to_owned())
            .unwrap_or_else(|| format!("{status}, {checks_passed}/{} checks passed", results.len()));
        let mut record_status = status.clone();
        if let Some((StopReason::Stuck, _)) = &stop {
            record_status = IterationStatus::Stuck;
        }
        let recorded = store.record_iteration(
            &mut run,
            NewIteration {
                tree,
                status: record_status.clone(),
                summary,
                spec_revision: Some(revision.clone()),
                transcript: seq_records,
                metrics: metrics_records,
            },
        )?;
        worktree.advance(recorded.commit)?;
        previous_tree = Some(tree);
        iterations_run += 1;
        iterations_this_revision += 1;
        last_iteration = n;
        let _ = durations.insert("record_ms".into(), ms(t.elapsed()));
        events(Event::Recorded {
            spec: spec_name.clone(),
            iteration: n,
            status: record_status.to_string(),
            commit: recorded.commit.to_string(),
            tokens: reply.usage,
            cost_usd: cost,
            checks_passed,
            checks_total: results.len(),
            decisions: decisions.clone(),
        });
        if recorded.superseded {
            break (
                StopReason::Superseded,
                "another run advanced the branch first; this iteration is archived".into(),
            );
        }

        // Carry what matters into the next iteration.
        memory.failures = failing
            .iter()
            .map(|r| context::Failure {
                name: r.name.clone(),
                command: r.command.clone(),
                output: r.output.clone(),
            })
            .collect();
        memory.problems = problems;
        if let Some(s) = parsed.directives.summary.clone() {
            memory.summaries.push(format!("iteration {n}: {s}"));
        }
        if all_passed {
            memory.last_good = Some((recorded.commit, 0));
            memory.failed_in_a_row_gates = 0;
        } else {
            memory.failed_in_a_row_gates += 1;
        }
        memory.last_failing = Some(failing.len());
        for d in &decisions {
            if d.starts_with("roll the workspace back")
                && let Some((good, _)) = memory.last_good
            {
                worktree.reset_to(good)?;
                worktree.advance(recorded.commit)?;
            }
            if d.starts_with("escalate")
                && let Some(stronger) = &settings.escalate_to
            {
                model = stronger.clone();
            }
        }
        if let Some(stop) = stop {
            break stop;
        }
    };

    worktree.remove()?;
    store.finish_run(&run)?;
    events(Event::Finished {
        spec: spec_name.clone(),
        reason,
        detail: detail.clone(),
        iterations: iterations_run,
        cost_usd: run_cost,
    });
    Ok(Outcome {
        spec: spec_name,
        run: run.id.clone(),
        reason,
        detail,
        iterations: iterations_run,
        last_iteration,
        cost_usd: run_cost,
        tokens: run_tokens,
    })
}

fn to_block(b: &context::PromptBlock) -> PromptBlock {
    PromptBlock {
        text: b.text.clone(),
        cache: b.cache,
    }
}

fn ms(d: Duration) -> Value {
    Value::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

fn short(oid: Oid) -> String {
    oid.to_string()[..10].to_owned()
}

/// Identifies failing checks by name and output with digits removed, so timings and
/// addresses do not make two identical failures look different.
fn failure_key(failing: &[&GateResult]) -> String {
    let mut parts: Vec<String> = failing
        .iter()
        .map(|r| {
            let out: String = r.output.chars().filter(|c| !c.is_ascii_digit()).collect();
            format!("{}\u{0}{}", r.name, out)
        })
        .collect();
    parts.sort();
    parts.join("\u{1}")
}

/// A stable id of the change between two trees (`None` when it cannot be computed).
fn patch_id(repo: &git2::Repository, old: Option<Oid>, new: Oid) -> Option<String> {
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

/// Cost and tokens of a recorded iteration, from its metrics note.
fn iteration_spend(store: &Store, spec: &crate::spec::SpecId, n: u32) -> (f64, u64) {
    let Ok(detail) = store.iteration(spec, n) else {
        return (0.0, 0);
    };
    let mut usd = 0.0;
    let mut tokens = 0;
    for m in detail.metrics.iter().filter(|r| r.kind == "metrics") {
        usd += m.data.get("cost_usd").and_then(Value::as_f64).unwrap_or(0.0);
        if let Some(t) = m.data.get("tokens")
            && let Ok(u) = serde_json::from_value::<TokenUsage>(t.clone())
        {
            tokens += u.total();
        }
    }
    (usd, tokens)
}

/// Restores memory (summaries, touched files) from an earlier iteration's notes, so that a
/// resumed run knows what came before.
fn remember_from_notes(memory: &mut Memory, metrics: &[Record], transcript: &[Record]) {
    for m in metrics.iter().filter(|r| r.kind == "metrics") {
        if let Some(s) = m.data.get("summary").and_then(Value::as_str) {
            memory.summaries.push(s.to_owned());
        }
    }
    for t in transcript.iter().filter(|r| r.kind == "edits") {
        if let Some(applied) = t
            .data
            .get("report")
            .and_then(|r| r.get("applied"))
            .and_then(Value::as_array)
        {
            for a in applied {
                if let Some(p) = a.get("path").and_then(Value::as_str) {
                    memory.touched.insert(PathBuf::from(p));
                }
            }
        }
    }
    let _ = SystemTime::now;
}
