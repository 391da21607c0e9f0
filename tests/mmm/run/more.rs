//! Checkpoints, several specs with `depends_on`, commands the model asks for, and token
//! budgets, through `git mmm run`.

use crate::support::fake_anthropic::{Reply, Rule};
use crate::support::project::{assert_clean, iterations, show, transcript};
use crate::support::scenario::{CHECK, NEEDLE, Scenario, done};

#[test]
fn a_checkpoint_after_each_iteration_pauses_and_the_next_run_continues() {
    let ran = Scenario::spec_s()
        .config("[loop]\nstuck_after = 9\n\n[[checkpoints]]\nafter = \"iteration\"\n")
        .answer(NEEDLE, Reply::text("Looking.\n"))
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    let its = ran.iterations("s");
    assert_eq!(its.len(), 1, "the loop paused after one iteration");
    assert_eq!(its[0].status(), "checkpoint");
    let m = &ran.metrics("s")[0];
    assert_eq!(m["stop_reason"], "checkpoint");
    assert!(
        ran.stdout().contains("checkpoint"),
        "run reports the checkpoint: {}",
        ran.show()
    );
    // Running again is the approval: the loop continues at iteration 2.
    let out = ran.run(&["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let its = ran.iterations("s");
    assert_eq!(its.len(), 2);
    assert_eq!(its[1].n(), 2);
    assert_clean(&ran.repo);
}

#[test]
fn a_checkpoint_after_completion_keeps_the_spec_complete() {
    let ran = Scenario::spec_s()
        .config("[[checkpoints]]\nafter = \"complete\"\n")
        .answer(NEEDLE, Reply::Text(done()))
        .run(&["run", "s"]);
    assert_eq!(
        ran.code(),
        Some(1),
        "waiting for a human is not done: {}",
        ran.show()
    );
    let its = ran.iterations("s");
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].status(), "complete");
    let m = &ran.metrics("s")[0];
    assert_eq!(m["stop_reason"], "checkpoint");
    assert!(m["decisions"].to_string().contains("checkpoint"), "{m}");
}

#[test]
fn specs_run_in_dependency_order_and_wait_for_their_dependencies() {
    // `app` depends on `lib`. The model completes `lib` only.
    let lib = "+++\ndepends_on = []\n+++\n\n# lib\n\n## Objective\n\nBuild the lib part.\n\n## Acceptance criteria\n\n- done.txt exists. verify: `test -e done.txt`\n";
    let app = "+++\ndepends_on = [\"lib\"]\n+++\n\n# app\n\n## Objective\n\nBuild the app part.\n\n## Acceptance criteria\n\n- app.txt exists. verify: `test -e app.txt`\n";
    let project = || {
        Scenario::new()
            .raw_config("[agent]\nkind = \"api\"\n\n[loop]\nmax_iterations = 1\n")
            .spec_text("app", app)
            .spec_text("lib", lib)
    };
    let ran = project()
        .answer("Build the lib part", Reply::Text(done()))
        .answer("Build the app part", Reply::text("Not yet.\n"))
        .run(&["run"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    let bodies: Vec<String> = ran.fake.requests().iter().map(|r| r.body.clone()).collect();
    assert!(bodies[0].contains("Build the lib part"), "lib runs first");
    assert!(bodies[1].contains("Build the app part"), "then app");
    assert_eq!(ran.iterations("lib")[0].status(), "complete");
    // The app's prompt names the completed dependency.
    assert!(
        bodies[1].contains("lib"),
        "the dependency is in the app's context"
    );

    // With `lib` incomplete, `app` waits and makes no call.
    let ran = project()
        .answer("Build", Reply::text("Not yet.\n"))
        .run(&["run"]);
    assert_eq!(ran.code(), Some(1));
    assert_eq!(
        ran.fake.requests().len(),
        1,
        "only lib was asked: {}",
        ran.show()
    );
    assert!(ran.stderr().contains("waiting for lib"), "{}", ran.show());
    assert!(
        ran.repo
            .git_output(&["rev-parse", "--verify", "mmm/app"])
            .status
            .code()
            != Some(0)
    );
    assert_clean(&ran.repo);
}

#[test]
fn allowed_commands_run_and_others_are_refused() {
    let answer = "Checking.\n@mmm:run echo hello-from-command\n@mmm:run rm -rf check.sh\n";
    let ran = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 1\n\n[commands]\nallow = [\"echo *\"]\n")
        .answer(NEEDLE, Reply::text(answer))
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    let its = ran.iterations("s");
    let commands: Vec<_> = transcript(&ran.repo, "s", &its[0].commit)
        .into_iter()
        .filter(|r| r["kind"] == "command")
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert_eq!(commands[0]["allowed"], true);
    assert_eq!(commands[0]["stdout"], "hello-from-command\n");
    assert_eq!(commands[1]["allowed"], false);
    assert!(
        commands[1]["refusal"]
            .as_str()
            .unwrap_or("")
            .contains("allow")
    );
    // The refused command did not run.
    assert!(
        ran.repo
            .git(&["ls-tree", "--name-only", "mmm/s"])
            .contains("check.sh")
    );
}

#[test]
fn a_token_budget_stops_before_the_call() {
    let ran = Scenario::spec_s()
        .config("[budget]\nper_spec_tokens = 100\n")
        .answer(NEEDLE, Reply::text("Hi.\n"))
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    assert_eq!(
        ran.fake.requests().len(),
        0,
        "no call may break the token budget"
    );
    assert!(ran.stdout().contains("per_spec_tokens"), "{}", ran.show());
}

#[test]
fn the_daily_budget_counts_what_other_specs_spent_today() {
    // Spec `a` spends about $0.1 (a long answer); with a daily budget of $0.1 no call for `b`
    // can fit any more, although `b` itself has spent nothing.
    let long = format!("{}\n{}\n", done(), "words ".repeat(7_000));
    let ran = Scenario::new()
        .config("[budget]\ndaily_usd = 0.1\nper_spec_usd = 5.0\nper_iteration_usd = 5.0\n")
        .spec("a", "")
        .spec("b", "")
        .check(CHECK)
        .answer("for a.", Reply::Text(long))
        .answer("for b.", Reply::Text(done()))
        .run(&["run", "a"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let a = &ran.metrics("a")[0];
    assert!(
        a["cost_usd"].as_f64().expect("cost") > 0.05,
        "spec a spent enough to matter: {a}"
    );
    let out = ran.run(&["run", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(
        ran.fake.requests().len(),
        1,
        "no call for b: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("daily_usd"),
        "{}",
        show(&out)
    );
}

#[test]
fn the_system_prompt_is_written_once_per_run_and_shown_for_every_iteration() {
    let rule = Rule::new(NEEDLE, Reply::text("Looking.\n")).then(Reply::Text(done()));
    let ran = Scenario::spec_s().rule(rule).run(&["run", "s"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let (repo, fake) = (&ran.repo, &ran.fake);
    let its = ran.iterations("s");
    assert_eq!(its.len(), 2);
    let prompt = |commit: &str| {
        transcript(repo, "s", commit)
            .into_iter()
            .find(|r| r["kind"] == "prompt")
            .expect("a prompt record")
    };
    let first = prompt(&its[0].commit);
    let blocks = first["system"]
        .as_array()
        .expect("iteration 1 holds the system prompt");
    assert!(!blocks.is_empty());
    // Iteration 2 sent the same system prompt (the provider cached it) and its note refers to
    // iteration 1's instead of repeating it.
    let second = prompt(&its[1].commit);
    assert_eq!(
        second["system"],
        serde_json::json!({"same_as": its[0].commit, "iteration": 1})
    );
    let requests = fake.requests();
    let sent = |i: usize| {
        serde_json::from_str::<serde_json::Value>(&requests[i].body).expect("JSON")["system"]
            .clone()
    };
    assert_eq!(sent(0), sent(1), "the same system prompt was sent twice");
    // `git mmm show` follows the reference, in text and in JSON.
    let text = repo.mmm(&["show", "s", "2"]);
    assert!(text.status.success(), "{}", show(&text));
    let text = String::from_utf8_lossy(&text.stdout);
    let first_line = blocks[0]["text"]
        .as_str()
        .expect("text")
        .lines()
        .next()
        .expect("a line");
    assert!(text.contains(first_line), "{text}");
    let json = repo.mmm(&["show", "s", "2", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let shown = json["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .find(|r| r["kind"] == "prompt")
        .expect("prompt");
    assert_eq!(&shown["system"], &first["system"]);
    assert_eq!(shown["system_from"]["iteration"], 1);
    assert_clean(repo);
}

/// A spec whose only criterion meets the other spec's at a rendezvous in `dir`: it passes only
/// when both checks run at the same time.
fn rendezvous_spec(me: &str, other: &str, dir: &std::path::Path) -> String {
    format!(
        "# {me}\n\n## Objective\n\nMake `check.sh` pass for {me}.\n\n## Acceptance criteria\n\n\
         - runs beside {other}. verify: `sh {} {me} {other}`\n",
        dir.join("rdv.sh").display()
    )
}

/// Two specs whose checks pass only side by side, run with `[loop] concurrency = n`.
fn run_rendezvous(
    concurrency: u32,
    wait_tenths: u32,
) -> (crate::support::TestRepo, std::process::Output) {
    let rdv = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        rdv.path().join("rdv.sh"),
        format!(
            "dir={}\ntouch \"$dir/$1\"\ni=0\nwhile [ $i -lt {wait_tenths} ]; do\n  [ -e \"$dir/$2\" ] && exit 0\n  sleep 0.1\n  i=$((i+1))\ndone\necho \"$2 never ran beside $1\"\nexit 1\n",
            rdv.path().display()
        ),
    )
    .expect("write rdv.sh");
    let ran = Scenario::new()
        .config(&format!(
            "[loop]\nconcurrency = {concurrency}\nmax_iterations = 1\n"
        ))
        .spec_text("a", &rendezvous_spec("a", "b", rdv.path()))
        .spec_text("b", &rendezvous_spec("b", "a", rdv.path()))
        .check(CHECK)
        .answer("for a.", Reply::Text(done()))
        .answer("for b.", Reply::Text(done()))
        .run(&["run", "--json"]);
    (ran.project.repo, ran.out)
}

#[test]
fn independent_specs_run_at_once() {
    let (repo, out) = run_rendezvous(2, 100);
    assert!(out.status.success(), "{}", show(&out));
    for s in ["a", "b"] {
        let its = iterations(&repo, s);
        assert_eq!(its.len(), 1, "{s}");
        assert_eq!(its[0].status(), "complete", "{s}: both checks met");
    }
    let finished: Vec<String> = crate::support::project::events(&out)
        .into_iter()
        .filter(|e| e["event"] == "finished")
        .map(|e| e["spec"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(finished.len(), 2, "{finished:?}");
    assert_clean(&repo);
    // The control: one at a time, the first spec's check waits in vain.
    let (repo, out) = run_rendezvous(1, 10);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let first = iterations(&repo, "a");
    assert_eq!(first[0].status(), "max-iterations", "a ran alone");
}

#[test]
fn specs_running_at_once_keep_the_daily_budget_together() {
    // A daily budget that one call's worst case ($0.16 of output at most, plus its input) all
    // but fills: while one spec's call is in flight, the other's waits for it to settle (it
    // costs far less than its worst case), then goes. The two calls never overlap.
    let slow = || Reply::Pause {
        after_deltas: 1,
        pause_ms: 1500,
        text: done(),
    };
    let ran = Scenario::new()
        .config("[loop]\nconcurrency = 2\n\n[budget]\ndaily_usd = 0.165\n")
        .spec("a", "")
        .spec("b", "")
        .check(CHECK)
        .answer("for a.", slow())
        .answer("for b.", slow())
        .run(&["run", "--json"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let requests = ran.fake.requests();
    assert_eq!(requests.len(), 2, "{}", ran.show());
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(
        gap >= std::time::Duration::from_millis(1200),
        "the second call waited for the first to settle: {gap:?}"
    );
    for s in ["a", "b"] {
        assert_eq!(ran.iterations(s)[0].status(), "complete", "{s}");
    }
    assert_clean(&ran.repo);
}
