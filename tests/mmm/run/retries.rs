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

/// The configuration of the fault tests: the api agent, quick retries for a short while.
fn faulty_config(extra: &str) -> String {
    format!(
        "[agent]\nkind = \"api\"\nmax_retries = 0\nretry_budget = \"20s\"\nidle_timeout = \"1s\"\n\n[validate]\ntest = \"sh check.sh\"\ntimeout = \"30s\"\n\n{extra}"
    )
}

/// What the fake billed for streams cut short, priced as the run's model.
fn interrupted_cost(billed: crate::support::fake_anthropic::Billed) -> f64 {
    let usage = mmm::agent::Usage {
        input_tokens: billed.input,
        output_tokens: billed.output,
        cache_creation_input_tokens: billed.cache_write,
        cache_read_input_tokens: billed.cache_read,
        cache_creation: None,
    };
    mmm::agent::PriceTable::builtin()
        .cost("claude-sonnet-5-5", &usage)
        .expect("a price")
}

/// Issue 11, defect 4: attempts that ended in an SSE `error` event or stalled had already
/// billed their input in `message_start`; the iteration counts them (tokens, cost) and marks
/// them as interrupted in its metrics.
#[test]
fn cut_streams_are_spent_and_marked_interrupted() {
    let cut = |n| Reply::StreamError {
        after_deltas: n,
        error_type: "overloaded_error".into(),
        text: done(),
    };
    let stall = Reply::Stall {
        after_deltas: Some(1),
        stall_ms: 10_000,
        text: done(),
    };
    let ran = Scenario::spec_s()
        .raw_config(&faulty_config(""))
        .rule(
            Rule::new(NEEDLE, cut(1))
                .then(stall)
                .then(cut(2))
                .then(Reply::Text(done())),
        )
        .run(&["run", "s", "--json"]);
    assert!(ran.out.status.success(), "{}", ran.show());
    let m = &ran.metrics("s")[0];
    assert_eq!(m["attempts"], 4, "{m}");
    let billed = ran.fake.totals().interrupted;
    assert_eq!(billed.calls, 3);
    let lost = &m["interrupted"];
    assert_eq!(lost["attempts"], 3, "{m}");
    assert_eq!(lost["tokens"]["input_tokens"], billed.input, "{m}");
    let out = lost["tokens"]["output_tokens"].as_u64().expect("output");
    assert!(out >= billed.output, "{out} < {}", billed.output);
    let lost_cost = lost["cost_usd"].as_f64().expect("cost");
    assert!(lost_cost >= interrupted_cost(billed) - 1e-12, "{m}");
    // The iteration's totals hold the cut attempts as well as the answer.
    let totals = ran.fake.totals();
    let tokens = m["tokens"]["input_tokens"].as_u64().expect("input");
    assert_eq!(tokens, totals.input + billed.input, "{m}");
    assert!(m["cost_usd"].as_f64().expect("cost") > lost_cost);
}

/// Issue 11, defect 4: a call that fails for good after its stream began still records what
/// it billed, and the spend counts against the budget.
#[test]
fn a_failed_call_records_what_it_billed() {
    let ran = Scenario::spec_s()
        .raw_config(&faulty_config("").replace("retry_budget = \"20s\"", "retry_budget = \"1ms\""))
        .rule(Rule::new(
            NEEDLE,
            Reply::StreamError {
                after_deltas: 2,
                error_type: "overloaded_error".into(),
                text: done(),
            },
        ))
        .run(&["run", "s", "--json"]);
    assert!(!ran.out.status.success(), "{}", ran.show());
    let m = &ran.metrics("s")[0];
    assert_eq!(m["status"], "error", "{m}");
    let billed = ran.fake.totals().interrupted;
    assert_eq!(
        (billed.calls, m["interrupted"]["attempts"].clone()),
        (1, 1.into())
    );
    assert_eq!(m["tokens"]["input_tokens"], billed.input, "{m}");
    assert!(m["cost_usd"].as_f64().expect("cost") >= interrupted_cost(billed) - 1e-12);
    assert!(
        ran.stdout().contains(r#""event":"finished""#),
        "{}",
        ran.show()
    );
}

/// Issue 11, defect 6: under about 30 % injected faults of every kind (429 with and without
/// `retry-after`, 529, 500, a reset connection, an SSE `error`, stalls before the headers and
/// mid-stream), every run reaches its own end: none stops on the faults.
#[test]
fn runs_reach_their_own_end_under_thirty_percent_faults() {
    let faults = [
        Reply::rate_limited_ms(5),
        Reply::error(429, "rate_limit_error", "slow down"),
        Reply::overloaded(),
        Reply::server_error(),
        Reply::DropBeforeResponse,
        Reply::StreamError {
            after_deltas: 1,
            error_type: "overloaded_error".into(),
            text: "half an answer".into(),
        },
        Reply::Stall {
            after_deltas: None,
            stall_ms: 2_000,
            text: String::new(),
        },
        Reply::Stall {
            after_deltas: Some(1),
            stall_ms: 2_000,
            text: "half an answer".into(),
        },
    ];
    // A seeded mix of bursts: three faults in a row is what stopped runs before.
    let mut seed = 0x2545_f491_u64;
    let mut fault = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        faults[(seed % faults.len() as u64) as usize].clone()
    };
    for round in 0..3 {
        // 3 faults, an answer that does not finish, 1 fault, the answer that does: 4 of 6.
        let rule = Rule::new(NEEDLE, fault())
            .then(fault())
            .then(fault())
            .then(Reply::text("Still thinking about it."))
            .then(fault())
            .then(Reply::Text(done()));
        let ran = Scenario::spec_s()
            .raw_config(&faulty_config(""))
            .rule(rule)
            .run(&["run", "s", "--json"]);
        assert!(ran.out.status.success(), "round {round}: {}", ran.show());
        assert_eq!(ran.statuses("s"), ["failed", "complete"], "round {round}");
        assert_eq!(ran.fake.requests().len(), 6, "round {round}");
    }
}
