//! The Anthropic dialect: Messages requests, responses and streams, error bodies; the request
//! parser is shared with `count_tokens`.

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

/// `/api/anthropic/...`.
pub struct Anthropic;

/// What shapes an Anthropic response besides its events.
#[derive(Debug, Clone)]
pub struct Options {
    pub id: String,
}

/// Named events (`message_start`, `content_block_delta`, ...).
pub struct Renderer(stream::EventRenderer);

impl StreamRenderer for Renderer {
    fn on_event(&mut self, event: &ChatEvent) -> Vec<SseFrame> {
        self.0
            .on_event(event)
            .into_iter()
            .map(|(name, data)| SseFrame::named(name, data.to_string()))
            .collect()
    }

    fn close(&mut self) -> Vec<SseFrame> {
        Vec::new()
    }
}

/// Parses and translates a Messages body; `need_max_tokens` is false for count_tokens, which
/// takes the same body without it.
pub fn parse(body: &[u8], need_max_tokens: bool) -> Result<request::Translated, ApiError> {
    let parsed: request::MessagesRequest = crate::limits::parse_body(body)?;
    request::translate(parsed, need_max_tokens)
}

impl Dialect for Anthropic {
    const KIND: DialectKind = DialectKind::Anthropic;
    type Options = Options;
    type Renderer = Renderer;

    fn parse_chat(body: &[u8], _context: &DialectContext) -> Result<ChatCall<Options>, ApiError> {
        let translated = parse(body, true)?;
        Ok(ChatCall {
            request: translated.request,
            stream: translated.stream,
            mesh_tools: translated.mesh_tools,
            options: Options {
                id: ids::message_id(),
            },
        })
    }

    fn render_completion(options: &Options, completion: &Completion) -> Value {
        response::message(&options.id, completion)
    }

    fn stream_renderer(options: Options, model: &str) -> Renderer {
        Renderer(stream::EventRenderer::new(options.id, model.to_string()))
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
