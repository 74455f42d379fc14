//! OpenAI chat-completion requests and their translation to the canonical request.
//!
//! Pure: no I/O. Images given by http(s) URL become [`Part::ImageUrl`] for the generation layer
//! to fetch; `data:` URLs are decoded here.

use auxot_common::chat::{
    ChatRequest, Message, Part, Reasoning, ResponseFormat, Role, Sampling, ToolChoice, ToolSpec,
};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::generation::images;
use crate::generation::tool_loop::MeshTools;
use crate::limits::{self, ImageCount, Shape};

/// The request body, as far as auxot reads it. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Not in OpenAI's API; accepted because many local-model clients send it.
    pub top_k: Option<u32>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub stop: Option<Stop>,
    pub n: Option<u32>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub tools: Option<Vec<ToolDefinition>>,
    pub tool_choice: Option<Value>,
    pub response_format: Option<Value>,
    pub reasoning_effort: Option<String>,
    pub logprobs: Option<bool>,
    /// auxot extension: run the mesh's tools server-side (`true` or a list of tool names).
    pub auxot_mesh_tools: Option<MeshTools>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallIn>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Deserialize)]
pub struct ImageUrl {
    pub url: String,
}

#[derive(Debug, Deserialize)]
pub struct ToolCallIn {
    pub id: String,
    pub function: FunctionCallIn,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCallIn {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
pub struct ToolDefinition {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDefinition,
}

#[derive(Debug, Deserialize)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// A translated request and the options that shape the response.
#[derive(Debug)]
pub struct Translated {
    pub request: ChatRequest,
    pub stream: bool,
    pub include_usage: bool,
    pub mesh_tools: Option<MeshTools>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message)
}

/// OpenAI's ranges for `temperature` and `top_p`, shared by its chat, legacy completions and
/// Responses APIs.
pub fn check_sampling(temperature: Option<f64>, top_p: Option<f64>) -> Result<(), ApiError> {
    if temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(invalid("temperature: must be between 0 and 2"));
    }
    if top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(invalid("top_p: must be greater than 0 and at most 1"));
    }
    Ok(())
}

fn role(name: &str, index: usize) -> Result<Role, ApiError> {
    match name {
        "system" | "developer" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        "tool" => Ok(Role::Tool),
        other => Err(invalid(format!(
            "messages[{index}].role: `{other}` is not one of system, developer, user, assistant, tool"
        ))),
    }
}

fn message(
    index: usize,
    input: ChatMessage,
    images_seen: &mut ImageCount,
) -> Result<Message, ApiError> {
    let role = role(&input.role, index)?;
    let mut content = Vec::new();
    if let Some(reasoning) = input.reasoning_content.filter(|r| !r.is_empty()) {
        content.push(Part::Thinking {
            text: reasoning,
            signature: None,
        });
    }
    let mut texts = Vec::new();
    match input.content {
        None => {}
        Some(Content::Text(text)) => texts.push(Part::Text { text }),
        Some(Content::Parts(parts)) => {
            limits::check(
                Shape::Parts,
                &format!("messages[{index}].content"),
                parts.len(),
            )?;
            for (part_index, part) in parts.into_iter().enumerate() {
                match part {
                    ContentPart::Text { text } => texts.push(Part::Text { text }),
                    ContentPart::ImageUrl { image_url } => {
                        if role != Role::User {
                            return Err(invalid(format!(
                                "messages[{index}].content[{part_index}]: images are only allowed in user messages"
                            )));
                        }
                        let at = format!("messages[{index}].content[{part_index}].image_url.url");
                        images_seen.add(&at)?;
                        match images::parse_data_url(&image_url.url) {
                            Some(image) => texts.push(Part::Image(
                                image.map_err(|e| invalid(format!("{at}: {e}")))?,
                            )),
                            None => {
                                images::check_fetchable(&image_url.url)
                                    .map_err(|e| invalid(format!("{at}: {e}")))?;
                                texts.push(Part::ImageUrl { url: image_url.url });
                            }
                        }
                    }
                    ContentPart::Unsupported => {
                        return Err(invalid(format!(
                            "messages[{index}].content[{part_index}]: only `text` and `image_url` parts are supported"
                        )))
                    }
                }
            }
        }
    }
    if role == Role::Tool {
        let call_id = input.tool_call_id.ok_or_else(|| {
            invalid(format!(
                "messages[{index}].tool_call_id: required on tool messages"
            ))
        })?;
        let text: String = texts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        content.push(Part::ToolResult {
            call_id,
            content: text,
            is_error: false,
        });
        return Ok(Message { role, content });
    }
    content.extend(texts);
    let calls = input.tool_calls.unwrap_or_default();
    limits::check(
        Shape::Parts,
        &format!("messages[{index}].tool_calls"),
        calls.len(),
    )?;
    for call in calls {
        if role != Role::Assistant {
            return Err(invalid(format!(
                "messages[{index}].tool_calls: only assistant messages carry tool calls"
            )));
        }
        content.push(Part::ToolCall {
            id: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
        });
    }
    Ok(Message { role, content })
}

fn tool_choice(value: Option<Value>) -> Result<ToolChoice, ApiError> {
    let choice = match value {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(invalid(format!(
                    "tool_choice: `{other}` is not one of none, auto, required, or a function"
                )))
            }
        },
        Some(object) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tool_choice: expected {\"type\": \"function\", \"function\": {\"name\": ...}}"))?;
            ToolChoice::Function(name.to_string())
        }
    };
    // Whether the named tool exists is checked once mesh tools are attached
    // (`tool_loop::check_tool_choice`).
    Ok(choice)
}

fn response_format(value: Option<Value>) -> Result<ResponseFormat, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let spec = value.get("json_schema").ok_or_else(|| {
                invalid("response_format.json_schema: required when type is json_schema")
            })?;
            let schema = spec
                .get("schema")
                .cloned()
                .ok_or_else(|| invalid("response_format.json_schema.schema: required"))?;
            let name = spec
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("response")
                .to_string();
            Ok(ResponseFormat::JsonSchema { name, schema })
        }
        _ => Err(invalid(
            "response_format.type: must be one of text, json_object, json_schema",
        )),
    }
}

/// Translates and validates a request.
pub fn translate(input: ChatCompletionRequest) -> Result<Translated, ApiError> {
    if input.messages.is_empty() {
        return Err(invalid("messages: must contain at least one message"));
    }
    limits::check(Shape::Messages, "messages", input.messages.len())?;
    if input.model.trim().is_empty() {
        return Err(invalid(
            "model: must not be empty (use \"auto\" for any model)",
        ));
    }
    if let Some(n) = input.n {
        if n != 1 {
            return Err(invalid("n: only 1 choice per request is supported"));
        }
    }
    if input.logprobs == Some(true) {
        return Err(invalid("logprobs: not supported"));
    }
    check_sampling(input.temperature, input.top_p)?;
    let max_tokens = input.max_completion_tokens.or(input.max_tokens);
    if max_tokens == Some(0) {
        return Err(invalid("max_tokens: must be at least 1"));
    }
    let stop = match input.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    // OpenAI's own rule; the shared caps bound their length.
    if stop.len() > 4 {
        return Err(invalid("stop: at most 4 sequences"));
    }
    limits::check_stops("stop", stop.iter())?;
    let tools = input.tools.unwrap_or_default();
    limits::check(Shape::Tools, "tools", tools.len())?;
    let tools: Vec<ToolSpec> = tools
        .into_iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.kind != "function" {
                return Err(invalid(format!(
                    "tools[{i}].type: only `function` is supported"
                )));
            }
            Ok(ToolSpec {
                name: tool.function.name,
                description: tool.function.description.unwrap_or_default(),
                parameters: tool
                    .function
                    .parameters
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            })
        })
        .collect::<Result<_, _>>()?;
    let tool_choice = tool_choice(input.tool_choice)?;
    let mut images_seen = ImageCount::default();
    let messages = input
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(i, m, &mut images_seen))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Translated {
        request: ChatRequest {
            model: input.model,
            messages,
            prompt: None,
            tools,
            tool_choice,
            sampling: Sampling {
                temperature: input.temperature,
                top_p: input.top_p,
                top_k: input.top_k,
                max_tokens,
                stop,
                frequency_penalty: input.frequency_penalty,
                presence_penalty: input.presence_penalty,
            },
            response_format: response_format(input.response_format)?,
            reasoning: Reasoning {
                enabled: None,
                effort: input.reasoning_effort,
                budget_tokens: None,
            },
            prompt_tokens_first: false,
            request_id: None,
            continue_final: false,
        },
        stream: input.stream,
        include_usage: input.stream_options.is_some_and(|o| o.include_usage),
        mesh_tools: input.auxot_mesh_tools,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<Translated, ApiError> {
        let request: ChatCompletionRequest =
            serde_json::from_value(body).map_err(|e| invalid(e.to_string()))?;
        translate(request)
    }

    #[test]
    fn a_plain_chat_translates() {
        let t = parse(json!({
            "model": "auto",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
            ],
            "temperature": 0,
            "max_tokens": 5,
            "stop": "\n",
            "stream": true,
            "stream_options": {"include_usage": true}
        }))
        .expect("valid");
        assert!(t.stream && t.include_usage);
        assert_eq!(
            t.request.messages[0],
            Message::text(Role::System, "be brief")
        );
        assert_eq!(t.request.messages[1], Message::text(Role::User, "Hi"));
        assert_eq!(t.request.sampling.max_tokens, Some(5));
        assert_eq!(t.request.sampling.stop, vec!["\n".to_string()]);
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let t = parse(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9, "max_completion_tokens": 3})).expect("valid");
        assert_eq!(t.request.sampling.max_tokens, Some(3));
    }

    #[test]
    fn tool_round_trip_messages() {
        let t = parse(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
        }))
        .expect("valid");
        assert_eq!(
            t.request.tool_choice,
            ToolChoice::Function("get_weather".into())
        );
        assert_eq!(
            t.request.messages[1].content,
            vec![Part::ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into()
            }]
        );
        assert_eq!(
            t.request.messages[2].content,
            vec![Part::ToolResult {
                call_id: "call_1".into(),
                content: "sunny".into(),
                is_error: false
            }]
        );
    }

    #[test]
    fn images_by_data_url_are_decoded_and_urls_left_pending() {
        let t = parse(json!({
            "model": "m",
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAEC"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "text", "text": "what is this?"}
            ]}]
        }))
        .expect("valid");
        match &t.request.messages[0].content[0] {
            Part::Image(image) => assert_eq!(
                (image.media_type.as_str(), image.data.as_slice()),
                ("image/png", &[0u8, 1, 2][..])
            ),
            other => panic!("expected an image, got {other:?}"),
        }
        assert_eq!(
            t.request.messages[0].content[1],
            Part::ImageUrl {
                url: "https://example.com/cat.png".into()
            }
        );
    }

    #[test]
    fn shapes_over_the_limits_name_them() {
        let user = json!({"role": "user", "content": "x"});
        let image =
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAEC"}});
        let cases = [
            (
                json!({"model": "m", "messages": [user], "stop": ["y".repeat(257)]}),
                "stop[0]: 257 bytes in a stop string exceed the limit of 256",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": vec![image; 21]}]}),
                "messages[0].content[20].image_url.url: 21 images exceed the limit of 20",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": vec![json!({"type": "text", "text": "a"}); 513]}]}),
                "messages[0].content: 513 content parts in one message exceed the limit of 512",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body).expect_err("over a limit");
            assert_eq!(err.message, expected);
        }
    }

    #[test]
    fn invalid_requests_say_what_is_wrong() {
        let cases = [
            (
                json!({"model": "m", "messages": []}),
                "messages: must contain",
            ),
            (
                json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                "temperature",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}),
                "n: only 1",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "tool_call_id",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "only `text` and `image_url`",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
                "image_url.url",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}),
                "response_format.type",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body.clone()).expect_err("invalid");
            assert!(err.message.contains(expected), "{body}: {}", err.message);
        }
    }
}
