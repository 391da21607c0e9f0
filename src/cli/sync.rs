//! `git mmm sync [SPEC…]`: exchanges mmm's refs with a git remote (fetch into tracking refs,
//! integrate, one atomic push with leases), one line per spec.

use std::io::Write;

use mmm::config::Config;
use mmm::store::{SpecSyncStatus, Store, SyncError, SyncOptions, SyncReport};

use super::common::{open_store, short_oid, spec_id};
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm sync`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Output: one line per spec: `SPEC  up to date|fast-forwarded|pushed|diverged`; a \
diverged spec names the local tips that went to refs/mmm/SPEC/archive.\n--json: one object \
{\"remote\", \"rounds\", \"pushed_refs\", \"specs\": [{\"spec\", \"status\", \"archived\": [commit…], \
\"tip\"}]} with status `up-to-date`, `fast-forwarded`, `pushed` or `diverged`."
)]
pub struct Args {
    /// The specs to sync (default: every spec either side has).
    pub specs: Vec<String>,
    /// The remote (default: `[sync] remote`, else the current branch's upstream, else origin).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Runs `git mmm sync`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let (_root, loaded) = super::config::load(ctx, Vec::new())?;
    let store = open_store(ctx)?;
    let mut opts = options(&store, &loaded.config, args.remote.as_deref());
    for s in &args.specs {
        opts.specs.push(spec_id(s)?);
    }
    let report = sync(&store, &opts)?;
    render(&report, args.json)
}

/// The sync options from the configuration and an optional `--remote`.
pub fn options(store: &Store, config: &Config, remote: Option<&str>) -> SyncOptions {
    let remote = remote
        .map(str::to_owned)
        .or_else(|| config.sync.remote.clone())
        .or_else(|| store.upstream_remote())
        .unwrap_or_else(|| "origin".to_owned());
    let mut opts = SyncOptions::new(remote);
    opts.timeout = config.sync.timeout;
    opts.attempts = u32::try_from(config.sync.attempts).unwrap_or(u32::MAX);
    opts
}

/// Runs a sync, turning its errors into messages with what to do.
pub fn sync(store: &Store, opts: &SyncOptions) -> Result<SyncReport, CliError> {
    store.sync(opts).map_err(|e| {
        let hint = match &e {
            SyncError::NoRemote { .. } => "`git remote -v` lists the remotes",
            SyncError::Store(_) => "run `git mmm doctor`, then `git mmm sync` again",
            _ => "the local history is complete; `git mmm sync` again finishes the job",
        };
        CliError::with_hint(e, hint)
    })
}

fn render(report: &SyncReport, json: bool) -> CliResult {
    let mut w = out();
    if json {
        writeln!(w, "{}", serde_json::to_string(report)?)?;
        return Ok(());
    }
    if report.specs.is_empty() {
        writeln!(
            w,
            "nothing to sync: no spec has history here or on `{}`",
            report.remote
        )?;
        return Ok(());
    }
    let width = report
        .specs
        .iter()
        .map(|s| s.spec.as_str().len())
        .max()
        .unwrap_or(0);
    for s in &report.specs {
        write!(w, "{:width$}  {}", s.spec.as_str(), s.status.as_str())?;
        if s.status == SpecSyncStatus::Diverged {
            let kept: Vec<String> = s.archived.iter().map(|o| short_oid(*o)).collect();
            write!(
                w,
                ": the remote's iterations won; ours are kept in refs/mmm/{}/archive ({})",
                s.spec,
                kept.join(", ")
            )?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// `git mmm run --push` (or `[sync] push`), before the first iteration: fetch and integrate
/// (and push what is pending), so that the run continues from the newest iteration on the
/// remote. Returns where the loops push.
pub fn before_run(
    store: &Store,
    config: &Config,
    flag: bool,
    json: bool,
) -> Result<Option<SyncOptions>, CliError> {
    if !(flag || config.sync.push) {
        return Ok(None);
    }
    let opts = options(store, config, None);
    let report = sync(store, &opts)?;
    if !json {
        let moved = report
            .specs
            .iter()
            .filter(|s| s.status != SpecSyncStatus::UpToDate)
            .count();
        writeln!(
            out(),
            "synced with `{}`: {moved} spec(s) changed, {} up to date",
            report.remote,
            report.specs.len() - moved
        )?;
    }
    Ok(Some(opts))
}

/// After `run --push`: one more sync, which pushes what a failed push left behind and
/// reports a failure.
pub fn after_run(store: &Store, push: Option<SyncOptions>, json: bool) -> CliResult {
    let Some(opts) = push else {
        return Ok(());
    };
    let report = sync(store, &opts)?;
    if json {
        return Ok(());
    }
    let mut w = out();
    writeln!(w, "synced with `{}`:", report.remote)?;
    for s in &report.specs {
        writeln!(w, "  {:<24} {}", s.spec.as_str(), s.status.as_str())?;
    }
    Ok(())
}
