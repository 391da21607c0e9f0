//! `git mmm event [--github-event PATH]`: one entry point for CI. It reads the event that
//! started the job (GitHub Actions: `GITHUB_EVENT_NAME`, `GITHUB_EVENT_PATH`) and does what it
//! calls for. A push runs the specs it adds or changes under the specs directory that are ready
//! (`plan`'s rule); other events are named and left alone (exit 0).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use git2::{Oid, Repository};
use mmm::trigger::event::{self, PushEvent};
use mmm::trigger::push::{self, RefUpdate};

use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm event`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Handled events: push (the specs the pushed range adds or changes under the specs \
directory, those ready as `git mmm plan` says, are run; a new branch, with an all-zero `before`, \
is compared with the repository's default branch). Any other event is named and ignored, exit 0."
)]
pub struct Args {
    /// The event's JSON payload (default: $GITHUB_EVENT_PATH).
    #[arg(long, value_name = "PATH")]
    pub github_event: Option<PathBuf>,
    /// The event's name (default: $GITHUB_EVENT_NAME, else push).
    #[arg(long, value_name = "NAME")]
    pub event_name: Option<String>,
    /// Sync with the remote first, push every iteration and checkpoint (as `run --push`).
    #[arg(long)]
    pub push: bool,
}

/// What every run an event starts gets, besides its specs: the one place where CI options join
/// the runs (a pull request per spec is another field here, passed on to `run` as `--push` is).
#[derive(Debug, Clone, Copy)]
pub struct RunWith {
    /// As `run --push`.
    pub push: bool,
}

/// Runs `git mmm event`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let name = args
        .event_name
        .clone()
        .or_else(|| ctx.var("GITHUB_EVENT_NAME").map(str::to_owned))
        .unwrap_or_else(|| "push".to_owned());
    if !event::HANDLED.contains(&name.as_str()) {
        writeln!(
            out(),
            "mmm: the `{name}` event starts nothing: `git mmm event` handles {}",
            event::HANDLED.join(", ")
        )?;
        return Ok(());
    }
    let path = args
        .github_event
        .clone()
        .or_else(|| ctx.var("GITHUB_EVENT_PATH").map(PathBuf::from))
        .ok_or_else(|| {
            CliError::usage(anyhow!(
                "no event payload: give --github-event PATH or set GITHUB_EVENT_PATH"
            ))
        })?;
    let path = ctx.cwd.join(path);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the event payload {}", path.display()))?;
    let ev = event::parse_push(&text).map_err(|e| {
        CliError::with_hint(
            anyhow!("{} is not a push event payload: {e}", path.display()),
            "pass the file GitHub Actions gives in GITHUB_EVENT_PATH",
        )
    })?;
    on_push(ctx, &ev, RunWith { push: args.push })
}

fn on_push(ctx: &Ctx, ev: &PushEvent, with: RunWith) -> CliResult {
    let mut w = out();
    if ev.is_deletion() {
        writeln!(w, "mmm: {} was deleted: nothing to run", ev.git_ref)?;
        return Ok(());
    }
    if !push::is_trigger_ref(&ev.git_ref) {
        writeln!(
            w,
            "mmm: {} is not a branch that starts runs (tags, notes and mmm's own branches do not): nothing to run",
            ev.git_ref
        )?;
        return Ok(());
    }
    let (root, loaded) = super::config::load(ctx, Vec::new())?;
    let root = root.ok_or_else(|| {
        CliError::with_hint(
            anyhow!("not inside a git repository with a work tree"),
            "run `git mmm event` in the checkout of the pushed commit",
        )
    })?;
    let repo = Repository::open(&root)?;
    let after = commit(&repo, &ev.after, "after")?;
    let before = Oid::from_str(&ev.before)
        .ok()
        .filter(|b| !b.is_zero() && repo.find_commit(*b).is_ok());
    if before.is_none() && !ev.is_new_branch() {
        writeln!(
            w,
            "mmm: `before` ({}) is not in this clone: comparing with the default branch instead (fetch with fetch-depth: 0 for the exact range)",
            ev.before
        )?;
    }
    let update = RefUpdate {
        remote_ref: ev.git_ref.clone(),
        old: before.unwrap_or(Oid::ZERO_SHA1),
        new: after,
    };
    let hide = default_branch_tips(&repo, ev)?;
    let pushed = push::pushed_specs(&repo, &[update], &hide, &loaded.config.specs.dir)?;
    for p in &pushed.deleted {
        writeln!(w, "mmm: {p} is deleted by this push: nothing runs for it")?;
    }
    let specs = super::specs::discover_strict(&root, &loaded.config)?;
    let store = super::common::open_store(ctx)?;
    let states = store.status_all()?;
    let ids: Vec<String> = mmm::engine::plan::ready(&specs, &states)
        .into_iter()
        .filter(|s| pushed.changed.contains(&rel(&root, &s.path)))
        .map(|s| s.id.to_string())
        .collect();
    for s in specs.iter() {
        if !pushed.changed.contains(&rel(&root, &s.path)) || ids.contains(&s.id.to_string()) {
            continue;
        }
        if s.depends_on.is_empty() {
            writeln!(
                w,
                "mmm: {} is complete at this revision: nothing to run",
                s.id
            )?;
        } else {
            let deps: Vec<String> = s.depends_on.iter().map(|d| d.to_string()).collect();
            writeln!(
                w,
                "mmm: {} waits for what it depends on ({}) to be complete",
                s.id,
                deps.join(", ")
            )?;
        }
    }
    if ids.is_empty() {
        writeln!(w, "mmm: no spec to run for this push")?;
        return Ok(());
    }
    let forced = if ev.forced { " (forced)" } else { "" };
    writeln!(
        w,
        "mmm: push to {}{forced}: running {}",
        ev.git_ref,
        ids.join(", ")
    )?;
    drop(w);
    run_specs(ctx, ids, with)
}

/// Runs the specs as `git mmm run SPEC… [--push]` does.
fn run_specs(ctx: &Ctx, specs: Vec<String>, with: RunWith) -> CliResult {
    super::run::execute(
        ctx,
        &super::run::Args {
            specs,
            agent: None,
            model: None,
            max_iterations: None,
            budget_usd: None,
            json: false,
            stream: false,
            push: with.push,
            pr: false,
            lease: false,
            fresh: false,
        },
    )
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

fn commit(repo: &Repository, id: &str, field: &str) -> Result<Oid, CliError> {
    Oid::from_str(id)
        .ok()
        .filter(|o| repo.find_commit(*o).is_ok())
        .ok_or_else(|| {
            CliError::with_hint(
                anyhow!("the payload's `{field}` ({id}) is not a commit of this clone"),
                "check out the pushed commit (in CI: actions/checkout with fetch-depth: 0)",
            )
        })
}

/// The tips of the default branch (local and remote-tracking), unless it is the pushed branch:
/// what a new branch is compared with.
fn default_branch_tips(repo: &Repository, ev: &PushEvent) -> Result<Vec<Oid>, CliError> {
    let branch = ev
        .repository
        .as_ref()
        .and_then(|r| r.default_branch.clone())
        .unwrap_or_else(|| "main".to_owned());
    let pushed = ev.git_ref.trim_start_matches("refs/heads/");
    if branch == pushed {
        return Ok(Vec::new());
    }
    let mut tips = Vec::new();
    for glob in [
        format!("refs/heads/{branch}"),
        format!("refs/remotes/*/{branch}"),
    ] {
        for r in repo.references_glob(&glob)? {
            tips.extend(r?.target());
        }
    }
    Ok(tips)
}
