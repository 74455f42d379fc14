//! The OpenAI dialect: request translation, response and stream rendering, error bodies.

use auxot_common::chat::ChatEvent;
use auxot_common::completion::Completion;
use auxot_common::mesh::node::ModelInfo;
use serde_json::Value;

use super::base::{ChatCall, Dialect, DialectContext, SseFrame, StreamRenderer};
use crate::error::{ApiError, DialectKind};
use crate::ids;

pub mod error;
pub mod request;
pub mod response;
pub mod stream;

/// `/api/openai/...` (and the `/v1/...` aliases).
pub struct OpenAi;

/// What shapes an OpenAI response besides its events.
#[derive(Debug, Clone)]
pub struct Options {
    pub id: String,
    pub created: u64,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

/// Chunks as `data:` frames, ended by `data: [DONE]`.
pub struct Renderer(stream::ChunkRenderer);

impl StreamRenderer for Renderer {
    fn on_event(&mut self, event: &ChatEvent) -> Vec<SseFrame> {
        self.0
            .on_event(event)
            .into_iter()
            .map(SseFrame::data)
            .collect()
    }

    fn close(&mut self) -> Vec<SseFrame> {
        vec![SseFrame::data(stream::DONE)]
    }
}

impl Dialect for OpenAi {
    const KIND: DialectKind = DialectKind::OpenAi;
    type Options = Options;
    type Renderer = Renderer;

    fn parse_chat(body: &[u8], _context: &DialectContext) -> Result<ChatCall<Options>, ApiError> {
        let parsed: request::ChatCompletionRequest = crate::limits::parse_body(body)?;
        let translated = request::translate(parsed)?;
        Ok(ChatCall {
            request: translated.request,
            stream: translated.stream,
            mesh_tools: translated.mesh_tools,
            options: Options {
                id: ids::completion_id(),
                created: ids::unix_now(),
                include_usage: translated.include_usage,
            },
        })
    }

    fn render_completion(options: &Options, completion: &Completion) -> Value {
        response::completion(&options.id, options.created, completion)
    }

    fn stream_renderer(options: Options, model: &str) -> Renderer {
        Renderer(stream::ChunkRenderer::new(
            options.id,
            options.created,
            model.to_string(),
            options.include_usage,
        ))
    }

    fn model_list(models: &[ModelInfo]) -> Value {
        response::model_list(models, ids::unix_now())
    }

    fn model(model: &ModelInfo) -> Value {
        response::model(model, ids::unix_now())
    }

    fn error_body(error: &ApiError, status: u16) -> Value {
        error::error_body(error, status)
    }
}
