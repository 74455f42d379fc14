//! The Tools API over HTTP: `GET /api/tools/v1/list` and `POST /api/tools/v1/execute`.

use serde::Deserialize;
use serde_json::{json, Value};
use warp::reply::Response;

use super::respond::{error_response, json_response};
use super::state::AppState;
use crate::dialect;
use crate::error::{ApiError, DialectKind};
use crate::forward::candidates;
use crate::generation::tools;

const DIALECT: DialectKind = DialectKind::Plain;

/// `GET /api/tools/v1/list`.
pub fn list(state: &AppState) -> Response {
    let registry = state.registry();
    let tools = tools::catalog(registry);
    json_response(
        200,
        &json!({
            "tools": tools,
            "count": tools.len(),
            "workers": candidates::tools_workers(registry).len(),
        }),
    )
}

/// An execute body; `arguments` is accepted for `input`.
#[derive(Deserialize)]
struct ExecuteBody {
    tool: Option<String>,
    input: Option<Value>,
    arguments: Option<Value>,
}

/// The tool name and input of an execute body.
fn parse_execute(body: &[u8]) -> Result<(String, Value), ApiError> {
    let parsed: ExecuteBody = crate::limits::parse_body(body)?;
    let name = parsed
        .tool
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("tool: required (the name of the tool to run)"))?;
    let input = parsed
        .input
        .or(parsed.arguments)
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| json!({}));
    if !input.is_object() {
        return Err(ApiError::invalid("input: must be a JSON object"));
    }
    Ok((name, input))
}

/// `POST /api/tools/v1/execute`.
pub async fn execute(state: &AppState, body: &[u8]) -> Response {
    let (name, input) = match parse_execute(body) {
        Ok(parsed) => parsed,
        Err(error) => return error_response(DIALECT, &error),
    };
    match tools::run(&state.generator, &name, input).await {
        Ok(result) => json_response(200, &json!({"tool": name, "result": result})),
        Err(error) => {
            let status = error.status(DIALECT);
            let mut body = dialect::error_body(DIALECT, &error, status);
            body["tool"] = json!(name);
            json_response(status, &body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_bodies() {
        assert_eq!(
            parse_execute(br#"{"tool": "t", "input": {"a": 1}}"#).expect("ok"),
            ("t".into(), json!({"a": 1}))
        );
        assert_eq!(
            parse_execute(br#"{"tool": "t", "arguments": {"a": 2}}"#)
                .expect("ok")
                .1,
            json!({"a": 2})
        );
        assert_eq!(parse_execute(br#"{"tool": "t"}"#).expect("ok").1, json!({}));
        assert!(parse_execute(br#"{"input": {}}"#)
            .expect_err("no tool")
            .message
            .contains("tool: required"));
        assert!(parse_execute(br#"{"tool": "t", "input": 3}"#).is_err());
        assert!(parse_execute(b"nope").is_err());
    }
}
