//! `git mmm completions`: shell completions and the man page, generated from the clap
//! definitions so that they cannot drift from `--help`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use super::{CliResult, Ctx};

/// Arguments of `git mmm completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to generate: a shell's completions, or `man` for the man page `git-mmm.1`.
    #[arg(value_name = "SHELL|man")]
    pub target: Target,
    /// Write man pages for every command (`git-mmm.1`, `git-mmm-run.1`, …) into this directory
    /// instead of printing one page to stdout (only with `man`).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// A completion target.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Target {
    /// bash
    Bash,
    /// zsh
    Zsh,
    /// fish
    Fish,
    /// PowerShell
    Powershell,
    /// elvish
    Elvish,
    /// The man page (roff).
    Man,
}

/// Runs `git mmm completions`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let mut cmd = super::command().name("git-mmm").bin_name("git-mmm");
    let mut out = super::out();
    let shell = match args.target {
        Target::Man => {
            if let Some(dir) = &args.out_dir {
                let dir = ctx.cwd.join(dir);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                clap_mangen::generate_to(cmd, &dir)
                    .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
                writeln!(out, "wrote man pages to {}", dir.display())?;
            } else {
                clap_mangen::Man::new(cmd).render(&mut out)?;
            }
            return Ok(());
        }
        Target::Bash => clap_complete::Shell::Bash,
        Target::Zsh => clap_complete::Shell::Zsh,
        Target::Fish => clap_complete::Shell::Fish,
        Target::Powershell => clap_complete::Shell::PowerShell,
        Target::Elvish => clap_complete::Shell::Elvish,
    };
    // clap_complete panics when its writer fails (e.g. `| head`); render to memory first.
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "git-mmm", &mut buf);
    out.write_all(&buf)?;
    Ok(())
}
