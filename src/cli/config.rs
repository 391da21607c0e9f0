//! `git mmm config`.

use super::{CliResult, Ctx};

/// Arguments of `git mmm config`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `git mmm config`.
pub fn run(_ctx: &Ctx, _args: &Args) -> CliResult {
    Err(anyhow::anyhow!("`git mmm config` is being built").into())
}
