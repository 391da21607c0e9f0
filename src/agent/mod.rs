//! Agents: the model behind a trait. `api` calls the Anthropic Messages API; `scripted` replays
//! recorded answers for the demo and tests.

pub mod scripted;
pub mod turn;

pub use scripted::ScriptedAgent;
pub use turn::{
    Agent, AgentError, AgentEvent, AgentReply, AgentRequest, Cancel, PromptBlock, TokenUsage,
};
