//! A fake Anthropic Messages API on loopback, faithful to contracts.md §1 (checklist §1.11).
//!
//! Real HTTP/1.1 over `std::net::TcpListener` on 127.0.0.1:0, one thread per connection,
//! `connection: close` on every response. It accepts `POST …/v1/messages` and
//! `…/v1/messages/count_tokens` under any path prefix and with any query string; auth by
//! `x-api-key` or `Authorization: Bearer` ([`KEY`]); `anthropic-version` required; under
//! `2026-10-21` `temperature`/`top_p`/`top_k` are rejected. Every response has a
//! `request-id: req_…` header. Streams are chunked `text/event-stream` with an `event:` line on
//! every record, a `ping`, and cumulative usage in `message_delta`.
//!
//! Replies are scripted by request content: the first [`Rule`] whose needle occurs in the
//! request's text (system blocks, message text, tool results) answers. A rule holds a sequence
//! of replies and a counter, so its n-th matching request gets reply n (the last one repeats):
//! "fail twice, then succeed" is three replies.
//!
//! Token accounting is an estimate: a block costs `ceil(bytes / 4)` tokens of its canonical JSON
//! (sorted keys, `cache_control` removed). Prompt cache: the prefix up to each `cache_control`
//! breakpoint (tools → system → messages) is remembered per model once a response completes; a
//! later request whose prefix matches reports it as `cache_read_input_tokens`, otherwise the
//! prefix up to the last breakpoint is `cache_creation_input_tokens`. `input_tokens` is the rest.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use serde_json::{Value, json};

/// The only API key (or bearer token) the fake accepts.
pub const KEY: &str = "sk-ant-fake-key";

/// One scripted behaviour.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A text answer (streamed in several deltas).
    Text(String),
    /// Some text, then a `tool_use` block whose input JSON is streamed in small fragments.
    ToolUse {
        /// Text before the tool call (may be empty: then no text block).
        text: String,
        /// Tool name.
        name: String,
        /// The input as JSON text.
        input_json: String,
    },
    /// An HTTP error with the documented body.
    Error(ErrorReply),
    /// Close the socket right after reading the request, sending nothing.
    DropBeforeResponse,
    /// Stream `text`, but cut the connection after `after_deltas` text deltas.
    DropMidStream {
        /// Deltas sent before the cut.
        after_deltas: usize,
        /// The text that would have been sent.
        text: String,
    },
    /// Stream the first `after_deltas` deltas of `text`, wait `pause_ms`, then the rest (a
    /// long answer, for checkpoints of text streamed so far).
    Pause {
        /// Deltas sent before the pause.
        after_deltas: usize,
        /// How long the stream stalls.
        pause_ms: u64,
        /// The whole text.
        text: String,
    },
    /// Go silent for `stall_ms` before the response headers (`after_deltas: None`) or after
    /// `message_start` and that many text deltas, then close the connection: a hung API.
    Stall {
        /// Deltas sent before the stall (`None`: not even the headers).
        after_deltas: Option<usize>,
        /// How long it stays silent before it closes.
        stall_ms: u64,
        /// The text that would have been sent.
        text: String,
    },
    /// Stream `text`, then an `event: error` after `after_deltas` deltas. A non-streaming
    /// request matched by this reply gets the whole text as JSON (the SDKs' fallback).
    StreamError {
        /// Deltas sent before the error.
        after_deltas: usize,
        /// `error.type`, e.g. `overloaded_error`.
        error_type: String,
        /// The text that would have been sent.
        text: String,
    },
}

/// An error response.
#[derive(Debug, Clone)]
pub struct ErrorReply {
    /// HTTP status.
    pub status: u16,
    /// `error.type`.
    pub error_type: String,
    /// `error.message`.
    pub message: String,
    /// `error.details.error_code`, if any.
    pub error_code: Option<String>,
    /// Extra response headers (`retry-after`, `retry-after-ms`, `x-should-retry`).
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// A text answer.
    pub fn text(t: &str) -> Reply {
        Reply::Text(t.to_string())
    }

    /// An error reply with the documented body and no extra headers.
    pub fn error(status: u16, error_type: &str, message: &str) -> Reply {
        Reply::Error(ErrorReply {
            status,
            error_type: error_type.into(),
            message: message.into(),
            error_code: None,
            headers: Vec::new(),
        })
    }

    /// 429 `rate_limit_error` with `retry-after-ms`.
    pub fn rate_limited_ms(ms: u64) -> Reply {
        Reply::error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
        )
        .with_header("retry-after-ms", &ms.to_string())
        .with_header("retry-after", "1")
    }

    /// 529 `overloaded_error` with a short `retry-after-ms`.
    pub fn overloaded() -> Reply {
        Reply::error(529, "overloaded_error", "Overloaded").with_header("retry-after-ms", "5")
    }

    /// 500 `api_error` (no delay header: the client backs off).
    pub fn server_error() -> Reply {
        Reply::error(500, "api_error", "Internal server error")
    }

    /// 429 with `details.error_code = enforced_spend_limit_reached`.
    pub fn spend_limit() -> Reply {
        let mut r = Reply::error(429, "rate_limit_error", "You have reached your spend limit")
            .with_header("retry-after-ms", "5");
        if let Reply::Error(e) = &mut r {
            e.error_code = Some("enforced_spend_limit_reached".into());
        }
        r
    }

    /// The same error reply with one more header.
    pub fn with_header(mut self, k: &str, v: &str) -> Reply {
        if let Reply::Error(e) = &mut self {
            e.headers.push((k.into(), v.into()));
        }
        self
    }
}

/// Replies for requests whose text contains `needle`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Substring looked for in the request's text.
    pub needle: String,
    /// The n-th matching request gets `replies[n]`; the last one repeats.
    pub replies: Vec<Reply>,
}

impl Rule {
    /// A rule with one reply.
    pub fn new(needle: &str, reply: Reply) -> Rule {
        Rule {
            needle: needle.into(),
            replies: vec![reply],
        }
    }

    /// `failure` for the first `n` matching requests, then `success`.
    pub fn fail_then(needle: &str, n: usize, failure: Reply, success: Reply) -> Rule {
        let mut replies = vec![failure; n];
        replies.push(success);
        Rule {
            needle: needle.into(),
            replies,
        }
    }

    /// The same rule with one more reply in its sequence.
    pub fn then(mut self, reply: Reply) -> Rule {
        self.replies.push(reply);
        self
    }
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, ….
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body text.
    pub body: String,
    /// When the request was read in full.
    pub at: Instant,
    /// Index of the rule that answered, if any.
    pub rule: Option<usize>,
}

impl Recorded {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Token totals over every completed answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input served from the cache.
    pub cache_read: u64,
    /// Input written to the cache.
    pub cache_write: u64,
    /// What streams that began (`message_start` sent, with its usage) but never finished
    /// billed: their input and cache tokens and the output of the deltas sent.
    pub interrupted: Billed,
}

/// Tokens billed by streams cut short.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billed {
    /// Streams that began and did not finish.
    pub calls: u64,
    /// Uncached input tokens.
    pub input: u64,
    /// Input written to the cache.
    pub cache_write: u64,
    /// Input served from the cache.
    pub cache_read: u64,
    /// Output tokens of the text sent before the cut.
    pub output: u64,
}

/// A seeded mix of faults the fake puts in place of its scripted replies (the API-fault
/// torture): each `POST /v1/messages` is, with probability `percent`/100, answered by one of
/// [`FAULT_KINDS`] (drawn evenly) instead of the rule's reply, which the next request gets.
#[derive(Debug, Clone, Copy)]
pub struct FaultMix {
    /// State of the splitmix64 generator that draws the faults.
    pub seed: u64,
    /// Chance of a fault per request, in percent.
    pub percent: u64,
    /// How long a stalled stream stays silent before the fake closes it.
    pub stall_ms: u64,
}

/// The faults of a [`FaultMix`], by name.
pub const FAULT_KINDS: [&str; 9] = [
    "429 retry-after",
    "429 bare",
    "529",
    "500",
    "reset before response",
    "reset mid-stream",
    "sse error mid-stream",
    "stall before headers",
    "stall mid-stream",
];

impl FaultMix {
    fn next(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The fault for this request, if one is drawn: its kind's index and the reply. `text` is
    /// the scripted answer a cut stream begins to send.
    fn draw(&mut self, text: &str) -> Option<(usize, Reply)> {
        if self.next() % 100 >= self.percent {
            return None;
        }
        let kind = (self.next() % FAULT_KINDS.len() as u64) as usize;
        let text = if text.is_empty() {
            "a partial answer"
        } else {
            text
        }
        .to_owned();
        let after_deltas = 1 + (self.next() % 2) as usize;
        let reply = match kind {
            0 => Reply::rate_limited_ms(1 + self.next() % 20),
            1 => Reply::error(
                429,
                "rate_limit_error",
                "Number of requests has exceeded your rate limit",
            ),
            2 => Reply::overloaded(),
            3 => Reply::server_error(),
            4 => Reply::DropBeforeResponse,
            5 => Reply::DropMidStream { after_deltas, text },
            6 => Reply::StreamError {
                after_deltas,
                error_type: "overloaded_error".into(),
                text,
            },
            7 => Reply::Stall {
                after_deltas: None,
                stall_ms: self.stall_ms,
                text,
            },
            _ => Reply::Stall {
                after_deltas: Some(after_deltas),
                stall_ms: self.stall_ms,
                text,
            },
        };
        Some((kind, reply))
    }
}

#[derive(Default)]
struct State {
    faults: Option<FaultMix>,
    /// Faults injected, by index in [`FAULT_KINDS`].
    injected: [u64; FAULT_KINDS.len()],
    rules: Vec<Rule>,
    counters: Vec<usize>,
    requests: Vec<Recorded>,
    totals: Totals,
    cache: HashSet<(String, String)>,
    min_cache_tokens: u64,
    next_id: u64,
}

/// The running fake; stops when dropped.
pub struct FakeAnthropic {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAnthropic {
    /// Starts a fake answering with `rules`.
    pub fn start(rules: Vec<Rule>) -> FakeAnthropic {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            counters: vec![0; rules.len()],
            rules,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, &st);
                });
            }
        });
        FakeAnthropic {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Prompts shorter than this many tokens up to a breakpoint are not cached (default 0).
    pub fn set_min_cache_tokens(&self, n: u64) {
        self.lock().min_cache_tokens = n;
    }

    /// From now on, answers requests with faults drawn from `mix`.
    pub fn inject_faults(&self, mix: FaultMix) {
        self.lock().faults = Some(mix);
    }

    /// How many faults of each of [`FAULT_KINDS`] were injected.
    pub fn injected(&self) -> [u64; FAULT_KINDS.len()] {
        self.lock().injected
    }

    /// Every request seen, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Token totals.
    pub fn totals(&self) -> Totals {
        self.lock().totals
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn handle(mut conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let rec = Recorded {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
        rule: None,
    };
    let (rid, index) = {
        let mut st = lock(state);
        st.next_id += 1;
        st.requests.push(rec.clone());
        (format!("req_fake{:06}", st.next_id), st.requests.len() - 1)
    };
    let w = &mut conn;
    let route = rec.path.split('?').next().unwrap_or_default();
    if rec.method != "POST"
        || !(route.ends_with("/v1/messages") || route.ends_with("/v1/messages/count_tokens"))
    {
        return send_error(w, &rid, 404, "not_found_error", "Not found", None, &[]);
    }
    let authed = rec.header("x-api-key") == Some(KEY)
        || rec.header("authorization") == Some(&format!("Bearer {KEY}"));
    if !authed {
        return send_error(
            w,
            &rid,
            401,
            "authentication_error",
            "invalid x-api-key",
            None,
            &[],
        );
    }
    let version = rec.header("anthropic-version").unwrap_or_default();
    if !matches!(version, "2023-06-01" | "2026-10-21") {
        let msg = format!("anthropic-version: invalid or missing ({version:?})");
        return send_error(w, &rid, 400, "invalid_request_error", &msg, None, &[]);
    }
    let req = rec.json();
    if !req.is_object() || req.get("model").and_then(Value::as_str).is_none() {
        return send_error(
            w,
            &rid,
            400,
            "invalid_request_error",
            "model: Field required",
            None,
            &[],
        );
    }
    if version == "2026-10-21" {
        for k in ["temperature", "top_p", "top_k"] {
            if req.get(k).is_some() {
                let msg = format!("{k}: Extra inputs are not permitted");
                return send_error(w, &rid, 400, "invalid_request_error", &msg, None, &[]);
            }
        }
    }
    let model = req["model"].as_str().unwrap_or_default().to_string();
    if route.ends_with("/count_tokens") {
        let (blocks, _) = prompt_blocks(&req);
        let n: u64 = blocks.iter().map(|(s, _)| tokens(s)).sum::<u64>().max(1);
        return send_json(w, &rid, 200, &json!({ "input_tokens": n }));
    }
    let haystack = request_text(&req);
    let found = {
        let mut st = lock(state);
        let hit = st.rules.iter().position(|r| haystack.contains(&r.needle));
        hit.map(|i| {
            let n = st.counters[i];
            st.requests[index].rule = Some(i);
            let replies = &st.rules[i].replies;
            let reply = replies[n.min(replies.len() - 1)].clone();
            let fault = st.faults.as_mut().and_then(|m| m.draw(reply_text(&reply)));
            match fault {
                Some((kind, fault)) => {
                    // The scripted reply waits for the next request.
                    st.injected[kind] += 1;
                    fault
                }
                None => {
                    st.counters[i] += 1;
                    reply
                }
            }
        })
    };
    let Some(reply) = found else {
        let msg = format!("fake: no rule matches this request: {haystack:.200}");
        return send_error(w, &rid, 400, "invalid_request_error", &msg, None, &[]);
    };
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    let complete = |text: &str, tool_json: &str| {
        let mut st = lock(state);
        let usage = usage_for(&mut st, &model, &req, true);
        let out = (tokens(text) + tokens(tool_json)).max(1);
        st.totals.input += usage.0;
        st.totals.cache_write += usage.1;
        st.totals.cache_read += usage.2;
        st.totals.output += out;
        (usage, out)
    };
    let msg_id = format!("msg_fake{index:06}");
    match reply {
        Reply::Error(e) => {
            let code = e.error_code.as_deref();
            send_error(
                w,
                &rid,
                e.status,
                &e.error_type,
                &e.message,
                code,
                &e.headers,
            )
        }
        Reply::DropBeforeResponse => conn.shutdown(Shutdown::Both),
        Reply::DropMidStream { after_deltas, text } if stream => {
            let usage = interrupted(state, &model, &req, &text, after_deltas);
            let mut sse = Sse::start(w, &rid)?;
            sse.message_start(&msg_id, &model, usage)?;
            sse.text_block(0, &text, Some(after_deltas))?;
            conn.shutdown(Shutdown::Both)
        }
        Reply::Stall {
            after_deltas: None,
            stall_ms,
            ..
        } => {
            std::thread::sleep(std::time::Duration::from_millis(stall_ms));
            conn.shutdown(Shutdown::Both)
        }
        Reply::Stall {
            after_deltas: Some(after_deltas),
            stall_ms,
            text,
        } if stream => {
            let usage = interrupted(state, &model, &req, &text, after_deltas);
            let mut sse = Sse::start(w, &rid)?;
            sse.message_start(&msg_id, &model, usage)?;
            sse.text_block(0, &text, Some(after_deltas))?;
            std::thread::sleep(std::time::Duration::from_millis(stall_ms));
            conn.shutdown(Shutdown::Both)
        }
        Reply::Stall { stall_ms, .. } => {
            std::thread::sleep(std::time::Duration::from_millis(stall_ms));
            conn.shutdown(Shutdown::Both)
        }
        Reply::DropMidStream { .. } => conn.shutdown(Shutdown::Both),
        Reply::Pause {
            after_deltas,
            pause_ms,
            text,
        } => {
            let (usage, out) = complete(&text, "");
            let mut sse = Sse::start(w, &rid)?;
            sse.message_start(&msg_id, &model, usage)?;
            let chars: Vec<char> = text.chars().collect();
            let size = chars.len().div_ceil(3).max(1);
            let cut = (size * after_deltas).min(chars.len());
            let head: String = chars[..cut].iter().collect();
            let tail: String = chars[cut..].iter().collect();
            sse.event(
                "content_block_start",
                &json!({"type":"content_block_start","index":0,
                "content_block":{"type":"text","text":""}}),
            )?;
            sse.event(
                "content_block_delta",
                &json!({"type":"content_block_delta","index":0,
                "delta":{"type":"text_delta","text":head}}),
            )?;
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            sse.event(
                "content_block_delta",
                &json!({"type":"content_block_delta","index":0,
                "delta":{"type":"text_delta","text":tail}}),
            )?;
            sse.event(
                "content_block_stop",
                &json!({"type":"content_block_stop","index":0}),
            )?;
            sse.finish_message("end_turn", usage, out)
        }
        Reply::StreamError {
            after_deltas,
            error_type,
            text,
        } if stream => {
            let usage = interrupted(state, &model, &req, &text, after_deltas);
            let mut sse = Sse::start(w, &rid)?;
            sse.message_start(&msg_id, &model, usage)?;
            sse.text_block(0, &text, Some(after_deltas))?;
            let msg = if error_type == "overloaded_error" {
                "Overloaded"
            } else {
                "Internal server error"
            };
            sse.event(
                "error",
                &json!({"type":"error","error":{"type":error_type,"message":msg},"request_id":rid}),
            )?;
            sse.end()
        }
        Reply::Text(text) | Reply::StreamError { text, .. } if !stream => {
            let (usage, out) = complete(&text, "");
            let content = json!([{"type":"text","text":text,"citations":null}]);
            send_json(
                w,
                &rid,
                200,
                &message_json(&msg_id, &model, content, "end_turn", usage, out),
            )
        }
        Reply::ToolUse {
            text,
            name,
            input_json,
        } if !stream => {
            let (usage, out) = complete(&text, &input_json);
            let input: Value = serde_json::from_str(&input_json).unwrap_or(json!({}));
            let mut content = Vec::new();
            if !text.is_empty() {
                content.push(json!({"type":"text","text":text}));
            }
            content.push(json!({"type":"tool_use","id":format!("toolu_fake{index:06}"),"name":name,"input":input}));
            send_json(
                w,
                &rid,
                200,
                &message_json(&msg_id, &model, json!(content), "tool_use", usage, out),
            )
        }
        Reply::Text(text) | Reply::StreamError { text, .. } => {
            let (usage, out) = complete(&text, "");
            let mut sse = Sse::start(w, &rid)?;
            sse.message_start(&msg_id, &model, usage)?;
            sse.text_block(0, &text, None)?;
            sse.finish_message("end_turn", usage, out)
        }
        Reply::ToolUse {
            text,
            name,
            input_json,
        } => {
            let (usage, out) = complete(&text, &input_json);
            let mut sse = Sse::start(w, &rid)?;
            sse.message_start(&msg_id, &model, usage)?;
            let mut i = 0;
            if !text.is_empty() {
                sse.text_block(0, &text, None)?;
                i = 1;
            }
            sse.event("content_block_start", &json!({"type":"content_block_start","index":i,
                "content_block":{"type":"tool_use","id":format!("toolu_fake{index:06}"),"name":name,"input":{}}}))?;
            let mut frags = vec![String::new()];
            let chars: Vec<char> = input_json.chars().collect();
            frags.extend(chars.chunks(3).map(|c| c.iter().collect::<String>()));
            for f in frags {
                sse.event(
                    "content_block_delta",
                    &json!({"type":"content_block_delta","index":i,
                    "delta":{"type":"input_json_delta","partial_json":f}}),
                )?;
            }
            sse.event(
                "content_block_stop",
                &json!({"type":"content_block_stop","index":i}),
            )?;
            sse.finish_message("tool_use", usage, out)
        }
    }
}

/// The text a reply would stream.
fn reply_text(reply: &Reply) -> &str {
    match reply {
        Reply::Text(text)
        | Reply::ToolUse { text, .. }
        | Reply::DropMidStream { text, .. }
        | Reply::Pause { text, .. }
        | Reply::Stall { text, .. }
        | Reply::StreamError { text, .. } => text,
        Reply::Error(_) | Reply::DropBeforeResponse => "",
    }
}

/// (input, cache write, cache read).
type Usage3 = (u64, u64, u64);

fn tokens(s: &str) -> u64 {
    (s.len() as u64).div_ceil(4)
}

/// The prompt as canonical blocks in cache order (tools → system → messages), each with
/// whether it carries a breakpoint.
fn prompt_blocks(req: &Value) -> (Vec<(String, bool)>, ()) {
    let mut out = Vec::new();
    let mut push = |prefix: &str, b: &Value| {
        let mut b = b.clone();
        let marked = b
            .as_object_mut()
            .and_then(|o| o.remove("cache_control"))
            .is_some();
        // serde_json's map is sorted, so this is canonical.
        out.push((format!("{prefix}{b}"), marked));
    };
    for t in req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        push("tool:", t);
    }
    match req.get("system") {
        Some(Value::String(s)) => push("system:", &json!({"type":"text","text":s})),
        Some(Value::Array(a)) => a.iter().for_each(|b| push("system:", b)),
        _ => {}
    }
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let prefix = format!("{role}:");
        match m.get("content") {
            Some(Value::String(s)) => push(&prefix, &json!({"type":"text","text":s})),
            Some(Value::Array(a)) => a.iter().for_each(|b| push(&prefix, b)),
            _ => {}
        }
    }
    (out, ())
}

/// The usage of a stream that will be cut after `after_deltas` deltas of `text`, added to
/// what interrupted streams billed.
fn interrupted(
    state: &Mutex<State>,
    model: &str,
    req: &Value,
    text: &str,
    after_deltas: usize,
) -> Usage3 {
    let mut st = lock(state);
    let usage = usage_for(&mut st, model, req, false);
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(3).max(1);
    let sent: String = chars[..(size * after_deltas).min(chars.len())]
        .iter()
        .collect();
    let b = &mut st.totals.interrupted;
    b.calls += 1;
    b.input += usage.0;
    b.cache_write += usage.1;
    b.cache_read += usage.2;
    b.output += tokens(&sent).max(1);
    usage
}

fn usage_for(st: &mut State, model: &str, req: &Value, register: bool) -> Usage3 {
    let (blocks, _) = prompt_blocks(req);
    let total: u64 = blocks.iter().map(|(s, _)| tokens(s)).sum::<u64>().max(1);
    let mut prefix = String::new();
    let mut prefix_tokens = 0;
    let mut points = Vec::new(); // (prefix text, tokens) per breakpoint
    for (s, marked) in &blocks {
        prefix.push_str(s);
        prefix.push('\u{1}');
        prefix_tokens += tokens(s);
        if *marked {
            points.push((prefix.clone(), prefix_tokens));
        }
    }
    let Some(&(_, last)) = points.last() else {
        return (total, 0, 0);
    };
    if last < st.min_cache_tokens.max(1) {
        return (total, 0, 0);
    }
    let read = points
        .iter()
        .filter(|(p, _)| st.cache.contains(&(model.to_string(), p.clone())))
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    let write = last - read;
    if register {
        for (p, _) in points {
            st.cache.insert((model.to_string(), p));
        }
    }
    (total - read - write, write, read)
}

/// All text a rule's needle may match: system text, message text and tool results.
fn request_text(req: &Value) -> String {
    fn collect(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            Value::Object(o) => {
                for k in ["text", "content"] {
                    if let Some(x) = o.get(k) {
                        collect(x, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    if let Some(s) = req.get("system") {
        collect(s, &mut out);
    }
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(c) = m.get("content") {
            collect(c, &mut out);
        }
    }
    out
}

fn usage_json(u: Usage3, output: u64) -> Value {
    json!({"input_tokens":u.0,"cache_creation_input_tokens":u.1,"cache_read_input_tokens":u.2,
        "cache_creation":{"ephemeral_5m_input_tokens":u.1,"ephemeral_1h_input_tokens":0},
        "output_tokens":output,"service_tier":"standard"})
}

fn message_json(id: &str, model: &str, content: Value, stop: &str, u: Usage3, out: u64) -> Value {
    json!({"id":id,"type":"message","role":"assistant","model":model,"content":content,
        "stop_reason":stop,"stop_sequence":null,"usage":usage_json(u, out)})
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        529 => "Overloaded",
        _ => "Error",
    }
}

fn send_json(w: &mut TcpStream, rid: &str, status: u16, body: &Value) -> std::io::Result<()> {
    send_raw(w, rid, status, &[], &body.to_string())
}

fn send_raw(
    w: &mut TcpStream,
    rid: &str,
    status: u16,
    extra: &[(String, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nrequest-id: {rid}\r\nconnection: close\r\n",
        status_text(status),
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body.as_bytes())?;
    w.flush()
}

fn send_error(
    w: &mut TcpStream,
    rid: &str,
    status: u16,
    error_type: &str,
    message: &str,
    error_code: Option<&str>,
    extra: &[(String, String)],
) -> std::io::Result<()> {
    let mut error = json!({"type": error_type, "message": message});
    if let Some(code) = error_code {
        error["details"] = json!({ "error_code": code });
    }
    let body = json!({"type":"error","error":error,"request_id":rid});
    send_raw(w, rid, status, extra, &body.to_string())
}

/// A chunked `text/event-stream` response in progress.
struct Sse<'a> {
    w: &'a mut TcpStream,
}

impl<'a> Sse<'a> {
    fn start(w: &'a mut TcpStream, rid: &str) -> std::io::Result<Sse<'a>> {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nrequest-id: {rid}\r\nconnection: close\r\n\r\n"
        );
        w.write_all(head.as_bytes())?;
        Ok(Sse { w })
    }

    fn event(&mut self, name: &str, data: &Value) -> std::io::Result<()> {
        let rec = format!("event: {name}\ndata: {data}\n\n");
        write!(self.w, "{:x}\r\n{rec}\r\n", rec.len())?;
        self.w.flush()
    }

    fn message_start(&mut self, id: &str, model: &str, u: Usage3) -> std::io::Result<()> {
        self.event(
            "message_start",
            &json!({"type":"message_start","message":{"id":id,"type":"message",
            "role":"assistant","model":model,"content":[],"stop_reason":null,"stop_sequence":null,
            "usage":usage_json(u, 1)}}),
        )
    }

    /// A text block in three or so deltas; with `stop_after`, only that many deltas and no
    /// block stop.
    fn text_block(
        &mut self,
        i: usize,
        text: &str,
        stop_after: Option<usize>,
    ) -> std::io::Result<()> {
        self.event(
            "content_block_start",
            &json!({"type":"content_block_start","index":i,
            "content_block":{"type":"text","text":""}}),
        )?;
        self.event("ping", &json!({"type":"ping"}))?;
        let chars: Vec<char> = text.chars().collect();
        let size = chars.len().div_ceil(3).max(1);
        for (n, piece) in chars.chunks(size).enumerate() {
            if stop_after.is_some_and(|k| n >= k) {
                return Ok(());
            }
            let piece: String = piece.iter().collect();
            self.event(
                "content_block_delta",
                &json!({"type":"content_block_delta","index":i,
                "delta":{"type":"text_delta","text":piece}}),
            )?;
        }
        if stop_after.is_some() {
            return Ok(());
        }
        self.event(
            "content_block_stop",
            &json!({"type":"content_block_stop","index":i}),
        )
    }

    fn finish_message(&mut self, stop: &str, u: Usage3, out: u64) -> std::io::Result<()> {
        // Two message_delta events with cumulative usage: the client must keep the last.
        let mut first = usage_json(u, out.div_ceil(2));
        first.as_object_mut().map(|o| o.remove("cache_creation"));
        self.event(
            "message_delta",
            &json!({"type":"message_delta",
            "delta":{"stop_reason":null,"stop_sequence":null},"usage":first}),
        )?;
        let mut last = usage_json(u, out);
        last.as_object_mut().map(|o| o.remove("cache_creation"));
        self.event(
            "message_delta",
            &json!({"type":"message_delta",
            "delta":{"stop_reason":stop,"stop_sequence":null},"usage":last}),
        )?;
        self.event("message_stop", &json!({"type":"message_stop"}))?;
        self.end()
    }

    fn end(&mut self) -> std::io::Result<()> {
        self.w.write_all(b"0\r\n\r\n")?;
        self.w.flush()
    }
}
