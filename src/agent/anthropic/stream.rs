//! Stream decoding (contracts §1.5): the events the callback sees, and the assembly of a
//! message from the stream's records.

use std::time::Duration;

use serde_json::{Map, Value};

use super::error::{ApiError, Failure};
use super::sse::SseRecord;
use super::wire::{ContentBlock, Response, TextBlock, Usage, text_of};

/// The largest content-block index accepted from a stream.
const MAX_BLOCK_INDEX: u64 = 1024;

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

pub(super) type Callback<'a> = &'a mut (dyn FnMut(StreamEvent) + Send);

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
pub(super) struct Accumulator {
    id: String,
    model: String,
    blocks: Vec<Option<BlockAcc>>,
    finished: Vec<Option<ContentBlock>>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    usage: Usage,
    pub(super) done: bool,
}

impl Accumulator {
    pub(super) fn handle(
        &mut self,
        rec: &SseRecord,
        on_event: Callback<'_>,
    ) -> Result<(), Failure> {
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

    pub(super) fn finish(self) -> Response {
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
