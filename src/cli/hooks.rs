//! `git mmm hooks install [--server] | uninstall [--server] | status`: mmm's git hooks in the
//! hooks directory git uses (`core.hooksPath` respected). A hook that was there is kept and
//! runs first; `uninstall` puts it back as it was. Where a hook manager (husky, lefthook,
//! pre-commit) owns the hooks, mmm writes nothing and prints the line to add to its
//! configuration.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use mmm::trigger::install::{self, HookState, Installed, Manager, Removed};

use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm hooks`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The pre-push hook hands what is pushed to mmm, which starts (or, with \
[hooks] on_push = \"announce\", prints) the runs of the specs the push adds or changes; it never \
fails the push unless [hooks] strict = true, and `git push --no-verify` skips it."
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// What `git mmm hooks` does.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Install the pre-push hook (idempotent; a hook already there is kept and runs first).
    Install(Which),
    /// Remove mmm's hook and put back the hook that was there before it.
    Uninstall(Which),
    /// Say where hooks live, whether mmm's is installed, and which hook manager is in use.
    Status(Which),
}

/// Which hook.
#[derive(Debug, clap::Args)]
pub struct Which {
    /// The post-receive hook of a self-hosted bare remote (run this inside the bare
    /// repository) instead of the pre-push hook of a clone.
    #[arg(long)]
    pub server: bool,
}

impl Which {
    fn hook(&self) -> (&'static str, &'static str) {
        if self.server {
            ("post-receive", install::POST_RECEIVE)
        } else {
            ("pre-push", install::PRE_PUSH)
        }
    }
}

/// Runs `git mmm hooks`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let repo = git2::Repository::discover(&ctx.cwd).map_err(|e| {
        CliError::with_hint(
            anyhow::Error::new(e).context("not inside a git repository"),
            "run `git mmm hooks` inside the repository (or, with --server, the bare remote)",
        )
    })?;
    let dir = install::hooks_dir(&repo)?;
    let root = repo.workdir().map(Path::to_path_buf);
    match &args.action {
        Action::Install(w) => install_hook(&repo, root.as_deref(), &dir, w),
        Action::Uninstall(w) => {
            let (name, _) = w.hook();
            let path = dir.join(name);
            let msg = match install::uninstall(&dir, name)? {
                Removed::NotInstalled => {
                    format!("mmm's {name} hook is not installed in {}", dir.display())
                }
                Removed::Removed => format!("removed {}", path.display()),
                Removed::Restored => format!(
                    "removed mmm's hook and put back the earlier {}",
                    path.display()
                ),
            };
            writeln!(out(), "{msg}")?;
            Ok(())
        }
        Action::Status(w) => status(root.as_deref(), &dir, w),
    }
}

fn install_hook(repo: &git2::Repository, root: Option<&Path>, dir: &Path, w: &Which) -> CliResult {
    let (name, script) = w.hook();
    if w.server && !repo.is_bare() {
        return Err(CliError::with_hint(
            anyhow!(
                "--server installs a post-receive hook in a bare repository, and this one has a work tree"
            ),
            "run it inside the bare repository your clones push to (`git -C /srv/git/project.git mmm hooks install --server`)",
        ));
    }
    if !w.server {
        let managers = root.map(|r| install::managers(r, dir)).unwrap_or_default();
        if !managers.is_empty() {
            return print_manager_lines(&managers);
        }
    }
    let path = dir.join(name);
    let msg = match install::install(dir, name, script)? {
        Installed::New => format!("installed {}", path.display()),
        Installed::Chained => format!(
            "installed {}; the hook that was there is kept as {name}.mmm-chained and runs first",
            path.display()
        ),
        Installed::Updated => format!("updated mmm's hook {}", path.display()),
        Installed::Already => format!("mmm's hook is already installed: {}", path.display()),
    };
    writeln!(out(), "{msg}")?;
    Ok(())
}

fn print_manager_lines(managers: &[Manager]) -> CliResult {
    let mut w = out();
    for m in managers {
        let (place, line) = m.instruction();
        writeln!(
            w,
            "{} manages this repository's hooks: mmm writes none of its files. Add to {place}:\n    {line}",
            m.name()
        )?;
    }
    Ok(())
}

fn status(root: Option<&Path>, dir: &Path, w: &Which) -> CliResult {
    let (name, script) = w.hook();
    let path: PathBuf = dir.join(name);
    let mut o = out();
    writeln!(o, "hooks directory: {}", dir.display())?;
    let state = match install::state(dir, name, script)? {
        HookState::Absent => "not installed".to_owned(),
        HookState::Other => "another hook is there (not mmm's)".to_owned(),
        HookState::Mmm { current, chained } => format!(
            "mmm's hook{}{}",
            if current {
                ""
            } else {
                ", from another mmm version (`git mmm hooks install` updates it)"
            },
            if chained {
                ", the earlier hook runs first"
            } else {
                ""
            }
        ),
    };
    writeln!(o, "{name}: {state} ({})", path.display())?;
    for m in root.map(|r| install::managers(r, dir)).unwrap_or_default() {
        writeln!(o, "hook manager: {}", m.name())?;
    }
    Ok(())
}
