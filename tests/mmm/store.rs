//! The git-native store: iteration commits, notes, rollback, concurrency, kill points, doctor.
//! Everything is read back with plain `git`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use git2::Oid;
use mmm::clock::{FixedClock, SeqIdGen};
use mmm::spec::SpecId;
use mmm::store::{
    DoctorOptions, IterationStatus, KILL_POINTS, NewIteration, Problem, Record, Run, Store,
    StoreOptions,
};

use crate::support::TestRepo;

fn store_at(path: &Path, prefix: &str) -> Store {
    let opts = StoreOptions::new(
        Arc::new(FixedClock::new(1_767_225_600, Duration::from_secs(1))),
        Arc::new(SeqIdGen::new(prefix)),
    );
    Store::open(path, opts).expect("open store")
}

fn spec(s: &str) -> SpecId {
    SpecId::new(s).expect("valid slug")
}

fn head(repo: &TestRepo) -> Oid {
    Oid::from_str(repo.git(&["rev-parse", "HEAD"]).trim()).expect("oid")
}

/// Records one iteration whose tree adds `file` (or keeps the parent's tree).
fn record(store: &Store, run: &mut Run, file: Option<&str>) -> mmm::store::Recorded {
    let repo = store.repo();
    let parent_tree = repo
        .find_commit(run.parent())
        .and_then(|c| c.tree())
        .expect("parent tree");
    let tree = match file {
        Some(name) => {
            let blob = repo
                .blob(format!("{} {}\n", run.id, run.next_iteration).as_bytes())
                .expect("blob");
            let mut tb = repo.treebuilder(Some(&parent_tree)).expect("treebuilder");
            tb.insert(name, blob, 0o100644).expect("insert");
            tb.write().expect("write tree")
        }
        None => parent_tree.id(),
    };
    let t1 = store
        .new_record(run, "turn")
        .with("role", "user")
        .with("text", "go");
    store
        .checkpoint(run, std::slice::from_ref(&t1))
        .expect("checkpoint");
    let t2 = store
        .new_record(run, "turn")
        .with("role", "assistant")
        .with("text", "ok");
    let m = store
        .new_record(run, "gate")
        .with("name", "test")
        .with("ok", true);
    store
        .record_iteration(
            run,
            NewIteration {
                tree,
                status: IterationStatus::Failed,
                summary: format!("step {}", run.next_iteration),
                body: "Some body.".into(),
                spec_revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
                transcript: vec![t1, t2],
                metrics: vec![m],
            },
        )
        .expect("record iteration")
}

/// Every line of the note parses as a record with the required fields.
fn assert_note(repo: &TestRepo, notes: &str, commit: &str) -> Vec<serde_json::Value> {
    let text = repo.git(&["notes", &format!("--ref={notes}"), "show", commit]);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("note line is JSON"))
        .collect();
    assert!(!lines.is_empty(), "empty note {notes} on {commit}");
    for v in &lines {
        for k in ["v", "kind", "id", "run", "seq", "ts"] {
            assert!(v.get(k).is_some(), "record without {k}: {v}");
        }
        assert_eq!(v["v"], 1);
    }
    lines
}

fn is_ancestor(repo: &TestRepo, commit: &str, of: &str) -> bool {
    repo.git_output(&["merge-base", "--is-ancestor", commit, of])
        .status
        .success()
}

#[test]
fn records_iterations_with_trailers_parents_and_notes() {
    let repo = TestRepo::new();
    let base = head(&repo);
    let store = store_at(&repo.path, "a");
    let s = spec("login");
    let mut run = store.start_run(&s, base).expect("start");
    assert_eq!(run.next_iteration, 1);
    let r1 = record(&store, &mut run, Some("one.txt"));
    let r2 = record(&store, &mut run, None); // unchanged tree still makes a commit
    // The checkpoint of the iteration in flight is on the wip ref, with a reflog.
    let wip = format!("refs/mmm/login/wip/{}", run.id);
    let r3 = record(&store, &mut run, Some("three.txt"));
    assert_eq!((r1.iteration, r2.iteration, r3.iteration), (1, 2, 3));
    assert!(!r1.superseded && !r2.superseded && !r3.superseded);
    assert!(
        repo.git(&["show", &format!("{wip}:transcript.jsonl")])
            .contains(r#""text":"go""#)
    );
    assert_eq!(repo.git(&["reflog", "show", &wip]).lines().count(), 3);
    store.finish_run(&run).expect("finish");
    assert!(
        !repo
            .git_output(&["rev-parse", "--verify", "-q", &wip])
            .status
            .success()
    );

    let log = repo.git(&["log", "--format=%B", "mmm/login", "-1"]);
    assert_eq!(
        log,
        format!(
            "mmm(login): iteration 3: step 3\n\nSome body.\n\nMmm-Spec: login\nMmm-Iteration: 3\nMmm-Run: {}\nMmm-Status: failed\nMmm-Spec-Revision: 0123456789abcdef0123456789abcdef01234567\nMmm-Base: {base}\n\n",
            run.id
        )
    );
    // First parents: 3 -> 2 -> 1 -> base.
    assert_eq!(
        repo.git(&["rev-parse", "mmm/login~3"]).trim(),
        base.to_string()
    );
    assert_eq!(
        repo.git(&["rev-parse", "mmm/login~1"]).trim(),
        r2.commit.to_string()
    );
    // Iteration 2 changed nothing.
    assert_eq!(
        repo.git(&["rev-parse", "mmm/login~1^{tree}"]),
        repo.git(&["rev-parse", "mmm/login~2^{tree}"])
    );
    for c in [r1.commit, r2.commit, r3.commit] {
        let t = assert_note(&repo, "mmm/login/transcripts", &c.to_string());
        assert_eq!(t.len(), 2);
        let m = assert_note(&repo, "mmm/login/metrics", &c.to_string());
        assert!(m.iter().any(|v| v["kind"] == "iteration"));
    }
    assert_eq!(
        repo.git(&["reflog", "show", "mmm/login"]).lines().count(),
        3
    );
    repo.assert_fsck();

    // Reads.
    let h = store.history(&s).expect("history");
    assert_eq!(h.iter().map(|i| i.n).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(h[0].parent, Some(base));
    assert_eq!(h[2].status, Some(IterationStatus::Failed));
    let d = store.iteration(&s, 2).expect("iteration 2");
    let transcript = d.transcript.expect("transcript note");
    assert_eq!(transcript.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6]);
    assert!(d.metrics.expect("metrics").iter().any(|r| r.kind == "gate"));
    let st = store.status_all().expect("status");
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].iteration, Some(3));
    assert_eq!(st[0].tip, r3.commit);
    assert_eq!(st[0].run.as_deref(), Some(run.id.as_str()));

    // A new run resumes from the tip.
    let mut run2 = store.start_run(&s, base).expect("resume");
    assert_eq!((run2.tip, run2.next_iteration), (Some(r3.commit), 4));
    let r4 = record(&store, &mut run2, None);
    assert_eq!(r4.iteration, 4);
    assert_eq!(
        repo.git(&["rev-parse", "mmm/login^"]).trim(),
        r3.commit.to_string()
    );
}

/// The `.pack` files of the repository.
fn packs(repo: &TestRepo) -> Vec<String> {
    let dir = repo.path.join(".git/objects/pack");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.retain(|n| n.ends_with(".pack"));
    v.sort();
    v
}

fn loose_objects(repo: &TestRepo) -> usize {
    repo.git(&["count-objects", "-v"])
        .lines()
        .find_map(|l| l.strip_prefix("count: "))
        .expect("count line")
        .parse()
        .expect("number")
}

#[test]
fn iterations_reach_git_as_packs_merged_when_the_run_finishes() {
    let repo = TestRepo::new();
    let base = head(&repo);
    let loose_before = loose_objects(&repo);
    let store = store_at(&repo.path, "p");
    let s = spec("packed");
    let mut run = store.start_run(&s, base).expect("start");
    let mut commits = Vec::new();
    for i in 0..4 {
        commits.push(record(&store, &mut run, Some(&format!("f{i}.txt"))).commit);
        // A checkpoint and an iteration: two packs each time, readable by git at once.
        assert_eq!(packs(&repo).len(), 2 * (i + 1));
        assert_note(&repo, "mmm/packed/transcripts", &commits[i].to_string());
    }
    assert_eq!(
        loose_objects(&repo),
        loose_before,
        "no loose object was written"
    );
    store.finish_run(&run).expect("finish");
    assert_eq!(
        packs(&repo).len(),
        1,
        "the run's packs were merged into one"
    );
    assert_nothing_lost(
        &repo,
        "packed",
        &commits.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
    );
    // git's own maintenance takes mmm's pack like any other.
    repo.git(&["gc", "--quiet"]);
    repo.assert_fsck();
    assert_eq!(
        repo.git(&["rev-list", "--count", &format!("{base}..mmm/packed")])
            .trim(),
        "4"
    );
}

#[test]
fn rendered_errors() {
    let repo = TestRepo::new();
    let store = store_at(&repo.path, "a");
    let s = spec("x");
    let err = store.history(&s).expect_err("no branch");
    insta::assert_snapshot!(err, @"spec `x` has no iterations yet (no branch refs/heads/mmm/x); run the loop on it first");
    let mut run = store.start_run(&s, head(&repo)).expect("start");
    record(&store, &mut run, None);
    let err = store.iteration(&s, 7).expect_err("no such iteration");
    insta::assert_snapshot!(err, @"spec `x` has no iteration 7 (its branch has iterations 1..=1); see `git mmm log x`");
    let err = store.undo_rollback(&s).expect_err("nothing to undo");
    insta::assert_snapshot!(err, @"spec `x` has no rollback to undo (the archive records none, or the last one was already undone)");
}

#[test]
fn rollback_archives_and_undo_restores() {
    let repo = TestRepo::new();
    let store = store_at(&repo.path, "a");
    let s = spec("feat");
    let mut run = store.start_run(&s, head(&repo)).expect("start");
    let r: Vec<_> = (0..3)
        .map(|i| record(&store, &mut run, Some(&format!("f{i}"))))
        .collect();
    store.finish_run(&run).expect("finish");

    let rb = store.rollback(&s, 1).expect("rollback");
    assert_eq!(
        (rb.from, rb.to, rb.iteration),
        (r[2].commit, r[0].commit, Some(1))
    );
    assert_eq!(
        repo.git(&["rev-parse", "mmm/feat"]).trim(),
        r[0].commit.to_string()
    );
    // The old tip stays reachable from the archive, and its notes are readable.
    assert!(is_ancestor(
        &repo,
        &r[2].commit.to_string(),
        "refs/mmm/feat/archive"
    ));
    assert_eq!(
        repo.git(&["rev-parse", "refs/mmm/feat/archive^1"]).trim(),
        r[2].commit.to_string()
    );
    assert_eq!(
        repo.git(&["show", "-s", "--format=%T", "refs/mmm/feat/archive"])
            .trim(),
        "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    );
    let body = repo.git(&["log", "-1", "--format=%B", "refs/mmm/feat/archive"]);
    assert!(body.contains("Mmm-Archive: rollback"), "{body}");
    assert!(
        body.contains(&format!("Mmm-Rollback-From: {}", r[2].commit)),
        "{body}"
    );
    assert_note(&repo, "mmm/feat/transcripts", &r[2].commit.to_string());
    assert_eq!(
        repo.git(&["reflog", "show", "refs/mmm/feat/archive"])
            .lines()
            .count(),
        1
    );
    assert_eq!(store.history(&s).expect("history").len(), 1);
    repo.git(&["gc", "--prune=now", "-q"]);
    repo.assert_fsck();
    assert_note(&repo, "mmm/feat/metrics", &r[1].commit.to_string());

    let undo = store.undo_rollback(&s).expect("undo");
    assert_eq!(
        (undo.from, undo.to, undo.iteration),
        (r[0].commit, r[2].commit, Some(3))
    );
    assert_eq!(
        repo.git(&["rev-parse", "mmm/feat"]).trim(),
        r[2].commit.to_string()
    );
    assert!(matches!(
        store.undo_rollback(&s),
        Err(mmm::store::StoreError::NothingToUndo { .. })
    ));

    // An undo refuses to drop work recorded after the rollback.
    store.rollback(&s, 2).expect("rollback to 2");
    let mut run = store.start_run(&s, head(&repo)).expect("start");
    let r3b = record(&store, &mut run, None);
    assert_eq!(r3b.iteration, 3);
    let err = store.undo_rollback(&s).expect_err("branch moved");
    assert!(
        err.to_string()
            .starts_with("cannot undo the last rollback of `feat`"),
        "{err}"
    );
    repo.assert_fsck();
}

#[test]
fn configure_is_idempotent() {
    let repo = TestRepo::new();
    let store = store_at(&repo.path, "a");
    // An older mmm displayed every note in `git log`; the user's own display refs stay.
    repo.git(&["config", "--add", "notes.displayRef", "refs/notes/mmm/*"]);
    repo.git(&["config", "--add", "notes.displayRef", "refs/notes/review"]);
    assert_eq!(
        store.configure().expect("configure"),
        [
            "set notes.rewriteRef = refs/notes/mmm/*",
            "unset notes.displayRef = refs/notes/mmm/* (`git log` stays readable; `git mmm log` \
             shows the iterations)"
        ]
    );
    assert!(store.configure().expect("again").is_empty());
    assert_eq!(
        repo.git(&["config", "--get-all", "notes.rewriteRef"]),
        "refs/notes/mmm/*\n"
    );
    assert_eq!(
        repo.git(&["config", "--get-all", "notes.displayRef"]),
        "refs/notes/review\n"
    );
}

/// Every acknowledged commit is on the branch or in the archive, has readable notes, and the
/// branch is a clean chain of iterations.
fn assert_nothing_lost(repo: &TestRepo, s: &str, acked: &[String]) {
    let branch = format!("mmm/{s}");
    let archive = format!("refs/mmm/{s}/archive");
    let has_archive = repo
        .git_output(&["rev-parse", "--verify", "-q", &archive])
        .status
        .success();
    for c in acked {
        assert!(
            is_ancestor(repo, c, &branch) || (has_archive && is_ancestor(repo, c, &archive)),
            "acknowledged commit {c} was lost"
        );
        assert_note(repo, &format!("mmm/{s}/transcripts"), c);
        assert_note(repo, &format!("mmm/{s}/metrics"), c);
    }
    // The branch's iteration numbers count down by one along first parents.
    let log = repo.git(&[
        "log",
        "--first-parent",
        "--format=%(trailers:key=Mmm-Iteration,valueonly)",
        &branch,
    ]);
    let ns: Vec<u32> = log
        .split_whitespace()
        .map(|n| n.parse().expect("number"))
        .collect();
    let expect: Vec<u32> = (1..=ns.len() as u32).rev().collect();
    assert_eq!(ns, expect);
    repo.assert_fsck();
}

#[test]
fn concurrent_threads_lose_nothing() {
    let repo = TestRepo::new();
    let base = head(&repo);
    let s = spec("race");
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let path = repo.path.clone();
            let s = s.clone();
            std::thread::spawn(move || {
                let store = store_at(&path, &format!("t{t}-"));
                let mut run = store.start_run(&s, base).expect("start");
                let mut acked = Vec::new();
                for _ in 0..5 {
                    let r = record(&store, &mut run, Some(&format!("t{t}.txt")));
                    acked.push((r.commit.to_string(), r.superseded));
                }
                store.finish_run(&run).expect("finish");
                acked
            })
        })
        .collect();
    let acked: Vec<(String, bool)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(acked.len(), 20);
    let commits: Vec<String> = acked.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(commits.iter().collect::<HashSet<_>>().len(), 20);
    assert_nothing_lost(&repo, "race", &commits);
    let on_branch = acked.iter().filter(|(_, sup)| !sup).count();
    let branch_len = repo.git(&[
        "rev-list",
        "--first-parent",
        "--count",
        &format!("{base}..mmm/race"),
    ]);
    assert_eq!(branch_len.trim(), on_branch.to_string());
    assert!(repo.git(&["for-each-ref", "refs/mmm/race/wip/"]).is_empty());
}

#[test]
fn concurrent_processes_lose_nothing() {
    let repo = TestRepo::new();
    let children: Vec<_> = (0..4)
        .map(|_| {
            repo.mmm_cmd()
                .args(["plumbing", "record", "race", "--iterations", "5"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn git-mmm")
        })
        .collect();
    let mut acked = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "writer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        for line in stdout.lines() {
            acked.push(line.split(' ').next().expect("commit").to_owned());
        }
    }
    assert_eq!(acked.len(), 20);
    assert_nothing_lost(&repo, "race", &acked);
}

fn doctor(repo: &TestRepo) -> mmm::store::DoctorReport {
    store_at(&repo.path, "d")
        .doctor(&DoctorOptions {
            repair: true,
            all_wip: true,
            ..DoctorOptions::default()
        })
        .expect("doctor")
}

fn plumbing_record(repo: &TestRepo, kill: Option<&str>) -> std::process::Output {
    let mut cmd = repo.mmm_cmd();
    cmd.args(["plumbing", "record", "k", "--iterations", "2"]);
    if let Some(step) = kill {
        cmd.env("MMM_KILL_AT", step);
    }
    cmd.output().expect("run git-mmm")
}

fn acked_of(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(' ').next().expect("commit").to_owned())
        .collect()
}

#[test]
fn kill_at_every_step_then_doctor_repairs() {
    for step in KILL_POINTS {
        let repo = TestRepo::new();
        let first = plumbing_record(&repo, None);
        assert!(first.status.success());
        let mut acked = acked_of(&first);

        let killed = if *step == "after-archive" {
            repo.mmm_cmd()
                .args(["plumbing", "rollback", "k", "--to", "1"])
                .env("MMM_KILL_AT", step)
                .output()
                .expect("run git-mmm")
        } else {
            plumbing_record(&repo, Some(step))
        };
        assert!(
            !killed.status.success() && killed.status.code().is_none(),
            "{step}: the writer was not killed: {:?}",
            killed.status
        );
        // The killed writer may have acknowledged iterations before it died.
        acked.extend(acked_of(&killed));

        let report = doctor(&repo);
        // Every branch commit has both notes, or the missing one is reported.
        let missing: HashSet<(Oid, String)> = report
            .findings
            .iter()
            .filter_map(|f| match &f.problem {
                Problem::MissingNote {
                    commit, notes_ref, ..
                } => Some((*commit, notes_ref.clone())),
                _ => None,
            })
            .collect();
        let branch = repo.git(&["rev-list", "--first-parent", "mmm/k", "--not", "main"]);
        for c in branch.lines() {
            for kind in ["transcripts", "metrics"] {
                let has = repo
                    .git_output(&["notes", &format!("--ref=mmm/k/{kind}"), "show", c])
                    .status
                    .success();
                let reported = missing.contains(&(
                    Oid::from_str(c).expect("oid"),
                    format!("refs/notes/mmm/k/{kind}"),
                ));
                assert!(
                    has || reported,
                    "{step}: {c} has no {kind} note and it was not reported"
                );
            }
        }
        for c in &acked {
            assert!(
                is_ancestor(&repo, c, "mmm/k"),
                "{step}: acknowledged {c} lost"
            );
        }
        repo.assert_fsck();
        // No wip ref is left, and every note's commit is on the branch or in the archive.
        assert!(
            repo.git(&["for-each-ref", "refs/mmm/k/wip/"]).is_empty(),
            "{step}"
        );
        let again = doctor(&repo);
        assert!(
            again.nothing_to_do(),
            "{step}: second doctor run: {again:?}"
        );
        assert!(
            !again
                .findings
                .iter()
                .any(|f| matches!(f.problem, Problem::OrphanNote { .. })),
            "{step}"
        );

        // And the next writer succeeds on top.
        let tip = repo.git(&["rev-parse", "mmm/k"]);
        let next = plumbing_record(&repo, None);
        assert!(
            next.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&next.stderr)
        );
        let new = acked_of(&next);
        assert_eq!(
            repo.git(&["rev-parse", &format!("{}^", new[0])]),
            tip,
            "{step}"
        );
        repo.assert_fsck();
    }
}

#[test]
fn kill_between_notes_and_branch_is_fast_forwarded() {
    let repo = TestRepo::new();
    assert!(plumbing_record(&repo, None).status.success());
    let before = repo.git(&["rev-parse", "mmm/k"]);
    let killed = plumbing_record(&repo, Some("after-metrics-note"));
    assert!(killed.status.code().is_none());
    assert_eq!(repo.git(&["rev-parse", "mmm/k"]), before);
    let dry = store_at(&repo.path, "d")
        .doctor(&DoctorOptions::default())
        .expect("dry run");
    assert!(dry.findings.iter().any(|f| !f.done
        && matches!(
            f.problem,
            Problem::OrphanNote {
                iteration: Some(3),
                ..
            }
        )));
    assert_eq!(
        repo.git(&["rev-parse", "mmm/k"]),
        before,
        "a dry run changes nothing"
    );
    doctor(&repo);
    assert_eq!(repo.git(&["rev-parse", "mmm/k^"]), before);
    let log = repo.git(&["log", "-1", "--format=%B", "mmm/k"]);
    assert!(log.contains("Mmm-Iteration: 3"), "{log}");
}

#[test]
fn doctor_archives_orphans_that_cannot_fast_forward() {
    let repo = TestRepo::new();
    assert!(plumbing_record(&repo, None).status.success());
    let killed = plumbing_record(&repo, Some("after-transcript-note"));
    assert!(killed.status.code().is_none());
    // The branch moves on (another writer) before doctor runs.
    let store = store_at(&repo.path, "x");
    store.rollback(&spec("k"), 1).expect("rollback");
    let orphan = repo
        .git(&["notes", "--ref=mmm/k/transcripts", "list"])
        .lines()
        .map(|l| l.split(' ').nth(1).expect("annotated").to_owned())
        .find(|c| !is_ancestor(&repo, c, "refs/mmm/k/archive") && !is_ancestor(&repo, c, "mmm/k"))
        .expect("an orphaned note");
    let report = doctor(&repo);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.done && matches!(f.action, Some(mmm::store::DoctorAction::Archive { .. })))
    );
    assert!(is_ancestor(&repo, &orphan, "refs/mmm/k/archive"));
    assert!(doctor(&repo).nothing_to_do());
    repo.assert_fsck();
}

#[test]
fn doctor_keeps_in_flight_wip_and_archives_stale_wip() {
    let repo = TestRepo::new();
    let killed = plumbing_record(&repo, Some("after-checkpoint"));
    assert!(killed.status.code().is_none());
    let wip = repo.git(&["for-each-ref", "--format=%(refname)", "refs/mmm/k/wip/"]);
    let wip = wip.trim().to_owned();
    assert!(!wip.is_empty());
    let wip_tip = repo.git(&["rev-parse", &wip]);
    // Young wip refs may belong to a live run: left alone by default (the test clock is in
    // 2026, the checkpoint was written now, so it is not older than a day).
    let store = store_at(&repo.path, "d");
    let r = store
        .doctor(&DoctorOptions {
            repair: true,
            stale_after: Duration::from_secs(u64::MAX / 4),
            all_wip: false,
            ..DoctorOptions::default()
        })
        .expect("doctor");
    assert!(r.nothing_to_do(), "{r:?}");
    assert_eq!(repo.git(&["rev-parse", &wip]), wip_tip);
    // Declared stale: archived (transcript still reachable), then deleted.
    doctor(&repo);
    assert!(repo.git(&["for-each-ref", "refs/mmm/k/wip/"]).is_empty());
    assert!(is_ancestor(&repo, wip_tip.trim(), "refs/mmm/k/archive"));
    assert!(
        repo.git(&["show", &format!("{}:transcript.jsonl", wip_tip.trim())])
            .contains("work on k")
    );
    assert!(doctor(&repo).nothing_to_do());
}

#[test]
fn doctor_prunes_leftover_worktrees() {
    let repo = TestRepo::new();
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        ".git/mmm/worktrees/left",
    ]);
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        ".git/mmm/worktrees/busy",
    ]);
    repo.git(&["worktree", "lock", ".git/mmm/worktrees/busy"]);
    let elsewhere = repo.dir.path().join("gone");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        elsewhere.to_str().expect("utf-8"),
    ]);
    std::fs::remove_dir_all(&elsewhere).expect("remove worktree dir");
    let user = repo.dir.path().join("user");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        user.to_str().expect("utf-8"),
    ]);

    let report = doctor(&repo);
    let mut pruned: Vec<String> = report
        .findings
        .iter()
        .filter_map(|f| match &f.problem {
            Problem::LeftoverWorktree { name, .. } if f.done => Some(name.clone()),
            _ => None,
        })
        .collect();
    pruned.sort();
    assert_eq!(pruned, ["gone", "left"]);
    let list = repo.git(&["worktree", "list", "--porcelain"]);
    assert!(list.contains("busy") && list.contains("/user"), "{list}");
    assert!(!list.contains("left") && !list.contains("/gone"), "{list}");
    assert!(!repo.path.join(".git/mmm/worktrees/left").exists());
    assert!(doctor(&repo).nothing_to_do());
}

#[test]
fn notes_are_unioned_not_replaced() {
    let repo = TestRepo::new();
    let store = store_at(&repo.path, "a");
    let s = spec("u");
    let mut run = store.start_run(&s, head(&repo)).expect("start");
    let r = record(&store, &mut run, None);
    // Another writer (plain git) appends a line to the note; mmm never drops it.
    let extra =
        r#"{"v":1,"kind":"review","id":"ext-1","run":"x","seq":1,"ts":"2026-01-01T00:00:00Z"}"#;
    repo.git(&[
        "notes",
        "--ref=mmm/u/transcripts",
        "append",
        "--no-separator",
        "-m",
        extra,
        &r.commit.to_string(),
    ]);
    let d = store.iteration(&s, 1).expect("iteration");
    let t: Vec<Record> = d.transcript.expect("note");
    assert_eq!(t.len(), 3);
    assert!(t.iter().any(|r| r.id == "ext-1"));
}

#[test]
fn status_all_reads_only_tips_and_is_fast() {
    let repo = TestRepo::new();
    let store = store_at(&repo.path, "a");
    let mut run = store.start_run(&spec("s0"), head(&repo)).expect("start");
    let tip = record(&store, &mut run, None).commit;
    // 1,000 specs whose branches point at iteration commits (only s0's trailers match).
    let mut stdin = String::new();
    for i in 1..1000 {
        stdin.push_str(&format!("create refs/heads/mmm/s{i} {tip}\n"));
    }
    let mut child = crate::support::git_cmd(&repo.path, &repo.home)
        .args(["update-ref", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("git update-ref");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), stdin.as_bytes())
        .expect("write refs");
    assert!(child.wait().expect("wait").success());
    let t = std::time::Instant::now();
    let st = store.status_all().expect("status");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(st.len(), 1000);
    let s0 = st.iter().find(|s| s.spec.as_str() == "s0").expect("s0");
    assert_eq!(
        (s0.iteration, s0.status.clone()),
        (Some(1), Some(IterationStatus::Failed))
    );
    // Another spec's commit on a branch is not read as its iteration.
    assert!(st.iter().filter(|s| s.iteration.is_some()).count() == 1);
}

#[test]
fn history_stops_at_iteration_one_even_when_the_base_is_an_older_run() {
    // A spec's branch is merged into main (fast-forward) and deleted; a new run of the same
    // spec starts from main, whose tip is that older run's last iteration commit.
    let repo = TestRepo::new();
    let store = store_at(&repo.path, "h");
    let s = spec("login");
    let mut run = store.start_run(&s, head(&repo)).expect("start");
    record(&store, &mut run, Some("a.txt"));
    record(&store, &mut run, Some("b.txt"));
    store.finish_run(&run).expect("finish");
    repo.git(&["merge", "--ff-only", "-q", "mmm/login"]);
    repo.git(&["branch", "-D", "mmm/login"]);

    let mut run = store.start_run(&s, head(&repo)).expect("start again");
    assert_eq!(run.next_iteration, 1, "a new branch starts at iteration 1");
    record(&store, &mut run, Some("c.txt"));
    store.finish_run(&run).expect("finish");
    let history = store.history(&s).expect("history");
    let numbers: Vec<u32> = history.iter().map(|i| i.n).collect();
    assert_eq!(
        numbers,
        [1],
        "the older run below the base is not this branch's history"
    );
    let detail = store.iteration(&s, 1).expect("iteration 1");
    assert_eq!(detail.iteration.commit, history[0].commit);
}
