//! Regression tests of issue 11 ("reliability under torture"): each reproduces a defect the
//! kill -9 and hostile-input rounds found, through the real binary and plain git.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::support::fake_anthropic::Reply;
use crate::support::project::{assert_clean, show};
use crate::support::scenario::{NEEDLE, Project, Scenario, done};

/// Spec `s`, answered at once with the answer that completes it.
fn finishing() -> Project {
    Scenario::spec_s()
        .answer(NEEDLE, Reply::Text(done()))
        .build()
}

fn git_dir(project: &Project) -> PathBuf {
    project.repo.path.join(".git")
}

/// A 0-byte lock file as `kill -9` leaves it, `age` old.
fn stale_lock(project: &Project, reference: &str, age: Duration) -> PathBuf {
    let path = git_dir(project).join(format!("{reference}.lock"));
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let f = std::fs::File::create(&path).expect("lock file");
    f.set_modified(SystemTime::now() - age).expect("age it");
    path
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_stale_ref_lock_stops_run_before_the_agent_and_doctor_removes_it() {
    let project = finishing();
    let lock = stale_lock(&project, "refs/heads/mmm/s", Duration::from_secs(120));
    let started = std::time::Instant::now();
    let out = project.run(&["run", "s"]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("s.lock"), "names the lock: {err}");
    assert!(err.contains("git mmm doctor"), "says what to do: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no 200 retries first"
    );
    assert!(
        project.fake.requests().is_empty(),
        "the agent was not called for an iteration that cannot be recorded"
    );
    let notes = project
        .repo
        .git(&["for-each-ref", "refs/notes/mmm", "refs/mmm"]);
    assert_eq!(notes, "", "no orphan commit, no note, no wip ref");

    let doctor = project.repo.mmm(&["doctor"]);
    assert!(doctor.status.success(), "{}", show(&doctor));
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        said.contains("s.lock") && said.contains("repaired: remove"),
        "doctor says it removed the lock: {said}"
    );
    assert!(!lock.exists());

    let out = project.run(&["run", "s"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(project.statuses("s"), ["complete"]);
    assert_clean(&project.repo);
}

#[test]
fn a_young_lock_is_reported_not_removed() {
    let project = finishing();
    let lock = stale_lock(&project, "refs/heads/mmm/s", Duration::ZERO);
    let doctor = project.repo.mmm(&["doctor"]);
    assert!(doctor.status.success(), "{}", show(&doctor));
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(said.contains("may be writing it now"), "{said}");
    assert!(lock.exists(), "a lock that may be in use stays");
}

#[test]
fn a_branch_named_mmm_is_a_name_conflict_not_contention() {
    let project = finishing();
    project.repo.git(&["branch", "mmm"]);
    let started = std::time::Instant::now();
    let out = project.run(&["run", "s"]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refs/heads/mmm exists") && err.contains("git branch -m mmm"),
        "says what is wrong and what to do: {err}"
    );
    assert!(!err.contains("other writers"), "not lock contention: {err}");
    assert!(started.elapsed() < Duration::from_secs(4), "no retries");
    assert!(project.fake.requests().is_empty(), "no call paid for");
}

#[test]
fn doctor_runs_every_repair_and_reports_each_failure() {
    let project = finishing();
    // Killed between the notes and the branch: an orphan with notes, and a locked worktree of a
    // dead process.
    let out = project
        .cmd()
        .env("MMM_KILL_AT", "after-metrics-note")
        .args(["run", "s"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    // Then the user makes a branch `mmm`: the orphan's branch cannot be created.
    let refs = project
        .repo
        .git(&["for-each-ref", "--format=%(refname)", "refs/heads/"]);
    assert!(!refs.contains("refs/heads/mmm/"), "{refs}");
    std::fs::remove_dir_all(git_dir(&project).join("refs/heads/mmm")).ok();
    project.repo.git(&["branch", "mmm"]);

    let doctor = project.repo.mmm(&["doctor"]);
    assert!(
        !doctor.status.success(),
        "a repair failed: {}",
        show(&doctor)
    );
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        said.contains("could not s: keep orphaned iterations")
            && said.contains("git branch -m mmm"),
        "the failure, with what to do: {said}"
    );
    assert!(
        said.contains("repaired: prune worktree"),
        "the worktree was pruned all the same: {said}"
    );
    let list = project.repo.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(list.matches("worktree ").count(), 1, "{list}");
}

#[test]
fn a_users_own_branch_mmm_spec_is_refused() {
    let project = finishing();
    project.repo.git(&["branch", "mmm/s"]);
    let tip = project.repo.git(&["rev-parse", "mmm/s"]);
    let out = project.run(&["run", "s"]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is not mmm's") && err.contains("git branch -m mmm/s"),
        "refuses and says how to rename it: {err}"
    );
    assert!(
        err.contains("`id`"),
        "or how to point the spec elsewhere: {err}"
    );
    assert_eq!(project.repo.git(&["rev-parse", "mmm/s"]), tip, "untouched");
    assert!(project.fake.requests().is_empty());
}

#[test]
fn a_second_run_of_a_spec_refuses_and_names_the_first() {
    let project = finishing();
    // The first run, held by this process (alive) through the library.
    let store = mmm::store::Store::open(
        &project.repo.path,
        mmm::store::StoreOptions::new(
            std::sync::Arc::new(mmm::clock::SystemClock),
            std::sync::Arc::new(mmm::clock::UlidGen),
        ),
    )
    .expect("store");
    let spec = mmm::spec::SpecId::new("s").expect("id");
    let claim = store.claim(&spec, "01FIRSTRUN").expect("claim");
    let out = project.run(&["run", "s"]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    let me = std::process::id().to_string();
    assert!(
        err.contains("already being run")
            && err.contains(&format!("pid {me}"))
            && err.contains(&mmm::store::host_name())
            && err.contains("01FIRSTRUN")
            && err.contains(&claim.holder().started),
        "names the running one (pid, host, start): {err}"
    );
    assert!(
        project.fake.requests().is_empty(),
        "the model was not called"
    );
    drop(claim);

    // A holder that died (its file left, its lock gone with it) does not block.
    let runs = git_dir(&project).join("mmm").join("runs");
    std::fs::write(
        runs.join("s.json"),
        r#"{"spec":"s","pid":999999999,"host":"h","started":"then","run":"DEAD"}"#,
    )
    .expect("dead run file");
    let out = project.run(&["run", "s"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(project.statuses("s"), ["complete"]);
    assert!(
        !runs.join("s.json").exists(),
        "a finished run removes its file"
    );
}

#[test]
fn a_kill_after_the_snapshot_leaves_fsck_strict_clean() {
    use crate::support::project::write_file;
    let project = Scenario::spec_s()
        .answer(
            NEEDLE,
            Reply::Text(write_file("new.txt", "a blob only in memory\n")),
        )
        .build();
    let out = project
        .cmd()
        .env("MMM_KILL_AT", "after-snapshot")
        .args(["run", "s"])
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "the kill point aborts: {}",
        show(&out)
    );
    let list = project.repo.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(
        list.matches("worktree ").count(),
        2,
        "the killed run's worktree is still there: {list}"
    );
    // Its index names only objects on disk.
    project.repo.assert_fsck();
    let doctor = project.repo.mmm(&["doctor"]);
    assert!(doctor.status.success(), "{}", show(&doctor));
    project.repo.assert_fsck();
}

/// Every `mmm-prompt.md` below `dir`.
fn prompt_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(prompt_files(&p));
        } else if p.file_name().is_some_and(|n| n == "mmm-prompt.md") {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_kill_during_a_command_agent_call_leaves_its_prompt_file_where_doctor_removes_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let tools = tempfile::tempdir().expect("tempdir");
    let agent = tools.path().join("agent.sh");
    std::fs::write(&agent, "#!/bin/sh\nexec sleep 5\n").expect("script");
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tmp = tools.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let project = Scenario::spec_s()
        .raw_config(&format!(
            "[agent]\nkind = \"command\"\ncommand = \"{} {{prompt_file}}\"\n\n[validate]\ntest = \"sh check.sh\"\n",
            agent.display()
        ))
        .build();
    let mut child = project
        .repo
        .mmm_cmd()
        .env("TMPDIR", &tmp)
        .args(["run", "s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mmm_tmp = git_dir(&project).join("mmm").join("tmp");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while prompt_files(&mmm_tmp).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        prompt_files(&mmm_tmp).len(),
        1,
        "the prompt file is under .git/mmm/tmp/"
    );
    let kill = std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let _ = child.wait();
    assert_eq!(
        prompt_files(&tmp),
        Vec::<PathBuf>::new(),
        "nothing in $TMPDIR"
    );

    let doctor = project.repo.mmm(&["doctor"]);
    assert!(doctor.status.success(), "{}", show(&doctor));
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        said.contains("temporary file of an mmm process that no longer runs"),
        "{said}"
    );
    assert_eq!(
        prompt_files(&mmm_tmp),
        Vec::<PathBuf>::new(),
        "doctor removed it"
    );
}

/// `git mmm run` in a project made by `scenario` fails before any call, and says `words`.
fn refused(scenario: Scenario, args: &[&str], words: &[&str]) {
    let project = scenario.answer(NEEDLE, Reply::Text(done())).build();
    let out = project.run(args);
    assert!(!out.status.success(), "accepted: {}", show(&out));
    let err = stderr(&out);
    for w in words {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    assert!(project.fake.requests().is_empty(), "no call");
    assert_eq!(project.repo.git(&["for-each-ref", "refs/heads/mmm"]), "");
}

#[test]
fn hidden_spec_files_are_reported_not_ignored() {
    let spec = crate::support::project::spec("hidden", "");
    let project = Scenario::spec_s()
        .file("specs/...md", &spec)
        .file("specs/..dotdot.md", &spec)
        .answer(NEEDLE, Reply::Text(done()))
        .build();
    // `specs` lists them as problems and fails.
    let out = project.repo.mmm(&["specs"]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    for w in ["specs/...md", "specs/..dotdot.md", "hidden", "rename it"] {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    // `run` of every spec says so too (and runs the sound ones, as for any broken spec).
    let out = project.run(&["run"]);
    let err = stderr(&out);
    for w in ["specs/...md", "specs/..dotdot.md", "hidden"] {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
}

#[test]
fn an_absurd_max_iterations_is_an_error() {
    refused(
        Scenario::spec_s().config("[loop]\nmax_iterations = 9223372036854775807\n"),
        &["run", "s"],
        &["max_iterations", "from 1 to 10000"],
    );
    refused(
        Scenario::spec_s(),
        &["run", "s", "--max-iterations", "4000000000"],
        &["from 1 to 10000"],
    );
    refused(
        Scenario::spec_s().spec("s", "max_iterations = 4000000000"),
        &["run", "s"],
        &["from 1 to 10000"],
    );
}

#[test]
fn a_specs_dir_outside_the_repository_is_an_error() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        outside.path().join("s.md"),
        crate::support::project::spec("s", ""),
    )
    .expect("spec outside");
    refused(
        Scenario::spec_s().config(&format!(
            "[specs]\ndir = \"{}\"\n",
            outside.path().display()
        )),
        &["run", "s"],
        &["absolute path", "inside the repository"],
    );
    refused(
        Scenario::spec_s().config("[specs]\ndir = \"../elsewhere\"\n"),
        &["run", "s"],
        &["climbs out of it"],
    );
}
