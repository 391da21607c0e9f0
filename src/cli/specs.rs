//! `git mmm specs`.

use super::{CliResult, Ctx};

/// Arguments of `git mmm specs`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `git mmm specs`.
pub fn run(_ctx: &Ctx, _args: &Args) -> CliResult {
    Err(anyhow::anyhow!("`git mmm specs` is being built").into())
}
