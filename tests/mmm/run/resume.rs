//! A run killed mid-way resumes: `git mmm doctor`, then `git mmm run` continues at the next
//! iteration on the same branch, with the first-parent chain intact.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::termination::{CHECK, NEEDLE, config, done};
use crate::support::TestRepo;
use crate::support::fake_anthropic::{FakeAnthropic, Reply, Rule};
use crate::support::project::{
    api_cmd, assert_clean, assert_readable, iterations, metrics, project, run_api, show, spec,
    write_file,
};

fn fake() -> FakeAnthropic {
    let rule = Rule::new(NEEDLE, Reply::Text(write_file("a.txt", "1"))).then(Reply::Text(done()));
    FakeAnthropic::start(vec![rule])
}

/// After the kill: doctor, run again, and check that iteration 2 follows iteration 1.
fn resume_and_check(repo: &TestRepo, fake: &FakeAnthropic, tip_before: &str) {
    // A killed run leaves its worktree locked by a pid that no longer runs: doctor prunes it.
    let doctor = repo.mmm(&["doctor"]);
    assert!(doctor.status.success(), "{}", show(&doctor));
    let out = run_api(repo, fake, &["run", "s"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resuming"),
        "{}",
        show(&out)
    );
    let its = iterations(repo, "s");
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
    let fake = fake();
    let repo = project(
        &config(""),
        &[("s", &spec("s", ""))],
        &[("check.sh", CHECK)],
    );
    let out = api_cmd(&repo, &fake)
        .env("MMM_KILL_AT", "after-branch")
        .args(["run", "s"])
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "the kill point aborts: {}",
        show(&out)
    );
    let its = iterations(&repo, "s");
    assert_eq!(its.len(), 1, "iteration 1 reached the branch");
    assert_eq!(its[0].status(), "failed");
    resume_and_check(&repo, &fake, &its[0].commit);
}

#[test]
fn resume_after_sigkill_once_iteration_1_is_recorded() {
    let fake = fake();
    // A slow gate, so that the kill lands while iteration 2 is in flight.
    let check = format!("sleep 1\n{CHECK}");
    let repo = project(
        &config(""),
        &[("s", &spec("s", ""))],
        &[("check.sh", &check)],
    );
    let mut child = api_cmd(&repo, &fake)
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
    let its = iterations(&repo, "s");
    assert_eq!(
        its.len(),
        1,
        "only iteration 1 was recorded before the kill"
    );
    resume_and_check(&repo, &fake, &its[0].commit);
}
