//! The OpenAI dialect: request translation, response and stream rendering, and its handlers.

pub mod handlers;
pub mod request;
pub mod response;
pub mod stream;
