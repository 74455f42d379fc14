//! The API dialects: everything that differs between OpenAI's and Anthropic's APIs, and between
//! OpenAI's chat completions, legacy completions and Responses API.
//!
//! A dialect parses a request body into the canonical [`ChatRequest`] and renders canonical
//! results back: a whole completion, a stream of events as server-sent-event frames, model
//! lists and error bodies. All of it is pure translation with no I/O, so every mapping is
//! unit-tested in the dialect's own files; the HTTP handlers in `api/` are written once over the
//! [`Dialect`] trait. Dialects never translate into each other, only to and from the canonical
//! types.

use serde_json::Value;

use crate::error::{ApiError, DialectKind};

pub mod anthropic;
mod base;
pub mod completions;
pub mod embeddings;
pub mod openai;
pub mod plain;
pub mod responses;

pub use base::{ChatCall, Dialect, DialectContext, SseFrame, StreamRenderer};

/// The error body for `error` in the dialect of `kind`, for callers that know the dialect only
/// at run time (an unknown path, a failed authentication).
pub fn error_body(kind: DialectKind, error: &ApiError, status: u16) -> Value {
    match kind {
        DialectKind::OpenAi => openai::OpenAi::error_body(error, status),
        DialectKind::Anthropic => anthropic::Anthropic::error_body(error, status),
        DialectKind::Plain => plain::error_body(error, status),
    }
}
