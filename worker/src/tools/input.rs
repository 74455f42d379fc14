//! Reading a tool's input object.
//!
//! The router validates every call against the tool's JSON Schema before it reaches a worker, so
//! these helpers are a second line: a call that slipped through (an older router, a hand-written
//! QUIC client) gets an InvalidRequest error naming the field instead of a panic or a confusing
//! failure deep inside the tool.

use auxot_common::error::RemoteError;
use serde_json::{Map, Value};

/// The input as an object.
pub fn object<'a>(tool: &str, input: &'a Value) -> Result<&'a Map<String, Value>, RemoteError> {
    input.as_object().ok_or_else(|| {
        RemoteError::invalid(format!(
            "tool `{tool}` takes a JSON object as input, got {}",
            kind_of(input)
        ))
    })
}

/// A required, non-empty string field.
pub fn required_str<'a>(tool: &str, input: &'a Value, field: &str) -> Result<&'a str, RemoteError> {
    match object(tool, input)?.get(field) {
        None | Some(Value::Null) => Err(RemoteError::invalid(format!(
            "tool `{tool}` needs `{field}` (a string)"
        ))),
        Some(Value::String(s)) if s.trim().is_empty() => Err(RemoteError::invalid(format!(
            "tool `{tool}`: `{field}` must not be empty"
        ))),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(RemoteError::invalid(format!(
            "tool `{tool}`: `{field}` must be a string, got {}",
            kind_of(other)
        ))),
    }
}

/// An optional non-negative integer field.
pub fn optional_usize(
    tool: &str,
    input: &Value,
    field: &str,
) -> Result<Option<usize>, RemoteError> {
    match object(tool, input)?.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                RemoteError::invalid(format!(
                    "tool `{tool}`: `{field}` must be a non-negative integer, got {value}"
                ))
            }),
    }
}

/// Checks that the fields a schema marks `required` at its top level are present.
///
/// Used for tools whose schema comes from configuration (commands, MCP servers): the program
/// behind them does its own validation, but a missing field is the caller's mistake and should
/// say so before a process is started.
pub fn check_required(tool: &str, schema: &Value, input: &Value) -> Result<(), RemoteError> {
    let object = object(tool, input)?;
    let required = schema.get("required").and_then(Value::as_array);
    let missing: Vec<&str> = required
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|field| !object.contains_key(*field))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RemoteError::invalid(format!(
            "tool `{tool}` is missing required field(s): {}",
            missing.join(", ")
        )))
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::error::ErrorKind;
    use serde_json::json;

    #[test]
    fn missing_and_ill_typed_fields_are_invalid_requests() {
        let cases = [
            (json!({}), "needs `url`"),
            (json!({"url": 3}), "must be a string, got a number"),
            (json!({"url": "  "}), "must not be empty"),
            (json!("http://x"), "takes a JSON object"),
        ];
        for (input, expected) in cases {
            let err = required_str("web_fetch", &input, "url").expect_err("must fail");
            assert_eq!(err.kind, ErrorKind::InvalidRequest);
            assert!(err.message.contains(expected), "{}", err.message);
        }
        let err = optional_usize("t", &json!({"limit": -1}), "limit").expect_err("negative");
        assert!(
            err.message.contains("non-negative integer"),
            "{}",
            err.message
        );
        assert_eq!(
            optional_usize("t", &json!({"limit": 7}), "limit").ok(),
            Some(Some(7))
        );
    }

    #[test]
    fn required_fields_of_a_configured_schema_are_checked() {
        let schema = json!({"type": "object", "required": ["a", "b"]});
        let err = check_required("add", &schema, &json!({"a": 1})).expect_err("b missing");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.contains(": b"), "{}", err.message);
        assert!(check_required("add", &schema, &json!({"a": 1, "b": 2})).is_ok());
    }
}
