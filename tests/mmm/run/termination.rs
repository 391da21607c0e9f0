//! Every way a loop stops, each recorded as `stop_reason` in the metrics note and as the
//! `Mmm-Status` trailer of the last iteration.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fake_anthropic::{Reply, Rule};
use crate::support::project::{assert_clean, assert_readable, show, transcript, write_file};
use crate::support::scenario::{NEEDLE, Project, Scenario, done};

fn stop_reason(p: &Project, n: usize) -> String {
    p.metrics("s")[n]["stop_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn complete_when_the_model_says_so_and_the_gate_passes() {
    let ran = Scenario::spec_s()
        .answer(NEEDLE, Reply::Text(done()))
        .run(&["run", "s"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let its = ran.iterations("s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "complete");
    assert_eq!(its[0].n(), 1);
    assert!(its[0].trailer("Mmm-Run").is_some());
    let m = &ran.metrics("s")[0];
    assert_eq!(m["stop_reason"], "complete");
    assert_eq!(m["complete_claimed"], true);
    assert_eq!(m["checks_passed"], 2, "the gate and the criterion: {m}");
    assert_eq!(m["edits"]["applied"], 1);
    assert_eq!(
        ran.repo.git(&["show", "mmm/s:done.txt"]),
        "ok\n",
        "the edit is in the branch"
    );
    assert_eq!(ran.fake.requests().len(), 1);
    assert_readable(&ran.repo, "s");
    assert_clean(&ran.repo);
    // The user's checkout is untouched.
    assert!(!ran.repo.path.join("done.txt").exists());
}

#[test]
fn complete_claimed_but_the_gate_fails_is_not_complete() {
    let ran = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 1\n")
        .answer(NEEDLE, Reply::text("All done, trust me.\n@mmm:complete\n"))
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    let its = ran.iterations("s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "max-iterations");
    let m = &ran.metrics("s")[0];
    assert_eq!(m["status"], "failed");
    assert_eq!(m["complete_claimed"], true);
    assert_eq!(m["stop_reason"], "max-iterations");
    let gates = m["gates"].as_array().expect("gates");
    assert!(gates.iter().any(|g| g["passed"] == false), "{m}");
    assert_clean(&ran.repo);
}

#[test]
fn max_iterations_stops_after_the_last_allowed_iteration() {
    // Different harmless edits each time (so that nothing looks stuck), no completion claim.
    let rule = Rule::new(NEEDLE, Reply::Text(write_file("a.txt", "1")))
        .then(Reply::Text(write_file("b.txt", "2")))
        .then(Reply::Text(write_file("c.txt", "3")))
        .then(Reply::Text(write_file("d.txt", "4")));
    let ran = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 3\n")
        .check("exit 0\n")
        .rule(rule)
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    assert_eq!(ran.statuses("s"), ["passed", "passed", "max-iterations"]);
    assert_eq!(stop_reason(&ran, 2), "max-iterations");
    assert_eq!(
        ran.fake.requests().len(),
        3,
        "no call beyond max_iterations"
    );
    assert_clean(&ran.repo);
}

#[test]
fn budget_stops_before_a_call_that_could_exceed_it() {
    // Output costs $1000 per million tokens, input and cache nothing: the smallest useful call
    // (512 output tokens) needs $0.512. The first answer is ~150 output tokens ($0.15), which
    // leaves $0.45 of $0.60: the second call must not be made.
    let answer = format!("{}\n", write_file("notes.txt", &"n".repeat(560)));
    let ran = Scenario::spec_s()
        .config(
            "[loop]\nmax_iterations = 5\n\n[budget]\nper_spec_usd = 0.6\n\n\
             [prices.\"claude-sonnet-5-5\"]\ninput = 0\noutput = 1000\ncache_write_5m = 0\ncache_read = 0\n",
        )
        .answer(NEEDLE, Reply::Text(answer))
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    let requests = ran.fake.requests();
    assert_eq!(requests.len(), 1, "no request beyond the budget");
    let max_tokens = requests[0].json()["max_tokens"]
        .as_u64()
        .expect("max_tokens");
    assert!(
        max_tokens <= 600,
        "max_tokens is lowered to what the budget allows: {max_tokens}"
    );
    let its = ran.iterations("s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "budget-exceeded");
    let m = &ran.metrics("s")[0];
    assert_eq!(m["stop_reason"], "budget");
    let cost = m["cost_usd"].as_f64().expect("cost");
    assert!(cost > 0.1 && cost <= 0.6, "cost {cost}");

    // A second run knows what the branch spent: it stops before any call.
    let out = ran.run(&["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(
        ran.fake.requests().len(),
        1,
        "still no request beyond the budget: {}",
        show(&out)
    );
    assert_readable(&ran.repo, "s");
    assert_clean(&ran.repo);
}

#[test]
fn timeout_from_the_spec_front_matter() {
    let project = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 5\n")
        .spec("s", "timeout = \"1s\"")
        .check("sleep 2\nexit 1\n")
        .answer(NEEDLE, Reply::text("Looking.\n"))
        .build();
    let started = Instant::now();
    let out = project.run(&["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    let its = project.iterations("s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "timeout");
    assert_eq!(stop_reason(&project, 0), "timeout");
    assert_eq!(project.fake.requests().len(), 1);
    assert_clean(&project.repo);
}

#[test]
fn stuck_on_the_same_diff() {
    // No edits at all, a passing gate and no completion claim: the same (empty) change.
    let ran = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 5\nstuck_after = 2\n")
        .check("exit 0\n")
        .answer(NEEDLE, Reply::text("I think it is fine as it is.\n"))
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    let stdout = ran.stdout();
    assert!(stdout.contains("the same change 2 times"), "{stdout}");
    let its = ran.iterations("s");
    assert_eq!(its.len(), 2);
    assert_eq!(its[1].status(), "stuck");
    assert_eq!(stop_reason(&ran, 1), "stuck");
    assert_clean(&ran.repo);
}

#[test]
fn the_last_allowed_iteration_ends_on_max_iterations_even_when_stuck() {
    // The same empty change twice with `stuck_after = 2` (the default) and `max_iterations =
    // 2`: the limit is what ended the run; being stuck is told in the detail.
    let ran = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 2\n")
        .check("exit 0\n")
        .answer(NEEDLE, Reply::text("I think it is fine as it is.\n"))
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    let its = ran.iterations("s");
    assert_eq!(its.len(), 2);
    assert_eq!(its[1].status(), "max-iterations");
    assert_eq!(stop_reason(&ran, 1), "max-iterations");
    let stdout = ran.stdout();
    assert!(
        stdout.contains(
            "iteration 2   2 iterations of this spec revision (max_iterations = 2); the same \
             change 2 times in a row"
        ),
        "{stdout}"
    );
    assert_clean(&ran.repo);
}

#[test]
fn stuck_on_the_same_failures() {
    // A different edit each time, but the gate fails the same way.
    let rule = Rule::new(NEEDLE, Reply::Text(write_file("a.txt", "1")))
        .then(Reply::Text(write_file("b.txt", "2")))
        .then(Reply::Text(write_file("c.txt", "3")))
        .then(Reply::Text(write_file("d.txt", "4")));
    let ran = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 6\nstuck_after = 3\n")
        .rule(rule)
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    let stdout = ran.stdout();
    assert!(
        stdout.contains("the same failing checks 3 times"),
        "{stdout}"
    );
    assert_eq!(ran.statuses("s"), ["failed", "failed", "stuck"]);
    assert_eq!(stop_reason(&ran, 2), "stuck");
    assert_clean(&ran.repo);
}

#[test]
fn needs_review_directive_stops_for_a_human() {
    let ran = Scenario::spec_s()
        .answer(
            NEEDLE,
            Reply::text("The spec contradicts itself.\n@mmm:needs-review which file is meant?\n"),
        )
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    assert!(ran.stdout().contains("which file is meant?"));
    let its = ran.iterations("s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "needs-review");
    assert_eq!(stop_reason(&ran, 0), "needs-review");
    assert_eq!(ran.fake.requests().len(), 1);
    assert_clean(&ran.repo);
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
fn slow_gate_project() -> (Project, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let marker = dir.join("gate-started");
    let check = format!("touch '{}'\nsleep 2\nexit 1\n", marker.display());
    let project = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 5\n")
        .check(&check)
        .answer(NEEDLE, Reply::Text(write_file("a.txt", "1")))
        .build();
    (project, marker)
}

fn assert_interrupted(p: &Project) {
    let its = p.iterations("s");
    assert_eq!(its.len(), 1, "the current iteration is recorded, no other");
    assert_eq!(its[0].status(), "interrupted");
    let m = &p.metrics("s")[0];
    assert_eq!(m["stop_reason"], "stopped");
    assert_eq!(
        p.repo.git(&["show", "mmm/s:a.txt"]),
        "1\n",
        "the iteration's work is kept"
    );
    assert_eq!(p.fake.requests().len(), 1);
    assert_clean(&p.repo);
}

#[test]
fn git_mmm_stop_while_a_gate_runs() {
    let (project, marker) = slow_gate_project();
    let child = project
        .cmd()
        .args(["run", "s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&marker);
    let stop = project.repo.mmm_ok(&["stop", "s"]);
    assert!(stop.contains("asked the loop of `s` to stop"), "{stop}");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    assert_interrupted(&project);
}

#[test]
fn one_sigint_stops_like_git_mmm_stop() {
    let (project, marker) = slow_gate_project();
    let child = project
        .cmd()
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
    assert_interrupted(&project);
}

#[test]
fn critical_on_an_authentication_error() {
    let project = Scenario::spec_s()
        .answer(NEEDLE, Reply::Text(done()))
        .build();
    let out = project
        .cmd()
        .env("ANTHROPIC_API_KEY", "sk-ant-wrong-key")
        .args(["run", "s"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(project.fake.requests().len(), 1, "a 401 is not retried");
    let its = project.iterations("s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "error");
    let m = &project.metrics("s")[0];
    assert_eq!(m["stop_reason"], "error");
    assert!(
        m["error"].as_str().unwrap_or_default().contains("401")
            || m["error"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains("auth"),
        "{m}"
    );
    assert_clean(&project.repo);
}

#[test]
fn critical_on_a_spend_limit() {
    let ran = Scenario::spec_s()
        .answer(NEEDLE, Reply::spend_limit())
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    assert_eq!(ran.fake.requests().len(), 1, "a spend limit is not retried");
    let its = ran.iterations("s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "error");
    let m = &ran.metrics("s")[0];
    assert_eq!(m["stop_reason"], "error");
    assert!(
        m["error"]
            .as_str()
            .unwrap_or_default()
            .contains("spend limit"),
        "{m}"
    );
    assert_clean(&ran.repo);
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
    let project = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 5\n")
        .answer(NEEDLE, Reply::Text(hostile))
        .build();
    let repo = &project.repo;
    std::os::unix::fs::symlink(outside.path(), repo.path.join("link")).expect("symlink");
    repo.commit_all("a symlink that leaves the repository");
    let git_config = std::fs::read_to_string(repo.path.join(".git/config")).expect("config");

    let out = project.run(&["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let its = project.iterations("s");
    let statuses: Vec<String> = its.iter().map(|i| i.status()).collect();
    assert_eq!(statuses, ["failed", "error"], "critical after 2 in a row");
    let m = &project.metrics("s")[1];
    assert_eq!(m["stop_reason"], "error");
    assert_eq!(m["edits"]["refused"], 5, "{m}");
    assert_eq!(m["edits"]["applied"], 0, "{m}");
    for it in &its {
        let t = transcript(repo, "s", &it.commit);
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
    assert_clean(repo);
}
