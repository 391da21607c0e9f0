//! `git mmm run [SPEC…]`: runs the loop on specs, each in its own temporary worktree, in
//! dependency order, with live progress. Ctrl-C (or `git mmm stop SPEC`) stops after the
//! current stage and records the iteration as interrupted; a second Ctrl-C aborts at once, and
//! the next `run` resumes from the last recorded iteration.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use mmm::agent::{
    Agent, ApiAgent, Auth, Cancel, ClaudeCodeAgent, ClaudeCodeConfig, ClientConfig, CommandAgent,
    CommandConfig, ModelPrice, PriceTable, RetryPolicy, ScriptedAgent,
};
use mmm::config::{AgentKind, Config, FlagValue};
use mmm::context::Templates;
use mmm::engine::review::ReviewSource;
use mmm::engine::schedule::{
    self, LoopError, LoopFactory, Pinned, Report, Running, Schedule, UnknownAgent,
};
use mmm::engine::{DailyLedger, Outcome, Redactor};
use mmm::github::source::HostSource;
use mmm::spec::{Discovered, Spec, SpecError};
use mmm::store::Store;

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
    /// Sync with the remote first, push every iteration and checkpoint (as `[sync] push`).
    #[arg(long)]
    pub push: bool,
    /// Open or update each spec's pull request on GitHub during the loop, and let its
    /// reviewers steer it (as `[github] pr`; implies --push).
    #[arg(long)]
    pub pr: bool,
    /// Take each spec's single-writer lease on the remote first (as `[sync] lease`): a spec
    /// a live runner elsewhere holds is skipped; the leases are renewed while the run lasts
    /// and released at its end.
    #[arg(long)]
    pub lease: bool,
    /// Start the named specs again from the current HEAD: each branch is archived (as
    /// `rollback` does, in refs/mmm/SPEC/archive) and a new attempt begins.
    #[arg(long, requires = "specs")]
    pub fresh: bool,
}

/// Runs `git mmm run`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    execute(ctx, args)
}

/// Runs the loop as `git mmm run` does (the demo uses it too). Exit status: success when every
/// spec run is complete.
pub fn execute(ctx: &Ctx, args: &Args) -> CliResult {
    let (root, loaded) = super::config::load(ctx, flags(args))?;
    let root = root.ok_or_else(|| {
        CliError::with_hint(
            anyhow!("not inside a git repository"),
            "run `git mmm run` inside the repository that holds your specs",
        )
    })?;
    let config = loaded.config;
    let store = open_store(ctx)?;
    let with_pr = args.pr || config.github.pr;
    let push = super::sync::before_run(&store, &config, args.push || with_pr, args.json)?;
    let github = match (&push, with_pr) {
        (Some(p), true) => Some(super::pr_loop::client(ctx, &config, &store, &p.remote)?),
        _ => None,
    };
    let source = github.as_ref().map(|(c, _)| HostSource::new(c));
    // One bad spec stays one bad spec: the sound ones run, the others are reported.
    let found = mmm::spec::discover(&root, Path::new(&config.specs.dir));
    let mut selected = select(&store, &found, &args.specs)?;
    let ids: Vec<_> = selected.iter().map(|s| s.id.clone()).collect();
    let (_leases, leased) = super::sync::take_leases(&store, &config, args.lease, &ids)?;
    for lease in &leased {
        super::sync::tell_skipped(lease, args.json)?;
        selected.retain(|s| s.id != lease.spec);
    }
    if selected.is_empty() && !leased.is_empty() {
        writeln!(
            out(),
            "nothing to run here: runners elsewhere hold the leases"
        )?;
        return Ok(());
    }
    let specs = &found.specs;
    let broken = &found.errors;
    if args.specs.is_empty() {
        super::specs::warn(broken);
    }
    if selected.is_empty() {
        if broken.is_empty() {
            writeln!(
                out(),
                "nothing to run: every spec is complete (see `git mmm status`)"
            )?;
            return Ok(());
        }
        return Err(not_run(broken));
    }
    // A spec asking for an unknown agent is an error before any loop starts.
    for spec in &selected {
        schedule::agent_kind(&config, spec).map_err(unknown_agent)?;
    }
    if args.fresh {
        start_fresh(&store, &selected)?;
    }
    let templates = Templates::load(Some(&root.join(".mmm").join("templates")))
        .map_err(|e| CliError::with_hint(e, "fix or remove the template in .mmm/templates/"))?;
    let prices = price_table(&config);
    let redactor = redactor(ctx, &config)?;
    // Ctrl-C stops the whole run; `git mmm stop SPEC` stops only that spec's loop.
    let interrupt = Cancel::new();
    let running = Running::new();
    watch_for_stop(
        &store,
        &interrupt,
        &running,
        selected.iter().map(|s| s.id.to_string()).collect(),
    );
    let daily = DailyLedger::new(schedule::spent_today(&store, clock(ctx)?.now()));
    let base = head_commit(&store)?;
    let schedule = Schedule {
        config: &config,
        pinned: Pinned {
            model: args.model.is_some(),
            max_iterations: args.max_iterations.is_some(),
        },
        specs,
        selected,
        base,
        templates: &templates,
        prices: &prices,
        redactor: &redactor,
        daily: &daily,
        factory: &Factory {
            ctx,
            root: &root,
            config: &config,
            push: push.clone(),
            review: source.as_ref(),
        },
        temp_dir: ctx
            .var("TMPDIR")
            .filter(|t| !t.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir),
        interrupt: &interrupt,
        running: &running,
    };
    let uncommitted = match (&config.agent.kind, &config.agent.command) {
        (AgentKind::Command, Some(command)) => uncommitted_files(&root, store.repo(), command),
        _ => Vec::new(),
    };
    let publisher = github
        .as_ref()
        .zip(source.as_ref())
        .map(|((client, base), source)| super::pr_loop::Publisher {
            client,
            source,
            config: &config,
            specs,
            base: base.clone(),
            redactor: &redactor,
        });
    let report = run_shown(args, &schedule, &store, publisher.as_ref())?;
    super::sync::after_run(&store, push, args.json)?;
    let agent_failed = report
        .outcomes
        .iter()
        .any(|o| o.reason == mmm::engine::StopReason::Critical);
    finish(report, schedule.selected.len(), &interrupt).map_err(|mut e| {
        if agent_failed && !uncommitted.is_empty() {
            e.hints.insert(0, clean_checkout_hint(&uncommitted));
        }
        e
    })?;
    if args.specs.is_empty() && !broken.is_empty() {
        return Err(not_run(broken));
    }
    Ok(())
}

/// Archives the branches of `selected` for a fresh attempt from HEAD (`--fresh`).
fn start_fresh(store: &Store, selected: &[&Spec]) -> CliResult {
    for spec in selected {
        if let Some(fresh) = store.start_fresh(&spec.id)? {
            eprintln!(
                "mmm: {}: the old attempt (tip {}) is kept in refs/mmm/{}/archive; starting again from HEAD",
                spec.id,
                super::common::short_oid(fresh.archived),
                spec.id
            );
        }
    }
    Ok(())
}

/// The commit a run starts from: HEAD's.
fn head_commit(store: &Store) -> Result<git2::Oid, CliError> {
    Ok(store
        .repo()
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| {
            CliError::with_hint(
                anyhow::Error::new(e).context("the repository has no commit to start from"),
                "commit something first (`git commit`)",
            )
        })?
        .id())
}

/// The words of a `command` agent's command line that name files of the repository which
/// are not committed (untracked, ignored or only staged): the agent runs in a worktree that
/// is a clean checkout of the committed files, where they are missing.
fn uncommitted_files(root: &Path, repo: &git2::Repository, command: &str) -> Vec<String> {
    let tree = repo.head().and_then(|h| h.peel_to_tree()).ok();
    let mut found: Vec<String> = Vec::new();
    for word in command.split_whitespace() {
        let word = word.trim_matches(|c| c == '"' || c == '\'');
        let rel = Path::new(word.strip_prefix("./").unwrap_or(word));
        if word.starts_with('-') || word.contains('{') || !rel.is_relative() || word.is_empty() {
            continue;
        }
        let committed = tree.as_ref().is_some_and(|t| t.get_path(rel).is_ok());
        if !committed && root.join(rel).is_file() && !found.iter().any(|f| f == word) {
            found.push(word.to_owned());
        }
    }
    found
}

/// The hint for a `command` agent that failed while its script is not committed.
fn clean_checkout_hint(files: &[String]) -> String {
    let names = files
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[agent] command names {names}, which is not committed: the agent runs in a worktree \
         that is a clean checkout of the committed files, where it does not exist; commit it \
         (`git add {} && git commit`) or name it by an absolute path",
        files.join(" ")
    )
}

/// The error after a run of every spec while some specs have problems: they were not run.
fn not_run(broken: &[mmm::spec::SpecError]) -> CliError {
    let mut files: Vec<String> = broken
        .iter()
        .map(|e| e.file.display().to_string())
        .collect();
    files.sort();
    files.dedup();
    CliError::with_hint(
        anyhow!(
            "{} problem(s) in {} spec file(s) kept them from running: {}",
            broken.len(),
            files.len(),
            files.join(", ")
        ),
        "fix them (`git mmm specs` lists every problem with its line), then `git mmm run` again",
    )
}

/// The configuration's values given as flags.
fn flags(args: &Args) -> Vec<FlagValue> {
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
    flags
}

/// Runs the schedule, showing its events as `args` ask (every line through the redactor), and
/// the summary after it.
fn run_shown(
    args: &Args,
    schedule: &Schedule<'_, Factory<'_>>,
    store: &Store,
    publisher: Option<&super::pr_loop::Publisher<'_>>,
) -> Result<Report<CliError>, CliError> {
    let concurrent = schedule.concurrency() > 1;
    let redactor = schedule.redactor;
    let mut progress = Progress::new(args.json, args.stream, concurrent, redactor.clone());
    let report = schedule::run(schedule, store, &mut |e| {
        progress.event(&e);
        if let Some(p) = publisher {
            p.event(store, &e);
        }
    });
    progress.finish();
    if !args.json {
        summary(&report.outcomes, redactor)?;
    }
    Ok(report)
}

/// The lines after the run: totals, then one line per spec (its detail redacted: it may quote
/// an error or the model).
fn summary(outcomes: &[Outcome], redactor: &Redactor) -> CliResult {
    let mut out = out();
    let total: f64 = outcomes.iter().map(|o| o.cost_usd).sum();
    let tokens: u64 = outcomes.iter().map(|o| o.tokens.total()).sum();
    writeln!(
        out,
        "\n{} spec(s) run, {} complete, {tokens} tokens, {}",
        outcomes.len(),
        outcomes.iter().filter(|o| o.reason.is_complete()).count(),
        super::common::usd(total)
    )?;
    for o in outcomes {
        writeln!(
            out,
            "  {:<24} {:<16} iteration {:<3} {}",
            o.spec,
            o.reason.as_str(),
            o.last_iteration,
            redactor.redact(&o.detail)
        )?;
    }
    Ok(())
}

/// The exit status: the first loop that could not run, else a failure unless every selected
/// spec completed.
fn finish(report: Report<CliError>, selected: usize, interrupt: &Cancel) -> CliResult {
    if let Some(e) = report.failure {
        return Err(loop_error(e));
    }
    let outcomes = report.outcomes;
    let incomplete = outcomes.iter().filter(|o| !o.reason.is_complete()).count();
    if interrupt.is_cancelled() || incomplete > 0 || outcomes.len() < selected {
        return Err(CliError {
            error: anyhow!(
                "{} of {} spec(s) did not complete",
                selected - (outcomes.len() - incomplete),
                selected
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

/// A loop that could not run, for the user.
fn loop_error(e: LoopError<CliError>) -> CliError {
    match e {
        LoopError::Setup(e) => e,
        LoopError::UnknownAgent(e) => unknown_agent(e),
        LoopError::Engine { spec, error } => {
            let hint = error.hint();
            let err = anyhow::Error::new(error).context(format!("spec `{spec}`"));
            match hint {
                Some(h) => CliError::with_hint(err, h),
                None => CliError::from(err),
            }
        }
        LoopError::Panicked(e) => CliError::from(e),
    }
}

fn unknown_agent(e: UnknownAgent) -> CliError {
    let hint = e.hint();
    CliError::with_hint(e, hint)
}

/// Each loop's store and agent, from this process's environment.
struct Factory<'a> {
    ctx: &'a Ctx,
    root: &'a Path,
    config: &'a Config,
    push: Option<mmm::store::SyncOptions>,
    review: Option<&'a HostSource<'a>>,
}

impl LoopFactory for Factory<'_> {
    type Error = CliError;

    fn store(&self) -> Result<Store, CliError> {
        let mut store = open_store(self.ctx)?;
        store.set_push(self.push.clone());
        Ok(store)
    }

    fn agent(&self, kind: AgentKind) -> Result<Box<dyn Agent>, CliError> {
        build_agent(self.ctx, self.root, self.config, kind)
    }

    fn review(&self) -> Option<&dyn ReviewSource> {
        self.review.map(|s| s as &dyn ReviewSource)
    }
}

/// The specs to run: the named ones (with their order from the dependency graph), or every
/// spec not complete at its current revision.
fn select<'a>(
    store: &Store,
    found: &'a Discovered,
    named: &[String],
) -> Result<Vec<&'a Spec>, CliError> {
    let specs = &found.specs;
    if named.is_empty() {
        return Ok(schedule::incomplete(store, specs));
    }
    let mut wanted = BTreeSet::new();
    for n in named {
        let id = spec_id(n)?;
        if specs.get(&id).is_none() {
            if found.may_be_broken(id.as_str()) {
                let mine: Vec<SpecError> = found
                    .errors
                    .iter()
                    .filter(|e| {
                        e.file.file_stem().is_some_and(|s| s == id.as_str())
                            || e.to_string().contains(&format!("`{id}`"))
                    })
                    .cloned()
                    .collect();
                return Err(super::specs::spec_errors(&mine));
            }
            return Err(CliError::with_hint(
                anyhow!("no spec `{id}`"),
                "`git mmm specs` lists the specs",
            ));
        }
        wanted.insert(id);
    }
    Ok(schedule::ordered(specs)
        .filter(|s| wanted.contains(&s.id))
        .collect())
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
                retry_budget: config.agent.retry_budget,
                initial_backoff: config.agent.retry_backoff,
                ..RetryPolicy::default()
            };
            client.request_timeout = config.agent.request_timeout;
            client.idle_timeout = config.agent.idle_timeout;
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
                failure_pattern: a.failure_pattern.clone(),
                env: Vec::new(),
                env_remove: Vec::new(),
            })
            .map_err(|e| CliError::with_hint(e, "fix [agent] in .mmm/config.toml"))?;
            // Prompt files under `.git/mmm/tmp/`: what a killed run leaves, doctor removes.
            let agent = match git2::Repository::discover(root) {
                Ok(repo) => agent.with_temp_dir(mmm::store::temp_dir(repo.commondir())),
                Err(_) => agent,
            };
            Ok(Box::new(agent))
        }
    }
}

/// The price table: built-in, with `[prices."model"]` overrides from the configuration.
pub(super) fn price_table(config: &Config) -> PriceTable {
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

/// The redactor of everything the run prints and writes: the environment's secrets,
/// `[secrets] redact`, `[redact] env` and `[redact] patterns`.
pub(crate) fn redactor(ctx: &Ctx, config: &Config) -> Result<Redactor, CliError> {
    // `[secrets] redact` holds variable names or literal values.
    let (mut names, values): (Vec<String>, Vec<String>) = config
        .secrets
        .redact
        .iter()
        .cloned()
        .partition(|s| ctx.env.contains_key(s));
    names.extend(config.redact.env.iter().cloned());
    Redactor::from_env(
        ctx.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &names,
        &values,
    )
    .with_patterns(&config.redact.patterns)
    .map_err(|e| CliError::with_hint(anyhow!(e), "fix the pattern in .mmm/config.toml"))
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
    let now = running.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            for (spec, cancel) in now.loops() {
                let file = stop_file(&git_dir, &spec);
                if file.exists() && !cancel.is_cancelled() {
                    let _ = std::fs::remove_file(&file);
                    eprintln!("mmm: stop requested for {spec}; stopping after the current stage");
                    cancel.cancel();
                }
            }
        }
    });
    let stop_all = interrupt.clone();
    let now = running.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.spawn(terminated());
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            eprintln!(
                "\nmmm: stopping after the current stage (Ctrl-C again to abort; `git mmm run` resumes)"
            );
            stop_all.cancel();
            now.cancel_all();
            if tokio::signal::ctrl_c().await.is_ok() {
                // Children run in their own process groups and never saw the SIGINT.
                mmm::process::kill_all_groups();
                super::sync::release_leases();
                eprintln!("mmm: aborted");
                std::process::exit(130);
            }
        });
    });
}

/// SIGTERM (a CI job cancelled, say): ends the process at once as a second Ctrl-C does,
/// with the children's process groups killed and the leases released (the next `git mmm run`
/// resumes).
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    if term.recv().await.is_some() {
        mmm::process::kill_all_groups();
        super::sync::release_leases();
        eprintln!("mmm: terminated");
        std::process::exit(143);
    }
}
