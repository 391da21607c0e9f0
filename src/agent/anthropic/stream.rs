//! A message assembled from its stream (contracts §1.5): the events the callback sees as they
//! happen, and the blocks put together from their deltas.

use std::time::Duration;

use serde_json::Value;

use super::error::{ApiError, Failure};
use super::event::{BlockStart, Delta, Event, MessageDelta, MessageStart, decode};
use super::sse::SseRecord;
use super::wire::{ContentBlock, Response, TextBlock, Usage, UsageFields, text_of};

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
    /// The usage the message began with (`message_start`): its input and cache tokens are
    /// billed even if the stream is cut afterwards.
    Billed(Usage),
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

/// A content block being streamed.
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
        /// The `partial_json` fragments so far, parsed once the block stops.
        json: String,
        /// The input of the block's start, kept when no fragment follows.
        input: Value,
    },
    Other,
}

impl BlockAcc {
    /// A block begun by `content_block_start`; its first text and a tool call's start are
    /// shown as they arrive.
    fn start(block: BlockStart, on_event: Callback<'_>) -> Self {
        match block {
            BlockStart::Text { text } => {
                if !text.is_empty() {
                    on_event(StreamEvent::TextDelta(text.clone()));
                }
                BlockAcc::Text(text)
            }
            BlockStart::Thinking {
                thinking,
                signature,
            } => BlockAcc::Thinking {
                thinking,
                signature,
            },
            BlockStart::RedactedThinking { data } => BlockAcc::Redacted(data),
            BlockStart::ToolUse { id, name, input } => {
                on_event(StreamEvent::ToolUseStart {
                    id: id.clone(),
                    name: name.clone(),
                });
                BlockAcc::ToolUse {
                    id,
                    name,
                    json: String::new(),
                    input,
                }
            }
            BlockStart::Other => BlockAcc::Other,
        }
    }

    /// Adds a delta; one that does not fit the block's kind (citations, kinds this client
    /// does not model) is passed over.
    fn push(&mut self, delta: Delta, on_event: Callback<'_>) {
        match (self, delta) {
            (BlockAcc::Text(t), Delta::Text { text }) => {
                t.push_str(&text);
                on_event(StreamEvent::TextDelta(text));
            }
            (BlockAcc::Thinking { thinking, .. }, Delta::Thinking { thinking: piece }) => {
                thinking.push_str(&piece);
                on_event(StreamEvent::ThinkingDelta(piece));
            }
            (BlockAcc::Thinking { signature, .. }, Delta::Signature { signature: piece }) => {
                signature.push_str(&piece);
            }
            (BlockAcc::ToolUse { json, .. }, Delta::InputJson { partial_json }) => {
                json.push_str(&partial_json);
            }
            _ => {}
        }
    }

    /// The finished block, `None` for kinds this client does not model. A tool call's input
    /// fragments must join into JSON.
    fn finish(self) -> Result<Option<ContentBlock>, Failure> {
        Ok(match self {
            BlockAcc::Text(text) => Some(ContentBlock::Text(TextBlock::new(text))),
            BlockAcc::Thinking {
                thinking,
                signature,
            } => Some(ContentBlock::Thinking {
                thinking,
                signature,
            }),
            BlockAcc::Redacted(data) => Some(ContentBlock::RedactedThinking { data }),
            BlockAcc::ToolUse {
                id,
                name,
                json,
                input,
            } => Some(ContentBlock::ToolUse {
                input: tool_input(&name, &json, input)?,
                id,
                name,
                cache_control: None,
            }),
            BlockAcc::Other => None,
        })
    }
}

/// The input of a tool call: its joined fragments, or the start's input when none came.
fn tool_input(name: &str, json: &str, start: Value) -> Result<Value, Failure> {
    if json.trim().is_empty() {
        return Ok(start);
    }
    serde_json::from_str(json).map_err(|e| {
        Failure::fatal(ApiError::Decode {
            message: format!("tool_use {name} input is not JSON ({e}): {json}"),
        })
    })
}

/// A message has a handful of content blocks; an absurd index (a broken proxy) must not
/// become a huge allocation.
fn slot(index: u64) -> usize {
    index.min(MAX_BLOCK_INDEX) as usize
}

/// Sets `v[i]`, growing `v` as needed.
fn put<T>(v: &mut Vec<Option<T>>, i: usize, value: Option<T>) {
    if v.len() <= i {
        v.resize_with(i + 1, || None);
    }
    v[i] = value;
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
    /// Takes one record; an `error` event or undecodable data fails the attempt.
    pub(super) fn handle(
        &mut self,
        rec: &SseRecord,
        on_event: Callback<'_>,
    ) -> Result<(), Failure> {
        let Some(event) = decode(rec)? else {
            return Ok(());
        };
        match event {
            Event::MessageStart { message } => self.message_start(message, on_event),
            Event::ContentBlockStart {
                index,
                content_block,
            } => put(
                &mut self.blocks,
                slot(index),
                Some(BlockAcc::start(content_block, on_event)),
            ),
            Event::ContentBlockDelta { index, delta } => {
                if let Some(Some(block)) = self.blocks.get_mut(slot(index)) {
                    block.push(delta, on_event);
                }
            }
            Event::ContentBlockStop { index } => self.block_stop(slot(index))?,
            Event::MessageDelta { delta, usage } => self.message_delta(delta, usage, on_event),
            Event::MessageStop => self.done = true,
            Event::Error { error } => return Err(error.into_failure()),
            Event::Ping | Event::Unknown => {} // unknown events pass, as SDK ≥0.136 does
        }
        Ok(())
    }

    fn message_start(&mut self, message: MessageStart, on_event: Callback<'_>) {
        self.id = message.id.unwrap_or_default();
        self.model = message.model.unwrap_or_default();
        if let Some(u) = &message.usage {
            self.usage.merge(u);
        }
        on_event(StreamEvent::MessageStart {
            id: self.id.clone(),
            model: self.model.clone(),
        });
        if message.usage.is_some() {
            on_event(StreamEvent::Billed(self.usage));
        }
    }

    fn block_stop(&mut self, index: usize) -> Result<(), Failure> {
        let block = match self.blocks.get_mut(index).and_then(Option::take) {
            Some(acc) => acc.finish()?,
            None => None,
        };
        put(&mut self.finished, index, block);
        Ok(())
    }

    fn message_delta(
        &mut self,
        delta: MessageDelta,
        usage: Option<UsageFields>,
        on_event: Callback<'_>,
    ) {
        if delta.stop_reason.is_some() {
            self.stop_reason = delta.stop_reason;
        }
        if delta.stop_sequence.is_some() {
            self.stop_sequence = delta.stop_sequence;
        }
        if let Some(u) = &usage {
            self.usage.merge(u);
            on_event(StreamEvent::Usage(self.usage));
        }
    }

    /// The assembled answer: the finished blocks of known kinds, in index order.
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

/// Decodes a whole stream of the Messages API as the streaming client reads it (chunks split
/// anywhere, records handled in order, the stream stops at `message_stop`), passing each
/// [`StreamEvent`] to `on_event`. The answer, or `None` when the stream fails the attempt (an
/// `error` event, undecodable data, no `message_stop`). For fuzzing and tests.
pub fn decode_stream(
    chunks: &[&[u8]],
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Option<Response> {
    let mut acc = Accumulator::default();
    let mut parser = super::sse::SseParser::new();
    for chunk in chunks {
        for rec in parser.push(chunk) {
            acc.handle(&rec, on_event).ok()?;
            if acc.done {
                return Some(acc.finish());
            }
        }
    }
    if let Some(rec) = parser.finish() {
        acc.handle(&rec, on_event).ok()?;
    }
    acc.done.then(|| acc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(acc: &mut Accumulator, events: &[Value], seen: &mut Vec<StreamEvent>) {
        for e in events {
            let rec = SseRecord {
                event: Some(e["type"].as_str().expect("type").to_string()),
                data: e.to_string(),
            };
            acc.handle(&rec, &mut |ev| seen.push(ev))
                .unwrap_or_else(|f| panic!("{}", f.error));
        }
    }

    #[test]
    fn assembles_the_documented_stream() {
        let mut acc = Accumulator::default();
        let mut seen = Vec::new();
        feed(
            &mut acc,
            &[
                json!({"type":"message_start","message":{"id":"msg_1","model":"m","usage":{"input_tokens":10,"output_tokens":1}}}),
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                json!({"type":"ping"}),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}),
                json!({"type":"content_block_stop","index":0}),
                json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"Bash","input":{}}}),
                json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}),
                json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"command\": \"echo hi\"}"}}),
                json!({"type":"content_block_stop","index":1}),
                json!({"type":"content_block_start","index":2,"content_block":{"type":"server_tool_use","id":"s"}}),
                json!({"type":"content_block_stop","index":2}),
                json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":10,"output_tokens":12}}),
                json!({"type":"something_new"}),
                json!({"type":"message_stop"}),
            ],
            &mut seen,
        );
        assert!(acc.done);
        let r = acc.finish();
        assert_eq!((r.id.as_str(), r.model.as_str()), ("msg_1", "m"));
        assert_eq!(r.text, "Hello");
        assert_eq!(r.content.len(), 2);
        assert_eq!(
            r.content[1],
            ContentBlock::ToolUse {
                id: "toolu_1".into(),
                name: "Bash".into(),
                input: json!({"command": "echo hi"}),
                cache_control: None,
            }
        );
        assert_eq!(r.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (10, 12));
        // start, billed, text, tool start, usage
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert!(matches!(seen[1], StreamEvent::Billed(u) if u.input_tokens == 10));
        assert_eq!(seen[2], StreamEvent::TextDelta("Hello".into()));
    }

    #[test]
    fn broken_tool_input_and_stream_errors_fail() {
        let mut acc = Accumulator::default();
        let mut seen = Vec::new();
        feed(
            &mut acc,
            &[
                json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"Bash","input":{}}}),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}),
            ],
            &mut seen,
        );
        let stop = SseRecord {
            event: Some("content_block_stop".into()),
            data: r#"{"type":"content_block_stop","index":0}"#.into(),
        };
        let f = acc.handle(&stop, &mut |_| {}).expect_err("not JSON");
        assert!(!f.retry);
        let err = SseRecord {
            event: Some("error".into()),
            data: r#"{"type":"error","error":{"type":"api_error","message":"boom"}}"#.into(),
        };
        let f = acc.handle(&err, &mut |_| {}).expect_err("an error event");
        assert!(f.retry);
    }

    #[test]
    fn decode_stream_assembles_records_split_across_chunks() {
        let sse = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"x\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hello\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        )
        .as_bytes();
        for cut in [0, 7, 100, sse.len()] {
            let (a, b) = sse.split_at(cut);
            let r = decode_stream(&[a, b], &mut |_| {}).expect("a whole answer");
            assert_eq!(
                (r.text.as_str(), r.usage.input_tokens),
                ("hello", 3),
                "cut {cut}"
            );
        }
        let cut_short = &sse[..sse.len() - 30];
        assert!(decode_stream(&[cut_short], &mut |_| {}).is_none());
    }

    #[test]
    fn an_absurd_index_is_capped() {
        let mut acc = Accumulator::default();
        feed(
            &mut acc,
            &[
                json!({"type":"content_block_start","index":u64::MAX,"content_block":{"type":"text","text":"x"}}),
            ],
            &mut Vec::new(),
        );
        assert_eq!(acc.blocks.len(), MAX_BLOCK_INDEX as usize + 1);
    }
}
