//! End-to-end tests of the read-side CLI through the real `git-mmm` binary: init, specs,
//! status, log, show, rollback, doctor, config, completions, help, stop and exit codes.
//! Everything mmm writes is read back with plain `git`.

use std::process::Output;

use crate::support::TestRepo;

/// The pinned clock for commands that record or print times (2026-01-01T00:00:00Z).
const CLOCK: &str = "1767225600";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `git-mmm` with the pinned clock.
fn mmm_at(repo: &TestRepo, args: &[&str]) -> Output {
    repo.mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .args(args)
        .output()
        .expect("run git-mmm")
}

/// Runs `git-mmm` with the pinned clock and asserts success; returns stdout.
fn mmm_at_ok(repo: &TestRepo, args: &[&str]) -> String {
    let out = mmm_at(repo, args);
    assert!(
        out.status.success(),
        "git-mmm {args:?} failed ({:?}):\n{}{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Records `n` synthetic iterations of `spec` (optionally against a spec revision).
fn record(repo: &TestRepo, spec: &str, n: u32, revision: Option<&str>) {
    let n = n.to_string();
    let mut args = vec!["plumbing", "record", spec, "--iterations", n.as_str()];
    if let Some(rev) = revision {
        args.extend(["--spec-revision", rev]);
    }
    mmm_at_ok(repo, &args);
}

const ALPHA: &str = "+++
priority = \"high\"
depends_on = [\"beta\"]
+++

# Alpha feature

## Objective
Do alpha.

## Acceptance criteria
- alpha works. verify: `true`
- alpha is nice.
";

const BETA: &str = "# Beta feature

## Objective
Do beta.

## Acceptance criteria
- beta works. verify: `true`
";

const GAMMA: &str = "---
priority: low
---
# Gamma feature

## Objective
Do gamma.

## Acceptance criteria
- gamma works.
";

/// A repository with three committed specs: alpha depends on beta; gamma stands alone.
fn three_specs() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("specs/alpha.md", ALPHA);
    repo.write("specs/beta.md", BETA);
    repo.write("specs/gamma.md", GAMMA);
    repo.commit_all("specs");
    repo
}

// ---------------------------------------------------------------------------------------------
// init

#[test]
fn init_writes_config_sets_notes_refs_and_is_idempotent() {
    let repo = TestRepo::new();
    let first = repo.mmm_ok(&["init"]);
    assert!(first.contains("wrote .mmm/config.toml"), "{first}");

    // The file parses back as TOML and every key in it shows with its file origin.
    let path = repo.path.join(".mmm/config.toml");
    let text = std::fs::read_to_string(&path).expect("config written");
    let _: toml::Table = toml::from_str(&text).expect("the written config parses");
    let config = repo.mmm_ok(&["config"]);
    let file_origin = format!("file:{}:", path.display());
    assert!(
        config
            .lines()
            .any(|l| l.starts_with(&file_origin) && l.contains("loop.max_iterations = 3")),
        "{config}"
    );

    assert_eq!(
        repo.git(&["config", "--get-all", "notes.rewriteRef"]),
        "refs/notes/mmm/*\n"
    );
    assert!(
        repo.git_output(&["config", "--get-all", "notes.displayRef"])
            .stdout
            .is_empty(),
        "mmm's notes are not displayed by git log"
    );

    // Edit the config; a second init keeps it and changes nothing in git's config.
    let edited = text.replace("max_iterations = 3", "max_iterations = 7");
    assert_ne!(edited, text, "the default config names loop.max_iterations");
    std::fs::write(&path, &edited).expect("edit config");
    let git_config_before = std::fs::read_to_string(repo.path.join(".git/config")).expect("read");
    let second = repo.mmm_ok(&["init"]);
    assert!(
        second.contains("kept .mmm/config.toml (it exists)"),
        "{second}"
    );
    assert!(
        second.contains("git notes settings already in place"),
        "{second}"
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), edited);
    assert_eq!(
        std::fs::read_to_string(repo.path.join(".git/config")).expect("read"),
        git_config_before
    );
    assert_eq!(
        repo.git(&["config", "--get-all", "notes.rewriteRef"]),
        "refs/notes/mmm/*\n"
    );
    assert_eq!(repo.mmm_ok(&["config", "loop.max_iterations"]), "7\n");
}

#[test]
fn config_shows_default_origins_without_a_file() {
    let repo = TestRepo::new();
    let config = repo.mmm_ok(&["config"]);
    assert!(
        config.contains("default\tloop.max_iterations = 3\n"),
        "{config}"
    );
    let entries = json(&repo.mmm_ok(&["config", "--json"]));
    let entry = entries
        .as_array()
        .expect("an array")
        .iter()
        .find(|e| e["key"] == "loop.max_iterations")
        .expect("loop.max_iterations listed");
    assert_eq!(entry["origin"], "default");
    assert_eq!(entry["value"], 3);
}

#[test]
fn init_templates_are_written_kept_and_loaded_by_run() {
    let repo = TestRepo::new();
    repo.write("specs/beta.md", BETA);
    repo.commit_all("spec");
    let out = repo.mmm_ok(&["init", "--templates"]);
    for name in ["system", "iteration"] {
        let rel = format!(".mmm/templates/{name}.md");
        assert!(out.contains(&format!("wrote {rel}")), "{out}");
        let text = std::fs::read_to_string(repo.path.join(&rel)).expect("template written");
        assert!(!text.trim().is_empty(), "{rel} is empty");
    }

    // An edited template survives a second init, and `run` loads it: an unknown placeholder
    // on line 3 stops the run before any agent is called, naming the file and the line.
    let iteration = repo.path.join(".mmm/templates/iteration.md");
    std::fs::write(
        &iteration,
        "# Iteration\n\nWork on {no_such_placeholder}.\n",
    )
    .expect("edit");
    let again = repo.mmm_ok(&["init", "--templates"]);
    assert!(
        again.contains("kept .mmm/templates/iteration.md (it exists)"),
        "{again}"
    );
    let run = mmm_at(&repo, &["run", "beta", "--agent", "scripted"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(
        err.contains(".mmm/templates/iteration.md:3: unknown placeholder `{no_such_placeholder}`"),
        "{err}"
    );
    assert!(err.contains("hint: fix or remove the template"), "{err}");
    // Nothing was recorded.
    assert!(repo.git(&["for-each-ref", "refs/heads/mmm/"]).is_empty());
}

// ---------------------------------------------------------------------------------------------
// specs

#[test]
fn specs_lists_in_dependency_order() {
    let repo = three_specs();
    let table = repo.mmm_ok(&["specs"]);
    insta::assert_snapshot!(table, @r"
    ID     PRIORITY  CRITERIA  DEPENDS ON            TITLE
    beta   medium         1/1  -                     Beta feature
    alpha  high           1/2  beta                  Alpha feature
    gamma  low            0/1  -                     Gamma feature
    ");

    let specs = json(&repo.mmm_ok(&["specs", "--json"]));
    let specs = specs.as_array().expect("an array");
    let ids: Vec<&str> = specs
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    let beta = ids.iter().position(|i| *i == "beta").expect("beta");
    let alpha = ids.iter().position(|i| *i == "alpha").expect("alpha");
    assert!(beta < alpha, "dependency first: {ids:?}");
    assert_eq!(ids.len(), 3);
    let a = &specs[alpha];
    assert_eq!(a["path"], "specs/alpha.md");
    assert_eq!(a["priority"], "high");
    assert_eq!(a["depends_on"], serde_json::json!(["beta"]));
    assert_eq!(a["title"], "Alpha feature");
    assert_eq!(a["criteria"][0]["verify"], "true");
    assert_eq!(a["criteria"][1]["verify"], serde_json::Value::Null);
    // The revision is git's blob id of the file.
    assert_eq!(
        a["revision"].as_str().expect("revision"),
        repo.git(&["hash-object", "specs/alpha.md"]).trim()
    );
}

#[test]
fn specs_reports_every_malformed_spec_with_file_line_and_hint() {
    let repo = TestRepo::new();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/specs/invalid");
    for name in ["bad-priority.md", "bad-dependency.md", "unknown-key.md"] {
        let text = std::fs::read_to_string(fixtures.join(name)).expect("fixture");
        repo.write(&format!("specs/{name}"), &text);
    }
    repo.write("specs/beta.md", BETA);
    let out = repo.mmm(&["specs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    insta::assert_snapshot!(stderr(&out), @r"
    error: 3 problem(s) in the specs:
      specs/bad-dependency.md:2:1: dependency `Session Store` is not a valid spec id (did you mean `session-store`?)
      specs/bad-priority.md:2:1: front-matter key `priority`: unknown variant `urgent`, expected one of `critical`, `high`, `medium`, `low`
      specs/unknown-key.md:3:1: unknown front-matter key `prority` (did you mean `priority`?)
    hint: write `session-store`
    hint: use one of critical, high, medium, low
    hint: rename the key to `priority`
    ");
    // `--json` fails the same way rather than printing a partial list.
    let out = repo.mmm(&["specs", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
}

// ---------------------------------------------------------------------------------------------
// status

#[test]
fn status_shows_iterations_changes_unrun_and_orphaned_branches() {
    let repo = three_specs();
    let alpha_rev = repo.git(&["hash-object", "specs/alpha.md"]);
    let beta_rev = repo.git(&["hash-object", "specs/beta.md"]);
    record(&repo, "alpha", 3, Some(alpha_rev.trim()));
    record(&repo, "beta", 1, Some(beta_rev.trim()));
    record(&repo, "zeta", 2, None);
    // alpha's spec changes after its run; zeta has a branch but no spec file.
    repo.write(
        "specs/alpha.md",
        &ALPHA.replace("Do alpha.", "Do alpha, better."),
    );

    let table = mmm_at_ok(&repo, &["status"]);
    insta::assert_snapshot!(table, @r"
    SPEC   ITER  STATUS          UPDATED           NOTE
    alpha     3  passed          2026-01-01 00:00  spec changed since the last iteration
    beta      1  passed          2026-01-01 00:00  
    gamma     0  -               -                 not run yet
    zeta      2  passed          2026-01-01 00:00  spec file is gone
    ");

    let status = json(&mmm_at_ok(&repo, &["status", "--json"]));
    let specs = status["specs"].as_array().expect("specs array");
    let names: Vec<&str> = specs
        .iter()
        .map(|s| s["spec"].as_str().expect("spec"))
        .collect();
    assert_eq!(names, ["alpha", "beta", "gamma", "zeta"]);
    let (alpha, beta, gamma, zeta) = (&specs[0], &specs[1], &specs[2], &specs[3]);

    assert_eq!(alpha["iterations"], 3);
    assert_eq!(alpha["changed"], true);
    assert_eq!(alpha["spec_revision"], alpha_rev.trim());
    assert_eq!(
        alpha["current_revision"],
        repo.git(&["hash-object", "specs/alpha.md"]).trim()
    );
    assert_eq!(alpha["tip"], repo.git(&["rev-parse", "mmm/alpha"]).trim());
    assert_eq!(alpha["status"], "passed");
    assert_eq!(
        alpha["run"].as_str().expect("run"),
        repo.git(&[
            "log",
            "-1",
            "--format=%(trailers:key=Mmm-Run,valueonly)",
            "mmm/alpha"
        ])
        .trim()
    );

    assert_eq!(beta["iterations"], 1);
    assert_eq!(beta["changed"], false);

    assert_eq!(gamma["iterations"], 0);
    assert_eq!(gamma["changed"], false);
    assert_eq!(gamma["tip"], serde_json::Value::Null);
    assert_eq!(gamma["path"], "specs/gamma.md");

    assert_eq!(zeta["iterations"], 2);
    assert_eq!(zeta["path"], serde_json::Value::Null);
    assert_eq!(zeta["current_revision"], serde_json::Value::Null);
    assert_eq!(zeta["changed"], false);
}

#[test]
fn status_on_an_empty_repository_says_what_to_do() {
    let repo = TestRepo::new();
    let out = repo.mmm_ok(&["status"]);
    assert!(out.starts_with("no specs and no mmm branches yet"), "{out}");
    let status = json(&repo.mmm_ok(&["status", "--json"]));
    assert_eq!(status, serde_json::json!({ "specs": [] }));
}

// ---------------------------------------------------------------------------------------------
// log and show

#[test]
fn log_is_newest_first_like_git_log() {
    let repo = three_specs();
    record(&repo, "alpha", 3, None);
    let commits: Vec<String> = repo
        .git(&["log", "--first-parent", "-3", "--format=%H", "mmm/alpha"])
        .lines()
        .map(str::to_owned)
        .collect();

    let text = mmm_at_ok(&repo, &["log", "alpha"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, (n, commit)) in
        lines
            .iter()
            .zip([(3, &commits[0]), (2, &commits[1]), (1, &commits[2])])
    {
        assert!(
            line.trim_start().starts_with(&format!("{n}  passed")),
            "{line}"
        );
        assert!(line.contains(&commit[..10]), "{line} vs {commit}");
        assert!(
            line.ends_with(&format!("mmm(alpha): iteration {n}: synthetic iteration")),
            "{line}"
        );
    }

    let log = json(&mmm_at_ok(&repo, &["log", "alpha", "--json"]));
    assert_eq!(log["spec"], "alpha");
    let items = log["iterations"].as_array().expect("iterations");
    let ns: Vec<u64> = items
        .iter()
        .map(|i| i["iteration"].as_u64().expect("n"))
        .collect();
    assert_eq!(ns, [3, 2, 1]);
    let json_commits: Vec<&str> = items
        .iter()
        .map(|i| i["commit"].as_str().expect("commit"))
        .collect();
    assert_eq!(json_commits, commits);
    assert_eq!(items[0]["status"], "passed");
    assert!(
        items[0]["time"]
            .as_str()
            .expect("time")
            .starts_with("2026-01-01T")
    );
}

#[test]
fn log_columns_line_up_whatever_the_widths() {
    let repo = three_specs();
    record(&repo, "alpha", 10, None);
    let text = mmm_at_ok(&repo, &["log", "alpha"]);
    let commit_columns: Vec<usize> = text
        .lines()
        .map(|l| {
            let commit = l.split_whitespace().nth(2).expect("commit");
            l.find(commit).expect("column")
        })
        .collect();
    assert_eq!(commit_columns.len(), 10, "{text}");
    assert!(
        commit_columns.iter().all(|&c| c == commit_columns[0]),
        "{text}"
    );
    assert!(
        text.lines().last().expect("line").starts_with(" 1  passed"),
        "{text}"
    );
}

#[test]
fn log_of_an_unknown_spec_fails_with_a_hint_and_a_bad_id_is_a_usage_error() {
    let repo = three_specs();
    let out = repo.mmm(&["log", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stderr(&out), @r"
    error: no spec `nope`
    hint: `git mmm specs` lists the specs
    ");
    // A spec that exists but never ran is not unknown.
    let out = repo.mmm(&["log", "beta"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stderr(&out), @"error: spec `beta` has no iterations yet (no branch refs/heads/mmm/beta); run the loop on it first");
    // An unknown spec is an error in every command, with the closest id.
    for args in [
        &["stop", "alpah"][..],
        &["show", "alpah"],
        &["show", "alpah", "1"],
        &["rollback", "alpah", "--to", "1"],
        &["run", "alpah"],
    ] {
        let out = repo.mmm(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.starts_with("error: no spec `alpah`"), "{args:?}: {err}");
        if args[0] != "run" {
            assert!(err.contains("did you mean `alpha`?"), "{args:?}: {err}");
        }
    }
    assert!(!repo.path.join(".git/mmm/stop/alpah").exists());

    let out = repo.mmm(&["log", "Bad Name"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(stderr(&out), @r"
    error: `Bad Name` is not a valid spec id
    hint: spec ids are slugs; did you mean `bad-name`?
    ");
    let out = repo.mmm(&["show", "-", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn show_prints_commit_trailers_metrics_and_transcript() {
    let repo = three_specs();
    record(&repo, "alpha", 2, None);
    let tip = repo.git(&["rev-parse", "mmm/alpha"]);
    let first = repo.git(&["rev-parse", "mmm/alpha~1"]);

    // Default: the last iteration.
    let text = mmm_at_ok(&repo, &["show", "alpha"]);
    assert!(
        text.starts_with(&format!("commit {}", tip.trim())),
        "{text}"
    );
    assert!(text.contains("    Mmm-Spec: alpha\n"), "{text}");
    assert!(text.contains("    Mmm-Iteration: 2\n"), "{text}");
    assert!(text.contains("    Mmm-Status: passed\n"), "{text}");
    assert!(text.contains("== metrics\n-- usage"), "{text}");
    assert!(text.contains("input_tokens: 100\n"), "{text}");
    assert!(text.contains("== transcript\n-- turn"), "{text}");
    assert!(text.contains("  | work on alpha, iteration 2\n"), "{text}");

    // An explicit iteration; --metrics leaves the transcript out.
    let text = mmm_at_ok(&repo, &["show", "alpha", "1", "--metrics"]);
    assert!(
        text.starts_with(&format!("commit {}", first.trim())),
        "{text}"
    );
    assert!(text.contains("    Mmm-Iteration: 1\n"), "{text}");
    assert!(text.contains("== metrics"), "{text}");
    assert!(!text.contains("transcript"), "{text}");

    let shown = json(&mmm_at_ok(&repo, &["show", "alpha", "--json"]));
    assert_eq!(shown["spec"], "alpha");
    assert_eq!(shown["iteration"], 2);
    assert_eq!(shown["commit"], tip.trim());
    assert_eq!(shown["status"], "passed");
    assert_eq!(
        shown["message"],
        repo.git(&["log", "-1", "--format=%B", "mmm/alpha"])
            .trim_end_matches('\n')
            .to_owned()
            + "\n"
    );
    // The notes as JSON are the records git holds.
    let transcript = repo.git(&["notes", "--ref=mmm/alpha/transcripts", "show", "mmm/alpha"]);
    let records = shown["transcript"].as_array().expect("transcript records");
    assert_eq!(records.len(), transcript.lines().count());
    assert!(
        records
            .iter()
            .any(|r| r["text"] == "work on alpha, iteration 2")
    );
    let metrics = shown["metrics"].as_array().expect("metrics records");
    assert!(
        metrics
            .iter()
            .any(|r| r["kind"] == "usage" && r["input_tokens"] == 100)
    );

    let only = json(&mmm_at_ok(
        &repo,
        &["show", "alpha", "1", "--json", "--metrics"],
    ));
    assert_eq!(only["iteration"], 1);
    assert_eq!(only["transcript"], serde_json::Value::Null);
    assert!(only["metrics"].is_array());

    let out = mmm_at(&repo, &["show", "alpha", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("spec `alpha` has no iteration 9 (its branch has iterations 1..=2)"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// rollback

#[test]
fn rollback_moves_the_branch_keeps_the_old_tip_and_undo_restores_it() {
    let repo = three_specs();
    record(&repo, "alpha", 3, None);
    let tip = repo.git(&["rev-parse", "mmm/alpha"]).trim().to_owned();
    let first = repo.git(&["rev-parse", "mmm/alpha~2"]).trim().to_owned();

    let out = mmm_at_ok(&repo, &["rollback", "alpha", "--to", "1"]);
    assert!(out.contains("rolled back: mmm/alpha moved from"), "{out}");
    assert!(
        out.contains("undo with: git mmm rollback alpha --undo"),
        "{out}"
    );
    assert_eq!(repo.git(&["rev-parse", "mmm/alpha"]).trim(), first);
    let ancestor = repo.git_output(&[
        "merge-base",
        "--is-ancestor",
        &tip,
        "refs/mmm/alpha/archive",
    ]);
    assert!(
        ancestor.status.success(),
        "the old tip is kept in the archive"
    );
    // The notes of the abandoned iterations are still readable.
    let note = repo.git(&["notes", "--ref=mmm/alpha/transcripts", "show", &tip]);
    assert!(note.contains("iteration 3"), "{note}");
    repo.assert_fsck();
    let log = mmm_at_ok(&repo, &["log", "alpha"]);
    assert_eq!(log.lines().count(), 1, "{log}");

    let out = mmm_at_ok(&repo, &["rollback", "alpha", "--undo"]);
    assert!(out.starts_with("undone: mmm/alpha moved from"), "{out}");
    assert_eq!(repo.git(&["rev-parse", "mmm/alpha"]).trim(), tip);
    let note = repo.git(&["notes", "--ref=mmm/alpha/metrics", "show", "mmm/alpha"]);
    assert!(note.contains("\"kind\":\"usage\""), "{note}");
    repo.assert_fsck();

    // --to and --undo together, or neither: usage errors that change nothing.
    for args in [
        &["rollback", "alpha", "--to", "1", "--undo"][..],
        &["rollback", "alpha"][..],
    ] {
        let out = repo.mmm(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(repo.git(&["rev-parse", "mmm/alpha"]).trim(), tip);
}

// ---------------------------------------------------------------------------------------------
// doctor

#[test]
fn doctor_on_a_clean_repository_has_nothing_to_repair() {
    let repo = three_specs();
    record(&repo, "alpha", 2, None);
    let out = mmm_at_ok(&repo, &["doctor"]);
    assert_eq!(
        out,
        "nothing to repair: mmm's refs, notes and worktrees are consistent\n"
    );
    let report = json(&mmm_at_ok(&repo, &["doctor", "--json"]));
    assert_eq!(report["findings"], serde_json::json!([]));
}

#[test]
fn doctor_repairs_what_a_killed_writer_left_and_dry_run_changes_nothing() {
    let repo = three_specs();
    let killed = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .env("MMM_KILL_AT", "after-metrics-note")
        .args(["plumbing", "record", "kk", "--iterations", "2"])
        .output()
        .expect("run git-mmm");
    assert!(
        killed.status.code().is_none(),
        "killed: {:?}",
        killed.status
    );
    assert!(repo.git(&["for-each-ref", "refs/heads/mmm/"]).is_empty());
    let refs_before = repo.git(&["for-each-ref"]);

    // --dry-run reports and changes nothing.
    let dry = mmm_at_ok(&repo, &["doctor", "--dry-run"]);
    assert!(
        dry.contains("has notes but is on neither the branch nor the archive"),
        "{dry}"
    );
    assert!(dry.contains("would repair: create mmm/kk at"), "{dry}");
    assert_eq!(repo.git(&["for-each-ref"]), refs_before);
    let report = json(&mmm_at_ok(&repo, &["doctor", "--dry-run", "--json"]));
    assert_eq!(report["repaired"], false);
    let findings = report["findings"].as_array().expect("findings");
    assert!(!findings.is_empty());
    assert!(findings.iter().all(|f| f["done"] == false), "{report}");
    assert_eq!(repo.git(&["for-each-ref"]), refs_before);

    // A real run repairs: the noted commit is on the branch with both notes readable.
    let fixed = mmm_at_ok(&repo, &["doctor"]);
    assert!(fixed.contains("repaired: create mmm/kk at"), "{fixed}");
    let tip = repo.git(&["rev-parse", "mmm/kk"]);
    repo.git(&["notes", "--ref=mmm/kk/transcripts", "show", tip.trim()]);
    repo.git(&["notes", "--ref=mmm/kk/metrics", "show", tip.trim()]);
    repo.assert_fsck();

    // Second run: clean.
    let again = json(&mmm_at_ok(&repo, &["doctor", "--json"]));
    assert_eq!(again["findings"], serde_json::json!([]), "{again}");
    assert_eq!(
        mmm_at_ok(&repo, &["doctor"]),
        "nothing to repair: mmm's refs, notes and worktrees are consistent\n"
    );
}

// ---------------------------------------------------------------------------------------------
// help, version, completions, man page

const SUBCOMMANDS: &[&str] = &[
    "run",
    "stop",
    "demo",
    "init",
    "specs",
    "status",
    "log",
    "show",
    "rollback",
    "doctor",
    "config",
    "completions",
];

#[test]
fn help_and_version_exit_zero_and_an_unknown_flag_exits_two() {
    let repo = TestRepo::new();
    for flag in ["-h", "--help"] {
        let out = repo.mmm_ok(&[flag]);
        assert!(out.contains("Usage: git mmm"), "{out}");
        assert!(
            out.contains("Exit codes: 0 success, 1 failure, 2 usage error."),
            "{out}"
        );
    }
    for cmd in SUBCOMMANDS {
        let out = repo.mmm_ok(&[cmd, "-h"]);
        assert!(
            out.contains(&format!("Usage: git mmm {cmd}")),
            "{cmd}: {out}"
        );
    }
    let version = repo.mmm_ok(&["--version"]);
    assert_eq!(version, format!("git-mmm {}\n", env!("CARGO_PKG_VERSION")));
    let out = repo.mmm(&["status", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unexpected argument '--no-such-flag'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn completions_for_every_shell_and_the_man_page() {
    let repo = TestRepo::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = repo.mmm_ok(&["completions", shell]);
        assert!(out.len() > 200, "{shell}: {out}");
        assert!(out.contains("rollback"), "{shell} completes subcommands");
    }
    let man = repo.mmm_ok(&["completions", "man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH git-mmm 1"),
        "{man}"
    );
    assert!(man.contains(".TH git-mmm 1"), "{man}");
    assert!(man.contains(".SH SYNOPSIS"), "{man}");

    let out = repo.mmm_ok(&["completions", "man", "--out-dir", "man1"]);
    assert!(out.starts_with("wrote man pages to "), "{out}");
    let dir = repo.path.join("man1");
    let page = std::fs::read_to_string(dir.join("git-mmm.1")).expect("git-mmm.1 written");
    assert!(page.contains(".TH git-mmm 1"), "{page}");
    for cmd in ["status", "rollback", "doctor"] {
        let sub = dir.join(format!("git-mmm-{cmd}.1"));
        assert!(sub.exists(), "{} missing", sub.display());
    }

    let out = repo.mmm(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Every command in README.md's command table is a real command in `git mmm -h`, so the docs
/// cannot drift from the CLI.
#[test]
fn readme_command_table_matches_help() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Commands\n")
        .nth(1)
        .expect("README has a Commands section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let documented: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `git mmm "))
        .filter_map(|rest| rest.split([' ', '`']).next())
        .collect();
    assert!(documented.len() >= 9, "{documented:?}");

    let repo = TestRepo::new();
    let help = repo.mmm_ok(&["-h"]);
    let listed: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .expect("help lists commands")
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for cmd in &documented {
        assert!(
            listed.contains(cmd),
            "README documents `git mmm {cmd}`, which `git mmm -h` does not list: {listed:?}"
        );
        repo.mmm_ok(&[cmd, "-h"]);
    }
}

// ---------------------------------------------------------------------------------------------
// exit codes, stop, pipes

#[test]
fn exit_codes_are_zero_one_and_two() {
    let repo = TestRepo::new();
    assert_eq!(repo.mmm(&["status"]).status.code(), Some(0));
    // A failure: a spec that was never run has no log.
    assert_eq!(repo.mmm(&["log", "missing"]).status.code(), Some(1));
    // A usage error: a missing argument.
    assert_eq!(repo.mmm(&["log"]).status.code(), Some(2));
    // Outside a repository the store cannot open: a failure, not a crash.
    let outside = crate::support::mmm_cmd(&repo.home, &repo.home)
        .args(["log", "alpha"])
        .output()
        .expect("run git-mmm");
    assert_eq!(outside.status.code(), Some(1), "{}", stderr(&outside));
}

#[test]
fn stop_writes_the_stop_file() {
    let repo = TestRepo::new();
    let out = repo.mmm_ok(&["stop", "alpha"]);
    assert!(out.contains("asked the loop of `alpha` to stop"), "{out}");
    let file = repo.path.join(".git/mmm/stop/alpha");
    assert_eq!(std::fs::read_to_string(file).expect("stop file"), "stop\n");
    assert_eq!(repo.mmm(&["stop", "Not A Slug"]).status.code(), Some(2));
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let repo = three_specs();
    record(&repo, "alpha", 2, None);
    for args in [
        &["status", "--json"][..],
        &["log", "alpha", "--json"][..],
        &["specs", "--json"][..],
        &["show", "alpha", "--json"][..],
        &["status"][..],
        &["completions", "bash"][..],
        &["completions", "man"][..],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = repo
            .mmm_cmd()
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run git-mmm");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn directory_flag_runs_as_if_started_there() {
    let repo = three_specs();
    let parent = repo.path.parent().expect("the repo has a parent");
    let out = crate::support::mmm_cmd(parent, &repo.home)
        .args(["-C", "repo", "specs", "--json"])
        .output()
        .expect("run git-mmm");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&stdout(&out)).as_array().map(Vec::len), Some(3));
}

#[test]
fn a_bad_flag_value_is_a_usage_error() {
    let repo = three_specs();
    for (args, message) in [
        (
            &["run", "gamma", "--max-iterations", "0"][..],
            "--max-iterations",
        ),
        (&["run", "gamma", "--agent", "nosuch"][..], "--agent"),
        (&["run", "gamma", "--budget-usd=-1"][..], "--budget-usd"),
    ] {
        let out = repo.mmm(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: {message}")),
            "{args:?}: {stderr}"
        );
    }
    // A value clap itself cannot read is a usage error too.
    let out = repo.mmm(&["run", "gamma", "--max-iterations", "many"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `git log` on an mmm branch stays readable: after `git mmm init` (also on a repository an
/// older mmm configured to display its notes), a long transcript is not printed with the commit.
#[test]
fn git_log_of_an_mmm_branch_does_not_print_the_transcripts() {
    let repo = TestRepo::new();
    repo.git(&["config", "--add", "notes.displayRef", "refs/notes/mmm/*"]);
    let first = repo.mmm_ok(&["init"]);
    assert!(
        first.contains("unset notes.displayRef = refs/notes/mmm/*"),
        "{first}"
    );
    repo.write(
        "specs/hello.md",
        "# Hello\n\n## Objective\nWrite hello.txt.\n\n## Acceptance criteria\n- it says hello. verify: `grep -q hello hello.txt`\n",
    );
    // An agent whose output (the transcript) is 200 KB.
    repo.write(
        ".mmm/config.toml",
        "[agent]\nkind = \"command\"\ncommand = \"yes transcript-line | head -c 200000; echo; echo hello > hello.txt\"\ncomplete_when = \"checks\"\n",
    );
    repo.commit_all("spec");
    let out = repo.mmm_cmd().args(["run", "hello"]).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = repo.git_output(&["log", "-1", "mmm/hello"]);
    assert!(log.status.success());
    assert!(
        log.stdout.len() < 2_000,
        "git log -1 printed {} bytes",
        log.stdout.len()
    );
    let notes = repo.git(&["notes", "--ref=mmm/hello/transcripts", "show", "mmm/hello"]);
    assert!(
        notes.len() > 200_000,
        "the transcript is kept: {}",
        notes.len()
    );
}

#[test]
fn a_git_error_is_told_without_libgit2_internals_unless_verbose() {
    let repo = three_specs();
    // An unborn branch: nothing to start from.
    repo.git(&["update-ref", "-d", "refs/heads/main"]);
    let out = repo.mmm(&["run", "gamma"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr), @r"
    error: the repository has no commit to start from
      caused by: reference 'refs/heads/main' not found
    hint: commit something first (`git commit`)
    ");
    let out = repo.mmm(&["-v", "run", "gamma"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("caused by: reference 'refs/heads/main' not found; class=Reference (4)"),
        "{stderr}"
    );
}
