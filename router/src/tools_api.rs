//! The Tools API.

use auxot_common::error::{ErrorKind, RemoteError};
use warp::reply::Response;

use crate::http::error::{error_response, Dialect};
use crate::state::AppState;

fn unavailable() -> Response {
    error_response(
        Dialect::Plain,
        &RemoteError::new(
            ErrorKind::NotFound,
            "the Tools API is not available in this build",
        ),
    )
}

pub fn list(_state: &AppState) -> Response {
    unavailable()
}

pub async fn execute(_state: &AppState, _body: &[u8]) -> Response {
    unavailable()
}
