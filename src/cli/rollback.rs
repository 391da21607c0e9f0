//! `git mmm rollback SPEC --to N` / `--undo`.

use std::io::Write;

use super::common::{open_store, require_spec, short_oid, spec_id};
use super::{CliResult, Ctx, out};

/// Arguments of `git mmm rollback`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec.
    pub spec: String,
    /// Reset the branch to this iteration; the old tip stays reachable from
    /// `refs/mmm/SPEC/archive`.
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "undo",
        conflicts_with = "undo"
    )]
    pub to: Option<u32>,
    /// Undo the last rollback (if the branch has not moved since).
    #[arg(long)]
    pub undo: bool,
}

/// Runs `git mmm rollback`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let spec = spec_id(&args.spec)?;
    let store = open_store(ctx)?;
    require_spec(ctx, &store, &spec)?;
    let r = match args.to {
        Some(n) => store.rollback(&spec, n)?,
        None => store.undo_rollback(&spec)?,
    };
    let mut out = out();
    let at = r
        .iteration
        .map(|n| format!("iteration {n}"))
        .unwrap_or_else(|| "its base".into());
    writeln!(
        out,
        "{}: mmm/{spec} moved from {} to {} ({at}); the old tip is kept in refs/mmm/{spec}/archive ({})",
        if args.undo { "undone" } else { "rolled back" },
        short_oid(r.from),
        short_oid(r.to),
        short_oid(r.archive),
    )?;
    if !args.undo {
        writeln!(out, "undo with: git mmm rollback {spec} --undo")?;
    }
    Ok(())
}
