//! Building HTTP responses: JSON bodies, errors in the caller's dialect, the worker header.

use serde_json::Value;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use crate::dialect;
use crate::error::{ApiError, DialectKind, Fault};

/// Response header naming the worker that served a chat request, for operators tracing one.
pub const WORKER_HEADER: &str = "x-auxot-worker";

/// A JSON response with `status`.
pub fn json_response(status: u16, body: &Value) -> Response {
    let mut response = Response::new(body.to_string().into());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// The error response for `error` in `dialect`, with the headers its fault calls for.
pub fn error_response(dialect: DialectKind, error: &ApiError) -> Response {
    let status = error.status(dialect);
    let mut response = json_response(status, &dialect::error_body(dialect, error, status));
    if let Some(secs) = error.retry_after() {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    for (name, value) in &error.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    if error.fault == Fault::Unauthorized {
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    response
}

/// Names the serving worker in a response header.
pub fn with_worker(mut response: Response, worker: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(worker) {
        response.headers_mut().insert(WORKER_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_says_when_to_retry_and_401_how_to_authenticate() {
        let response = error_response(
            DialectKind::OpenAi,
            &ApiError::new(Fault::Overloaded, "full"),
        );
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        let response = error_response(
            DialectKind::Anthropic,
            &ApiError::new(Fault::Overloaded, "full"),
        );
        assert_eq!(response.status(), 529);
        let response = error_response(
            DialectKind::Anthropic,
            &ApiError::new(Fault::Unauthorized, "no"),
        );
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
}
