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

pub mod constrain;
pub mod continuation;
pub mod convert;
pub mod mistral;
pub mod stops;
pub mod synthetic;

/// Running totals of an engine's prompt-prefix cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Prompts looked up.
    pub lookups: u64,
    /// Prompts that found some prefix cached.
    pub hits: u64,
    /// Prompt tokens looked up.
    pub prompt_tokens: u64,
    /// Prompt tokens found in the cache (not computed again).
    pub cached_tokens: u64,
}

/// Something that can generate chat completions.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// The model this engine serves.
    fn model(&self) -> &ModelInfo;

    /// Where it computes.
    fn device(&self) -> DeviceInfo;

    /// Requests it runs at once; more wait in its queue.
    fn capacity(&self) -> u32;

    /// The prompt-prefix cache's figures, for engines that report them.
    fn prefix_cache(&self) -> Option<PrefixCacheStats> {
        None
    }

    /// Generates, sending events until a `Finish` or an `Error`; first a `PromptTokens` when the
    /// request asks for it. Returns early, abandoning the generation, when `events` is closed
    /// (the caller went away). A continuation ([`ChatRequest::continue_final`]) is continued
    /// where the model advertises [`ModelInfo::continues`], refused otherwise.
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
