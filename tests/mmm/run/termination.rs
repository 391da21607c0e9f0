//! Every way a loop stops, each recorded as `stop_reason` in the metrics note and as the
//! `Mmm-Status` trailer of the last iteration.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fake_anthropic::{FakeAnthropic, Reply, Rule};
use crate::support::project::{
    api_cmd, assert_clean, assert_readable, iterations, metrics, project, run_api, show, spec,
    transcript, write_file,
};

/// The gate: passes once `done.txt` exists; its failure output is computed, so that the
/// marker only reaches the prompt through the gate's output.
pub const CHECK: &str =
    "test -e done.txt && exit 0\necho \"GATE-$((6*7))-NO: done.txt is missing\"\nexit 1\n";

/// A config for the `api` agent with a shell gate, plus `extra` sections.
pub fn config(extra: &str) -> String {
    format!(
        "[agent]\nkind = \"api\"\nmax_retries = 3\n\n[validate]\ntest = \"sh check.sh\"\ntimeout = \"30s\"\n\n{extra}"
    )
}

/// The needle every prompt for spec `s` contains.
pub const NEEDLE: &str = "Make `check.sh` pass";

/// The answer that finishes the spec.
pub fn done() -> String {
    format!(
        "Creating the file.\n\n{}\n@mmm:summary created done.txt\n@mmm:complete\n",
        write_file("done.txt", "ok")
    )
}

fn stop_reason(repo: &crate::support::TestRepo, commit: &str) -> String {
    metrics(repo, "s", commit)["stop_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn complete_when_the_model_says_so_and_the_gate_passes() {
    let fake = FakeAnthropic::start(vec![Rule::new(NEEDLE, Reply::Text(done()))]);
    let repo = project(
        &config(""),
        &[("s", &spec("s", ""))],
        &[("check.sh", CHECK)],
    );
    let out = run_api(&repo, &fake, &["run", "s"]);
    assert!(out.status.success(), "{}", show(&out));
    let its = iterations(&repo, "s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "complete");
    assert_eq!(its[0].n(), 1);
    assert!(its[0].trailer("Mmm-Run").is_some());
    let m = metrics(&repo, "s", &its[0].commit);
    assert_eq!(m["stop_reason"], "complete");
    assert_eq!(m["complete_claimed"], true);
    assert_eq!(m["checks_passed"], 2, "the gate and the criterion: {m}");
    assert_eq!(m["edits"]["applied"], 1);
    assert_eq!(
        repo.git(&["show", "mmm/s:done.txt"]),
        "ok\n",
        "the edit is in the branch"
    );
    assert_eq!(fake.requests().len(), 1);
    assert_readable(&repo, "s");
    assert_clean(&repo);
    // The user's checkout is untouched.
    assert!(!repo.path.join("done.txt").exists());
}

#[test]
fn complete_claimed_but_the_gate_fails_is_not_complete() {
    let fake = FakeAnthropic::start(vec![Rule::new(
        NEEDLE,
        Reply::text("All done, trust me.\n@mmm:complete\n"),
    )]);
    let repo = project(
        &config("[loop]\nmax_iterations = 1\n"),
        &[("s", &spec("s", ""))],
        &[("check.sh", CHECK)],
    );
    let out = run_api(&repo, &fake, &["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let its = iterations(&repo, "s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "max-iterations");
    let m = metrics(&repo, "s", &its[0].commit);
    assert_eq!(m["status"], "failed");
    assert_eq!(m["complete_claimed"], true);
    assert_eq!(m["stop_reason"], "max-iterations");
    let gates = m["gates"].as_array().expect("gates");
    assert!(gates.iter().any(|g| g["passed"] == false), "{m}");
    assert_clean(&repo);
}

#[test]
fn max_iterations_stops_after_the_last_allowed_iteration() {
    // Different harmless edits each time (so that nothing looks stuck), no completion claim.
    let rule = Rule::new(NEEDLE, Reply::Text(write_file("a.txt", "1")))
        .then(Reply::Text(write_file("b.txt", "2")))
        .then(Reply::Text(write_file("c.txt", "3")))
        .then(Reply::Text(write_file("d.txt", "4")));
    let fake = FakeAnthropic::start(vec![rule]);
    let repo = project(
        &config("[loop]\nmax_iterations = 3\n"),
        &[("s", &spec("s", ""))],
        &[("check.sh", "exit 0\n")],
    );
    let out = run_api(&repo, &fake, &["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let its = iterations(&repo, "s");
    let statuses: Vec<String> = its.iter().map(|i| i.status()).collect();
    assert_eq!(statuses, ["passed", "passed", "max-iterations"]);
    assert_eq!(stop_reason(&repo, &its[2].commit), "max-iterations");
    assert_eq!(fake.requests().len(), 3, "no call beyond max_iterations");
    assert_clean(&repo);
}

#[test]
fn budget_stops_before_a_call_that_could_exceed_it() {
    // Output costs $1000 per million tokens, input and cache nothing: the smallest useful call
    // (512 output tokens) needs $0.512. The first answer is ~150 output tokens ($0.15), which
    // leaves $0.45 of $0.60: the second call must not be made.
    let answer = format!("{}\n", write_file("notes.txt", &"n".repeat(560)));
    let fake = FakeAnthropic::start(vec![Rule::new(NEEDLE, Reply::Text(answer))]);
    let repo = project(
        &config(
            "[loop]\nmax_iterations = 5\n\n[budget]\nper_spec_usd = 0.6\n\n\
             [prices.\"claude-sonnet-5-5\"]\ninput = 0\noutput = 1000\ncache_write_5m = 0\ncache_read = 0\n",
        ),
        &[("s", &spec("s", ""))],
        &[("check.sh", CHECK)],
    );
    let out = run_api(&repo, &fake, &["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "no request beyond the budget");
    let max_tokens = requests[0].json()["max_tokens"]
        .as_u64()
        .expect("max_tokens");
    assert!(
        max_tokens <= 600,
        "max_tokens is lowered to what the budget allows: {max_tokens}"
    );
    let its = iterations(&repo, "s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "budget-exceeded");
    let m = metrics(&repo, "s", &its[0].commit);
    assert_eq!(m["stop_reason"], "budget");
    let cost = m["cost_usd"].as_f64().expect("cost");
    assert!(cost > 0.1 && cost <= 0.6, "cost {cost}");

    // A second run knows what the branch spent: it stops before any call.
    let out = run_api(&repo, &fake, &["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(
        fake.requests().len(),
        1,
        "still no request beyond the budget: {}",
        show(&out)
    );
    assert_readable(&repo, "s");
    assert_clean(&repo);
}

#[test]
fn timeout_from_the_spec_front_matter() {
    let fake = FakeAnthropic::start(vec![Rule::new(NEEDLE, Reply::text("Looking.\n"))]);
    let repo = project(
        &config("[loop]\nmax_iterations = 5\n"),
        &[("s", &spec("s", "timeout = \"1s\""))],
        &[("check.sh", "sleep 2\nexit 1\n")],
    );
    let started = Instant::now();
    let out = run_api(&repo, &fake, &["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    let its = iterations(&repo, "s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "timeout");
    assert_eq!(stop_reason(&repo, &its[0].commit), "timeout");
    assert_eq!(fake.requests().len(), 1);
    assert_clean(&repo);
}

#[test]
fn stuck_on_the_same_diff() {
    // No edits at all, a passing gate and no completion claim: the same (empty) change.
    let fake = FakeAnthropic::start(vec![Rule::new(
        NEEDLE,
        Reply::text("I think it is fine as it is.\n"),
    )]);
    let repo = project(
        &config("[loop]\nmax_iterations = 5\nstuck_after = 2\n"),
        &[("s", &spec("s", ""))],
        &[("check.sh", "exit 0\n")],
    );
    let out = run_api(&repo, &fake, &["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("the same change 2 times"), "{stdout}");
    let its = iterations(&repo, "s");
    assert_eq!(its.len(), 2);
    assert_eq!(its[1].status(), "stuck");
    assert_eq!(stop_reason(&repo, &its[1].commit), "stuck");
    assert_clean(&repo);
}

#[test]
fn stuck_on_the_same_failures() {
    // A different edit each time, but the gate fails the same way.
    let rule = Rule::new(NEEDLE, Reply::Text(write_file("a.txt", "1")))
        .then(Reply::Text(write_file("b.txt", "2")))
        .then(Reply::Text(write_file("c.txt", "3")))
        .then(Reply::Text(write_file("d.txt", "4")));
    let fake = FakeAnthropic::start(vec![rule]);
    let repo = project(
        &config("[loop]\nmax_iterations = 6\nstuck_after = 3\n"),
        &[("s", &spec("s", ""))],
        &[("check.sh", CHECK)],
    );
    let out = run_api(&repo, &fake, &["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("the same failing checks 3 times"),
        "{stdout}"
    );
    let its = iterations(&repo, "s");
    let statuses: Vec<String> = its.iter().map(|i| i.status()).collect();
    assert_eq!(statuses, ["failed", "failed", "stuck"]);
    assert_eq!(stop_reason(&repo, &its[2].commit), "stuck");
    assert_clean(&repo);
}

#[test]
fn needs_review_directive_stops_for_a_human() {
    let fake = FakeAnthropic::start(vec![Rule::new(
        NEEDLE,
        Reply::text("The spec contradicts itself.\n@mmm:needs-review which file is meant?\n"),
    )]);
    let repo = project(
        &config(""),
        &[("s", &spec("s", ""))],
        &[("check.sh", CHECK)],
    );
    let out = run_api(&repo, &fake, &["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("which file is meant?"));
    let its = iterations(&repo, "s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "needs-review");
    assert_eq!(stop_reason(&repo, &its[0].commit), "needs-review");
    assert_eq!(fake.requests().len(), 1);
    assert_clean(&repo);
}

/// Waits until `path` exists (the slow gate has started).
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A project whose gate touches a marker and then sleeps; returns it and the marker.
fn slow_gate_project() -> (crate::support::TestRepo, FakeAnthropic, std::path::PathBuf) {
    let fake = FakeAnthropic::start(vec![Rule::new(
        NEEDLE,
        Reply::Text(write_file("a.txt", "1")),
    )]);
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let marker = dir.join("gate-started");
    let check = format!("touch '{}'\nsleep 2\nexit 1\n", marker.display());
    let repo = project(
        &config("[loop]\nmax_iterations = 5\n"),
        &[("s", &spec("s", ""))],
        &[("check.sh", &check)],
    );
    (repo, fake, marker)
}

fn assert_interrupted(repo: &crate::support::TestRepo, fake: &FakeAnthropic) {
    let its = iterations(repo, "s");
    assert_eq!(its.len(), 1, "the current iteration is recorded, no other");
    assert_eq!(its[0].status(), "interrupted");
    let m = metrics(repo, "s", &its[0].commit);
    assert_eq!(m["stop_reason"], "stopped");
    assert_eq!(
        repo.git(&["show", "mmm/s:a.txt"]),
        "1\n",
        "the iteration's work is kept"
    );
    assert_eq!(fake.requests().len(), 1);
    assert_clean(repo);
}

#[test]
fn git_mmm_stop_while_a_gate_runs() {
    let (repo, fake, marker) = slow_gate_project();
    let child = api_cmd(&repo, &fake)
        .args(["run", "s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&marker);
    let stop = repo.mmm_ok(&["stop", "s"]);
    assert!(stop.contains("asked the loop of `s` to stop"), "{stop}");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    assert_interrupted(&repo, &fake);
}

#[test]
fn one_sigint_stops_like_git_mmm_stop() {
    let (repo, fake, marker) = slow_gate_project();
    let child = api_cmd(&repo, &fake)
        .args(["run", "s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&marker);
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopping after the current stage"));
    assert_interrupted(&repo, &fake);
}

#[test]
fn critical_on_an_authentication_error() {
    let fake = FakeAnthropic::start(vec![Rule::new(NEEDLE, Reply::Text(done()))]);
    let repo = project(
        &config(""),
        &[("s", &spec("s", ""))],
        &[("check.sh", CHECK)],
    );
    let out = api_cmd(&repo, &fake)
        .env("ANTHROPIC_API_KEY", "sk-ant-wrong-key")
        .args(["run", "s"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(fake.requests().len(), 1, "a 401 is not retried");
    let its = iterations(&repo, "s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "error");
    let m = metrics(&repo, "s", &its[0].commit);
    assert_eq!(m["stop_reason"], "critical");
    assert!(
        m["error"].as_str().unwrap_or_default().contains("401")
            || m["error"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains("auth"),
        "{m}"
    );
    assert_clean(&repo);
}

#[test]
fn critical_on_a_spend_limit() {
    let fake = FakeAnthropic::start(vec![Rule::new(NEEDLE, Reply::spend_limit())]);
    let repo = project(
        &config(""),
        &[("s", &spec("s", ""))],
        &[("check.sh", CHECK)],
    );
    let out = run_api(&repo, &fake, &["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(fake.requests().len(), 1, "a spend limit is not retried");
    let its = iterations(&repo, "s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "error");
    let m = metrics(&repo, "s", &its[0].commit);
    assert_eq!(m["stop_reason"], "critical");
    assert!(
        m["error"]
            .as_str()
            .unwrap_or_default()
            .contains("spend limit"),
        "{m}"
    );
    assert_clean(&repo);
}

#[test]
fn critical_on_repeated_hostile_output() {
    let outside = tempfile::tempdir().expect("tempdir");
    let absolute = outside.path().join("absolute.txt");
    let hostile = [
        write_file("../escape.txt", "HOSTILE"),
        write_file(&absolute.display().to_string(), "HOSTILE"),
        write_file(".git/config", "HOSTILE"),
        write_file("link/escape.txt", "HOSTILE"),
        write_file(".github/workflows/x.yml", "HOSTILE"),
    ]
    .join("\n");
    let fake = FakeAnthropic::start(vec![Rule::new(NEEDLE, Reply::Text(hostile))]);
    let repo = project(
        &config("[loop]\nmax_iterations = 5\n"),
        &[("s", &spec("s", ""))],
        &[("check.sh", CHECK)],
    );
    std::os::unix::fs::symlink(outside.path(), repo.path.join("link")).expect("symlink");
    repo.commit_all("a symlink that leaves the repository");
    let git_config = std::fs::read_to_string(repo.path.join(".git/config")).expect("config");

    let out = run_api(&repo, &fake, &["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let its = iterations(&repo, "s");
    let statuses: Vec<String> = its.iter().map(|i| i.status()).collect();
    assert_eq!(statuses, ["failed", "error"], "critical after 2 in a row");
    let m = metrics(&repo, "s", &its[1].commit);
    assert_eq!(m["stop_reason"], "critical");
    assert_eq!(m["edits"]["refused"], 5, "{m}");
    assert_eq!(m["edits"]["applied"], 0, "{m}");
    for it in &its {
        let t = transcript(&repo, "s", &it.commit);
        let edits = t
            .iter()
            .find(|r| r["kind"] == "edits")
            .expect("an edits record");
        let refused = edits["refused"].as_array().expect("refused");
        let paths: Vec<&str> = refused.iter().filter_map(|r| r["path"].as_str()).collect();
        for p in [
            "../escape.txt",
            &absolute.display().to_string(),
            ".git/config",
            "link/escape.txt",
            ".github/workflows/x.yml",
        ] {
            assert!(paths.contains(&p), "{p} not refused: {edits}");
        }
        assert!(
            refused
                .iter()
                .all(|r| !r["reason"].as_str().unwrap_or_default().is_empty()),
            "every refusal has a reason: {edits}"
        );
    }
    // Nothing was written anywhere.
    assert!(!absolute.exists());
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("read").count(),
        0,
        "nothing written through the symlink"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path.join(".git/config")).expect("config"),
        git_config
    );
    let grep = Command::new("grep")
        .args(["-rl", "HOSTILE"])
        .arg(repo.dir.path())
        .output()
        .expect("grep");
    assert!(
        grep.stdout.is_empty(),
        "hostile content written to {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    let tree = repo.git(&["ls-tree", "-r", "--name-only", "mmm/s"]);
    assert!(!tree.contains(".github"), "{tree}");
    assert_clean(&repo);
}
