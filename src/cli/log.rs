//! `git mmm log`.

use super::{CliResult, Ctx};

/// Arguments of `git mmm log`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `git mmm log`.
pub fn run(_ctx: &Ctx, _args: &Args) -> CliResult {
    Err(anyhow::anyhow!("`git mmm log` is being built").into())
}
