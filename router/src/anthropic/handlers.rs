//! Anthropic endpoints: messages (JSON or SSE), count_tokens and models.

use auxot_common::chat::ChatEvent;
use auxot_common::error::RemoteError;
use serde_json::{json, Value};
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::sse::Event;

use super::request::{check_required, translate, MessagesRequest, Translated};
use super::response;
use super::stream::EventRenderer;
use crate::http::error::{error_response, json_response, Dialect};
use crate::http::generate::{self, with_worker};
use crate::http::sse::{self, SseRenderer};
use crate::ids;
use crate::state::AppState;
use std::sync::Arc;

const DIALECT: Dialect = Dialect::Anthropic;

struct AnthropicSse(EventRenderer);

impl SseRenderer for AnthropicSse {
    fn on_event(&mut self, event: &ChatEvent) -> Vec<Event> {
        self.0
            .on_event(event)
            .into_iter()
            .map(|(name, data)| sse::named(name, data.to_string()))
            .collect()
    }

    fn close(&mut self) -> Vec<Event> {
        Vec::new()
    }
}

/// Parses and translates a body; `need_max_tokens` is false for count_tokens.
fn parse(body: &[u8], need_max_tokens: bool) -> Result<Translated, RemoteError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| RemoteError::invalid(format!("invalid request body: {e}")))?;
    check_required(&value, need_max_tokens)?;
    let request: MessagesRequest = serde_json::from_value(value)
        .map_err(|e| RemoteError::invalid(format!("invalid request body: {e}")))?;
    translate(request, need_max_tokens)
}

/// `POST /api/anthropic/v1/messages`.
pub async fn messages(state: &Arc<AppState>, _headers: &HeaderMap, body: &[u8]) -> Response {
    let mut translated = match parse(body, true) {
        Ok(t) => t,
        Err(e) => return error_response(DIALECT, &e),
    };
    // A stream reports the prompt size in its first event.
    translated.request.usage_first = translated.stream;
    let id = ids::message_id();
    let mesh = translated.mesh_tools.as_ref();
    if translated.stream {
        let streamed = generate::stream_response(
            state,
            translated.request,
            translated.images,
            mesh,
            |model| AnthropicSse(EventRenderer::new(id, model.to_string())),
        );
        return streamed
            .await
            .unwrap_or_else(|e| error_response(DIALECT, &e));
    }
    match generate::complete(state, translated.request, translated.images, mesh).await {
        Ok((completion, worker)) => with_worker(
            json_response(200, &response::message(&id, &completion)),
            &worker,
        ),
        Err(error) => error_response(DIALECT, &error),
    }
}

/// `POST /api/anthropic/v1/messages/count_tokens`: the target model's tokenizer and chat
/// template, tools included; equal to what `messages` reports as `input_tokens`.
pub async fn count_tokens(state: &AppState, body: &[u8]) -> Response {
    let translated = match parse(body, false) {
        Ok(t) => t,
        Err(e) => return error_response(DIALECT, &e),
    };
    if !translated.images.is_empty() || translated.request.has_images() {
        return error_response(
            DIALECT,
            &RemoteError::invalid(
                "count_tokens does not count image tokens; send the text and tools only",
            ),
        );
    }
    match state.forwarder.count_tokens(&translated.request).await {
        Ok(tokens) => json_response(200, &json!({"input_tokens": tokens})),
        Err(e) => error_response(DIALECT, &e.to_remote()),
    }
}

/// `GET /api/anthropic/v1/models`.
pub fn models(state: &AppState) -> Response {
    let models = state.forwarder.registry().models();
    json_response(200, &response::model_list(&models, ids::unix_now()))
}

/// `GET /api/anthropic/v1/models/{id}`.
pub fn model(state: &AppState, id: &str) -> Response {
    match state.forwarder.registry().model(id) {
        Ok(info) => json_response(200, &response::model(&info, ids::unix_now())),
        Err(error) => error_response(DIALECT, &error),
    }
}
