//! Properties of a whole run: the prompt cache from the second iteration on, secrets kept out
//! of git, `--json` events, and the offline demo.

use crate::support::TestRepo;
use crate::support::fake_anthropic::{Reply, Rule};
use crate::support::project::{
    all_notes, assert_clean, assert_readable, events, iterations, metrics, show, write_file,
};
use crate::support::scenario::{CHECK, NEEDLE, Scenario, done};

#[test]
fn the_prompt_cache_serves_the_stable_prefix_from_iteration_2_on() {
    // The edits change an existing file: the repository map (part of the cached prefix) stays
    // the same. (A new file changes the map, and with it the whole prefix.)
    let rule = Rule::new(NEEDLE, Reply::Text(write_file("a.txt", "1")))
        .then(Reply::Text(write_file("a.txt", "2")))
        .then(Reply::Text(write_file("a.txt", "3")));
    let project = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 3\n")
        .check("exit 0\n")
        .file("a.txt", "0\n")
        .rule(rule)
        .build();
    let (repo, fake) = (&project.repo, &project.fake);
    fake.set_min_cache_tokens(1);
    let out = project.run(&["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let its = project.iterations("s");
    assert_eq!(its.len(), 3);
    let read: Vec<u64> = its
        .iter()
        .map(|i| {
            metrics(repo, "s", &i.commit)["tokens"]["cache_read_input_tokens"]
                .as_u64()
                .expect("cache read tokens")
        })
        .collect();
    assert_eq!(read[0], 0, "nothing cached before the first call");
    assert!(
        read[1] > 0 && read[2] > 0,
        "cache reads from iteration 2 on: {read:?}"
    );
    // The share of input served from the cache from iteration 2 on.
    for i in &its[1..] {
        let t = &metrics(repo, "s", &i.commit)["tokens"];
        let n = |k: &str| t[k].as_u64().unwrap_or(0) as f64;
        let share = n("cache_read_input_tokens")
            / (n("cache_read_input_tokens") + n("cache_creation_input_tokens") + n("input_tokens"));
        assert!(share >= 0.5, "cache share {share:.2} in {t}");
    }
    let first_write = metrics(repo, "s", &its[0].commit)["tokens"]["cache_creation_input_tokens"]
        .as_u64()
        .expect("cache write tokens");
    assert!(first_write > 0);
    let totals = fake.totals();
    assert_eq!(totals.cache_read, read.iter().sum::<u64>());
    // The prompts carry a cache breakpoint in the system prompt.
    let body = fake.requests()[0].json();
    assert!(
        body["system"].to_string().contains("cache_control"),
        "{body}"
    );
}

#[test]
fn secrets_never_reach_git() {
    const SECRET: &str = "tok-4242-very-secret-value";
    let answer = format!(
        "The token is {SECRET}.\n\n{}\n@mmm:summary used {SECRET}\n",
        write_file("a.txt", "1")
    );
    let project = Scenario::spec_s()
        .config("[loop]\nmax_iterations = 2\nstuck_after = 5\n")
        .check("echo \"token=$MY_SERVICE_TOKEN\"\nexit 1\n")
        .answer(NEEDLE, Reply::Text(answer))
        .build();
    let (repo, fake) = (&project.repo, &project.fake);
    let out = project
        .cmd()
        .env("MY_SERVICE_TOKEN", SECRET)
        .args(["run", "s"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    // The gate did print it (so the redaction had something to do).
    assert!(
        fake.requests()[1].body.contains(SECRET),
        "the gate output reached the second prompt"
    );
    let notes = all_notes(repo);
    assert!(!notes.is_empty());
    assert!(!notes.contains(SECRET), "a note holds the secret");
    assert!(
        notes.contains("[redacted:MY_SERVICE_TOKEN]"),
        "{notes:.2000}"
    );
    assert!(!notes.contains(crate::support::fake_anthropic::KEY));
    let log = repo.git(&["log", "--format=%B", "mmm/s"]);
    assert!(
        !log.contains(SECRET),
        "a commit message holds the secret:\n{log}"
    );
    let refs = repo.git(&["for-each-ref", "--format=%(refname)"]);
    for r in refs.lines().filter(|r| r.contains("mmm")) {
        let msgs = repo.git(&["log", "--format=%B", r]);
        assert!(!msgs.contains(SECRET), "{r} holds the secret");
    }
    assert_clean(repo);
}

#[test]
fn json_prints_one_event_object_per_line() {
    let ran = Scenario::spec_s()
        .answer(NEEDLE, Reply::Text(done()))
        .run(&["run", "s", "--json"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let events = events(&ran.out);
    assert!(!events.is_empty());
    for e in &events {
        assert!(e.is_object() && e["event"].is_string(), "{e}");
    }
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"finished"));
    assert!(
        kinds.contains(&"stage") && kinds.contains(&"recorded"),
        "{kinds:?}"
    );
    let recorded = events
        .iter()
        .find(|e| e["event"] == "recorded")
        .expect("recorded");
    let its = ran.iterations("s");
    assert_eq!(recorded["commit"], its[0].commit.as_str());
    assert_eq!(recorded["status"], "complete");
    let finished = events.last().expect("finished");
    assert_eq!(finished["reason"], "complete");
    assert_eq!(finished["spec"], "s");
}

#[test]
fn each_check_is_announced_before_it_runs_and_costs_print_in_cents() {
    let ran = Scenario::spec_s()
        .answer(NEEDLE, Reply::Text(done()))
        .run(&["run", "s", "--json"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let events = events(&ran.out);
    // The gate `test`, then the spec's one criterion: each `checking` comes right before its
    // `checked`, with its place among the iteration's checks (the spinner shows them).
    let checks: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "checking" || e["event"] == "checked")
        .map(|e| match e["event"].as_str() {
            Some("checking") => format!("checking {} {}/{}", e["name"], e["index"], e["total"]),
            _ => format!("checked {}", e["name"]),
        })
        .collect();
    assert_eq!(
        checks,
        [
            r#"checking "test" 1/2"#,
            r#"checked "test""#,
            r#"checking "criterion 1" 2/2"#,
            r#"checked "criterion 1""#,
        ]
    );
    // `--json` keeps the exact cost; the lines for people round it to cents.
    let recorded = events
        .iter()
        .find(|e| e["event"] == "recorded")
        .expect("recorded");
    assert!(
        recorded["cost_usd"].as_f64().is_some_and(|c| c > 0.0),
        "{recorded}"
    );
    // A spec already complete spends nothing: an empty sum is `$0.00`, never `$-0.0000`.
    let out = ran.run(&["run", "s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 spec(s) run, 1 complete, 0 tokens, $0.00\n"),
        "{stdout}"
    );
    let p = Scenario::spec_s()
        .answer(NEEDLE, Reply::Text(done()))
        .build();
    let out = p.run(&["run", "s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("1 spec(s) run"))
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    let cost = summary.rsplit(", ").next().unwrap_or_default();
    assert!(
        cost == "<$0.01" || (cost.starts_with('$') && cost.len() == "$0.00".len()),
        "{summary}"
    );
    assert!(!stdout.contains("$-"), "{stdout}");
}

#[test]
fn scripted_agent_runs_without_network() {
    let script = format!(
        "[[answer]]\ntext = '''\n{}'''\n\n[[answer]]\nwhen = \"GATE-42-NO\"\ntext = '''\n{}'''\n",
        "Nothing yet.\n",
        done()
    );
    let project = Scenario::spec_s()
        .raw_config("[agent]\nkind = \"scripted\"\nscript = \".mmm/answers.toml\"\n\n[validate]\ntest = \"sh check.sh\"\n")
        .check(CHECK)
        .file(".mmm/answers.toml", &script)
        .build();
    let repo = &project.repo;
    let out = repo.mmm(&["run"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(project.statuses("s"), ["failed", "complete"]);
    assert_eq!(project.metrics("s")[1]["agent"], "scripted");
    // A second run has nothing to do.
    let again = repo.mmm_ok(&["run"]);
    assert!(again.contains("nothing to run"), "{again}");
    assert_readable(repo, "s");
    assert_clean(repo);
}

#[test]
fn when_the_scripted_answers_run_out_the_failing_check_comes_first() {
    // One answer that does nothing: the gate fails, the loop asks again, the script has
    // nothing more to say. The gate's failure is why; it comes first.
    let project = Scenario::spec_s()
        .raw_config("[agent]\nkind = \"scripted\"\nscript = \".mmm/answers.toml\"\n\n[validate]\ntest = \"sh check.sh\"\n")
        .check(CHECK)
        .file(".mmm/answers.toml", "[[answer]]\ntext = '''\nNothing yet.\n'''\n")
        .build();
    let out = project.repo.mmm(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(project.statuses("s"), ["failed", "error"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "test, criterion 1 still failing (test: GATE-42-NO: done.txt is missing); then the agent script \
             has no answer left for this prompt"
        ),
        "{stdout}"
    );
}

#[test]
fn the_demo_leaves_a_failed_and_a_complete_iteration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut cmd = crate::support::mmm_cmd(dir.path(), &home);
    // The demo builds a small crate with cargo: keep the toolchain reachable.
    let real_home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    for (var, default) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
        match (std::env::var_os(var), &real_home) {
            (Some(v), _) => {
                cmd.env(var, v);
            }
            (None, Some(h)) => {
                cmd.env(var, h.join(default));
            }
            (None, None) => {}
        }
    }
    if let Some(t) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        cmd.env("RUSTUP_TOOLCHAIN", t);
    }
    let out = cmd.args(["demo", "d"]).output().expect("demo");
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" log slugify  "), "{stdout}");
    let demo = TestRepo {
        path: dir.path().join("d"),
        home: home.clone(),
        dir,
    };
    let its = iterations(&demo, "slugify");
    let statuses: Vec<String> = its.iter().map(|i| i.status()).collect();
    assert_eq!(statuses, ["failed", "complete"]);
    let first = metrics(&demo, "slugify", &its[0].commit);
    assert!(first["checks_passed"].as_u64() < first["checks_total"].as_u64());
    let second = metrics(&demo, "slugify", &its[1].commit);
    assert_eq!(second["stop_reason"], "complete");
    assert_eq!(second["checks_passed"], second["checks_total"]);
    let log = demo.mmm_ok(&["log", "slugify"]);
    assert!(log.contains("complete"), "{log}");
    let shown = demo.mmm_ok(&["show", "slugify", "1"]);
    assert!(shown.contains("failed"), "{shown}");
    demo.mmm_ok(&["show", "slugify"]);
    assert_clean(&demo);
}
