//! Shared test support: temporary repositories built with the real `git`, pinned dates, a
//! runner for the `git-mmm` binary, and scenarios of `git mmm run` against the fake Messages
//! API (`scenario`).
#![allow(dead_code)]

pub mod fake_anthropic;
pub mod github;
pub mod project;
pub mod scenario;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Pinned author/committer identity and dates for every git command the tests run.
pub const GIT_ENV: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "Test Author"),
    ("GIT_AUTHOR_EMAIL", "author@example.com"),
    ("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z"),
    ("GIT_COMMITTER_NAME", "Test Committer"),
    ("GIT_COMMITTER_EMAIL", "committer@example.com"),
    ("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
];

/// A temporary git repository with a `main` branch.
pub struct TestRepo {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The repository's work tree.
    pub path: PathBuf,
    /// A private HOME so that no user config leaks in.
    pub home: PathBuf,
}

impl TestRepo {
    /// A new repository with one commit on `main`.
    pub fn new() -> TestRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("repo");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&path).expect("mkdir repo");
        std::fs::create_dir_all(&home).expect("mkdir home");
        let repo = TestRepo { dir, path, home };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.write("README.md", "# sample\n");
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "initial"]);
        repo
    }

    /// Writes a file (creating directories) relative to the work tree.
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, content).expect("write");
    }

    /// Stages everything and commits.
    pub fn commit_all(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
    }

    /// Runs `git` in the repository and returns stdout; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = self.git_output(args);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 from git")
    }

    /// Runs `git` in the repository and returns the whole output.
    pub fn git_output(&self, args: &[&str]) -> Output {
        git_cmd(&self.path, &self.home)
            .args(args)
            .output()
            .expect("run git")
    }

    /// A command for the `git-mmm` binary, run in the repository with a private HOME.
    pub fn mmm_cmd(&self) -> Command {
        mmm_cmd(&self.path, &self.home)
    }

    /// Runs `git-mmm` with arguments.
    pub fn mmm(&self, args: &[&str]) -> Output {
        self.mmm_cmd().args(args).output().expect("run git-mmm")
    }

    /// Runs `git-mmm`, asserts success, returns stdout.
    pub fn mmm_ok(&self, args: &[&str]) -> String {
        let out = self.mmm(args);
        assert!(
            out.status.success(),
            "git-mmm {args:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 from git-mmm")
    }

    /// `git fsck --strict` passes.
    pub fn assert_fsck(&self) {
        let out = self.git_output(&["fsck", "--strict", "--no-progress"]);
        assert!(
            out.status.success(),
            "git fsck failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A `git` command with a clean, pinned environment.
pub fn git_cmd(cwd: &Path, home: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(cwd).env_clear();
    cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd.env("HOME", home);
    cmd.env("XDG_CONFIG_HOME", home.join(".config"));
    for (k, v) in GIT_ENV {
        cmd.env(k, v);
    }
    cmd
}

/// A command for the `git-mmm` binary with a clean environment.
pub fn mmm_cmd(cwd: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_git-mmm"));
    cmd.current_dir(cwd).env_clear();
    cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd.env("HOME", home);
    cmd.env("XDG_CONFIG_HOME", home.join(".config"));
    for (k, v) in GIT_ENV {
        cmd.env(k, v);
    }
    cmd
}

/// Writes the fake `claude` executable (a Python script shaped like Claude Code 2.1.330's
/// stream-json output; see `fake_claude.py`) into `dir` and returns its path.
pub fn fake_claude(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("claude");
    std::fs::write(&path, include_str!("fake_claude.py")).expect("write fake claude");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}
