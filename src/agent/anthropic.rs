//! A client for the Anthropic Messages API (contracts §1): request and response types in the
//! exact wire shape, streaming over SSE, retries as the official SDKs do, typed errors.
//!
//! Owns HTTP and the wire format only. It reads no environment (the CLI passes the base URL and
//! the key), prints nothing (streamed text goes to a callback), never logs the key, and knows
//! nothing about prompts, budgets or the loop.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::retry::{RetryHeaders, RetryPolicy, Sleeper, TokioSleeper};
use super::sse::{SseParser, SseRecord};
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

/// A prompt-cache breakpoint: `{"type":"ephemeral","ttl"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheControl {
    /// Always `ephemeral` today.
    #[serde(rename = "type")]
    pub kind: String,
    /// `5m` (the default when absent) or `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

impl CacheControl {
    /// A 5-minute breakpoint.
    pub fn ephemeral() -> Self {
        CacheControl {
            kind: "ephemeral".to_string(),
            ttl: None,
        }
    }
}

/// A text block, in `system` or in a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextBlock {
    /// The text.
    pub text: String,
    /// A cache breakpoint at the end of this block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
}

impl TextBlock {
    /// A block without a breakpoint.
    pub fn new(text: impl Into<String>) -> Self {
        TextBlock {
            text: text.into(),
            cache_control: None,
        }
    }

    /// The same block with a 5-minute cache breakpoint.
    pub fn cached(mut self) -> Self {
        self.cache_control = Some(CacheControl::ephemeral());
        self
    }
}

/// A content block of a message, request or response side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text(TextBlock),
    /// A tool call by the model.
    ToolUse {
        /// `toolu_…`.
        id: String,
        /// Tool name.
        name: String,
        /// The arguments (a JSON object).
        input: Value,
        /// Cache breakpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// The result of a tool call, sent back in a user message.
    ToolResult {
        /// The `id` of the `tool_use` it answers.
        tool_use_id: String,
        /// The result text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        /// Cache breakpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    /// Extended thinking.
    Thinking {
        /// The thinking text (may be empty when display is omitted).
        thinking: String,
        /// The signature that lets it be sent back.
        #[serde(default)]
        signature: String,
    },
    /// Thinking the API returns encrypted.
    RedactedThinking {
        /// Opaque data.
        data: String,
    },
}

/// Who speaks in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user (and tool results).
    User,
    /// The model.
    Assistant,
    /// Mid-conversation system text.
    System,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Speaker.
    pub role: Role,
    /// Content blocks.
    pub content: Vec<ContentBlock>,
}

impl Message {
    /// A user message of one text block.
    pub fn user(text: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: vec![ContentBlock::Text(TextBlock::new(text))],
        }
    }

    /// An assistant message of one text block.
    pub fn assistant(text: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: vec![ContentBlock::Text(TextBlock::new(text))],
        }
    }
}

/// A client tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the input (`{"type":"object",…}`).
    pub input_schema: Value,
    /// Cache breakpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
}

/// Request metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// An opaque end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// The body of `POST /v1/messages`, in its wire shape. It has no sampling fields on purpose:
/// `temperature`/`top_p`/`top_k` are rejected by API `2026-10-21` and newer models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// Model id.
    pub model: String,
    /// Output limit.
    pub max_tokens: u64,
    /// System prompt blocks (omitted when empty); sent as `{"type":"text",…}` blocks.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "system_blocks::serialize",
        deserialize_with = "system_blocks::deserialize"
    )]
    pub system: Vec<TextBlock>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Client tools (omitted when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Custom stop strings (omitted when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// `system` is a list of text blocks with their `type` tag, which [`TextBlock`] alone lacks
/// (inside [`ContentBlock::Text`] the enum supplies it).
mod system_blocks {
    use super::{ContentBlock, TextBlock};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(blocks: &[TextBlock], s: S) -> Result<S::Ok, S::Error> {
        let tagged: Vec<ContentBlock> = blocks.iter().cloned().map(ContentBlock::Text).collect();
        tagged.serialize(s)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum System {
        Plain(String),
        Blocks(Vec<ContentBlock>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TextBlock>, D::Error> {
        Ok(match System::deserialize(d)? {
            System::Plain(text) => vec![TextBlock::new(text)],
            System::Blocks(b) => b
                .into_iter()
                .filter_map(|b| match b {
                    ContentBlock::Text(t) => Some(t),
                    _ => None,
                })
                .collect(),
        })
    }
}

impl MessagesRequest {
    /// A request with one user message and nothing optional.
    pub fn new(model: impl Into<String>, max_tokens: u64, messages: Vec<Message>) -> Self {
        MessagesRequest {
            model: model.into(),
            max_tokens,
            system: Vec::new(),
            messages,
            tools: Vec::new(),
            stop_sequences: Vec::new(),
            metadata: None,
        }
    }
}

/// Split of cache writes by TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheCreation {
    /// Tokens written with the 5-minute TTL.
    pub ephemeral_5m_input_tokens: u64,
    /// Tokens written with the 1-hour TTL.
    pub ephemeral_1h_input_tokens: u64,
}

/// Token usage of one call. `input_tokens` excludes cached tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Uncached input.
    pub input_tokens: u64,
    /// Output.
    pub output_tokens: u64,
    /// Input written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Input served from the prompt cache.
    pub cache_read_input_tokens: u64,
    /// TTL split of the cache writes, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation: Option<CacheCreation>,
}

impl Usage {
    /// Overwrites the fields present (and not null) in a `usage` JSON object; this is how
    /// cumulative `message_delta` usage replaces the `message_start` values.
    fn merge(&mut self, v: &Value) {
        let num = |k: &str| v.get(k).and_then(Value::as_u64);
        if let Some(n) = num("input_tokens") {
            self.input_tokens = n;
        }
        if let Some(n) = num("output_tokens") {
            self.output_tokens = n;
        }
        if let Some(n) = num("cache_creation_input_tokens") {
            self.cache_creation_input_tokens = n;
        }
        if let Some(n) = num("cache_read_input_tokens") {
            self.cache_read_input_tokens = n;
        }
        if let Some(c) = v.get("cache_creation").filter(|c| c.is_object()) {
            self.cache_creation = Some(CacheCreation {
                ephemeral_5m_input_tokens: c
                    .get("ephemeral_5m_input_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                ephemeral_1h_input_tokens: c
                    .get("ephemeral_1h_input_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            });
        }
    }
}

/// The largest content-block index accepted from a stream.
const MAX_BLOCK_INDEX: u64 = 1024;

/// A finished model answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// `msg_…`.
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// All text blocks concatenated.
    pub text: String,
    /// The content blocks of known types, in order (tool inputs parsed).
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn`, `refusal`, ….
    pub stop_reason: Option<String>,
    /// The stop string matched, for `stop_sequence`.
    pub stop_sequence: Option<String>,
    /// Final usage.
    pub usage: Usage,
    /// The `request-id` response header of the successful attempt.
    pub request_id: Option<String>,
    /// Attempts made, 1 when the first one succeeded.
    pub attempts: u32,
}

/// What the streaming callback sees, as it happens.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// The message began.
    MessageStart {
        /// `msg_…`.
        id: String,
        /// Model.
        model: String,
    },
    /// A piece of answer text.
    TextDelta(String),
    /// A piece of thinking text.
    ThinkingDelta(String),
    /// The model started a tool call.
    ToolUseStart {
        /// `toolu_…`.
        id: String,
        /// Tool name.
        name: String,
    },
    /// Cumulative usage so far (from `message_delta`).
    Usage(Usage),
    /// The attempt failed and another follows after `delay`; text shown so far is void.
    Retry {
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next one.
        delay: Duration,
        /// Why it failed.
        reason: String,
    },
}

/// Why a call failed. Each message ends with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401: the key or token was refused.
    #[error(
        "authentication failed (HTTP {status}): {message} (hint: check ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN)"
    )]
    Auth {
        /// HTTP status.
        status: u16,
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// 403: the key may not use this model or workspace.
    #[error(
        "permission denied (HTTP 403): {message} (hint: the key lacks access to this model or workspace)"
    )]
    Permission {
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// 402: a billing problem on the account.
    #[error(
        "billing problem (HTTP 402): {message} (hint: check the plan and payment details in the Anthropic console)"
    )]
    Billing {
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// 429 with a spend-limit error code: retrying cannot help, the run must stop.
    #[error(
        "spend limit reached ({error_code}): {message} (hint: raise the spend limit in the Anthropic console; retrying will not help)"
    )]
    SpendLimit {
        /// `enforced_spend_limit_reached` or `contract_spend_limit_reached`.
        error_code: String,
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// 404: unknown model or endpoint.
    #[error("not found (HTTP 404): {message} (hint: check the model id and the base URL)")]
    NotFound {
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// 413: the request body is too large.
    #[error(
        "request too large (HTTP 413): {message} (hint: the prompt is too large; lower the context budget)"
    )]
    TooLarge {
        /// The API's message.
        message: String,
    },
    /// Any other HTTP error status.
    #[error("API error (HTTP {status}, {error_type}): {message}{}", status_hint(*.status))]
    Status {
        /// HTTP status.
        status: u16,
        /// `error.type` from the body.
        error_type: String,
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// An `event: error` after the stream had begun.
    #[error("stream error ({error_type}): {message}")]
    Stream {
        /// `error.type`, e.g. `overloaded_error`.
        error_type: String,
        /// The API's message.
        message: String,
    },
    /// The stream ended before `message_stop`.
    #[error(
        "the response stream ended before message_stop (hint: the connection was cut; it is retried)"
    )]
    Incomplete,
    /// The connection failed or broke.
    #[error(
        "connection to the Messages API failed: {message} (hint: check the network and the base URL)"
    )]
    Connection {
        /// What failed.
        message: String,
    },
    /// An attempt took too long.
    #[error("the request timed out: {message} (hint: raise the request timeout)")]
    Timeout {
        /// What timed out.
        message: String,
    },
    /// The server sent something that is not the documented shape.
    #[error("unreadable response from the Messages API: {message}")]
    Decode {
        /// What could not be read.
        message: String,
    },
    /// The client configuration is unusable.
    #[error("invalid API client configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// Every allowed attempt failed with a retryable error.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<ApiError>,
    },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        400 | 422 => {
            " (hint: the request was rejected as invalid; this is a bug or an unsupported option)"
        }
        429 => " (hint: rate limited; wait or lower the request rate)",
        529 => " (hint: the API is overloaded; try again later)",
        s if s >= 500 => " (hint: a server-side error; try again later)",
        _ => "",
    }
}

impl ApiError {
    /// Whether the engine must stop the whole run (bad credentials, billing, spend limit)
    /// rather than just this iteration.
    pub fn is_critical(&self) -> bool {
        match self {
            ApiError::Auth { .. }
            | ApiError::Permission { .. }
            | ApiError::Billing { .. }
            | ApiError::SpendLimit { .. }
            | ApiError::Config { .. } => true,
            ApiError::Exhausted { last, .. } => last.is_critical(),
            _ => false,
        }
    }

    /// The HTTP status behind the error, if it came from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Auth { status, .. } | ApiError::Status { status, .. } => Some(*status),
            ApiError::Permission { .. } => Some(403),
            ApiError::Billing { .. } => Some(402),
            ApiError::SpendLimit { .. } => Some(429),
            ApiError::NotFound { .. } => Some(404),
            ApiError::TooLarge { .. } => Some(413),
            ApiError::Exhausted { last, .. } => last.status(),
            _ => None,
        }
    }
}

/// A failed attempt, with what the retry policy needs.
struct Failure {
    error: ApiError,
    retry: bool,
    headers: Box<RetryHeaders>,
}

impl Failure {
    fn transient(error: ApiError) -> Self {
        Failure {
            error,
            retry: true,
            headers: Box::default(),
        }
    }

    fn fatal(error: ApiError) -> Self {
        Failure {
            error,
            retry: false,
            headers: Box::default(),
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

type Callback<'a> = &'a mut (dyn FnMut(StreamEvent) + Send);

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

fn transport(e: &reqwest::Error) -> ApiError {
    // The URL may carry nothing secret, but strip it anyway to keep messages short.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        ApiError::Timeout { message: msg }
    } else {
        ApiError::Connection { message: msg }
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

/// Maps an HTTP error response to a typed error and the retry decision.
fn classify(status: u16, body: &str, request_id: Option<String>, headers: RetryHeaders) -> Failure {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let err = v.get("error");
    let field = |k: &str| err.and_then(|e| e.get(k)).and_then(Value::as_str);
    let error_type = field("type").unwrap_or("unknown_error").to_string();
    let message = field("message").map(str::to_string).unwrap_or_else(|| {
        body.chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string()
    });
    let request_id = request_id.or_else(|| {
        v.get("request_id")
            .and_then(Value::as_str)
            .map(String::from)
    });
    let error_code = err
        .and_then(|e| e.get("details"))
        .and_then(|d| d.get("error_code"))
        .and_then(Value::as_str);
    if status == 429
        && let Some(code @ ("enforced_spend_limit_reached" | "contract_spend_limit_reached")) =
            error_code
    {
        return Failure {
            error: ApiError::SpendLimit {
                error_code: code.to_string(),
                message,
                request_id,
            },
            retry: false,
            headers: Box::new(headers),
        };
    }
    let retry = RetryPolicy::should_retry_status(status, &headers);
    let error = match status {
        401 => ApiError::Auth {
            status,
            message,
            request_id,
        },
        402 => ApiError::Billing {
            message,
            request_id,
        },
        403 => ApiError::Permission {
            message,
            request_id,
        },
        404 => ApiError::NotFound {
            message,
            request_id,
        },
        413 => ApiError::TooLarge { message },
        _ => ApiError::Status {
            status,
            error_type,
            message,
            request_id,
        },
    };
    Failure {
        error,
        retry,
        headers: Box::new(headers),
    }
}

fn decode(what: &str, v: &Value) -> ApiError {
    ApiError::Decode {
        message: format!("{what}: {v}"),
    }
}

/// Parses a non-streaming message body (§1.4), tolerating absent newer fields and skipping
/// content blocks of types this client does not model.
fn message_from_json(v: &Value) -> Result<Response, ApiError> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let id = s("id").ok_or_else(|| decode("message without id", v))?;
    let content: Vec<ContentBlock> = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| decode("message without content", v))?
        .iter()
        .filter_map(|b| serde_json::from_value(b.clone()).ok())
        .collect();
    let mut usage = Usage::default();
    if let Some(u) = v.get("usage") {
        usage.merge(u);
    }
    Ok(Response {
        id,
        model: s("model").unwrap_or_default(),
        text: text_of(&content),
        content,
        stop_reason: s("stop_reason"),
        stop_sequence: s("stop_sequence"),
        usage,
        request_id: None,
        attempts: 1,
    })
}

fn text_of(content: &[ContentBlock]) -> String {
    content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect()
}

#[derive(Debug)]
enum BlockAcc {
    Text(String),
    Thinking {
        thinking: String,
        signature: String,
    },
    Redacted(String),
    ToolUse {
        id: String,
        name: String,
        json: String,
        input: Value,
    },
    Other,
}

/// Assembles a message from stream records (§1.5).
#[derive(Debug, Default)]
struct Accumulator {
    id: String,
    model: String,
    blocks: Vec<Option<BlockAcc>>,
    finished: Vec<Option<ContentBlock>>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    usage: Usage,
    done: bool,
}

impl Accumulator {
    fn handle(&mut self, rec: &SseRecord, on_event: Callback<'_>) -> Result<(), Failure> {
        // As the SDKs: records without `event:` are dropped, pings skipped.
        let Some(event) = rec.event.as_deref() else {
            return Ok(());
        };
        if event == "ping" {
            return Ok(());
        }
        let v: Value = serde_json::from_str(&rec.data).map_err(|e| {
            Failure::fatal(ApiError::Decode {
                message: format!("{event} event with bad JSON: {e}"),
            })
        })?;
        // A message has a handful of content blocks; an absurd index (a broken proxy) must
        // not become a huge allocation.
        let index = v
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(MAX_BLOCK_INDEX) as usize;
        match event {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                self.id = m
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into();
                self.model = m
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into();
                if let Some(u) = m.get("usage") {
                    self.usage.merge(u);
                }
                on_event(StreamEvent::MessageStart {
                    id: self.id.clone(),
                    model: self.model.clone(),
                });
            }
            "content_block_start" => {
                let b = v.get("content_block").unwrap_or(&Value::Null);
                let str_of = |k: &str| {
                    b.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let acc = match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = str_of("text");
                        if !t.is_empty() {
                            on_event(StreamEvent::TextDelta(t.clone()));
                        }
                        BlockAcc::Text(t)
                    }
                    Some("thinking") => BlockAcc::Thinking {
                        thinking: str_of("thinking"),
                        signature: str_of("signature"),
                    },
                    Some("redacted_thinking") => BlockAcc::Redacted(str_of("data")),
                    Some("tool_use") => {
                        on_event(StreamEvent::ToolUseStart {
                            id: str_of("id"),
                            name: str_of("name"),
                        });
                        BlockAcc::ToolUse {
                            id: str_of("id"),
                            name: str_of("name"),
                            json: String::new(),
                            input: b.get("input").cloned().unwrap_or(Value::Object(Map::new())),
                        }
                    }
                    _ => BlockAcc::Other,
                };
                if self.blocks.len() <= index {
                    self.blocks.resize_with(index + 1, || None);
                }
                self.blocks[index] = Some(acc);
            }
            "content_block_delta" => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                let piece = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default();
                match (
                    self.blocks.get_mut(index).and_then(Option::as_mut),
                    d.get("type").and_then(Value::as_str),
                ) {
                    (Some(BlockAcc::Text(t)), Some("text_delta")) => {
                        t.push_str(piece("text"));
                        on_event(StreamEvent::TextDelta(piece("text").to_string()));
                    }
                    (Some(BlockAcc::Thinking { thinking, .. }), Some("thinking_delta")) => {
                        thinking.push_str(piece("thinking"));
                        on_event(StreamEvent::ThinkingDelta(piece("thinking").to_string()));
                    }
                    (Some(BlockAcc::Thinking { signature, .. }), Some("signature_delta")) => {
                        signature.push_str(piece("signature"));
                    }
                    (Some(BlockAcc::ToolUse { json, .. }), Some("input_json_delta")) => {
                        json.push_str(piece("partial_json"));
                    }
                    _ => {} // citations and block types this client does not model
                }
            }
            "content_block_stop" => {
                let block = match self.blocks.get_mut(index).and_then(Option::take) {
                    Some(BlockAcc::Text(text)) => Some(ContentBlock::Text(TextBlock::new(text))),
                    Some(BlockAcc::Thinking {
                        thinking,
                        signature,
                    }) => Some(ContentBlock::Thinking {
                        thinking,
                        signature,
                    }),
                    Some(BlockAcc::Redacted(data)) => Some(ContentBlock::RedactedThinking { data }),
                    Some(BlockAcc::ToolUse {
                        id,
                        name,
                        json,
                        input,
                    }) => {
                        let input = if json.trim().is_empty() {
                            input
                        } else {
                            serde_json::from_str(&json).map_err(|e| {
                                Failure::fatal(ApiError::Decode {
                                    message: format!(
                                        "tool_use {name} input is not JSON ({e}): {json}"
                                    ),
                                })
                            })?
                        };
                        Some(ContentBlock::ToolUse {
                            id,
                            name,
                            input,
                            cache_control: None,
                        })
                    }
                    Some(BlockAcc::Other) | None => None,
                };
                if self.finished.len() <= index {
                    self.finished.resize_with(index + 1, || None);
                }
                self.finished[index] = block;
            }
            "message_delta" => {
                if let Some(d) = v.get("delta") {
                    if let Some(r) = d.get("stop_reason").and_then(Value::as_str) {
                        self.stop_reason = Some(r.to_string());
                    }
                    if let Some(s) = d.get("stop_sequence").and_then(Value::as_str) {
                        self.stop_sequence = Some(s.to_string());
                    }
                }
                if let Some(u) = v.get("usage") {
                    self.usage.merge(u);
                    on_event(StreamEvent::Usage(self.usage));
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let e = v.get("error").unwrap_or(&Value::Null);
                let error_type = e
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown_error")
                    .to_string();
                let message = e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let retry = matches!(error_type.as_str(), "overloaded_error" | "api_error");
                return Err(Failure {
                    error: ApiError::Stream {
                        error_type,
                        message,
                    },
                    retry,
                    headers: Box::default(),
                });
            }
            _ => {} // unknown events pass, as SDK ≥0.136 does
        }
        Ok(())
    }

    fn finish(self) -> Response {
        let content: Vec<ContentBlock> = self.finished.into_iter().flatten().collect();
        Response {
            id: self.id,
            model: self.model,
            text: text_of(&content),
            content,
            stop_reason: self.stop_reason,
            stop_sequence: self.stop_sequence,
            usage: self.usage,
            request_id: None,
            attempts: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_serialises_to_the_wire_shape() {
        let mut req = MessagesRequest::new("claude-opus-5-5", 1024, vec![Message::user("hi")]);
        req.system = vec![TextBlock::new("sys").cached()];
        let v = serde_json::to_value(&req).expect("serialise");
        assert_eq!(
            v,
            json!({
                "model": "claude-opus-5-5",
                "max_tokens": 1024,
                "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
            })
        );
        let back: MessagesRequest = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, req);
    }

    #[test]
    fn auth_debug_hides_the_secret() {
        let c = ClientConfig::new(Auth::ApiKey("sk-ant-secret".into()));
        assert!(!format!("{c:?}").contains("secret"));
    }
}
