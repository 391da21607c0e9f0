//! The GitHub client (`mmm::github`) against the loopback fake GitHub: pagination, ETags and
//! 304s, rate limits, typed errors, the GraphQL mutation, the "already exists" 422.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mmm::github::{
    ClientOptions, GitHub, GithubError, NewPull, Permission, ReviewHost, ReviewState, Target,
};

use crate::support::TestRepo;
use crate::support::github::{BOT, FakeGitHub, OWNER, REPO, Scripted, TOKEN};

fn target(fake: &FakeGitHub, repo: &str) -> Target {
    Target {
        owner: OWNER.into(),
        repo: repo.into(),
        api_url: fake.url(),
        graphql_url: format!("{}/graphql", fake.url()),
    }
}

fn client_with(fake: &FakeGitHub, token: &str, cache: Option<&TestRepo>) -> GitHub {
    let mut opts = ClientOptions::new(target(fake, REPO), token);
    opts.secondary_wait = Duration::from_millis(20);
    opts.cache_file = cache.map(|r| r.path.join(".git/mmm/github-etags.json"));
    GitHub::new(opts).expect("client")
}

fn client(fake: &FakeGitHub) -> GitHub {
    client_with(fake, TOKEN, None)
}

/// Pushes `main` and `mmm/<spec>` (one commit ahead) to the fake's repository.
fn pushed(fake: &FakeGitHub, spec: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.git(&["checkout", "-q", "-b", &format!("mmm/{spec}")]);
    repo.write("work.txt", "work\n");
    repo.commit_all("work");
    let bare = fake.bare.display().to_string();
    repo.git(&["push", "-q", &bare, "main", &format!("mmm/{spec}")]);
    repo
}

#[test]
fn lists_read_every_page_and_polls_with_etags_for_free() {
    let fake = FakeGitHub::start();
    let repo = pushed(&fake, "many");
    let n = fake.add_pull("mmm/many", "main", BOT, true);
    fake.add_user("alice", "User", "write", None);
    let comments: Vec<(String, u64, String)> = (0..205)
        .map(|i| (format!("src/f{i}.rs"), i + 1, format!("fix {i}")))
        .collect();
    let refs: Vec<(&str, u64, &str)> = comments
        .iter()
        .map(|(p, l, b)| (p.as_str(), *l, b.as_str()))
        .collect();
    fake.add_review(n, "alice", "CHANGES_REQUESTED", "please", &refs);
    let gh = client_with(&fake, TOKEN, Some(&repo));

    let got = gh.review_comments(n).expect("review comments");
    assert_eq!(got.len(), 205, "all three pages are read");
    assert_eq!(got[204].path, "src/f204.rs");
    assert_eq!(got[204].line, Some(205));
    assert_eq!(
        got[0].user.as_ref().map(|u| u.login.as_str()),
        Some("alice")
    );
    let pages: Vec<String> = fake
        .seen()
        .iter()
        .filter(|s| s.path.contains("/pulls/1/comments"))
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages[2].contains("page=3"), "{pages:?}");

    // The second poll sends the stored ETags and gets 304s, which do not count.
    let again = gh.review_comments(n).expect("again");
    assert_eq!(again, got);
    let calls = gh.calls();
    let e = calls.0["GET /repos/{owner}/{repo}/pulls/{n}/comments"];
    assert_eq!((e.counted, e.not_modified), (3, 3));
    let statuses: Vec<u16> = fake.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [200, 200, 200, 304, 304, 304]);
    assert!(
        fake.seen()[3..]
            .iter()
            .all(|s| s.header("if-none-match").is_some())
    );

    // The cache survives the process (a new client), and may be thrown away.
    let fresh = client_with(&fake, TOKEN, Some(&repo));
    assert_eq!(fresh.review_comments(n).expect("fresh").len(), 205);
    assert_eq!(fresh.calls().not_modified(), 3);
    std::fs::remove_file(repo.path.join(".git/mmm/github-etags.json")).expect("rm cache");
    let cold = client_with(&fake, TOKEN, Some(&repo));
    assert_eq!(cold.review_comments(n).expect("cold").len(), 205);
    assert_eq!(cold.calls().counted(), 3);

    let reviews = gh.reviews(n).expect("reviews");
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].state, ReviewState::ChangesRequested);
    assert_eq!(reviews[0].body, "please");
}

#[test]
fn every_request_carries_the_token_and_the_api_version() {
    let fake = FakeGitHub::start();
    let gh = client(&fake);
    assert_eq!(gh.whoami().expect("whoami").login, BOT);
    assert_eq!(gh.whoami().expect("remembered").login, BOT);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "the login is learnt once");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(seen[0].header("x-github-api-version"), Some("2022-11-28"));
}

#[test]
fn an_actions_token_that_cannot_read_user_is_github_actions() {
    let fake = FakeGitHub::start();
    fake.script("GET /user", Scripted::NotAccessible);
    let me = client(&fake).whoami().expect("falls back");
    assert_eq!(me.login, "github-actions[bot]");
    assert!(me.is_bot());
}

#[test]
fn an_existing_pull_request_is_found_not_duplicated() {
    let fake = FakeGitHub::start();
    let _repo = pushed(&fake, "dup");
    let n = fake.add_pull("mmm/dup", "main", "someone", true);
    fake.add_user("someone", "User", "write", None);
    let gh = client(&fake);
    let new = NewPull {
        title: "Dup".into(),
        body: "b".into(),
        head: "mmm/dup".into(),
        base: "main".into(),
        draft: true,
    };
    let pr = gh.open_pull(&new).expect("the 422 means: find it");
    assert_eq!(pr.number, n);
    assert_eq!(fake.pulls().len(), 1);
    let statuses: Vec<(String, u16)> = fake
        .seen()
        .iter()
        .map(|s| (s.method.clone(), s.status))
        .collect();
    assert_eq!(
        statuses,
        [("POST".to_owned(), 422), ("GET".to_owned(), 200)]
    );
}

#[test]
fn a_head_that_was_never_pushed_is_refused() {
    let fake = FakeGitHub::start();
    let _repo = pushed(&fake, "real");
    let gh = client(&fake);
    let new = NewPull {
        title: "Ghost".into(),
        body: String::new(),
        head: "mmm/ghost".into(),
        base: "main".into(),
        draft: true,
    };
    let err = gh.open_pull(&new).expect_err("no such head on the remote");
    assert!(
        matches!(&err, GithubError::Invalid { errors, .. } if errors.iter().any(|e| e.contains("head invalid"))),
        "{err}"
    );
}

#[test]
fn primary_and_secondary_rate_limits_are_waited_out() {
    let fake = FakeGitHub::start();
    let _repo = pushed(&fake, "rl");
    let n = fake.add_pull("mmm/rl", "main", BOT, true);
    let gh = client(&fake);
    fake.script(
        "GET /repos/octo/widgets/pulls/1/reviews",
        Scripted::PrimaryExhausted { reset_in: 1 },
    );
    assert!(gh.reviews(n).expect("after the reset").is_empty());
    fake.script(
        "POST /repos/octo/widgets/issues/1/comments",
        Scripted::SecondaryLimit { retry_after: None },
    );
    fake.script(
        "POST /repos/octo/widgets/issues/1/comments",
        Scripted::SecondaryLimit { retry_after: None },
    );
    gh.create_comment(n, "hello").expect("after two back-offs");
    assert_eq!(fake.comments(n).len(), 1, "written once");
    let posts: Vec<u16> = fake
        .seen()
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.status)
        .collect();
    assert_eq!(posts, [403, 403, 201]);
    let counted = gh.calls().0["POST /repos/{owner}/{repo}/issues/{n}/comments"].counted;
    assert_eq!(counted, 3);

    // Bounded: a limit that does not lift is an error after the tries.
    for _ in 0..5 {
        fake.script(
            "PATCH /repos/octo/widgets/issues/comments",
            Scripted::SecondaryLimit { retry_after: None },
        );
    }
    let id = fake.comments(n)[0].id;
    let err = gh.update_comment(id, "again").expect_err("still limited");
    assert!(matches!(err, GithubError::RateLimited { .. }), "{err}");
    assert!(err.to_string().contains("secondary rate limit"), "{err}");
}

#[test]
fn forbidden_says_which_permission_is_missing() {
    let fake = FakeGitHub::start();
    let _repo = pushed(&fake, "perm");
    let n = fake.add_pull("mmm/perm", "main", BOT, true);
    let gh = client(&fake);
    fake.script(
        "POST /repos/octo/widgets/issues/1/labels",
        Scripted::NotAccessible,
    );
    let err = gh.add_labels(n, &["mmm".into()]).expect_err("403");
    assert!(
        matches!(
            err,
            GithubError::NotAccessible {
                permission: "issues: write",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("permissions: issues: write"),
        "{err}"
    );
    fake.script("POST /repos/octo/widgets/pulls", Scripted::NotAccessible);
    let new = NewPull {
        title: "t".into(),
        body: String::new(),
        head: "mmm/perm".into(),
        base: "main".into(),
        draft: true,
    };
    let err = gh.open_pull(&new).expect_err("403");
    assert!(err.to_string().contains("pull-requests: write"), "{err}");
}

#[test]
fn bad_token_wrong_repository_and_no_server_are_typed_errors() {
    let fake = FakeGitHub::start();
    let bad = client_with(&fake, "ghp_wrong", None);
    assert!(matches!(
        bad.whoami(),
        Err(GithubError::Unauthorized { .. })
    ));

    let mut opts = ClientOptions::new(target(&fake, "nope"), TOKEN);
    opts.secondary_wait = Duration::from_millis(20);
    let wrong = GitHub::new(opts).expect("client");
    let err = wrong.reviews(1).expect_err("404");
    assert!(matches!(err, GithubError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("octo/nope"), "{err}");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let gone = Target {
        owner: OWNER.into(),
        repo: REPO.into(),
        api_url: format!("http://127.0.0.1:{port}"),
        graphql_url: format!("http://127.0.0.1:{port}/graphql"),
    };
    let down = GitHub::new(ClientOptions::new(gone, TOKEN)).expect("client");
    assert!(matches!(
        down.whoami(),
        Err(GithubError::Unreachable { .. })
    ));
}

#[test]
fn ready_for_review_goes_through_graphql() {
    let fake = FakeGitHub::start();
    let _repo = pushed(&fake, "ready");
    fake.add_pull("mmm/ready", "main", BOT, true);
    let gh = client(&fake);
    let pr = gh.find_pull("mmm/ready").expect("find").expect("open");
    assert!(pr.draft);
    gh.mark_ready(&pr).expect("ready");
    assert!(!fake.pulls()[0].draft);
    let last = fake.seen().pop().expect("a request");
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("POST", "/graphql")
    );
    assert!(last.body.contains("markPullRequestReadyForReview"));

    let mut ghost = pr.clone();
    ghost.node_id = "PR_nothing".into();
    let err = gh.mark_ready(&ghost).expect_err("GraphQL errors in a 200");
    assert!(matches!(err, GithubError::GraphQl { .. }), "{err}");
}

#[test]
fn permissions_are_asked_once_per_user() {
    let fake = FakeGitHub::start();
    fake.add_user("alice", "User", "write", None);
    fake.add_user("eve", "User", "read", None);
    let gh = client(&fake);
    assert_eq!(gh.permission("alice").expect("alice"), Permission::Write);
    assert_eq!(gh.permission("eve").expect("eve"), Permission::Read);
    assert_eq!(
        gh.permission("stranger").expect("unknown"),
        Permission::None
    );
    assert_eq!(gh.permission("alice").expect("cached"), Permission::Write);
    assert_eq!(fake.seen().len(), 3);
    assert!(Permission::Write.can_steer() && !Permission::Read.can_steer());
}

/// The fake itself: a body that does not match endpoints.json is a 422, as GitHub answers.
#[test]
fn the_fake_rejects_bodies_that_do_not_match_the_schema() {
    let fake = FakeGitHub::start();
    let addr = fake.url().trim_start_matches("http://").to_owned();
    let post = |path: &str, body: &str, auth: bool| {
        let mut s = TcpStream::connect(&addr).expect("connect");
        let auth = if auth {
            format!("authorization: Bearer {TOKEN}\r\n")
        } else {
            String::new()
        };
        write!(
            s,
            "POST {path} HTTP/1.1\r\nhost: x\r\n{auth}x-github-api-version: 2022-11-28\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read");
        answer
    };
    let a = post(
        "/repos/octo/widgets/pulls",
        r#"{"head": 5, "base": "main"}"#,
        true,
    );
    assert!(a.starts_with("HTTP/1.1 422"), "{a}");
    assert!(a.contains("Validation Failed"), "{a}");
    let a = post(
        "/repos/octo/widgets/issues/1/comments",
        r#"{"text": "no body"}"#,
        true,
    );
    assert!(
        a.starts_with("HTTP/1.1 422") && a.contains("missing_field"),
        "{a}"
    );
    let a = post(
        "/repos/octo/widgets/issues/1/labels",
        r#"{"labels": []}"#,
        true,
    );
    assert!(a.starts_with("HTTP/1.1 422"), "{a}");
    let a = post(
        "/repos/octo/widgets/issues/1/comments",
        r#"{"body": "x"}"#,
        false,
    );
    assert!(a.starts_with("HTTP/1.1 401"), "{a}");
}
