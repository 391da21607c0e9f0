//! Warm worktrees (`[loop] keep_worktrees`, issue 16): a spec's worktree is kept between runs,
//! reset to the run's start, its ignored build outputs kept, never shared between specs;
//! `git mmm clean` and `git mmm doctor` reclaim them.

use std::path::{Path, PathBuf};

use crate::support::TestRepo;
use crate::support::project::{project, show, spec};

/// A project whose `command` agent logs, per call, its worktree, whether `target/warm` (an
/// ignored build output of an earlier run) and `stray.txt` are there, and `README.md`'s first
/// line; then builds `target/warm`. The checks alone complete a spec.
fn warm_project(specs: &[&str], loop_extra: &str) -> (TestRepo, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt as _;
    let tools = tempfile::tempdir().expect("tempdir");
    let agent = tools.path().join("agent.sh");
    let log = tools.path().join("calls.log");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\n\
             warm=cold; [ -f target/warm ] && warm=warm\n\
             stray=clean; [ -e stray.txt ] && stray=stray\n\
             sleep \"${{WARM_SLEEP:-0}}\"\n\
             echo \"$(pwd) $warm $stray $(head -n1 README.md)\" >> {}\n\
             mkdir -p target && echo built > target/warm\n\
             echo \"@mmm:summary built\"\n",
            log.display()
        ),
    )
    .expect("agent");
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = format!(
        "[agent]\nkind = \"command\"\ncommand = \"{} {{prompt_file}}\"\ncomplete_when = \"checks\"\n\n[loop]\nconcurrency = 2\n{loop_extra}",
        agent.display()
    );
    let bodies: Vec<(String, String)> = specs
        .iter()
        .map(|s| ((*s).to_owned(), spec(s, "")))
        .collect();
    let bodies: Vec<(&str, &str)> = bodies
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let repo = project(
        &config,
        &bodies,
        &[(".gitignore", "target/\n"), ("check.sh", "exit 0\n")],
    );
    (repo, tools)
}

/// The agent's log lines: (worktree, warm, stray, README's first line).
fn calls(tools: &Path) -> Vec<(PathBuf, String, String, String)> {
    std::fs::read_to_string(tools.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let mut next = || parts.next().unwrap_or_default().to_owned();
            (PathBuf::from(next()), next(), next(), next())
        })
        .collect()
}

fn run_ok(repo: &TestRepo, args: &[&str]) -> String {
    let out = repo.mmm_cmd().args(args).output().expect("run");
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new revision of the spec, so that the next `run` iterates again.
fn touch_spec(repo: &TestRepo, id: &str) {
    let path = format!("specs/{id}.md");
    let text = std::fs::read_to_string(repo.path.join(&path)).expect("spec");
    repo.write(&path, &format!("{text}\nRevised.\n"));
    repo.commit_all("revise the spec");
}

#[test]
fn a_second_run_reuses_the_worktree_resets_it_and_keeps_ignored_outputs() {
    let (repo, tools) = warm_project(&["s"], "");
    run_ok(&repo, &["run", "s"]);
    let first = calls(tools.path());
    assert_eq!(first.len(), 1, "{first:?}");
    let (path, warm, stray, readme) = first[0].clone();
    assert!(
        path.ends_with(".git/mmm/worktrees/s"),
        "one worktree per spec: {}",
        path.display()
    );
    assert_eq!((warm.as_str(), stray.as_str()), ("cold", "clean"));
    assert_eq!(readme, "# sample");
    // Kept after the run, locked as idle so that `git worktree prune` leaves it.
    assert!(path.join("target/warm").is_file(), "kept with its outputs");
    let list = repo.git(&["worktree", "list", "--porcelain"]);
    assert!(list.contains("locked mmm kept s"), "{list}");

    // Someone dirties it between runs: an untracked file, a changed tracked file.
    std::fs::write(path.join("stray.txt"), "left behind\n").expect("stray");
    std::fs::write(path.join("README.md"), "# dirtied\n").expect("dirty");
    touch_spec(&repo, "s");
    run_ok(&repo, &["run", "s"]);
    let second = calls(tools.path());
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(
        second[1],
        (
            path.clone(),
            "warm".into(),
            "clean".into(),
            "# sample".into()
        ),
        "the same worktree, reset, with the ignored target/ of the first run"
    );
    // Nothing of the leftovers entered the second run's commit.
    let files = repo.git(&["ls-tree", "-r", "--name-only", "mmm/s"]);
    assert!(!files.contains("stray.txt"), "{files}");
    assert!(!files.contains("target/"), "{files}");
    assert_eq!(repo.git(&["show", "mmm/s:README.md"]), "# sample\n");
    let diff = repo.git(&["diff", "--stat", "mmm/s~1", "mmm/s"]);
    assert!(
        !diff.contains("stray") && !diff.contains("README"),
        "{diff}"
    );
    repo.assert_fsck();
}

#[test]
fn specs_running_at_once_never_share_a_worktree() {
    let (repo, tools) = warm_project(&["a", "b"], "");
    let out = repo
        .mmm_cmd()
        .env("WARM_SLEEP", "0.3")
        .args(["run", "a", "b"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", show(&out));
    let log = calls(tools.path());
    assert_eq!(log.len(), 2, "{log:?}");
    let mut paths: Vec<String> = log
        .iter()
        .map(|(p, ..)| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    paths.sort();
    assert_eq!(paths, ["a", "b"], "each spec in its own worktree: {log:?}");
    assert_ne!(log[0].0, log[1].0);
    repo.assert_fsck();
}

#[test]
fn without_keep_worktrees_the_worktree_is_removed() {
    let (repo, tools) = warm_project(&["s"], "keep_worktrees = false\n");
    run_ok(&repo, &["run", "s"]);
    let log = calls(tools.path());
    assert_eq!(log.len(), 1);
    assert!(!log[0].0.exists(), "removed: {}", log[0].0.display());
    let list = repo.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(list.matches("worktree ").count(), 1, "{list}");
}

#[test]
fn clean_and_doctor_reclaim_kept_worktrees() {
    let (repo, tools) = warm_project(&["a", "b"], "");
    run_ok(&repo, &["run", "a", "b"]);
    let log = calls(tools.path());
    let path_of = |spec: &str| {
        log.iter()
            .map(|(p, ..)| p.clone())
            .find(|p| p.ends_with(spec))
            .expect("a worktree")
    };
    let (a, b) = (path_of("a"), path_of("b"));
    // Kept worktrees are not a problem.
    let said = run_ok(&repo, &["doctor"]);
    assert!(said.starts_with("nothing to repair"), "{said}");
    assert!(a.is_dir() && b.is_dir());

    // The spec `b` is deleted: doctor reclaims its worktree, and leaves `a`'s warm.
    repo.git(&["rm", "-q", "specs/b.md"]);
    repo.commit_all("drop spec b");
    let said = run_ok(&repo, &["doctor"]);
    assert!(
        said.contains("kept for spec `b`, whose spec file is gone")
            && said.contains("repaired: prune worktree b"),
        "{said}"
    );
    assert!(!b.exists(), "{}", b.display());
    assert!(a.join("target/warm").is_file());

    // clean: a dry run changes nothing, then the worktree goes.
    let said = run_ok(&repo, &["clean", "--dry-run"]);
    assert!(said.contains("a: would remove"), "{said}");
    assert!(a.is_dir());
    let said = run_ok(&repo, &["clean", "a"]);
    assert!(said.contains("a: removed"), "{said}");
    assert!(!a.exists(), "{}", a.display());
    let list = repo.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(list.matches("worktree ").count(), 1, "{list}");
    assert_eq!(run_ok(&repo, &["clean"]), "no kept worktree to remove\n");
    repo.assert_fsck();
}
