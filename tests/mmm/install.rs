//! `git mmm install-extras` from a fresh HOME: the binary where `cargo install` puts it, then
//! `git mmm --help` through the real `man`, and `git mmm <TAB>` through real bash (with
//! bash-completion and git's completion script), zsh and fish.
//!
//! The shells and man are installed by `.ci/run`; elsewhere a missing one skips its test
//! (CI=true makes it a failure).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh HOME with `git-mmm` at `~/.cargo/bin`, as `cargo install --path .` leaves it.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join(".cargo/bin");
        std::fs::create_dir_all(&bin).unwrap();
        // A hard link, not a copy: a copy is open for writing while other tests' threads fork,
        // and a child holding that descriptor makes running it fail with "Text file busy".
        let (exe, dest) = (env!("CARGO_BIN_EXE_git-mmm"), bin.join("git-mmm"));
        if std::fs::hard_link(exe, &dest).is_err() {
            std::fs::copy(exe, &dest).unwrap();
        }
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn path_var(&self) -> String {
        format!(
            "{}:/usr/local/bin:/usr/bin:/bin",
            self.path().join(".cargo/bin").display()
        )
    }

    /// A command with nothing of the test's environment but a minimal PATH and this HOME.
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", self.path())
            .env("PATH", self.path_var())
            .env("LANG", "C.UTF-8")
            .current_dir(self.path());
        cmd
    }

    fn install_extras(&self, args: &[&str]) -> String {
        let out = self
            .cmd("git")
            .arg("mmm")
            .arg("install-extras")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "install-extras failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// True when `tool` can be run; false (skip) outside CI, a failure in CI.
fn have(tool: &str, probe: &[&str], test: &str) -> bool {
    let ok = Command::new(tool)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "{tool} is missing: .ci/run installs it (CI must run {test})"
        );
        eprintln!("SKIP {test}: no {tool}");
    }
    ok
}

fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mmm/support")
        .join(name)
}

#[test]
fn install_extras_writes_man_pages_and_completions_once() {
    let home = Home::new();
    let first = home.install_extras(&[]);
    for line in [
        "wrote       man page    ~/.cargo/share/man/man1/git-mmm.1",
        "wrote       man page    ~/.cargo/share/man/man1/git-mmm-run.1",
        "wrote       bash        ~/.local/share/bash-completion/completions/git-mmm",
        "wrote       zsh         ~/.local/share/zsh/site-functions/_git-mmm",
        "wrote       fish        ~/.config/fish/completions/git-mmm.fish",
        "wrote       fish (git)  ~/.config/fish/conf.d/git-mmm.fish",
    ] {
        assert!(first.contains(line), "missing `{line}` in:\n{first}");
    }
    assert!(
        !first.contains("plumbing"),
        "hidden command installed:\n{first}"
    );
    // ~/.cargo/bin is on PATH: no MANPATH hint.
    assert!(!first.contains("MANPATH"), "{first}");
    let page =
        std::fs::read_to_string(home.path().join(".cargo/share/man/man1/git-mmm.1")).unwrap();
    assert!(page.contains("install\\-extras"), "{page}");
    assert!(!page.contains("plumbing"), "{page}");

    // Idempotent: a second run writes nothing.
    let second = home.install_extras(&[]);
    assert!(!second.contains("wrote"), "{second}");
    assert_eq!(
        second.matches("up to date").count(),
        first.matches("wrote").count()
    );

    // A changed file is rewritten, and a dry run says so without writing.
    let bash = home
        .path()
        .join(".local/share/bash-completion/completions/git-mmm");
    std::fs::write(&bash, "old").unwrap();
    let dry = home.install_extras(&["--dry-run"]);
    assert!(dry.contains("would write bash"), "{dry}");
    assert_eq!(std::fs::read_to_string(&bash).unwrap(), "old");
    let third = home.install_extras(&[]);
    assert!(third.contains("wrote       bash"), "{third}");
    assert!(
        std::fs::read_to_string(&bash)
            .unwrap()
            .contains("_git_mmm()")
    );
}

#[test]
fn install_extras_outside_a_bin_dir_needs_a_prefix() {
    let home = Home::new();
    let out = home
        .cmd(env!("CARGO_BIN_EXE_git-mmm"))
        .arg("install-extras")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("which is not a `bin` directory"), "{err}");
    assert!(err.contains("cargo install --path . --locked"), "{err}");

    let out = home
        .cmd(env!("CARGO_BIN_EXE_git-mmm"))
        .args(["install-extras", "--prefix", "opt"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("~/opt/share/man/man1/git-mmm.1"),
        "{stdout}"
    );
    // ~/opt/bin is not on PATH: say how man will find the pages.
    assert!(
        stdout.contains("hint: man finds these pages once ~/opt/bin is on PATH"),
        "{stdout}"
    );
}

#[test]
fn git_mmm_help_opens_the_man_page_without_manpath() {
    let test = "git_mmm_help_opens_the_man_page_without_manpath";
    if !have("man", &["--version"], test) {
        return;
    }
    let home = Home::new();
    let before = home
        .cmd("git")
        .args(["mmm", "--help"])
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    assert!(
        !before.status.success(),
        "a man page was found before install-extras"
    );
    home.install_extras(&[]);
    for (args, want) in [
        (&["mmm", "--help"][..], "git-mmm"),
        (&["help", "mmm"][..], "git-mmm"),
    ] {
        let out = home
            .cmd("git")
            .args(args)
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        let page = text(&out.stdout);
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
        assert!(
            page.contains(want) && page.contains("install-extras"),
            "{page}"
        );
    }
    let out = home
        .cmd("man")
        .args(["git-mmm-run"])
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("--max-iterations"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bash_completes_git_mmm_through_gits_completion() {
    let test = "bash_completes_git_mmm_through_gits_completion";
    if !Path::new("/usr/share/bash-completion/bash_completion").exists() {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "bash-completion is missing: .ci/run installs it (CI must run {test})"
        );
        eprintln!("SKIP {test}: no bash-completion");
        return;
    }
    let home = Home::new();
    home.install_extras(&[]);
    let out = home
        .cmd("bash")
        .arg("--norc")
        .arg(support("complete.bash"))
        .args([
            "git mmm ",
            "git mmm ro",
            "git mmm run --m",
            "git-mmm ",
            "git-mmm rollback --",
            "git m",
        ])
        .output()
        .unwrap();
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 6, "{lines:?} {}", text(&out.stderr));
    for line in [&lines[0], &lines[3]] {
        for want in ["run ", "status ", "install-extras ", "--help "] {
            assert!(line.contains(want), "`{want}` not offered: {line}");
        }
        assert!(!line.contains("plumbing"), "hidden command offered: {line}");
    }
    assert_eq!(lines[1].trim(), "rollback");
    assert_eq!(lines[2].trim(), "--max-iterations --model");
    assert!(
        lines[4].contains("--to") && lines[4].contains("--undo"),
        "{}",
        lines[4]
    );
    assert!(
        lines[5].split_whitespace().any(|w| w == "mmm"),
        "{}",
        lines[5]
    );
}

#[test]
fn fish_completes_git_mmm() {
    let test = "fish_completes_git_mmm";
    if !have("fish", &["--version"], test) {
        return;
    }
    let home = Home::new();
    home.install_extras(&[]);
    let complete = |line: &str| {
        let out = home
            .cmd("fish")
            .arg("-c")
            .arg(format!("complete -C '{line}'"))
            .output()
            .unwrap();
        let words: Vec<String> = text(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_owned())
            .collect();
        words
    };
    let subcommands = complete("git mmm ");
    assert!(subcommands.iter().any(|w| w == "run"), "{subcommands:?}");
    assert!(
        !subcommands.iter().any(|w| w == "plumbing"),
        "{subcommands:?}"
    );
    assert_eq!(complete("git mmm run --max"), ["--max-iterations"]);
    assert!(
        complete("git-mmm rollback --")
            .iter()
            .any(|w| w == "--undo")
    );
    assert!(complete("git mm").iter().any(|w| w == "mmm"));
}

#[test]
fn zsh_completes_git_mmm() {
    let test = "zsh_completes_git_mmm";
    if !have("zsh", &["--version"], test) {
        return;
    }
    let home = Home::new();
    home.install_extras(&[]);
    let complete = |line: &str| {
        let out_file = home.path().join("zsh-candidates");
        let out = home
            .cmd("zsh")
            .arg("-f")
            .arg(support("complete.zsh"))
            .arg(home.path())
            .arg(line)
            .arg(&out_file)
            .output()
            .unwrap();
        text(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let subcommands = complete("git mmm ");
    assert!(subcommands.iter().any(|w| w == "run"), "{subcommands:?}");
    assert!(
        !subcommands.iter().any(|w| w == "plumbing"),
        "{subcommands:?}"
    );
    assert!(
        complete("git mmm run --")
            .iter()
            .any(|w| w == "--max-iterations")
    );
    assert!(
        complete("git-mmm rollback --")
            .iter()
            .any(|w| w == "--undo")
    );
}

/// Before `git-mmm` is on PATH (the README's first command is `cargo run --release -- demo`),
/// the demo's closing hints name the binary that ran, and work when copied as printed.
#[test]
fn the_demo_hints_work_as_printed_before_install() {
    let home = Home::new();
    // The demo's gate runs cargo: reach it through a directory that has nothing else.
    let tools = home.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let cargo = which("cargo").expect("cargo on PATH");
    std::os::unix::fs::symlink(cargo, tools.join("cargo")).unwrap();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", tools.display());
    let mut cmd = home.cmd(env!("CARGO_BIN_EXE_git-mmm"));
    cmd.env("PATH", &path).args(["demo", "d"]);
    let real_home = std::env::var_os("HOME").map(PathBuf::from);
    for (var, default) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
        if let Some(v) =
            std::env::var_os(var).or_else(|| real_home.as_ref().map(|h| h.join(default).into()))
        {
            cmd.env(var, v);
        }
    }
    if let Some(t) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        cmd.env("RUSTUP_TOOLCHAIN", t);
    }
    let out = cmd.output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("cargo install --path . --locked"),
        "{stdout}"
    );
    let hints: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().split("  #").next())
        .filter(|l| l.contains("git-mmm ") && l.contains("slugify"))
        .collect();
    assert_eq!(hints.len(), 3, "{stdout}");
    for hint in hints {
        let out = home
            .cmd("sh")
            .arg("-c")
            .arg(hint.trim())
            .env("PATH", &path)
            .current_dir(home.path().join("d"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`{hint}` failed: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("slugify"),
            "`{hint}`: {}",
            text(&out.stdout)
        );
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
