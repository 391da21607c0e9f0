//! `git mmm hook pre-push REMOTE URL` and `git mmm hook post-receive` (hidden): what mmm's git
//! hooks call with git's input on stdin. They find the spec files the push adds or changes and,
//! as `[hooks] on_push` says, start their runs in the background (one detached `git mmm run
//! SPEC` each, logging to `.git/mmm/logs/`, its pid in `.git/mmm/runs/SPEC.json` while it runs,
//! so `git mmm status` shows it), print what would run, or do nothing. A failure of mmm here
//! never fails the push, unless `[hooks] strict = true`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use git2::{Oid, Repository};
use mmm::config::Config;
use mmm::spec::Spec;
use mmm::trigger::push::{self, Pushed, RefUpdate};

use super::{CliError, CliResult, Ctx};

/// Arguments of `git mmm hook`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which hook calls.
    #[command(subcommand)]
    pub hook: Hook,
}

/// The hooks.
#[derive(Debug, clap::Subcommand)]
pub enum Hook {
    /// Called by the pre-push hook with git's arguments; git's lines on stdin.
    PrePush {
        /// The remote's name (or its URL when the push names no remote).
        remote: Option<String>,
        /// The remote's URL.
        url: Option<String>,
    },
    /// Called by the post-receive hook of a bare remote; git's lines on stdin.
    PostReceive,
}

/// Runs `git mmm hook`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let loaded = super::config::load(ctx, Vec::new());
    let strict = match &loaded {
        Ok((_, l)) => l.config.hooks.strict,
        Err(_) => false,
    };
    let result = loaded.and_then(|(root, l)| handle(ctx, &args.hook, &input, root, &l.config));
    match result {
        Err(e) if !strict => {
            eprintln!(
                "mmm: {:#}\nmmm: the push goes on; no spec run started ([hooks] strict = false)",
                e.error
            );
            Ok(())
        }
        other => other,
    }
}

fn handle(
    ctx: &Ctx,
    hook: &Hook,
    input: &str,
    root: Option<PathBuf>,
    config: &Config,
) -> CliResult {
    if config.hooks.on_push == "off" {
        return Ok(());
    }
    let repo = Repository::discover(&ctx.cwd).context("cannot open the repository")?;
    let (updates, hide) = match hook {
        Hook::PrePush { remote, .. } => {
            let mut updates = push::parse_pre_push(input);
            if updates.is_empty() {
                updates.extend(pre_commit_update(ctx, &repo));
            }
            let hide = remote_tips(&repo, remote.as_deref())?;
            (updates, hide)
        }
        Hook::PostReceive => {
            let updates = push::parse_post_receive(input);
            let hide = other_branch_tips(&repo, &updates)?;
            (updates, hide)
        }
    };
    let pushed = push::pushed_specs(&repo, &updates, &hide, &config.specs.dir)?;
    for p in &pushed.deleted {
        eprintln!("mmm: {p} is deleted by this push: nothing runs for it");
    }
    if pushed.changed.is_empty() {
        return Ok(());
    }
    let Some(root) = root else {
        let list: Vec<&str> = pushed.changed.iter().map(String::as_str).collect();
        eprintln!(
            "mmm: this push adds or changes {}; a bare repository has no work tree to run them in: \
             run them from a clone (`git mmm run`) or in CI (`git mmm event`)",
            list.join(", ")
        );
        return Ok(());
    };
    let specs = ready_specs(ctx, &root, config, &pushed)?;
    if specs.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = specs.iter().map(|s| s.id.to_string()).collect();
    if config.hooks.on_push == "announce" {
        eprintln!(
            "mmm: this push adds or changes spec(s) {}; run them with `git mmm run {}` \
             ([hooks] on_push = \"announce\"; \"run\" starts them in the background)",
            ids.join(", "),
            ids.join(" ")
        );
        return Ok(());
    }
    for id in &ids {
        let (pid, log) = start(&repo, &root, id)?;
        let log = log
            .strip_prefix(&root)
            .unwrap_or(&log)
            .display()
            .to_string();
        eprintln!("mmm: started `git mmm run {id}` in the background (pid {pid}, log {log})");
    }
    Ok(())
}

/// The pushed specs that can run now; the others are said why not.
fn ready_specs(
    ctx: &Ctx,
    root: &Path,
    config: &Config,
    pushed: &Pushed,
) -> Result<Vec<Spec>, CliError> {
    let found = mmm::spec::discover(root, Path::new(&config.specs.dir));
    let rel = |p: &Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    };
    for e in &found.errors {
        if pushed.changed.contains(&rel(&e.file)) {
            eprintln!("mmm: {e}: it does not run until that is fixed");
        }
    }
    let store = super::common::open_store(ctx)?;
    let states = store.status_all()?;
    let ready: BTreeSet<String> = mmm::engine::plan::ready(&found.specs, &states)
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    let mut out = Vec::new();
    for s in found.specs.iter() {
        if !pushed.changed.contains(&rel(&s.path)) {
            continue;
        }
        if ready.contains(s.id.as_str()) {
            out.push(s.clone());
        } else if s.depends_on.is_empty() {
            eprintln!("mmm: {} is complete at this revision: nothing to run", s.id);
        } else {
            let deps: Vec<String> = s.depends_on.iter().map(|d| d.to_string()).collect();
            eprintln!(
                "mmm: {} waits for what it depends on ({}) to be complete",
                s.id,
                deps.join(", ")
            );
        }
    }
    Ok(out)
}

/// Starts `git mmm run SPEC` detached, logging to `.git/mmm/logs/<time>-<spec>.log`.
fn start(repo: &Repository, root: &Path, spec: &str) -> Result<(u32, PathBuf), CliError> {
    let dir = repo.commondir().join("mmm").join("logs");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
    let stamp = mmm::clock::rfc3339(std::time::SystemTime::now()).replace(':', "");
    let path = dir.join(format!("{stamp}-{spec}.log"));
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot create the log {}", path.display()))?;
    use std::io::Write as _;
    writeln!(
        log,
        "mmm: `git mmm run {spec}` started by the push hook at {stamp}"
    )?;
    let exe = std::env::current_exe().context("cannot find the git-mmm executable")?;
    let args = [
        OsStr::new("-C"),
        root.as_os_str(),
        OsStr::new("run"),
        OsStr::new(spec),
    ];
    let pid = mmm::process::spawn_detached(exe.as_os_str(), &args, root, log, &[])
        .with_context(|| format!("cannot start `git mmm run {spec}`"))?;
    Ok((pid, path))
}

/// The tips of the remote-tracking refs of `remote` (all remotes' when it is a URL): commits
/// the remote has already.
fn remote_tips(repo: &Repository, remote: Option<&str>) -> Result<Vec<Oid>, CliError> {
    let named = remote.filter(|r| repo.find_remote(r).is_ok());
    let glob = match named {
        Some(r) => format!("refs/remotes/{r}/*"),
        None => "refs/remotes/*".to_owned(),
    };
    let mut tips = Vec::new();
    for r in repo.references_glob(&glob)? {
        if let Some(id) = r?.target() {
            tips.push(id);
        }
    }
    Ok(tips)
}

/// In a bare remote after a push: the tips of the branches the push did not update.
fn other_branch_tips(repo: &Repository, updates: &[RefUpdate]) -> Result<Vec<Oid>, CliError> {
    let mut tips = Vec::new();
    for r in repo.references_glob("refs/heads/*")? {
        let r = r?;
        let name = r.name().unwrap_or_default();
        if updates.iter().any(|u| u.remote_ref == name) {
            continue;
        }
        tips.extend(r.target());
    }
    Ok(tips)
}

/// pre-commit runs pre-push hooks without git's lines, with the range in variables instead.
fn pre_commit_update(ctx: &Ctx, repo: &Repository) -> Option<RefUpdate> {
    let resolve = |name: &str| -> Option<Oid> {
        let v = ctx.var(name)?;
        Oid::from_str(v)
            .ok()
            .or_else(|| repo.revparse_single(v).ok().map(|o| o.id()))
    };
    let new = resolve("PRE_COMMIT_TO_REF")?;
    let old = resolve("PRE_COMMIT_FROM_REF").unwrap_or(Oid::ZERO_SHA1);
    let branch = ctx
        .var("PRE_COMMIT_REMOTE_BRANCH")
        .unwrap_or("refs/heads/HEAD");
    Some(RefUpdate {
        remote_ref: branch.to_owned(),
        old,
        new,
    })
}
