//! The Anthropic dialect: Messages requests, responses and streams, token counting, models.

pub mod handlers;
pub mod request;
pub mod response;
pub mod stream;
