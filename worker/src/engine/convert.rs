//! Canonical request to mistral.rs request parts. Pure functions, so every mapping is testable
//! without loading a model.

use std::collections::HashMap;

use auxot_common::chat::{
    ChatRequest, Message, Part, ResponseFormat, Role, Sampling, ToolChoice, ToolSpec,
};
use auxot_common::error::RemoteError;
use either::Either;
use indexmap::IndexMap;
use mistralrs::core::ReasoningEffort;
use mistralrs::{Constraint, Function, MessageContent, SamplingParams, StopTokens, Tool, ToolType};
use serde_json::{json, Value};

use super::constrain;

/// A chat in the shape mistral.rs's chat templates consume.
pub type EngineMessages = Vec<IndexMap<String, MessageContent>>;

/// Messages plus the decoded images they reference, in order.
#[derive(Debug, Default)]
pub struct EngineChat {
    pub messages: EngineMessages,
    pub images: Vec<image::DynamicImage>,
    /// Memory the decoded images take, bounded by [`MAX_DECODED_BYTES`].
    decoded_bytes: usize,
}

/// Widest or tallest image decoded.
const MAX_IMAGE_SIDE: u32 = 8192;
/// Largest allocation one image decode may make.
const MAX_IMAGE_ALLOC: u64 = 256 * 1024 * 1024;
/// Decoded pixels of all images of one request together: a few megabytes of compressed images
/// must not be able to exhaust a worker's memory.
const MAX_DECODED_BYTES: usize = 512 * 1024 * 1024;

/// Decodes an image within size limits.
fn decode_image(image: &auxot_common::chat::Image) -> Result<image::DynamicImage, RemoteError> {
    let failed = |e: &dyn std::fmt::Display| {
        RemoteError::invalid(format!(
            "image ({}) could not be decoded: {e}",
            image.media_type
        ))
    };
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&image.data))
        .with_guessed_format()
        .map_err(|e| failed(&e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    reader.decode().map_err(|e| failed(&e))
}

/// The refusal of an image still given by URL: the router fetches those before forwarding, and
/// a worker never reaches out to a URL from a request.
pub fn image_by_url() -> RemoteError {
    RemoteError::invalid(
        "an image given by URL reached the worker; the router fetches those before forwarding",
    )
}

fn text(value: impl Into<String>) -> MessageContent {
    Either::Left(value.into())
}

/// Tool-call arguments as the templates expect them: an object where the text is a JSON object
/// (Hugging Face templates index into it), the raw text otherwise.
fn arguments_value(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::String(arguments.to_string()),
    }
}

fn push_message(out: &mut EngineChat, message: &Message) -> Result<(), RemoteError> {
    match message.role {
        Role::Tool => {
            for part in &message.content {
                match part {
                    Part::ToolResult {
                        call_id, content, ..
                    } => {
                        out.messages.push(IndexMap::from([
                            ("role".to_string(), text("tool")),
                            ("content".to_string(), text(content.clone())),
                            ("tool_call_id".to_string(), text(call_id.clone())),
                        ]));
                    }
                    Part::Text { text: body } => {
                        out.messages.push(IndexMap::from([
                            ("role".to_string(), text("tool")),
                            ("content".to_string(), text(body.clone())),
                        ]));
                    }
                    Part::ImageUrl { .. } => return Err(image_by_url()),
                    _ => {
                        return Err(RemoteError::invalid(
                            "tool messages may only carry tool results and text",
                        ))
                    }
                }
            }
            Ok(())
        }
        role => {
            let mut entry = IndexMap::new();
            entry.insert("role".to_string(), text(role.as_str()));
            let mut body = String::new();
            let mut images = Vec::new();
            let mut calls = Vec::new();
            for part in &message.content {
                match part {
                    Part::Text { text } => body.push_str(text),
                    Part::Image(image) => {
                        let decoded = decode_image(image)?;
                        out.decoded_bytes += decoded.as_bytes().len();
                        if out.decoded_bytes > MAX_DECODED_BYTES {
                            return Err(RemoteError::invalid(format!(
                                "the request's images decode to more than {MAX_DECODED_BYTES} bytes"
                            )));
                        }
                        images.push(decoded);
                    }
                    Part::ImageUrl { .. } => return Err(image_by_url()),
                    Part::ToolCall {
                        id,
                        name,
                        arguments,
                    } => calls.push(IndexMap::from([
                        ("id".to_string(), Value::String(id.clone())),
                        ("type".to_string(), Value::String("function".into())),
                        (
                            "function".to_string(),
                            json!({"name": name, "arguments": arguments_value(arguments)}),
                        ),
                    ])),
                    // Earlier reasoning is not replayed: chat templates drop it anyway, and it
                    // would only spend context.
                    Part::Thinking { .. } => {}
                    Part::ToolResult { .. } => {
                        return Err(RemoteError::invalid(format!(
                            "a {} message cannot carry a tool result",
                            role.as_str()
                        )))
                    }
                }
            }
            if images.is_empty() {
                entry.insert("content".to_string(), text(body));
            } else {
                let mut parts: Vec<IndexMap<String, Value>> = images
                    .iter()
                    .map(|_| IndexMap::from([("type".to_string(), json!("image"))]))
                    .collect();
                parts.push(IndexMap::from([
                    ("type".to_string(), json!("text")),
                    ("text".to_string(), Value::String(body)),
                ]));
                entry.insert("content".to_string(), Either::Right(parts));
                out.images.extend(images);
            }
            if !calls.is_empty() {
                entry.insert("tool_calls".to_string(), Either::Right(calls));
            }
            out.messages.push(entry);
            Ok(())
        }
    }
}

/// The conversation in mistral.rs's message shape, with decoded images.
pub fn chat(request: &ChatRequest) -> Result<EngineChat, RemoteError> {
    let mut out = EngineChat::default();
    for message in &request.messages {
        push_message(&mut out, message)?;
    }
    Ok(out)
}

/// Sampling settings. Temperature 0 (or below) means greedy decoding.
pub fn sampling(sampling: &Sampling) -> SamplingParams {
    let greedy = sampling.temperature.is_some_and(|t| t <= 0.0);
    SamplingParams {
        temperature: if greedy { None } else { sampling.temperature },
        top_k: if greedy {
            Some(1)
        } else {
            sampling.top_k.map(|k| k as usize)
        },
        top_p: sampling.top_p,
        max_len: sampling.max_tokens.map(|n| n as usize),
        stop_toks: if sampling.stop.is_empty() {
            None
        } else {
            Some(StopTokens::Seqs(sampling.stop.clone()))
        },
        frequency_penalty: sampling.frequency_penalty,
        presence_penalty: sampling.presence_penalty,
        ..SamplingParams::neutral()
    }
}

/// The tool definitions.
pub fn tools(specs: &[ToolSpec]) -> Option<Vec<Tool>> {
    if specs.is_empty() {
        return None;
    }
    Some(
        specs
            .iter()
            .map(|spec| Tool {
                tp: ToolType::Function,
                function: Function {
                    name: spec.name.clone(),
                    description: (!spec.description.is_empty()).then(|| spec.description.clone()),
                    parameters: match &spec.parameters {
                        Value::Object(map) => Some(
                            map.iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect::<HashMap<_, _>>(),
                        ),
                        _ => None,
                    },
                },
            })
            .collect(),
    )
}

/// The engine's tool choice. Forced choices (`Required`, a named function) are enforced by the
/// worker with a JSON-schema constraint, so the engine itself is only told whether tools are on.
pub fn tool_choice(choice: &ToolChoice, has_tools: bool) -> Option<mistralrs::ToolChoice> {
    if !has_tools {
        return None;
    }
    Some(match choice {
        ToolChoice::None => mistralrs::ToolChoice::None,
        _ => mistralrs::ToolChoice::Auto,
    })
}

/// `low`/`medium`/`high`, or a 400 naming the accepted values.
pub fn reasoning_effort(effort: Option<&str>) -> Result<Option<ReasoningEffort>, RemoteError> {
    match effort {
        None => Ok(None),
        Some("low" | "minimal") => Ok(Some(ReasoningEffort::Low)),
        Some("medium") => Ok(Some(ReasoningEffort::Medium)),
        Some("high") => Ok(Some(ReasoningEffort::High)),
        Some(other) => Err(RemoteError::invalid(format!(
            "reasoning_effort `{other}` is not one of low, medium, high"
        ))),
    }
}

/// The decoding constraint of a structured-output format: closed objects (see
/// [`constrain::strict_schema`]).
pub fn constraint(format: &ResponseFormat) -> Constraint {
    match format {
        ResponseFormat::Text => Constraint::None,
        ResponseFormat::JsonObject => Constraint::JsonSchema(constrain::any_object()),
        ResponseFormat::JsonSchema { schema, .. } => {
            Constraint::JsonSchema(constrain::strict_schema(schema))
        }
    }
}

/// What the generated text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The answer, streamed as text.
    Text,
    /// The JSON arguments of a call to this tool, streamed as tool-call fragments.
    ToolArguments { name: String },
    /// `{"name": ..., "arguments": {...}}` choosing one of several tools; parsed at the end.
    ToolSelection,
}

/// A request ready for the engine: messages, tools and the decoding constraint.
pub struct Prepared {
    pub chat: EngineChat,
    pub tools: Option<Vec<Tool>>,
    pub tool_choice: Option<mistralrs::ToolChoice>,
    pub constraint: Constraint,
    pub output: Output,
    pub enable_thinking: Option<bool>,
    pub reasoning_effort: Option<ReasoningEffort>,
}

fn find_tool<'a>(tools: &'a [ToolSpec], name: &str) -> Result<&'a ToolSpec, RemoteError> {
    tools.iter().find(|t| t.name == name).ok_or_else(|| {
        RemoteError::invalid(format!("tool_choice names `{name}`, which is not in tools"))
    })
}

/// A schema the engine can enforce for a tool's arguments: an object schema as given, or any
/// object when the tool declared none.
fn arguments_schema(tool: &ToolSpec) -> Value {
    match &tool.parameters {
        Value::Object(map) if !map.is_empty() => tool.parameters.clone(),
        _ => json!({"type": "object"}),
    }
}

/// Tells the model which call is expected: small models need the hint to fill the arguments
/// sensibly, even though the constraint alone guarantees their shape.
fn forced_hint(tools: &[&ToolSpec], single: bool) -> String {
    let listing: Vec<String> = tools
        .iter()
        .map(|t| {
            if t.description.is_empty() {
                format!("- {}", t.name)
            } else {
                format!("- {}: {}", t.name, t.description)
            }
        })
        .collect();
    if single {
        format!(
            "Call the function `{}` now. Reply with only its JSON arguments.\n{}",
            tools[0].name,
            listing.join("\n")
        )
    } else {
        format!(
            "Call one of these functions now. Reply with only a JSON object {{\"name\": <function>, \"arguments\": {{...}}}}.\n{}",
            listing.join("\n")
        )
    }
}

/// Puts `hint` into the system prompt (appended to an existing one, or as a new first message).
fn add_system_hint(messages: &mut EngineMessages, hint: &str) {
    if let Some(first) = messages.first_mut() {
        let is_system = matches!(first.get("role"), Some(Either::Left(role)) if role == "system");
        if is_system {
            if let Some(Either::Left(content)) = first.get_mut("content") {
                content.push_str("\n\n");
                content.push_str(hint);
                return;
            }
        }
    }
    messages.insert(
        0,
        IndexMap::from([
            ("role".to_string(), text("system")),
            ("content".to_string(), text(hint)),
        ]),
    );
}

/// Everything the engine needs for `request`. Token counting uses the same preparation, so a
/// count equals the prompt the generation will use.
pub fn prepare(request: &ChatRequest) -> Result<Prepared, RemoteError> {
    let mut chat = chat(request)?;
    let reasoning_effort = reasoning_effort(request.reasoning.effort.as_deref())?;
    let forced: Option<Vec<&ToolSpec>> = match &request.tool_choice {
        ToolChoice::Function(name) => Some(vec![find_tool(&request.tools, name)?]),
        ToolChoice::Required if request.tools.is_empty() => {
            return Err(RemoteError::invalid(
                "a required tool call needs at least one tool",
            ))
        }
        ToolChoice::Required => Some(request.tools.iter().collect()),
        ToolChoice::Auto | ToolChoice::None => None,
    };
    let (constraint, output, tools, choice) = match forced {
        Some(forced) if forced.len() == 1 => {
            add_system_hint(&mut chat.messages, &forced_hint(&forced, true));
            (
                Constraint::JsonSchema(constrain::strict_schema(&arguments_schema(forced[0]))),
                Output::ToolArguments {
                    name: forced[0].name.clone(),
                },
                None,
                None,
            )
        }
        Some(forced) => {
            add_system_hint(&mut chat.messages, &forced_hint(&forced, false));
            let alternatives: Vec<Value> = forced
                .iter()
                .map(|t| {
                    json!({
                        "type": "object",
                        "properties": {"name": {"const": t.name}, "arguments": arguments_schema(t)},
                        "required": ["name", "arguments"],
                        "additionalProperties": false,
                    })
                })
                .collect();
            (
                Constraint::JsonSchema(constrain::strict_schema(&json!({"anyOf": alternatives}))),
                Output::ToolSelection,
                None,
                None,
            )
        }
        None => {
            let constraint = constraint(&request.response_format);
            let tools = tools(&request.tools);
            let choice = tool_choice(&request.tool_choice, tools.is_some());
            (constraint, Output::Text, tools, choice)
        }
    };
    Ok(Prepared {
        chat,
        tools,
        tool_choice: choice,
        constraint,
        output,
        enable_thinking: request.reasoning.enabled,
        reasoning_effort,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(content: &MessageContent) -> &str {
        match content {
            Either::Left(s) => s,
            Either::Right(_) => panic!("expected text content"),
        }
    }

    #[test]
    fn text_messages_keep_roles_and_order() {
        let request = ChatRequest {
            messages: vec![
                Message::text(Role::System, "be brief"),
                Message::text(Role::User, "hi"),
                Message::text(Role::Assistant, "hello"),
            ],
            ..Default::default()
        };
        let chat = chat(&request).expect("convert");
        let roles: Vec<&str> = chat.messages.iter().map(|m| left(&m["role"])).collect();
        assert_eq!(roles, ["system", "user", "assistant"]);
        assert_eq!(left(&chat.messages[1]["content"]), "hi");
    }

    #[test]
    fn tool_calls_and_results_use_the_template_keys() {
        let request = ChatRequest {
            messages: vec![
                Message {
                    role: Role::Assistant,
                    content: vec![Part::ToolCall {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    }],
                },
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id: "call_1".into(),
                        content: "sunny".into(),
                        is_error: false,
                    }],
                },
            ],
            ..Default::default()
        };
        let chat = chat(&request).expect("convert");
        let Either::Right(calls) = &chat.messages[0]["tool_calls"] else {
            panic!("tool_calls must be a list")
        };
        assert_eq!(calls[0]["function"]["arguments"]["city"], "Paris");
        assert_eq!(left(&chat.messages[1]["tool_call_id"]), "call_1");
        assert_eq!(left(&chat.messages[1]["role"]), "tool");
    }

    #[test]
    fn undecodable_images_are_a_client_error() {
        let request = ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: vec![Part::Image(auxot_common::chat::Image {
                    media_type: "image/png".into(),
                    data: b"not a png".to_vec(),
                })],
            }],
            ..Default::default()
        };
        let err = chat(&request).expect_err("bad image");
        assert_eq!(err.kind, auxot_common::error::ErrorKind::InvalidRequest);
    }

    #[test]
    fn images_by_url_are_refused_not_fetched() {
        for role in [Role::User, Role::Tool] {
            let request = ChatRequest {
                messages: vec![Message {
                    role,
                    content: vec![Part::ImageUrl {
                        url: "http://127.0.0.1:9/cat.png".into(),
                    }],
                }],
                ..Default::default()
            };
            let err = prepare(&request).err().expect("refused");
            assert_eq!(err.kind, auxot_common::error::ErrorKind::InvalidRequest);
            assert!(
                err.message
                    .contains("image given by URL reached the worker; the router fetches those"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn zero_temperature_is_greedy() {
        let params = sampling(&Sampling {
            temperature: Some(0.0),
            max_tokens: Some(5),
            stop: vec!["\n".into()],
            ..Default::default()
        });
        assert_eq!(params.top_k, Some(1));
        assert_eq!(params.temperature, None);
        assert_eq!(params.max_len, Some(5));
        assert!(matches!(params.stop_toks, Some(StopTokens::Seqs(ref s)) if s == &["\n"]));
        let warm = sampling(&Sampling {
            temperature: Some(0.7),
            ..Default::default()
        });
        assert_eq!((warm.temperature, warm.top_k), (Some(0.7), None));
    }

    #[test]
    fn effort_values() {
        assert!(matches!(
            reasoning_effort(Some("high")),
            Ok(Some(ReasoningEffort::High))
        ));
        assert!(reasoning_effort(Some("max")).is_err());
        assert!(matches!(reasoning_effort(None), Ok(None)));
    }

    fn weather_tools() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "get_weather".into(),
                description: "Weather for a city".into(),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            },
            ToolSpec {
                name: "get_time".into(),
                description: String::new(),
                parameters: json!({}),
            },
        ]
    }

    #[test]
    fn a_named_tool_is_forced_with_its_schema() {
        let request = ChatRequest {
            messages: vec![
                Message::text(Role::System, "be brief"),
                Message::text(Role::User, "Paris?"),
            ],
            tools: weather_tools(),
            tool_choice: ToolChoice::Function("get_weather".into()),
            ..Default::default()
        };
        let prepared = prepare(&request).expect("prepare");
        assert_eq!(
            prepared.output,
            Output::ToolArguments {
                name: "get_weather".into()
            }
        );
        let Constraint::JsonSchema(schema) = &prepared.constraint else {
            panic!("constraint")
        };
        assert_eq!(schema["required"][0], "city");
        assert_eq!(
            schema["additionalProperties"], false,
            "an open object is generated closed"
        );
        assert!(
            prepared.tools.is_none(),
            "the engine must not parse tool calls out of constrained text"
        );
        let system = left(&prepared.chat.messages[0]["content"]);
        assert!(
            system.starts_with("be brief") && system.contains("get_weather"),
            "{system}"
        );
        assert_eq!(prepared.chat.messages.len(), 2);
    }

    #[test]
    fn required_with_several_tools_selects_among_them() {
        let request = ChatRequest {
            messages: vec![Message::text(Role::User, "?")],
            tools: weather_tools(),
            tool_choice: ToolChoice::Required,
            ..Default::default()
        };
        let prepared = prepare(&request).expect("prepare");
        assert_eq!(prepared.output, Output::ToolSelection);
        let Constraint::JsonSchema(schema) = &prepared.constraint else {
            panic!("constraint")
        };
        assert_eq!(schema["anyOf"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            schema["anyOf"][1]["properties"]["arguments"],
            json!({"type": "object", "additionalProperties": false}),
            "a tool without parameters takes no arguments"
        );
        assert_eq!(
            schema["anyOf"][0]["properties"]["arguments"]["additionalProperties"],
            false
        );
        assert_eq!(left(&prepared.chat.messages[0]["role"]), "system");
    }

    #[test]
    fn response_formats_become_constraints_and_auto_tools_pass_through() {
        let mut request = ChatRequest {
            messages: vec![Message::text(Role::User, "?")],
            response_format: ResponseFormat::JsonObject,
            ..Default::default()
        };
        assert!(matches!(
            prepare(&request).expect("prepare").constraint,
            Constraint::JsonSchema(ref s) if s.get("additionalProperties").is_none()
        ));
        request.response_format = ResponseFormat::JsonSchema {
            name: "capital".into(),
            schema: json!({"type": "object", "properties": {"capital": {"type": "string"}}}),
        };
        assert!(matches!(
            prepare(&request).expect("prepare").constraint,
            Constraint::JsonSchema(ref s) if s["additionalProperties"] == false
        ));
        request.response_format = ResponseFormat::Text;
        request.tools = weather_tools();
        let prepared = prepare(&request).expect("prepare");
        assert!(matches!(prepared.constraint, Constraint::None));
        assert_eq!(prepared.tools.map(|t| t.len()), Some(2));
        assert!(matches!(
            prepared.tool_choice,
            Some(mistralrs::ToolChoice::Auto)
        ));
        request.tool_choice = ToolChoice::Function("nope".into());
        assert!(prepare(&request).is_err());
    }
}
