//! Tests of the api area: the Messages API client against the loopback fake, and prices.

use std::collections::BTreeMap;
use std::time::Duration;

use mmm::agent::anthropic::{API_VERSION_2023, API_VERSION_2026};
use mmm::agent::{
    ApiError, Auth, Client, ClientConfig, ContentBlock, Message, MessagesRequest, ModelPrice,
    PriceTable, StreamEvent, TextBlock, Usage,
};
use serde_json::json;

use crate::support::fake_anthropic::{FakeAnthropic, KEY, Reply, Rule};

const MODEL: &str = "claude-opus-5-5";

fn config(fake: &FakeAnthropic, auth: Auth, version: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(auth);
    cfg.base_url = fake.base_url();
    cfg.anthropic_version = version.to_string();
    // Backoff without a server delay stays tiny so tests do not wait.
    cfg.retry.initial_backoff = Duration::from_millis(1);
    cfg.retry.max_backoff = Duration::from_millis(4);
    // Retries by count only, unless a test gives them time.
    cfg.retry.retry_budget = Duration::ZERO;
    cfg
}

fn client(fake: &FakeAnthropic) -> Client {
    Client::new(config(fake, Auth::ApiKey(KEY.into()), API_VERSION_2023)).expect("client")
}

fn ask(text: &str) -> MessagesRequest {
    MessagesRequest::new(MODEL, 1024, vec![Message::user(text)])
}

/// Streams `req`, returning the answer and every event seen.
async fn stream(
    c: &Client,
    req: &MessagesRequest,
) -> (Result<mmm::agent::Response, ApiError>, Vec<StreamEvent>) {
    let mut events = Vec::new();
    let r = c.stream(req, |e| events.push(e)).await;
    (r, events)
}

fn deltas(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn streams_text_with_both_auth_styles_and_both_versions() {
    let answer = "Hello from the fake model, in several pieces.";
    let fake = FakeAnthropic::start(vec![Rule::new("greet me", Reply::text(answer))]);
    let cases = [
        (Auth::ApiKey(KEY.into()), API_VERSION_2023),
        (Auth::Bearer(KEY.into()), API_VERSION_2023),
        (Auth::ApiKey(KEY.into()), API_VERSION_2026),
        (Auth::Bearer(KEY.into()), API_VERSION_2026),
    ];
    for (i, (auth, version)) in cases.into_iter().enumerate() {
        let bearer = matches!(auth, Auth::Bearer(_));
        let c = Client::new(config(&fake, auth, version)).expect("client");
        let (r, events) = stream(&c, &ask("please greet me")).await;
        let r = r.expect("answer");
        assert_eq!(r.text, answer);
        assert_eq!(deltas(&events).concat(), answer);
        assert!(deltas(&events).len() >= 3, "streamed in pieces: {events:?}");
        assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(r.model, MODEL);
        assert!(r.id.starts_with("msg_"));
        assert!(
            r.request_id
                .as_deref()
                .is_some_and(|id| id.starts_with("req_"))
        );
        assert_eq!(r.attempts, 1);

        let seen = &fake.requests()[i];
        assert_eq!(seen.path, "/v1/messages");
        assert_eq!(seen.header("anthropic-version"), Some(version));
        if bearer {
            assert_eq!(
                seen.header("authorization"),
                Some(format!("Bearer {KEY}").as_str())
            );
            assert_eq!(seen.header("x-api-key"), None);
        } else {
            assert_eq!(seen.header("x-api-key"), Some(KEY));
            assert_eq!(seen.header("authorization"), None);
        }
        let body = seen.json();
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["messages"][0]["content"][0]["type"], json!("text"));
        for k in ["temperature", "top_p", "top_k"] {
            assert!(body.get(k).is_none(), "{k} must never be sent");
        }
    }
}

#[tokio::test]
async fn tool_use_input_is_reassembled_from_partial_json() {
    let input = r#"{"command": "echo \"hi\" && ls", "nested": {"n": [1, 2, 3]}, "é": "ünïcode"}"#;
    let fake = FakeAnthropic::start(vec![Rule::new(
        "use a tool",
        Reply::ToolUse {
            text: "Running it.".into(),
            name: "Bash".into(),
            input_json: input.into(),
        },
    )]);
    let (r, events) = stream(&client(&fake), &ask("use a tool")).await;
    let r = r.expect("answer");
    assert_eq!(r.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(r.text, "Running it.");
    assert_eq!(r.content.len(), 2);
    let ContentBlock::ToolUse {
        name,
        input: got,
        id,
        ..
    } = &r.content[1]
    else {
        panic!("second block is the tool call: {:?}", r.content);
    };
    assert_eq!(name, "Bash");
    assert!(id.starts_with("toolu_"));
    assert_eq!(
        got,
        &serde_json::from_str::<serde_json::Value>(input).expect("json")
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, StreamEvent::ToolUseStart { name, .. } if name == "Bash"))
    );
}

#[tokio::test]
async fn usage_is_taken_from_the_last_cumulative_message_delta() {
    let answer = "x".repeat(101); // 26 output tokens at 4 bytes a token
    let fake = FakeAnthropic::start(vec![Rule::new("count", Reply::text(&answer))]);
    let (r, events) = stream(&client(&fake), &ask("count")).await;
    let r = r.expect("answer");
    let totals = fake.totals();
    assert_eq!(r.usage.output_tokens, 26);
    assert_eq!(r.usage.output_tokens, totals.output);
    assert_eq!(r.usage.input_tokens, totals.input);
    assert!(r.usage.input_tokens > 0);
    // The fake sends two message_delta events (13 then 26 output tokens).
    let outs: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Usage(u) => Some(u.output_tokens),
            _ => None,
        })
        .collect();
    assert_eq!(outs, vec![13, 26]);
}

#[tokio::test]
async fn rate_limit_retry_after_ms_is_honoured() {
    let fake = FakeAnthropic::start(vec![Rule::fail_then(
        "busy",
        2,
        Reply::rate_limited_ms(40),
        Reply::text("finally"),
    )]);
    let (r, events) = stream(&client(&fake), &ask("busy?")).await;
    let r = r.expect("answer after retries");
    assert_eq!(r.text, "finally");
    assert_eq!(r.attempts, 3);
    let seen = fake.requests();
    assert_eq!(seen.len(), 3);
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(40), "waited only {gap:?}");
    }
    let counts: Vec<_> = seen
        .iter()
        .map(|s| s.header("x-mmm-retry-count").map(String::from))
        .collect();
    assert_eq!(
        counts,
        vec![Some("0".into()), Some("1".into()), Some("2".into())]
    );
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Retry { attempt, delay, .. } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        vec![
            (1, Duration::from_millis(40)),
            (2, Duration::from_millis(40))
        ]
    );
}

#[tokio::test]
async fn overloaded_and_server_errors_are_retried() {
    let fake = FakeAnthropic::start(vec![
        Rule::new("a529", Reply::overloaded()).then(Reply::text("ok 529")),
        Rule::new("a500", Reply::server_error())
            .then(Reply::server_error())
            .then(Reply::text("ok 500")),
    ]);
    let c = client(&fake);
    let r = c.stream(&ask("a529"), |_| {}).await.expect("529 retried");
    assert_eq!((r.text.as_str(), r.attempts), ("ok 529", 2));
    let r = c.stream(&ask("a500"), |_| {}).await.expect("500 retried");
    assert_eq!((r.text.as_str(), r.attempts), ("ok 500", 3));
    assert_eq!(fake.requests().len(), 5);
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let fake = FakeAnthropic::start(vec![
        Rule::new("before", Reply::DropBeforeResponse).then(Reply::text("after a reset")),
        Rule::new(
            "midway",
            Reply::DropMidStream {
                after_deltas: 1,
                text: "partial text that is cut".into(),
            },
        )
        .then(Reply::text("whole text")),
    ]);
    let c = client(&fake);
    let r = c
        .stream(&ask("drop before"), |_| {})
        .await
        .expect("retried");
    assert_eq!((r.text.as_str(), r.attempts), ("after a reset", 2));
    let (r, events) = stream(&c, &ask("drop midway")).await;
    let r = r.expect("retried");
    assert_eq!((r.text.as_str(), r.attempts), ("whole text", 2));
    // The cut attempt's text was shown, then voided by a Retry event.
    let retry_at = events
        .iter()
        .position(|e| matches!(e, StreamEvent::Retry { .. }))
        .expect("a retry event");
    assert_eq!(deltas(&events[..retry_at]).concat(), "partial ");
    assert_eq!(deltas(&events[retry_at..]).concat(), "whole text");
}

#[tokio::test]
async fn mid_stream_overload_error_then_success() {
    let fake = FakeAnthropic::start(vec![Rule::fail_then(
        "flaky",
        1,
        Reply::StreamError {
            after_deltas: 2,
            error_type: "overloaded_error".into(),
            text: "abandoned answer text".into(),
        },
        Reply::text("good answer"),
    )]);
    let (r, events) = stream(&client(&fake), &ask("flaky")).await;
    let r = r.expect("answer");
    assert_eq!(r.text, "good answer");
    assert_eq!(r.attempts, 2);
    let reasons: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Retry { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec!["stream error (overloaded_error): Overloaded".to_string()]
    );
}

#[tokio::test]
async fn a_non_retryable_stream_error_is_returned() {
    let fake = FakeAnthropic::start(vec![Rule::new(
        "bad",
        Reply::StreamError {
            after_deltas: 1,
            error_type: "invalid_request_error".into(),
            text: "nope nope".into(),
        },
    )]);
    let err = client(&fake)
        .stream(&ask("bad"), |_| {})
        .await
        .expect_err("fails");
    assert!(
        matches!(&err, ApiError::Stream { error_type, .. } if error_type == "invalid_request_error"),
        "{err}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn exhausted_retries_report_the_last_error() {
    let fake = FakeAnthropic::start(vec![Rule::new("always", Reply::overloaded())]);
    let err = client(&fake)
        .stream(&ask("always busy"), |_| {})
        .await
        .expect_err("gives up");
    assert_eq!(fake.requests().len(), 3, "max_retries 2 = 3 attempts");
    assert!(matches!(err, ApiError::Exhausted { attempts: 3, .. }));
    assert!(!err.is_critical());
    assert_eq!(err.status(), Some(529));
    insta::assert_snapshot!(err, @r#"gave up after 3 attempts: API error (HTTP 529, overloaded_error): Overloaded (hint: the API is overloaded; try again later)"#);
}

#[tokio::test]
async fn wrong_key_is_not_retried_and_is_critical() {
    let fake = FakeAnthropic::start(vec![Rule::new("hi", Reply::text("never"))]);
    let c = Client::new(config(
        &fake,
        Auth::ApiKey("sk-ant-wrong".into()),
        API_VERSION_2023,
    ))
    .expect("client");
    let err = c.stream(&ask("hi"), |_| {}).await.expect_err("401");
    assert_eq!(fake.requests().len(), 1);
    assert!(err.is_critical());
    assert!(
        !err.to_string().contains("sk-ant-wrong"),
        "the key never appears"
    );
    insta::assert_snapshot!(err, @r#"authentication failed (HTTP 401): invalid x-api-key (hint: check ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN)"#);
}

#[tokio::test]
async fn spend_limit_is_not_retried_and_stops_the_run() {
    let fake = FakeAnthropic::start(vec![
        Rule::new("spend", Reply::spend_limit()).then(Reply::text("never")),
    ]);
    let err = client(&fake)
        .stream(&ask("spend"), |_| {})
        .await
        .expect_err("spend limit");
    assert_eq!(fake.requests().len(), 1);
    assert!(
        matches!(&err, ApiError::SpendLimit { error_code, .. } if error_code == "enforced_spend_limit_reached")
    );
    assert!(err.is_critical());
    insta::assert_snapshot!(err, @r#"spend limit reached (enforced_spend_limit_reached): You have reached your spend limit (hint: raise the spend limit in the Anthropic console; retrying will not help)"#);
}

#[tokio::test]
async fn not_found_and_x_should_retry_false_are_not_retried() {
    let fake = FakeAnthropic::start(vec![
        Rule::new(
            "missing",
            Reply::error(404, "not_found_error", "model: claude-nope"),
        ),
        Rule::new(
            "nope",
            Reply::overloaded().with_header("x-should-retry", "false"),
        ),
    ]);
    let c = client(&fake);
    let err = c.stream(&ask("missing"), |_| {}).await.expect_err("404");
    insta::assert_snapshot!(err, @r#"not found (HTTP 404): model: claude-nope (hint: check the model id and the base URL)"#);
    let err = c
        .stream(&ask("nope"), |_| {})
        .await
        .expect_err("529 not retried");
    assert!(matches!(err, ApiError::Status { status: 529, .. }), "{err}");
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn second_request_with_the_same_prefix_reads_the_cache() {
    let fake = FakeAnthropic::start(vec![Rule::new("iteration", Reply::text("done"))]);
    let c = client(&fake);
    let stable = "Project instructions and the spec. ".repeat(200);
    let mut req = ask("iteration 1: the failures");
    req.system = vec![
        TextBlock::new("You write code."),
        TextBlock::new(&stable).cached(),
    ];
    let first = c.stream(&req, |_| {}).await.expect("first");
    assert!(
        first.usage.cache_creation_input_tokens > 1000,
        "{:?}",
        first.usage
    );
    assert_eq!(first.usage.cache_read_input_tokens, 0);

    req.messages = vec![Message::user(
        "iteration 2: other failures, longer than before",
    )];
    let second = c.stream(&req, |_| {}).await.expect("second");
    assert_eq!(
        second.usage.cache_read_input_tokens,
        first.usage.cache_creation_input_tokens
    );
    assert_eq!(second.usage.cache_creation_input_tokens, 0);
    assert!(second.usage.input_tokens < 100, "{:?}", second.usage);

    // The cache is per model.
    req.model = "claude-sonnet-5-5".into();
    let other = c.stream(&req, |_| {}).await.expect("other model");
    assert_eq!(other.usage.cache_read_input_tokens, 0);
    assert_eq!(
        other.usage.cache_creation_input_tokens,
        first.usage.cache_creation_input_tokens
    );

    let t = fake.totals();
    assert_eq!(t.cache_read, second.usage.cache_read_input_tokens);
    assert_eq!(t.cache_write, 2 * first.usage.cache_creation_input_tokens);
}

#[tokio::test]
async fn base_url_path_prefix_is_kept() {
    let fake = FakeAnthropic::start(vec![Rule::new("prefix", Reply::text("ok"))]);
    let mut cfg = config(&fake, Auth::ApiKey(KEY.into()), API_VERSION_2023);
    cfg.base_url = format!("{}/some/prefix/", fake.base_url());
    let c = Client::new(cfg).expect("client");
    let r = c.stream(&ask("prefix"), |_| {}).await.expect("answer");
    assert_eq!(r.text, "ok");
    let n = c.count_tokens(&ask("prefix")).await.expect("count");
    assert!(n > 0);
    let paths: Vec<_> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        vec![
            "/some/prefix/v1/messages",
            "/some/prefix/v1/messages/count_tokens"
        ]
    );
}

#[tokio::test]
async fn non_streaming_create_and_beta_header() {
    let fake = FakeAnthropic::start(vec![Rule::new("plain", Reply::text("a JSON answer"))]);
    let mut cfg = config(&fake, Auth::Bearer(KEY.into()), API_VERSION_2026);
    cfg.beta = vec!["one-2026-01-01".into(), "two-2026-02-02".into()];
    let c = Client::new(cfg).expect("client");
    let r = c.create(&ask("plain please")).await.expect("answer");
    assert_eq!(r.text, "a JSON answer");
    assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
    assert!(r.usage.output_tokens > 0);
    let seen = &fake.requests()[0];
    assert_eq!(seen.json().get("stream"), None);
    assert_eq!(
        seen.header("anthropic-beta"),
        Some("one-2026-01-01,two-2026-02-02")
    );
}

#[tokio::test]
async fn bad_base_url_is_a_config_error() {
    let mut cfg = ClientConfig::new(Auth::ApiKey(KEY.into()));
    cfg.base_url = "not a url".into();
    let err = Client::new(cfg).expect_err("bad url");
    assert!(err.is_critical());
    insta::assert_snapshot!(err, @r#"invalid API client configuration: base URL "not a url": relative URL without a base"#);
}

#[test]
fn prices_follow_models_md() {
    let t = PriceTable::builtin();
    let u = |i, o| Usage {
        input_tokens: i,
        output_tokens: o,
        ..Usage::default()
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    // contracts §1.10: Claude Code reported these totals.
    assert!(close(
        t.cost("claude-opus-5-5", &u(10, 12)).expect("opus"),
        0.00028
    ));
    assert!(close(t.cost("opus", &u(10, 12)).expect("alias"), 0.00028));
    assert!(close(
        t.cost("claude-haiku-5-5", &u(10, 12)).expect("haiku"),
        7e-6
    ));
    // Cache reads and writes.
    let cached = Usage {
        input_tokens: 100,
        output_tokens: 1000,
        cache_creation_input_tokens: 2000,
        cache_read_input_tokens: 10_000,
        cache_creation: None,
    };
    let want = (100.0 * 2.0 + 1000.0 * 10.0 + 2000.0 * 2.5 + 10_000.0 * 0.10) / 1e6;
    assert!(close(
        t.cost("claude-sonnet-5-5", &cached).expect("sonnet"),
        want
    ));
    // Haiku 5.5 above 100k prompt tokens: the whole request at the higher tier.
    let long = Usage {
        input_tokens: 90_000,
        cache_read_input_tokens: 20_000,
        output_tokens: 1000,
        ..Usage::default()
    };
    let want = (90_000.0 * 0.50 + 20_000.0 * 0.05 + 1000.0 * 2.50) / 1e6;
    assert!(close(t.cost("haiku", &long).expect("haiku long"), want));
    assert_eq!(t.cost("claude-unknown-9", &u(1, 1)), None);
    assert_eq!(t.max_output("claude-opus-4-5-20251101"), Some(64000));
    assert_eq!(t.max_output("nope"), None);

    let mut over = BTreeMap::new();
    over.insert(
        "my-proxy-model".to_string(),
        ModelPrice {
            input: 1.0,
            output: 2.0,
            cache_write_5m: 1.25,
            cache_write_1h: 2.0,
            cache_read: 0.1,
            max_output: Some(4096),
            long_prompt: None,
        },
    );
    let t = t.with_overrides(over);
    assert!(close(
        t.cost("my-proxy-model", &u(1_000_000, 1_000_000))
            .expect("override"),
        3.0
    ));
    assert_eq!(t.max_output("my-proxy-model"), Some(4096));
}

#[tokio::test]
async fn the_fake_enforces_the_documented_request_rules() {
    let fake = FakeAnthropic::start(vec![Rule::new("hi", Reply::text("hello"))]);
    let http = reqwest::Client::new();
    let post = |path: &str, version: Option<&str>, body: serde_json::Value| {
        let mut rb = http
            .post(format!("{}{path}", fake.base_url()))
            .header("x-api-key", KEY)
            .json(&body);
        if let Some(v) = version {
            rb = rb.header("anthropic-version", v);
        }
        rb.send()
    };
    let body =
        json!({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});

    let r = post(
        "/v1/messages?beta=true",
        Some(API_VERSION_2023),
        body.clone(),
    )
    .await
    .expect("send");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["request-id"]
            .to_str()
            .expect("ascii")
            .starts_with("req_")
    );
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["content"][0]["text"], json!("hello"));

    let r = post("/v1/messages", None, body.clone())
        .await
        .expect("send");
    assert_eq!(r.status(), 400, "anthropic-version is required");

    let mut sampled = body.clone();
    sampled["temperature"] = json!(1.0);
    let r = post("/v1/messages", Some(API_VERSION_2023), sampled.clone())
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "2023-06-01 tolerates temperature");
    let r = post("/v1/messages", Some(API_VERSION_2026), sampled)
        .await
        .expect("send");
    assert_eq!(r.status(), 400, "2026-10-21 rejects temperature");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"]["type"], json!("invalid_request_error"));
    assert!(
        v["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_"))
    );

    let r = post(
        "/v1/messages/count_tokens?beta=true",
        Some(API_VERSION_2023),
        body,
    )
    .await
    .expect("send");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(v["input_tokens"].as_u64().is_some_and(|n| n > 0));
}

/// Issue 11, defect 5: a stream that goes silent (before its headers or mid-answer) fails after
/// the idle timeout, not the whole request timeout, and is retried.
#[tokio::test]
async fn a_stalled_stream_fails_fast_and_is_retried() {
    for after_deltas in [None, Some(1)] {
        let fake = FakeAnthropic::start(vec![Rule::fail_then(
            "stall",
            1,
            Reply::Stall {
                after_deltas,
                stall_ms: 20_000,
                text: "never finished".into(),
            },
            Reply::text("after the stall"),
        )]);
        let mut cfg = config(&fake, Auth::ApiKey(KEY.into()), API_VERSION_2023);
        cfg.idle_timeout = Duration::from_secs(1);
        let c = Client::new(cfg).expect("client");
        let t = std::time::Instant::now();
        let (r, events) = stream(&c, &ask("stall here")).await;
        let r = r.expect("the retry succeeds");
        assert_eq!((r.text.as_str(), r.attempts), ("after the stall", 2));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let reason = events
            .iter()
            .find_map(|e| match e {
                StreamEvent::Retry { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .expect("a retry event");
        assert!(reason.contains("silent"), "{reason}");
    }
}

/// Issue 11, defect 6: a burst of rate-limit and overload answers longer than `max_retries`
/// is waited out within the retry budget; only one that outlasts the budget ends the call.
#[tokio::test]
async fn a_fault_burst_is_waited_out_within_the_retry_budget() {
    let burst = Rule::new("burst", Reply::overloaded())
        .then(Reply::rate_limited_ms(5))
        .then(Reply::server_error())
        .then(Reply::overloaded())
        .then(Reply::rate_limited_ms(5))
        .then(Reply::text("through"));
    let fake = FakeAnthropic::start(vec![burst]);
    let mut cfg = config(&fake, Auth::ApiKey(KEY.into()), API_VERSION_2023);
    cfg.retry.retry_budget = Duration::from_secs(30);
    let r = Client::new(cfg)
        .expect("client")
        .stream(&ask("burst"), |_| {})
        .await
        .expect("the burst is waited out");
    assert_eq!((r.text.as_str(), r.attempts), ("through", 6));

    let fake = FakeAnthropic::start(vec![Rule::new("always", Reply::overloaded())]);
    let mut cfg = config(&fake, Auth::ApiKey(KEY.into()), API_VERSION_2023);
    // Long enough for more than max_retries attempts on a loaded machine (5 ms apart).
    cfg.retry.retry_budget = Duration::from_secs(2);
    let t = std::time::Instant::now();
    let err = Client::new(cfg)
        .expect("client")
        .stream(&ask("always busy"), |_| {})
        .await
        .expect_err("a persistent failure ends the call");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let attempts = fake.requests().len();
    assert!(
        attempts > 3,
        "more than max_retries within the budget: {attempts}"
    );
    assert!(matches!(err, ApiError::Exhausted { attempts: a, .. } if a as usize == attempts));
}
