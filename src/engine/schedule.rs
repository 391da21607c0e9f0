//! Several specs at once: which specs a run takes, when each starts, how many run together,
//! the settings each loop gets, and what was already spent today.
//!
//! Owns: the order in which specs start (a spec starts once the specs it depends on are
//! complete, and is reported `waiting` when one of them did not complete), the `[loop]
//! concurrency` limit, one thread per running loop with its own store, agent and worktree, and
//! stopping the other loops when one fails. The daily budget is shared through the caller's
//! [`DailyLedger`]. Must not print or read the environment: the caller builds the store and the
//! agent of each loop ([`LoopFactory`]), and receives the loops' [`Event`]s on its own thread.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use git2::Oid;

use crate::agent::{Agent, Cancel, PriceTable};
use crate::apply::{ApplyPolicy, CommandPolicy};
use crate::config::{AgentKind, CheckpointAfter, Config};
use crate::context::{ContextOptions, Templates, TokenBudget};
use crate::spec::{Spec, SpecSet};
use crate::store::{IterationStatus, Store};
use crate::validate::{Gate, GateKind, GateOptions};

use super::budget::{DailyLedger, Limits, Spent};
use super::metrics::spend_of;
use super::redact::Redactor;
use super::run::{EngineError, Event, Job, Outcome, Services, Settings, StopReason, run_spec};

/// What only the caller can make for each loop, in that loop's thread: a store of its own and
/// the agent (keys, clocks and paths come from the caller's environment).
pub trait LoopFactory: Sync {
    /// The caller's error, handed back as [`LoopError::Setup`].
    type Error: Send;
    /// Opens the repository's store for one loop.
    fn store(&self) -> Result<Store, Self::Error>;
    /// Builds an agent of this kind.
    fn agent(&self, kind: AgentKind) -> Result<Box<dyn Agent>, Self::Error>;
}

/// Settings given for the whole run (on the command line): they win over a spec's front matter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pinned {
    /// The model was given: a spec's `model` is ignored.
    pub model: bool,
    /// The iteration limit was given: a spec's `max_iterations` is ignored.
    pub max_iterations: bool,
}

/// Everything a run of several specs needs, built by the caller.
pub struct Schedule<'a, F> {
    /// The configuration.
    pub config: &'a Config,
    /// What the command line fixed for every spec.
    pub pinned: Pinned,
    /// Every spec (to know which are complete at their current revision).
    pub specs: &'a SpecSet,
    /// The specs to run, in dependency order.
    pub selected: Vec<&'a Spec>,
    /// The commit new branches start from.
    pub base: Oid,
    /// The prompt templates.
    pub templates: &'a Templates,
    /// Prices for cost and budgets.
    pub prices: &'a PriceTable,
    /// Removes secrets from everything recorded; gates and the model's commands run without
    /// the variables it holds ([`Redactor::hidden_env`]).
    pub redactor: &'a Redactor,
    /// Today's spend, shared by the loops running at once.
    pub daily: &'a DailyLedger,
    /// Makes each loop's store and agent.
    pub factory: &'a F,
    /// The temporary directory: Claude Code's worktrees go below it.
    pub temp_dir: PathBuf,
    /// Set to stop the whole run: no spec starts after it.
    pub interrupt: &'a Cancel,
    /// The stop flags of the loops running now, for whoever stops one.
    pub running: &'a Running,
}

/// A loop could not run (as opposed to stopping for a reason).
#[derive(Debug, thiserror::Error)]
pub enum LoopError<E> {
    /// The caller could not make the loop's store or agent.
    #[error("{0}")]
    Setup(E),
    /// The spec asks for an agent mmm does not know.
    #[error(transparent)]
    UnknownAgent(#[from] UnknownAgent),
    /// The engine failed.
    #[error("spec `{spec}`")]
    Engine {
        /// The spec.
        spec: String,
        /// What failed.
        #[source]
        error: EngineError,
    },
    /// The loop's thread panicked.
    #[error(transparent)]
    Panicked(#[from] Panicked),
}

/// A loop's thread panicked.
#[derive(Debug, thiserror::Error)]
#[error(
    "the loop of spec `{spec}` panicked; its recorded iterations are kept, \
     `git mmm doctor` then `git mmm run` resume it"
)]
pub struct Panicked {
    /// The spec.
    pub spec: String,
}

/// A spec's front matter names an agent mmm does not know.
#[derive(Debug, thiserror::Error)]
#[error("spec `{spec}` asks for an unknown agent `{kind}`")]
pub struct UnknownAgent {
    /// The spec.
    pub spec: String,
    /// The agent it asks for.
    pub kind: String,
}

impl UnknownAgent {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        "agents: api, claude-code, command, scripted"
    }
}

/// How a run of several specs ended.
#[derive(Debug)]
pub struct Report<E> {
    /// The outcome of every loop that ran, in the order the specs were selected.
    pub outcomes: Vec<Outcome>,
    /// The first loop that could not run; no spec started after it, and the loops running
    /// then stopped after their current stage.
    pub failure: Option<LoopError<E>>,
}

/// The stop flags of the loops running now, by spec: whoever stops a loop (Ctrl-C, `git mmm
/// stop`) finds it here.
#[derive(Debug, Clone, Default)]
pub struct Running(Arc<Mutex<BTreeMap<String, Cancel>>>);

impl Running {
    /// No loop running.
    pub fn new() -> Running {
        Running::default()
    }

    /// The loops running now, by spec, with their stop flags.
    pub fn loops(&self) -> Vec<(String, Cancel)> {
        self.lock()
            .iter()
            .map(|(s, c)| (s.clone(), c.clone()))
            .collect()
    }

    /// Stops every running loop after its current stage.
    pub fn cancel_all(&self) {
        for cancel in self.lock().values() {
            cancel.cancel();
        }
    }

    /// Registers a loop about to start; its flag is already set if the run was interrupted.
    fn start(&self, spec: &str, interrupt: &Cancel) -> Cancel {
        let cancel = Cancel::new();
        let mut running = self.lock();
        running.insert(spec.to_owned(), cancel.clone());
        // An interrupt between the caller's check and the insert saw no entry.
        if interrupt.is_cancelled() {
            cancel.cancel();
        }
        cancel
    }

    fn remove(&self, spec: &str) {
        self.lock().remove(spec);
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Cancel>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<F: LoopFactory> Schedule<'_, F> {
    /// How many loops run at once: `[loop] concurrency`, at least one, at most one per spec.
    pub fn concurrency(&self) -> usize {
        usize::try_from(self.config.r#loop.concurrency)
            .unwrap_or(1)
            .clamp(1, self.selected.len().max(1))
    }
}

/// From a loop's thread to the scheduler.
enum Message<E> {
    Event(Box<Event>),
    Done(String, Result<Outcome, LoopError<E>>),
}

/// What the scheduler knows of a spec's dependencies when it starts it.
struct Deps {
    summaries: Vec<(String, String)>,
    completed: Vec<String>,
}

/// Runs the selected specs, up to [`Schedule::concurrency`] at once, each in a thread with its
/// own store, agent and worktree. `store` is the caller's, read on this thread; the loops'
/// events come back to `events`, on this thread too.
pub fn run<F: LoopFactory>(
    schedule: &Schedule<'_, F>,
    store: &Store,
    events: &mut dyn FnMut(Event),
) -> Report<F::Error> {
    let mut queue = Queue {
        pending: schedule.selected.clone(),
        active: BTreeSet::new(),
        complete: complete_specs(store, schedule.specs),
    };
    let concurrency = schedule.concurrency();
    let mut outcomes = Vec::new();
    let mut failure = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Message<F::Error>>();
        loop {
            while failure.is_none() && !schedule.interrupt.is_cancelled() {
                match queue.next(concurrency) {
                    Some(Ready::Start(spec)) => {
                        let cancel = schedule.running.start(spec.id.as_str(), schedule.interrupt);
                        let deps = Deps {
                            summaries: dependency_summaries(store, spec),
                            completed: queue.complete.iter().cloned().collect(),
                        };
                        let tx = tx.clone();
                        scope.spawn(move || run_thread(schedule, spec, deps, &cancel, &tx));
                    }
                    Some(Ready::Waiting(spec, waiting)) => events(Event::Finished {
                        spec: spec.id.to_string(),
                        reason: StopReason::Waiting,
                        detail: format!("waiting for {} to complete first", waiting.join(", ")),
                        iterations: 0,
                        cost_usd: 0.0,
                        checkpoints: 0,
                    }),
                    None => break,
                }
            }
            if queue.active.is_empty() {
                break;
            }
            match rx.recv() {
                Ok(Message::Event(e)) => events(*e),
                Ok(Message::Done(spec, result)) => {
                    queue.active.remove(&spec);
                    schedule.running.remove(&spec);
                    match result {
                        Ok(outcome) => {
                            if outcome.reason.is_complete() {
                                queue.complete.insert(spec);
                            }
                            outcomes.push(outcome);
                        }
                        Err(e) => {
                            // No new spec starts; the ones running stop after their current
                            // stage, recording it as interrupted.
                            failure.get_or_insert(e);
                            schedule.running.cancel_all();
                        }
                    }
                }
                Err(_) => break,
            }
        }
    });
    // In the order the specs were selected (dependency order), not the order they finished.
    outcomes.sort_by_key(|o: &Outcome| {
        schedule
            .selected
            .iter()
            .position(|s| s.id.as_str() == o.spec)
    });
    Report { outcomes, failure }
}

/// The specs not started yet and those running.
struct Queue<'a> {
    pending: Vec<&'a Spec>,
    active: BTreeSet<String>,
    complete: BTreeSet<String>,
}

/// What the scheduler does next with a pending spec.
enum Ready<'a> {
    /// Every spec it depends on is complete: start it.
    Start(&'a Spec),
    /// These specs it depends on did not complete and will not in this run.
    Waiting(&'a Spec, Vec<String>),
}

impl<'a> Queue<'a> {
    /// The first pending spec that can start (when fewer than `concurrency` run) or that waits
    /// for a spec that will not complete, taken out of the queue.
    fn next(&mut self, concurrency: usize) -> Option<Ready<'a>> {
        for i in 0..self.pending.len() {
            let spec = self.pending[i];
            let waiting: Vec<String> = spec
                .depends_on
                .iter()
                .map(|d| d.to_string())
                .filter(|d| !self.complete.contains(d))
                .collect();
            if waiting.is_empty() {
                if self.active.len() >= concurrency {
                    return None;
                }
                self.pending.remove(i);
                self.active.insert(spec.id.to_string());
                return Some(Ready::Start(spec));
            }
            // A dependency that may still complete in this run: wait for it.
            let may_complete = waiting.iter().any(|d| {
                self.active.contains(d) || self.pending.iter().any(|p| p.id.as_str() == d)
            });
            if !may_complete {
                self.pending.remove(i);
                return Some(Ready::Waiting(spec, waiting));
            }
        }
        None
    }
}

/// The body of a loop's thread: runs the loop and reports, even when it panics, so that the
/// scheduler never waits on it.
fn run_thread<F: LoopFactory>(
    schedule: &Schedule<'_, F>,
    spec: &Spec,
    deps: Deps,
    cancel: &Cancel,
    tx: &mpsc::Sender<Message<F::Error>>,
) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_one(schedule, spec, deps, cancel, &mut |e| {
            let _ = tx.send(Message::Event(Box::new(e)));
        })
    }))
    .unwrap_or_else(|_| {
        Err(LoopError::Panicked(Panicked {
            spec: spec.id.to_string(),
        }))
    });
    let _ = tx.send(Message::Done(spec.id.to_string(), result));
}

/// Runs one spec's loop: a store, an agent and a worktree of its own.
fn run_one<F: LoopFactory>(
    schedule: &Schedule<'_, F>,
    spec: &Spec,
    deps: Deps,
    cancel: &Cancel,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, LoopError<F::Error>> {
    let store = schedule.factory.store().map_err(LoopError::Setup)?;
    let kind = agent_kind(schedule.config, spec)?;
    let agent = schedule.factory.agent(kind).map_err(LoopError::Setup)?;
    let hidden_env = schedule.redactor.hidden_env();
    let mut settings = settings(schedule.config, spec, schedule.pinned, &hidden_env);
    settings.worktree_root = worktree_root(kind, &store, &schedule.temp_dir);
    if kind == AgentKind::ClaudeCode {
        // Claude Code reads the repository with its own tools: its prompt carries the spec,
        // the criteria, the feedback and the memory, but no map and no file contents.
        settings.context.repo_map = false;
        settings.context.exclude.push("**".to_owned());
    }
    let job = Job {
        spec,
        base: schedule.base,
        settings,
        templates: schedule.templates,
        dependency_summaries: deps.summaries,
        completed_specs: deps.completed,
        review_feedback: Vec::new(),
    };
    let services = Services {
        store: &store,
        agent: agent.as_ref(),
        prices: schedule.prices,
        redactor: schedule.redactor,
        cancel,
        daily: schedule.daily,
    };
    run_spec(&services, &job, events).map_err(|error| LoopError::Engine {
        spec: spec.id.to_string(),
        error,
    })
}

/// Every spec not complete at its current revision, in dependency order.
pub fn incomplete<'a>(store: &Store, specs: &'a SpecSet) -> Vec<&'a Spec> {
    let states: BTreeMap<String, (Option<IterationStatus>, Option<String>)> = store
        .status_all()
        .map(|v| {
            v.into_iter()
                .map(|s| (s.spec.to_string(), (s.status, s.spec_revision)))
                .collect()
        })
        .unwrap_or_default();
    ordered(specs)
        .filter(|s| match states.get(s.id.as_str()) {
            Some((Some(IterationStatus::Complete), Some(rev))) => *rev != s.revision,
            _ => true,
        })
        .collect()
}

/// Every spec, in dependency order.
pub fn ordered(specs: &SpecSet) -> impl Iterator<Item = &Spec> {
    specs.order().iter().filter_map(|id| specs.get(id))
}

/// The specs complete at their current revision (or whose file is gone).
fn complete_specs(store: &Store, specs: &SpecSet) -> BTreeSet<String> {
    let Ok(states) = store.status_all() else {
        return BTreeSet::new();
    };
    states
        .into_iter()
        .filter(|s| s.status == Some(IterationStatus::Complete))
        .filter(|s| {
            specs
                .get(&s.spec)
                .is_none_or(|spec| s.spec_revision.as_deref() == Some(spec.revision.as_str()))
        })
        .map(|s| s.spec.to_string())
        .collect()
}

fn dependency_summaries(store: &Store, spec: &Spec) -> Vec<(String, String)> {
    spec.depends_on
        .iter()
        .filter_map(|d| {
            // History is oldest first: the latest summary is the last.
            let history = store.history(d).ok()?;
            let last = history.last()?;
            Some((d.to_string(), last.summary.clone()))
        })
        .collect()
}

/// The agent kind for a spec: its front matter's `agent`, else the configuration's.
pub fn agent_kind(config: &Config, spec: &Spec) -> Result<AgentKind, UnknownAgent> {
    match spec.agent.as_deref() {
        Some(k) => k.parse::<AgentKind>().map_err(|_| UnknownAgent {
            spec: spec.id.to_string(),
            kind: k.to_owned(),
        }),
        None => Ok(config.agent.kind),
    }
}

/// Where a run's worktree goes. Claude Code refuses to edit files below a `.git` directory,
/// so its worktrees live in the temporary directory instead of `.git/mmm/worktrees/`.
fn worktree_root(kind: AgentKind, store: &Store, temp_dir: &Path) -> Option<PathBuf> {
    (kind == AgentKind::ClaudeCode).then(|| {
        let git_dir = store.repo().commondir();
        let id =
            git2::Oid::hash_object(git2::ObjectType::Blob, git_dir.to_string_lossy().as_bytes())
                .map(|o| o.to_string()[..12].to_owned())
                .unwrap_or_default();
        temp_dir.join("mmm-worktrees").join(id)
    })
}

/// The engine's settings for one spec: configuration, then the spec's front matter (unless
/// the command line pinned the value).
pub fn settings(config: &Config, spec: &Spec, pinned: Pinned, hidden_env: &[String]) -> Settings {
    // A spec may name a model, or one of the configured roles: `default`, `small` (cheap,
    // for easy specs) or `escalate` (the strong one).
    let spec_model = if pinned.model {
        None
    } else {
        spec.model.as_deref()
    };
    let model = match spec_model {
        None | Some("default") => config.model.default.clone(),
        Some("small") => config.model.small.clone(),
        Some("escalate") => config.model.escalate_to.clone(),
        Some(m) => m.to_owned(),
    };
    let budget = &config.budget;
    let positive = |v: f64| (v > 0.0).then_some(v);
    Settings {
        max_iterations: spec
            .max_iterations
            .filter(|_| !pinned.max_iterations)
            .unwrap_or(u32::try_from(config.r#loop.max_iterations).unwrap_or(u32::MAX)),
        timeout: spec.timeout.unwrap_or(config.r#loop.timeout),
        stuck_after: u32::try_from(config.r#loop.stuck_after).unwrap_or(u32::MAX),
        model,
        escalate_to: Some(config.model.escalate_to.clone()).filter(|m| !m.is_empty()),
        escalate_after: u32::try_from(config.model.escalate_after).unwrap_or(u32::MAX),
        max_tokens: u32::try_from(config.model.max_tokens).unwrap_or(u32::MAX),
        limits: Limits {
            per_iteration_usd: positive(budget.per_iteration_usd),
            per_spec_usd: positive(budget.per_spec_usd),
            daily_usd: positive(budget.daily_usd),
            per_iteration_tokens: budget.per_iteration_tokens,
            per_spec_tokens: budget.per_spec_tokens,
            daily_tokens: budget.daily_tokens,
        },
        gates: gates(config),
        gate_options: GateOptions {
            timeout: config.validate.timeout,
            env_remove: hidden_env.to_vec(),
            ..GateOptions::default()
        },
        apply_policy: ApplyPolicy {
            deny: config.apply.deny.clone(),
            ..ApplyPolicy::default()
        },
        command_policy: CommandPolicy {
            allow: config.commands.allow.clone(),
            timeout: config.commands.timeout,
            max_output_bytes: usize::try_from(config.commands.max_output_bytes)
                .unwrap_or(usize::MAX),
            env_remove: hidden_env.to_vec(),
        },
        context: ContextOptions {
            include: config.context.include.clone(),
            exclude: config.context.exclude.clone(),
            max_file_bytes: usize::try_from(config.context.max_file_bytes).unwrap_or(usize::MAX),
            repo_map: config.context.repo_map,
        },
        token_budget: TokenBudget {
            window: usize::try_from(config.model.context_window).unwrap_or(usize::MAX),
            output_reserve: usize::try_from(
                config.context.output_reserve.max(config.model.max_tokens),
            )
            .unwrap_or(usize::MAX),
        },
        checkpoint_after_iteration: config
            .checkpoints
            .iter()
            .any(|c| c.required && c.after == CheckpointAfter::Iteration)
            || !config.r#loop.auto_commit,
        checkpoint_after_complete: config
            .checkpoints
            .iter()
            .any(|c| c.required && c.after == CheckpointAfter::Complete),
        hostile_after: 2,
        worktree_root: None,
        checkpoint_after: config.r#loop.checkpoint_after,
    }
}

/// The gates of `[validate]`: build, test, lint, format, then the custom ones.
fn gates(config: &Config) -> Vec<Gate> {
    let mut gates = Vec::new();
    for (name, kind, cmd) in [
        ("build", GateKind::Build, &config.validate.build),
        ("test", GateKind::Test, &config.validate.test),
        ("lint", GateKind::Lint, &config.validate.lint),
        ("format", GateKind::Format, &config.validate.format),
    ] {
        if let Some(cmd) = cmd.as_ref().filter(|c| !c.trim().is_empty()) {
            gates.push(Gate {
                name: name.into(),
                kind,
                command: cmd.clone(),
            });
        }
    }
    for (name, cmd) in &config.validate.custom {
        gates.push(Gate {
            name: name.clone(),
            kind: GateKind::Custom,
            command: cmd.clone(),
        });
    }
    gates
}

/// What was spent today (UTC, `now` being the caller's clock) by every spec, from the metrics
/// notes of today's iterations.
pub fn spent_today(store: &Store, now: SystemTime) -> Spent {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let midnight = UNIX_EPOCH + Duration::from_secs(secs - secs % 86_400);
    let mut spent = Spent::default();
    let Ok(states) = store.status_all() else {
        return spent;
    };
    for state in states.iter().filter(|s| s.time >= midnight) {
        let Ok(history) = store.history(&state.spec) else {
            continue;
        };
        // History is oldest first: walk back from the tip while the iterations are today's.
        for it in history.iter().rev().take_while(|i| i.time >= midnight) {
            let Ok(detail) = store.iteration(&state.spec, it.n) else {
                continue;
            };
            let (usd, tokens) = spend_of(detail.metrics.as_deref().unwrap_or(&[]));
            spent.daily_usd += usd;
            spent.daily_tokens += tokens;
        }
    }
    spent
}
