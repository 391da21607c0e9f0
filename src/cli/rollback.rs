//! `git mmm rollback`.

use super::{CliResult, Ctx};

/// Arguments of `git mmm rollback`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `git mmm rollback`.
pub fn run(_ctx: &Ctx, _args: &Args) -> CliResult {
    Err(anyhow::anyhow!("`git mmm rollback` is being built").into())
}
