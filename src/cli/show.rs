//! `git mmm show`.

use super::{CliResult, Ctx};

/// Arguments of `git mmm show`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `git mmm show`.
pub fn run(_ctx: &Ctx, _args: &Args) -> CliResult {
    Err(anyhow::anyhow!("`git mmm show` is being built").into())
}
