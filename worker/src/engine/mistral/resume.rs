//! Continuing a cut assistant turn with mistral.rs.
//!
//! A chat request cannot say "continue the last assistant message": the engine renders the chat
//! template with the generation prompt, which opens a new assistant turn after the last message.
//! So the worker builds the prompt itself, as token ids: the conversation before the cut turn
//! rendered exactly as the engine would (template, generation prompt, special tokens, through
//! the engine's own tokenizer), followed by the cut turn's text, and sends those ids as a
//! raw-token completion. The model then sees its own turn left open and carries on, and stops at
//! its end-of-turn token as in a chat.
//!
//! A raw prompt (legacy completions) continues the same way, without a template: the prompt's
//! ids followed by the cut text's.
//!
//! Only plain text answers continue this way: a forced tool call or JSON output is constrained
//! by a grammar that would have to resume mid-document, parsed tool calls need the chat path,
//! and images do not travel in raw tokens. Those are refused (the router then ends the stream
//! with the error it had), as is a cut turn holding reasoning or tool calls.

use auxot_common::error::RemoteError;
use mistralrs::{Constraint, Model};

use super::tokenize;
use crate::engine::continuation::Partial;
use crate::engine::convert::{Output, Prepared};

/// A continuation's prompt and sizes.
#[derive(Debug)]
pub struct Resume {
    /// The conversation's prompt followed by the cut turn.
    pub ids: Vec<u32>,
    /// Tokens of the conversation alone (what usage reports as prompt).
    pub prompt_tokens: u32,
    /// Tokens of the cut turn (output to the caller).
    pub turn_tokens: u32,
}

/// Why `prepared` with `partial` cannot be continued, if it cannot.
pub fn refusal(prepared: &Prepared, partial: &Partial) -> Option<&'static str> {
    if prepared.output != Output::Text || !matches!(prepared.constraint, Constraint::None) {
        return Some("a forced tool call or JSON output");
    }
    if prepared.tools.is_some() {
        return Some("a request with tools");
    }
    if !prepared.chat.images.is_empty() {
        return Some("a request with images");
    }
    if !partial.calls.is_empty() || !partial.reasoning.is_empty() {
        return Some("a cut turn holding tool calls or reasoning");
    }
    None
}

/// The prompt continuing `partial` after the conversation of `prepared`.
pub async fn prompt(
    model: &Model,
    prepared: &Prepared,
    partial: &Partial,
) -> Result<Resume, RemoteError> {
    if let Some(what) = refusal(prepared, partial) {
        return Err(cannot_continue(what));
    }
    let ids = tokenize::prompt_ids(model, prepared).await?;
    followed_by_turn(model, ids, partial).await
}

/// The prompt continuing `partial` after the raw prompt `prompt` (legacy completions).
pub async fn raw_prompt(
    model: &Model,
    prompt: &str,
    constraint: &Constraint,
    partial: &Partial,
) -> Result<Resume, RemoteError> {
    let refusal = if !matches!(constraint, Constraint::None) {
        Some("JSON output")
    } else if !partial.calls.is_empty() || !partial.reasoning.is_empty() {
        Some("a cut turn holding tool calls or reasoning")
    } else {
        None
    };
    if let Some(what) = refusal {
        return Err(cannot_continue(what));
    }
    let ids = tokenize::text_prompt_ids(model, prompt).await?;
    followed_by_turn(model, ids, partial).await
}

fn cannot_continue(what: &str) -> RemoteError {
    RemoteError::invalid(format!(
        "this worker's engine cannot continue {what}; only plain text answers"
    ))
}

/// The prompt `ids` followed by the cut turn's tokens.
async fn followed_by_turn(
    model: &Model,
    mut ids: Vec<u32>,
    partial: &Partial,
) -> Result<Resume, RemoteError> {
    let prompt_tokens = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    let turn = tokenize::tokenize_text(model, &partial.text).await?;
    let turn_tokens = u32::try_from(turn.len()).unwrap_or(u32::MAX);
    ids.extend(turn);
    Ok(Resume {
        ids,
        prompt_tokens,
        turn_tokens,
    })
}
