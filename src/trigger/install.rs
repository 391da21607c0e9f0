//! Installing mmm's git hooks: into the hooks directory git uses (`core.hooksPath` respected),
//! keeping a hook that was there (renamed to `<hook>.mmm-chained`, which mmm's hook runs first),
//! idempotent, and undone exactly by [`uninstall`]. Repositories whose hooks belong to a hook
//! manager (husky, lefthook, pre-commit) are detected, so that the CLI can print the line to
//! add to the manager's configuration instead of writing over its files.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use git2::Repository;

/// The `pre-push` hook mmm installs (the file `hooks/pre-push` of mmm's repository).
pub const PRE_PUSH: &str = include_str!("../../hooks/pre-push");
/// The `post-receive` hook mmm installs in a bare remote (`hooks/post-receive`).
pub const POST_RECEIVE: &str = include_str!("../../hooks/post-receive");

/// The line that marks a hook file as mmm's.
const MARKER: &str = "# mmm-hook ";
/// What a hook that was there before mmm's is renamed to.
const CHAINED: &str = ".mmm-chained";

/// The hooks directory git runs hooks from: `core.hooksPath` (relative to the work tree, or to
/// the git directory of a bare repository) or `$GIT_DIR/hooks` (of the common directory, so
/// that every worktree shares it).
pub fn hooks_dir(repo: &Repository) -> Result<PathBuf, git2::Error> {
    let config = repo.config()?;
    if let Ok(path) = config.get_path("core.hooksPath") {
        if path.is_absolute() {
            return Ok(path);
        }
        let base = repo.workdir().unwrap_or_else(|| repo.path());
        return Ok(base.join(path));
    }
    Ok(repo.commondir().join("hooks"))
}

/// A hook manager that owns a repository's hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// husky (`.husky/`, `core.hooksPath = .husky/_`).
    Husky,
    /// lefthook (`lefthook.yml` and its variants).
    Lefthook,
    /// pre-commit (`.pre-commit-config.yaml`).
    PreCommit,
}

impl Manager {
    /// The manager's name.
    pub fn name(self) -> &'static str {
        match self {
            Manager::Husky => "husky",
            Manager::Lefthook => "lefthook",
            Manager::PreCommit => "pre-commit",
        }
    }

    /// Where mmm's pre-push step goes, and the line to add there.
    pub fn instruction(self) -> (&'static str, &'static str) {
        match self {
            Manager::Husky => (".husky/pre-push", "git mmm hook pre-push \"$@\""),
            Manager::Lefthook => (
                "lefthook.yml, under pre-push: commands:",
                "mmm: { run: git mmm hook pre-push {1} {2}, use_stdin: true }",
            ),
            Manager::PreCommit => (
                ".pre-commit-config.yaml, under repos:",
                "- { repo: local, hooks: [{ id: mmm, name: mmm, entry: git mmm hook pre-push, language: system, stages: [pre-push], pass_filenames: false, always_run: true }] }",
            ),
        }
    }
}

/// The hook managers a repository uses, told by their files in the work tree `root` and by a
/// hooks directory inside `.husky/`.
pub fn managers(root: &Path, hooks_dir: &Path) -> Vec<Manager> {
    let mut found = Vec::new();
    if root.join(".husky").is_dir() || hooks_dir.components().any(|c| c.as_os_str() == ".husky") {
        found.push(Manager::Husky);
    }
    let lefthook = [
        "lefthook.yml",
        "lefthook.yaml",
        ".lefthook.yml",
        ".lefthook.yaml",
        "lefthook.toml",
        ".lefthook.toml",
        "lefthook.json",
    ];
    if lefthook.iter().any(|f| root.join(f).is_file()) {
        found.push(Manager::Lefthook);
    }
    if root.join(".pre-commit-config.yaml").is_file() {
        found.push(Manager::PreCommit);
    }
    found
}

/// What is at a hook's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookState {
    /// No hook.
    Absent,
    /// mmm's hook; `current` when it is this version's text, `chained` when a hook that was
    /// there before runs first.
    Mmm {
        /// The file is this version's hook.
        current: bool,
        /// A hook that was there before is kept and runs first.
        chained: bool,
    },
    /// Somebody else's hook.
    Other,
}

/// The state of hook `name` in `dir`, against mmm's `script` for it.
pub fn state(dir: &Path, name: &str, script: &str) -> io::Result<HookState> {
    let path = dir.join(name);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HookState::Absent),
        Err(e) => return Err(e),
    };
    if !is_mmm(&text) {
        return Ok(HookState::Other);
    }
    Ok(HookState::Mmm {
        current: text == script.as_bytes(),
        chained: chained_path(dir, name).exists(),
    })
}

fn is_mmm(text: &[u8]) -> bool {
    String::from_utf8_lossy(text)
        .lines()
        .take(3)
        .any(|l| l.starts_with(MARKER))
}

fn chained_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{CHAINED}"))
}

/// What [`install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// Wrote mmm's hook where there was none.
    New,
    /// Kept the hook that was there (it runs first) and wrote mmm's.
    Chained,
    /// Replaced an older version of mmm's hook.
    Updated,
    /// mmm's hook was there already: nothing changed.
    Already,
}

/// Errors of [`install`] and [`uninstall`].
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Both a foreign hook and a kept earlier hook are there: mmm will not pick one.
    #[error(
        "{hook} is not mmm's, and {chained} (the hook mmm kept) exists too; move one of them away, then install again"
    )]
    Conflict {
        /// The hook.
        hook: PathBuf,
        /// The kept hook.
        chained: PathBuf,
    },
    /// A file could not be read or written.
    #[error("cannot change the hook {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HookError + '_ {
    move |source| HookError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Installs mmm's `script` as hook `name` in `dir` (created if needed). A hook that is there
/// and not mmm's is renamed to `<name>.mmm-chained`, which mmm's hook runs first.
pub fn install(dir: &Path, name: &str, script: &str) -> Result<Installed, HookError> {
    let path = dir.join(name);
    let chained = chained_path(dir, name);
    let state = state(dir, name, script).map_err(io_err(&path))?;
    let done = match state {
        HookState::Mmm { current: true, .. } => return Ok(Installed::Already),
        HookState::Mmm { current: false, .. } => Installed::Updated,
        HookState::Absent => Installed::New,
        HookState::Other if chained.exists() => {
            return Err(HookError::Conflict {
                hook: path,
                chained,
            });
        }
        HookState::Other => {
            std::fs::rename(&path, &chained).map_err(io_err(&chained))?;
            Installed::Chained
        }
    };
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Written aside and renamed, so that a push never runs half a hook.
    let tmp = dir.join(format!(".{name}.mmm-tmp"));
    std::fs::write(&tmp, script).map_err(io_err(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(done)
}

/// What [`uninstall`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// mmm's hook was not there (a hook that is not mmm's is left alone).
    NotInstalled,
    /// Removed mmm's hook; there was no hook before it.
    Removed,
    /// Removed mmm's hook and put back the hook that was there before.
    Restored,
}

/// Removes mmm's hook `name` from `dir` and puts back the hook it kept, as it was.
pub fn uninstall(dir: &Path, name: &str) -> Result<Removed, HookError> {
    let path = dir.join(name);
    let chained = chained_path(dir, name);
    match state(dir, name, "").map_err(io_err(&path))? {
        HookState::Absent | HookState::Other => Ok(Removed::NotInstalled),
        HookState::Mmm { chained: true, .. } => {
            std::fs::rename(&chained, &path).map_err(io_err(&path))?;
            Ok(Removed::Restored)
        }
        HookState::Mmm { chained: false, .. } => {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            Ok(Removed::Removed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_chains_and_uninstall_restores_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hooks = dir.path().join("hooks");
        std::fs::create_dir_all(&hooks).expect("mkdir");
        let old = hooks.join("pre-push");
        std::fs::write(&old, "#!/bin/sh\nexit 0\n").expect("write");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        assert_eq!(
            install(&hooks, "pre-push", PRE_PUSH).ok(),
            Some(Installed::Chained)
        );
        assert_eq!(
            install(&hooks, "pre-push", PRE_PUSH).ok(),
            Some(Installed::Already)
        );
        assert_eq!(
            state(&hooks, "pre-push", PRE_PUSH).ok(),
            Some(HookState::Mmm {
                current: true,
                chained: true
            })
        );
        assert_eq!(uninstall(&hooks, "pre-push").ok(), Some(Removed::Restored));
        assert_eq!(
            std::fs::read_to_string(&old).expect("read"),
            "#!/bin/sh\nexit 0\n"
        );
        let mode = std::fs::metadata(&old).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            uninstall(&hooks, "pre-push").ok(),
            Some(Removed::NotInstalled)
        );
        assert_eq!(std::fs::read_dir(&hooks).expect("ls").count(), 1);
    }

    #[test]
    fn an_old_version_is_updated_and_a_conflict_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hooks = dir.path().join("h");
        assert_eq!(
            install(&hooks, "pre-push", "#!/bin/sh\n# mmm-hook pre-push: v0\n").ok(),
            Some(Installed::New)
        );
        assert_eq!(
            install(&hooks, "pre-push", PRE_PUSH).ok(),
            Some(Installed::Updated)
        );
        std::fs::write(hooks.join("pre-push.mmm-chained"), "x").expect("write");
        std::fs::write(hooks.join("pre-push"), "#!/bin/sh\n").expect("write");
        assert!(matches!(
            install(&hooks, "pre-push", PRE_PUSH),
            Err(HookError::Conflict { .. })
        ));
    }
}
