//! Agents: the model behind a trait. `api` calls the Anthropic Messages API; `scripted` replays
//! recorded answers for the demo and tests.
//!
//! This part holds the Messages API client: [`anthropic`] (HTTP, wire types, streaming,
//! errors), [`sse`] (stream framing), [`retry`] (the SDKs' retry policy) and [`pricing`] (the
//! price table as data). None of them reads the environment or prints.

pub mod anthropic;
pub mod pricing;
pub mod retry;
pub mod sse;

pub use anthropic::{
    ApiError, Auth, CacheControl, Client, ClientConfig, ContentBlock, Message, MessagesRequest,
    Response, Role, StreamEvent, TextBlock, Tool, Usage,
};
pub use pricing::{ModelPrice, PriceTable};
pub use retry::{RetryPolicy, Sleeper};
