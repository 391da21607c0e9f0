//! Retries through a whole run: the iteration still completes, and the attempts are recorded.

use crate::support::fake_anthropic::{FakeAnthropic, Reply, Rule};
use crate::support::project::{
    assert_clean, iterations, metrics, project, run_api, show, spec, transcript,
};
use crate::support::scenario::{CHECK, NEEDLE, config, done};

/// One run whose first call fails with `failure` and whose retry succeeds.
fn completes_after(failure: Reply) {
    let fake = FakeAnthropic::start(vec![Rule::fail_then(
        NEEDLE,
        1,
        failure,
        Reply::Text(done()),
    )]);
    let repo = project(
        &config(""),
        &[("s", &spec("s", ""))],
        &[("check.sh", CHECK)],
    );
    let out = run_api(&repo, &fake, &["run", "s", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(fake.requests().len(), 2);
    let its = iterations(&repo, "s");
    assert_eq!(its.len(), 1, "the retry happens inside the iteration");
    assert_eq!(its[0].status(), "complete");
    let m = metrics(&repo, "s", &its[0].commit);
    assert_eq!(m["attempts"], 2, "{m}");
    let t = transcript(&repo, "s", &its[0].commit);
    let response = t
        .iter()
        .find(|r| r["kind"] == "response")
        .expect("response");
    assert_eq!(response["attempts"], 2);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""event":"retry""#), "{stdout}");
    assert_clean(&repo);
}

#[test]
fn rate_limited_with_retry_after_ms() {
    completes_after(Reply::rate_limited_ms(20));
}

#[test]
fn rate_limited_with_retry_after_seconds() {
    completes_after(
        Reply::error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
        )
        .with_header("retry-after", "1"),
    );
}

#[test]
fn overloaded_529() {
    completes_after(Reply::overloaded());
}

#[test]
fn internal_server_error_500() {
    completes_after(Reply::server_error());
}

#[test]
fn dropped_connection() {
    completes_after(Reply::DropBeforeResponse);
}

#[test]
fn dropped_mid_stream() {
    completes_after(Reply::DropMidStream {
        after_deltas: 1,
        text: done(),
    });
}

#[test]
fn error_event_mid_stream() {
    completes_after(Reply::StreamError {
        after_deltas: 1,
        error_type: "overloaded_error".into(),
        text: done(),
    });
}
