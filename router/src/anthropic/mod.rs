//! The Anthropic dialect.

pub mod handlers;
