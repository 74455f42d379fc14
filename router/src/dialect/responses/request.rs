//! Responses API requests (`POST /responses`) and their translation to the canonical request.
//!
//! Pure: no I/O. `input` is a string or a list of items: messages (`user`, `assistant`,
//! `system`, `developer`, with text and image parts), `function_call`, `function_call_output`
//! and `reasoning` items. Consecutive assistant-side items (reasoning, an assistant message,
//! function calls) become one assistant turn, as chat templates expect. `instructions` become
//! the system prompt of this turn only. The conversation behind `previous_response_id` is opened
//! by the caller ([`super::state`]) and passed in, so this file stays free of keys.

use auxot_common::chat::{
    ChatRequest, Message, Part, Reasoning, ResponseFormat, Role, Sampling, ToolChoice, ToolSpec,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::generation::images;
use crate::generation::tool_loop::MeshTools;
use crate::limits::{self, Shape};

/// The request body, as far as auxot reads it. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: Option<Value>,
    pub instructions: Option<String>,
    pub previous_response_id: Option<String>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Not in OpenAI's API; accepted because many local-model clients send it.
    pub top_k: Option<u32>,
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub reasoning: Option<ReasoningParam>,
    pub text: Option<TextParam>,
    pub parallel_tool_calls: Option<bool>,
    pub store: Option<bool>,
    pub metadata: Option<Value>,
    pub user: Option<String>,
    pub truncation: Option<String>,
    pub top_logprobs: Option<u32>,
    pub background: Option<bool>,
    pub conversation: Option<Value>,
    pub prompt: Option<Value>,
    /// auxot extension: run the mesh's tools server-side (`true` or a list of tool names).
    pub auxot_mesh_tools: Option<MeshTools>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReasoningParam {
    pub effort: Option<String>,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TextParam {
    pub format: Option<Value>,
}

/// What the response object repeats from the request, as OpenAI's does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Echo {
    pub model: String,
    pub instructions: Option<String>,
    pub previous_response_id: Option<String>,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// The function tools, in the response's shape.
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub reasoning_effort: Option<String>,
    pub reasoning_summary: Option<String>,
    pub text_format: Value,
    pub truncation: String,
    pub store: bool,
    pub metadata: Value,
    pub user: Option<String>,
}

/// A translated request and what its response is made from.
#[derive(Debug)]
pub struct Translated {
    pub request: ChatRequest,
    pub stream: bool,
    pub mesh_tools: Option<MeshTools>,
    pub echo: Echo,
    /// The conversation so far, without instructions: what the next turn builds on once this
    /// response's output is added.
    pub conversation: Vec<Message>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message)
}

fn role(name: &str, at: &str) -> Result<Role, ApiError> {
    match name {
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        "system" | "developer" => Ok(Role::System),
        other => Err(invalid(format!(
            "{at}.role: `{other}` is not one of user, assistant, system, developer"
        ))),
    }
}

/// The parts of a message item's `content`.
fn content(value: &Value, role: Role, at: &str) -> Result<Vec<Part>, ApiError> {
    let parts = match value {
        Value::String(text) => return Ok(vec![Part::Text { text: text.clone() }]),
        Value::Array(parts) => parts,
        _ => return Err(invalid(format!("{at}.content: must be a string or a list"))),
    };
    limits::check(Shape::Parts, &format!("{at}.content"), parts.len())?;
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let at = format!("{at}.content[{i}]");
        let text = || {
            part.get("text")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| invalid(format!("{at}.text: required")))
        };
        match part.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => out.push(Part::Text { text: text()? }),
            Some("refusal") => {
                let refusal = part.get("refusal").and_then(Value::as_str).unwrap_or("");
                out.push(Part::Text {
                    text: refusal.to_string(),
                });
            }
            Some("input_image") => {
                if role != Role::User {
                    return Err(invalid(format!(
                        "{at}: images are only allowed in user messages"
                    )));
                }
                let url = part.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                    invalid(format!(
                        "{at}.image_url: required (file_id needs stored files, which auxot does not keep)"
                    ))
                })?;
                match images::parse_data_url(url) {
                    Some(image) => out.push(Part::Image(
                        image.map_err(|e| invalid(format!("{at}.image_url: {e}")))?,
                    )),
                    None => {
                        images::check_fetchable(url)
                            .map_err(|e| invalid(format!("{at}.image_url: {e}")))?;
                        out.push(Part::ImageUrl {
                            url: url.to_string(),
                        });
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "{at}.type: `{}` is not supported (input_text, output_text, input_image)",
                    other.unwrap_or("(missing)")
                )))
            }
        }
    }
    Ok(out)
}

/// The text of a `function_call_output`'s `output`: a string, or text parts joined.
fn output_text(value: Option<&Value>, at: &str) -> Result<String, ApiError> {
    match value {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("")),
        _ => Err(invalid(format!("{at}.output: required (a string)"))),
    }
}

fn field<'a>(item: &'a Value, name: &str, at: &str) -> Result<&'a str, ApiError> {
    item.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.{name}: required")))
}

/// Appends `part` to the conversation's current assistant turn, starting one when needed.
fn push_assistant(messages: &mut Vec<Message>, part: Part) {
    match messages.last_mut() {
        Some(last) if last.role == Role::Assistant => last.content.push(part),
        _ => messages.push(Message {
            role: Role::Assistant,
            content: vec![part],
        }),
    }
}

/// Adds the `input` items to `messages`.
fn input_items(input: Option<Value>, messages: &mut Vec<Message>) -> Result<(), ApiError> {
    let items = match input {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(text)) => {
            messages.push(Message::text(Role::User, text));
            return Ok(());
        }
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("input: must be a string or a list of items")),
    };
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let kind = item.get("type").and_then(Value::as_str);
        match kind {
            None | Some("message") => {
                let role = role(field(item, "role", &at)?, &at)?;
                let parts = content(item.get("content").unwrap_or(&Value::Null), role, &at)?;
                if role == Role::Assistant {
                    for part in parts {
                        push_assistant(messages, part);
                    }
                } else {
                    messages.push(Message {
                        role,
                        content: parts,
                    });
                }
            }
            Some("function_call") => push_assistant(
                messages,
                Part::ToolCall {
                    id: field(item, "call_id", &at)?.to_string(),
                    name: field(item, "name", &at)?.to_string(),
                    arguments: item
                        .get("arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}")
                        .to_string(),
                },
            ),
            Some("function_call_output") => messages.push(Message {
                role: Role::Tool,
                content: vec![Part::ToolResult {
                    call_id: field(item, "call_id", &at)?.to_string(),
                    content: output_text(item.get("output"), &at)?,
                    is_error: false,
                }],
            }),
            Some("reasoning") => {
                let texts = |key: &str| -> String {
                    item.get(key)
                        .and_then(Value::as_array)
                        .map(|parts| {
                            parts
                                .iter()
                                .filter_map(|p| p.get("text").and_then(Value::as_str))
                                .collect::<Vec<_>>()
                                .join("\n")
                        })
                        .unwrap_or_default()
                };
                let text = match texts("content") {
                    text if text.is_empty() => texts("summary"),
                    text => text,
                };
                if !text.is_empty() {
                    push_assistant(
                        messages,
                        Part::Thinking {
                            text,
                            signature: None,
                        },
                    );
                }
            }
            Some("item_reference") => {
                return Err(invalid(format!(
                    "{at}: item references need stored items, and auxot stores none; send the item itself, or continue with previous_response_id"
                )))
            }
            Some(other) => {
                return Err(invalid(format!(
                    "{at}.type: `{other}` is not supported (message, function_call, function_call_output, reasoning)"
                )))
            }
        }
    }
    Ok(())
}

/// Function tools, as the canonical request and as the response repeats them.
fn tools(tools: Option<Vec<Value>>) -> Result<(Vec<ToolSpec>, Vec<Value>), ApiError> {
    let mut specs = Vec::new();
    let mut echoed = Vec::new();
    for (i, tool) in tools.unwrap_or_default().into_iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            other => {
                return Err(invalid(format!(
                    "tools[{i}].type: `{}` is not supported; only function tools are (the mesh's own tools are offered with auxot_mesh_tools)",
                    other.unwrap_or("(missing)")
                )))
            }
        }
        let name = field(&tool, "name", &format!("tools[{i}]"))?.to_string();
        let description = tool
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string);
        let parameters = tool
            .get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        echoed.push(json!({
            "type": "function",
            "name": name,
            "description": description,
            "parameters": parameters,
            "strict": tool.get("strict").and_then(Value::as_bool).unwrap_or(true),
        }));
        specs.push(ToolSpec {
            name,
            description: description.unwrap_or_default(),
            parameters,
        });
    }
    Ok((specs, echoed))
}

fn tool_choice(value: Option<&Value>) -> Result<ToolChoice, ApiError> {
    Ok(match value {
        None | Some(Value::Null) => ToolChoice::Auto,
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
        Some(object) if object.get("type").and_then(Value::as_str) == Some("function") => {
            let name = object.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid("tool_choice.name: required with {\"type\": \"function\"}")
            })?;
            ToolChoice::Function(name.to_string())
        }
        Some(_) => {
            return Err(invalid(
                "tool_choice: only none, auto, required and {\"type\": \"function\", \"name\": ...} are supported",
            ))
        }
    })
}

fn text_format(text: Option<&TextParam>) -> Result<(ResponseFormat, Value), ApiError> {
    let Some(format) = text.and_then(|t| t.format.clone()).filter(|f| !f.is_null()) else {
        return Ok((ResponseFormat::Text, json!({"type": "text"})));
    };
    let parsed = match format.get("type").and_then(Value::as_str) {
        Some("text") => ResponseFormat::Text,
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => {
            let schema = format
                .get("schema")
                .cloned()
                .ok_or_else(|| invalid("text.format.schema: required when type is json_schema"))?;
            let name = format
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("response")
                .to_string();
            ResponseFormat::JsonSchema { name, schema }
        }
        _ => {
            return Err(invalid(
                "text.format.type: must be one of text, json_object, json_schema",
            ))
        }
    };
    Ok((parsed, format))
}

fn reasoning(param: Option<&ReasoningParam>) -> Result<Reasoning, ApiError> {
    let Some(effort) = param.and_then(|p| p.effort.clone()) else {
        return Ok(Reasoning::default());
    };
    match effort.as_str() {
        "none" => Ok(Reasoning {
            enabled: Some(false),
            ..Reasoning::default()
        }),
        "minimal" | "low" | "medium" | "high" => Ok(Reasoning {
            effort: Some(effort),
            ..Reasoning::default()
        }),
        other => Err(invalid(format!(
            "reasoning.effort: `{other}` is not one of none, minimal, low, medium, high"
        ))),
    }
}

/// Translates and validates a request; `previous` is the conversation behind
/// `previous_response_id`, already opened.
pub fn translate(
    input: ResponsesRequest,
    previous: Option<Vec<Message>>,
) -> Result<Translated, ApiError> {
    if input.model.trim().is_empty() {
        return Err(invalid(
            "model: must not be empty (use \"auto\" for any model)",
        ));
    }
    if input.background == Some(true) {
        return Err(invalid(
            "background: not supported (auxot keeps no responses to poll); stream instead",
        ));
    }
    if input.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(invalid(
            "conversation: not supported (auxot stores no conversations); use previous_response_id",
        ));
    }
    if input.prompt.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(invalid("prompt: stored prompt templates are not supported"));
    }
    if input.top_logprobs.is_some_and(|n| n > 0) {
        return Err(invalid("top_logprobs: not supported"));
    }
    crate::dialect::openai::request::check_sampling(input.temperature, input.top_p)?;
    if input.max_output_tokens == Some(0) {
        return Err(invalid("max_output_tokens: must be at least 1"));
    }
    let truncation = input.truncation.unwrap_or_else(|| "disabled".into());
    if !matches!(truncation.as_str(), "auto" | "disabled") {
        return Err(invalid("truncation: must be auto or disabled"));
    }
    let mut conversation = previous.unwrap_or_default();
    let before = conversation.len();
    input_items(input.input, &mut conversation)?;
    if conversation.len() == before && input.previous_response_id.is_none() {
        return Err(invalid("input: required (a string or a list of items)"));
    }
    let tool_count = input.tools.as_ref().map_or(0, Vec::len);
    limits::check(Shape::Tools, "tools", tool_count)?;
    let (tool_specs, echoed_tools) = tools(input.tools)?;
    let choice = tool_choice(input.tool_choice.as_ref())?;
    let (response_format, format_echo) = text_format(input.text.as_ref())?;
    let reasoning = reasoning(input.reasoning.as_ref())?;
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    if let Some(instructions) = input.instructions.as_ref().filter(|i| !i.is_empty()) {
        messages.push(Message::text(Role::System, instructions.clone()));
    }
    messages.extend(conversation.iter().cloned());
    // The whole conversation goes to the worker, the turns behind previous_response_id too.
    limits::check(Shape::Messages, "input", messages.len())?;
    let images = messages
        .iter()
        .flat_map(|m| &m.content)
        .filter(|p| matches!(p, Part::Image(_) | Part::ImageUrl { .. }))
        .count();
    limits::check(Shape::Images, "input", images)?;
    let echo = Echo {
        model: input.model.clone(),
        instructions: input.instructions,
        previous_response_id: input.previous_response_id,
        max_output_tokens: input.max_output_tokens,
        temperature: input.temperature,
        top_p: input.top_p,
        tools: echoed_tools,
        tool_choice: input.tool_choice.unwrap_or_else(|| json!("auto")),
        parallel_tool_calls: input.parallel_tool_calls.unwrap_or(true),
        reasoning_effort: input.reasoning.as_ref().and_then(|r| r.effort.clone()),
        reasoning_summary: input.reasoning.as_ref().and_then(|r| r.summary.clone()),
        text_format: format_echo,
        truncation,
        store: input.store.unwrap_or(true),
        metadata: input.metadata.unwrap_or_else(|| json!({})),
        user: input.user,
    };
    Ok(Translated {
        request: ChatRequest {
            model: input.model,
            messages,
            tools: tool_specs,
            tool_choice: choice,
            sampling: Sampling {
                temperature: input.temperature,
                top_p: input.top_p,
                top_k: input.top_k,
                max_tokens: input.max_output_tokens,
                ..Sampling::default()
            },
            response_format,
            reasoning,
            ..Default::default()
        },
        stream: input.stream,
        mesh_tools: input.auxot_mesh_tools,
        echo,
        conversation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<Translated, ApiError> {
        parse_after(body, None)
    }

    fn parse_after(body: Value, previous: Option<Vec<Message>>) -> Result<Translated, ApiError> {
        let request: ResponsesRequest =
            serde_json::from_value(body).map_err(|e| invalid(e.to_string()))?;
        translate(request, previous)
    }

    #[test]
    fn a_string_input_with_instructions() {
        let t = parse(json!({
            "model": "auto", "input": "Hi", "instructions": "Be brief.",
            "max_output_tokens": 20, "temperature": 0, "stream": true
        }))
        .expect("valid");
        assert_eq!(
            t.request.messages,
            vec![
                Message::text(Role::System, "Be brief."),
                Message::text(Role::User, "Hi")
            ]
        );
        // Instructions are this turn's only.
        assert_eq!(t.conversation, vec![Message::text(Role::User, "Hi")]);
        assert_eq!(t.request.sampling.max_tokens, Some(20));
        assert!(t.stream);
        assert_eq!(t.echo.tool_choice, json!("auto"));
        assert_eq!(t.echo.text_format, json!({"type": "text"}));
        assert!(t.echo.store && t.echo.parallel_tool_calls);
    }

    #[test]
    fn items_of_a_tool_round_become_one_assistant_turn_and_tool_results() {
        let t = parse(json!({
            "model": "m",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "need the tool"}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get_weather"}
        }))
        .expect("valid");
        assert_eq!(
            t.request.messages,
            vec![
                Message::text(Role::System, "Use tools."),
                Message::text(Role::User, "Weather in Paris?"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::Thinking {
                            text: "need the tool".into(),
                            signature: None
                        },
                        Part::ToolCall {
                            id: "call_1".into(),
                            name: "get_weather".into(),
                            arguments: "{\"city\":\"Paris\"}".into()
                        },
                    ]
                },
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id: "call_1".into(),
                        content: "sunny".into(),
                        is_error: false
                    }]
                },
            ]
        );
        assert_eq!(
            t.request.tool_choice,
            ToolChoice::Function("get_weather".into())
        );
        assert_eq!(t.request.tools[0].name, "get_weather");
        assert_eq!(
            t.echo.tools[0],
            json!({"type": "function", "name": "get_weather", "description": null, "parameters": {"type": "object"}, "strict": true})
        );
    }

    #[test]
    fn previous_turns_come_first_and_carry_on() {
        let previous = vec![
            Message::text(Role::User, "My name is Ada."),
            Message::text(Role::Assistant, "Hello Ada."),
        ];
        let t = parse_after(
            json!({"model": "m", "input": "What is my name?", "previous_response_id": "resp_x", "instructions": "Answer briefly."}),
            Some(previous.clone()),
        )
        .expect("valid");
        assert_eq!(
            t.request.messages[0],
            Message::text(Role::System, "Answer briefly.")
        );
        assert_eq!(&t.request.messages[1..3], previous.as_slice());
        assert_eq!(t.conversation.len(), 3);
        assert_eq!(t.echo.previous_response_id.as_deref(), Some("resp_x"));
    }

    #[test]
    fn formats_and_reasoning() {
        let t = parse(json!({
            "model": "m", "input": "x",
            "text": {"format": {"type": "json_schema", "name": "city", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "high"}
        }))
        .expect("valid");
        assert_eq!(
            t.request.response_format,
            ResponseFormat::JsonSchema {
                name: "city".into(),
                schema: json!({"type": "object"})
            }
        );
        assert!(t.request.reasoning.requested());
        let t = parse(json!({"model": "m", "input": "x", "reasoning": {"effort": "none"}}))
            .expect("valid");
        assert_eq!(t.request.reasoning.enabled, Some(false));
    }

    #[test]
    fn shapes_over_the_caps_are_refused() {
        let tools: Vec<Value> = (0..=limits::MAX_TOOLS)
            .map(|i| json!({"type": "function", "name": format!("f{i}")}))
            .collect();
        let error = parse(json!({"model": "m", "input": "x", "tools": tools})).expect_err("tools");
        assert!(
            error.message.contains("tools: 257 tools exceed"),
            "{}",
            error.message
        );

        let parts =
            vec![json!({"type": "input_text", "text": "x"}); limits::MAX_PARTS_PER_MESSAGE + 1];
        let error = parse(json!({"model": "m", "input": [{"role": "user", "content": parts}]}))
            .expect_err("parts");
        assert!(
            error.message.contains("input[0].content: 513"),
            "{}",
            error.message
        );

        // The turns behind previous_response_id count too.
        let previous = vec![Message::text(Role::User, "x"); limits::MAX_MESSAGES];
        let error = parse_after(json!({"model": "m", "input": "one more"}), Some(previous))
            .expect_err("messages");
        assert!(
            error.message.contains("input: 2049 messages exceed"),
            "{}",
            error.message
        );

        let image = json!({"type": "input_image", "image_url": "https://example.com/a.png"});
        let parts = vec![image; limits::MAX_IMAGES + 1];
        let error = parse(json!({"model": "m", "input": [{"role": "user", "content": parts}]}))
            .expect_err("images");
        assert!(
            error.message.contains("21 images exceed"),
            "{}",
            error.message
        );
    }

    #[test]
    fn invalid_requests_say_what_is_wrong() {
        let cases = [
            (json!({"model": "m"}), "input: required"),
            (json!({"model": "m", "input": 3}), "input: must be"),
            (
                json!({"model": "m", "input": [{"role": "wizard", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
                "stores none",
            ),
            (
                json!({"model": "m", "input": [{"type": "computer_call"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
                "image_url: required",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
                "only function tools",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
                "text.format.type",
            ),
            (
                json!({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}),
                "reasoning.effort",
            ),
            (
                json!({"model": "m", "input": "x", "background": true}),
                "background",
            ),
            (
                json!({"model": "m", "input": "x", "conversation": "conv_1"}),
                "conversation",
            ),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": 0}),
                "max_output_tokens",
            ),
            (
                json!({"model": "m", "input": "x", "temperature": 5}),
                "temperature",
            ),
            (
                json!({"model": "m", "input": "x", "top_logprobs": 2}),
                "top_logprobs",
            ),
            (
                json!({"model": "", "input": "x"}),
                "model: must not be empty",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body.clone()).expect_err("invalid");
            assert!(err.message.contains(expected), "{body}: {}", err.message);
        }
    }
}
