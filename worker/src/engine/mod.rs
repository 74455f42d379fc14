//! Engines turn a canonical chat request into canonical events.
//!
//! [`mistral::MistralEngine`] is the production engine. [`synthetic::SyntheticEngine`] produces
//! fixed text at a fixed pace for router load tests and benchmarks; it is never the default and
//! says what it is in its model id.

use async_trait::async_trait;
use auxot_common::chat::{ChatEvent, ChatRequest};
use auxot_common::embedding::{EmbedRequest, Embeddings};
use auxot_common::error::RemoteError;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo};
use tokio::sync::mpsc::UnboundedSender;

pub mod convert;
pub mod mistral;
pub mod stops;
pub mod synthetic;

/// Something that can generate chat completions.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// The model this engine serves.
    fn model(&self) -> &ModelInfo;

    /// Where it computes.
    fn device(&self) -> DeviceInfo;

    /// Requests it runs at once; more wait in its queue.
    fn capacity(&self) -> u32;

    /// Generates, sending events until a `Finish` or an `Error`; first a `PromptTokens` when the
    /// request asks for it. Returns early, abandoning the generation, when `events` is closed
    /// (the caller went away).
    async fn chat(&self, request: ChatRequest, events: UnboundedSender<ChatEvent>);

    /// Counts the prompt tokens `request` would use, with the model's tokenizer and template.
    async fn count_tokens(&self, request: &ChatRequest) -> Result<u32, RemoteError>;

    /// One vector per input, for engines serving an embedding model.
    async fn embed(&self, _request: &EmbedRequest) -> Result<Embeddings, RemoteError> {
        Err(RemoteError::invalid(format!(
            "model `{}` is not an embedding model",
            self.model().id
        )))
    }
}
