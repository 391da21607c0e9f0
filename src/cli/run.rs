//! `git mmm run [SPEC…]`: runs the loop on specs, each in its own temporary worktree, in
//! dependency order, with live progress. Ctrl-C (or `git mmm stop SPEC`) stops after the
//! current stage and records the iteration as interrupted; a second Ctrl-C aborts at once, and
//! the next `run` resumes from the last recorded iteration.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use mmm::agent::{
    Agent, ApiAgent, Auth, Cancel, ClaudeCodeAgent, ClaudeCodeConfig, ClientConfig, CommandAgent,
    CommandConfig, ModelPrice, PriceTable, RetryPolicy, ScriptedAgent,
};
use mmm::config::{AgentKind, CheckpointAfter, Config, FlagValue};
use mmm::context::{ContextOptions, Templates, TokenBudget};
use mmm::engine::{
    self, DailyLedger, Event, Job, Outcome, Redactor, Services, Settings, Spent, StopReason,
};
use mmm::spec::{Spec, SpecSet};
use mmm::store::{IterationStatus, Store};
use mmm::validate::{Gate, GateKind, GateOptions};

use super::common::{clock, open_store, spec_id};
use super::progress::Progress;
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The specs to run (default: every spec that is not complete, in dependency order).
    pub specs: Vec<String>,
    /// The agent: `api`, `claude-code`, `command` or `scripted` (overrides `[agent] kind`).
    #[arg(long, value_name = "KIND")]
    pub agent: Option<String>,
    /// The model (overrides `[model] default` and the spec's `model`).
    #[arg(long, value_name = "ID")]
    pub model: Option<String>,
    /// Iterations per spec revision (overrides `[loop] max_iterations`).
    #[arg(long, value_name = "N")]
    pub max_iterations: Option<u32>,
    /// USD budget per spec (overrides `[budget] per_spec_usd`).
    #[arg(long, value_name = "USD")]
    pub budget_usd: Option<f64>,
    /// One JSON object per line on stdout for every event (for scripts and CI).
    #[arg(long)]
    pub json: bool,
    /// Show the model's streamed text.
    #[arg(long)]
    pub stream: bool,
}

/// Runs `git mmm run`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    execute(ctx, args)
}

/// Runs the loop as `git mmm run` does (the demo uses it too). Exit status: success when every
/// spec run is complete.
pub fn execute(ctx: &Ctx, args: &Args) -> CliResult {
    let mut flags = Vec::new();
    let mut flag = |key: &str, value: String, name: &str| {
        flags.push(FlagValue {
            key: key.into(),
            value,
            flag: name.into(),
        })
    };
    if let Some(a) = &args.agent {
        flag("agent.kind", a.clone(), "--agent");
    }
    if let Some(m) = &args.model {
        flag("model.default", m.clone(), "--model");
    }
    if let Some(n) = args.max_iterations {
        flag("loop.max_iterations", n.to_string(), "--max-iterations");
    }
    if let Some(b) = args.budget_usd {
        flag("budget.per_spec_usd", b.to_string(), "--budget-usd");
    }
    let (root, loaded) = super::config::load(ctx, flags)?;
    let root = root.ok_or_else(|| {
        CliError::with_hint(
            anyhow!("not inside a git repository"),
            "run `git mmm run` inside the repository that holds your specs",
        )
    })?;
    let config = loaded.config;
    let store = open_store(ctx)?;
    let specs = super::specs::discover_strict(&root, &config)?;
    let selected = select(&store, &specs, &args.specs)?;
    if selected.is_empty() {
        writeln!(
            out(),
            "nothing to run: every spec is complete (see `git mmm status`)"
        )?;
        return Ok(());
    }
    // A spec asking for an unknown agent is an error before any loop starts.
    for spec in &selected {
        agent_kind(&config, spec)?;
    }
    let templates = Templates::load(Some(&root.join(".mmm").join("templates")))
        .map_err(|e| CliError::with_hint(e, "fix or remove the template in .mmm/templates/"))?;
    let prices = price_table(&config);
    let redactor = redactor(ctx, &config);
    // Gates and the model's commands run without the secrets mmm knows of.
    let mut hidden_env: Vec<String> = [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "GITHUB_TOKEN",
        "GH_TOKEN",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    hidden_env.extend(redactor.env_names().iter().cloned());
    hidden_env.sort();
    hidden_env.dedup();
    // Ctrl-C stops the whole run; `git mmm stop SPEC` stops only that spec's loop.
    let interrupt = Cancel::new();
    let running: Running = Arc::new(Mutex::new(BTreeMap::new()));
    watch_for_stop(
        &store,
        &interrupt,
        &running,
        selected.iter().map(|s| s.id.to_string()).collect(),
    );
    let clock = clock(ctx)?;
    let daily = DailyLedger::new(spent_today(&store, clock.now()));
    let concurrency = usize::try_from(config.r#loop.concurrency)
        .unwrap_or(1)
        .clamp(1, selected.len().max(1));
    let mut progress = Progress::new(args.json, args.stream, concurrency > 1);

    let base = store
        .repo()
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| {
            CliError::with_hint(
                anyhow!("the repository has no commit to start from: {e}"),
                "commit something first (`git commit`)",
            )
        })?
        .id();

    let shared = Shared {
        ctx,
        root: &root,
        config: &config,
        args,
        templates: &templates,
        prices: &prices,
        redactor: &redactor,
        hidden_env: &hidden_env,
        daily: &daily,
        base,
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut complete: BTreeSet<String> = complete_specs(&store, &specs);
    let mut failure: Option<CliError> = None;
    // Up to `[loop] concurrency` specs at once, each in a thread with its own store, agent and
    // worktree; a spec starts once every spec it depends on is complete, and waits (is not
    // run) when one of them did not complete. Events come back to this thread to be shown.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<Message>();
        let mut pending: Vec<&Spec> = selected.clone();
        let mut active: BTreeSet<String> = BTreeSet::new();
        loop {
            let mut i = 0;
            while i < pending.len() && failure.is_none() && !interrupt.is_cancelled() {
                let spec = pending[i];
                let waiting: Vec<String> = spec
                    .depends_on
                    .iter()
                    .map(|d| d.to_string())
                    .filter(|d| !complete.contains(d))
                    .collect();
                if waiting.is_empty() {
                    if active.len() >= concurrency {
                        break;
                    }
                    pending.remove(i);
                    let cancel = Cancel::new();
                    {
                        let mut running = lock(&running);
                        running.insert(spec.id.to_string(), cancel.clone());
                        // A Ctrl-C between the check above and the insert: it saw no entry.
                        if interrupt.is_cancelled() {
                            cancel.cancel();
                        }
                    }
                    active.insert(spec.id.to_string());
                    let job = JobInputs {
                        dependency_summaries: dependency_summaries(&store, spec),
                        completed_specs: complete.iter().cloned().collect(),
                    };
                    let tx = tx.clone();
                    let shared = &shared;
                    scope.spawn(move || {
                        let events = tx.clone();
                        // A loop that panics still reports, so the scheduler never waits on it.
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            run_one(shared, spec, job, &cancel, &mut |e| {
                                let _ = events.send(Message::Event(Box::new(e)));
                            })
                        }))
                        .unwrap_or_else(|_| {
                            Err(CliError::from(anyhow!(
                                "the loop of spec `{}` panicked; its recorded iterations are kept, \
                                 `git mmm doctor` then `git mmm run` resume it",
                                spec.id
                            )))
                        });
                        let _ = tx.send(Message::Done(spec.id.to_string(), result));
                    });
                    continue;
                }
                // A dependency that may still complete in this run: wait for it.
                let may_complete = waiting
                    .iter()
                    .any(|d| active.contains(d) || pending.iter().any(|p| p.id.as_str() == d));
                if !may_complete {
                    pending.remove(i);
                    progress.event(&Event::Finished {
                        spec: spec.id.to_string(),
                        reason: StopReason::Waiting,
                        detail: format!("waiting for {} to complete first", waiting.join(", ")),
                        iterations: 0,
                        cost_usd: 0.0,
                        checkpoints: 0,
                    });
                    continue;
                }
                i += 1;
            }
            if active.is_empty() {
                break;
            }
            match rx.recv() {
                Ok(Message::Event(e)) => progress.event(&e),
                Ok(Message::Done(spec, result)) => {
                    active.remove(&spec);
                    lock(&running).remove(&spec);
                    match result {
                        Ok(outcome) => {
                            if outcome.reason.is_complete() {
                                complete.insert(spec);
                            }
                            outcomes.push(outcome);
                        }
                        Err(e) => {
                            // No new spec starts; the ones running stop after their current
                            // stage, recording it as interrupted.
                            failure.get_or_insert(e);
                            for cancel in lock(&running).values() {
                                cancel.cancel();
                            }
                        }
                    }
                }
                Err(_) => break,
            }
        }
    });
    progress.finish();
    // In the order the specs were selected (dependency order), not the order they finished.
    outcomes.sort_by_key(|o| selected.iter().position(|s| s.id.as_str() == o.spec));

    if !args.json {
        let mut out = out();
        let total: f64 = outcomes.iter().map(|o| o.cost_usd).sum();
        let tokens: u64 = outcomes.iter().map(|o| o.tokens.total()).sum();
        writeln!(
            out,
            "\n{} spec(s) run, {} complete, {tokens} tokens, ${total:.4}",
            outcomes.len(),
            outcomes.iter().filter(|o| o.reason.is_complete()).count()
        )?;
        for o in &outcomes {
            writeln!(
                out,
                "  {:<24} {:<16} iteration {:<3} {}",
                o.spec,
                o.reason.as_str(),
                o.last_iteration,
                o.detail
            )?;
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let incomplete: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.reason.is_complete())
        .collect();
    if interrupt.is_cancelled() || !incomplete.is_empty() || outcomes.len() < selected.len() {
        return Err(CliError {
            error: anyhow!(
                "{} of {} spec(s) did not complete",
                selected.len() - (outcomes.len() - incomplete.len()),
                selected.len()
            ),
            hints: vec![
                "see `git mmm status` and `git mmm show SPEC`; `git mmm run` resumes where a run stopped"
                    .into(),
            ],
            code: super::EXIT_FAILURE,
        });
    }
    Ok(())
}

/// What every spec's thread reads.
struct Shared<'a> {
    ctx: &'a Ctx,
    root: &'a Path,
    config: &'a Config,
    args: &'a Args,
    templates: &'a Templates,
    prices: &'a PriceTable,
    redactor: &'a Redactor,
    hidden_env: &'a [String],
    daily: &'a DailyLedger,
    base: git2::Oid,
}

/// What the scheduler knows of a spec's dependencies when it starts it.
struct JobInputs {
    dependency_summaries: Vec<(String, String)>,
    completed_specs: Vec<String>,
}

/// From a spec's thread to the scheduler.
enum Message {
    Event(Box<Event>),
    Done(String, Result<Outcome, CliError>),
}

/// Runs one spec's loop, in its own thread: a store, an agent and a worktree of its own.
fn run_one(
    shared: &Shared<'_>,
    spec: &Spec,
    inputs: JobInputs,
    cancel: &Cancel,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, CliError> {
    let store = open_store(shared.ctx)?;
    let kind = agent_kind(shared.config, spec)?;
    let agent = build_agent(shared.ctx, shared.root, shared.config, kind)?;
    let mut settings = settings(shared.config, spec, shared.args, shared.hidden_env);
    settings.worktree_root = worktree_root(shared.ctx, kind, &store);
    if kind == AgentKind::ClaudeCode {
        // Claude Code reads the repository with its own tools: its prompt carries the spec,
        // the criteria, the feedback and the memory, but no map and no file contents.
        settings.context.repo_map = false;
        settings.context.exclude.push("**".to_owned());
    }
    let job = Job {
        spec,
        base: shared.base,
        settings,
        templates: shared.templates,
        dependency_summaries: inputs.dependency_summaries,
        completed_specs: inputs.completed_specs,
        review_feedback: Vec::new(),
    };
    let services = Services {
        store: &store,
        agent: agent.as_ref(),
        prices: shared.prices,
        redactor: shared.redactor,
        cancel,
        daily: shared.daily,
    };
    engine::run_spec(&services, &job, events).map_err(|e| {
        let hint = e.hint();
        let err = anyhow::Error::new(e).context(format!("spec `{}`", spec.id));
        match hint {
            Some(h) => CliError::with_hint(err, h),
            None => CliError::from(err),
        }
    })
}

/// The specs whose loops run now, with the flag that stops each.
type Running = Arc<Mutex<BTreeMap<String, Cancel>>>;

fn lock(running: &Running) -> std::sync::MutexGuard<'_, BTreeMap<String, Cancel>> {
    running.lock().unwrap_or_else(|e| e.into_inner())
}

/// The specs to run: the named ones (with their order from the dependency graph), or every
/// spec not complete at its current revision.
fn select<'a>(
    store: &Store,
    specs: &'a SpecSet,
    named: &[String],
) -> Result<Vec<&'a Spec>, CliError> {
    if !named.is_empty() {
        let mut wanted = BTreeSet::new();
        for n in named {
            let id = spec_id(n)?;
            if specs.get(&id).is_none() {
                return Err(CliError::with_hint(
                    anyhow!("no spec `{id}`"),
                    "`git mmm specs` lists the specs",
                ));
            }
            wanted.insert(id);
        }
        return Ok(ordered(specs).filter(|s| wanted.contains(&s.id)).collect());
    }
    let states: BTreeMap<String, (Option<IterationStatus>, Option<String>)> = store
        .status_all()
        .map(|v| {
            v.into_iter()
                .map(|s| (s.spec.to_string(), (s.status, s.spec_revision)))
                .collect()
        })
        .unwrap_or_default();
    Ok(ordered(specs)
        .filter(|s| match states.get(s.id.as_str()) {
            Some((Some(IterationStatus::Complete), Some(rev))) => *rev != s.revision,
            _ => true,
        })
        .collect())
}

fn ordered(specs: &SpecSet) -> impl Iterator<Item = &Spec> {
    specs.order().iter().filter_map(|id| specs.get(id))
}

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
fn agent_kind(config: &Config, spec: &Spec) -> Result<AgentKind, CliError> {
    match spec.agent.as_deref() {
        Some(k) => k.parse::<AgentKind>().map_err(|_| {
            CliError::with_hint(
                anyhow!("spec `{}` asks for an unknown agent `{k}`", spec.id),
                "agents: api, claude-code, command, scripted",
            )
        }),
        None => Ok(config.agent.kind),
    }
}

/// Where a run's worktree goes. Claude Code refuses to edit files below a `.git` directory,
/// so its worktrees live in the temporary directory instead of `.git/mmm/worktrees/`.
fn worktree_root(ctx: &Ctx, kind: AgentKind, store: &Store) -> Option<PathBuf> {
    (kind == AgentKind::ClaudeCode).then(|| {
        let tmp = ctx
            .var("TMPDIR")
            .filter(|t| !t.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let git_dir = store.repo().commondir();
        let id =
            git2::Oid::hash_object(git2::ObjectType::Blob, git_dir.to_string_lossy().as_bytes())
                .map(|o| o.to_string()[..12].to_owned())
                .unwrap_or_default();
        tmp.join("mmm-worktrees").join(id)
    })
}

/// The agent for a spec.
fn build_agent(
    ctx: &Ctx,
    root: &Path,
    config: &Config,
    kind: AgentKind,
) -> Result<Box<dyn Agent>, CliError> {
    match kind {
        AgentKind::Api => {
            let auth = match (
                ctx.var("ANTHROPIC_API_KEY"),
                ctx.var("ANTHROPIC_AUTH_TOKEN"),
            ) {
                (Some(k), _) if !k.is_empty() => Auth::ApiKey(k.to_owned()),
                (_, Some(t)) if !t.is_empty() => Auth::Bearer(t.to_owned()),
                _ => {
                    return Err(CliError::with_hint(
                        anyhow!("the `api` agent needs an API key"),
                        "export ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN), or try `git mmm demo` which needs none",
                    ));
                }
            };
            let mut client = ClientConfig::new(auth);
            if let Some(url) = ctx
                .var("ANTHROPIC_BASE_URL")
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .or_else(|| config.agent.api_base_url.clone())
            {
                client.base_url = url;
            }
            client.anthropic_version = config.agent.anthropic_version.clone();
            client.retry = RetryPolicy {
                max_retries: u32::try_from(config.agent.max_retries).unwrap_or(u32::MAX),
                ..RetryPolicy::default()
            };
            client.request_timeout = config.agent.request_timeout;
            Ok(Box::new(ApiAgent::new(client).map_err(|e| {
                let hint = e.hint().unwrap_or_default().to_owned();
                CliError::with_hint(e, hint)
            })?))
        }
        AgentKind::Scripted => {
            let script = config.agent.script.as_deref().ok_or_else(|| {
                CliError::with_hint(
                    anyhow!("the `scripted` agent needs a script"),
                    "set [agent] script = \"path/to/answers.toml\" in .mmm/config.toml",
                )
            })?;
            let path = root.join(script);
            Ok(Box::new(ScriptedAgent::load(&path).map_err(|e| {
                CliError::with_hint(
                    e,
                    "see the format in `git mmm demo`'s .mmm/demo-script.toml",
                )
            })?))
        }
        AgentKind::ClaudeCode => {
            let a = &config.agent;
            let mut cc = ClaudeCodeConfig::new(a.claude_path.as_deref().unwrap_or("claude"));
            cc.max_turns = a.max_turns.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            cc.permission_mode = a.permission_mode.clone();
            cc.allowed_tools = a.allowed_tools.clone();
            cc.disallowed_tools = a.disallowed_tools.clone();
            Ok(Box::new(ClaudeCodeAgent::new(cc)))
        }
        AgentKind::Command => {
            let a = &config.agent;
            let command = a.command.clone().ok_or_else(|| {
                CliError::with_hint(
                    anyhow!("the `command` agent needs a command line"),
                    "set [agent] command = \"my-agent --prompt {prompt_file}\" in .mmm/config.toml (see docs/AGENTS.md)",
                )
            })?;
            let agent = CommandAgent::new(CommandConfig {
                command,
                cost_regex: a.cost_regex.clone(),
                tokens_regex: a.tokens_regex.clone(),
                cost_json_field: a.cost_json_field.clone(),
                tokens_json_field: a.tokens_json_field.clone(),
                env: Vec::new(),
                env_remove: Vec::new(),
            })
            .map_err(|e| CliError::with_hint(e, "fix [agent] in .mmm/config.toml"))?;
            Ok(Box::new(agent))
        }
    }
}

/// The price table: built-in, with `[prices."model"]` overrides from the configuration.
fn price_table(config: &Config) -> PriceTable {
    let builtin = PriceTable::builtin();
    let mut overrides = BTreeMap::new();
    for (model, o) in &config.prices {
        let base = builtin.get(model).cloned();
        let merged = ModelPrice {
            input: o.input.or(base.as_ref().map(|b| b.input)).unwrap_or(0.0),
            output: o.output.or(base.as_ref().map(|b| b.output)).unwrap_or(0.0),
            cache_write_5m: o
                .cache_write_5m
                .or(base.as_ref().map(|b| b.cache_write_5m))
                .unwrap_or(0.0),
            cache_write_1h: o
                .cache_write_1h
                .or(base.as_ref().map(|b| b.cache_write_1h))
                .unwrap_or(0.0),
            cache_read: o
                .cache_read
                .or(base.as_ref().map(|b| b.cache_read))
                .unwrap_or(0.0),
            max_output: base.as_ref().and_then(|b| b.max_output),
            long_prompt: if o.input.is_some() || o.output.is_some() {
                None
            } else {
                base.as_ref().and_then(|b| b.long_prompt.clone())
            },
        };
        overrides.insert(model.clone(), merged);
    }
    builtin.with_overrides(overrides)
}

fn redactor(ctx: &Ctx, config: &Config) -> Redactor {
    // `[secrets] redact` holds variable names or literal values.
    let (names, values): (Vec<String>, Vec<String>) = config
        .secrets
        .redact
        .iter()
        .cloned()
        .partition(|s| ctx.env.contains_key(s));
    Redactor::from_env(
        ctx.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &names,
        &values,
    )
}

/// The engine's settings for one spec: configuration, then the spec's front matter.
fn settings(config: &Config, spec: &Spec, args: &Args, hidden_env: &[String]) -> Settings {
    // A spec may name a model, or one of the configured roles: `default`, `small` (cheap,
    // for easy specs) or `escalate` (the strong one).
    // A flag wins over the spec's front matter (flag > … > file > default).
    let spec_model = if args.model.is_some() {
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
    let budget = &config.budget;
    let positive = |v: f64| (v > 0.0).then_some(v);
    Settings {
        max_iterations: spec
            .max_iterations
            .filter(|_| args.max_iterations.is_none())
            .unwrap_or(u32::try_from(config.r#loop.max_iterations).unwrap_or(u32::MAX)),
        timeout: spec.timeout.unwrap_or(config.r#loop.timeout),
        stuck_after: u32::try_from(config.r#loop.stuck_after).unwrap_or(u32::MAX),
        model,
        escalate_to: Some(config.model.escalate_to.clone()).filter(|m| !m.is_empty()),
        escalate_after: u32::try_from(config.model.escalate_after).unwrap_or(u32::MAX),
        max_tokens: u32::try_from(config.model.max_tokens).unwrap_or(u32::MAX),
        limits: engine::Limits {
            per_iteration_usd: positive(budget.per_iteration_usd),
            per_spec_usd: positive(budget.per_spec_usd),
            daily_usd: positive(budget.daily_usd),
            per_iteration_tokens: budget.per_iteration_tokens,
            per_spec_tokens: budget.per_spec_tokens,
            daily_tokens: budget.daily_tokens,
        },
        gates,
        gate_options: GateOptions {
            timeout: config.validate.timeout,
            env_remove: hidden_env.to_vec(),
            ..GateOptions::default()
        },
        apply_policy: mmm::apply::ApplyPolicy {
            deny: config.apply.deny.clone(),
            ..mmm::apply::ApplyPolicy::default()
        },
        command_policy: mmm::apply::CommandPolicy {
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

/// What was spent today (UTC) by every spec, from the metrics notes of today's iterations.
fn spent_today(store: &Store, now: SystemTime) -> Spent {
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
            let (usd, tokens) = engine::spend_of(detail.metrics.as_deref().unwrap_or(&[]));
            spent.daily_usd += usd;
            spent.daily_tokens += tokens;
        }
    }
    spent
}

/// The file `git mmm stop SPEC` creates to ask a running loop to stop.
pub fn stop_file(git_dir: &Path, spec: &str) -> PathBuf {
    git_dir.join("mmm").join("stop").join(spec)
}

/// Stops a running spec's loop when `git mmm stop` names it. The first Ctrl-C stops every
/// running loop and the run; a second one ends the process at once (the next `git mmm run`
/// resumes).
fn watch_for_stop(store: &Store, interrupt: &Cancel, running: &Running, specs: Vec<String>) {
    let git_dir = store.repo().commondir().to_path_buf();
    for spec in &specs {
        // A stop request left from an earlier run does not apply to this one.
        let _ = std::fs::remove_file(stop_file(&git_dir, spec));
    }
    let now = Arc::clone(running);
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            for (spec, cancel) in lock(&now).iter() {
                let file = stop_file(&git_dir, spec);
                if file.exists() && !cancel.is_cancelled() {
                    let _ = std::fs::remove_file(&file);
                    eprintln!("mmm: stop requested for {spec}; stopping after the current stage");
                    cancel.cancel();
                }
            }
        }
    });
    let stop_all = interrupt.clone();
    let now = Arc::clone(running);
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            eprintln!(
                "\nmmm: stopping after the current stage (Ctrl-C again to abort; `git mmm run` resumes)"
            );
            stop_all.cancel();
            for cancel in lock(&now).values() {
                cancel.cancel();
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                // Children run in their own process groups and never saw the SIGINT.
                mmm::process::kill_all_groups();
                eprintln!("mmm: aborted");
                std::process::exit(130);
            }
        });
    });
}
