//! `POST /api/anthropic/v1/messages/count_tokens`: the target model's tokenizer and chat
//! template, tools included; equal to what `messages` reports as `input_tokens`.

use serde_json::json;
use warp::reply::Response;

use super::respond::{error_response, json_response};
use super::state::AppState;
use crate::dialect::anthropic;
use crate::error::{ApiError, DialectKind};

pub async fn count_tokens(state: &AppState, body: &[u8]) -> Response {
    match count(state, body).await {
        Ok(tokens) => json_response(200, &json!({"input_tokens": tokens})),
        Err(error) => error_response(DialectKind::Anthropic, &error),
    }
}

async fn count(state: &AppState, body: &[u8]) -> Result<u32, ApiError> {
    let translated = anthropic::parse(body, false)?;
    if translated.request.has_images() {
        return Err(ApiError::invalid(
            "count_tokens does not count image tokens; send the text and tools only",
        ));
    }
    Ok(state
        .generator
        .forwarder
        .count_tokens(&translated.request)
        .await?)
}
