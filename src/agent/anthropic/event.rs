//! The records of a Messages API stream decoded into typed events (contracts §1.5), by the
//! `type` of their JSON. Event, block and delta kinds this client does not model decode to an
//! `Unknown`/`Other` variant and are passed over, as SDK ≥0.136 does.

use serde::Deserialize;
use serde_json::Value;

use super::error::{ApiError, ErrorDetail, Failure};
use super::sse::SseRecord;
use super::wire::UsageFields;

/// One stream event.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Event {
    /// The message began: its id, model and first usage.
    MessageStart {
        #[serde(default)]
        message: MessageStart,
    },
    /// Content block `index` began.
    ContentBlockStart {
        #[serde(default)]
        index: u64,
        #[serde(default)]
        content_block: BlockStart,
    },
    /// A piece of content block `index`.
    ContentBlockDelta {
        #[serde(default)]
        index: u64,
        #[serde(default)]
        delta: Delta,
    },
    /// Content block `index` is complete.
    ContentBlockStop {
        #[serde(default)]
        index: u64,
    },
    /// The stop reason and the cumulative usage.
    MessageDelta {
        #[serde(default)]
        delta: MessageDelta,
        #[serde(default)]
        usage: Option<UsageFields>,
    },
    /// The message is complete.
    MessageStop,
    /// Keeps the connection alive.
    Ping,
    /// The stream failed after it had begun.
    Error {
        #[serde(default)]
        error: ErrorDetail,
    },
    /// An event type this client does not know.
    #[serde(other)]
    Unknown,
}

/// The `message` of `message_start` (only what the client reads).
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(super) struct MessageStart {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub usage: Option<UsageFields>,
}

/// The `content_block` of `content_block_start`.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum BlockStart {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        /// `{}` when streamed; the input then arrives as `input_json_delta`s.
        #[serde(default = "empty_object")]
        input: Value,
    },
    /// `server_tool_use`, `*_tool_result`, `container_upload` and newer kinds.
    #[default]
    #[serde(other)]
    Other,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// The `delta` of `content_block_delta`.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Delta {
    #[serde(rename = "text_delta")]
    Text {
        #[serde(default)]
        text: String,
    },
    #[serde(rename = "thinking_delta")]
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    #[serde(rename = "signature_delta")]
    Signature {
        #[serde(default)]
        signature: String,
    },
    #[serde(rename = "input_json_delta")]
    InputJson {
        #[serde(default)]
        partial_json: String,
    },
    /// `citations_delta` and newer kinds.
    #[default]
    #[serde(other)]
    Other,
}

/// The `delta` of `message_delta`.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(super) struct MessageDelta {
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

/// The event names whose JSON must decode: a malformed one of these is an error, while an
/// unknown event whose JSON has an unexpected shape is passed over.
const KNOWN: [&str; 7] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
];

/// Decodes one record. As the SDKs do, a record without an `event:` line is dropped and a
/// `ping` is skipped unread; data that is not JSON is an error that is not retried.
pub(super) fn decode(rec: &SseRecord) -> Result<Option<Event>, Failure> {
    let Some(name) = rec.event.as_deref() else {
        return Ok(None);
    };
    if name == "ping" {
        return Ok(None);
    }
    match serde_json::from_str(&rec.data) {
        Ok(event) => Ok(Some(event)),
        Err(e) if e.is_data() && !KNOWN.contains(&name) => Ok(None),
        Err(e) => Err(Failure::fatal(ApiError::Decode {
            message: format!("{name} event with bad JSON: {e}"),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: Option<&str>, data: &str) -> SseRecord {
        SseRecord {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    fn event(data: &str) -> Event {
        let name = serde_json::from_str::<Value>(data).expect("json")["type"]
            .as_str()
            .expect("type")
            .to_string();
        decode(&record(Some(&name), data))
            .unwrap_or_else(|f| panic!("{}", f.error))
            .expect("an event")
    }

    #[test]
    fn decodes_the_documented_shapes() {
        let start = event(
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}"#,
        );
        let Event::MessageStart { message } = start else {
            panic!("{start:?}")
        };
        assert_eq!(message.id.as_deref(), Some("msg_1"));
        assert_eq!(message.usage.and_then(|u| u.input_tokens), Some(10));
        assert_eq!(
            event(
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"Bash","input":{}}}"#
            ),
            Event::ContentBlockStart {
                index: 1,
                content_block: BlockStart::ToolUse {
                    id: "toolu_1".into(),
                    name: "Bash".into(),
                    input: empty_object(),
                },
            }
        );
        assert_eq!(
            event(
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#
            ),
            Event::ContentBlockDelta {
                index: 1,
                delta: Delta::InputJson {
                    partial_json: "{\"a\"".into()
                },
            }
        );
        assert_eq!(
            event(
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12,"input_tokens":null}}"#
            ),
            Event::MessageDelta {
                delta: MessageDelta {
                    stop_reason: Some("end_turn".into()),
                    stop_sequence: None,
                },
                usage: Some(UsageFields {
                    output_tokens: Some(12),
                    ..UsageFields::default()
                }),
            }
        );
        assert_eq!(event(r#"{"type":"message_stop"}"#), Event::MessageStop);
    }

    #[test]
    fn unknown_kinds_pass() {
        assert_eq!(
            event(
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"x"}}"#
            ),
            Event::ContentBlockStart {
                index: 0,
                content_block: BlockStart::Other
            }
        );
        assert_eq!(
            event(
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}"#
            ),
            Event::ContentBlockDelta {
                index: 0,
                delta: Delta::Other
            }
        );
        assert_eq!(event(r#"{"type":"brand_new","x":1}"#), Event::Unknown);
        let odd = record(Some("brand_new"), "[1,2]");
        assert!(matches!(decode(&odd), Ok(None)));
    }

    #[test]
    fn records_without_a_name_and_pings_are_skipped() {
        assert!(matches!(
            decode(&record(None, r#"{"type":"message_stop"}"#)),
            Ok(None)
        ));
        assert!(matches!(
            decode(&record(Some("ping"), "not json")),
            Ok(None)
        ));
    }

    #[test]
    fn bad_json_is_a_decode_error_not_retried() {
        let Err(f) = decode(&record(Some("message_delta"), "{")) else {
            panic!("decoded")
        };
        assert!(!f.retry);
        assert!(
            f.error
                .to_string()
                .contains("message_delta event with bad JSON")
        );
    }

    #[test]
    fn stream_errors_retry_when_overloaded() {
        let Event::Error { error } =
            event(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
        else {
            panic!("not an error")
        };
        let f = error.into_failure();
        assert!(f.retry);
        assert_eq!(
            f.error.to_string(),
            "stream error (overloaded_error): Overloaded"
        );
        let f = ErrorDetail::default().into_failure();
        assert!(!f.retry);
    }
}
