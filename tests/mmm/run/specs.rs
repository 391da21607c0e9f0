//! Specs as a new user writes them: one broken spec among sound ones.

use crate::support::TestRepo;
use crate::support::fake_anthropic::Reply;
use crate::support::project::{show, write_file};
use crate::support::scenario::{NEEDLE, Scenario, done};

/// A spec with four problems: a misspelt key, a bad value, no objective and an absolute
/// context path.
const BROKEN: &str = "+++\nprority = \"high\"\ntimeout = \"soon\"\n+++\n# Broken\n\n\
                      ## Acceptance criteria\n\n- works\n\n## Context\n\n- `/etc/passwd`\n";

#[test]
fn one_bad_spec_stays_one_bad_spec() {
    let p = Scenario::spec_s()
        .spec("other", "")
        .spec_text("broken", BROKEN)
        .answer(NEEDLE, Reply::Text(done()))
        .build();

    // `status` lists the broken spec with its first problem, the others as they are.
    let out = p.repo.mmm(&["status"]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |spec: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{spec} ")))
            .unwrap_or_else(|| panic!("no row for {spec}: {stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("s"), "s 0 - - not run yet");
    assert_eq!(line("other"), "other 0 - - not run yet");
    assert_eq!(
        line("broken"),
        "broken 0 - - has 4 problem(s), left out of runs: specs/broken.md:2:1: unknown \
         front-matter key `prority` (did you mean `priority`?)"
    );
    // Every problem, each with its line and column, at once.
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr), @r#"
    warning: 4 problem(s) in the specs; the specs they name are left out until fixed:
      specs/broken.md:2:1: unknown front-matter key `prority` (did you mean `priority`?)
      specs/broken.md:3:1: front-matter key `timeout`: `soon` is not a duration
      specs/broken.md:5:1: spec has no objective (a `## Objective` section saying what to build)
      specs/broken.md:13:1: context item `/etc/passwd` is not a valid path or glob: it must be relative to the repository root
    hint: rename the key to `priority`
    hint: write a duration such as "30m" or "2h"
    hint: add a `## Objective` section with a sentence or two on what the change must achieve
    hint: write one path or glob per list item, e.g. `src/auth/**/*.rs`
    "#);
    let json: serde_json::Value =
        serde_json::from_slice(&p.repo.mmm(&["status", "--json"]).stdout).expect("json");
    let broken = &json["specs"][0];
    assert_eq!(broken["spec"], "broken");
    assert_eq!(broken["path"], "specs/broken.md");
    assert_eq!(broken["errors"].as_array().map(Vec::len), Some(4));
    assert_eq!(json["specs"][1]["errors"], serde_json::json!([]));

    // Naming a sound spec runs it.
    let out = p.run(&["run", "s"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(p.statuses("s"), ["complete"]);

    // Naming the broken one is an error that lists its problems.
    let out = p.run(&["run", "broken"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: 4 problem(s) in the specs:\n"),
        "{stderr}"
    );
    assert!(no_branch(&p.repo, "broken"));

    // A run of every spec runs the sound ones, then reports the broken one and fails.
    let out = p.run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(p.statuses("other"), ["complete"]);
    assert_eq!(
        p.statuses("s"),
        ["complete"],
        "a complete spec is not run again"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "error: 4 problem(s) in 1 spec file(s) kept them from running: specs/broken.md"
        ),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 spec(s) run, 1 complete"), "{stdout}");
}

#[test]
fn a_spec_that_depends_on_a_broken_spec_is_left_out_too() {
    let p = Scenario::spec_s()
        .spec("after", "depends_on = [\"broken\"]")
        .spec_text("broken", BROKEN)
        .answer(NEEDLE, Reply::Text(done()))
        .build();
    let out = p.run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(p.statuses("s"), ["complete"]);
    assert!(no_branch(&p.repo, "after"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("specs/after.md:2: spec `after` depends on `broken`, which has errors"),
        "{stderr}"
    );
    let out = p.run(&["run", "after"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hint: fix `broken` first"),
        "{}",
        show(&out)
    );
}

/// Whether `spec` has no branch: it never ran.
fn no_branch(repo: &TestRepo, spec: &str) -> bool {
    !repo
        .git_output(&[
            "rev-parse",
            "--verify",
            "-q",
            &format!("refs/heads/mmm/{spec}"),
        ])
        .status
        .success()
}

#[test]
fn fresh_starts_a_spec_again_from_the_current_head_and_status_says_when_its_base_is_behind() {
    let p = Scenario::spec_s()
        .answer(NEEDLE, Reply::Text(done()))
        .build();
    let out = p.run(&["run", "s"]);
    assert!(out.status.success(), "{}", show(&out));
    let old_tip = p.repo.git(&["rev-parse", "refs/heads/mmm/s"]);

    // main moves on by two commits.
    p.repo.write("later.txt", "1\n");
    p.repo.commit_all("later, 1");
    p.repo.write("later.txt", "2\n");
    p.repo.commit_all("later, 2");
    let status = p.repo.mmm_ok(&["status"]);
    assert!(
        status.contains(
            "base is 2 commit(s) behind HEAD (`git mmm run s --fresh` starts again from it)"
        ),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&p.repo.mmm(&["status", "--json"]).stdout).expect("json");
    assert_eq!(json["specs"][0]["behind"], 2);

    // `--fresh` needs the specs it starts again.
    assert_eq!(p.run(&["run", "--fresh"]).status.code(), Some(2));

    let out = p.run(&["run", "s", "--fresh"]);
    assert!(out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is kept in refs/mmm/s/archive; starting again from HEAD"),
        "{stderr}"
    );
    // One new iteration, started from the current HEAD; the old attempt is in the archive.
    assert_eq!(p.statuses("s"), ["complete"]);
    assert_eq!(
        p.repo.git(&["rev-parse", "refs/heads/mmm/s^"]),
        p.repo.git(&["rev-parse", "HEAD"])
    );
    let archived = p.repo.git(&["log", "--format=%B", "refs/mmm/s/archive"]);
    assert!(
        archived.contains(&format!("Mmm-Archived: {}", old_tip.trim())),
        "{archived}"
    );
    let status = p.repo.mmm_ok(&["status"]);
    assert!(!status.contains("behind"), "{status}");
    p.repo.git(&["fsck", "--strict"]);
}

#[test]
fn rebase_replays_the_iterations_onto_head_with_their_notes_and_stops_cleanly_on_a_conflict() {
    let p = Scenario::spec_s()
        .answer(NEEDLE, Reply::Text(done()))
        .build();
    let out = p.run(&["run", "s"]);
    assert!(out.status.success(), "{}", show(&out));
    let old_tip = p.repo.git(&["rev-parse", "refs/heads/mmm/s"]);
    p.repo.write("later.txt", "1\n");
    p.repo.commit_all("later");

    let out = p.repo.mmm_ok(&["rebase", "s"]);
    assert!(
        out.starts_with("rebased: 1 iteration(s) of mmm/s now start from "),
        "{out}"
    );
    let head = p.repo.git(&["rev-parse", "HEAD"]);
    assert_eq!(p.repo.git(&["rev-parse", "refs/heads/mmm/s^"]), head);
    // The iteration keeps its change, its trailers and its notes; the project's new file is
    // there too.
    assert_eq!(
        p.repo.git(&["show", "refs/heads/mmm/s:done.txt"]).trim(),
        "ok"
    );
    assert_eq!(p.repo.git(&["show", "refs/heads/mmm/s:later.txt"]), "1\n");
    assert_eq!(p.statuses("s"), ["complete"]);
    assert_eq!(p.metrics("s")[0]["stop_reason"], "complete");
    let transcript = p.repo.git(&[
        "notes",
        "--ref=refs/notes/mmm/s/transcripts",
        "show",
        "refs/heads/mmm/s",
    ]);
    assert!(transcript.contains("\"prompt\""), "{transcript}");
    let archived = p.repo.git(&["log", "--format=%B", "refs/mmm/s/archive"]);
    assert!(archived.contains(&format!("Mmm-Archived: {}", old_tip.trim())));
    assert!(!p.repo.mmm_ok(&["status"]).contains("behind"));
    assert_eq!(
        p.repo.mmm_ok(&["rebase", "s"]).trim_end(),
        format!("mmm/s already starts from {}: nothing to do", &head[..10])
    );

    // HEAD writes the file the iteration writes: the change no longer applies.
    p.repo.write("done.txt", "something else\n");
    p.repo.commit_all("a done.txt of our own");
    let before = p.repo.git(&["rev-parse", "refs/heads/mmm/s"]);
    let out = p.repo.mmm(&["rebase", "s", "--onto", "main"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("iteration 1 of `s` does not apply on ")
            && stderr.contains(": done.txt conflict(s); nothing was changed")
            && stderr.contains("hint: `git mmm run s --fresh` starts the spec again from HEAD"),
        "{stderr}"
    );
    assert_eq!(p.repo.git(&["rev-parse", "refs/heads/mmm/s"]), before);
    assert_eq!(
        p.repo
            .mmm(&["rebase", "s", "--onto", "nosuch"])
            .status
            .code(),
        Some(2)
    );
    p.repo.git(&["fsck", "--strict"]);
}

/// The `api` agent, no gate, one iteration per spec.
const ONE_SHOT: &str = "[agent]\nkind = \"api\"\nmax_retries = 3\n\n[loop]\nmax_iterations = 1\n";

/// A spec whose prompt contains `needle` and whose one criterion is `verify`.
fn spec_text(front: &str, needle: &str, verify: &str) -> String {
    format!(
        "+++\n{front}\n+++\n# {needle}\n\n## Objective\n\n{needle}.\n\n## Acceptance criteria\n\n\
         - It works. verify: `{verify}`\n"
    )
}

/// An answer that writes `path` and says the spec is complete.
fn writes(path: &str, content: &str) -> Reply {
    Reply::Text(format!(
        "{}\n@mmm:summary wrote {path}\n@mmm:complete\n",
        write_file(path, content)
    ))
}

#[test]
fn a_spec_that_depends_on_another_starts_from_its_code() {
    let p = Scenario::new()
        .raw_config(ONE_SHOT)
        .spec_text(
            "first",
            &spec_text("", "Add greet", "sh -c '. ./lib.sh && greet'"),
        )
        .spec_text(
            "second",
            &spec_text(
                "depends_on = [\"first\"]",
                "Call greet",
                "sh main.sh | grep -q hello",
            ),
        )
        // The dependent's prompt names its dependency: its rule comes first.
        .answer("Call greet", writes("main.sh", ". ./lib.sh\ngreet\n"))
        .answer("Add greet", writes("lib.sh", "greet() { echo hello; }\n"))
        .build();
    let out = p.run(&["run"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(p.statuses("first"), ["complete"]);
    // The second spec's worktree had the function the first one added.
    assert_eq!(p.statuses("second"), ["complete"]);
    assert_eq!(
        p.repo.git(&["rev-parse", "refs/heads/mmm/second^"]),
        p.repo.git(&["rev-parse", "refs/heads/mmm/first"])
    );
}

#[test]
fn a_spec_that_depends_on_several_starts_from_a_merge_of_their_branches() {
    let p = Scenario::new()
        .raw_config(ONE_SHOT)
        .spec_text("a", &spec_text("", "Write a", "test -e a.txt"))
        .spec_text("b", &spec_text("", "Write b", "test -e b.txt"))
        .spec_text(
            "c",
            &spec_text(
                "depends_on = [\"a\", \"b\"]",
                "Write c",
                "test -e a.txt && test -e b.txt && test -e c.txt",
            ),
        )
        .answer("Write c", writes("c.txt", "c\n"))
        .answer("Write a", writes("a.txt", "a\n"))
        .answer("Write b", writes("b.txt", "b\n"))
        .build();
    let out = p.run(&["run"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(p.statuses("c"), ["complete"]);
    // The first iteration's parent is the merge, recorded with both branches as parents.
    let merge = p
        .repo
        .git(&["rev-list", "--parents", "-n1", "refs/heads/mmm/c^"]);
    let ids: Vec<&str> = merge.split_whitespace().collect();
    assert_eq!(ids.len(), 3, "{merge}");
    assert_eq!(
        ids[1],
        p.repo.git(&["rev-parse", "refs/heads/mmm/a"]).trim()
    );
    assert_eq!(
        ids[2],
        p.repo.git(&["rev-parse", "refs/heads/mmm/b"]).trim()
    );
    let message = p
        .repo
        .git(&["log", "-1", "--format=%s", "refs/heads/mmm/c^"]);
    assert_eq!(message.trim(), "mmm(c): start from the branches of a, b");
    p.repo.git(&["fsck", "--strict"]);
}

#[test]
fn dependencies_whose_branches_conflict_stop_the_spec_with_the_reason() {
    let p = Scenario::new()
        .raw_config(ONE_SHOT)
        .spec_text("a", &spec_text("", "Write a", "test -e same.txt"))
        .spec_text("b", &spec_text("", "Write b", "test -e same.txt"))
        .spec_text(
            "c",
            &spec_text("depends_on = [\"a\", \"b\"]", "Write c", "true"),
        )
        .answer("Write a", writes("same.txt", "from a\n"))
        .answer("Write b", writes("same.txt", "from b\n"))
        .build();
    let out = p.run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(p.statuses("a"), ["complete"]);
    assert_eq!(p.statuses("b"), ["complete"]);
    assert!(no_branch(&p.repo, "c"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "the branches of the specs it depends on (a, b) conflict in same.txt; merge them \
             by hand into one of them, or run them one after the other"
        ),
        "{stdout}"
    );
}

#[test]
fn fresh_refuses_while_another_process_runs_the_spec_and_loses_nothing() {
    // The agent waits for `go` (outside the repository) before it answers; `started` says it
    // is in its call.
    let gate = tempfile::tempdir().expect("tempdir");
    let (go, started) = (gate.path().join("go"), gate.path().join("started"));
    let agent = gate.path().join("agent.sh");
    std::fs::write(
        &agent,
        format!(
            "touch '{}'\nwhile [ ! -e '{}' ]; do sleep 0.05; done\necho 'Nothing yet.'\n",
            started.display(),
            go.display()
        ),
    )
    .expect("agent");
    let p = Scenario::spec_s()
        .raw_config(&format!(
            "[agent]\nkind = \"command\"\ncommand = \"sh {}\"\n\n[loop]\nmax_iterations = 1\nstuck_after = 5\n\n[validate]\ntest = \"sh check.sh\"\n",
            agent.display()
        ))
        .build();
    std::fs::write(&go, "").expect("go");
    let out = p.repo.mmm(&["run", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let first_tip = p.repo.git(&["rev-parse", "refs/heads/mmm/s"]);

    // A second run of the spec is under way in another process, in its agent's call.
    std::fs::remove_file(&go).expect("rm go");
    std::fs::remove_file(&started).expect("rm started");
    let mut running = p
        .repo
        .mmm_cmd()
        .args(["run", "s", "--max-iterations", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let fresh = p.repo.mmm(&["run", "s", "--fresh"]);
    assert_eq!(fresh.status.code(), Some(1), "{}", show(&fresh));
    let stderr = String::from_utf8_lossy(&fresh.stderr);
    assert!(
        stderr.contains("spec `s` is already being run by mmm"),
        "{stderr}"
    );
    // Nothing was archived or removed.
    assert_eq!(p.repo.git(&["rev-parse", "refs/heads/mmm/s"]), first_tip);
    assert!(
        !p.repo
            .git_output(&["rev-parse", "--verify", "-q", "refs/mmm/s/archive"])
            .status
            .success()
    );

    // The run in flight records its iteration on top of the first one.
    std::fs::write(&go, "").expect("go");
    let status = running.wait().expect("wait");
    assert_eq!(status.code(), Some(1));
    assert_eq!(p.statuses("s"), ["max-iterations", "max-iterations"]);
    assert_eq!(
        p.repo.git(&["rev-parse", "refs/heads/mmm/s^"]),
        first_tip,
        "the second iteration sits on the first"
    );
    // With no run in flight, --fresh goes ahead and keeps the whole attempt in the archive.
    let out = p.repo.mmm(&["run", "s", "--fresh"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let tip = p.repo.git(&["rev-parse", "refs/mmm/s/archive"]);
    let archived = p.repo.git(&["log", "--format=%B", "-1", tip.trim()]);
    assert!(archived.contains("Mmm-Archived: "), "{archived}");
    p.repo.git(&["fsck", "--strict"]);
}

#[test]
fn each_iteration_names_its_base_and_status_reads_it_from_the_tip() {
    let repo = TestRepo::new();
    repo.write("specs/s.md", &crate::support::project::spec("s", ""));
    repo.write("specs/old.md", &crate::support::project::spec("old", ""));
    repo.commit_all("specs");
    let base = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    repo.mmm_ok(&["plumbing", "record", "s", "--iterations", "3"]);
    let bases = |branch: &str| {
        repo.git(&[
            "log",
            "--format=%(trailers:key=Mmm-Base,valueonly,separator=)",
            branch,
            "--not",
            "main",
        ])
    };
    assert_eq!(bases("mmm/s"), format!("{base}\n").repeat(3));

    // An attempt written before the trailer existed: two iteration commits without it.
    let tree = repo.git(&["rev-parse", "HEAD^{tree}"]).trim().to_owned();
    let mut parent = base.clone();
    for n in 1..=2 {
        let msg = format!(
            "mmm(old): iteration {n}: x\n\nMmm-Spec: old\nMmm-Iteration: {n}\nMmm-Run: R\nMmm-Status: failed\n"
        );
        parent = repo
            .git(&["commit-tree", &tree, "-p", &parent, "-m", &msg])
            .trim()
            .to_owned();
    }
    repo.git(&["update-ref", "refs/heads/mmm/old", &parent]);

    // main moves on by two commits: both specs are two behind, the old one by the walk.
    for k in 1..=2 {
        repo.write("later.txt", &format!("{k}\n"));
        repo.commit_all("later");
    }
    let behind = |spec: &str| {
        let json: serde_json::Value =
            serde_json::from_str(&repo.mmm_ok(&["status", "--json"])).expect("json");
        json["specs"]
            .as_array()
            .expect("specs")
            .iter()
            .find(|s| s["spec"] == spec)
            .map(|s| s["behind"].clone())
            .expect("the spec")
    };
    assert_eq!(behind("s"), 2);
    assert_eq!(behind("old"), 2);
    // The next iteration of the old attempt names the base it found by the walk.
    repo.mmm_ok(&["plumbing", "record", "old", "--iterations", "1"]);
    assert_eq!(bases("mmm/old").lines().next(), Some(base.as_str()));

    // A rebase onto HEAD gives the replayed iterations their new base.
    repo.mmm_ok(&["rebase", "s"]);
    let head = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    assert_eq!(bases("mmm/s"), format!("{head}\n").repeat(3));
    assert_eq!(behind("s"), 0);
    repo.git(&["fsck", "--strict"]);
}
