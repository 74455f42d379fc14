//! Rendering canonical events as Anthropic's streaming event sequence. A pure state machine.
//!
//! The sequence is `message_start`, then for each content block `content_block_start`,
//! `content_block_delta`s and `content_block_stop` (with a `ping` after the first block starts),
//! then `message_delta` (stop reason and usage) and `message_stop`. A thinking block ends with a
//! `signature_delta`. A failure mid-stream is an `error` event.

use auxot_common::chat::{ChatEvent, FinishReason, Usage};
use serde_json::{json, Value};

use super::error::error_body;
use super::response::{stop_reason, thinking_signature, tool_use_id};
use crate::error::{ApiError, DialectKind};

/// One SSE event: its name and JSON data.
pub type Frame = (&'static str, Value);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    ToolUse,
}

pub struct EventRenderer {
    id: String,
    model: String,
    started: bool,
    pinged: bool,
    /// The open block and its index.
    open: Option<(u32, Block)>,
    next_index: u32,
    /// Thinking text of the open thinking block, for its signature.
    thinking: String,
    usage: Usage,
}

impl EventRenderer {
    pub fn new(id: String, model: String) -> Self {
        EventRenderer {
            id,
            model,
            started: false,
            pinged: false,
            open: None,
            next_index: 0,
            thinking: String::new(),
            usage: Usage::default(),
        }
    }

    fn start(&mut self, out: &mut Vec<Frame>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push((
            "message_start",
            json!({"type": "message_start", "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": self.usage.prompt_tokens, "output_tokens": 0},
            }}),
        ));
    }

    fn close_block(&mut self, out: &mut Vec<Frame>) {
        if let Some((index, kind)) = self.open.take() {
            if kind == Block::Thinking {
                out.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                           "delta": {"type": "signature_delta", "signature": thinking_signature(&self.thinking)}}),
                ));
                self.thinking.clear();
            }
            out.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn open_block(&mut self, kind: Block, block: Value, out: &mut Vec<Frame>) -> u32 {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        if !self.pinged {
            self.pinged = true;
            out.push(("ping", json!({"type": "ping"})));
        }
        index
    }

    /// The open block's index if it is of `kind`, else a newly opened one.
    fn block(&mut self, kind: Block, block: impl FnOnce() -> Value, out: &mut Vec<Frame>) -> u32 {
        match self.open {
            Some((index, open)) if open == kind => index,
            _ => self.open_block(kind, block(), out),
        }
    }

    fn delta(index: u32, delta: Value) -> Frame {
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    }

    /// The frames for one event.
    pub fn on_event(&mut self, event: &ChatEvent) -> Vec<Frame> {
        let mut out = Vec::new();
        match event {
            ChatEvent::PromptTokens { tokens } => {
                // The prompt size, before any output, for message_start.
                self.usage.prompt_tokens = *tokens;
                self.start(&mut out);
            }
            ChatEvent::Usage(usage) => self.usage = *usage,
            ChatEvent::Text { text } => {
                self.start(&mut out);
                let index = self.block(
                    Block::Text,
                    || json!({"type": "text", "text": ""}),
                    &mut out,
                );
                out.push(Self::delta(
                    index,
                    json!({"type": "text_delta", "text": text}),
                ));
            }
            ChatEvent::Reasoning { text } => {
                self.start(&mut out);
                let index = self.block(
                    Block::Thinking,
                    || json!({"type": "thinking", "thinking": "", "signature": ""}),
                    &mut out,
                );
                self.thinking.push_str(text);
                out.push(Self::delta(
                    index,
                    json!({"type": "thinking_delta", "thinking": text}),
                ));
            }
            ChatEvent::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                self.start(&mut out);
                let index = match (id, name) {
                    (Some(id), Some(name)) => self.open_block(
                        Block::ToolUse,
                        json!({"type": "tool_use", "id": tool_use_id(id), "name": name, "input": {}}),
                        &mut out,
                    ),
                    _ => self.block(Block::ToolUse, || json!({"type": "tool_use", "id": "", "name": "", "input": {}}), &mut out),
                };
                if !arguments.is_empty() {
                    out.push(Self::delta(
                        index,
                        json!({"type": "input_json_delta", "partial_json": arguments}),
                    ));
                }
            }
            ChatEvent::Finish {
                reason,
                stop_sequence,
            } => {
                self.start(&mut out);
                if self.next_index == 0 {
                    // Every message has at least one content block.
                    self.open_block(Block::Text, json!({"type": "text", "text": ""}), &mut out);
                }
                self.close_block(&mut out);
                let stop_sequence = match reason {
                    FinishReason::StopSequence => json!(stop_sequence),
                    _ => Value::Null,
                };
                out.push((
                    "message_delta",
                    json!({"type": "message_delta",
                           "delta": {"stop_reason": stop_reason(*reason), "stop_sequence": stop_sequence},
                           "usage": {"input_tokens": self.usage.prompt_tokens, "output_tokens": self.usage.completion_tokens}}),
                ));
                out.push(("message_stop", json!({"type": "message_stop"})));
            }
            ChatEvent::Error(error) => {
                let error = ApiError::from(error);
                let status = error.status(DialectKind::Anthropic);
                out.push(("error", error_body(&error, status)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::error::RemoteError;

    fn run(events: &[ChatEvent]) -> Vec<Frame> {
        let mut r = EventRenderer::new("msg_1".into(), "m".into());
        events.iter().flat_map(|e| r.on_event(e)).collect()
    }

    fn names(frames: &[Frame]) -> Vec<&'static str> {
        frames.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn text_message_sequence() {
        let frames = run(&[
            ChatEvent::PromptTokens { tokens: 12 },
            ChatEvent::Text { text: "Hel".into() },
            ChatEvent::Text { text: "lo".into() },
            ChatEvent::Usage(Usage {
                prompt_tokens: 12,
                completion_tokens: 2,
            }),
            ChatEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None,
            },
        ]);
        assert_eq!(
            names(&frames),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(frames[0].1["message"]["usage"]["input_tokens"], 12);
        assert_eq!(frames[0].1["message"]["model"], "m");
        assert_eq!(
            frames[3].1["delta"],
            json!({"type": "text_delta", "text": "Hel"})
        );
        assert_eq!(frames[6].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(
            frames[6].1["usage"],
            json!({"input_tokens": 12, "output_tokens": 2})
        );
    }

    #[test]
    fn thinking_then_text_then_tool_use() {
        let frames = run(&[
            ChatEvent::Reasoning { text: "hmm".into() },
            ChatEvent::Text { text: "ok".into() },
            ChatEvent::ToolCall {
                index: 0,
                id: Some("call_9".into()),
                name: Some("f".into()),
                arguments: "{\"a\":".into(),
            },
            ChatEvent::ToolCall {
                index: 0,
                id: None,
                name: None,
                arguments: "1}".into(),
            },
            ChatEvent::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None,
            },
        ]);
        assert_eq!(
            names(&frames),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(frames[1].1["content_block"]["type"], "thinking");
        assert_eq!(frames[3].1["delta"]["type"], "thinking_delta");
        assert_eq!(frames[4].1["delta"]["type"], "signature_delta");
        assert_eq!(
            frames[9].1["content_block"],
            json!({"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}})
        );
        assert_eq!(frames[9].1["index"], 2);
        assert_eq!(
            frames[11].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "1}"})
        );
        assert_eq!(frames[13].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn stop_sequence_and_empty_answers() {
        let frames = run(&[ChatEvent::Finish {
            reason: FinishReason::StopSequence,
            stop_sequence: Some("END".into()),
        }]);
        assert_eq!(
            names(&frames),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            frames[4].1["delta"],
            json!({"stop_reason": "stop_sequence", "stop_sequence": "END"})
        );
    }

    #[test]
    fn errors_are_error_events() {
        let frames = run(&[
            ChatEvent::Text { text: "a".into() },
            ChatEvent::Error(RemoteError::internal("worker lost")),
        ]);
        let (name, body) = frames.last().expect("frame");
        assert_eq!(*name, "error");
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "api_error");
    }
}
