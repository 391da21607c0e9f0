//! Agents: the model behind the [`Agent`] trait. Each invocation gets the prompt built by the
//! context stage and returns the model's text with usage and cost.
//!
//! * [`api`]: the built-in agent over the Messages API client: [`anthropic`] (HTTP, wire
//!   types, errors, SSE framing and stream decoding), [`retry`] (the SDKs' retry policy)
//!   and [`pricing`] (the price table as data);
//! * [`scripted`]: replays answers from a TOML file (the demo, tests, benchmarks);
//! * [`claude_code`]: runs the Claude Code CLI headless in the worktree;
//! * [`command`]: runs any other agent CLI from a configured command line.
//!
//! None of them reads the environment or prints: the CLI passes keys and URLs in.

pub mod anthropic;
pub mod api;
mod child;
pub mod claude_code;
pub mod command;
pub mod pricing;
pub mod retry;
pub mod scripted;
pub mod turn;

pub use anthropic::{
    ApiError, Auth, CacheControl, Client, ClientConfig, ContentBlock, Message, MessagesRequest,
    Response, Role, StreamEvent, TextBlock, Tool, Usage,
};
pub use api::ApiAgent;
pub use claude_code::{ClaudeCodeAgent, ClaudeCodeConfig};
pub use command::{CommandAgent, CommandAgentError, CommandConfig};
pub use pricing::{ModelPrice, PriceTable};
pub use retry::{RetryPolicy, Sleeper};
pub use scripted::ScriptedAgent;
pub use turn::{
    Agent, AgentError, AgentEvent, AgentReply, AgentRequest, Cancel, PromptBlock, TokenUsage,
};
