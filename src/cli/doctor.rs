//! `git mmm doctor`: finds and repairs what an interrupted run left behind.

use std::io::Write;
use std::time::Duration;

use std::collections::BTreeSet;

use mmm::store::{DoctorOptions, DoctorReport, Store};

use super::common::open_store;
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only report; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Treat every wip ref as stale (no run is in flight anywhere).
    #[arg(long)]
    pub all_wip: bool,
    /// One JSON object: `{"findings": [{"problem", "action", "done"}], "repaired": bool,
    /// "failures": [{"what", "error"}]}` (`repaired`: at least one action was carried out).
    #[arg(long)]
    pub json: bool,
}

/// Runs `git mmm doctor`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let store = open_store(ctx)?;
    let opts = DoctorOptions {
        repair: !args.dry_run,
        stale_after: Duration::from_secs(6 * 3600),
        all_wip: args.all_wip,
        gone_specs: gone_specs(ctx, &store)?,
    };
    let report = store.doctor(&opts)?;
    let mut out = out();
    if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "findings": report.findings.iter().map(|f| serde_json::json!({
                    "problem": f.problem.to_string(),
                    "action": f.action.as_ref().map(|a| a.to_string()),
                    "done": f.done,
                })).collect::<Vec<_>>(),
                "repaired": report.findings.iter().any(|f| f.done),
                "failures": report.failures.iter().map(|f| serde_json::json!({
                    "what": f.what,
                    "error": f.error,
                })).collect::<Vec<_>>(),
            }),
        )?;
        writeln!(out)?;
        return failed(&report);
    }
    if report.findings.is_empty() && report.failures.is_empty() {
        writeln!(
            out,
            "nothing to repair: mmm's refs, notes and worktrees are consistent"
        )?;
        return Ok(());
    }
    for f in &report.findings {
        write!(out, "{}", f.problem)?;
        match (&f.action, f.done) {
            (Some(a), true) => writeln!(out, "\n  repaired: {a}")?,
            (Some(a), false) => writeln!(out, "\n  would repair: {a} (run without --dry-run)")?,
            (None, _) => writeln!(out, "\n  (reported only)")?,
        }
    }
    for f in &report.failures {
        writeln!(out, "could not {}: {}", f.what, f.error)?;
    }
    failed(&report)
}

/// The specs that have a kept worktree but no spec file any more (none when the specs cannot
/// be read: a kept worktree is only reclaimed when its spec is surely gone).
fn gone_specs(ctx: &Ctx, store: &Store) -> Result<BTreeSet<String>, CliError> {
    let kept = store.kept_worktrees()?;
    if kept.is_empty() {
        return Ok(BTreeSet::new());
    }
    let Some(found) = super::specs::discover_lenient(ctx)? else {
        return Ok(BTreeSet::new());
    };
    Ok(kept
        .into_iter()
        .map(|k| k.spec)
        .filter(|spec| found.specs.get_str(spec).is_none() && !found.may_be_broken(spec))
        .collect())
}

/// An error when a check or a repair failed (each was printed); the others ran.
fn failed(report: &DoctorReport) -> CliResult {
    if report.failures.is_empty() {
        return Ok(());
    }
    Err(CliError::with_hint(
        anyhow::anyhow!(
            "{} check(s) or repair(s) failed (listed above); the others ran",
            report.failures.len()
        ),
        "fix what each failure names, then run `git mmm doctor` again",
    ))
}
