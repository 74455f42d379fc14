//! Embedding requests and their results, as they cross the wire.
//!
//! Embeddings are not a chat: there is no stream of events, only one vector per input, so they
//! travel as their own request and reply rather than as a [`crate::chat::ChatRequest`].

use serde::{Deserialize, Serialize};

/// Texts to embed with one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    /// The model id, or [`crate::chat::AUTO_MODEL`] for any embedding model.
    pub model: String,
    /// The texts, each embedded on its own.
    pub inputs: Vec<String>,
    /// The id the router gave the API request, for the worker's log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The vectors of an [`EmbedRequest`], in the order of its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embeddings {
    /// The model that embedded them.
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all inputs together.
    pub prompt_tokens: u32,
}
