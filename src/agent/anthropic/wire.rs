//! The wire types of the Messages API (contracts §1.2-1.4): the request, content blocks, usage
//! and the finished answer, in the exact shape the API sends and takes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;

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

/// A `usage` object as the API sends it in a message or a stream event: every field may be
/// absent or null (newer API versions put cumulative counts in `message_delta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub(super) struct UsageFields {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation: Option<CacheCreationFields>,
}

/// A `cache_creation` object with fields that may be absent or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub(super) struct CacheCreationFields {
    #[serde(default)]
    pub ephemeral_5m_input_tokens: Option<u64>,
    #[serde(default)]
    pub ephemeral_1h_input_tokens: Option<u64>,
}

impl Usage {
    /// Overwrites the fields present (and not null) in `fields`; this is how cumulative
    /// `message_delta` usage replaces the `message_start` values.
    pub(super) fn merge(&mut self, fields: &UsageFields) {
        let pairs = [
            (&mut self.input_tokens, fields.input_tokens),
            (&mut self.output_tokens, fields.output_tokens),
            (
                &mut self.cache_creation_input_tokens,
                fields.cache_creation_input_tokens,
            ),
            (
                &mut self.cache_read_input_tokens,
                fields.cache_read_input_tokens,
            ),
        ];
        for (field, value) in pairs {
            if let Some(n) = value {
                *field = n;
            }
        }
        if let Some(c) = fields.cache_creation {
            self.cache_creation = Some(CacheCreation {
                ephemeral_5m_input_tokens: c.ephemeral_5m_input_tokens.unwrap_or(0),
                ephemeral_1h_input_tokens: c.ephemeral_1h_input_tokens.unwrap_or(0),
            });
        }
    }
}

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

fn decode(what: &str, v: &Value) -> ApiError {
    ApiError::Decode {
        message: format!("{what}: {v}"),
    }
}

/// A non-streaming message body (§1.4), as far as the client reads it.
#[derive(Deserialize)]
struct MessageBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Option<Vec<MaybeBlock>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    stop_sequence: Option<String>,
    #[serde(default)]
    usage: Option<UsageFields>,
}

/// A content block of a type this client models, or one it skips.
#[derive(Deserialize)]
#[serde(untagged)]
enum MaybeBlock {
    Known(ContentBlock),
    Other(serde::de::IgnoredAny),
}

/// Parses a non-streaming message body (§1.4), tolerating absent newer fields and skipping
/// content blocks of types this client does not model.
pub(super) fn message_from_json(v: &Value) -> Result<Response, ApiError> {
    let body = MessageBody::deserialize(v).map_err(|e| decode(&format!("message ({e})"), v))?;
    let id = body.id.ok_or_else(|| decode("message without id", v))?;
    let content: Vec<ContentBlock> = body
        .content
        .ok_or_else(|| decode("message without content", v))?
        .into_iter()
        .filter_map(|b| match b {
            MaybeBlock::Known(b) => Some(b),
            MaybeBlock::Other(_) => None,
        })
        .collect();
    let mut usage = Usage::default();
    if let Some(u) = &body.usage {
        usage.merge(u);
    }
    Ok(Response {
        id,
        model: body.model.unwrap_or_default(),
        text: text_of(&content),
        content,
        stop_reason: body.stop_reason,
        stop_sequence: body.stop_sequence,
        usage,
        request_id: None,
        attempts: 1,
    })
}

pub(super) fn text_of(content: &[ContentBlock]) -> String {
    content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect()
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
}
