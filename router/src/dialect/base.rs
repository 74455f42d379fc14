//! What every dialect provides: the [`Dialect`] trait the API handlers are written over, the
//! stream renderer it hands out, and the parsed chat call.

use std::sync::Arc;

use auxot_common::chat::{ChatEvent, ChatRequest};
use auxot_common::completion::Completion;
use auxot_common::mesh::node::ModelInfo;
use serde_json::Value;

use super::responses::state::{StateKey, StreamedResponses};
use crate::error::{ApiError, DialectKind};
use crate::generation::tool_loop::MeshTools;

/// What a dialect may need besides the request body: router-wide secrets and settings.
#[derive(Debug, Clone)]
pub struct DialectContext {
    /// Seals and opens the conversations Responses API ids carry.
    pub response_state: Arc<StateKey>,
    /// The conversations of the responses this router streamed, by their stream ids.
    pub streamed_responses: Arc<StreamedResponses>,
}

/// One server-sent event: an optional `event:` name and its `data:` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame {
    pub event: Option<&'static str>,
    pub data: String,
}

impl SseFrame {
    /// A frame with only a `data:` line.
    pub fn data(data: impl Into<String>) -> Self {
        SseFrame {
            event: None,
            data: data.into(),
        }
    }

    /// A frame with `event:` and `data:` lines.
    pub fn named(event: &'static str, data: impl Into<String>) -> Self {
        SseFrame {
            event: Some(event),
            data: data.into(),
        }
    }
}

/// Turns a generation's events into SSE frames for one response.
pub trait StreamRenderer: Send + 'static {
    /// The frames for one event.
    fn on_event(&mut self, event: &ChatEvent) -> Vec<SseFrame>;
    /// Frames that end the stream (OpenAI's `[DONE]`); called once after the last event.
    fn close(&mut self) -> Vec<SseFrame>;
}

/// A chat request as a dialect parsed it.
#[derive(Debug)]
pub struct ChatCall<O> {
    pub request: ChatRequest,
    /// Answer as a stream of server-sent events.
    pub stream: bool,
    /// The request's opt-in to the server-side tool loop.
    pub mesh_tools: Option<MeshTools>,
    /// What else shapes the response (ids, usage reporting).
    pub options: O,
}

/// One API family.
pub trait Dialect: Send + Sync + 'static {
    /// Which family, for statuses and error bodies.
    const KIND: DialectKind;
    /// Per-response context parsed with the request (ids, timestamps, flags).
    type Options: Send + 'static;
    /// The stream renderer of this dialect.
    type Renderer: StreamRenderer;

    /// Parses and validates a chat request body.
    fn parse_chat(
        body: &[u8],
        context: &DialectContext,
    ) -> Result<ChatCall<Self::Options>, ApiError>;

    /// A whole, non-streaming answer.
    fn render_completion(options: &Self::Options, completion: &Completion) -> Value;

    /// The renderer for a streamed answer served by `model`.
    fn stream_renderer(options: Self::Options, model: &str) -> Self::Renderer;

    /// The models list.
    fn model_list(models: &[ModelInfo]) -> Value;

    /// One model.
    fn model(model: &ModelInfo) -> Value;

    /// The body of an error response with `status`.
    fn error_body(error: &ApiError, status: u16) -> Value;
}
