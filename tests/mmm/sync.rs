//! `git mmm sync` and `git mmm init --remote` against a bare `file://` remote, with separate
//! `git mmm` processes per clone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::project::show;
use crate::support::{TestRepo, git_cmd};

/// A bare remote and clones of it (all with the same `main`, pinned by the test identity).
struct Remote {
    dir: tempfile::TempDir,
    url: String,
}

impl Remote {
    fn new() -> Remote {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("remote.git");
        let out = git_cmd(dir.path(), dir.path())
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare)
            .output()
            .expect("git init --bare");
        assert!(out.status.success());
        let url = format!("file://{}", bare.display());
        Remote { dir, url }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    /// A new clone: a repository with the same `main` and `origin` pointing at the remote.
    fn clone(&self) -> TestRepo {
        let repo = TestRepo::new();
        repo.git(&["remote", "add", "origin", &self.url]);
        repo
    }

    /// Runs git in the bare remote.
    fn git(&self, args: &[&str]) -> String {
        let out = git_cmd(&self.path(), self.dir.path())
            .args(args)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?} in the remote failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn refs(&self) -> String {
        self.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
    }

    fn rev(&self, name: &str) -> Option<String> {
        let out = git_cmd(&self.path(), self.dir.path())
            .args(["rev-parse", "--verify", "-q", name])
            .output()
            .expect("git");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn is_ancestor(&self, commit: &str, of: &str) -> bool {
        git_cmd(&self.path(), self.dir.path())
            .args(["merge-base", "--is-ancestor", commit, of])
            .status()
            .expect("git")
            .success()
    }

    fn note(&self, notes: &str, commit: &str) -> Option<String> {
        let out = git_cmd(&self.path(), self.dir.path())
            .args(["notes", &format!("--ref={notes}"), "show", commit])
            .output()
            .expect("git");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn assert_fsck(&self) {
        let out = git_cmd(&self.path(), self.dir.path())
            .args(["fsck", "--strict", "--no-progress"])
            .output()
            .expect("git fsck");
        assert!(
            out.status.success(),
            "git fsck in the remote failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Records `n` synthetic iterations of `spec`; returns their commits.
fn record(repo: &TestRepo, spec: &str, n: u32) -> Vec<String> {
    let n = n.to_string();
    repo.mmm_ok(&["plumbing", "record", spec, "--iterations", &n])
        .lines()
        .map(|l| l.split(' ').next().expect("commit").to_owned())
        .collect()
}

fn sync_json(repo: &TestRepo, args: &[&str]) -> Value {
    let mut all = vec!["sync", "--json"];
    all.extend(args);
    serde_json::from_str(&repo.mmm_ok(&all)).expect("sync --json prints JSON")
}

fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["specs"]
        .as_array()
        .expect("specs")
        .iter()
        .map(|s| {
            (
                s["spec"].as_str().expect("spec").to_owned(),
                s["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

fn rev(repo: &TestRepo, name: &str) -> String {
    repo.git(&["rev-parse", name]).trim().to_owned()
}

/// The refs and reflogs of a clone: unchanged means nothing was written.
fn local_state(repo: &TestRepo) -> (String, u64) {
    let refs = repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]);
    let mut logs = 0;
    let mut todo = vec![repo.path.join(".git/logs")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                logs += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (refs, logs)
}

#[test]
fn init_remote_adds_the_fetch_refspecs_once_and_no_push() {
    let remote = Remote::new();
    let a = remote.clone();
    let first = a.mmm_ok(&["init", "--remote", "origin"]);
    assert!(
        first.contains(
            "added remote.origin.fetch = +refs/notes/mmm/*:refs/notes/remotes/origin/mmm/*"
        ),
        "{first}"
    );
    let again = a.mmm_ok(&["init", "--remote", "origin"]);
    assert!(again.contains("already has mmm's refspecs"), "{again}");
    assert_eq!(
        a.git(&["config", "--get-all", "remote.origin.fetch"]),
        "+refs/heads/*:refs/remotes/origin/*\n\
         +refs/heads/mmm/*:refs/remotes/origin/mmm/*\n\
         +refs/notes/mmm/*:refs/notes/remotes/origin/mmm/*\n\
         +refs/mmm/*:refs/mmm-remotes/origin/*\n"
    );
    assert!(
        !a.git_output(&["config", "--get-all", "remote.origin.push"])
            .status
            .success()
    );
    // A plain `git fetch` with those refspecs writes tracking refs only.
    let b = remote.clone();
    record(&b, "s", 2);
    b.mmm_ok(&["sync"]);
    a.git(&["fetch", "-q", "origin"]);
    assert_eq!(
        rev(&a, "refs/remotes/origin/mmm/s"),
        rev(&b, "refs/heads/mmm/s")
    );
    assert!(
        !a.git_output(&["rev-parse", "--verify", "-q", "refs/heads/mmm/s"])
            .status
            .success()
    );

    let out = a.mmm(&["init", "--remote", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no remote `nowhere`"), "{err}");
}

#[test]
fn sync_pushes_fast_forwards_and_a_second_sync_does_nothing() {
    let remote = Remote::new();
    let (a, b) = (remote.clone(), remote.clone());
    let commits = record(&a, "s", 2);
    record(&a, "t", 1);
    let out = a.mmm_ok(&["sync"]);
    assert_eq!(out, "s  pushed\nt  pushed\n");
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(commits[1].as_str())
    );
    for c in &commits {
        assert!(remote.note("refs/notes/mmm/s/transcripts", c).is_some());
        assert!(remote.note("refs/notes/mmm/s/metrics", c).is_some());
    }
    // b has nothing yet: fast-forward (created); only the spec asked for.
    let report = sync_json(&b, &["s"]);
    assert_eq!(
        statuses(&report),
        BTreeMap::from([("s".into(), "fast-forwarded".into())])
    );
    assert_eq!(report["pushed_refs"], 0);
    assert_eq!(rev(&b, "mmm/s"), commits[1]);
    assert!(
        !b.git_output(&["rev-parse", "--verify", "-q", "mmm/t"])
            .status
            .success()
    );
    assert_eq!(
        b.git(&["notes", "--ref=mmm/s/transcripts", "show", &commits[0]]),
        a.git(&["notes", "--ref=mmm/s/transcripts", "show", &commits[0]])
    );
    b.mmm_ok(&["sync"]);
    // A remote named by a relative path is found from the top of the work tree.
    let rel = format!(
        "../../{}/remote.git",
        remote
            .dir
            .path()
            .file_name()
            .expect("name")
            .to_string_lossy()
    );
    let c = remote.clone();
    c.git(&["remote", "set-url", "origin", &rel]);
    assert!(c.path.join(&rel).exists());
    assert_eq!(
        c.mmm_ok(&["sync"]),
        "s  fast-forwarded\nt  fast-forwarded\n"
    );
    // Nothing new on either side: nothing written, nothing pushed.
    let (before, remote_before) = (local_state(&b), remote.refs());
    let report = sync_json(&b, &[]);
    assert_eq!(report["pushed_refs"], 0);
    assert!(
        statuses(&report).values().all(|s| s == "up-to-date"),
        "{report}"
    );
    assert_eq!(local_state(&b), before);
    assert_eq!(remote.refs(), remote_before);
    assert_eq!(b.mmm_ok(&["sync"]), "s  up to date\nt  up to date\n");
    b.assert_fsck();
    remote.assert_fsck();
}

#[test]
fn diverged_branches_keep_the_remote_and_archive_ours() {
    let remote = Remote::new();
    let (a, b) = (remote.clone(), remote.clone());
    let base = record(&a, "s", 1);
    a.mmm_ok(&["sync"]);
    b.mmm_ok(&["sync"]);
    let theirs = record(&a, "s", 2);
    let ours = record(&b, "s", 1);
    assert_eq!(a.mmm_ok(&["sync"]), "s  pushed\n");
    let out = b.mmm_ok(&["sync"]);
    assert!(
        out.starts_with(
            "s  diverged: the remote's iterations won; ours are kept in refs/mmm/s/archive ("
        ),
        "{out}"
    );
    assert!(out.contains(&ours[0][..10]), "{out}");
    assert_eq!(rev(&b, "mmm/s"), theirs[1]);
    // On the remote: the winner on the branch, ours in the archive, every note there.
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(theirs[1].as_str())
    );
    assert!(remote.is_ancestor(&ours[0], "refs/mmm/s/archive"));
    for c in base.iter().chain(&theirs).chain(&ours) {
        for kind in ["transcripts", "metrics"] {
            assert!(
                remote
                    .note(&format!("refs/notes/mmm/s/{kind}"), c)
                    .is_some(),
                "{kind} note of {c} missing on the remote"
            );
        }
    }
    // The notes merge is a merge commit with both tips: the push was a fast-forward.
    let parents = remote.git(&["log", "-1", "--format=%P", "refs/notes/mmm/s/metrics"]);
    assert_eq!(parents.split_whitespace().count(), 2, "{parents}");
    // a takes the archive and the notes; then both are up to date.
    assert_eq!(a.mmm_ok(&["sync"]), "s  fast-forwarded\n");
    assert_eq!(rev(&a, "refs/mmm/s/archive"), rev(&b, "refs/mmm/s/archive"));
    assert_eq!(b.mmm_ok(&["sync"]), "s  up to date\n");
    assert_eq!(a.mmm_ok(&["sync"]), "s  up to date\n");
    remote.assert_fsck();
    a.assert_fsck();
    b.assert_fsck();
}

#[test]
fn archives_of_both_sides_merge_without_rewriting() {
    let remote = Remote::new();
    let (a, b) = (remote.clone(), remote.clone());
    record(&a, "s", 3);
    a.mmm_ok(&["sync"]);
    b.mmm_ok(&["sync"]);
    // Each side archives something of its own: a rollback on a, a lost race on b.
    a.mmm_ok(&["plumbing", "rollback", "s", "--to", "2"]);
    let a_archive = rev(&a, "refs/mmm/s/archive");
    let lost = record(&b, "s", 1);
    b.mmm_ok(&["plumbing", "rollback", "s", "--to", "3"]);
    let b_archive = rev(&b, "refs/mmm/s/archive");
    a.mmm_ok(&["sync"]);
    b.mmm_ok(&["sync"]);
    let merged = remote.rev("refs/mmm/s/archive").expect("archive");
    assert!(remote.is_ancestor(&a_archive, &merged));
    assert!(remote.is_ancestor(&b_archive, &merged));
    assert!(remote.is_ancestor(&lost[0], &merged));
    a.mmm_ok(&["sync"]);
    assert_eq!(rev(&a, "refs/mmm/s/archive"), merged);
    remote.assert_fsck();
}

#[test]
fn a_rollback_is_pushed_and_a_stale_clone_does_not_bring_it_back() {
    let remote = Remote::new();
    let (a, b) = (remote.clone(), remote.clone());
    let commits = record(&a, "s", 3);
    a.mmm_ok(&["sync"]);
    b.mmm_ok(&["sync"]);
    a.mmm_ok(&["plumbing", "rollback", "s", "--to", "1"]);
    assert_eq!(a.mmm_ok(&["sync"]), "s  pushed\n");
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(commits[0].as_str())
    );
    assert!(remote.is_ancestor(&commits[2], "refs/mmm/s/archive"));
    // b still has iteration 3: the remote's rollback wins.
    let out = b.mmm_ok(&["sync"]);
    assert!(out.starts_with("s  diverged"), "{out}");
    assert_eq!(rev(&b, "mmm/s"), commits[0]);
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(commits[0].as_str())
    );
    assert_eq!(b.mmm_ok(&["sync"]), "s  up to date\n");
    // Work after the rollback goes on from iteration 1 and is pushed.
    let next = record(&b, "s", 1);
    assert_eq!(b.mmm_ok(&["sync"]), "s  pushed\n");
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(next[0].as_str())
    );
    assert_eq!(a.mmm_ok(&["sync"]), "s  fast-forwarded\n");
    remote.assert_fsck();
}

/// A small deterministic random generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn set_note(repo: &TestRepo, notes: &str, commit: &str, text: &str) {
    let file = repo.dir.path().join("note.txt");
    std::fs::write(&file, text).expect("write note");
    let file = file.display().to_string();
    repo.git(&[
        "notes",
        &format!("--ref={notes}"),
        "add",
        "-f",
        "-F",
        &file,
        commit,
    ]);
}

fn note_of(repo: &TestRepo, notes: &str, commit: &str) -> Option<String> {
    let out = repo.git_output(&["notes", &format!("--ref={notes}"), "show", commit]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Adds random records to random notes: new notes, appended lines, lines the other side may
/// write too (same id, same line).
fn scribble(repo: &TestRepo, notes: &str, commits: &[String], rng: &mut Rng, side: &str) {
    for _ in 0..rng.below(6) + 1 {
        let c = &commits[rng.below(commits.len() as u64) as usize];
        let mut text = note_of(repo, notes, c).unwrap_or_default();
        for _ in 0..rng.below(3) + 1 {
            let line = if rng.below(4) == 0 {
                let n = rng.below(5);
                format!("{{\"id\":\"shared-{n}\",\"v\":1,\"kind\":\"turn\",\"n\":{n}}}")
            } else {
                let n = rng.next() % 1_000_000;
                format!("{{\"id\":\"{side}-{n}\",\"v\":1,\"kind\":\"turn\",\"n\":{n}}}")
            };
            text.push_str(&line);
            text.push('\n');
        }
        set_note(repo, notes, c, &text);
    }
}

#[test]
fn notes_merge_agrees_with_git_cat_sort_uniq_on_random_histories() {
    let notes = "refs/notes/mmm/s/transcripts";
    for seed in 1..=6u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x1000_0001));
        let remote = Remote::new();
        let a = remote.clone();
        let commits: Vec<String> = (0..8)
            .map(|i| {
                a.git(&["commit", "-q", "--allow-empty", "-m", &format!("c{i}")]);
                rev(&a, "HEAD")
            })
            .collect();
        if rng.below(3) > 0 {
            scribble(&a, notes, &commits, &mut rng, "base");
        }
        a.git(&["push", "-q", "origin", "main"]);
        a.mmm_ok(&["sync"]);
        let b = remote.clone();
        b.git(&["pull", "-q", "origin", "main"]);
        b.mmm_ok(&["sync"]);
        scribble(&a, notes, &commits, &mut rng, "a");
        scribble(&b, notes, &commits, &mut rng, "b");
        a.mmm_ok(&["sync"]);
        // The oracle: a copy of b merging with git itself.
        let oracle_dir = b.dir.path().join("oracle");
        let cp = std::process::Command::new("cp")
            .args(["-a"])
            .arg(&b.path)
            .arg(&oracle_dir)
            .status()
            .expect("cp");
        assert!(cp.success());
        let oracle = |args: &[&str]| {
            let out = git_cmd(&oracle_dir, &b.home)
                .args(args)
                .output()
                .expect("git");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        oracle(&[
            "fetch",
            "-q",
            "origin",
            "+refs/notes/mmm/*:refs/notes/remotes/origin/mmm/*",
        ]);
        oracle(&[
            "notes",
            &format!("--ref={notes}"),
            "merge",
            "-q",
            "-s",
            "cat_sort_uniq",
            "refs/notes/remotes/origin/mmm/s/transcripts",
        ]);
        b.mmm_ok(&["sync"]);
        for c in &commits {
            let git_says = {
                let out = git_cmd(&oracle_dir, &b.home)
                    .args(["notes", &format!("--ref={notes}"), "show", c])
                    .output()
                    .expect("git");
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            };
            assert_eq!(note_of(&b, notes, c), git_says, "seed {seed}, note of {c}");
        }
        // What b pushed is what it has, and a fast-forwards to it.
        assert_eq!(remote.rev(notes), Some(rev(&b, notes)));
        a.mmm_ok(&["sync"]);
        assert_eq!(rev(&a, notes), rev(&b, notes));
    }
}

/// The real `git` executable (the first on PATH).
fn real_git() -> PathBuf {
    let path = std::env::var_os("PATH").expect("PATH");
    std::env::split_paths(&path)
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH")
}

/// A directory with a `git` wrapper that fails `git push` as a dead network would, and
/// passes everything else to the real git.
fn failing_push_git(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = push ]; then\n    echo \"fatal: unable to access 'https://example.invalid/r.git/': Could not resolve host: example.invalid\" >&2\n    exit 128\n  fi\ndone\nexec {} \"$@\"\n",
        real_git().display()
    );
    let git = bin.join("git");
    std::fs::write(&git, script).expect("write wrapper");
    std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut dirs = vec![bin.to_owned()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH")
}

#[test]
fn a_failed_push_loses_nothing_and_the_next_sync_finishes() {
    let remote = Remote::new();
    let (a, b) = (remote.clone(), remote.clone());
    record(&b, "s", 1);
    b.mmm_ok(&["sync"]);
    let commits = record(&a, "s", 2);
    let bin = failing_push_git(a.dir.path());
    let before = local_state(&a);
    let remote_before = remote.refs();
    let out = a
        .mmm_cmd()
        .env("PATH", path_with(&bin))
        .arg("sync")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not reach the remote `origin` during push")
            && err.contains("Could not resolve host")
            && err.contains(
                "hint: the local history is complete; `git mmm sync` again finishes the job"
            ),
        "{err}"
    );
    assert_eq!(remote.refs(), remote_before);
    // Integrated locally (b's iteration archived), nothing lost: our tips are in the archive.
    assert!(before.0 != local_state(&a).0);
    for c in &commits {
        assert!(
            a.git_output(&["merge-base", "--is-ancestor", c, "refs/mmm/s/archive"])
                .status
                .success()
        );
    }
    let out = a.mmm_ok(&["sync"]);
    assert_eq!(out, "s  pushed\n");
    for c in &commits {
        assert!(remote.is_ancestor(c, "refs/mmm/s/archive"));
        assert!(remote.note("refs/notes/mmm/s/metrics", c).is_some());
    }
    remote.assert_fsck();
}

#[test]
fn missing_remotes_and_refusing_hooks_are_explained() {
    let remote = Remote::new();
    let a = remote.clone();
    record(&a, "s", 1);
    let before = local_state(&a);
    let err = |out: std::process::Output| {
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(a.mmm(&["sync", "--remote", "nope"]));
    assert!(e.contains("no remote `nope`"), "{e}");
    a.git(&["remote", "add", "gone", "file:///nonexistent/r.git"]);
    let e = err(a.mmm(&["sync", "--remote", "gone"]));
    assert!(
        e.contains("the remote `gone` is not a reachable git repository"),
        "{e}"
    );
    // A pre-receive hook that refuses everything.
    let hook = remote.path().join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'mmm refs are protected here' >&2\nexit 1\n",
    )
    .expect("hook");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let e = err(a.mmm(&["sync"]));
    assert!(
        e.contains("the remote `origin` rejected the push of")
            && e.contains("mmm refs are protected here"),
        "{e}"
    );
    assert_eq!(local_state(&a), before);
    std::fs::remove_file(&hook).expect("rm hook");
    assert_eq!(a.mmm_ok(&["sync"]), "s  pushed\n");
}

#[test]
fn the_default_remote_is_the_config_then_the_upstream_then_origin() {
    let remote = Remote::new();
    let a = TestRepo::new();
    a.git(&["remote", "add", "up", &remote.url]);
    // No origin, no upstream: origin is tried and named.
    let out = a.mmm(&["sync"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no remote `origin`"));
    a.git(&["push", "-q", "-u", "up", "main"]);
    record(&a, "s", 1);
    assert_eq!(a.mmm_ok(&["sync"]), "s  pushed\n");
    a.write(".mmm/config.toml", "[sync]\nremote = \"cfg\"\n");
    let out = a.mmm(&["sync"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no remote `cfg`"));
}

#[test]
fn four_clones_syncing_at_once_lose_nothing() {
    let remote = Remote::new();
    let clones: Vec<TestRepo> = (0..4).map(|_| remote.clone()).collect();
    let handles: Vec<_> = clones
        .iter()
        .map(|c| {
            let (path, home) = (c.path.clone(), c.home.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for _ in 0..3 {
                    let out = crate::support::mmm_cmd(&path, &home)
                        .args(["plumbing", "record", "race", "--iterations", "2"])
                        .output()
                        .expect("record");
                    assert!(out.status.success());
                    for l in String::from_utf8_lossy(&out.stdout).lines() {
                        acked.push(l.split(' ').next().expect("commit").to_owned());
                    }
                    let out = crate::support::mmm_cmd(&path, &home)
                        .arg("sync")
                        .output()
                        .expect("sync");
                    assert!(
                        out.status.success(),
                        "sync failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                acked
            })
        })
        .collect();
    let acked: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    for c in &clones {
        c.mmm_ok(&["sync"]);
    }
    assert_eq!(acked.len(), 24);
    for c in &acked {
        assert!(
            remote.is_ancestor(c, "refs/heads/mmm/race")
                || remote.is_ancestor(c, "refs/mmm/race/archive"),
            "{c} lost"
        );
        for kind in ["transcripts", "metrics"] {
            assert!(
                remote
                    .note(&format!("refs/notes/mmm/race/{kind}"), c)
                    .is_some()
            );
        }
    }
    // Every clone ends with the remote's refs.
    for c in &clones {
        assert_eq!(
            rev(c, "mmm/race"),
            remote.rev("refs/heads/mmm/race").expect("branch")
        );
    }
    remote.assert_fsck();
}

fn plan_ids(repo: &TestRepo, args: &[&str]) -> Vec<String> {
    let mut all = vec!["plan"];
    all.extend(args);
    repo.mmm_ok(&all).lines().map(str::to_owned).collect()
}

#[test]
fn plan_lists_the_ready_specs_in_order_and_filters_by_changed_files() {
    use crate::support::project::{project, spec};
    let c_spec = format!("{}\n## Context\n\n- `src/c/`\n", spec("C", ""));
    let repo = project(
        "",
        &[
            ("a", &spec("A", "")),
            ("b", &spec("B", "depends_on = [\"a\"]")),
            ("c", &c_spec),
        ],
        &[("src/c/lib.rs", "// c\n")],
    );
    assert_eq!(plan_ids(&repo, &[]), ["a", "c"]);
    // a complete at its current revision: b becomes ready.
    let rev_a = repo.git(&["hash-object", "specs/a.md"]).trim().to_owned();
    repo.mmm_ok(&[
        "plumbing",
        "record",
        "a",
        "--status",
        "complete",
        "--spec-revision",
        &rev_a,
    ]);
    assert_eq!(plan_ids(&repo, &[]), ["b", "c"]);
    let json: Value = serde_json::from_str(&repo.mmm_ok(&["plan", "--json"])).expect("json");
    assert_eq!(json["specs"][0]["spec"], "b");
    assert_eq!(json["specs"][0]["path"], "specs/b.md");
    assert_eq!(json["specs"][0]["depends_on"], serde_json::json!(["a"]));
    assert_eq!(json["specs"][0]["iterations"], 0);
    assert_eq!(json["specs"][0]["status"], Value::Null);
    assert_eq!(
        json["specs"][0]["revision"].as_str(),
        Some(repo.git(&["hash-object", "specs/b.md"]).trim())
    );
    // --changed: only specs whose file or context changed in the range.
    let before = rev(&repo, "HEAD");
    repo.write("src/c/lib.rs", "// c, changed\n");
    repo.commit_all("change c's code");
    let range = format!("{before}..HEAD");
    assert_eq!(plan_ids(&repo, &["--changed", &range]), ["c"]);
    repo.write("specs/b.md", &spec("B, reworded", "depends_on = [\"a\"]"));
    repo.commit_all("reword b");
    assert_eq!(plan_ids(&repo, &["--changed", &range]), ["b", "c"]);
    let zero = format!("{}..HEAD", "0".repeat(40));
    assert_eq!(plan_ids(&repo, &["--changed", &zero]), ["b", "c"]);
    let out = repo.mmm(&["plan", "--changed", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A clone of `remote` holding a project for `git mmm run` with the scripted agent: the spec
/// `s` never completes, its gate is slow (`check.sh` sleeps, then fails).
fn run_clone(remote: &Remote, gate: &str) -> TestRepo {
    use crate::support::project::{project, spec};
    let config = "[agent]\nkind = \"scripted\"\nscript = \".mmm/answers.toml\"\n\n\
                  [validate]\ntest = \"sh check.sh\"\n\n[loop]\nstuck_after = 10\n\
                  max_iterations = 3\n";
    let answers = "[[answer]]\ntext = '''\nNothing yet.\n'''\n";
    let repo = project(
        config,
        &[("s", &spec("S", ""))],
        &[(".mmm/answers.toml", answers), ("check.sh", gate)],
    );
    repo.git(&["remote", "add", "origin", &remote.url]);
    repo
}

/// The commits of the `recorded` events of a `--json` run.
fn recorded(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "recorded")
        .map(|e| e["commit"].as_str().expect("commit").to_owned())
        .collect()
}

#[test]
fn four_clones_run_with_push_on_one_spec_and_lose_nothing() {
    let remote = Remote::new();
    let clones: Vec<TestRepo> = (0..4)
        .map(|_| run_clone(&remote, "sleep 0.3\nexit 1\n"))
        .collect();
    let children: Vec<_> = clones
        .iter()
        .map(|c| {
            c.mmm_cmd()
                .args(["run", "--push", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut acked = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("could not reach") && !err.contains("kept moving"),
            "{err}"
        );
        acked.extend(recorded(&out));
    }
    assert!(acked.len() >= 4, "{acked:?}");
    let tip = remote
        .rev("refs/heads/mmm/s")
        .expect("the branch is on the remote");
    for c in &acked {
        assert!(
            remote.is_ancestor(c, &tip) || remote.is_ancestor(c, "refs/mmm/s/archive"),
            "recorded iteration {c} is not on the remote"
        );
        for kind in ["transcripts", "metrics"] {
            assert!(
                remote
                    .note(&format!("refs/notes/mmm/s/{kind}"), c)
                    .is_some(),
                "{kind} note of {c} missing on the remote"
            );
        }
    }
    // The branch is one chain of iterations numbered from 1, whoever recorded them.
    let log = remote.git(&[
        "log",
        "--first-parent",
        "--format=%(trailers:key=Mmm-Iteration,valueonly)",
        "refs/heads/mmm/s",
        &format!("^{}", rev(&clones[0], "main")),
    ]);
    let ns: Vec<u32> = log
        .split_whitespace()
        .map(|n| n.parse().expect("n"))
        .collect();
    let expect: Vec<u32> = (1..=ns.len() as u32).rev().collect();
    assert_eq!(ns, expect);
    assert!(ns.len() >= 2, "{ns:?}");
    // No run left a wip ref behind on the remote.
    assert_eq!(remote.git(&["for-each-ref", "refs/mmm/s/wip/"]), "");
    remote.assert_fsck();
}

#[test]
fn a_run_with_push_continues_from_the_remote_and_pushes_checkpoints() {
    let remote = Remote::new();
    let a = run_clone(&remote, "sleep 1\nexit 1\n");
    let out = a.mmm(&["run", "--push", "--max-iterations", "2"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("synced with `origin`"), "{text}");
    assert_eq!(remote.rev("refs/heads/mmm/s"), Some(rev(&a, "mmm/s")));
    // Another clone continues from iteration 3 (it fetched and integrated first), in the tree
    // of iteration 2, whose gate sleeps long enough for a checkpoint.
    let b = run_clone(&remote, "sleep 1\nexit 1\n");
    b.write(
        ".mmm/config.toml",
        &format!(
            "{}\ncheckpoint_after = \"100ms\"\n",
            std::fs::read_to_string(b.path.join(".mmm/config.toml")).expect("config")
        ),
    );
    b.commit_all("checkpoint at once");
    let child = b
        .mmm_cmd()
        .args(["run", "--push", "--json", "--max-iterations", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // While its gate sleeps, the checkpoint is on the remote.
    let mut wip = String::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        wip = remote.git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/mmm/s/wip/",
        ]);
        if !wip.is_empty() {
            break;
        }
    }
    if !wip.starts_with("refs/mmm/s/wip/") {
        let out = child.wait_with_output().expect("wait");
        panic!("no checkpoint on the remote: {}", show(&out));
    }
    let transcript = remote.git(&[
        "show",
        &format!(
            "{}:transcript.jsonl",
            wip.split_whitespace().nth(1).expect("oid")
        ),
    ]);
    assert!(transcript.contains("Nothing yet."), "{transcript}");
    let out = child.wait_with_output().expect("wait");
    let commits = recorded(&out);
    assert_eq!(commits.len(), 1);
    let n = b.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Mmm-Iteration,valueonly)",
        &commits[0],
    ]);
    assert_eq!(n.trim(), "3");
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(commits[0].as_str())
    );
    // The finished run's wip ref is gone on the remote too.
    assert_eq!(remote.git(&["for-each-ref", "refs/mmm/s/wip/"]), "");
}

#[test]
fn a_sync_of_many_specs_pushes_by_namespace_and_still_leases_a_rollback() {
    let remote = Remote::new();
    let (a, b) = (remote.clone(), remote.clone());
    let s = record(&a, "s", 3);
    for i in 0..24 {
        record(&a, &format!("many-{i:02}"), 1);
    }
    let out = a.mmm_ok(&["sync"]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with("  pushed")).count(),
        25,
        "{out}"
    );
    let local: Vec<String> = a
        .git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads/mmm",
            "refs/notes/mmm",
            "refs/mmm",
        ])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        remote.refs().lines().map(str::to_owned).collect::<Vec<_>>(),
        local
    );
    b.mmm_ok(&["sync"]);
    // A rollback among many updates: the forced one goes with its lease.
    a.mmm_ok(&["plumbing", "rollback", "s", "--to", "1"]);
    for i in 0..24 {
        record(&a, &format!("many-{i:02}"), 1);
    }
    let out = a.mmm_ok(&["sync"]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with("  pushed")).count(),
        25,
        "{out}"
    );
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(s[0].as_str())
    );
    assert!(remote.is_ancestor(&s[2], "refs/mmm/s/archive"));
    // b's stale branch of s does not come back; the remote's rollback wins there too.
    let out = b.mmm_ok(&["sync"]);
    assert!(
        out.lines().any(|l| l.starts_with("s ")
            && l.trim_start_matches('s')
                .trim_start()
                .starts_with("diverged")),
        "{out}"
    );
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(s[0].as_str())
    );
    assert_eq!(
        a.mmm_ok(&["sync"])
            .lines()
            .filter(|l| l.ends_with("up to date"))
            .count(),
        25
    );
    remote.assert_fsck();
}

/// A clone of `remote` for lease tests: spec `s`, a gate that sleeps `GATE_SLEEP` seconds
/// and exits `GATE_EXIT` (from the environment, so that every clone has the same `main`), an
/// agent that says the spec is complete, leases of `ttl`, and `user.email` = `who`.
fn lease_clone(remote: &Remote, ttl: &str, who: &str) -> TestRepo {
    use crate::support::project::{project, spec};
    let config = format!(
        "[agent]\nkind = \"scripted\"\nscript = \".mmm/answers.toml\"\n\n\
         [validate]\ntest = \"sh check.sh\"\n\n[loop]\nstuck_after = 10\nmax_iterations = 2\n\
         checkpoint_after = \"100ms\"\n\n[sync]\nlease_ttl = \"{ttl}\"\n"
    );
    let answers = "[[answer]]\ntext = '''\nDone.\n@mmm:complete\n'''\n";
    let gate = "sleep \"${GATE_SLEEP:-0}\"\nexit \"${GATE_EXIT:-1}\"\n";
    let repo = project(
        &config,
        &[("s", &spec("S", ""))],
        &[(".mmm/answers.toml", answers), ("check.sh", gate)],
    );
    repo.git(&["remote", "add", "origin", &remote.url]);
    repo.git(&["config", "user.email", who]);
    repo
}

/// `git-mmm run ARGS --json` in `repo` with the gate's sleep and exit status, started.
fn spawn_run(repo: &TestRepo, args: &[&str], sleep: u32, exit: u32) -> std::process::Child {
    repo.mmm_cmd()
        .arg("run")
        .args(args)
        .arg("--json")
        .env("GATE_SLEEP", sleep.to_string())
        .env("GATE_EXIT", exit.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Waits (up to 20 s) until the remote has `name`; returns its value.
fn wait_for_ref(remote: &Remote, name: &str) -> Option<String> {
    for _ in 0..400 {
        if let Some(v) = remote.rev(name) {
            return Some(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// The `lease.json` of the remote's lease of `s`.
fn remote_lease(remote: &Remote) -> Value {
    serde_json::from_str(&remote.git(&["show", "refs/mmm/s/lease:lease.json"])).expect("json")
}

/// The `leased` events of a `--json` run.
fn leased_events(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "leased")
        .collect()
}

#[test]
fn with_leases_two_runners_on_one_spec_one_works_and_the_other_skips() {
    let remote = Remote::new();
    let a = lease_clone(&remote, "3s", "a@example.com");
    let b = lease_clone(&remote, "3s", "b@example.com");
    // Both at once: the gate sleeps long enough for the loser to find the lease held.
    let runs = [
        spawn_run(&a, &["--lease"], 2, 1),
        spawn_run(&b, &["--lease"], 2, 1),
    ];
    let lease = wait_for_ref(&remote, "refs/mmm/s/lease").expect("a lease on the remote");
    let holder = remote_lease(&remote);
    let winner = holder["holder"].as_str().expect("holder").to_owned();
    assert!(
        ["a@example.com", "b@example.com"].contains(&winner.as_str()),
        "{holder}"
    );
    assert!(lease.len() == 40);
    let outs: Vec<std::process::Output> = runs
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let worked: Vec<usize> = (0..2).filter(|&i| !recorded(&outs[i]).is_empty()).collect();
    assert_eq!(worked.len(), 1, "{}\n{}", show(&outs[0]), show(&outs[1]));
    let (w, l) = (worked[0], 1 - worked[0]);
    assert_eq!([&a, &b][w].git(&["config", "user.email"]).trim(), winner);
    // The winner ran its two iterations (the gate fails), renewing the lease meanwhile.
    assert_eq!(recorded(&outs[w]).len(), 2, "{}", show(&outs[w]));
    // The loser skipped, naming the holder and when the lease expires.
    let skipped = leased_events(&outs[l]);
    assert_eq!(skipped.len(), 1, "{}", show(&outs[l]));
    assert_eq!(skipped[0]["spec"], "s");
    assert_eq!(skipped[0]["holder"], winner.as_str());
    assert_eq!(skipped[0]["expired"], false);
    assert!(
        skipped[0]["expires"]
            .as_str()
            .is_some_and(|e| e.ends_with('Z'))
    );
    assert_eq!(outs[l].status.code(), Some(0), "{}", show(&outs[l]));
    // Released at the end.
    assert_eq!(remote.rev("refs/mmm/s/lease"), None);
    // The loser's status and plan show the lease it saw (as of its last fetch).
    let loser = [&a, &b][l];
    let status: Value =
        serde_json::from_str(&loser.mmm_ok(&["status", "--json"])).expect("status json");
    assert_eq!(status["specs"][0]["lease"]["holder"], winner.as_str());
    let text = loser.mmm_ok(&["status"]);
    assert!(text.contains(&format!("leased by {winner}")), "{text}");
    let plan: Value = serde_json::from_str(&loser.mmm_ok(&["plan", "--json"])).expect("json");
    if plan["leased"].as_array().is_some_and(|v| !v.is_empty()) {
        // Still live at the moment of the plan: s is left out and said to be leased.
        assert_eq!(plan["specs"], serde_json::json!([]));
        assert_eq!(plan["leased"][0]["spec"], "s");
    }
    // Once the lease is gone on the remote, a fetch drops it: s is ready again.
    loser.mmm_ok(&["sync"]);
    let plan: Value = serde_json::from_str(&loser.mmm_ok(&["plan", "--json"])).expect("json");
    assert_eq!(plan["leased"], serde_json::json!([]));
    assert_eq!(plan["specs"][0]["spec"], "s");
    remote.assert_fsck();
}

#[test]
fn a_runner_killed_holding_a_lease_is_taken_over_after_expiry() {
    let remote = Remote::new();
    let a = lease_clone(&remote, "2s", "a@example.com");
    let mut run = spawn_run(&a, &["--lease", "--push"], 20, 1);
    let taken = wait_for_ref(&remote, "refs/mmm/s/lease").expect("a lease on the remote");
    let lease = remote_lease(&remote);
    assert_eq!(lease["holder"], "a@example.com");
    assert_eq!(lease["pid"], run.id());
    run.kill().expect("SIGKILL");
    run.wait().expect("reap");
    // Nobody released it.
    assert!(remote.rev("refs/mmm/s/lease").is_some());
    let _ = taken;
    // Once it has expired, another runner takes it over and completes the spec.
    let expires = humantime::parse_rfc3339(remote_lease(&remote)["expires"].as_str().expect("e"))
        .expect("rfc3339");
    if let Ok(left) = expires.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left + std::time::Duration::from_millis(500));
    }
    let b = lease_clone(&remote, "2s", "b@example.com");
    let out = spawn_run(&b, &["--lease", "--push"], 0, 0)
        .wait_with_output()
        .expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(leased_events(&out).is_empty(), "{}", show(&out));
    let commits = recorded(&out);
    assert_eq!(commits.len(), 1, "{}", show(&out));
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(commits[0].as_str())
    );
    let status = b.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Mmm-Status,valueonly)",
        &commits[0],
    ]);
    assert_eq!(status.trim(), "complete");
    // Released at the end.
    assert_eq!(remote.rev("refs/mmm/s/lease"), None);
    remote.assert_fsck();
}

#[test]
fn a_run_killed_mid_iteration_with_push_leaves_its_transcript_and_another_clone_resumes() {
    let remote = Remote::new();
    let a = lease_clone(&remote, "10m", "a@example.com");
    // Iteration 1 recorded and pushed (its gate fails fast).
    let out = spawn_run(&a, &["--push", "--max-iterations", "1"], 0, 1)
        .wait_with_output()
        .expect("wait");
    assert_eq!(recorded(&out).len(), 1, "{}", show(&out));
    let first = remote
        .rev("refs/heads/mmm/s")
        .expect("iteration 1 on the remote");
    // Iteration 2's gate hangs: its checkpoint reaches the remote, then the runner is killed.
    let mut run = spawn_run(&a, &["--push"], 20, 1);
    let wip = (0..400).find_map(|_| {
        let refs = remote.git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/mmm/s/wip/",
        ]);
        if refs.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(50));
            return None;
        }
        Some(refs.trim().to_owned())
    });
    let wip = wip.expect("a checkpoint on the remote");
    run.kill().expect("SIGKILL");
    run.wait().expect("reap");
    let (wip_ref, wip_oid) = wip.split_once(' ').expect("ref and oid");
    // The partial transcript is on the remote: the model's answer of the iteration in flight.
    let transcript = remote.git(&["show", &format!("{wip_oid}:transcript.jsonl")]);
    assert!(transcript.contains("Done."), "{transcript}");
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(first.as_str())
    );

    // Another clone resumes from the remote: iteration 2 follows the remote's iteration 1.
    let b = lease_clone(&remote, "10m", "b@example.com");
    let out = spawn_run(&b, &["--push"], 0, 0)
        .wait_with_output()
        .expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let commits = recorded(&out);
    assert_eq!(commits.len(), 1, "{}", show(&out));
    let n = b.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Mmm-Iteration,valueonly)",
        &commits[0],
    ]);
    assert_eq!(n.trim(), "2");
    assert_eq!(rev(&b, &format!("{}^", commits[0])), first);
    assert_eq!(
        remote.rev("refs/heads/mmm/s").as_deref(),
        Some(commits[0].as_str())
    );
    // The dead run's checkpoint is kept: on the remote, and adopted by the clone that resumed.
    assert_eq!(remote.rev(wip_ref).as_deref(), Some(wip_oid));
    assert_eq!(rev(&b, wip_ref), wip_oid);
    remote.assert_fsck();
}

#[test]
fn four_clones_on_four_specs_push_at_once_without_disturbing_each_other() {
    let remote = Remote::new();
    let clones: Vec<TestRepo> = (0..4).map(|_| remote.clone()).collect();
    let handles: Vec<_> = clones
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (path, home) = (c.path.clone(), c.home.clone());
            std::thread::spawn(move || {
                let spec = format!("spec-{i}");
                let mut acked = Vec::new();
                for _ in 0..3 {
                    let out = crate::support::mmm_cmd(&path, &home)
                        .args(["plumbing", "record", &spec, "--iterations", "2"])
                        .output()
                        .expect("record");
                    assert!(out.status.success());
                    for l in String::from_utf8_lossy(&out.stdout).lines() {
                        acked.push(l.split(' ').next().expect("commit").to_owned());
                    }
                    // Each sync names its spec, as `run --push` does.
                    let out = crate::support::mmm_cmd(&path, &home)
                        .args(["sync", &spec])
                        .output()
                        .expect("sync");
                    assert!(
                        out.status.success(),
                        "sync failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    assert_eq!(
                        String::from_utf8_lossy(&out.stdout),
                        format!("{spec}  pushed\n")
                    );
                }
                (spec, acked)
            })
        })
        .collect();
    let results: Vec<(String, Vec<String>)> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    for (c, (spec, acked)) in clones.iter().zip(&results) {
        assert_eq!(acked.len(), 6);
        // The remote's branch is this clone's, every iteration on it with both notes; nothing
        // was archived (no clone disturbed another).
        let tip = remote
            .rev(&format!("refs/heads/mmm/{spec}"))
            .expect("branch");
        assert_eq!(tip, rev(c, &format!("mmm/{spec}")));
        assert_eq!(remote.rev(&format!("refs/mmm/{spec}/archive")), None);
        for commit in acked {
            assert!(remote.is_ancestor(commit, &tip), "{commit} not on {spec}");
            for kind in ["transcripts", "metrics"] {
                let notes = format!("refs/notes/mmm/{spec}/{kind}");
                assert!(remote.note(&notes, commit).is_some(), "{kind} of {commit}");
                assert_eq!(
                    remote.rev(&notes),
                    Some(rev(c, &notes)),
                    "{notes} differs from its only writer's"
                );
            }
        }
    }
    // A sync of everything in any clone brings the other three specs and pushes nothing.
    let out = clones[0].mmm_ok(&["sync"]);
    assert_eq!(
        out,
        "spec-0  up to date\nspec-1  fast-forwarded\nspec-2  fast-forwarded\nspec-3  fast-forwarded\n"
    );
    remote.assert_fsck();
}

#[test]
fn foreign_branches_and_malformed_notes_are_reported_and_left_alone() {
    let remote = Remote::new();
    let (a, b, other) = (remote.clone(), remote.clone(), remote.clone());
    // Someone else's branch under refs/heads/mmm/ (no trailers).
    other.write("x.txt", "not mmm's\n");
    other.commit_all("a branch of someone else's");
    other.git(&["push", "-q", "origin", "HEAD:refs/heads/mmm/foreign"]);
    let foreign = remote.rev("refs/heads/mmm/foreign").expect("pushed");
    // A malformed note on the remote, written with plain git by another clone.
    let commits = record(&b, "s", 2);
    b.mmm_ok(&["sync", "s"]);
    a.mmm_ok(&["sync", "s"]);
    b.git(&[
        "notes",
        "--ref=refs/notes/mmm/s/metrics",
        "append",
        "-m",
        "garbage {",
        &commits[0],
    ]);
    b.git(&["push", "-q", "origin", "refs/notes/mmm/s/metrics"]);
    // And a branch of a's own named like an mmm branch.
    a.git(&["branch", "mmm/mine"]);
    let remote_before = remote.refs();
    let bad_note = remote
        .note("refs/notes/mmm/s/metrics", &commits[0])
        .expect("note");

    let out = a.mmm_ok(&["sync"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("foreign  not mmm's, left alone"),
        "{out}"
    );
    assert!(
        lines[1].contains("warning: the remote's refs/heads/mmm/foreign is not mmm's"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("mine     not mmm's, left alone"),
        "{out}"
    );
    assert!(
        lines[3].contains("warning: the local refs/heads/mmm/mine is not mmm's"),
        "{out}"
    );
    assert!(lines[4].starts_with("s        fast-forwarded"), "{out}");
    // The line git's `append` added after a blank line, below the note's own records.
    let n = bad_note.lines().count();
    let short = &commits[0][..12];
    assert!(
        lines[5].contains(&format!(
            "warning: the note on {short} in refs/notes/mmm/s/metrics is malformed (line {n} is not a JSON object); left as it is"
        )),
        "{out}"
    );
    // Nothing was "repaired" or pushed: the remote is as it was, the foreign branch was not
    // taken in, the note came as it is.
    assert_eq!(remote.refs(), remote_before);
    assert_eq!(remote.rev("refs/heads/mmm/foreign"), Some(foreign));
    assert!(
        !a.git_output(&["rev-parse", "--verify", "-q", "refs/heads/mmm/foreign"])
            .status
            .success()
    );
    assert_eq!(
        note_of(&a, "refs/notes/mmm/s/metrics", &commits[0]),
        Some(bad_note)
    );
    // The next sync says the same about the branches and changes nothing.
    let json = sync_json(&a, &[]);
    let st = statuses(&json);
    assert_eq!(st["foreign"], "foreign");
    assert_eq!(st["mine"], "foreign");
    assert_eq!(st["s"], "up-to-date");
    assert_eq!(remote.refs(), remote_before);
    remote.assert_fsck();
}

/// A directory with a `git` wrapper that writes what `GIT_TERMINAL_PROMPT` it was given to
/// `prompt.txt`, hangs on `git fetch` while `hang` exists, and passes everything to real git.
fn hanging_fetch_git(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let d = dir.display();
    let script = format!(
        "#!/bin/sh\necho \"${{GIT_TERMINAL_PROMPT-unset}}\" >> {d}/prompt.txt\n\
         for a in \"$@\"; do\n  if [ \"$a\" = fetch ] && [ -e {d}/hang ]; then\n    exec sleep 60\n  fi\ndone\n\
         exec {} \"$@\"\n",
        real_git().display()
    );
    let git = bin.join("git");
    std::fs::write(&git, script).expect("write wrapper");
    std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

#[test]
fn a_hanging_network_step_times_out_never_prompts_and_the_next_sync_finishes() {
    let remote = Remote::new();
    let a = remote.clone();
    let commits = record(&a, "s", 2);
    a.write(".mmm/config.toml", "[sync]\ntimeout = \"1s\"\n");
    let bin = hanging_fetch_git(a.dir.path());
    std::fs::write(a.dir.path().join("hang"), "").expect("hang");
    let before = local_state(&a);
    let out = a
        .mmm_cmd()
        .env("PATH", path_with(&bin))
        .env("GIT_TERMINAL_PROMPT", "1")
        .arg("sync")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not reach the remote `origin` during fetch (no answer within 1s)"),
        "{err}"
    );
    assert_eq!(local_state(&a), before);
    assert_eq!(remote.refs(), "");
    // git never got a terminal to prompt on, whatever the caller's environment said.
    let prompts = std::fs::read_to_string(a.dir.path().join("prompt.txt")).expect("called");
    assert!(prompts.lines().all(|l| l == "0"), "{prompts}");
    // The network is back: the next sync finishes the job.
    std::fs::remove_file(a.dir.path().join("hang")).expect("rm");
    let out = a
        .mmm_cmd()
        .env("PATH", path_with(&bin))
        .arg("sync")
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "s  pushed\n",
        "{}",
        show(&out)
    );
    assert_eq!(remote.rev("refs/heads/mmm/s"), commits.last().cloned());
    remote.assert_fsck();
}
