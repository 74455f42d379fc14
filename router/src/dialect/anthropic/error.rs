//! Anthropic's error body: `{"type": "error", "error": {"type", "message"}, "request_id"}`.

use serde_json::{json, Value};

use crate::error::{ApiError, Fault};
use crate::ids;

fn error_type(fault: Fault) -> &'static str {
    match fault {
        Fault::Unauthorized => "authentication_error",
        Fault::Forbidden => "permission_error",
        Fault::PayloadTooLarge => "request_too_large",
        Fault::InvalidRequest | Fault::MethodNotAllowed => "invalid_request_error",
        Fault::NotFound => "not_found_error",
        Fault::Overloaded => "overloaded_error",
        Fault::Timeout | Fault::RequestTimeout => "timeout_error",
        Fault::Unavailable | Fault::Upstream | Fault::Internal => "api_error",
    }
}

/// The body of an error response (and of an `error` event inside a stream).
pub fn error_body(error: &ApiError, _status: u16) -> Value {
    json!({
        "type": "error",
        "error": {"type": error_type(error.fault), "message": error.message},
        "request_id": ids::request_id(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        let cases = [
            (Fault::InvalidRequest, "invalid_request_error"),
            (Fault::Unauthorized, "authentication_error"),
            (Fault::PayloadTooLarge, "request_too_large"),
            (Fault::NotFound, "not_found_error"),
            (Fault::Overloaded, "overloaded_error"),
            (Fault::RequestTimeout, "timeout_error"),
            (Fault::Unavailable, "api_error"),
            (Fault::Internal, "api_error"),
        ];
        for (fault, ty) in cases {
            let body = error_body(&ApiError::new(fault, "m"), 0);
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], ty, "{fault:?}");
            assert_eq!(body["error"]["message"], "m");
            assert!(body["request_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("req_")));
        }
    }
}
