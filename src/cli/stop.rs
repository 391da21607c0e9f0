//! `git mmm stop SPEC`: asks a running loop to stop after its current stage. The loop records
//! the iteration as interrupted and exits cleanly; `git mmm run` later resumes.

use std::io::Write;

use anyhow::Context as _;

use super::common::{open_store, require_spec, spec_id};
use super::{CliResult, Ctx, out};

/// Arguments of `git mmm stop`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec whose loop should stop.
    pub spec: String,
}

/// Runs `git mmm stop`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let spec = spec_id(&args.spec)?;
    let store = open_store(ctx)?;
    require_spec(ctx, &store, &spec)?;
    let file = super::run::stop_file(store.repo().commondir(), spec.as_str());
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&file, b"stop\n").with_context(|| format!("cannot write {}", file.display()))?;
    writeln!(
        out(),
        "asked the loop of `{spec}` to stop after its current stage (a loop that is not running ignores this)"
    )?;
    Ok(())
}
