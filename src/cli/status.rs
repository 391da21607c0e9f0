//! `git mmm status`.

use super::{CliResult, Ctx};

/// Arguments of `git mmm status`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `git mmm status`.
pub fn run(_ctx: &Ctx, _args: &Args) -> CliResult {
    Err(anyhow::anyhow!("`git mmm status` is being built").into())
}
