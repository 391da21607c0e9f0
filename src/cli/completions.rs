//! `git mmm completions`: shell completions and the man pages, generated from the clap
//! definitions so that they cannot drift from `--help`. `git mmm install-extras` installs the
//! same texts where the shells and `man` look for them.
//!
//! Completion has to work both for `git-mmm <TAB>` and for `git mmm <TAB>`; each shell reaches
//! a git subcommand's completion its own way:
//! - bash: git's completion script calls `_git_mmm` (after asking bash-completion's loader for
//!   `git-mmm`, which sources our file);
//! - zsh: `_git` calls `_git-mmm`, which `#compdef git-mmm` defines;
//! - fish: git's completions do not reach external subcommands' own completions, so a
//!   `conf.d` snippet forwards `git mmm …` to the completions of `git-mmm`.

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
    let mut out = super::out();
    let shell = match args.target {
        Target::Man => {
            if let Some(dir) = &args.out_dir {
                let dir = ctx.cwd.join(dir);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                for (name, page) in man_pages()? {
                    let path = dir.join(name);
                    std::fs::write(&path, page)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                writeln!(out, "wrote man pages to {}", dir.display())?;
            } else {
                let mut buf = Vec::new();
                clap_mangen::Man::new(public_command()).render(&mut buf)?;
                out.write_all(&buf)?;
            }
            return Ok(());
        }
        Target::Bash => clap_complete::Shell::Bash,
        Target::Zsh => clap_complete::Shell::Zsh,
        Target::Fish => clap_complete::Shell::Fish,
        Target::Powershell => clap_complete::Shell::PowerShell,
        Target::Elvish => clap_complete::Shell::Elvish,
    };
    out.write_all(script(shell).as_bytes())?;
    if matches!(args.target, Target::Fish) {
        out.write_all(FISH_GIT_SUBCOMMAND.as_bytes())?;
    }
    Ok(())
}

/// The command tree as users see it: named `git-mmm`, without hidden commands.
pub fn public_command() -> clap::Command {
    without_hidden(&super::command())
        .name("git-mmm")
        .bin_name("git-mmm")
}

/// A copy of `cmd` without its hidden subcommands (at every level). clap's generators offer
/// hidden subcommands, so they are taken out of the tree the generators see. `cmd` must not be
/// built yet: clap then adds `--help`, `--version` and `help` to the copy as to the original.
fn without_hidden(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_owned())
        .propagate_version(cmd.is_propagate_version_set())
        .args(cmd.get_arguments().cloned())
        .subcommands(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(without_hidden),
        );
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_owned());
    }
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(about) = cmd.get_long_about() {
        out = out.long_about(about.clone());
    }
    if let Some(after) = cmd.get_after_help() {
        out = out.after_help(after.clone());
    }
    for alias in cmd.get_visible_aliases() {
        out = out.visible_alias(alias.to_owned());
    }
    out
}

/// The man pages: `git-mmm.1` and one per visible command, as (file name, roff).
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let cmd = public_command();
    let mut pages = Vec::new();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    pages.push(("git-mmm.1".to_owned(), buf));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("git-mmm-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("git mmm {}", sub.get_name()));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        pages.push((format!("{name}.1"), buf));
    }
    Ok(pages)
}

/// The completion script for a shell, for both `git-mmm` and `git mmm`.
pub fn script(shell: clap_complete::Shell) -> String {
    match shell {
        clap_complete::Shell::Bash => bash_script(),
        other => {
            let mut cmd = public_command();
            let mut buf = Vec::new();
            clap_complete::generate(other, &mut cmd, "git-mmm", &mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        }
    }
}

/// bash: clap's script generated under the name `mmm` (its generator names functions
/// inconsistently for a hyphenated name, which breaks option completion of subcommands),
/// registered for `git-mmm`, plus `_git_mmm` for git's own completion of `git mmm …`.
fn bash_script() -> String {
    let mut cmd = public_command().name("mmm").bin_name("mmm");
    let mut buf = Vec::new();
    clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "mmm", &mut buf);
    let generated = String::from_utf8_lossy(&buf);
    let mut out = String::from(
        "# bash completion for git-mmm and `git mmm`; generated by `git mmm completions bash`.\n",
    );
    for line in generated.lines() {
        match line.trim_start().strip_prefix("complete -F _mmm ") {
            Some(rest) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                let options = rest.strip_suffix(" mmm").unwrap_or(rest);
                out.push_str(&format!("{indent}complete -F _mmm {options} git-mmm\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.push_str(BASH_GIT_SUBCOMMAND);
    out
}

/// git's completion (`git mmm <TAB>`) calls `_git_mmm` with the whole git command line in
/// `COMP_WORDS` and the index of `mmm` in `__git_cmd_idx` (git 2.31+; found by search before).
const BASH_GIT_SUBCOMMAND: &str = r#"
_git_mmm() {
    local idx=${__git_cmd_idx:-}
    if [[ -z "$idx" ]]; then
        local i
        for ((i = 1; i < COMP_CWORD; i++)); do
            if [[ "${COMP_WORDS[i]}" == mmm ]]; then idx=$i; break; fi
        done
    fi
    [[ -n "$idx" ]] || return 0
    local COMP_WORDS=(git-mmm "${COMP_WORDS[@]:idx+1}")
    local COMP_CWORD=$((COMP_CWORD - idx))
    _mmm git-mmm "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
}
"#;

/// fish: `git mmm …` completes as `git-mmm …` would.
pub const FISH_GIT_SUBCOMMAND: &str = r#"
# `git mmm …`: complete as `git-mmm …`.
function __git_mmm_complete
    set -l tokens (commandline -opc)
    set -l at (contains -i -- mmm $tokens)
    or return
    set -l rest $tokens[(math $at + 1)..-1]
    complete -C (string join ' ' -- git-mmm $rest (commandline -ct))
end
complete -c git -f -n 'not __fish_seen_subcommand_from mmm' -a mmm -d 'Turn markdown specs into code through bounded LLM loops'
complete -c git -f -n '__fish_seen_subcommand_from mmm' -a '(__git_mmm_complete)'
"#;
