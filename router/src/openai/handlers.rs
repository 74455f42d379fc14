//! OpenAI endpoints: chat completions (JSON or SSE) and the models list.

use auxot_common::chat::ChatEvent;
use auxot_common::error::RemoteError;
use warp::reply::Response;
use warp::sse::Event;

use super::request::{translate, ChatCompletionRequest};
use super::response;
use super::stream::{ChunkRenderer, DONE};
use crate::http::error::{error_response, json_response, Dialect};
use crate::http::generate::{self, with_worker};
use crate::http::sse::{self, SseRenderer};
use crate::ids;
use crate::state::AppState;
use std::sync::Arc;

const DIALECT: Dialect = Dialect::OpenAi;

struct OpenAiSse(ChunkRenderer);

impl SseRenderer for OpenAiSse {
    fn on_event(&mut self, event: &ChatEvent) -> Vec<Event> {
        self.0.on_event(event).into_iter().map(sse::data).collect()
    }

    fn close(&mut self) -> Vec<Event> {
        vec![sse::data(DONE)]
    }
}

/// `POST /api/openai/chat/completions`.
pub async fn chat(state: &Arc<AppState>, body: &[u8]) -> Response {
    let parsed: ChatCompletionRequest = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(e) => {
            return error_response(
                DIALECT,
                &RemoteError::invalid(format!("invalid request body: {e}")),
            )
        }
    };
    let translated = match translate(parsed) {
        Ok(t) => t,
        Err(e) => return error_response(DIALECT, &e),
    };
    let id = ids::completion_id();
    let created = ids::unix_now();
    let mesh = translated.mesh_tools.as_ref();
    if translated.stream {
        let include_usage = translated.include_usage;
        let streamed = generate::stream_response(
            state,
            translated.request,
            translated.images,
            mesh,
            |model| {
                OpenAiSse(ChunkRenderer::new(
                    id,
                    created,
                    model.to_string(),
                    include_usage,
                ))
            },
        );
        return streamed
            .await
            .unwrap_or_else(|e| error_response(DIALECT, &e));
    }
    match generate::complete(state, translated.request, translated.images, mesh).await {
        Ok((completion, worker)) => with_worker(
            json_response(200, &response::completion(&id, created, &completion)),
            &worker,
        ),
        Err(error) => error_response(DIALECT, &error),
    }
}

/// `GET /api/openai/models`.
pub fn models(state: &AppState) -> Response {
    let models = state.forwarder.registry().models();
    json_response(200, &response::model_list(&models, ids::unix_now()))
}

/// `GET /api/openai/models/{id}`.
pub fn model(state: &AppState, id: &str) -> Response {
    match state.forwarder.registry().model(id) {
        Ok(info) => json_response(200, &response::model(&info, ids::unix_now())),
        Err(error) => error_response(DIALECT, &error),
    }
}
