//! Anthropic Messages requests and their translation to the canonical request. Pure.
//!
//! Validation messages follow Anthropic's style (`max_tokens: Field required`), because clients
//! written against the real API show them to people.

use auxot_common::chat::{
    ChatRequest, Message, Part, Reasoning, ResponseFormat, Role, Sampling, ToolChoice, ToolSpec,
};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::generation::images;
use crate::generation::tool_loop::MeshTools;
use crate::limits::{self, ImageCount, Shape};

/// The request body, parsed straight into types (never a `Value` tree of the whole body).
/// `model` and `messages` are optional here only so that their absence gets Anthropic's wording.
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: Option<String>,
    /// Required by `messages`, absent from `count_tokens`.
    pub max_tokens: Option<u32>,
    pub messages: Option<Vec<InputMessage>>,
    pub system: Option<System>,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
    #[serde(default)]
    pub stream: bool,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    #[serde(default)]
    pub tools: Vec<ToolDefinition>,
    pub tool_choice: Option<ToolChoiceIn>,
    pub thinking: Option<Thinking>,
    /// auxot extension: run the mesh's tools server-side (`true` or a list of tool names).
    pub auxot_mesh_tools: Option<MeshTools>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum System {
    Text(String),
    Blocks(Vec<SystemBlock>),
}

#[derive(Debug, Deserialize)]
pub struct SystemBlock {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Deserialize)]
pub struct InputMessage {
    pub role: String,
    pub content: Content,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<ToolResultContent>,
        #[serde(default)]
        is_error: bool,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {},
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Debug, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoiceIn {
    Auto {},
    Any {},
    Tool { name: String },
    None {},
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Thinking {
    Enabled { budget_tokens: u32 },
    Disabled {},
}

/// A translated request and the options that shape the response.
#[derive(Debug)]
pub struct Translated {
    pub request: ChatRequest,
    pub stream: bool,
    pub mesh_tools: Option<MeshTools>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message)
}

/// Checks the fields Anthropic requires, in its wording.
fn check_required(body: &MessagesRequest, need_max_tokens: bool) -> Result<(), ApiError> {
    if need_max_tokens && body.max_tokens.is_none() {
        return Err(invalid("max_tokens: Field required"));
    }
    if body.model.is_none() {
        return Err(invalid("model: Field required"));
    }
    if body.messages.is_none() {
        return Err(invalid("messages: Field required"));
    }
    Ok(())
}

fn image(source: ImageSource, at: &str, seen: &mut ImageCount) -> Result<Part, ApiError> {
    seen.add(at)?;
    match source {
        ImageSource::Base64 { media_type, data } => {
            if !media_type.starts_with("image/") {
                return Err(invalid(format!(
                    "{at}.source.media_type: `{media_type}` is not an image type"
                )));
            }
            Ok(Part::Image(
                images::decode_base64(&media_type, &data)
                    .map_err(|e| invalid(format!("{at}.source.data: {e}")))?,
            ))
        }
        ImageSource::Url { url } => {
            images::check_fetchable(&url).map_err(|e| invalid(format!("{at}.source.url: {e}")))?;
            Ok(Part::ImageUrl { url })
        }
    }
}

/// The text of a tool result, and the images it returned (screenshots, say), which chat
/// templates only take in user messages.
fn tool_result_parts(
    content: Option<ToolResultContent>,
    at: &str,
) -> Result<(String, Vec<ImageSource>), ApiError> {
    match content {
        None => Ok((String::new(), Vec::new())),
        Some(ToolResultContent::Text(text)) => Ok((text, Vec::new())),
        Some(ToolResultContent::Blocks(blocks)) => {
            limits::check(Shape::Parts, &format!("{at}.content"), blocks.len())?;
            let mut texts = Vec::new();
            let mut images = Vec::new();
            for block in blocks {
                match block {
                    Block::Text { text } => texts.push(text),
                    Block::Image { source } => images.push(source),
                    _ => {
                        return Err(invalid(format!(
                            "{at}.content: tool results may only contain text and image blocks"
                        )))
                    }
                }
            }
            Ok((texts.join("\n"), images))
        }
    }
}

/// Appends the canonical messages for one Anthropic message. A user message's tool results
/// become tool messages ahead of the rest of its content, which is the order chat templates
/// expect.
fn push_message(
    out: &mut Vec<Message>,
    index: usize,
    input: InputMessage,
    images_seen: &mut ImageCount,
) -> Result<(), ApiError> {
    let role = match input.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        _ => {
            return Err(invalid(format!(
                "messages.{index}.role: Input should be 'user' or 'assistant'"
            )))
        }
    };
    let blocks = match input.content {
        Content::Text(text) => vec![Block::Text { text }],
        Content::Blocks(blocks) => blocks,
    };
    limits::check(
        Shape::Parts,
        &format!("messages.{index}.content"),
        blocks.len(),
    )?;
    let mut content = Vec::new();
    for (b, block) in blocks.into_iter().enumerate() {
        let at = format!("messages.{index}.content.{b}");
        match (role, block) {
            (_, Block::Text { text }) if text.is_empty() => {
                return Err(invalid(format!("{at}.text: text content blocks must be non-empty")))
            }
            (_, Block::Text { text }) => content.push(Part::Text { text }),
            (Role::User, Block::Image { source }) => content.push(image(source, &at, images_seen)?),
            (Role::User, Block::ToolResult { tool_use_id, content: result, is_error }) => {
                let (text, images) = tool_result_parts(result, &at)?;
                out.push(Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id: tool_use_id,
                        content: text,
                        is_error,
                    }],
                });
                // The images follow the tool results, in the user turn that comes after them.
                for source in images {
                    content.push(image(source, &at, images_seen)?);
                }
            }
            (Role::Assistant, Block::ToolUse { id, name, input }) => {
                let input = if input.is_null() { Value::Object(Default::default()) } else { input };
                content.push(Part::ToolCall { id, name, arguments: input.to_string() });
            }
            (Role::Assistant, Block::Thinking { thinking, signature }) => {
                content.push(Part::Thinking { text: thinking, signature });
            }
            (Role::Assistant, Block::RedactedThinking {}) => {}
            (_, Block::Unsupported) => {
                return Err(invalid(format!("{at}.type: only text, image, tool_use, tool_result and thinking blocks are supported")))
            }
            (role, _) => {
                return Err(invalid(format!("{at}: this block type is not allowed in a {} message", role.as_str())))
            }
        }
    }
    if !content.is_empty() {
        out.push(Message { role, content });
    }
    Ok(())
}

/// Translates and validates a request (`need_max_tokens` is false for count_tokens).
pub fn translate(input: MessagesRequest, need_max_tokens: bool) -> Result<Translated, ApiError> {
    check_required(&input, need_max_tokens)?;
    let model = input.model.unwrap_or_default();
    let input_messages = input.messages.unwrap_or_default();
    if input_messages.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    limits::check(Shape::Messages, "messages", input_messages.len())?;
    limits::check(Shape::Tools, "tools", input.tools.len())?;
    limits::check_stops("stop_sequences", input.stop_sequences.iter())?;
    if need_max_tokens && input.max_tokens == Some(0) {
        return Err(invalid(
            "max_tokens: Input should be greater than or equal to 1",
        ));
    }
    if let Some(t) = input.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(invalid("temperature: Input should be less than or equal to 1 and greater than or equal to 0"));
        }
    }
    if let Some(p) = input.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid(
                "top_p: Input should be less than or equal to 1 and greater than or equal to 0",
            ));
        }
    }
    let mut messages = Vec::new();
    match input.system {
        None => {}
        Some(System::Text(text)) => messages.push(Message::text(Role::System, text)),
        Some(System::Blocks(blocks)) => {
            limits::check(Shape::Parts, "system", blocks.len())?;
            let mut texts = Vec::new();
            for (i, block) in blocks.into_iter().enumerate() {
                if block.kind != "text" {
                    return Err(invalid(format!(
                        "system.{i}.type: only text blocks are supported"
                    )));
                }
                texts.push(block.text);
            }
            messages.push(Message::text(Role::System, texts.join("\n\n")));
        }
    }
    let mut images_seen = ImageCount::default();
    for (i, message) in input_messages.into_iter().enumerate() {
        push_message(&mut messages, i, message, &mut images_seen)?;
    }
    let tools: Vec<ToolSpec> = input
        .tools
        .into_iter()
        .map(|t| ToolSpec {
            name: t.name,
            description: t.description.unwrap_or_default(),
            parameters: t
                .input_schema
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        })
        .collect();
    let tool_choice = match input.tool_choice {
        None | Some(ToolChoiceIn::Auto {}) => ToolChoice::Auto,
        Some(ToolChoiceIn::None {}) => ToolChoice::None,
        Some(ToolChoiceIn::Any {}) => ToolChoice::Required,
        Some(ToolChoiceIn::Tool { name }) => ToolChoice::Function(name),
    };
    let reasoning = match input.thinking {
        None => Reasoning::default(),
        Some(Thinking::Enabled { budget_tokens }) => {
            if budget_tokens < 1024 {
                return Err(invalid(
                    "thinking.budget_tokens: Input should be greater than or equal to 1024",
                ));
            }
            if let Some(max) = input.max_tokens {
                if budget_tokens >= max {
                    return Err(invalid(
                        "thinking.budget_tokens: must be less than max_tokens",
                    ));
                }
            }
            Reasoning {
                enabled: Some(true),
                effort: None,
                budget_tokens: Some(budget_tokens),
            }
        }
        Some(Thinking::Disabled {}) => Reasoning {
            enabled: Some(false),
            ..Reasoning::default()
        },
    };
    Ok(Translated {
        request: ChatRequest {
            model,
            messages,
            prompt: None,
            tools,
            tool_choice,
            sampling: Sampling {
                temperature: input.temperature,
                top_p: input.top_p,
                top_k: input.top_k,
                max_tokens: input.max_tokens,
                stop: input.stop_sequences,
                frequency_penalty: None,
                presence_penalty: None,
            },
            response_format: ResponseFormat::Text,
            reasoning,
            // A stream reports the prompt size in its first event.
            prompt_tokens_first: input.stream,
            request_id: None,
            continue_final: false,
        },
        stream: input.stream,
        mesh_tools: input.auxot_mesh_tools,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<Translated, ApiError> {
        let request: MessagesRequest =
            serde_json::from_value(body).map_err(|e| invalid(e.to_string()))?;
        translate(request, true)
    }

    #[test]
    fn system_blocks_and_text() {
        let t = parse(json!({
            "model": "auto", "max_tokens": 10,
            "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "messages": [{"role": "user", "content": "Hi"}],
            "stop_sequences": ["END"], "top_k": 5
        }))
        .expect("valid");
        assert_eq!(t.request.messages[0], Message::text(Role::System, "a\n\nb"));
        assert_eq!(t.request.messages[1], Message::text(Role::User, "Hi"));
        assert_eq!(t.request.sampling.stop, vec!["END".to_string()]);
        assert_eq!(t.request.sampling.top_k, Some(5));
    }

    #[test]
    fn tool_use_and_results_become_calls_and_tool_messages() {
        let t = parse(json!({
            "model": "m", "max_tokens": 100,
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "need a tool", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                    {"type": "text", "text": "so?"}
                ]}
            ]
        }))
        .expect("valid");
        assert_eq!(t.request.tool_choice, ToolChoice::Required);
        let m = &t.request.messages;
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[1].content[1],
            Part::ToolCall {
                id: "toolu_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into()
            }
        );
        assert_eq!(
            m[2],
            Message {
                role: Role::Tool,
                content: vec![Part::ToolResult {
                    call_id: "toolu_1".into(),
                    content: "sunny".into(),
                    is_error: false
                }]
            }
        );
        assert_eq!(m[3], Message::text(Role::User, "so?"));
    }

    #[test]
    fn images_in_tool_results_follow_in_the_user_turn() {
        let t = parse(json!({
            "model": "m", "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "screenshot please"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "text", "text": "here"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAEC"}}
                ]}]}
            ]
        }))
        .expect("valid");
        let m = &t.request.messages;
        assert_eq!(
            m[2].content,
            vec![Part::ToolResult {
                call_id: "t1".into(),
                content: "here".into(),
                is_error: false
            }]
        );
        assert_eq!(m[3].role, Role::User);
        assert!(matches!(&m[3].content[0], Part::Image(i) if i.data == vec![0, 1, 2]));
        let empty = parse(
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}),
        );
        assert!(empty
            .expect_err("empty text")
            .message
            .contains("must be non-empty"));
    }

    #[test]
    fn images_by_base64_and_url() {
        let t = parse(json!({
            "model": "m", "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAEC"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}}
                ]}
            ]
        }))
        .expect("valid");
        assert!(
            matches!(&t.request.messages[1].content[1], Part::Image(i) if i.data == vec![0, 1, 2])
        );
        assert_eq!(
            t.request.messages[1].content[2],
            Part::ImageUrl {
                url: "https://example.com/x.png".into()
            }
        );
    }

    #[test]
    fn thinking_and_tool_choice_mapping() {
        let t = parse(json!({
            "model": "m", "max_tokens": 4000,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "tools": [{"name": "f"}], "tool_choice": {"type": "tool", "name": "f"},
            "messages": [{"role": "user", "content": "x"}]
        }))
        .expect("valid");
        assert_eq!(
            t.request.reasoning,
            Reasoning {
                enabled: Some(true),
                effort: None,
                budget_tokens: Some(2048)
            }
        );
        assert_eq!(t.request.tool_choice, ToolChoice::Function("f".into()));
        assert_eq!(t.request.tools[0].parameters["type"], "object");
    }

    #[test]
    fn shapes_over_the_limits_name_them() {
        let user = json!({"role": "user", "content": "x"});
        let cases = [
            (
                json!({"model": "m", "max_tokens": 5, "messages": [user], "stop_sequences": vec!["s"; 17]}),
                "stop_sequences: 17 stop strings exceed the limit of 16",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": vec![user.clone(); 2049]}),
                "messages: 2049 messages exceed the limit of 2048",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [user], "tools": vec![json!({"name": "f"}); 257]}),
                "tools: 257 tools exceed the limit of 256",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body).expect_err("over a limit");
            assert_eq!(err.message, expected);
        }
    }

    #[test]
    fn validation_messages_match_anthropic() {
        let cases = [
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens: Field required",
            ),
            (
                json!({"max_tokens": 5, "messages": []}),
                "model: Field required",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": []}),
                "messages: at least one",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "messages.0.role",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "temperature": 1.5, "messages": [{"role": "user", "content": "x"}]}),
                "temperature",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]}),
                "messages.0.content.0.type",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]}),
                "not allowed in a assistant",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body.clone()).expect_err("invalid");
            assert!(err.message.contains(expected), "{body}: {}", err.message);
        }
    }
}
