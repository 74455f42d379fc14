//! Errors of the routes that belong to no model API (the Tools API, `/health`, unknown paths):
//! OpenAI's shape, which most HTTP clients of LLM services already parse.

use serde_json::Value;

use crate::error::ApiError;

pub fn error_body(error: &ApiError, status: u16) -> Value {
    super::openai::error::error_body(error, status)
}
