//! What `git mmm run` prints, in the order it happens: each iteration's line and its
//! decisions, the spec's stop, then the run's summary; and the last decision of a loop that
//! stops is the stop, not a strategy for an iteration that will not come. stdout and stderr go
//! to one file, as on a terminal, so that their order is the order the user sees.

use std::fs::File;
use std::process::Stdio;

use serde_json::Value;

use crate::support::scenario::{CHECK, Project, Scenario};

/// A scripted agent that never finishes (enough answers for two iterations of two specs), the
/// gate `sh check.sh` that fails, and `[loop] concurrency` as given.
fn never_done(concurrency: u32) -> Project {
    let answers = "[[answer]]\ntext = '''\nNothing yet.\n'''\n\n\
                   [[answer]]\ntext = '''\nStill nothing.\n'''\n\n\
                   [[answer]]\ntext = '''\nNothing at all.\n'''\n";
    Scenario::new()
        .spec("a", "")
        .spec("b", "")
        .raw_config(&format!(
            "[agent]\nkind = \"scripted\"\nscript = \".mmm/answers.toml\"\n\n\
             [loop]\nmax_iterations = 2\nstuck_after = 5\nconcurrency = {concurrency}\n\n\
             [validate]\ntest = \"sh check.sh\"\n"
        ))
        .file(".mmm/answers.toml", answers)
        .check(CHECK)
        .build()
}

/// Runs `git-mmm ARGS` with stdout and stderr into one file; returns what it holds, with
/// commits and run ids replaced by placeholders and the stages' lines left out.
fn run_merged(project: &Project, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.txt");
    let file = File::create(&path).expect("out file");
    let status = project
        .repo
        .mmm_cmd()
        .args(args)
        .stdout(Stdio::from(file.try_clone().expect("clone")))
        .stderr(Stdio::from(file))
        .status()
        .expect("run git-mmm");
    let text = std::fs::read_to_string(&path).expect("read output");
    (status.code(), normalize(&text))
}

fn normalize(text: &str) -> String {
    let commit = regex::Regex::new(r"commit [0-9a-f]{10}").expect("regex");
    let run = regex::Regex::new(r"run [0-9A-Z]{26}").expect("regex");
    let secs = regex::Regex::new(r"in \d+\.\ds").expect("regex");
    text.lines()
        .filter(|l| {
            ![
                "building context",
                "waiting for the model",
                "applying edits",
            ]
            .iter()
            .chain(&["running checks", "recording"])
            .any(|stage| l.ends_with(stage))
        })
        .map(|l| {
            let l = commit.replace_all(l, "commit C");
            let l = run.replace_all(&l, "run R");
            secs.replace_all(&l, "in Ts").into_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn one_spec_prints_in_order_and_ends_on_the_stop() {
    let project = never_done(1);
    let (code, out) = run_merged(&project, &["run", "a"]);
    assert_eq!(code, Some(1), "{out}");
    insta::assert_snapshot!(out, @r"
    a: starting run R at iteration 1
    a: iteration 1: test failed (exit 1) in Ts
    a: iteration 1: criterion 1 failed (exit 1) in Ts
    a: iteration 1 failed: 0/2 checks passed, 0 tokens, $0.00, commit C
    a:   → feed the failures back to the model
    a: iteration 2: test failed (exit 1) in Ts
    a: iteration 2: criterion 1 failed (exit 1) in Ts
    a: iteration 2 max-iterations: 0/2 checks passed, 0 tokens, $0.00, commit C
    a:   → stop (max-iterations): max_iterations is reached
    a: stopped: max-iterations (2 iterations of this spec revision (max_iterations = 2)); 2 iteration(s) this run, $0.00

    1 spec(s) run, 0 complete, 0 tokens, $0.00
      a                        max-iterations   iteration 2   2 iterations of this spec revision (max_iterations = 2)
    error: 1 of 1 spec(s) did not complete
    hint: see `git mmm status` and `git mmm show SPEC`; `git mmm run` resumes where a run stopped
    ");
    // The note says the same: no strategy for a third iteration, the stop last.
    let last = &project.metrics("a")[1];
    assert_eq!(
        last["decisions"],
        serde_json::json!(["stop (max-iterations): max_iterations is reached"]),
        "{last}"
    );
    assert!(last.get("strategies").is_none(), "{last}");
    assert_eq!(
        project.metrics("a")[0]["decisions"],
        serde_json::json!(["feed the failures back to the model"])
    );
}

#[test]
fn specs_one_after_the_other_print_in_order() {
    let project = never_done(1);
    let (code, out) = run_merged(&project, &["run"]);
    assert_eq!(code, Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no line `{needle}` in:\n{out}"))
    };
    let order = [
        at("a: starting"),
        at("a: iteration 2 max-iterations"),
        at("a:   → stop (max-iterations)"),
        at("a: stopped: max-iterations"),
        at("b: starting"),
        at("b: iteration 2 max-iterations"),
        at("b:   → stop (max-iterations)"),
        at("b: stopped: max-iterations"),
        at("2 spec(s) run, 0 complete"),
        at("error: 2 of 2 spec(s) did not complete"),
    ];
    assert!(order.is_sorted(), "{order:?} in:\n{out}");
    assert!(!out.contains("→ feed the failures back to the model\nb: stopped"));
}

#[test]
fn specs_at_once_print_each_stop_before_the_summary() {
    let project = never_done(2);
    let (code, out) = run_merged(&project, &["run", "--stream"]);
    assert_eq!(code, Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let summary = lines
        .iter()
        .position(|l| l.starts_with("2 spec(s) run"))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"));
    for spec in ["a", "b"] {
        let mine: Vec<&str> = lines[..summary]
            .iter()
            .copied()
            .filter(|l| l.starts_with(&format!("{spec}: ")) && !l.contains(": iteration 1"))
            .collect();
        // The model's streamed text comes by whole lines named after their spec.
        assert!(
            mine.contains(&format!("{spec}: Still nothing.").as_str()),
            "{out}"
        );
        let tail = &mine[mine.len() - 3..];
        assert!(
            tail[0].starts_with(&format!("{spec}: iteration 2 max-iterations")),
            "{out}"
        );
        assert_eq!(
            tail[1],
            format!("{spec}:   → stop (max-iterations): max_iterations is reached"),
            "{out}"
        );
        assert!(
            tail[2].starts_with(&format!("{spec}: stopped: max-iterations")),
            "{out}"
        );
    }
    assert!(
        lines[summary + 1..]
            .iter()
            .all(|l| !l.starts_with("a: ") && !l.starts_with("b: ")),
        "{out}"
    );
}

#[test]
fn json_events_end_each_spec_on_its_stop() {
    let project = never_done(2);
    let out = project
        .repo
        .mmm_cmd()
        .args(["run", "--json"])
        .output()
        .expect("run git-mmm");
    assert_eq!(out.status.code(), Some(1));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    for spec in ["a", "b"] {
        let mine: Vec<&Value> = events.iter().filter(|e| e["spec"] == spec).collect();
        let kinds: Vec<&str> = mine.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(kinds.last(), Some(&"finished"), "{kinds:?}");
        let recorded: Vec<&&Value> = mine.iter().filter(|e| e["event"] == "recorded").collect();
        assert_eq!(recorded.len(), 2);
        assert_eq!(
            recorded[1]["decisions"],
            serde_json::json!(["stop (max-iterations): max_iterations is reached"])
        );
        assert_eq!(kinds[kinds.len() - 2], "recorded", "{kinds:?}");
    }
}
