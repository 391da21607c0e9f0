//! `git mmm init`.

use super::{CliResult, Ctx};

/// Arguments of `git mmm init`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `git mmm init`.
pub fn run(_ctx: &Ctx, _args: &Args) -> CliResult {
    Err(anyhow::anyhow!("`git mmm init` is being built").into())
}
