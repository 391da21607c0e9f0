//! The built-in `api` agent: one streamed Messages API call per iteration, with the stable
//! prefix of the prompt marked as a cache breakpoint.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::anthropic::{
    ApiError, Client, ClientConfig, ContentBlock, Message, MessagesRequest, Role, StreamEvent,
    TextBlock, Usage,
};
use super::turn::{
    Agent, AgentError, AgentEvent, AgentReply, AgentRequest, Cancel, PromptBlock, TokenUsage,
};

/// How often a call in flight looks at the stop flag.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// The Messages API agent.
pub struct ApiAgent {
    client: Client,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ApiAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAgent")
            .field("base_url", &self.client.config().base_url)
            .finish()
    }
}

impl ApiAgent {
    /// An agent over a client with this configuration.
    pub fn new(config: ClientConfig) -> Result<Self, AgentError> {
        let client = Client::new(config).map_err(|e| AgentError::Critical {
            message: e.to_string(),
            hint: "check [agent] api_base_url and the API key".into(),
        })?;
        Self::with_client(client)
    }

    /// An agent over an existing client (tests inject sleepers and clocks this way).
    pub fn with_client(client: Client) -> Result<Self, AgentError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AgentError::Critical {
                message: format!("cannot start the HTTP runtime: {e}"),
                hint: "this is a bug or a resource limit; try again".into(),
            })?;
        Ok(ApiAgent { client, runtime })
    }
}

/// The wire request for a prompt: system blocks, then one user message; the block marked
/// `cache` gets the `cache_control` breakpoint.
pub fn messages_request(req: &AgentRequest<'_>) -> MessagesRequest {
    let block = |b: &PromptBlock| {
        let t = TextBlock::new(b.text.clone());
        if b.cache { t.cached() } else { t }
    };
    let mut request = MessagesRequest::new(
        req.model,
        u64::from(req.max_tokens),
        vec![Message {
            role: Role::User,
            content: req
                .user
                .iter()
                .map(|b| ContentBlock::Text(block(b)))
                .collect(),
        }],
    );
    request.system = req.system.iter().map(block).collect();
    request
}

impl From<&Usage> for TokenUsage {
    fn from(u: &Usage) -> Self {
        TokenUsage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
        }
    }
}

impl From<&TokenUsage> for Usage {
    fn from(u: &TokenUsage) -> Self {
        Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            cache_creation: None,
        }
    }
}

fn agent_error(e: ApiError) -> AgentError {
    if e.is_critical() {
        AgentError::Critical {
            message: e.to_string(),
            hint: "fix the cause above; retrying will not help".into(),
        }
    } else {
        AgentError::Failed {
            message: e.to_string(),
            hint: "the API may be overloaded or unreachable; `git mmm run` later resumes where this run stopped".into(),
        }
    }
}

impl Agent for ApiAgent {
    fn kind(&self) -> &'static str {
        "api"
    }

    fn invoke(
        &self,
        request: &AgentRequest<'_>,
        cancel: &Cancel,
        events: &mut dyn FnMut(AgentEvent),
    ) -> Result<AgentReply, AgentError> {
        let wire = messages_request(request);
        let (tx, mut rx) = mpsc::unbounded_channel::<StreamEvent>();
        let call = self.client.stream(&wire, move |e| {
            let _ = tx.send(e);
        });
        let timeout = request.timeout;
        let outcome = self.runtime.block_on(async {
            let call = tokio::time::timeout(timeout, call);
            tokio::pin!(call);
            let mut poll = tokio::time::interval(CANCEL_POLL);
            loop {
                tokio::select! {
                    result = &mut call => {
                        while let Ok(e) = rx.try_recv() {
                            forward(e, events);
                        }
                        break Some(result);
                    }
                    Some(e) = rx.recv() => forward(e, events),
                    _ = poll.tick() => {
                        if cancel.is_cancelled() {
                            break None;
                        }
                    }
                }
            }
        });
        let response = match outcome {
            None => return Err(AgentError::Interrupted),
            Some(Err(_elapsed)) => {
                return Err(AgentError::Failed {
                    message: format!(
                        "the model call did not finish within the run's remaining time ({})",
                        humantime::format_duration(timeout)
                    ),
                    hint: "raise [loop] timeout or the spec's `timeout`".into(),
                });
            }
            Some(Ok(Err(e))) => return Err(agent_error(e)),
            Some(Ok(Ok(r))) => r,
        };
        Ok(AgentReply {
            text: response.text.clone(),
            model: response.model.clone(),
            usage: TokenUsage::from(&response.usage),
            cost_usd: None,
            stop_reason: response.stop_reason.clone(),
            attempts: response.attempts,
            edits_in_worktree: false,
            records: vec![json!({
                "message_id": response.id,
                "request_id": response.request_id,
                "attempts": response.attempts,
                "usage": {
                    "input_tokens": response.usage.input_tokens,
                    "output_tokens": response.usage.output_tokens,
                    "cache_creation_input_tokens": response.usage.cache_creation_input_tokens,
                    "cache_read_input_tokens": response.usage.cache_read_input_tokens,
                },
            })],
            ..AgentReply::default()
        })
    }
}

fn forward(e: StreamEvent, events: &mut dyn FnMut(AgentEvent)) {
    match e {
        StreamEvent::TextDelta(text) => events(AgentEvent::Text(text)),
        StreamEvent::Billed(u) | StreamEvent::Usage(u) => events(AgentEvent::Usage((&u).into())),
        StreamEvent::Retry {
            attempt,
            delay,
            reason,
        } => events(AgentEvent::Retry {
            attempt: attempt + 1,
            delay,
            reason,
        }),
        _ => {}
    }
}
