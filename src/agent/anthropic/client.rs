//! The client: configuration, credentials, the request, the retry loop and reading each kind of
//! answer (a stream, a JSON message, a token count).

use std::sync::Arc;
use std::time::Duration;

use super::answer::{Answer, Streamed, TokenCount, Whole};
use super::error::{ApiError, Failure, classify, transport};
use super::stream::{Callback, StreamEvent};
use super::wire::{MessagesRequest, Response};
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
    /// Limit on a stream's silence: no response headers, or no bytes of the stream (the API
    /// sends `ping`s), for this long fails the attempt, which is retried (default 60 s).
    pub idle_timeout: Duration,
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
            idle_timeout: Duration::from_secs(60),
            beta: Vec::new(),
        }
    }
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
        self.call::<Streamed>(req, &mut on_event).await
    }

    /// Sends `req` without streaming and returns the answer (with the same retries).
    pub async fn create(&self, req: &MessagesRequest) -> Result<Response, ApiError> {
        self.call::<Whole>(req, &mut |_| {}).await
    }

    /// Counts the input tokens of `req` with `POST /v1/messages/count_tokens`.
    pub async fn count_tokens(&self, req: &MessagesRequest) -> Result<u64, ApiError> {
        self.call::<TokenCount>(req, &mut |_| {}).await
    }

    /// Sends `req` as call `A`, retrying per the policy, and reads the answer as `A` says.
    async fn call<A: Answer>(
        &self,
        req: &MessagesRequest,
        on_event: Callback<'_>,
    ) -> Result<A::Output, ApiError> {
        let bytes = body::<A>(req)?;
        let url = format!("{}/{}", self.config.base_url.trim_end_matches('/'), A::PATH);
        let policy = &self.config.retry;
        let mut retries = 0u32;
        // The budget counts real time, and the delays asked for too (a test's sleeper may not
        // really wait), so that it always runs out.
        let started = std::time::Instant::now();
        let mut waited = Duration::ZERO;
        loop {
            let f = match self.attempt::<A>(&url, &bytes, retries, on_event).await {
                Ok(mut out) => {
                    A::set_attempts(&mut out, retries + 1);
                    return Ok(out);
                }
                Err(f) => f,
            };
            if !f.retry {
                return Err(f.error);
            }
            let delay = policy.delay(
                retries,
                &f.headers,
                self.clock.now(),
                crate::clock::jitter(),
            );
            if !policy.may_retry(retries, started.elapsed().max(waited), delay) {
                return Err(if retries == 0 {
                    f.error
                } else {
                    ApiError::Exhausted {
                        attempts: retries + 1,
                        last: Box::new(f.error),
                    }
                });
            }
            tracing::debug!(attempt = retries + 1, ?delay, error = %f.error, "retrying");
            on_event(StreamEvent::Retry {
                attempt: retries + 1,
                delay,
                reason: f.error.to_string(),
            });
            self.sleeper.sleep(delay).await;
            waited += delay;
            retries += 1;
        }
    }

    /// One attempt: the request, then an error classified or the answer read as `A`.
    async fn attempt<A: Answer>(
        &self,
        url: &str,
        body: &[u8],
        retries: u32,
        on_event: Callback<'_>,
    ) -> Result<A::Output, Failure> {
        let send = self.request(url, body, retries, A::ACCEPT).send();
        let idle = self.config.idle_timeout;
        // A stream's headers come at once; a whole message's only when it is written.
        let resp = if A::STREAMS {
            tokio::time::timeout(idle, send)
                .await
                .map_err(|_| Failure::transient(idle_error(idle, "before the response began")))?
        } else {
            send.await
        }
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
        A::read(resp, request_id, idle, on_event).await
    }

    /// The request with its headers: version, credentials, betas, retry count.
    fn request(
        &self,
        url: &str,
        body: &[u8],
        retries: u32,
        accept: &str,
    ) -> reqwest::RequestBuilder {
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
        rb.header("accept", accept)
    }
}

/// A stream that went silent for `idle`.
pub(super) fn idle_error(idle: Duration, when: &str) -> ApiError {
    ApiError::Timeout {
        message: format!(
            "the stream was silent for {} {when} ([agent] idle_timeout; the call is retried)",
            humantime::format_duration(idle)
        ),
    }
}

/// The request body of call `A`.
fn body<A: Answer>(req: &MessagesRequest) -> Result<Vec<u8>, ApiError> {
    let not_serialisable = |e: serde_json::Error| ApiError::Config {
        message: format!("request not serialisable: {e}"),
    };
    let mut body = serde_json::to_value(req).map_err(not_serialisable)?;
    A::shape(
        body.as_object_mut()
            .expect("a struct serialises to a JSON object"),
    );
    serde_json::to_vec(&body).map_err(not_serialisable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_debug_hides_the_secret() {
        let c = ClientConfig::new(Auth::ApiKey("sk-ant-secret".into()));
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn calls_can_move_between_threads() {
        fn send<T: Send>(_: &T) {}
        let client = Client::new(ClientConfig::new(Auth::ApiKey("k".into()))).expect("client");
        let req = MessagesRequest::new("m", 1, Vec::new());
        send(&client.stream(&req, |_| {}));
        send(&client.create(&req));
        send(&client.count_tokens(&req));
    }
}
