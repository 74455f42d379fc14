//! Anthropic endpoints.

use auxot_common::error::{ErrorKind, RemoteError};
use warp::http::HeaderMap;
use warp::reply::Response;

use crate::http::error::{error_response, Dialect};
use crate::state::AppState;

fn unavailable() -> Response {
    error_response(
        Dialect::Anthropic,
        &RemoteError::new(
            ErrorKind::NotFound,
            "the Anthropic API is not available in this build",
        ),
    )
}

pub async fn messages(_state: &AppState, _headers: &HeaderMap, _body: &[u8]) -> Response {
    unavailable()
}

pub async fn count_tokens(_state: &AppState, _body: &[u8]) -> Response {
    unavailable()
}

pub fn models(_state: &AppState) -> Response {
    unavailable()
}

pub fn model(_state: &AppState, _id: &str) -> Response {
    unavailable()
}
