//! A client for the Anthropic Messages API (contracts §1): request and response types in the
//! exact wire shape, streaming over SSE, retries as the official SDKs do, typed errors.
//!
//! Owns HTTP and the wire format only. It reads no environment (the CLI passes the base URL and
//! the key), prints nothing (streamed text goes to a callback), never logs the key, and knows
//! nothing about prompts, budgets or the loop.
//!
//! * `wire`: request, content blocks, usage and the finished [`Response`];
//! * `error`: [`ApiError`], which errors are retried or critical, and their hints;
//! * [`sse`]: server-sent events framing (bytes to records);
//! * `event`: a stream record's JSON decoded into a typed event;
//! * `stream`: a message assembled from its stream, and the events the callback sees;
//! * `client`: the [`Client`], its configuration, the request and the retry loop;
//! * `answer`: how each kind of call (stream, whole message, token count) shapes its request
//!   and reads its answer, which the client's call is generic over.

mod answer;
mod client;
mod error;
mod event;
pub mod sse;
mod stream;
mod wire;

pub use client::{
    API_VERSION_2023, API_VERSION_2026, Auth, Client, ClientConfig, DEFAULT_BASE_URL,
};
pub use error::ApiError;
pub use stream::{StreamEvent, decode_stream};
pub use wire::{
    CacheControl, CacheCreation, ContentBlock, Message, MessagesRequest, Metadata, Response, Role,
    TextBlock, Tool, Usage,
};
