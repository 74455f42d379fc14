//! Continuations: a router whose worker was lost mid-generation sends the conversation again
//! with the output the caller already has as a cut assistant turn
//! ([`ChatRequest::continue_final`]), and an engine continues that turn. This file splits such
//! a request into the conversation and what was already produced; each engine decides how to
//! continue (the synthetic one by position in its fixed text, mistral.rs by rendering the chat
//! template with the assistant turn left open).

use auxot_common::chat::{ChatRequest, Part};
use auxot_common::error::RemoteError;

/// One tool call of a cut turn, as far as it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialCall {
    pub id: String,
    pub name: String,
    /// The argument fragments the caller has, concatenated (usually incomplete JSON).
    pub arguments: String,
}

/// The output of a cut assistant turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub text: String,
    pub reasoning: String,
    pub calls: Vec<PartialCall>,
}

/// A continuation split in two: the conversation before the cut turn (the same request, minus
/// that turn and the continuation flag) and what the cut turn holds. `None` for an ordinary
/// request.
pub fn split(request: &ChatRequest) -> Result<Option<(ChatRequest, Partial)>, RemoteError> {
    let Some((before, cut)) = request.partial_turn().map_err(RemoteError::invalid)? else {
        return Ok(None);
    };
    let mut partial = Partial::default();
    for part in &cut.content {
        match part {
            Part::Text { text } => partial.text.push_str(text),
            Part::Thinking { text, .. } => partial.reasoning.push_str(text),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => partial.calls.push(PartialCall {
                id: id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
            }),
            _ => {
                return Err(RemoteError::invalid(
                    "a cut assistant turn may only hold text, reasoning and tool calls",
                ))
            }
        }
    }
    let base = ChatRequest {
        messages: before.to_vec(),
        continue_final: false,
        ..request.clone()
    };
    Ok(Some((base, partial)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::chat::{Message, Role};

    #[test]
    fn a_continuation_splits_into_the_conversation_and_the_cut_turn() {
        let request = ChatRequest {
            messages: vec![
                Message::text(Role::User, "hi"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::Text { text: "Hel".into() },
                        Part::ToolCall {
                            id: "c1".into(),
                            name: "f".into(),
                            arguments: "{\"a\":".into(),
                        },
                    ],
                },
            ],
            continue_final: true,
            ..Default::default()
        };
        let (base, partial) = split(&request).expect("valid").expect("a continuation");
        assert_eq!(base.messages, vec![Message::text(Role::User, "hi")]);
        assert!(!base.continue_final);
        assert_eq!(partial.text, "Hel");
        assert_eq!(
            partial.calls,
            vec![PartialCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{\"a\":".into()
            }]
        );
    }

    #[test]
    fn ordinary_requests_are_not_continuations_and_bad_ones_are_refused() {
        let mut request = ChatRequest {
            messages: vec![Message::text(Role::User, "hi")],
            ..Default::default()
        };
        assert_eq!(split(&request), Ok(None));
        request.continue_final = true;
        assert!(
            split(&request).is_err(),
            "the last turn is not the assistant's"
        );
    }
}
