//! How each kind of call shapes its request and reads its answer: a streamed message, a whole
//! JSON message, a token count. The client's request and retry loop is generic over these, so
//! each public call gets back exactly the type it asked for.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::client::idle_error;
use super::error::{ApiError, Failure, transport};
use super::sse::SseParser;
use super::stream::{Accumulator, Callback};
use super::wire::{Response, message_from_json};

/// One kind of call: where it goes, what it accepts and how its successful answer is read.
pub(super) trait Answer {
    /// What the call returns.
    type Output;
    /// The path below the base URL.
    const PATH: &'static str;
    /// The `accept` header.
    const ACCEPT: &'static str;
    /// Whether the answer streams, so that silence of the idle timeout fails it.
    const STREAMS: bool = false;

    /// Adjusts the serialised request for this call.
    fn shape(_body: &mut Map<String, Value>) {}

    /// Reads a 2xx response; `request_id` is its `request-id` header; a stream silent for
    /// `idle` fails.
    async fn read(
        resp: reqwest::Response,
        request_id: Option<String>,
        idle: Duration,
        on_event: Callback<'_>,
    ) -> Result<Self::Output, Failure>;

    /// Records how many attempts the call took.
    fn set_attempts(_output: &mut Self::Output, _attempts: u32) {}
}

/// `POST /v1/messages` with `stream: true`, assembled from its events.
pub(super) struct Streamed;

/// `POST /v1/messages` answered with one JSON message.
pub(super) struct Whole;

/// `POST /v1/messages/count_tokens`.
pub(super) struct TokenCount;

impl Answer for Streamed {
    type Output = Response;
    const PATH: &'static str = "v1/messages";
    const ACCEPT: &'static str = "text/event-stream";
    const STREAMS: bool = true;

    fn shape(body: &mut Map<String, Value>) {
        body.insert("stream".into(), Value::Bool(true));
    }

    async fn read(
        resp: reqwest::Response,
        request_id: Option<String>,
        idle: Duration,
        on_event: Callback<'_>,
    ) -> Result<Response, Failure> {
        let mut acc = Accumulator::default();
        let mut parser = SseParser::new();
        let mut chunks = resp.bytes_stream();
        loop {
            let next = tokio::time::timeout(idle, chunks.next())
                .await
                .map_err(|_| Failure::transient(idle_error(idle, "in the middle of the answer")))?;
            let Some(chunk) = next else { break };
            // A broken body (cut connection, bad chunking) is transient: reqwest reports it as
            // a decode error, so it is not told apart here.
            let chunk = chunk.map_err(|e| Failure::transient(transport(&e)))?;
            for rec in parser.push(&chunk) {
                acc.handle(&rec, on_event)?;
                if acc.done {
                    break;
                }
            }
            if acc.done {
                break;
            }
        }
        if !acc.done
            && let Some(rec) = parser.finish()
        {
            acc.handle(&rec, on_event)?;
        }
        if !acc.done {
            return Err(Failure::transient(ApiError::Incomplete));
        }
        let mut r = acc.finish();
        r.request_id = request_id;
        Ok(r)
    }

    fn set_attempts(output: &mut Response, attempts: u32) {
        output.attempts = attempts;
    }
}

impl Answer for Whole {
    type Output = Response;
    const PATH: &'static str = "v1/messages";
    const ACCEPT: &'static str = "application/json";

    async fn read(
        resp: reqwest::Response,
        request_id: Option<String>,
        _idle: Duration,
        _on_event: Callback<'_>,
    ) -> Result<Response, Failure> {
        let v = read_json(resp).await?;
        let mut r = message_from_json(&v).map_err(Failure::fatal)?;
        r.request_id = request_id;
        Ok(r)
    }

    fn set_attempts(output: &mut Response, attempts: u32) {
        output.attempts = attempts;
    }
}

impl Answer for TokenCount {
    type Output = u64;
    const PATH: &'static str = "v1/messages/count_tokens";
    const ACCEPT: &'static str = "application/json";

    /// count_tokens takes the prompt only.
    fn shape(body: &mut Map<String, Value>) {
        for k in ["max_tokens", "stop_sequences", "metadata"] {
            body.remove(k);
        }
    }

    async fn read(
        resp: reqwest::Response,
        _request_id: Option<String>,
        _idle: Duration,
        _on_event: Callback<'_>,
    ) -> Result<u64, Failure> {
        #[derive(Deserialize)]
        struct Count {
            input_tokens: u64,
        }
        let v = read_json(resp).await?;
        Count::deserialize(&v).map(|c| c.input_tokens).map_err(|_| {
            Failure::fatal(ApiError::Decode {
                message: format!("count_tokens without input_tokens: {v}"),
            })
        })
    }
}

/// Reads a whole JSON body: a broken connection is transient, bad JSON is not.
async fn read_json(resp: reqwest::Response) -> Result<Value, Failure> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| Failure::transient(transport(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::fatal(ApiError::Decode {
            message: format!("response body is not JSON: {e}"),
        })
    })
}
