//! `git mmm doctor`.

use super::{CliResult, Ctx};

/// Arguments of `git mmm doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `git mmm doctor`.
pub fn run(_ctx: &Ctx, _args: &Args) -> CliResult {
    Err(anyhow::anyhow!("`git mmm doctor` is being built").into())
}
