//! `git mmm plumbing …`: hidden low-level commands used by tests and benchmarks.

use super::{CliResult, Ctx};

/// Plumbing subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Runs a plumbing command.
pub fn run(_ctx: &Ctx, cmd: Command) -> CliResult {
    match cmd {}
}
