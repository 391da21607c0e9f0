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
use crate::store::{IterationStatus, StartFrom, Store};
use crate::validate::{Gate, GateKind, GateOptions};

use super::budget::{DailyLedger, Limits, Spent};
use super::metrics::spend_of;
use super::redact::Redactor;
use super::review::ReviewSource;
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
    /// The review host the loops poll (a pull request's reviews), if any.
    fn review(&self) -> Option<&dyn ReviewSource> {
        None
    }
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
    files: Vec<PathBuf>,
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
                            files: dependency_files(store, spec),
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

/// Where a spec's first iteration starts: the run's base, or, for a spec that depends on
/// others (complete by now), their code: one dependency's branch, or a merge of several.
/// `Ok(Err(reason))` when their branches conflict. A spec that has a branch continues from it.
fn dependency_base(
    store: &Store,
    spec: &Spec,
    base: Oid,
) -> Result<Result<Oid, String>, crate::store::StoreError> {
    let has_branch = store
        .repo()
        .find_reference(&crate::store::branch_ref(&spec.id))
        .is_ok();
    if spec.depends_on.is_empty() || has_branch {
        return Ok(Ok(base));
    }
    Ok(match store.start_from(&spec.id, &spec.depends_on, base)? {
        StartFrom::Commit(commit) => Ok(commit),
        StartFrom::Conflict { specs, paths } => Err(format!(
            "the branches of the specs it depends on ({}) conflict in {}; merge them by hand into one of them, or run them one after the other",
            specs.join(", "),
            paths.join(", ")
        )),
    })
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
    let base = match dependency_base(&store, spec, schedule.base) {
        Ok(Ok(base)) => base,
        Ok(Err(detail)) => {
            events(Event::Finished {
                spec: spec.id.to_string(),
                reason: StopReason::Critical,
                detail: detail.clone(),
                iterations: 0,
                cost_usd: 0.0,
                checkpoints: 0,
            });
            return Ok(Outcome {
                spec: spec.id.to_string(),
                run: String::new(),
                reason: StopReason::Critical,
                detail,
                iterations: 0,
                last_iteration: 0,
                cost_usd: 0.0,
                tokens: Default::default(),
                checkpoints: 0,
            });
        }
        Err(error) => {
            return Err(LoopError::Engine {
                spec: spec.id.to_string(),
                error: error.into(),
            });
        }
    };
    let job = Job {
        spec,
        base,
        settings,
        templates: schedule.templates,
        dependency_summaries: deps.summaries,
        dependency_files: deps.files,
        completed_specs: deps.completed,
        review_feedback: Vec::new(),
        feedback: Vec::new(),
    };
    let services = Services {
        store: &store,
        agent: agent.as_ref(),
        prices: schedule.prices,
        redactor: schedule.redactor,
        cancel,
        daily: schedule.daily,
        review: schedule.factory.review(),
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

/// What the context stage would be given for the first iteration of a new run of `spec` in
/// `worktree`, with the settings that run would have (`git mmm context` shows its prompt): the
/// dependencies' summaries and the complete specs from the store, no memory yet.
pub fn preview_input(
    config: &Config,
    specs: &SpecSet,
    spec: &Spec,
    store: &Store,
    worktree: &Path,
) -> Result<(Settings, crate::context::ContextInput), UnknownAgent> {
    let mut settings = settings(config, spec, Pinned::default(), &[]);
    if agent_kind(config, spec)? == AgentKind::ClaudeCode {
        // As `start_loop` does: Claude Code reads the files itself.
        settings.context.repo_map = false;
        settings.context.exclude.push("**".to_owned());
    }
    let input = crate::context::ContextInput {
        worktree: worktree.to_path_buf(),
        spec_id: spec.id.to_string(),
        spec_content: spec.content.clone(),
        criteria: spec
            .criteria
            .iter()
            .map(|c| crate::context::CriterionView {
                text: c.text.clone(),
                verify: c.verify.clone(),
                last_result: None,
            })
            .collect(),
        context_globs: spec.context.clone(),
        iteration: 1,
        max_iterations: settings.max_iterations,
        dependency_summaries: dependency_summaries(store, spec),
        dependency_files: dependency_files(store, spec),
        completed_specs: complete_specs(store, specs).into_iter().collect(),
        budget: settings.token_budget,
        options: settings.context.clone(),
        ..Default::default()
    };
    Ok((settings, input))
}

/// The files the iterations of the specs `spec` depends on changed (their latest 50 each),
/// as repository paths: the context ranks them higher.
fn dependency_files(store: &Store, spec: &Spec) -> Vec<PathBuf> {
    let repo = store.repo();
    let mut files = BTreeSet::new();
    for d in &spec.depends_on {
        let Ok(history) = store.history(d) else {
            continue;
        };
        for it in history.iter().rev().take(50) {
            let Some(parent) = it.parent else {
                continue;
            };
            let (Ok(new), Ok(old)) = (
                repo.find_tree(it.tree),
                repo.find_commit(parent).and_then(|c| c.tree()),
            ) else {
                continue;
            };
            let Ok(diff) = repo.diff_tree_to_tree(Some(&old), Some(&new), None) else {
                continue;
            };
            files.extend(
                diff.deltas()
                    .filter_map(|d| d.new_file().path().map(Path::to_path_buf)),
            );
        }
    }
    files.into_iter().collect()
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

/// How often a checkpoint waiting for a review asks the review host: a conditional request
/// that finds nothing new costs no rate limit on GitHub.
pub const REVIEW_POLL: Duration = Duration::from_secs(60);

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
            exclude: config
                .context
                .exclude
                .iter()
                .cloned()
                .chain(ignore_globs(&config.agent.ignore))
                .collect(),
            max_file_bytes: usize::try_from(config.context.max_file_bytes).unwrap_or(usize::MAX),
            repo_map: config.context.repo_map,
            budget_tokens: usize::try_from(config.context.budget_tokens).unwrap_or(usize::MAX),
            map_share: usize::try_from(config.context.map_share).unwrap_or(100),
            files_share: usize::try_from(config.context.files_share).unwrap_or(100),
            memory_share: usize::try_from(config.context.memory_share).unwrap_or(100),
            // The spec is in the prompt already, and other specs are not code.
            skip: config
                .context
                .skip
                .iter()
                .cloned()
                .chain([format!("{}/**", config.specs.dir.trim_end_matches('/'))])
                .collect(),
            skip_generated: config.context.skip_generated,
            ranking: Default::default(),
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
        checkpoint_timeout: config
            .checkpoints
            .iter()
            .find(|c| c.required && c.after == CheckpointAfter::Complete)
            .map_or(Duration::from_secs(24 * 3600), |c| c.timeout),
        review_poll: config.github.review_poll,
        hostile_after: 2,
        worktree_root: None,
        keep_worktree: config.r#loop.keep_worktrees,
        checkpoint_after: config.r#loop.checkpoint_after,
        complete_when: config.agent.complete_when,
        ignore: config.agent.ignore.clone(),
    }
}

/// `[agent] ignore`'s `.gitignore` patterns as the context's globs, so that agents' scratch
/// files stay out of the prompt too: a pattern without an inner `/` matches at any depth, and
/// a directory's files with it.
fn ignore_globs(patterns: &[String]) -> Vec<String> {
    let mut globs = Vec::new();
    for p in patterns {
        let core = p.trim_start_matches('/').trim_end_matches('/');
        if core.is_empty() || p.starts_with('!') || p.starts_with('#') {
            continue;
        }
        let base = if p.trim_end_matches('/').contains('/') {
            core.to_owned()
        } else {
            format!("**/{core}")
        };
        globs.push(format!("{base}/**"));
        globs.push(base);
    }
    globs
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{FixedClock, UlidGen};
    use crate::store::StoreOptions;

    fn spec(id: &str, front: &str) -> Spec {
        let text = format!(
            "+++\n{front}\n+++\n\n# {id}\n\n## Objective\n\nDo {id}.\n\n\
             ## Acceptance criteria\n\n- {id} is done\n"
        );
        Spec::parse(Path::new(&format!("specs/{id}.md")), text.as_bytes()).expect("a spec")
    }

    fn queue<'a>(pending: Vec<&'a Spec>, complete: &[&str]) -> Queue<'a> {
        Queue {
            pending,
            active: BTreeSet::new(),
            complete: complete.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn started(ready: Option<Ready<'_>>) -> Option<String> {
        match ready {
            Some(Ready::Start(spec)) => Some(spec.id.to_string()),
            _ => None,
        }
    }

    #[test]
    fn ignore_patterns_become_context_globs() {
        let patterns: Vec<String> = [".aider*", ".claude/settings.local.json", ".codex/", "!x"]
            .map(str::to_owned)
            .to_vec();
        let globs = ignore_globs(&patterns);
        let set = {
            let mut b = globset::GlobSetBuilder::new();
            for g in &globs {
                b.add(globset::Glob::new(g).expect("glob"));
            }
            b.build().expect("set")
        };
        for hidden in [
            ".aider.chat.history.md",
            ".aider.tags.cache.v4/cache.db",
            "sub/.aider.input.history",
            ".claude/settings.local.json",
            ".codex/config.toml",
        ] {
            assert!(set.is_match(hidden), "{hidden} is hidden by {globs:?}");
        }
        for shown in ["aider.md", ".claude/settings.json", "src/codex.rs", "x"] {
            assert!(!set.is_match(shown), "{shown} is shown");
        }
    }

    #[test]
    fn a_spec_starts_once_the_specs_it_depends_on_are_complete() {
        let (a, b) = (spec("a", ""), spec("b", "depends_on = [\"a\"]"));
        let mut q = queue(vec![&a, &b], &[]);
        assert_eq!(started(q.next(2)).as_deref(), Some("a"));
        assert!(q.next(2).is_none(), "b waits for a, which runs");
        q.active.remove("a");
        q.complete.insert("a".to_owned());
        assert_eq!(started(q.next(2)).as_deref(), Some("b"));
        assert!(q.pending.is_empty());
        // A dependency complete before the run holds nothing back.
        let mut q = queue(vec![&b], &["a"]);
        assert_eq!(started(q.next(1)).as_deref(), Some("b"));
    }

    #[test]
    fn a_spec_whose_dependency_will_not_complete_is_waiting() {
        let (a, b) = (spec("a", ""), spec("b", "depends_on = [\"a\"]"));
        let mut q = queue(vec![&a, &b], &[]);
        assert_eq!(started(q.next(1)).as_deref(), Some("a"));
        // `a` stopped without completing.
        q.active.remove("a");
        match q.next(1) {
            Some(Ready::Waiting(spec, waiting)) => {
                assert_eq!(spec.id.as_str(), "b");
                assert_eq!(waiting, ["a"]);
            }
            _ => panic!("b should be waiting"),
        }
        assert!(q.pending.is_empty() && q.next(1).is_none());
        // Nor does a dependency that is not in the run and not complete.
        let mut q = queue(vec![&b], &[]);
        assert!(matches!(q.next(1), Some(Ready::Waiting(..))));
    }

    #[test]
    fn no_more_loops_than_the_concurrency_run_at_once() {
        let (a, b) = (spec("a", ""), spec("b", ""));
        let mut q = queue(vec![&a, &b], &[]);
        assert_eq!(started(q.next(1)).as_deref(), Some("a"));
        assert!(q.next(1).is_none());
        assert_eq!(q.pending.len(), 1);
        q.active.remove("a");
        assert_eq!(started(q.next(1)).as_deref(), Some("b"));
    }

    #[test]
    fn the_command_line_wins_over_the_front_matter() {
        let mut config = Config::default();
        config.model.default = "m-default".to_owned();
        config.model.small = "m-small".to_owned();
        config.r#loop.max_iterations = 7;
        let s = spec("s", "model = \"small\"\nmax_iterations = 3");
        let free = settings(&config, &s, Pinned::default(), &[]);
        assert_eq!((free.model.as_str(), free.max_iterations), ("m-small", 3));
        let pinned = Pinned {
            model: true,
            max_iterations: true,
        };
        let pinned = settings(&config, &s, pinned, &[]);
        assert_eq!(
            (pinned.model.as_str(), pinned.max_iterations),
            ("m-default", 7)
        );
    }

    #[test]
    fn gates_come_in_a_fixed_order_and_run_without_the_hidden_variables() {
        let mut config = Config::default();
        config.validate.test = Some("sh test.sh".to_owned());
        config.validate.build = Some("make".to_owned());
        config.validate.lint = Some("  ".to_owned());
        config
            .validate
            .custom
            .insert("docs".to_owned(), "sh docs.sh".to_owned());
        let s = settings(
            &config,
            &spec("s", ""),
            Pinned::default(),
            &["K".to_owned()],
        );
        let names: Vec<&str> = s.gates.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            ["build", "test", "docs"],
            "a blank command is no gate"
        );
        assert_eq!(s.gate_options.env_remove, ["K"]);
        assert_eq!(s.command_policy.env_remove, ["K"]);
    }

    #[test]
    fn a_loop_registered_after_an_interrupt_is_stopped_already() {
        let (running, interrupt) = (Running::new(), Cancel::new());
        let a = running.start("a", &interrupt);
        assert!(!a.is_cancelled());
        interrupt.cancel();
        let b = running.start("b", &interrupt);
        assert!(b.is_cancelled() && !a.is_cancelled());
        running.cancel_all();
        assert!(a.is_cancelled());
        running.remove("a");
        let left: Vec<String> = running.loops().into_iter().map(|(s, _)| s).collect();
        assert_eq!(left, ["b"]);
    }

    /// A factory that cannot make a store: it fails, or its thread panics.
    struct Broken {
        panics: bool,
        calls: std::sync::atomic::AtomicUsize,
    }

    fn broken(panics: bool) -> Broken {
        Broken {
            panics,
            calls: Default::default(),
        }
    }

    impl LoopFactory for Broken {
        type Error = String;

        fn store(&self) -> Result<Store, String> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(!self.panics, "a loop's thread panics");
            Err("no store".to_owned())
        }

        fn agent(&self, _: AgentKind) -> Result<Box<dyn Agent>, String> {
            Err("no agent".to_owned())
        }
    }

    /// Runs `selected` of `all` with `factory` in an empty repository; returns the report and
    /// the events.
    fn schedule_in_a_repo(
        all: &[&str],
        selected: &[&str],
        factory: &Broken,
        interrupted: bool,
    ) -> (Report<String>, Vec<Event>) {
        let dir = tempfile::tempdir().expect("tempdir");
        git2::Repository::init(dir.path()).expect("init");
        let opts = StoreOptions::new(
            Arc::new(FixedClock::new(1_800_000_000, Duration::from_secs(1))),
            Arc::new(UlidGen),
        );
        let store = Store::open(dir.path(), opts).expect("store");
        let specs: Vec<Spec> = all
            .iter()
            .map(|id| match *id {
                "b" => spec("b", "depends_on = [\"x\"]"),
                id => spec(id, ""),
            })
            .collect();
        let specs = SpecSet::new(specs).expect("a spec set");
        // One loop at a time: what starts after a failure shows.
        let mut config = Config::default();
        config.r#loop.concurrency = 1;
        let (templates, prices) = (Templates::builtin(), PriceTable::builtin());
        let (redactor, daily) = (Redactor::default(), DailyLedger::new(Spent::default()));
        let (interrupt, running) = (Cancel::new(), Running::new());
        if interrupted {
            interrupt.cancel();
        }
        let schedule = Schedule {
            config: &config,
            pinned: Pinned::default(),
            specs: &specs,
            selected: ordered(&specs)
                .filter(|s| selected.contains(&s.id.as_str()))
                .collect(),
            base: Oid::ZERO_SHA1,
            templates: &templates,
            prices: &prices,
            redactor: &redactor,
            daily: &daily,
            factory,
            temp_dir: dir.path().to_path_buf(),
            interrupt: &interrupt,
            running: &running,
        };
        let mut events = Vec::new();
        let report = run(&schedule, &store, &mut |e| events.push(e));
        assert!(running.loops().is_empty(), "every loop is unregistered");
        (report, events)
    }

    #[test]
    fn a_loop_that_cannot_run_is_the_failure_and_no_spec_starts_after_it() {
        let failing = broken(false);
        let (report, events) = schedule_in_a_repo(&["a", "c"], &["a", "c"], &failing, false);
        assert!(matches!(report.failure, Some(LoopError::Setup(ref e)) if e == "no store"));
        assert!(report.outcomes.is_empty() && events.is_empty());
        assert_eq!(
            failing.calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "c did not start"
        );
        let (report, _) = schedule_in_a_repo(&["a"], &["a"], &broken(true), false);
        match report.failure {
            Some(LoopError::Panicked(p)) => assert_eq!(p.spec, "a"),
            other => panic!("a panic is reported: {other:?}"),
        }
    }

    #[test]
    fn an_interrupted_run_starts_nothing_and_a_spec_waiting_for_another_makes_no_loop() {
        let broken = broken(true);
        let (report, events) = schedule_in_a_repo(&["a"], &["a"], &broken, true);
        assert!(report.failure.is_none() && report.outcomes.is_empty() && events.is_empty());
        let (report, events) = schedule_in_a_repo(&["x", "b"], &["b"], &broken, false);
        assert!(report.failure.is_none() && report.outcomes.is_empty());
        match events.as_slice() {
            [
                Event::Finished {
                    spec,
                    reason: StopReason::Waiting,
                    detail,
                    ..
                },
            ] => {
                assert_eq!(spec, "b");
                assert_eq!(detail, "waiting for x to complete first");
            }
            other => panic!("one waiting event: {other:?}"),
        }
        assert_eq!(
            broken.calls.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no loop started"
        );
    }
}
