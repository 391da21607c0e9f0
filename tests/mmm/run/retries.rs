//! Retries through a whole run: the iteration still completes, and the attempts are recorded.

use crate::support::fake_anthropic::{Reply, Rule};
use crate::support::project::{assert_clean, transcript};
use crate::support::scenario::{NEEDLE, Scenario, done};

/// One run whose first call fails with `failure` and whose retry succeeds.
fn completes_after(failure: Reply) {
    let ran = Scenario::spec_s()
        .rule(Rule::fail_then(NEEDLE, 1, failure, Reply::Text(done())))
        .run(&["run", "s", "--json"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    assert_eq!(ran.fake.requests().len(), 2);
    let its = ran.iterations("s");
    assert_eq!(its.len(), 1, "the retry happens inside the iteration");
    assert_eq!(its[0].status(), "complete");
    let m = &ran.metrics("s")[0];
    assert_eq!(m["attempts"], 2, "{m}");
    let t = transcript(&ran.repo, "s", &its[0].commit);
    let response = t
        .iter()
        .find(|r| r["kind"] == "response")
        .expect("response");
    assert_eq!(response["attempts"], 2);
    let stdout = ran.stdout();
    assert!(stdout.contains(r#""event":"retry""#), "{stdout}");
    assert_clean(&ran.repo);
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
