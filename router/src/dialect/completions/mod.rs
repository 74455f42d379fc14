//! The legacy text-completions dialect (`POST /api/openai/completions`): a raw prompt in, text
//! out, OpenAI's `text_completion` objects and errors. Everything but the request and its
//! rendering (models, errors) is the OpenAI dialect's.

use auxot_common::chat::ChatEvent;
use auxot_common::completion::Completion;
use auxot_common::mesh::node::ModelInfo;
use serde_json::Value;

use super::base::{ChatCall, Dialect, DialectContext, SseFrame, StreamRenderer};
use super::openai::{self, OpenAi};
use crate::error::{ApiError, DialectKind};
use crate::ids;

pub mod render;
pub mod request;

/// `/api/openai/completions` (and the `/v1/...` aliases).
pub struct Completions;

/// Chunks as `data:` frames, ended by `data: [DONE]`.
pub struct Renderer(render::ChunkRenderer);

impl StreamRenderer for Renderer {
    fn on_event(&mut self, event: &ChatEvent) -> Vec<SseFrame> {
        self.0
            .on_event(event)
            .into_iter()
            .map(SseFrame::data)
            .collect()
    }

    fn close(&mut self) -> Vec<SseFrame> {
        vec![SseFrame::data(openai::stream::DONE)]
    }
}

/// What shapes a completion response besides its events.
#[derive(Debug, Clone)]
pub struct Options {
    pub header: render::Header,
    pub include_usage: bool,
}

impl Dialect for Completions {
    const KIND: DialectKind = DialectKind::OpenAi;
    type Options = Options;
    type Renderer = Renderer;

    fn parse_chat(body: &[u8], _context: &DialectContext) -> Result<ChatCall<Options>, ApiError> {
        let parsed: request::CompletionRequest = crate::limits::parse_body(body)?;
        let translated = request::translate(parsed)?;
        Ok(ChatCall {
            request: translated.request,
            stream: translated.stream,
            mesh_tools: None,
            options: Options {
                header: render::Header {
                    id: ids::text_completion_id(),
                    created: ids::unix_now(),
                    echo: translated.echo,
                },
                include_usage: translated.include_usage,
            },
        })
    }

    fn render_completion(options: &Options, completion: &Completion) -> Value {
        render::completion(&options.header, completion)
    }

    fn stream_renderer(options: Options, model: &str) -> Renderer {
        Renderer(render::ChunkRenderer::new(
            options.header,
            model.to_string(),
            options.include_usage,
        ))
    }

    fn model_list(models: &[ModelInfo]) -> Value {
        OpenAi::model_list(models)
    }

    fn model(model: &ModelInfo) -> Value {
        OpenAi::model(model)
    }

    fn error_body(error: &ApiError, status: u16) -> Value {
        OpenAi::error_body(error, status)
    }
}
