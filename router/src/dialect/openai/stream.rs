//! Rendering canonical events as OpenAI `chat.completion.chunk` SSE data. A pure state machine:
//! each event yields zero or more `data:` payloads.

use auxot_common::chat::{ChatEvent, FinishReason, Usage};
use serde_json::{json, Value};

use super::error::error_body;
use super::response::{finish_reason, usage};
use crate::error::{ApiError, DialectKind};

/// Turns events into chunk payloads for one completion.
pub struct ChunkRenderer {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    role_sent: bool,
    usage: Option<Usage>,
}

impl ChunkRenderer {
    pub fn new(id: String, created: u64, model: String, include_usage: bool) -> Self {
        ChunkRenderer {
            id,
            created,
            model,
            include_usage,
            role_sent: false,
            usage: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<FinishReason>) -> String {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "finish_reason": finish.map(finish_reason),
                "logprobs": null,
            }],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk.to_string()
    }

    /// Adds `role` to the first delta, as OpenAI does.
    fn delta(&mut self, mut delta: Value) -> Value {
        if !self.role_sent {
            self.role_sent = true;
            delta["role"] = json!("assistant");
        }
        delta
    }

    /// The payloads for one event.
    pub fn on_event(&mut self, event: &ChatEvent) -> Vec<String> {
        match event {
            ChatEvent::PromptTokens { .. } => Vec::new(),
            ChatEvent::Text { text } => {
                let delta = self.delta(json!({"content": text}));
                vec![self.chunk(delta, None)]
            }
            ChatEvent::Reasoning { text } => {
                let delta = self.delta(json!({"reasoning_content": text}));
                vec![self.chunk(delta, None)]
            }
            ChatEvent::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let mut call = json!({"index": index, "function": {"arguments": arguments}});
                if let Some(id) = id {
                    call["id"] = json!(id);
                    call["type"] = json!("function");
                }
                if let Some(name) = name {
                    call["function"]["name"] = json!(name);
                }
                let delta = self.delta(json!({"tool_calls": [call]}));
                vec![self.chunk(delta, None)]
            }
            ChatEvent::Usage(usage) => {
                self.usage = Some(*usage);
                Vec::new()
            }
            ChatEvent::Finish { reason, .. } => {
                let delta = self.delta(json!({}));
                let mut out = vec![self.chunk(delta, Some(*reason))];
                if self.include_usage {
                    let u = self.usage.unwrap_or_default();
                    out.push(
                        json!({
                            "id": self.id,
                            "object": "chat.completion.chunk",
                            "created": self.created,
                            "model": self.model,
                            "choices": [],
                            "usage": usage(u.prompt_tokens, u.completion_tokens),
                        })
                        .to_string(),
                    );
                }
                out
            }
            ChatEvent::Error(error) => {
                let error = ApiError::from(error);
                let status = error.status(DialectKind::OpenAi);
                vec![error_body(&error, status).to_string()]
            }
        }
    }
}

/// The payload that ends every OpenAI stream.
pub const DONE: &str = "[DONE]";

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::error::RemoteError;

    fn parse(payloads: &[String]) -> Vec<Value> {
        payloads
            .iter()
            .map(|p| serde_json::from_str(p).expect("json"))
            .collect()
    }

    #[test]
    fn text_stream_with_usage() {
        let mut r = ChunkRenderer::new("chatcmpl-1".into(), 1, "m".into(), true);
        let mut out = Vec::new();
        for event in [
            ChatEvent::PromptTokens { tokens: 5 },
            ChatEvent::Text { text: "Pa".into() },
            ChatEvent::Text { text: "ris".into() },
            ChatEvent::Usage(Usage {
                prompt_tokens: 5,
                completion_tokens: 2,
            }),
            ChatEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None,
            },
        ] {
            out.extend(r.on_event(&event));
        }
        let chunks = parse(&out);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0]["model"], "m");
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"content": "Pa", "role": "assistant"})
        );
        assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "ris"}));
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["choices"], json!([]));
        assert_eq!(chunks[3]["usage"]["total_tokens"], 7);
    }

    #[test]
    fn tool_call_deltas_carry_index_id_name_then_fragments() {
        let mut r = ChunkRenderer::new("c".into(), 1, "m".into(), false);
        let mut out = Vec::new();
        out.extend(r.on_event(&ChatEvent::ToolCall {
            index: 0,
            id: Some("call_1".into()),
            name: Some("f".into()),
            arguments: "{\"a\"".into(),
        }));
        out.extend(r.on_event(&ChatEvent::ToolCall {
            index: 0,
            id: None,
            name: None,
            arguments: ":1}".into(),
        }));
        out.extend(r.on_event(&ChatEvent::Finish {
            reason: FinishReason::ToolCalls,
            stop_sequence: None,
        }));
        let chunks = parse(&out);
        assert_eq!(chunks.len(), 3);
        let first = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            (
                first["index"].clone(),
                first["id"].clone(),
                first["type"].clone()
            ),
            (json!(0), json!("call_1"), json!("function"))
        );
        assert_eq!(first["function"]["name"], "f");
        let second = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
        assert!(second.get("id").is_none());
        assert_eq!(second["function"]["arguments"], ":1}");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "tool_calls");
        assert!(chunks[0].get("usage").is_none());
    }

    #[test]
    fn errors_are_openai_error_objects() {
        let mut r = ChunkRenderer::new("c".into(), 1, "m".into(), false);
        let out = parse(&r.on_event(&ChatEvent::Error(RemoteError::internal("boom"))));
        assert_eq!(out[0]["error"]["message"], "boom");
        assert_eq!(out[0]["error"]["type"], "server_error");
    }
}
