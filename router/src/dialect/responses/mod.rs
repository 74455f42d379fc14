//! The OpenAI Responses API dialect (`POST /api/openai/responses`): input items in, a
//! `response` object or its typed event stream out, function tools, and `previous_response_id`
//! on stateless routers through ids that carry the sealed conversation ([`state`]). Models and
//! errors are the OpenAI dialect's.

use auxot_common::chat::ChatEvent;
use auxot_common::completion::Completion;
use auxot_common::mesh::node::ModelInfo;
use serde_json::Value;

use super::base::{ChatCall, Dialect, DialectContext, SseFrame, StreamRenderer};
use super::openai::OpenAi;
use crate::error::{ApiError, DialectKind};
use crate::ids;

pub mod render;
pub mod request;
pub mod state;

/// `/api/openai/responses` (and the `/v1/...` aliases).
pub struct Responses;

/// Named events (`response.created`, `response.output_text.delta`, ...); no `[DONE]`.
pub struct Renderer(render::EventRenderer);

impl StreamRenderer for Renderer {
    fn on_event(&mut self, event: &ChatEvent) -> Vec<SseFrame> {
        self.0
            .on_event(event)
            .into_iter()
            .map(|(name, body)| SseFrame::named(name, body.to_string()))
            .collect()
    }

    fn close(&mut self) -> Vec<SseFrame> {
        Vec::new()
    }
}

/// Parses a body, opening the conversation behind `previous_response_id` (sealed in the id, or
/// kept by this router for a streamed response).
pub fn parse(
    body: &[u8],
    key: &state::StateKey,
    streamed: &state::StreamedResponses,
) -> Result<request::Translated, ApiError> {
    let parsed: request::ResponsesRequest = crate::limits::parse_body(body)?;
    let previous = match &parsed.previous_response_id {
        None => None,
        Some(id) if state::is_stream_id(id) => {
            let not_kept = || {
                ApiError::invalid(format!(
                    "previous_response_id: previous response with id '{id}' not found: a streamed response continues only through the router that streamed it, for {} minutes (send the turn's output items as input instead, or continue from a non-streamed response, whose id works through any router)",
                    state::STREAMED_TTL.as_secs() / 60
                ))
            };
            let sealed = streamed.get(id).ok_or_else(not_kept)?;
            Some(key.open(&sealed).map_err(|_| not_kept())?.messages)
        }
        Some(id) => Some(
            key.open(id)
                .map_err(|why| {
                    ApiError::invalid(format!(
                        "previous_response_id: previous response with id '{}' not found: {why}",
                        shorten(id)
                    ))
                })?
                .messages,
        ),
    };
    request::translate(parsed, previous)
}

/// An id short enough for a message.
fn shorten(id: &str) -> String {
    match id.char_indices().nth(40) {
        Some((at, _)) => format!("{}...", &id[..at]),
        None => id.to_string(),
    }
}

impl Dialect for Responses {
    const KIND: DialectKind = DialectKind::OpenAi;
    type Options = render::Header;
    type Renderer = Renderer;

    fn parse_chat(
        body: &[u8],
        context: &DialectContext,
    ) -> Result<ChatCall<render::Header>, ApiError> {
        let translated = parse(body, &context.response_state, &context.streamed_responses)?;
        Ok(ChatCall {
            request: translated.request,
            stream: translated.stream,
            mesh_tools: translated.mesh_tools,
            options: render::Header {
                provisional_id: ids::item_id("resp"),
                created_at: ids::unix_now(),
                echo: translated.echo,
                conversation: translated.conversation,
                key: context.response_state.clone(),
                streamed: context.streamed_responses.clone(),
            },
        })
    }

    fn render_completion(options: &render::Header, completion: &Completion) -> Value {
        render::completion(options, completion)
    }

    fn stream_renderer(options: render::Header, model: &str) -> Renderer {
        Renderer(render::EventRenderer::new(options, model.to_string()))
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
