//! `git mmm clean [SPEC…]`: removes the worktrees kept between runs (`[loop] keep_worktrees`),
//! with their ignored build outputs, to reclaim the space. A worktree a live run uses is left.

use std::io::Write;
use std::path::Path;

use mmm::store::KeptState;

use super::common::{open_store, spec_id};
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm clean`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The specs whose kept worktrees to remove (default: every spec's).
    pub specs: Vec<String>,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `git mmm clean`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let wanted = args
        .specs
        .iter()
        .map(|s| spec_id(s).map(|id| id.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let store = open_store(ctx)?;
    let kept: Vec<_> = store
        .kept_worktrees()?
        .into_iter()
        .filter(|k| wanted.is_empty() || wanted.contains(&k.spec))
        .collect();
    let mut out = out();
    if kept.is_empty() {
        writeln!(out, "no kept worktree to remove")?;
        return Ok(());
    }
    let (mut freed, mut busy) = (0u64, 0usize);
    for k in &kept {
        if let KeptState::InUse { pid } = k.state {
            writeln!(
                out,
                "{}: {} is in use by pid {pid}; left",
                k.spec,
                k.path.display()
            )?;
            busy += 1;
            continue;
        }
        let size = size_of(&k.path);
        if !args.dry_run {
            store.remove_kept(k)?;
        }
        freed += size;
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        writeln!(
            out,
            "{}: {verb} {} ({})",
            k.spec,
            k.path.display(),
            mib(size)
        )?;
    }
    let verb = if args.dry_run { "would free" } else { "freed" };
    writeln!(out, "{verb} {}", mib(freed))?;
    if busy > 0 {
        return Err(CliError::with_hint(
            anyhow::anyhow!("{busy} kept worktree(s) are in use by a live run and were left"),
            "stop the run (`git mmm stop SPEC`), then run `git mmm clean` again",
        ));
    }
    Ok(())
}

/// The bytes of the files under `path` (symlinks not followed).
fn size_of(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size_of(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
