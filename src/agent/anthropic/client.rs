//! The client: configuration, credentials, the request, the retry loop and reading each kind of
//! answer (a stream, a JSON message, a token count).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use super::error::{ApiError, Failure, classify, transport};
use super::sse::SseParser;
use super::stream::{Accumulator, Callback, StreamEvent};
use super::wire::{MessagesRequest, Response, message_from_json};
use crate::agent::retry::{RetryHeaders, RetryPolicy, Sleeper, TokioSleeper};
use crate::clock::{Clock, SystemClock};

/// The public API endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version Claude Code and the older SDKs send.
pub const API_VERSION_2023: &str = "2023-06-01";
/// The API version of the 2026 SDK majors.
pub const API_VERSION_2026: &str = "2026-10-21";

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// An API key sent as `x-api-key`.
    ApiKey(String),
    /// A key or token sent as `Authorization: Bearer …`.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    // The secret never reaches logs or error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Everything the client needs; the CLI builds it from flags, environment and config.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL; a path prefix is kept (`http://h/prefix` → `http://h/prefix/v1/messages`).
    pub base_url: String,
    /// Credentials.
    pub auth: Auth,
    /// The `anthropic-version` header: [`API_VERSION_2023`] or [`API_VERSION_2026`].
    pub anthropic_version: String,
    /// When and how long to retry; `retry.max_retries` defaults to 2.
    pub retry: RetryPolicy,
    /// Limit on one whole attempt, streaming included (default 10 minutes, as the SDKs).
    pub request_timeout: Duration,
    /// Limit on establishing a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Beta flags, sent comma-separated in `anthropic-beta` when not empty.
    pub beta: Vec<String>,
}

impl ClientConfig {
    /// The defaults: public endpoint, version `2023-06-01`, 2 retries.
    pub fn new(auth: Auth) -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            auth,
            anthropic_version: API_VERSION_2023.to_string(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(5),
            beta: Vec::new(),
        }
    }
}

enum Mode {
    Stream,
    Json,
    Count,
}

enum Success {
    Message(Box<Response>),
    Count(u64),
}

/// The Messages API client. Cheap to clone; share one per run.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    sleeper: Arc<dyn Sleeper>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish()
    }
}

impl Client {
    /// A client for `config`; fails if the base URL is not an http(s) URL.
    pub fn new(config: ClientConfig) -> Result<Self, ApiError> {
        let url = reqwest::Url::parse(&config.base_url).map_err(|e| ApiError::Config {
            message: format!("base URL {:?}: {e}", config.base_url),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ApiError::Config {
                message: format!("base URL {:?} is not http(s)", config.base_url),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("git-mmm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Config {
                message: format!("HTTP client: {e}"),
            })?;
        Ok(Client {
            http,
            config,
            sleeper: Arc::new(TokioSleeper),
            clock: Arc::new(SystemClock),
        })
    }

    /// The same client waiting between retries with `sleeper`.
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The same client reading "now" (for HTTP-date `retry-after`) from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Sends `req` with `stream: true`, calls `on_event` as text arrives, and returns the
    /// assembled answer. Retryable failures (including a cut or `overloaded_error` stream) are
    /// retried per the policy; `on_event` then sees [`StreamEvent::Retry`].
    pub async fn stream(
        &self,
        req: &MessagesRequest,
        mut on_event: impl FnMut(StreamEvent) + Send,
    ) -> Result<Response, ApiError> {
        match self.call(req, Mode::Stream, &mut on_event).await? {
            Success::Message(r) => Ok(*r),
            Success::Count(_) => unreachable!("stream mode yields a message"),
        }
    }

    /// Sends `req` without streaming and returns the answer (with the same retries).
    pub async fn create(&self, req: &MessagesRequest) -> Result<Response, ApiError> {
        match self.call(req, Mode::Json, &mut |_| {}).await? {
            Success::Message(r) => Ok(*r),
            Success::Count(_) => unreachable!("json mode yields a message"),
        }
    }

    /// Counts the input tokens of `req` with `POST /v1/messages/count_tokens`.
    pub async fn count_tokens(&self, req: &MessagesRequest) -> Result<u64, ApiError> {
        match self.call(req, Mode::Count, &mut |_| {}).await? {
            Success::Count(n) => Ok(n),
            Success::Message(_) => unreachable!("count mode yields a count"),
        }
    }

    async fn call(
        &self,
        req: &MessagesRequest,
        mode: Mode,
        on_event: Callback<'_>,
    ) -> Result<Success, ApiError> {
        let mut body = serde_json::to_value(req).map_err(|e| ApiError::Config {
            message: format!("request not serialisable: {e}"),
        })?;
        let obj = body
            .as_object_mut()
            .expect("a struct serialises to a JSON object");
        let path = match mode {
            Mode::Stream => {
                obj.insert("stream".into(), Value::Bool(true));
                "v1/messages"
            }
            Mode::Json => "v1/messages",
            Mode::Count => {
                for k in ["max_tokens", "stop_sequences", "metadata"] {
                    obj.remove(k);
                }
                "v1/messages/count_tokens"
            }
        };
        let url = format!("{}/{path}", self.config.base_url.trim_end_matches('/'));
        let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::Config {
            message: format!("request not serialisable: {e}"),
        })?;
        let policy = &self.config.retry;
        let mut retries = 0u32;
        loop {
            match self.attempt(&url, &bytes, &mode, retries, on_event).await {
                Ok(mut ok) => {
                    if let Success::Message(r) = &mut ok {
                        r.attempts = retries + 1;
                    }
                    return Ok(ok);
                }
                Err(f) if !f.retry => return Err(f.error),
                Err(f) if retries >= policy.max_retries => {
                    return Err(if retries == 0 {
                        f.error
                    } else {
                        ApiError::Exhausted {
                            attempts: retries + 1,
                            last: Box::new(f.error),
                        }
                    });
                }
                Err(f) => {
                    let delay =
                        policy.delay(retries, &f.headers, self.clock.now(), rand::random::<f64>());
                    tracing::debug!(attempt = retries + 1, ?delay, error = %f.error, "retrying");
                    on_event(StreamEvent::Retry {
                        attempt: retries + 1,
                        delay,
                        reason: f.error.to_string(),
                    });
                    self.sleeper.sleep(delay).await;
                    retries += 1;
                }
            }
        }
    }

    async fn attempt(
        &self,
        url: &str,
        body: &[u8],
        mode: &Mode,
        retries: u32,
        on_event: Callback<'_>,
    ) -> Result<Success, Failure> {
        let cfg = &self.config;
        let mut rb = self
            .http
            .post(url)
            .timeout(cfg.request_timeout)
            .header("anthropic-version", &cfg.anthropic_version)
            .header("content-type", "application/json")
            .header("x-mmm-retry-count", retries.to_string())
            .body(body.to_vec());
        rb = match &cfg.auth {
            Auth::ApiKey(k) => rb.header("x-api-key", k),
            Auth::Bearer(t) => rb.header("authorization", format!("Bearer {t}")),
        };
        if !cfg.beta.is_empty() {
            rb = rb.header("anthropic-beta", cfg.beta.join(","));
        }
        rb = rb.header(
            "accept",
            if matches!(mode, Mode::Stream) {
                "text/event-stream"
            } else {
                "application/json"
            },
        );
        let resp = rb
            .send()
            .await
            .map_err(|e| Failure::transient(transport(&e)))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let request_id = header("request-id");
        if !(200..300).contains(&status) {
            let headers = RetryHeaders {
                should_retry: header("x-should-retry"),
                retry_after_ms: header("retry-after-ms"),
                retry_after: header("retry-after"),
            };
            let text = resp.text().await.unwrap_or_default();
            return Err(classify(status, &text, request_id, headers));
        }
        match mode {
            Mode::Count => {
                let v = read_json(resp).await?;
                let n = v
                    .get("input_tokens")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| {
                        Failure::fatal(ApiError::Decode {
                            message: format!("count_tokens without input_tokens: {v}"),
                        })
                    })?;
                Ok(Success::Count(n))
            }
            Mode::Json => {
                let v = read_json(resp).await?;
                let mut r = message_from_json(&v).map_err(Failure::fatal)?;
                r.request_id = request_id;
                Ok(Success::Message(Box::new(r)))
            }
            Mode::Stream => {
                let mut acc = Accumulator::default();
                let mut parser = SseParser::new();
                let mut chunks = resp.bytes_stream();
                'read: while let Some(chunk) = chunks.next().await {
                    // A broken body (cut connection, bad chunking) is transient: reqwest
                    // reports it as a decode error, so it is not told apart here.
                    let chunk = chunk.map_err(|e| Failure::transient(transport(&e)))?;
                    for rec in parser.push(&chunk) {
                        acc.handle(&rec, on_event)?;
                        if acc.done {
                            break 'read;
                        }
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
                Ok(Success::Message(Box::new(r)))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_debug_hides_the_secret() {
        let c = ClientConfig::new(Auth::ApiKey("sk-ant-secret".into()));
        assert!(!format!("{c:?}").contains("secret"));
    }
}
