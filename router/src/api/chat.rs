//! The chat and models endpoints, written once for every dialect (chat completions, legacy
//! completions, Responses, Anthropic messages).
//!
//! A chat has one deadline from its body to its last event (`--request-timeout-secs`), whatever
//! happens in between (retries, tool rounds, a slow worker): a non-streaming answer past it is a
//! 504, a stream past it ends with an error event, and either way the worker is told to stop.

use std::sync::Arc;

use auxot_common::chat::AUTO_MODEL;
use tokio::time::Instant;
use warp::reply::Response;

use super::record::RequestRecord;
use super::respond::{error_response, json_response, with_worker};
use super::sse::{self, StreamLimits};
use super::state::AppState;
use crate::dialect::Dialect;
use crate::error::{ApiError, Fault};
use crate::generation::{self, source::EventSource as _};

/// `POST .../chat/completions` (OpenAI) or `.../messages` (Anthropic): JSON or SSE.
pub async fn chat<D: Dialect>(
    state: &Arc<AppState>,
    body: &[u8],
    record: &mut RequestRecord,
) -> Response {
    match answer::<D>(state, body, record).await {
        Ok(response) => response,
        Err(error) => {
            record.unserved(|model| {
                model == AUTO_MODEL || state.registry().models().iter().any(|m| m.id == model)
            });
            error_response(D::KIND, &error)
        }
    }
}

fn past_deadline(state: &AppState) -> ApiError {
    ApiError::new(
        Fault::Timeout,
        format!(
            "the request did not finish within {}s",
            state.edge.request_timeout.as_secs()
        ),
    )
}

async fn answer<D: Dialect>(
    state: &Arc<AppState>,
    body: &[u8],
    record: &mut RequestRecord,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + state.edge.request_timeout;
    let mut call = D::parse_chat(body, &state.dialects)?;
    call.request.request_id = Some(record.id().to_string());
    record.asked_for(&call.request.model, call.request.has_unresolved_images());
    let mesh = call.mesh_tools.as_ref();
    if call.stream {
        let generation = tokio::time::timeout_at(
            deadline,
            generation::start(&state.generator, call.request, mesh),
        )
        .await
        .map_err(|_| past_deadline(state))??;
        let worker = generation.worker().to_string();
        record.served(&worker, generation.model(), generation.trace());
        let renderer = D::stream_renderer(call.options, generation.model());
        let limits = StreamLimits {
            deadline,
            write_timeout: state.edge.timeouts.write,
        };
        let response = sse::respond(
            generation,
            renderer,
            state.streams_deadline.clone(),
            limits,
            record.detach(),
        );
        return Ok(with_worker(response, &worker));
    }
    let done = tokio::time::timeout_at(
        deadline,
        generation::complete(&state.generator, call.request, mesh),
    )
    .await
    .map_err(|_| past_deadline(state))??;
    record.served(&done.worker, &done.completion.model, done.trace);
    record.usage(done.completion.usage);
    let body = D::render_completion(&call.options, &done.completion);
    Ok(with_worker(json_response(200, &body), &done.worker))
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
