//! A run killed mid-way resumes: `git mmm doctor`, then `git mmm run` continues at the next
//! iteration on the same branch, with the first-parent chain intact.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::TestRepo;
use crate::support::fake_anthropic::{Reply, Rule};
use crate::support::project::{assert_clean, assert_readable, metrics, show, write_file};
use crate::support::scenario::{CHECK, NEEDLE, Project, Scenario, done};

/// Spec `s` whose first answer writes a file and whose second completes it.
fn two_answers() -> Scenario {
    let rule = Rule::new(NEEDLE, Reply::Text(write_file("a.txt", "1"))).then(Reply::Text(done()));
    Scenario::spec_s().rule(rule)
}

/// After the kill: doctor, run again, and check that iteration 2 follows iteration 1.
fn resume_and_check(project: &Project, tip_before: &str) {
    let repo = &project.repo;
    // A killed run leaves its worktree locked by a pid that no longer runs: doctor prunes it.
    let doctor = repo.mmm(&["doctor"]);
    assert!(doctor.status.success(), "{}", show(&doctor));
    let out = project.run(&["run", "s"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resuming"),
        "{}",
        show(&out)
    );
    let its = project.iterations("s");
    let ns: Vec<u32> = its.iter().map(|i| i.n()).collect();
    assert_eq!(ns, [1, 2]);
    assert_eq!(its[0].commit, tip_before, "iteration 1 is kept as it was");
    assert_eq!(its[1].status(), "complete");
    assert_eq!(
        repo.git(&["rev-parse", &format!("{}^", its[1].commit)])
            .trim(),
        its[0].commit,
        "first parent of iteration 2 is iteration 1"
    );
    assert_ne!(
        its[0].trailer("Mmm-Run"),
        its[1].trailer("Mmm-Run"),
        "a new run"
    );
    assert_eq!(metrics(repo, "s", &its[0].commit)["iteration"], 1);
    assert_eq!(repo.git(&["show", "mmm/s:a.txt"]), "1\n", "nothing lost");
    assert_eq!(repo.git(&["show", "mmm/s:done.txt"]), "ok\n");
    assert_readable(repo, "s");
    assert_clean(repo);
}

#[test]
fn resume_after_the_store_is_killed_after_the_branch_update() {
    let project = two_answers().build();
    let out = project
        .cmd()
        .env("MMM_KILL_AT", "after-branch")
        .args(["run", "s"])
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "the kill point aborts: {}",
        show(&out)
    );
    let its = project.iterations("s");
    assert_eq!(its.len(), 1, "iteration 1 reached the branch");
    assert_eq!(its[0].status(), "failed");
    resume_and_check(&project, &its[0].commit);
}

#[test]
fn resume_after_sigkill_once_iteration_1_is_recorded() {
    // A slow gate, so that the kill lands while iteration 2 is in flight.
    let check = format!("sleep 1\n{CHECK}");
    let project = two_answers().check(&check).build();
    let mut child = project
        .cmd()
        .args(["run", "s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.contains(r#""event":"recorded""#) {
            break;
        }
    }
    let kill = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = child.wait().expect("wait");
    assert!(!status.success());
    let its = project.iterations("s");
    assert_eq!(
        its.len(),
        1,
        "only iteration 1 was recorded before the kill"
    );
    resume_and_check(&project, &its[0].commit);
}

/// The wip ref of spec `s`, once one exists (polled for up to `within`).
fn wait_for_wip(repo: &TestRepo, within: std::time::Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        let refs = repo.git(&["for-each-ref", "--format=%(refname)", "refs/mmm/s/wip/"]);
        if let Some(name) = refs.lines().next() {
            return Some(name.to_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// The records of the transcript in a wip checkpoint.
fn checkpoint_records(repo: &TestRepo, wip: &str) -> Vec<serde_json::Value> {
    repo.git(&["show", &format!("{wip}:transcript.jsonl")])
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Starts `cmd` (a `git mmm run`), waits until a checkpoint of the iteration in flight holds a
/// `response` record (or 20 s pass), kills the run, and returns the wip ref (if one appeared)
/// with the records of its last checkpoint.
fn checkpoint_of_a_killed_run(
    repo: &TestRepo,
    mut cmd: Command,
) -> (Option<String>, Vec<serde_json::Value>) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let wip = wait_for_wip(repo, std::time::Duration::from_secs(20));
    // The first checkpoint may predate the answer (or its first streamed delta).
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while let Some(w) = &wip {
        records = checkpoint_records(repo, w);
        if records.iter().any(|r| r["kind"] == "response") || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    kill(&mut child);
    (wip, records)
}

/// Kills `child` with SIGKILL and reaps it.
fn kill(child: &mut std::process::Child) {
    let status = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = child.wait();
}

#[test]
fn a_long_model_call_is_checkpointed_with_the_text_streamed_so_far() {
    // The answer stalls after its first delta: the loop has streamed part of it for longer
    // than `checkpoint_after`, so the wip ref must hold the prompt and that part.
    const SECRET: &str = "tok-5151-streamed-secret";
    let answer = format!("STREAMED-FIRST token {SECRET} and then {}", done());
    let project = Scenario::spec_s()
        .config("[loop]\ncheckpoint_after = \"300ms\"\n")
        .answer(
            NEEDLE,
            Reply::Pause {
                after_deltas: 1,
                pause_ms: 30_000,
                text: answer,
            },
        )
        .build();
    let repo = &project.repo;
    let mut cmd = project.cmd();
    cmd.env("MY_SERVICE_TOKEN", SECRET).args(["run", "s"]);
    let (wip, records) = checkpoint_of_a_killed_run(repo, cmd);
    let wip = wip.expect("a checkpoint was written during the long call");
    assert_eq!(records[0]["kind"], "prompt", "{records:?}");
    let partial = records
        .iter()
        .find(|r| r["kind"] == "response")
        .expect("the streamed text is checkpointed");
    assert_eq!(partial["partial"], true);
    let text = partial["text"].as_str().expect("text");
    assert!(text.starts_with("STREAMED-FIRST"), "{text}");
    assert!(
        !text.contains(SECRET) && text.contains("[redacted:MY_SERVICE_TOKEN]"),
        "the streamed text is redacted before it is written: {text}"
    );
    assert!(
        !text.contains("@mmm:complete"),
        "only what was streamed: {text}"
    );
    assert!(
        !repo
            .git_output(&["rev-parse", "--verify", "-q", "refs/heads/mmm/s"])
            .status
            .success(),
        "nothing was recorded"
    );
    // doctor sees from the worktree's lock that the run's process is gone, and moves its
    // checkpoints to the archive: nothing is lost.
    let doctor = repo.mmm(&["doctor"]);
    assert!(doctor.status.success(), "{}", show(&doctor));
    assert!(
        String::from_utf8_lossy(&doctor.stdout).contains("no longer runs"),
        "{}",
        show(&doctor)
    );
    assert!(
        repo.git(&["for-each-ref", "refs/mmm/s/wip/"]).is_empty(),
        "the wip ref {wip} was archived"
    );
    let archived = repo.git(&["log", "--format=%H", "refs/mmm/s/archive"]);
    let kept = repo
        .git(&["rev-list", "refs/mmm/s/archive"])
        .lines()
        .any(|c| {
            repo.git_output(&["show", &format!("{c}:transcript.jsonl")])
                .status
                .success()
                && repo
                    .git(&["show", &format!("{c}:transcript.jsonl")])
                    .contains("STREAMED-FIRST")
        });
    assert!(
        kept,
        "the checkpoint is reachable from the archive:\n{archived}"
    );
    assert_clean(repo);
}

#[test]
fn slow_gates_are_checkpointed_with_the_whole_answer() {
    let check = format!("sleep 30\n{CHECK}");
    let project = Scenario::spec_s()
        .config("[loop]\ncheckpoint_after = \"300ms\"\n")
        .check(&check)
        .answer(NEEDLE, Reply::Text(done()))
        .build();
    let mut cmd = project.cmd();
    cmd.args(["run", "s"]);
    let (wip, records) = checkpoint_of_a_killed_run(&project.repo, cmd);
    assert!(wip.is_some(), "a checkpoint was written while the gate ran");
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(&kinds[..2], ["prompt", "response"], "{records:?}");
    let response = &records[1];
    assert!(
        response.get("partial").is_none(),
        "the whole answer: {response}"
    );
    assert!(
        response["text"]
            .as_str()
            .unwrap_or_default()
            .contains("@mmm:complete"),
        "{response}"
    );
}

#[test]
fn quick_iterations_write_no_checkpoint() {
    let ran = two_answers()
        .config("[loop]\ncheckpoint_after = \"20s\"\n")
        .run(&["run", "s", "--json"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let finished = crate::support::project::events(&ran.out)
        .into_iter()
        .find(|e| e["event"] == "finished")
        .expect("a finished event");
    assert_eq!(finished["checkpoints"], 0, "{finished}");
    assert_eq!(ran.iterations("s").len(), 2);
    assert_clean(&ran.repo);
}
