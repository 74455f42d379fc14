//! OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.

use serde_json::{json, Value};

use crate::error::{ApiError, Fault};

fn error_type(fault: Fault) -> &'static str {
    match fault {
        Fault::Unauthorized => "authentication_error",
        Fault::Forbidden => "permission_error",
        Fault::InvalidRequest | Fault::MethodNotAllowed | Fault::PayloadTooLarge => {
            "invalid_request_error"
        }
        Fault::NotFound => "not_found_error",
        Fault::Overloaded => "rate_limit_error",
        Fault::Unavailable => "service_unavailable",
        Fault::Timeout | Fault::RequestTimeout => "timeout_error",
        Fault::Upstream | Fault::Internal => "server_error",
    }
}

/// The body of an error response (and of an error inside a stream).
pub fn error_body(error: &ApiError, _status: u16) -> Value {
    let code = match error.fault {
        Fault::Unauthorized => json!("invalid_api_key"),
        Fault::NotFound => json!("not_found"),
        Fault::Overloaded => json!("overloaded"),
        _ => Value::Null,
    };
    json!({"error": {
        "message": error.message,
        "type": error_type(error.fault),
        "param": null,
        "code": code,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_codes() {
        let cases = [
            (Fault::InvalidRequest, "invalid_request_error", Value::Null),
            (
                Fault::Unauthorized,
                "authentication_error",
                json!("invalid_api_key"),
            ),
            (Fault::NotFound, "not_found_error", json!("not_found")),
            (Fault::Overloaded, "rate_limit_error", json!("overloaded")),
            (Fault::Unavailable, "service_unavailable", Value::Null),
            (Fault::RequestTimeout, "timeout_error", Value::Null),
            (Fault::Internal, "server_error", Value::Null),
        ];
        for (fault, ty, code) in cases {
            let body = error_body(&ApiError::new(fault, "m"), 0);
            assert_eq!(body["error"]["type"], ty, "{fault:?}");
            assert_eq!(body["error"]["code"], code, "{fault:?}");
            assert_eq!(body["error"]["message"], "m");
        }
    }
}
