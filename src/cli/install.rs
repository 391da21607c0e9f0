//! `git mmm install-extras`: the man pages and shell completions, written where `man`, bash,
//! zsh and fish look for them without any configuration, so that `git mmm --help` and
//! `git mmm <TAB>` work after a `cargo install`.
//!
//! Man pages go to `PREFIX/share/man/man1`, where `PREFIX` is the directory above the `bin`
//! that holds `git-mmm` (`~/.cargo` for a cargo install): man-db derives `…/share/man` from
//! every `…/bin` on `PATH`, so no `MANPATH` is needed. Completions go to the user's
//! directories (XDG). Every file is written atomically, and only when its content changed.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};

use super::completions;
use super::{CliError, CliResult, Ctx};

/// Arguments of `git mmm install-extras`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Install the man pages under this prefix (`PREFIX/share/man/man1`) instead of the one
    /// derived from where `git-mmm` is installed.
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,
    /// Print what would be written, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One file to install.
struct Extra {
    what: &'static str,
    path: PathBuf,
    content: Vec<u8>,
}

/// Runs `git mmm install-extras`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let home = ctx.home().ok_or_else(|| {
        CliError::with_hint(
            anyhow!("HOME is not set"),
            "set HOME, or install the man pages with `git mmm completions man --out-dir DIR`",
        )
    })?;
    let prefix = match &args.prefix {
        Some(p) => ctx.cwd.join(p),
        None => installed_prefix()?,
    };
    let extras = extras(ctx, &home, &prefix)?;
    let mut out = super::out();
    for extra in &extras {
        let state = if args.dry_run {
            match std::fs::read(&extra.path) {
                Ok(old) if old == extra.content => "up to date",
                _ => "would write",
            }
        } else if write_if_changed(&extra.path, &extra.content)? {
            "wrote"
        } else {
            "up to date"
        };
        writeln!(
            out,
            "{state:<11} {:<11} {}",
            extra.what,
            shorten(&extra.path, &home)
        )?;
    }
    for hint in hints(ctx, &home, &prefix) {
        writeln!(out, "hint: {hint}")?;
    }
    Ok(())
}

/// The prefix of the running `git-mmm`: the directory above its `bin`.
fn installed_prefix() -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe().context("cannot find the running git-mmm")?;
    let bin = exe
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n == "bin"));
    match bin.and_then(Path::parent) {
        Some(prefix) => Ok(prefix.to_path_buf()),
        None => Err(CliError::with_hint(
            anyhow!(
                "git-mmm runs from {}, which is not a `bin` directory",
                exe.display()
            ),
            "install it first (`cargo install --path . --locked` in the mmm checkout, then \
             `git mmm install-extras`), or pass --prefix DIR to put the man pages under DIR/share/man",
        )),
    }
}

/// Every file to install, in the order they are reported.
fn extras(ctx: &Ctx, home: &Path, prefix: &Path) -> anyhow::Result<Vec<Extra>> {
    let data = xdg(ctx, "XDG_DATA_HOME", home, ".local/share");
    let config = xdg(ctx, "XDG_CONFIG_HOME", home, ".config");
    let man1 = prefix.join("share/man/man1");
    let mut extras: Vec<Extra> = completions::man_pages()?
        .into_iter()
        .map(|(name, content)| Extra {
            what: "man page",
            path: man1.join(name),
            content,
        })
        .collect();
    let bash_dir = match ctx
        .var("BASH_COMPLETION_USER_DIR")
        .filter(|d| !d.is_empty())
    {
        Some(dir) => PathBuf::from(dir),
        None => data.join("bash-completion"),
    };
    extras.push(Extra {
        what: "bash",
        path: bash_dir.join("completions/git-mmm"),
        content: completions::script(clap_complete::Shell::Bash).into_bytes(),
    });
    extras.push(Extra {
        what: "zsh",
        path: data.join("zsh/site-functions/_git-mmm"),
        content: completions::script(clap_complete::Shell::Zsh).into_bytes(),
    });
    extras.push(Extra {
        what: "fish",
        path: config.join("fish/completions/git-mmm.fish"),
        content: completions::script(clap_complete::Shell::Fish).into_bytes(),
    });
    extras.push(Extra {
        what: "fish (git)",
        path: config.join("fish/conf.d/git-mmm.fish"),
        content: completions::FISH_GIT_SUBCOMMAND
            .trim_start()
            .as_bytes()
            .to_vec(),
    });
    Ok(extras)
}

/// What the user still has to do, if anything.
fn hints(ctx: &Ctx, home: &Path, prefix: &Path) -> Vec<String> {
    let mut hints = Vec::new();
    let bin = prefix.join("bin");
    let on_path = ctx
        .var("PATH")
        .is_some_and(|p| std::env::split_paths(p).any(|d| d == bin));
    if !on_path {
        hints.push(format!(
            "man finds these pages once {} is on PATH (or add {} to MANPATH)",
            shorten(&bin, home),
            shorten(&prefix.join("share/man"), home)
        ));
    }
    let data = xdg(ctx, "XDG_DATA_HOME", home, ".local/share");
    hints.push(format!(
        "zsh: add `fpath=({} $fpath)` to ~/.zshrc before `compinit`, if it is not there yet",
        shorten(&data.join("zsh/site-functions"), home)
    ));
    hints
}

/// An XDG base directory: the variable when it is an absolute path, else `HOME/default`.
fn xdg(ctx: &Ctx, var: &str, home: &Path, default: &str) -> PathBuf {
    ctx.var(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(default))
}

/// Writes `content` to `path` atomically unless it already holds it; true when written.
fn write_if_changed(path: &Path, content: &[u8]) -> anyhow::Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    let dir = path
        .parent()
        .context("a file to install has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

/// `path` with the home directory written as `~`.
fn shorten(path: &Path, home: &Path) -> String {
    match path.strip_prefix(home) {
        Ok(rest) => format!("~/{}", rest.display()),
        Err(_) => path.display().to_string(),
    }
}
