//! What the loop does after a failed iteration: feed the failures back, roll the workspace
//! back when an iteration made things worse, escalate to a stronger model.

use crate::support::fake_anthropic::{Reply, Rule};
use crate::support::project::{assert_clean, assert_readable, spec, write_file};
use crate::support::scenario::{NEEDLE, Scenario, done};

#[test]
fn failures_are_fed_back_to_the_next_iteration() {
    // The gate prints GATE-42-NO (computed, so check.sh itself never contains it). The rule
    // that finishes the spec answers only a prompt that carries that output.
    let ran = Scenario::spec_s()
        .answer("GATE-42-NO", Reply::Text(done()))
        .answer(NEEDLE, Reply::text("Let me look around first.\n"))
        .run(&["run", "s"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let requests = ran.fake.requests();
    assert_eq!(requests.len(), 2);
    assert!(!requests[0].body.contains("GATE-42-NO"));
    assert!(
        requests[1].body.contains("GATE-42-NO: done.txt is missing"),
        "the second request carries the first failure's output"
    );
    assert_eq!(ran.statuses("s"), ["failed", "complete"]);
    let first = &ran.metrics("s")[0];
    assert!(
        first["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .any(|d| d
                .as_str()
                .unwrap_or_default()
                .starts_with("feed the failures back")),
        "{first}"
    );
    assert_eq!(first["strategies"][0]["strategy"], "feed-back", "{first}");
    assert_readable(&ran.repo, "s");
    assert_clean(&ran.repo);
}

#[test]
fn a_file_a_gate_creates_reaches_the_next_prompt() {
    // The gate writes made.txt (its content computed, so check.sh never contains it) and names
    // it in its output: the next prompt shows the file, so the list of the worktree's files
    // kept between iterations learnt about it.
    let check = "echo \"made-$((40+2))\" > made.txt\ntest -e done.txt && exit 0\necho \"see made.txt:1\"\nexit 1\n";
    let ran = Scenario::spec_s()
        .check(check)
        .answer("made-42", Reply::Text(done()))
        .answer(NEEDLE, Reply::text("Let me look around first.\n"))
        .run(&["run", "s"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let requests = ran.fake.requests();
    assert_eq!(requests.len(), 2);
    assert!(!requests[0].body.contains("made-42"));
    assert!(
        requests[1].body.contains("made-42"),
        "the second request shows the file the gate created"
    );
    assert_readable(&ran.repo, "s");
    assert_clean(&ran.repo);
}

#[test]
fn a_file_a_gate_rewrites_is_shown_as_it_is_now() {
    // notes.txt is in the first prompt (the spec names it); the gate rewrites it: the second
    // prompt shows the new content, not the text read for the first one.
    let check = "echo \"notes-$((40+2))\" > notes.txt\ntest -e done.txt && exit 0\nexit 1\n";
    let text = format!("{}\n## Context\n\n- `notes.txt`\n", spec("s", ""));
    let ran = Scenario::new()
        .spec_text("s", &text)
        .check(check)
        .file("notes.txt", "notes-old\n")
        .answer("notes-42", Reply::Text(done()))
        .answer("notes-old", Reply::text("Let me look around first.\n"))
        .run(&["run", "s"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let requests = ran.fake.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].body.contains("notes-old"));
    assert!(
        requests[1].body.contains("notes-42") && !requests[1].body.contains("notes-old"),
        "the second request shows the file as the gate left it"
    );
    assert_readable(&ran.repo, "s");
    assert_clean(&ran.repo);
}

#[test]
fn a_file_the_model_rewrites_is_shown_as_it_is_now() {
    // No gate and no check command: the snapshot stages only the edited path, and the next
    // prompt shows the file as the edit left it, not the text read for the first prompt.
    let text = "+++\ncriteria = \"none\"\n+++\n# s\n\n## Objective\n\nRewrite the notes.\n\n\
                ## Context\n\n- `notes.txt`\n";
    let ran = Scenario::new()
        .raw_config("[agent]\nkind = \"api\"\nmax_retries = 3\n\n[loop]\nmax_iterations = 3\n")
        .spec_text("s", text)
        .file("notes.txt", "notes-old\n")
        .answer(
            "notes-new",
            Reply::text("@mmm:summary done\n@mmm:complete\n"),
        )
        .answer(
            "notes-old",
            Reply::Text(write_file("notes.txt", "notes-new")),
        )
        .run(&["run", "s"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let requests = ran.fake.requests();
    assert_eq!(requests.len(), 2, "{}", ran.show());
    assert!(requests[0].body.contains("notes-old"));
    assert!(
        requests[1].body.contains("notes-new") && !requests[1].body.contains("notes-old"),
        "the second request shows the file as the edit left it"
    );
    assert_readable(&ran.repo, "s");
    assert_clean(&ran.repo);
}

#[test]
fn an_iteration_that_makes_things_worse_is_rolled_back() {
    let check = "test ! -e broken.txt || { echo \"broken-$((1+1))\"; exit 1; }\necho fine\n";
    let rule = Rule::new(NEEDLE, Reply::Text(write_file("good.txt", "good")))
        .then(Reply::Text(write_file("broken.txt", "bad")))
        .then(Reply::text("Nothing more to change.\n"));
    let ran = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 3\n")
        .check(check)
        .rule(rule)
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    let repo = &ran.repo;
    let its = ran.iterations("s");
    assert_eq!(ran.statuses("s"), ["passed", "failed", "max-iterations"]);
    let second = &ran.metrics("s")[1];
    let decisions: Vec<&str> = second["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert!(
        decisions
            .iter()
            .any(|d| d.starts_with("roll the workspace back") && d.contains(&its[0].commit[..10])),
        "{decisions:?}"
    );
    // The same strategy by its stable name, with the full commit it returns to.
    let strategies = second["strategies"].as_array().expect("strategies");
    assert!(
        strategies
            .iter()
            .any(|s| s["strategy"] == "roll-back" && s["to"] == its[0].commit.as_str()),
        "{strategies:?}"
    );
    // The third iteration starts from the first one's tree: broken.txt is gone again.
    let tree = |c: &str| repo.git(&["rev-parse", &format!("{c}^{{tree}}")]);
    assert_eq!(tree(&its[2].commit), tree(&its[0].commit));
    assert!(
        !repo
            .git(&["ls-tree", "--name-only", &its[2].commit])
            .contains("broken.txt")
    );
    // Nothing is lost: the broken iteration stays on the first-parent chain.
    assert_eq!(
        repo.git(&["rev-parse", &format!("{}^", its[2].commit)])
            .trim(),
        its[1].commit
    );
    assert_eq!(
        repo.git(&["show", &format!("{}:broken.txt", its[1].commit)]),
        "bad\n"
    );
    assert_clean(repo);
}

#[test]
fn escalates_to_the_stronger_model_after_failures() {
    let ran = Scenario::spec_s()
        .config(
            "[loop]\nmax_iterations = 2\nstuck_after = 5\n\n[model]\ndefault = \"claude-sonnet-5-5\"\nescalate_to = \"claude-opus-5-5\"\nescalate_after = 1\n",
        )
        .answer(NEEDLE, Reply::text("Trying.\n"))
        .run(&["run", "s"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.show());
    let models: Vec<String> = ran
        .fake
        .requests()
        .iter()
        .map(|r| r.json()["model"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(models, ["claude-sonnet-5-5", "claude-opus-5-5"]);
    let its = ran.iterations("s");
    assert_eq!(its.len(), 2);
    let metrics = ran.metrics("s");
    let (first, second) = (&metrics[0], &metrics[1]);
    assert_eq!(first["model"], "claude-sonnet-5-5");
    assert_eq!(second["model"], "claude-opus-5-5");
    assert!(
        first["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .any(|d| d
                .as_str()
                .unwrap_or_default()
                .starts_with("escalate from claude-sonnet-5-5 to claude-opus-5-5")),
        "{first}"
    );
    assert_clean(&ran.repo);
}
