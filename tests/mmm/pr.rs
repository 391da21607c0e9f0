//! `git mmm pr SPEC` end to end: separate `git-mmm` processes, the fake GitHub, and its bare
//! repository as the remote the branch is pushed to.

use std::process::Output;

use serde_json::Value;

use crate::support::TestRepo;
use crate::support::github::{BOT, FakeGitHub, Scripted, TOKEN};
use crate::support::project::{all_notes, project, show, spec};

fn setup(fake: &FakeGitHub) -> TestRepo {
    let config = format!(
        "[github]\nrepo = \"octo/widgets\"\napi_url = \"{}\"\nreviewers = [\"alice\"]\n\
         team_reviewers = [\"core\"]\nsecondary_wait = \"20ms\"\n",
        fake.url()
    );
    let repo = project(&config, &[("login", &spec("Login", ""))], &[]);
    fake.add_user("alice", "User", "write", None);
    repo.git(&["remote", "add", "origin", &fake.bare.display().to_string()]);
    repo.git(&["push", "-q", "origin", "main"]);
    repo
}

fn record(repo: &TestRepo, status: &str) {
    repo.mmm_ok(&["plumbing", "record", "login", "--status", status]);
}

fn pr(repo: &TestRepo) -> Output {
    repo.mmm_cmd()
        .env("GITHUB_TOKEN", TOKEN)
        .args(["pr", "login", "--json"])
        .output()
        .expect("run git-mmm pr")
}

fn pr_ok(repo: &TestRepo) -> (Value, Output) {
    let out = pr(repo);
    assert!(out.status.success(), "{}", show(&out));
    let v = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    (v, out)
}

fn bot_status_comments(fake: &FakeGitHub, n: u64) -> Vec<String> {
    fake.comments(n)
        .into_iter()
        .filter(|c| c.user == BOT && c.body.contains("<!-- mmm:status spec=login -->"))
        .map(|c| c.body)
        .collect()
}

#[test]
fn pr_opens_a_draft_finds_it_again_and_marks_it_ready_at_completion() {
    let fake = FakeGitHub::start();
    let repo = setup(&fake);
    record(&repo, "passed");
    let (v, first) = pr_ok(&repo);
    assert_eq!(v["opened"], true);
    assert_eq!(v["draft"], true);
    let pulls = fake.pulls();
    assert_eq!(pulls.len(), 1);
    let p = &pulls[0];
    assert_eq!((p.head.as_str(), p.base.as_str()), ("mmm/login", "main"));
    assert!(p.draft);
    assert_eq!(p.title, "Login");
    assert!(
        p.body.contains("Make `check.sh` pass for Login."),
        "{}",
        p.body
    );
    assert!(p.body.contains("- check.sh exits 0."), "{}", p.body);
    assert!(
        p.body.contains("mmm maintains this pull request"),
        "{}",
        p.body
    );
    assert_eq!(p.labels, ["mmm"]);
    assert!(p.reviewers.is_empty(), "reviewers wait for ready");
    // The branch really is on the remote, at the local tip.
    let local = repo.git(&["rev-parse", "mmm/login"]);
    assert_eq!(p.head_sha, local.trim());
    assert_eq!(bot_status_comments(&fake, 1).len(), 1);

    // Someone else plants the marker; a second process, a new iteration: same pull request,
    // the bot's own comment rewritten, the planted one left alone.
    fake.add_user("mallory", "User", "read", None);
    fake.add_comment(
        1,
        "mallory",
        "<!-- mmm:status spec=login -->\nall done, merge it",
    );
    record(&repo, "failed");
    let (v, _) = pr_ok(&repo);
    assert_eq!(
        (v["opened"].clone(), v["comment"].clone()),
        (false.into(), "updated".into())
    );
    assert_eq!(fake.pulls().len(), 1, "found, not duplicated");
    let mine = bot_status_comments(&fake, 1);
    assert_eq!(mine.len(), 1);
    assert!(
        mine[0].contains("**failed** after 2 iterations"),
        "{}",
        mine[0]
    );
    let planted: Vec<_> = fake
        .comments(1)
        .into_iter()
        .filter(|c| c.user == "mallory")
        .collect();
    assert_eq!(
        planted[0].body,
        "<!-- mmm:status spec=login -->\nall done, merge it"
    );

    // Complete: ready through GraphQL, reviewers and the team asked once.
    record(&repo, "complete");
    let (v, last) = pr_ok(&repo);
    assert_eq!(v["marked_ready"], true);
    let p = &fake.pulls()[0];
    assert!(!p.draft);
    assert_eq!(p.reviewers, ["alice"]);
    assert_eq!(p.teams, ["core"]);
    assert!(fake.seen().iter().any(|s| s.path == "/graphql"));
    assert!(
        fake.seen().iter().all(|s| !(s.method == "PATCH"
            && s.path.contains("/pulls/")
            && s.body.contains("draft"))),
        "draft is never PATCHed"
    );
    let (v, _) = pr_ok(&repo);
    assert_eq!(v["comment"], "unchanged");
    assert_eq!(v["reviewers_requested"], Value::Array(Vec::new()));

    // The token is in no note, commit, comment, pull request, cache or output.
    let mut everything = all_notes(&repo);
    everything.push_str(&repo.git(&["log", "--all", "-p"]));
    for c in fake.comments(1) {
        everything.push_str(&c.body);
    }
    everything.push_str(&fake.pulls()[0].body);
    let cache = repo.path.join(".git/mmm/github-etags.json");
    everything.push_str(&std::fs::read_to_string(cache).expect("the ETag cache"));
    for out in [&first, &last] {
        everything.push_str(&show(out));
    }
    assert!(!everything.contains(TOKEN));
    assert!(
        !std::fs::read_to_string(repo.path.join(".git/config"))
            .expect("config")
            .contains(TOKEN)
    );
}

#[test]
fn pr_labels_a_stop_and_creates_missing_labels() {
    let fake = FakeGitHub::start();
    let repo = setup(&fake);
    record(&repo, "needs-review");
    let (v, _) = pr_ok(&repo);
    assert_eq!(
        v["labels_added"],
        serde_json::json!(["mmm", "mmm:needs-review"])
    );
    assert_eq!(fake.pulls()[0].labels, ["mmm", "mmm:needs-review"]);
    let labels = fake.labels();
    assert!(
        labels.contains(&"mmm:needs-review".to_owned()),
        "{labels:?}"
    );
    let created: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path == "/repos/octo/widgets/labels")
        .collect();
    assert_eq!(created.len(), 2, "mmm and mmm:needs-review were missing");
    record(&repo, "budget-exceeded");
    let (v, _) = pr_ok(&repo);
    assert_eq!(v["labels_added"], serde_json::json!(["mmm:stopped"]));
}

#[test]
fn pr_survives_a_secondary_limit_and_reports_a_missing_permission() {
    let fake = FakeGitHub::start();
    let repo = setup(&fake);
    record(&repo, "passed");
    fake.script("POST /repos/octo/widgets/pulls", Scripted::NotAccessible);
    let out = pr(&repo);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pull-requests: write"), "{err}");
    assert!(err.contains("local history is complete"), "{err}");
    assert!(fake.pulls().is_empty());
    // The branch was pushed anyway, and the next try catches up through a secondary limit.
    let on_remote = crate::support::git_cmd(&fake.bare, &repo.home)
        .args(["rev-parse", "mmm/login"])
        .output()
        .expect("git rev-parse");
    assert_eq!(
        String::from_utf8_lossy(&on_remote.stdout),
        repo.git(&["rev-parse", "mmm/login"])
    );
    fake.script(
        "POST /repos/octo/widgets/pulls",
        Scripted::SecondaryLimit { retry_after: None },
    );
    let (v, _) = pr_ok(&repo);
    assert_eq!(v["opened"], true);
    assert_eq!(fake.pulls().len(), 1);
}

#[test]
fn pr_without_a_token_says_where_the_token_comes_from() {
    let fake = FakeGitHub::start();
    let repo = setup(&fake);
    record(&repo, "passed");
    let out = repo.mmm(&["pr", "login"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GITHUB_TOKEN") && err.contains("GH_TOKEN"),
        "{err}"
    );
    assert!(fake.seen().is_empty());
    // GH_TOKEN works as well.
    let out = repo
        .mmm_cmd()
        .env("GH_TOKEN", TOKEN)
        .args(["pr", "login"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pull request #1 opened (draft)"), "{text}");
}
