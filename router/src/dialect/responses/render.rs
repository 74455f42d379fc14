//! Rendering canonical results as Responses API objects: the whole `response`, and the stream
//! of typed events (`response.created`, `response.output_item.added`,
//! `response.output_text.delta`, ..., `response.completed`). Pure, except for fresh item ids.
//!
//! A whole response's id carries its conversation ([`super::state`]). A streamed response keeps
//! the id it is announced under (`resp_<hex>`) to its last event, as clients expect; its sealed
//! conversation is left with this router under that id when the stream completes.

use std::sync::Arc;

use auxot_common::chat::{ChatEvent, FinishReason, Message, Part, Role, Usage};
use auxot_common::completion::Completion;
use serde_json::{json, Value};
use tracing::warn;

use super::request::Echo;
use super::state::{Conversation, StateKey, StreamedResponses};
use crate::error::ApiError;
use crate::ids;

/// Everything a response is rendered from besides its events.
#[derive(Debug, Clone)]
pub struct Header {
    /// The id of a streamed response, from its first event to its last (see `state`).
    pub provisional_id: String,
    pub created_at: u64,
    pub echo: Echo,
    /// The conversation before this response's output.
    pub conversation: Vec<Message>,
    pub key: Arc<StateKey>,
    /// Where a streamed response's sealed conversation is kept under its stream id.
    pub streamed: Arc<StreamedResponses>,
}

impl Header {
    /// The response's final id: the conversation with this output appended, sealed. Falls back
    /// to the provisional id (which cannot be continued) if sealing fails.
    fn final_id(&self, done: &Completion) -> String {
        let mut messages = self.conversation.clone();
        messages.extend(assistant_turn(done));
        match self.key.seal(&Conversation { messages }) {
            Ok(id) => id,
            Err(error) => {
                warn!(%error, "could not seal a response's conversation; previous_response_id will not work for it");
                self.provisional_id.clone()
            }
        }
    }
}

/// The assistant turn a completion adds to the conversation.
pub fn assistant_turn(done: &Completion) -> Option<Message> {
    let mut content = Vec::new();
    if !done.reasoning.is_empty() {
        content.push(Part::Thinking {
            text: done.reasoning.clone(),
            signature: None,
        });
    }
    if !done.text.is_empty() {
        content.push(Part::Text {
            text: done.text.clone(),
        });
    }
    for call in &done.tool_calls {
        content.push(Part::ToolCall {
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        });
    }
    (!content.is_empty()).then_some(Message {
        role: Role::Assistant,
        content,
    })
}

/// The `usage` object.
pub fn usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        // mistral.rs does not count thinking tokens apart from the answer's.
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// How a response ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    InProgress,
    Completed,
    /// `max_output_tokens` (or the context) ran out.
    Incomplete,
    Failed(ApiError),
}

impl Status {
    fn of(done: &Completion) -> Status {
        match done.finish {
            Some(FinishReason::Length) => Status::Incomplete,
            _ => Status::Completed,
        }
    }
}

/// The Responses API's error code for a failure (its list has no client-error codes beyond
/// image and prompt ones, so everything else is a server error).
fn error_code(error: &ApiError) -> &'static str {
    match error.fault {
        crate::error::Fault::Overloaded => "rate_limit_exceeded",
        crate::error::Fault::InvalidRequest => "invalid_prompt",
        _ => "server_error",
    }
}

/// A `response` object.
pub fn response(
    header: &Header,
    id: &str,
    model: &str,
    status: &Status,
    output: Vec<Value>,
    totals: Option<&Usage>,
) -> Value {
    let echo = &header.echo;
    let (status_name, incomplete, error) = match status {
        Status::InProgress => ("in_progress", Value::Null, Value::Null),
        Status::Completed => ("completed", Value::Null, Value::Null),
        Status::Incomplete => (
            "incomplete",
            json!({"reason": "max_output_tokens"}),
            Value::Null,
        ),
        Status::Failed(e) => (
            "failed",
            Value::Null,
            json!({"code": error_code(e), "message": e.message}),
        ),
    };
    let finished = !matches!(status, Status::InProgress);
    let mut body = json!({
        "id": id,
        "object": "response",
        "created_at": header.created_at,
        "status": status_name,
        "completed_at": if finished { json!(ids::unix_now()) } else { Value::Null },
        "error": error,
        "incomplete_details": incomplete,
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": echo.parallel_tool_calls,
        "previous_response_id": echo.previous_response_id,
        "reasoning": {"effort": echo.reasoning_effort, "summary": echo.reasoning_summary},
        "store": echo.store,
        "temperature": echo.temperature,
        "text": {"format": echo.text_format},
        "tool_choice": echo.tool_choice,
        "tools": echo.tools,
        "top_p": echo.top_p,
        "truncation": echo.truncation,
        "metadata": echo.metadata,
    });
    if let Some(totals) = totals {
        body["usage"] = usage(totals);
    }
    if let Some(user) = &echo.user {
        body["user"] = json!(user);
    }
    body
}

fn reasoning_item(id: &str, text: &str, done: bool) -> Value {
    let mut item = json!({"type": "reasoning", "id": id, "summary": []});
    if done {
        item["content"] = json!([{"type": "reasoning_text", "text": text}]);
    }
    item
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(id: &str, text: Option<&str>) -> Value {
    let (status, content) = match text {
        Some(text) => ("completed", json!([text_part(text)])),
        None => ("in_progress", json!([])),
    };
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, done: bool) -> Value {
    json!({
        "type": "function_call",
        "id": id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": if done { "completed" } else { "in_progress" },
    })
}

/// The output items of a whole completion: reasoning, then the message, then function calls.
pub fn output_items(done: &Completion) -> Vec<Value> {
    let mut items = Vec::new();
    if !done.reasoning.is_empty() {
        items.push(reasoning_item(&ids::item_id("rs"), &done.reasoning, true));
    }
    if !done.text.is_empty() || done.tool_calls.is_empty() {
        items.push(message_item(&ids::item_id("msg"), Some(&done.text)));
    }
    for call in &done.tool_calls {
        items.push(call_item(
            &ids::item_id("fc"),
            &call.id,
            &call.name,
            &call.arguments,
            true,
        ));
    }
    items
}

/// A whole, non-streamed response.
pub fn completion(header: &Header, done: &Completion) -> Value {
    response(
        header,
        &header.final_id(done),
        &done.model,
        &Status::of(done),
        output_items(done),
        Some(&done.usage),
    )
}

/// The output item being streamed.
enum Open {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    Call {
        index: u32,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Turns a generation's events into Responses API stream events, as `(name, payload)`.
pub struct EventRenderer {
    header: Header,
    model: String,
    sequence: u64,
    started: bool,
    open: Option<Open>,
    /// Output items already done.
    items: Vec<Value>,
    /// The whole output so far, for the final id.
    done: Completion,
    /// Why `done` stopped following the output (an answer over the collected-bytes cap): the
    /// final id then cannot carry the conversation.
    incomplete_record: Option<String>,
}

impl EventRenderer {
    pub fn new(header: Header, model: String) -> Self {
        EventRenderer {
            done: Completion::new(model.clone()),
            header,
            model,
            sequence: 0,
            started: false,
            open: None,
            items: Vec::new(),
            incomplete_record: None,
        }
    }

    fn emit(&mut self, out: &mut Vec<(&'static str, Value)>, name: &'static str, mut body: Value) {
        body["type"] = json!(name);
        body["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.push((name, body));
    }

    fn snapshot(&self, id: &str, status: &Status, totals: Option<&Usage>) -> Value {
        response(
            &self.header,
            id,
            &self.model,
            status,
            self.items.clone(),
            totals,
        )
    }

    fn start(&mut self, out: &mut Vec<(&'static str, Value)>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = self.header.provisional_id.clone();
        let created = self.snapshot(&id, &Status::InProgress, None);
        self.emit(
            out,
            "response.created",
            json!({"response": created.clone()}),
        );
        self.emit(out, "response.in_progress", json!({"response": created}));
    }

    fn output_index(&self) -> usize {
        self.items.len()
    }

    /// Finishes the open item, if any.
    fn close(&mut self, out: &mut Vec<(&'static str, Value)>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let index = self.output_index();
        let item = match open {
            Open::Reasoning { id, text } => {
                let at = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut done = at.clone();
                done["text"] = json!(text);
                self.emit(out, "response.reasoning_text.done", done);
                let mut part = at;
                part["part"] = json!({"type": "reasoning_text", "text": text});
                self.emit(out, "response.content_part.done", part);
                reasoning_item(&id, &text, true)
            }
            Open::Message { id, text } => {
                let at = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut done = at.clone();
                done["text"] = json!(text);
                done["logprobs"] = json!([]);
                self.emit(out, "response.output_text.done", done);
                let mut part = at;
                part["part"] = text_part(&text);
                self.emit(out, "response.content_part.done", part);
                message_item(&id, Some(&text))
            }
            Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments}),
                );
                call_item(&id, &call_id, &name, &arguments, true)
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item.clone()}),
        );
        self.items.push(item);
    }

    /// Opens a new output item (closing the previous one).
    fn open(&mut self, out: &mut Vec<(&'static str, Value)>, open: Open) {
        self.close(out);
        let index = self.output_index();
        let (item, part) = match &open {
            Open::Reasoning { id, .. } => (
                reasoning_item(id, "", false),
                Some((id.clone(), json!({"type": "reasoning_text", "text": ""}))),
            ),
            Open::Message { id, .. } => (message_item(id, None), Some((id.clone(), text_part("")))),
            Open::Call {
                id, call_id, name, ..
            } => (call_item(id, call_id, name, "", false), None),
        };
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        if let Some((id, part)) = part {
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
            );
        }
        self.open = Some(open);
    }

    pub fn on_event(&mut self, event: &ChatEvent) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        self.start(&mut out);
        if self.incomplete_record.is_none() {
            if let Err(error) = self.done.apply(event) {
                self.incomplete_record = Some(error.to_string());
            }
        }
        match event {
            ChatEvent::PromptTokens { .. } | ChatEvent::Usage(_) => {}
            ChatEvent::Reasoning { text } => {
                if !matches!(self.open, Some(Open::Reasoning { .. })) {
                    let id = ids::item_id("rs");
                    self.open(
                        &mut out,
                        Open::Reasoning {
                            id,
                            text: String::new(),
                        },
                    );
                }
                let id = match &mut self.open {
                    Some(Open::Reasoning { id, text: all }) => {
                        all.push_str(text);
                        Some(id.clone())
                    }
                    _ => None,
                };
                if let Some(id) = id {
                    let index = self.output_index();
                    let body = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text});
                    self.emit(&mut out, "response.reasoning_text.delta", body);
                }
            }
            ChatEvent::Text { text } => {
                if !matches!(self.open, Some(Open::Message { .. })) {
                    let id = ids::item_id("msg");
                    self.open(
                        &mut out,
                        Open::Message {
                            id,
                            text: String::new(),
                        },
                    );
                }
                let id = match &mut self.open {
                    Some(Open::Message { id, text: all }) => {
                        all.push_str(text);
                        Some(id.clone())
                    }
                    _ => None,
                };
                if let Some(id) = id {
                    let index = self.output_index();
                    let body = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []});
                    self.emit(&mut out, "response.output_text.delta", body);
                }
            }
            ChatEvent::ToolCall {
                index: call,
                id,
                name,
                arguments,
            } => {
                let same = matches!(&self.open, Some(Open::Call { index, .. }) if index == call);
                if !same {
                    let open = Open::Call {
                        index: *call,
                        id: ids::item_id("fc"),
                        call_id: id.clone().unwrap_or_default(),
                        name: name.clone().unwrap_or_default(),
                        arguments: String::new(),
                    };
                    self.open(&mut out, open);
                }
                let id = match &mut self.open {
                    Some(Open::Call {
                        id, arguments: all, ..
                    }) => {
                        all.push_str(arguments);
                        Some(id.clone())
                    }
                    _ => None,
                };
                if let Some(id) = id.filter(|_| !arguments.is_empty()) {
                    let index = self.output_index();
                    let body = json!({"item_id": id, "output_index": index, "delta": arguments});
                    self.emit(&mut out, "response.function_call_arguments.delta", body);
                }
            }
            ChatEvent::Finish { .. } => {
                self.close(&mut out);
                let status = Status::of(&self.done);
                // Clients hold the id of `response.created`; the conversation stays here.
                let id = self.header.provisional_id.clone();
                match &self.incomplete_record {
                    None => {
                        let sealed = self.header.final_id(&self.done);
                        if sealed != id {
                            self.header.streamed.insert(id.clone(), sealed);
                        }
                    }
                    Some(why) => {
                        warn!(%why, "a streamed response's output was not recorded whole; previous_response_id will not work for it");
                    }
                }
                let usage = self.done.usage;
                let body = self.snapshot(&id, &status, Some(&usage));
                let name = if status == Status::Incomplete {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                self.emit(&mut out, name, json!({"response": body}));
            }
            ChatEvent::Error(error) => {
                let error = ApiError::from(error);
                self.emit(
                    &mut out,
                    "error",
                    json!({"code": error_code(&error), "message": error.message, "param": null}),
                );
                let id = self.header.provisional_id.clone();
                let body = self.snapshot(&id, &Status::Failed(error), None);
                self.emit(&mut out, "response.failed", json!({"response": body}));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::completion::ToolCall;
    use auxot_common::error::RemoteError;

    fn header() -> Header {
        Header {
            provisional_id: "resp_pending".into(),
            created_at: 9,
            echo: Echo {
                model: "auto".into(),
                tool_choice: json!("auto"),
                text_format: json!({"type": "text"}),
                truncation: "disabled".into(),
                metadata: json!({}),
                parallel_tool_calls: true,
                store: true,
                ..Echo::default()
            },
            conversation: vec![Message::text(Role::User, "Hi")],
            key: Arc::new(StateKey::new(&[1; 32])),
            streamed: Arc::default(),
        }
    }

    #[test]
    fn a_whole_response_carries_its_conversation_in_its_id() {
        let done = Completion {
            model: "m".into(),
            text: "Hello!".into(),
            usage: Usage {
                prompt_tokens: 5,
                completion_tokens: 2,
            },
            finish: Some(FinishReason::Stop),
            ..Default::default()
        };
        let header = header();
        let body = completion(&header, &done);
        assert_eq!(body["object"], "response");
        assert_eq!(body["status"], "completed");
        assert_eq!(body["model"], "m");
        assert_eq!(body["output"][0]["type"], "message");
        assert_eq!(body["output"][0]["content"][0]["text"], "Hello!");
        assert_eq!(body["usage"]["total_tokens"], 7);
        let id = body["id"].as_str().expect("id");
        let conversation = header.key.open(id).expect("sealed");
        assert_eq!(
            conversation.messages,
            vec![
                Message::text(Role::User, "Hi"),
                Message::text(Role::Assistant, "Hello!")
            ]
        );
    }

    #[test]
    fn length_is_incomplete_and_calls_are_function_call_items() {
        let done = Completion {
            model: "m".into(),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            finish: Some(FinishReason::ToolCalls),
            ..Default::default()
        };
        let body = completion(&header(), &done);
        assert_eq!(body["output"].as_array().map(Vec::len), Some(1));
        assert_eq!(body["output"][0]["type"], "function_call");
        assert_eq!(body["output"][0]["call_id"], "call_1");
        let cut = Completion {
            model: "m".into(),
            text: "Once".into(),
            finish: Some(FinishReason::Length),
            ..Default::default()
        };
        let body = completion(&header(), &cut);
        assert_eq!(body["status"], "incomplete");
        assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
    }

    fn names(events: &[(&'static str, Value)]) -> Vec<&'static str> {
        events.iter().map(|(name, _)| *name).collect()
    }

    #[test]
    fn a_stream_opens_and_closes_each_item_in_order() {
        let header = header();
        let mut r = EventRenderer::new(header.clone(), "m".into());
        let mut out = Vec::new();
        for event in [
            ChatEvent::Reasoning { text: "hm".into() },
            ChatEvent::Text { text: "He".into() },
            ChatEvent::Text { text: "llo".into() },
            ChatEvent::ToolCall {
                index: 0,
                id: Some("call_1".into()),
                name: Some("f".into()),
                arguments: "{\"a\"".into(),
            },
            ChatEvent::ToolCall {
                index: 0,
                id: None,
                name: None,
                arguments: ":1}".into(),
            },
            ChatEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
            }),
            ChatEvent::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None,
            },
        ] {
            out.extend(r.on_event(&event));
        }
        assert_eq!(
            names(&out),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (_, body)) in out.iter().enumerate() {
            assert_eq!(body["sequence_number"], i as u64);
        }
        assert_eq!(out[0].1["response"]["id"], "resp_pending");
        assert_eq!(out[12].1["text"], "Hello");
        assert_eq!(out[18].1["arguments"], "{\"a\":1}");
        let completed = &out[20].1["response"];
        assert_eq!(completed["status"], "completed");
        assert_eq!(completed["output"].as_array().map(Vec::len), Some(3));
        assert_eq!(completed["output"][1]["content"][0]["text"], "Hello");
        assert_eq!(completed["usage"]["output_tokens"], 4);
        // One id from the first event to the last; the conversation stays with the router.
        assert_eq!(completed["id"], "resp_pending");
        let sealed = header.streamed.get("resp_pending").expect("kept");
        let conversation = header.key.open(&sealed).expect("opens");
        assert_eq!(conversation.messages.len(), 2, "the input and the answer");
        assert_eq!(conversation.messages[1].role, Role::Assistant);
    }

    #[test]
    fn a_failure_is_an_error_event_then_response_failed() {
        let mut r = EventRenderer::new(header(), "m".into());
        let out = r.on_event(&ChatEvent::Error(RemoteError::internal("boom")));
        assert_eq!(
            names(&out),
            [
                "response.created",
                "response.in_progress",
                "error",
                "response.failed"
            ]
        );
        assert_eq!(out[2].1["message"], "boom");
        assert_eq!(out[3].1["response"]["status"], "failed");
        assert_eq!(out[3].1["response"]["error"]["code"], "server_error");
    }
}
