//! The chat and models endpoints, written once for every dialect (chat completions, legacy
//! completions, Responses, Anthropic messages).

use std::sync::Arc;

use warp::reply::Response;

use super::respond::{error_response, json_response, with_worker};
use super::sse;
use super::state::AppState;
use crate::dialect::Dialect;
use crate::error::ApiError;
use crate::generation::{self, source::EventSource as _};

/// `POST .../chat/completions` (OpenAI) or `.../messages` (Anthropic): JSON or SSE.
pub async fn chat<D: Dialect>(state: &Arc<AppState>, body: &[u8]) -> Response {
    match answer::<D>(state, body).await {
        Ok(response) => response,
        Err(error) => error_response(D::KIND, &error),
    }
}

async fn answer<D: Dialect>(state: &Arc<AppState>, body: &[u8]) -> Result<Response, ApiError> {
    let call = D::parse_chat(body, &state.dialects)?;
    let mesh = call.mesh_tools.as_ref();
    if call.stream {
        let generation = generation::start(&state.generator, call.request, mesh).await?;
        let worker = generation.worker().to_string();
        let renderer = D::stream_renderer(call.options, generation.model());
        let response = sse::respond(generation, renderer, state.streams_deadline.clone());
        return Ok(with_worker(response, &worker));
    }
    let (completion, worker) = generation::complete(&state.generator, call.request, mesh).await?;
    let body = D::render_completion(&call.options, &completion);
    Ok(with_worker(json_response(200, &body), &worker))
}

/// `GET .../models`.
pub fn models<D: Dialect>(state: &AppState) -> Response {
    let models = state.registry().models();
    json_response(200, &D::model_list(&models))
}

/// `GET .../models/{id}`.
pub fn model<D: Dialect>(state: &AppState, id: &str) -> Response {
    match state.registry().model(id) {
        Ok(info) => json_response(200, &D::model(&info)),
        Err(error) => error_response(D::KIND, &error.into()),
    }
}
