//! `git mmm sync [SPEC…]`: exchanges mmm's refs with a git remote (fetch into tracking refs,
//! integrate, one atomic push with leases), one line per spec.

use std::collections::BTreeMap;
use std::io::Write;

use mmm::config::Config;
use mmm::spec::SpecId;
use mmm::store::{
    Lease, LeaseHolder, LeaseKeeper, SpecSyncStatus, Store, SyncError, SyncOptions, SyncReport,
    Take,
};

use super::common::{open_store, short_oid, spec_id};
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm sync`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Output: one line per spec: `SPEC  up to date|fast-forwarded|pushed|diverged`; a \
diverged spec names the local tips that went to refs/mmm/SPEC/archive.\n--json: one object \
{\"remote\", \"rounds\", \"pushed_refs\", \"specs\": [{\"spec\", \"status\", \"archived\": [commit…], \
\"tip\", \"problems\": [text…]}]} with status `up-to-date`, `fast-forwarded`, `pushed`, \
`diverged` or `foreign` (a branch mmm/SPEC that is not mmm's: left alone); problems name what \
is wrong on the remote (a foreign branch, a malformed note), which sync never rewrites."
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
        for p in &s.problems {
            writeln!(w, "{:width$}  warning: {p}", "")?;
        }
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

/// The leases this process holds, for the abort paths (a second Ctrl-C, SIGTERM) that end the
/// process without unwinding.
static HELD: std::sync::Mutex<Option<std::sync::Arc<LeaseKeeper>>> = std::sync::Mutex::new(None);

/// Releases the leases this process holds (if any); waits until the remote has them deleted.
pub fn release_leases() {
    let held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(k) = held {
        k.release();
    }
}

/// The leases a run holds until it is dropped (or [`release_leases`]).
pub struct HeldLeases(Option<std::sync::Arc<LeaseKeeper>>);

impl Drop for HeldLeases {
    fn drop(&mut self) {
        if self.0.take().is_some() {
            release_leases();
        }
    }
}

/// `git mmm run --lease` (or `[sync] lease`): takes the lease of each of `specs` on the
/// remote. Returns the leases held and the specs a live runner elsewhere holds (to skip).
pub fn take_leases(
    store: &Store,
    config: &Config,
    flag: bool,
    specs: &[SpecId],
) -> Result<(HeldLeases, Vec<Lease>), CliError> {
    if !(flag || config.sync.lease) || specs.is_empty() {
        return Ok((HeldLeases(None), Vec::new()));
    }
    let opts = options(store, config, None);
    let who = LeaseHolder {
        holder: identity(store),
        host: mmm::store::host_name(),
        pid: std::process::id(),
        run: mmm::clock::IdGen::next_id(&mmm::clock::UlidGen),
    };
    let ttl = config.sync.lease_ttl;
    let fail = |e: SyncError| {
        CliError::with_hint(
            e,
            "leases need the remote: fix it, or run without --lease (and `[sync] lease = false`)",
        )
    };
    store.fetch_leases(&opts).map_err(fail)?;
    let (mut held, mut skipped) = (BTreeMap::new(), Vec::new());
    for spec in specs {
        match store.take_lease(&opts, spec, &who, ttl) {
            Ok(Take::Taken(oid)) => {
                held.insert(spec.clone(), oid);
            }
            Ok(Take::Held(lease)) => skipped.push(lease),
            Err(e) => {
                // Give back what was taken before failing.
                for (s, oid) in &held {
                    let _ = store.release_lease(&opts, s, *oid);
                }
                return Err(fail(e));
            }
        }
    }
    if held.is_empty() {
        return Ok((HeldLeases(None), skipped));
    }
    let keeper = std::sync::Arc::new(LeaseKeeper::start(store.reopen()?, opts, who, ttl, held));
    *HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(keeper.clone());
    Ok((HeldLeases(Some(keeper)), skipped))
}

/// Who takes a lease: the git identity (`user.email`, else `user.name`), else `mmm`.
fn identity(store: &Store) -> String {
    let Ok(cfg) = store.repo().config() else {
        return "mmm".to_owned();
    };
    ["user.email", "user.name"]
        .iter()
        .find_map(|k| cfg.get_string(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "mmm".to_owned())
}

/// Tells that a spec is skipped because of a lease (a JSON event with `--json`).
pub fn tell_skipped(lease: &Lease, json: bool) -> CliResult {
    if json {
        let mut v = serde_json::to_value(lease)?;
        v["event"] = "leased".into();
        writeln!(out(), "{v}")?;
    } else {
        writeln!(
            out(),
            "skipping {}: {}; it can be taken over once it expires",
            lease.spec,
            lease
        )?;
    }
    Ok(())
}

/// The leases on the default remote as of its last fetch, by spec (none when the config or
/// the remote cannot be read: leases are an extra, not a reason to fail).
pub fn known_leases(ctx: &super::Ctx, store: &Store) -> BTreeMap<SpecId, Lease> {
    let Ok((_, loaded)) = super::config::load(ctx, Vec::new()) else {
        return BTreeMap::new();
    };
    let opts = options(store, &loaded.config, None);
    store
        .leases(&opts.remote)
        .unwrap_or_default()
        .into_iter()
        .map(|l| (l.spec.clone(), l))
        .collect()
}
