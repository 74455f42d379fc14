//! Errors as each API dialect spells them.
//!
//! Every failure becomes a [`RemoteError`] (a kind and a message); the dialect of the route
//! decides the body: OpenAI's `{"error": {...}}` or Anthropic's `{"type": "error", ...}`. The
//! kind decides the status, except that Anthropic reports saturation as 529.

use auxot_common::error::{ErrorKind, RemoteError};
use serde_json::{json, Value};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

/// Which API family a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    /// The Tools API and `/health`: OpenAI-style error bodies.
    Plain,
}

/// Seconds a client should wait before retrying a saturated cluster.
pub const RETRY_AFTER_SECS: u64 = 1;

fn openai_type(kind: ErrorKind, status: u16) -> &'static str {
    if status == 401 {
        return "authentication_error";
    }
    match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::Overloaded => "rate_limit_error",
        ErrorKind::Unavailable => "service_unavailable",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Upstream | ErrorKind::Internal => "server_error",
    }
}

fn anthropic_type(kind: ErrorKind, status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        413 => "request_too_large",
        _ => match kind {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Unavailable | ErrorKind::Upstream | ErrorKind::Internal => "api_error",
        },
    }
}

/// The HTTP status for `kind` in `dialect`.
pub fn status_for(dialect: Dialect, kind: ErrorKind) -> u16 {
    match (dialect, kind) {
        (Dialect::Anthropic, ErrorKind::Overloaded) => 529,
        (_, kind) => kind.http_status(),
    }
}

/// The JSON body of an error, for responses and for error events inside streams.
pub fn error_body(dialect: Dialect, status: u16, error: &RemoteError) -> Value {
    match dialect {
        Dialect::Anthropic => json!({
            "type": "error",
            "error": {"type": anthropic_type(error.kind, status), "message": error.message},
            "request_id": crate::ids::request_id(),
        }),
        Dialect::OpenAi | Dialect::Plain => {
            let code = match (error.kind, status) {
                (_, 401) => json!("invalid_api_key"),
                (ErrorKind::NotFound, _) => json!("not_found"),
                (ErrorKind::Overloaded, _) => json!("overloaded"),
                _ => Value::Null,
            };
            json!({"error": {
                "message": error.message,
                "type": openai_type(error.kind, status),
                "param": null,
                "code": code,
            }})
        }
    }
}

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

/// The error response for `error` in `dialect`.
pub fn error_response(dialect: Dialect, error: &RemoteError) -> Response {
    let status = status_for(dialect, error.kind);
    let mut response = json_response(status, &error_body(dialect, status, error));
    if matches!(error.kind, ErrorKind::Overloaded | ErrorKind::Unavailable) {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// 401 in `dialect`.
pub fn unauthorized(dialect: Dialect, message: &str) -> Response {
    let error = RemoteError::invalid(message);
    let mut response = json_response(401, &error_body(dialect, 401, &error));
    response
        .headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            (
                Dialect::OpenAi,
                ErrorKind::InvalidRequest,
                400,
                "invalid_request_error",
            ),
            (Dialect::OpenAi, ErrorKind::NotFound, 404, "not_found_error"),
            (
                Dialect::OpenAi,
                ErrorKind::Overloaded,
                429,
                "rate_limit_error",
            ),
            (
                Dialect::OpenAi,
                ErrorKind::Unavailable,
                503,
                "service_unavailable",
            ),
            (
                Dialect::Anthropic,
                ErrorKind::InvalidRequest,
                400,
                "invalid_request_error",
            ),
            (
                Dialect::Anthropic,
                ErrorKind::NotFound,
                404,
                "not_found_error",
            ),
            (
                Dialect::Anthropic,
                ErrorKind::Overloaded,
                529,
                "overloaded_error",
            ),
            (Dialect::Anthropic, ErrorKind::Unavailable, 503, "api_error"),
            (Dialect::Anthropic, ErrorKind::Internal, 500, "api_error"),
        ];
        for (dialect, kind, status, ty) in cases {
            assert_eq!(status_for(dialect, kind), status, "{dialect:?} {kind:?}");
            let body = error_body(dialect, status, &RemoteError::new(kind, "m"));
            let got = match dialect {
                Dialect::Anthropic => {
                    assert_eq!(body["type"], "error");
                    body["error"]["type"].clone()
                }
                _ => body["error"]["type"].clone(),
            };
            assert_eq!(got, ty, "{dialect:?} {kind:?}");
            assert_eq!(body["error"]["message"], "m");
        }
    }

    #[test]
    fn saturation_says_when_to_retry() {
        let response = error_response(
            Dialect::OpenAi,
            &RemoteError::new(ErrorKind::Overloaded, "full"),
        );
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        let response = unauthorized(Dialect::Anthropic, "no");
        assert_eq!(response.status(), 401);
    }
}
