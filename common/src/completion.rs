//! A whole completion assembled from its events, for non-streaming answers and for the router's
//! server-side tool loop. Both dialects render from this one structure.

use crate::chat::{ChatEvent, FinishReason, Usage};
use crate::error::RemoteError;

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
}

impl Completion {
    pub fn new(model: impl Into<String>) -> Self {
        Completion {
            model: model.into(),
            ..Default::default()
        }
    }

    /// Folds one event in.
    pub fn apply(&mut self, event: &ChatEvent) {
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
            completion.apply(event);
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
}
