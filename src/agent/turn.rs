//! The [`Agent`] trait: one model invocation per iteration, whatever stands behind it (the
//! Messages API, a scripted file, Claude Code, another CLI).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

/// A block of prompt text, as the context stage builds it.
pub use crate::context::PromptBlock;

/// What the engine asks of an agent for one iteration.
#[derive(Debug, Clone)]
pub struct AgentRequest<'a> {
    /// The system prompt blocks (stable).
    pub system: &'a [PromptBlock],
    /// The user turn blocks (stable prefix first, then the volatile part).
    pub user: &'a [PromptBlock],
    /// The model id.
    pub model: &'a str,
    /// The maximum output tokens.
    pub max_tokens: u32,
    /// The iteration's worktree (agents that edit files themselves work there).
    pub worktree: &'a Path,
    /// The iteration number (1-based).
    pub iteration: u32,
    /// What is left of the spec's budget, for agents that can cap themselves.
    pub budget_left_usd: Option<f64>,
    /// Wall-clock limit for this call.
    pub timeout: Duration,
}

impl AgentRequest<'_> {
    /// The whole prompt as one string (system, then user), for agents that take plain text.
    pub fn full_text(&self) -> String {
        let mut out = String::new();
        for b in self.system.iter().chain(self.user) {
            out.push_str(&b.text);
            if !b.text.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

/// Token usage of one invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TokenUsage {
    /// Input tokens not served from or written to the cache.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Input tokens served from the prompt cache.
    pub cache_read_input_tokens: u64,
}

impl TokenUsage {
    /// All input tokens, cached or not.
    pub fn total_input(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }

    /// Input and output together.
    pub fn total(&self) -> u64 {
        self.total_input() + self.output_tokens
    }

    /// Adds another usage to this one.
    pub fn add(&mut self, other: &TokenUsage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
    }
}

/// What an agent answered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentReply {
    /// The model's text (the edits and directives are parsed from it).
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// Token usage.
    pub usage: TokenUsage,
    /// Cost reported by the agent itself (Claude Code does); otherwise the engine prices usage.
    pub cost_usd: Option<f64>,
    /// `cost_usd` is a rounded figure (aider prints `Cost: $0.01`): the engine prices the usage
    /// instead when its price table knows the model, and keeps this figure otherwise.
    pub cost_rounded: bool,
    /// Why the model stopped (`end_turn`, `max_tokens`, …).
    pub stop_reason: Option<String>,
    /// HTTP attempts or process runs it took.
    pub attempts: u32,
    /// True when the agent edited the worktree itself (no edits to parse and apply).
    pub edits_in_worktree: bool,
    /// Agent-specific records for the transcript (request id, stream events, …).
    pub records: Vec<serde_json::Value>,
    /// Agent-specific figures for the metrics note (Claude Code's turns, duration, permission
    /// denials, …), kept there under `agent_metrics`.
    pub metrics: serde_json::Map<String, serde_json::Value>,
}

/// Things an agent reports while it works, for live progress.
#[derive(Debug, Clone)]
pub enum AgentEvent {
    /// A piece of streamed model text.
    Text(String),
    /// What the attempt in flight has billed so far (cumulative within the attempt; a
    /// [`AgentEvent::Retry`] ends the attempt). The input and cache tokens are billed from
    /// the moment the answer begins, so an attempt cut short later still costs them.
    Usage(TokenUsage),
    /// A retry is about to happen after a delay.
    Retry {
        /// Attempt number about to start (2 for the first retry).
        attempt: u32,
        /// The delay before it.
        delay: Duration,
        /// Why.
        reason: String,
    },
}

/// How an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Retrying cannot help and the run must stop: bad credentials, a spend limit, a refused
    /// permission mode.
    #[error("{message}")]
    Critical {
        /// What happened.
        message: String,
        /// What the user can do.
        hint: String,
    },
    /// The call failed after all retries; a later run may succeed.
    #[error("{message}")]
    Failed {
        /// What happened.
        message: String,
        /// What the user can do.
        hint: String,
    },
    /// The call was interrupted by a stop request.
    #[error("interrupted")]
    Interrupted,
}

impl AgentError {
    /// The hint for the user, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            AgentError::Critical { hint, .. } | AgentError::Failed { hint, .. } => Some(hint),
            AgentError::Interrupted => None,
        }
    }
}

/// A model behind the loop.
pub trait Agent: Send + Sync {
    /// The agent's kind, for the transcript (`api`, `scripted`, …).
    fn kind(&self) -> &'static str;

    /// Whether a call's cost is bounded by its `max_tokens` (one model call: the `api` and
    /// `scripted` agents). An agent that runs a loop of its own (Claude Code, any command) may
    /// spend up to the USD left it is given, and the engine holds all of that for its call.
    fn output_bounds_cost(&self) -> bool {
        true
    }

    /// Runs one invocation. `cancel` is set when the user asks the loop to stop; long calls
    /// should check it and return [`AgentError::Interrupted`].
    fn invoke(
        &self,
        request: &AgentRequest<'_>,
        cancel: &Cancel,
        events: &mut dyn FnMut(AgentEvent),
    ) -> Result<AgentReply, AgentError>;
}

/// A shared stop flag: set by `git mmm stop`, Ctrl-C or a deadline; read by the engine and
/// the agents.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Sets the flag.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
