//! Asking the engine's tokenizer: prompt sizes (`count_tokens`, prompt tokens sent first) and the
//! ids of single tokens (the grammar's end tokens).
//!
//! Tokenizing goes through the engine thread rather than a tokenizer of our own, so a count is
//! exactly the prompt the engine builds, chat template and tools included. The engine answers a
//! `Request::Tokenize` with `.expect(..)` on the reply channel: if the receiver is gone when it
//! answers, the engine thread panics. The receiver therefore always lives in a detached task that
//! outlives a caller who gives up.

use auxot_common::error::RemoteError;
use either::Either;
use mistralrs::core::{DetokenizationRequest, ReasoningEffort, TokenizationRequest};
use mistralrs::{Model, Request};
use tokio::sync::mpsc;

use crate::engine::convert::Prepared;

/// The channel requests reach the engine thread through.
pub fn sender(model: &Model) -> Result<mpsc::Sender<Request>, RemoteError> {
    model
        .inner()
        .get_sender(None)
        .map_err(|e| RemoteError::internal(format!("engine unavailable: {e}")))
}

/// Sends a tokenization request built around the reply channel, and awaits the reply from a
/// detached receiver. The inner error is the tokenizer's own failure.
async fn tokenize(
    model: &Model,
    request: impl FnOnce(mpsc::Sender<anyhow::Result<Vec<u32>>>) -> TokenizationRequest,
) -> Result<Result<Vec<u32>, String>, RemoteError> {
    let (tx, mut rx) = mpsc::channel(1);
    sender(model)?
        .send(Request::Tokenize(request(tx)))
        .await
        .map_err(|_| RemoteError::internal("engine stopped"))?;
    let reply = tokio::spawn(async move { rx.recv().await });
    match reply.await {
        Ok(Some(Ok(ids))) => Ok(Ok(ids)),
        Ok(Some(Err(e))) => Ok(Err(e.to_string())),
        _ => Err(RemoteError::internal(
            "engine dropped the tokenization request",
        )),
    }
}

/// The ids of `text`, with no special tokens added.
pub async fn tokenize_text(model: &Model, text: &str) -> Result<Vec<u32>, RemoteError> {
    tokenize_raw(model, text, false).await
}

/// Prompt tokens of a raw prompt, counted as the engine counts a completion prompt (special
/// tokens added).
pub async fn count_text(model: &Model, text: &str) -> Result<u32, RemoteError> {
    Ok(text_prompt_ids(model, text).await?.len() as u32)
}

/// The ids of a raw prompt as the engine tokenizes a completion prompt (special tokens added).
pub async fn text_prompt_ids(model: &Model, text: &str) -> Result<Vec<u32>, RemoteError> {
    tokenize_raw(model, text, true).await
}

async fn tokenize_raw(
    model: &Model,
    text: &str,
    add_special_tokens: bool,
) -> Result<Vec<u32>, RemoteError> {
    let text = text.to_string();
    tokenize(model, |response| TokenizationRequest {
        text: Either::Right(text),
        tools: None,
        add_generation_prompt: false,
        add_special_tokens,
        enable_thinking: None,
        reasoning_effort: None,
        response,
    })
    .await?
    .map_err(|e| RemoteError::internal(format!("tokenization failed: {e}")))
}

/// The prompt the chat template makes of one user message `hi` with these thinking settings,
/// special tokens included: what the model would be given.
pub async fn render_probe(
    model: &Model,
    enable_thinking: Option<bool>,
    reasoning_effort: Option<ReasoningEffort>,
) -> Result<String, RemoteError> {
    let messages = vec![indexmap::IndexMap::from([
        ("role".to_string(), Either::Left("user".to_string())),
        ("content".to_string(), Either::Left("hi".to_string())),
    ])];
    let ids = tokenize(model, |response| TokenizationRequest {
        text: Either::Left(messages),
        tools: None,
        add_generation_prompt: true,
        add_special_tokens: true,
        enable_thinking,
        reasoning_effort,
        response,
    })
    .await?
    .map_err(|e| RemoteError::internal(format!("rendering the chat template failed: {e}")))?;
    let (tx, mut rx) = mpsc::channel(1);
    sender(model)?
        .send(Request::Detokenize(DetokenizationRequest {
            tokens: ids,
            skip_special_tokens: false,
            response: tx,
        }))
        .await
        .map_err(|_| RemoteError::internal("engine stopped"))?;
    // Detached, like tokenization: the engine panics if the receiver is gone when it answers.
    match tokio::spawn(async move { rx.recv().await }).await {
        Ok(Some(Ok(text))) => Ok(text),
        Ok(Some(Err(e))) => Err(RemoteError::internal(format!("detokenizing failed: {e}"))),
        _ => Err(RemoteError::internal(
            "engine dropped the detokenization request",
        )),
    }
}

/// Prompt tokens of a prepared request, exactly as the engine will build the prompt.
pub async fn count_prompt(model: &Model, prepared: &Prepared) -> Result<u32, RemoteError> {
    Ok(prompt_ids(model, prepared).await?.len() as u32)
}

/// The prompt of a prepared request as the engine builds it: chat template, tools, generation
/// prompt (the assistant turn opened) and special tokens.
pub async fn prompt_ids(model: &Model, prepared: &Prepared) -> Result<Vec<u32>, RemoteError> {
    tokenize(model, |response| TokenizationRequest {
        text: Either::Left(prepared.chat.messages.clone()),
        tools: prepared.tools.clone(),
        add_generation_prompt: true,
        // Exactly what the engine does when it prepares a chat prompt.
        add_special_tokens: true,
        enable_thinking: prepared.enable_thinking,
        reasoning_effort: prepared.reasoning_effort,
        response,
    })
    .await?
    // The template rejected the conversation (roles out of order, for example): the caller's.
    .map_err(|e| RemoteError::invalid(format!("tokenization failed: {e}")))
}
