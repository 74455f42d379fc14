//! The canonical chat request and the events a generation produces.
//!
//! Both API dialects translate into [`ChatRequest`] and render [`ChatEvent`]s; the worker turns a
//! `ChatRequest` into an engine call and the engine's output into `ChatEvent`s. Keeping one
//! representation means a feature (tool calls, images, thinking) is added once on the wire and
//! once per dialect, never once per dialect pair.

use serde::{Deserialize, Serialize};

/// The model name that asks the router for any ready worker.
pub const AUTO_MODEL: &str = "auto";

/// A chat completion request, independent of the API dialect it arrived in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatRequest {
    /// The model id the caller asked for, or [`AUTO_MODEL`].
    pub model: String,
    /// The conversation, oldest first. System prompts are messages with [`Role::System`].
    /// Empty when [`Self::prompt`] is set.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// A raw prompt the model continues as is, with no chat template (legacy text completions).
    /// When set, `messages`, `tools` and the tool choice are unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Whether and which tool the model must call.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// Sampling and length limits.
    #[serde(default)]
    pub sampling: Sampling,
    /// Structured-output constraint on the answer.
    #[serde(default)]
    pub response_format: ResponseFormat,
    /// Thinking settings for models that reason before answering.
    #[serde(default)]
    pub reasoning: Reasoning,
    /// Ask the worker for the prompt's token count before the first token (a
    /// [`ChatEvent::PromptTokens`] event), for dialects that report it at the start of a stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prompt_tokens_first: bool,
    /// The id the router gave the API request, so the worker's log lines for it carry the same
    /// id as the router's (and as the caller's `x-request-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The last message is an assistant turn cut short (its worker was lost mid-generation) that
    /// the engine continues instead of opening a new turn: see [`ChatRequest::partial_turn`].
    /// Only sent to workers whose model advertises
    /// [`ModelInfo::continues`](crate::mesh::node::ModelInfo::continues).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_final: bool,
}

impl ChatRequest {
    /// True when any message carries an image, so only vision models may serve it.
    pub fn has_images(&self) -> bool {
        self.parts()
            .any(|p| matches!(p, Part::Image(_) | Part::ImageUrl { .. }))
    }

    /// True when an image is still given by URL: the router fetches those before forwarding.
    pub fn has_unresolved_images(&self) -> bool {
        self.parts().any(|p| matches!(p, Part::ImageUrl { .. }))
    }

    /// For a continuation ([`ChatRequest::continue_final`]): the conversation before the cut
    /// turn, and the cut assistant turn, whose parts are the output the caller already has.
    ///
    /// The engine emits only what follows, as if the generation had never stopped: more text,
    /// more argument fragments of the last call at its index (with no `id` or `name` again), new
    /// calls at the following indexes. `max_tokens` covers the whole turn, the cut part
    /// included, and so does the completion count of its `Usage`; its prompt count is the
    /// conversation's alone.
    pub fn partial_turn(&self) -> Result<Option<(&[Message], &Message)>, String> {
        if !self.continue_final {
            return Ok(None);
        }
        match self.messages.split_last() {
            Some((last, before)) if last.role == Role::Assistant => Ok(Some((before, last))),
            _ => Err("a continuation must end with the assistant turn it continues".into()),
        }
    }

    fn parts(&self) -> impl Iterator<Item = &Part> {
        self.messages.iter().flat_map(|m| &m.content)
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// The result of a tool call, sent back to the model.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

impl Message {
    /// A message made of one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: vec![Part::Text { text: text.into() }],
        }
    }

    /// The concatenation of the message's text parts.
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text { text } = part {
                out.push_str(text);
            }
        }
        out
    }
}

/// A typed piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
    },
    Image(Image),
    /// An image the caller gave by http(s) URL. The router fetches it and replaces the part with
    /// [`Part::Image`] in place before the request leaves for a worker; workers refuse it.
    ImageUrl {
        url: String,
    },
    /// A call the assistant made (in an assistant message).
    ToolCall {
        id: String,
        name: String,
        /// JSON text of the arguments, exactly as the model produced it.
        arguments: String,
    },
    /// The answer to a call (in a tool message).
    ToolResult {
        call_id: String,
        content: String,
        #[serde(default)]
        is_error: bool,
    },
    /// Reasoning the assistant did before answering.
    Thinking {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
}

/// Image bytes, already fetched or decoded by the router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// MIME type such as `image/png`.
    pub media_type: String,
    /// The encoded image file, carried as base64 on the wire.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", content = "name", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// The model must not call tools.
    None,
    /// The model must call one of the tools.
    Required,
    /// The model must call this tool.
    Function(String),
}

/// Sampling parameters and length limits. `None` means the engine's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub max_tokens: Option<u32>,
    /// Strings that end the generation; the matched one is not part of the output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
}

/// A constraint on the shape of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid for this schema.
    JsonSchema {
        name: String,
        schema: serde_json::Value,
    },
}

/// Thinking settings. Routers send them only to reasoning models (a named model that does not
/// reason is refused; `auto` prefers those that do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reasoning {
    /// `Some(false)` turns thinking off where the chat template allows it.
    pub enabled: Option<bool>,
    /// `low`, `medium` or `high`, for models that take an effort level.
    pub effort: Option<String>,
    /// Upper bound on thinking tokens (Anthropic's `budget_tokens`).
    pub budget_tokens: Option<u32>,
}

impl Reasoning {
    /// Whether the caller asked for thinking (turned on, or an effort level), as opposed to
    /// leaving it to the model or turning it off.
    pub fn requested(&self) -> bool {
        self.enabled == Some(true) || (self.enabled != Some(false) && self.effort.is_some())
    }
}

/// One thing that happened during a generation, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChatEvent {
    /// The prompt's size, before any output, when the request asked for it
    /// ([`ChatRequest::prompt_tokens_first`]). It is not output: a generation that fails after it
    /// can still be retried elsewhere.
    PromptTokens { tokens: u32 },
    /// A piece of the answer.
    Text { text: String },
    /// A piece of the model's reasoning.
    Reasoning { text: String },
    /// A piece of a tool call. The first piece for an `index` carries `id` and `name`; the
    /// `arguments` of all pieces for that index concatenate to the JSON arguments.
    ToolCall {
        index: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        arguments: String,
    },
    /// Token counts of the whole generation, sent once before [`ChatEvent::Finish`].
    Usage(Usage),
    /// The generation ended normally.
    Finish {
        reason: FinishReason,
        /// The stop string that ended it, when `reason` is [`FinishReason::StopSequence`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_sequence: Option<String>,
    },
    /// The generation failed; nothing follows.
    Error(crate::error::RemoteError),
}

impl ChatEvent {
    /// Whether this event ends the generation.
    pub fn is_last(&self) -> bool {
        matches!(self, ChatEvent::Finish { .. } | ChatEvent::Error(_))
    }

    /// Whether this event is generated output (what reaches a client and cannot be taken back).
    pub fn is_output(&self) -> bool {
        matches!(
            self,
            ChatEvent::Text { .. } | ChatEvent::Reasoning { .. } | ChatEvent::ToolCall { .. }
        )
    }
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn.
    Stop,
    /// A caller-supplied stop string was produced.
    StopSequence,
    /// `max_tokens` or the context length was reached.
    Length,
    /// The model called tools and waits for their results.
    ToolCalls,
}

/// Serde helper that carries bytes as standard base64 text.
mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_json() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::text(Role::System, "be brief"),
                Message {
                    role: Role::User,
                    content: vec![
                        Part::Text {
                            text: "what is this?".into(),
                        },
                        Part::Image(Image {
                            media_type: "image/png".into(),
                            data: vec![0, 1, 2, 255],
                        }),
                    ],
                },
            ],
            tool_choice: ToolChoice::Function("get_weather".into()),
            ..Default::default()
        };
        let json = serde_json::to_string(&request).expect("serialize");
        let back: ChatRequest = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, request);
        assert!(back.has_images());
    }

    #[test]
    fn thinking_is_requested_by_turning_it_on_or_naming_an_effort() {
        let cases = [
            (None, None, false),
            (Some(true), None, true),
            (Some(false), None, false),
            (None, Some("high"), true),
            (Some(false), Some("low"), false),
        ];
        for (enabled, effort, requested) in cases {
            let reasoning = Reasoning {
                enabled,
                effort: effort.map(str::to_string),
                budget_tokens: None,
            };
            assert_eq!(reasoning.requested(), requested, "{reasoning:?}");
        }
    }

    #[test]
    fn a_raw_prompt_travels_without_messages() {
        let request = ChatRequest {
            model: "m".into(),
            prompt: Some("Once upon a time".into()),
            ..Default::default()
        };
        let json = serde_json::to_value(&request).expect("serialize");
        assert_eq!(json["prompt"], "Once upon a time");
        let back: ChatRequest = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, request);
        // Requests from routers that predate the field still parse.
        let old: ChatRequest =
            serde_json::from_str(r#"{"model": "m", "messages": []}"#).expect("old shape");
        assert_eq!(old.prompt, None);
    }

    #[test]
    fn events_are_tagged_by_name() {
        let event = ChatEvent::Text { text: "hi".into() };
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(json, serde_json::json!({"event": "text", "text": "hi"}));
    }
}
