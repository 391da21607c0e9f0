//! `git mmm event` with GitHub push payloads (the shape of contracts §4.2) against a real
//! repository: the specs each push adds or changes run, with the scripted agent.

use std::path::Path;
use std::process::Output;

use serde_json::json;

use crate::support::TestRepo;
use crate::support::project::{project, show, spec};

const ZERO: &str = "0000000000000000000000000000000000000000";

/// A project whose specs complete at once (scripted `@mmm:complete`, a passing check).
fn setup() -> TestRepo {
    let config = "[agent]\nkind = \"scripted\"\nscript = \".mmm/answers.toml\"\n";
    let answers = "[[answer]]\ntext = '''\nDone.\n@mmm:complete\n'''\n";
    project(
        config,
        &[("a", &spec("A", "")), ("b", &spec("B", ""))],
        &[(".mmm/answers.toml", answers), ("check.sh", "exit 0\n")],
    )
}

fn head(repo: &TestRepo) -> String {
    repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
}

/// A push payload as GitHub sends it (the fields mmm reads, and a few it does not).
fn payload(git_ref: &str, before: &str, after: &str, forced: bool) -> serde_json::Value {
    json!({
        "ref": git_ref, "before": before, "after": after,
        "created": before == ZERO, "deleted": after == ZERO, "forced": forced,
        "base_ref": null, "compare": "https://github.example/o/r/compare",
        "commits": [], "head_commit": null,
        "pusher": {"name": "alice", "email": "alice@example.com"},
        "repository": {"full_name": "o/r", "default_branch": "main"},
        "sender": {"login": "alice"}
    })
}

/// Writes the payload and runs `git mmm event --github-event FILE`.
fn event(repo: &TestRepo, payload: &serde_json::Value) -> Output {
    let file = repo.dir.path().join("event.json");
    std::fs::write(&file, payload.to_string()).expect("write payload");
    repo.mmm_cmd()
        .args(["event", "--github-event"])
        .arg(&file)
        .output()
        .expect("git mmm event")
}

fn mmm_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("mmm:"))
        .map(str::to_owned)
        .collect()
}

/// The last iteration number on `mmm/<spec>` (0: no branch).
fn iterations(repo: &TestRepo, spec: &str) -> usize {
    let out = repo.git_output(&[
        "log",
        "-1",
        "--format=%(trailers:key=Mmm-Iteration,valueonly)",
        &format!("refs/heads/mmm/{spec}"),
    ]);
    if !out.status.success() {
        return 0;
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn push_events_run_the_specs_they_add_or_change() {
    let repo = setup();
    let base = head(&repo);
    // A new branch (zero before): compared with the default branch, so only c runs.
    repo.git(&["checkout", "-q", "-b", "feat"]);
    repo.write("specs/c.md", &spec("C", ""));
    repo.commit_all("c");
    let out = event(
        &repo,
        &payload("refs/heads/feat", ZERO, &head(&repo), false),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(mmm_lines(&out), ["mmm: push to refs/heads/feat: running c"]);
    assert_eq!(
        (
            iterations(&repo, "a"),
            iterations(&repo, "b"),
            iterations(&repo, "c")
        ),
        (0, 0, 1)
    );

    // A normal push on main that changes b.
    repo.git(&["checkout", "-q", "main"]);
    repo.write("specs/b.md", &spec("B two", ""));
    repo.commit_all("b changes");
    let out = event(
        &repo,
        &payload("refs/heads/main", &base, &head(&repo), false),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(mmm_lines(&out), ["mmm: push to refs/heads/main: running b"]);
    assert_eq!((iterations(&repo, "a"), iterations(&repo, "b")), (0, 1));

    // A forced push of feat that drops c and adds d.
    let old_feat = repo.git(&["rev-parse", "feat"]).trim().to_owned();
    repo.git(&["checkout", "-q", "-B", "feat", "main"]);
    repo.write("specs/d.md", &spec("D", ""));
    repo.commit_all("d");
    let out = event(
        &repo,
        &payload("refs/heads/feat", &old_feat, &head(&repo), true),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        mmm_lines(&out),
        [
            "mmm: specs/c.md is deleted by this push: nothing runs for it",
            // b differs between the two tips, and ran at main's revision already.
            "mmm: b is complete at this revision: nothing to run",
            "mmm: push to refs/heads/feat (forced): running d"
        ]
    );
    assert_eq!(iterations(&repo, "d"), 1);

    // A push that only deletes a spec runs nothing.
    let before = head(&repo);
    repo.git(&["rm", "-q", "specs/a.md"]);
    repo.commit_all("a goes");
    let out = event(
        &repo,
        &payload("refs/heads/feat", &before, &head(&repo), false),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        mmm_lines(&out),
        [
            "mmm: specs/a.md is deleted by this push: nothing runs for it",
            "mmm: no spec to run for this push"
        ]
    );
    assert_eq!(iterations(&repo, "a"), 0);

    // A deleted branch.
    let out = event(&repo, &payload("refs/heads/old", &before, ZERO, false));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        mmm_lines(&out),
        ["mmm: refs/heads/old was deleted: nothing to run"]
    );
}

#[test]
fn the_event_comes_from_the_environment_and_other_events_are_named() {
    let repo = setup();
    let file = repo.dir.path().join("comment.json");
    std::fs::write(&file, "{\"action\": \"created\"}").expect("write");
    let out = repo
        .mmm_cmd()
        .arg("event")
        .env("GITHUB_EVENT_NAME", "issue_comment")
        .env("GITHUB_EVENT_PATH", &file)
        .output()
        .expect("event");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        mmm_lines(&out),
        ["mmm: the `issue_comment` event starts nothing: `git mmm event` handles push"]
    );
    // A push through the environment: the first push of main runs every spec.
    let push = repo.dir.path().join("push.json");
    std::fs::write(
        &push,
        payload("refs/heads/main", ZERO, &head(&repo), false).to_string(),
    )
    .expect("write");
    let out = repo
        .mmm_cmd()
        .arg("event")
        .env("GITHUB_EVENT_NAME", "push")
        .env("GITHUB_EVENT_PATH", Path::new(&push))
        .output()
        .expect("event");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        mmm_lines(&out),
        ["mmm: push to refs/heads/main: running a, b"]
    );
    // No payload at all: a usage error that says what to give.
    let out = repo.mmm(&["event"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GITHUB_EVENT_PATH"));
}
