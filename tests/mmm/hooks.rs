//! `git mmm hooks` and the pre-push hook, through real `git push`es to a bare `file://`
//! remote, with `git-mmm` on the PATH as a user has it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::project::{project, show, spec};
use crate::support::{TestRepo, git_cmd};

/// PATH with the directory of the `git-mmm` under test first, so that `git mmm` finds it.
fn path_with_mmm() -> std::ffi::OsString {
    let bin = Path::new(env!("CARGO_BIN_EXE_git-mmm"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let mut paths = vec![bin];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("PATH")
}

/// A project with specs `a` and `b` and `[hooks] on_push = ON_PUSH`, whose `origin` is a new
/// bare remote (returned: the remote's directory keeps it alive).
fn setup(on_push: &str, extra: &[(&str, &str)]) -> (TestRepo, tempfile::TempDir, PathBuf) {
    let config = format!(
        "[agent]\nkind = \"scripted\"\nscript = \".mmm/answers.toml\"\n\n[hooks]\non_push = \"{on_push}\"\n"
    );
    let mut files = vec![(
        ".mmm/answers.toml",
        "[[answer]]\ntext = '''\nNothing yet.\n'''\n",
    )];
    files.extend_from_slice(extra);
    let repo = project(
        &config,
        &[("a", &spec("A", "")), ("b", &spec("B", ""))],
        &files,
    );
    let remote_dir = tempfile::tempdir().expect("tempdir");
    let bare = remote_dir.path().join("remote.git");
    let out = git_cmd(remote_dir.path(), remote_dir.path())
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(&bare)
        .output()
        .expect("git init --bare");
    assert!(out.status.success());
    repo.git(&[
        "remote",
        "add",
        "origin",
        &format!("file://{}", bare.display()),
    ]);
    (repo, remote_dir, bare)
}

/// `git push ARGS` with `git-mmm` on the PATH.
fn push(repo: &TestRepo, args: &[&str]) -> Output {
    git_cmd(&repo.path, &repo.home)
        .env("PATH", path_with_mmm())
        .arg("push")
        .args(args)
        .output()
        .expect("git push")
}

/// Pushes, asserts success, returns the `mmm:` lines of stderr.
fn push_ok(repo: &TestRepo, args: &[&str]) -> Vec<String> {
    let out = push(repo, args);
    assert!(out.status.success(), "git push {args:?}: {}", show(&out));
    mmm_lines(&out)
}

fn mmm_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| l.trim_start_matches("remote: ").trim_end().to_owned())
        .filter(|l| l.starts_with("mmm:"))
        .collect()
}

fn announced(ids: &str) -> String {
    format!(
        "mmm: this push adds or changes spec(s) {ids}; run them with `git mmm run {}` ([hooks] on_push = \"announce\"; \"run\" starts them in the background)",
        ids.replace(", ", " ")
    )
}

fn remote_tip(bare: &Path, home: &Path, name: &str) -> Option<String> {
    let out = git_cmd(bare, home)
        .args(["rev-parse", "--verify", "-q", name])
        .output()
        .expect("rev-parse");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn the_hook_announces_exactly_the_specs_each_push_adds_or_changes() {
    let (repo, _remote, bare) = setup("announce", &[]);
    let out = repo.mmm_ok(&["hooks", "install"]);
    assert!(out.starts_with("installed "), "{out}");
    assert_eq!(
        repo.mmm_ok(&["hooks", "install"]).trim(),
        format!(
            "mmm's hook is already installed: {}",
            repo.path.join(".git/hooks/pre-push").display()
        )
    );
    // The installed hook is the file of the repository, byte for byte.
    let installed = std::fs::read_to_string(repo.path.join(".git/hooks/pre-push")).expect("hook");
    assert_eq!(installed, include_str!("../../hooks/pre-push"));

    // A new branch on an empty remote: every spec it brings.
    assert_eq!(
        push_ok(&repo, &["-u", "origin", "main"]),
        [announced("a, b")]
    );
    // A changed spec.
    repo.write("specs/b.md", &spec("B two", ""));
    repo.commit_all("b changes");
    assert_eq!(push_ok(&repo, &["origin", "main"]), [announced("b")]);
    // A push with no spec in it.
    repo.write("src/x.txt", "x\n");
    repo.commit_all("no spec");
    assert!(push_ok(&repo, &["origin", "main"]).is_empty());
    // A deleted spec.
    repo.git(&["rm", "-q", "specs/a.md"]);
    repo.commit_all("a goes");
    assert_eq!(
        push_ok(&repo, &["origin", "main"]),
        ["mmm: specs/a.md is deleted by this push: nothing runs for it"]
    );
    // A new branch: only what the remote does not have yet.
    repo.git(&["checkout", "-q", "-b", "feat"]);
    repo.write("specs/c.md", &spec("C", ""));
    repo.commit_all("c");
    assert_eq!(push_ok(&repo, &["origin", "feat"]), [announced("c")]);
    // A force push that replaces c by d: d is new, c is gone from the branch.
    repo.git(&["reset", "-q", "--hard", "main"]);
    repo.write("specs/d.md", &spec("D", ""));
    repo.commit_all("d");
    assert_eq!(
        push_ok(&repo, &["--force", "origin", "feat"]),
        [
            "mmm: specs/c.md is deleted by this push: nothing runs for it".to_owned(),
            announced("d")
        ]
    );
    // --no-verify skips the hook.
    repo.write("specs/d.md", &spec("D two", ""));
    repo.commit_all("d changes");
    assert!(push_ok(&repo, &["--no-verify", "origin", "feat"]).is_empty());
    assert_eq!(
        remote_tip(&bare, &repo.home, "refs/heads/feat"),
        Some(repo.git(&["rev-parse", "HEAD"]).trim().to_owned())
    );
    // on_push = "off": silence.
    repo.write(".mmm/config.toml", "[hooks]\non_push = \"off\"\n");
    repo.write("specs/d.md", &spec("D three", ""));
    repo.commit_all("off");
    assert!(push_ok(&repo, &["origin", "feat"]).is_empty());
}

#[test]
fn core_hooks_path_and_an_earlier_hook_that_still_stops_the_push() {
    let (repo, _remote, bare) = setup("announce", &[]);
    repo.git(&["config", "core.hooksPath", ".githooks"]);
    let earlier = "#!/bin/sh\necho \"earlier hook: $1 $(cat | wc -l) line(s)\" >&2\n\
                   [ ! -f deny ] || { echo 'earlier hook: denied' >&2; exit 3; }\n";
    repo.write(".githooks/pre-push", earlier);
    let hook = repo.path.join(".githooks/pre-push");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let out = repo.mmm_ok(&["hooks", "install"]);
    assert!(
        out.contains("kept as pre-push.mmm-chained and runs first"),
        "{out}"
    );
    let status = repo.mmm_ok(&["hooks", "status"]);
    assert!(
        status.contains(&format!(
            "hooks directory: {}",
            repo.path.join(".githooks").display()
        )),
        "{status}"
    );
    assert!(
        status.contains("pre-push: mmm's hook, the earlier hook runs first"),
        "{status}"
    );
    assert!(!repo.path.join(".git/hooks/pre-push").exists());

    let out = push(&repo, &["origin", "main"]);
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("earlier hook: origin 1 line(s)"), "{err}");
    assert_eq!(mmm_lines(&out), [announced("a, b")]);

    // The earlier hook's failure still stops the push, and mmm does not run.
    repo.write("deny", "");
    repo.write("specs/a.md", &spec("A two", ""));
    repo.commit_all("a changes");
    let out = push(&repo, &["origin", "main"]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("earlier hook: denied"));
    assert!(mmm_lines(&out).is_empty(), "{}", show(&out));
    assert_ne!(
        remote_tip(&bare, &repo.home, "refs/heads/main"),
        Some(repo.git(&["rev-parse", "HEAD"]).trim().to_owned())
    );

    // Uninstall puts the earlier hook back exactly.
    let out = repo.mmm_ok(&["hooks", "uninstall"]);
    assert!(out.contains("put back the earlier"), "{out}");
    assert_eq!(std::fs::read_to_string(&hook).expect("hook"), earlier);
    let mode = std::fs::metadata(&hook).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(!repo.path.join(".githooks/pre-push.mmm-chained").exists());
    assert!(
        repo.mmm_ok(&["hooks", "status"])
            .contains("another hook is there")
    );
}

#[test]
fn hook_managers_get_the_line_to_add_and_their_files_are_left_alone() {
    let (repo, _remote, _bare) = setup("announce", &[(".husky/pre-commit", "npm test\n")]);
    let out = repo.mmm_ok(&["hooks", "install"]);
    assert_eq!(
        out,
        "husky manages this repository's hooks: mmm writes none of its files. Add to .husky/pre-push:\n    git mmm hook pre-push \"$@\"\n"
    );
    assert!(!repo.path.join(".husky/pre-push").exists());
    assert!(!repo.path.join(".git/hooks/pre-push").exists());
    std::fs::remove_dir_all(repo.path.join(".husky")).expect("rm");
    repo.write(".pre-commit-config.yaml", "repos: []\n");
    let out = repo.mmm_ok(&["hooks", "install"]);
    assert!(
        out.starts_with("pre-commit manages this repository's hooks"),
        "{out}"
    );
    assert!(out.contains("stages: [pre-push]"), "{out}");
    assert!(
        repo.mmm_ok(&["hooks", "status"])
            .contains("hook manager: pre-commit")
    );
}

#[test]
fn the_server_hook_tells_the_pusher_which_specs_came_in() {
    let (repo, remote, bare) = setup("announce", &[]);
    let out = git_cmd(&bare, remote.path())
        .env("PATH", path_with_mmm())
        .args(["mmm", "hooks", "install", "--server"])
        .output()
        .expect("install --server");
    assert!(out.status.success(), "{}", show(&out));
    assert!(bare.join("hooks/post-receive").exists());
    // In a clone, --server is refused with what to do.
    let out = repo.mmm(&["hooks", "install", "--server"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bare repository"));

    let lines = push_ok(&repo, &["--no-verify", "origin", "main"]);
    assert_eq!(
        lines,
        [
            "mmm: this push adds or changes specs/a.md, specs/b.md; a bare repository has no work tree to run them in: run them from a clone (`git mmm run`) or in CI (`git mmm event`)"
        ]
    );
    repo.write("specs/b.md", &spec("B two", ""));
    repo.commit_all("b changes");
    let lines = push_ok(&repo, &["--no-verify", "origin", "main"]);
    assert!(
        lines[0].starts_with("mmm: this push adds or changes specs/b.md;"),
        "{lines:?}"
    );
}

/// Polls `status --json` until `check` accepts spec `s`'s row (or a minute passes).
fn wait_for(repo: &TestRepo, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let status: Value =
            serde_json::from_str(&repo.mmm_ok(&["status", "--json"])).expect("json");
        let row = status["specs"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["spec"] == "a").cloned())
            .unwrap_or(Value::Null);
        if check(&row) {
            return row;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn run_mode_starts_a_detached_run_with_its_log_and_pid() {
    let gate_dir = tempfile::tempdir().expect("tempdir");
    let go = gate_dir.path().join("go");
    let check = format!(
        "while [ ! -f '{}' ]; do sleep 0.05; done\nexit 0\n",
        go.display()
    );
    let (repo, _remote, _bare) = setup("run", &[("check.sh", &check)]);
    repo.write(
        ".mmm/config.toml",
        "[agent]\nkind = \"scripted\"\nscript = \".mmm/answers.toml\"\n\n[validate]\ntest = \"sh check.sh\"\n\n[loop]\nmax_iterations = 1\n",
    );
    repo.git(&["rm", "-q", "specs/b.md"]);
    repo.commit_all("one spec, a gate that waits");
    repo.mmm_ok(&["hooks", "install"]);

    let lines = push_ok(&repo, &["origin", "main"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.starts_with("mmm: started `git mmm run a` in the background (pid "),
        "{line}"
    );
    let pid: u32 = line
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("pid");
    let log_rel = line
        .split("log ")
        .nth(1)
        .expect("log")
        .trim_end_matches(')');
    assert!(
        log_rel.starts_with(".git/mmm/logs/") && log_rel.ends_with("-a.log"),
        "{line}"
    );

    // While its gate waits, the run is live, and status names its pid.
    let row = wait_for(&repo, "the run shows as running", |r| r["running"] == pid);
    assert_eq!(row["running"], pid);
    assert!(
        repo.mmm_ok(&["status"])
            .contains(&format!("running (pid {pid})"))
    );

    std::fs::write(&go, "").expect("go");
    let row = wait_for(&repo, "the run ends", |r| {
        r["running"].is_null() && r["iterations"] == 1
    });
    assert_eq!(row["iterations"], 1);
    let log = std::fs::read_to_string(repo.path.join(log_rel)).expect("log");
    assert!(
        log.starts_with("mmm: `git mmm run a` started by the push hook at "),
        "{log}"
    );
    assert_eq!(
        repo.git(&[
            "log",
            "--format=%(trailers:key=Mmm-Iteration,valueonly)",
            "mmm/a"
        ])
        .trim(),
        "1"
    );
}
