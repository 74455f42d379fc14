//! A whole completion assembled from its events, for non-streaming answers and for the router's
//! server-side tool loop. Both dialects render from this one structure.
//!
//! The events come from another node, so folding them is bounded: a tool-call index past
//! [`MAX_TOOL_CALLS`] or more than [`MAX_COLLECTED_BYTES`] of text, reasoning and arguments is
//! an error, never an allocation the sender chose.

use crate::chat::{ChatEvent, FinishReason, Usage};
use crate::error::RemoteError;

/// Tool calls one answer may make: indexes from 0 to this, exclusive.
pub const MAX_TOOL_CALLS: u32 = 128;
/// Bytes of text, reasoning, tool names and arguments one collected answer may hold.
pub const MAX_COLLECTED_BYTES: usize = 8 * 1024 * 1024;

/// Why an event could not be folded in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectError {
    #[error("a tool call at index {0}; at most {MAX_TOOL_CALLS} calls are accepted")]
    ToolCallIndex(u32),
    #[error("more than {MAX_COLLECTED_BYTES} bytes of output")]
    TooLarge,
}

/// Checks what any event may carry, collected or streamed.
pub fn check_event(event: &ChatEvent) -> Result<(), CollectError> {
    match event {
        ChatEvent::ToolCall { index, .. } if *index >= MAX_TOOL_CALLS => {
            Err(CollectError::ToolCallIndex(*index))
        }
        _ => Ok(()),
    }
}

/// One tool call, complete.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments.
    pub arguments: String,
}

/// Everything a generation produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    pub model: String,
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub finish: Option<FinishReason>,
    pub stop_sequence: Option<String>,
    pub error: Option<RemoteError>,
    /// Bytes collected so far, against [`MAX_COLLECTED_BYTES`].
    pub collected_bytes: usize,
}

impl Completion {
    pub fn new(model: impl Into<String>) -> Self {
        Completion {
            model: model.into(),
            ..Default::default()
        }
    }

    fn grow(&mut self, bytes: usize) -> Result<(), CollectError> {
        let total = self.collected_bytes.saturating_add(bytes);
        if total > MAX_COLLECTED_BYTES {
            return Err(CollectError::TooLarge);
        }
        self.collected_bytes = total;
        Ok(())
    }

    /// Folds one event in; an error leaves the completion as it was.
    pub fn apply(&mut self, event: &ChatEvent) -> Result<(), CollectError> {
        check_event(event)?;
        match event {
            ChatEvent::Text { text } | ChatEvent::Reasoning { text } => self.grow(text.len())?,
            ChatEvent::ToolCall {
                name, arguments, ..
            } => self.grow(arguments.len() + name.as_ref().map_or(0, String::len))?,
            _ => {}
        }
        match event {
            ChatEvent::PromptTokens { tokens } => self.usage.prompt_tokens = *tokens,
            ChatEvent::Text { text } => self.text.push_str(text),
            ChatEvent::Reasoning { text } => self.reasoning.push_str(text),
            ChatEvent::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let index = *index as usize;
                if self.tool_calls.len() <= index {
                    self.tool_calls.resize(index + 1, ToolCall::default());
                }
                let call = &mut self.tool_calls[index];
                if let Some(id) = id {
                    call.id = id.clone();
                }
                if let Some(name) = name {
                    call.name.push_str(name);
                }
                call.arguments.push_str(arguments);
            }
            ChatEvent::Usage(usage) => self.usage = *usage,
            ChatEvent::Finish {
                reason,
                stop_sequence,
            } => {
                self.finish = Some(*reason);
                self.stop_sequence = stop_sequence.clone();
            }
            ChatEvent::Error(error) => self.error = Some(error.clone()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fold_into_a_completion() {
        let events = [
            ChatEvent::PromptTokens { tokens: 3 },
            ChatEvent::Reasoning {
                text: "think".into(),
            },
            ChatEvent::Text { text: "Hel".into() },
            ChatEvent::Text { text: "lo".into() },
            ChatEvent::ToolCall {
                index: 0,
                id: Some("c1".into()),
                name: Some("f".into()),
                arguments: "{\"a\":".into(),
            },
            ChatEvent::ToolCall {
                index: 0,
                id: None,
                name: None,
                arguments: "1}".into(),
            },
            ChatEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
            }),
            ChatEvent::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None,
            },
        ];
        let mut completion = Completion::new("m");
        for event in &events {
            completion.apply(event).expect("within the limits");
        }
        assert_eq!(completion.model, "m");
        assert_eq!(completion.text, "Hello");
        assert_eq!(completion.reasoning, "think");
        assert_eq!(
            completion.tool_calls,
            vec![ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{\"a\":1}".into()
            }]
        );
        assert_eq!(completion.usage.completion_tokens, 2);
        assert_eq!(completion.finish, Some(FinishReason::ToolCalls));
    }

    #[test]
    fn a_senders_numbers_do_not_choose_the_allocation() {
        let mut completion = Completion::new("m");
        let absurd = ChatEvent::ToolCall {
            index: 4_000_000_000,
            id: Some("c".into()),
            name: Some("f".into()),
            arguments: "{}".into(),
        };
        assert_eq!(
            completion.apply(&absurd),
            Err(CollectError::ToolCallIndex(4_000_000_000))
        );
        assert!(completion.tool_calls.is_empty());
        let chunk = ChatEvent::Text {
            text: "x".repeat(1 << 20),
        };
        for _ in 0..(MAX_COLLECTED_BYTES >> 20) {
            completion.apply(&chunk).expect("within the limit");
        }
        assert_eq!(completion.apply(&chunk), Err(CollectError::TooLarge));
        assert_eq!(completion.text.len(), MAX_COLLECTED_BYTES);
    }
}
