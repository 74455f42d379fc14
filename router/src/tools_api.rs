//! The Tools API: the tools of every ready tools worker, and running one without a model.
//!
//! Arguments are validated against the tool's JSON schema here, before any worker is bothered,
//! so a bad call is a 400 that says which field is wrong. A call goes to the least-loaded worker
//! that has the tool; if that worker dies mid-call the call is tried once more elsewhere.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::tools::{ToolCallRequest, ToolCallResult, ToolInfo};
use serde_json::{json, Value};
use warp::reply::Response;

use crate::http::error::{error_body, error_response, json_response, Dialect};
use crate::registry::WorkerView;
use crate::state::AppState;

const DIALECT: Dialect = Dialect::Plain;
/// Longest a router waits for one tool call (the worker enforces its own, usually shorter, limit).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Workers tried for one call.
const ATTEMPTS: usize = 2;

/// Ready workers that serve tools, each with its tools.
fn tools_workers(state: &AppState) -> Vec<Arc<WorkerView>> {
    state
        .forwarder
        .registry()
        .routable()
        .into_iter()
        .filter(|w| !w.advert.tools.is_empty())
        .collect()
}

/// Every tool in the cluster, once per name; available if any worker can run it.
pub fn catalog(state: &AppState) -> Vec<ToolInfo> {
    let mut by_name: BTreeMap<String, ToolInfo> = BTreeMap::new();
    for worker in tools_workers(state) {
        for tool in &worker.advert.tools {
            by_name
                .entry(tool.name.clone())
                .and_modify(|t| t.available |= tool.available)
                .or_insert_with(|| tool.clone());
        }
    }
    by_name.into_values().collect()
}

/// `GET /api/tools/v1/list`.
pub fn list(state: &AppState) -> Response {
    let tools = catalog(state);
    json_response(
        200,
        &json!({
            "tools": tools,
            "count": tools.len(),
            "workers": tools_workers(state).len(),
        }),
    )
}

/// Checks `input` against `schema`; the message lists every problem with its location.
pub fn validate(tool: &ToolInfo, input: &Value) -> Result<(), RemoteError> {
    let validator = jsonschema::validator_for(&tool.parameters).map_err(|e| {
        RemoteError::internal(format!(
            "tool `{}` advertises an invalid schema: {e}",
            tool.name
        ))
    })?;
    let problems: Vec<String> = validator
        .iter_errors(input)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RemoteError::invalid(format!(
            "input for `{}` does not match its schema: {}",
            tool.name,
            problems.join("; ")
        )))
    }
}

/// Runs `name` with `input` on the cluster: validation, worker choice, one retry.
pub async fn run(state: &AppState, name: &str, input: Value) -> Result<Value, RemoteError> {
    let workers = tools_workers(state);
    if workers.is_empty() {
        return Err(RemoteError::new(
            ErrorKind::Unavailable,
            "no tools worker is connected",
        ));
    }
    let Some(tool) = catalog(state).into_iter().find(|t| t.name == name) else {
        let names: Vec<String> = catalog(state).into_iter().map(|t| t.name).collect();
        return Err(RemoteError::new(
            ErrorKind::NotFound,
            format!("unknown tool `{name}` (available: {})", names.join(", ")),
        ));
    };
    validate(&tool, &input)?;
    let call = ToolCallRequest {
        tool: name.to_string(),
        input,
    };
    let mut tried = HashSet::new();
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut candidates: Vec<Arc<WorkerView>> = tools_workers(state)
            .into_iter()
            .filter(|w| !tried.contains(&w.advert.node_id))
            .filter(|w| w.advert.tools.iter().any(|t| t.name == name))
            .collect();
        // Prefer workers that can run it, then the least loaded.
        candidates.sort_by(|a, b| {
            let unavailable =
                |w: &WorkerView| !w.advert.tools.iter().any(|t| t.name == name && t.available);
            (unavailable(a), a.load()).cmp(&(unavailable(b), b.load()))
        });
        let Some(worker) = candidates.first() else {
            break;
        };
        tried.insert(worker.advert.node_id.clone());
        match state
            .forwarder
            .execute_tool(worker, &call, CALL_TIMEOUT)
            .await
        {
            Ok(ToolCallResult::Ok { result }) => return Ok(result),
            // This worker cannot run it now (not configured, program missing): another may.
            Ok(ToolCallResult::Failed { error }) if error.kind == ErrorKind::Unavailable => {
                last = Some(error)
            }
            Ok(ToolCallResult::Failed { error }) => return Err(error),
            // The worker went away mid-call: one more try elsewhere.
            Err(error) if error.kind == ErrorKind::Unavailable => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| {
        RemoteError::new(
            ErrorKind::Unavailable,
            format!("no tools worker could run `{name}`"),
        )
    }))
}

/// The tool name and input of an execute body; `arguments` is accepted for `input`.
fn parse_execute(body: &[u8]) -> Result<(String, Value), RemoteError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| RemoteError::invalid(format!("invalid request body: {e}")))?;
    let name = value
        .get("tool")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RemoteError::invalid("tool: required (the name of the tool to run)"))?
        .to_string();
    let input = value
        .get("input")
        .or_else(|| value.get("arguments"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !input.is_object() {
        return Err(RemoteError::invalid("input: must be a JSON object"));
    }
    Ok((name, input))
}

/// `POST /api/tools/v1/execute`.
pub async fn execute(state: &AppState, body: &[u8]) -> Response {
    let (name, input) = match parse_execute(body) {
        Ok(parsed) => parsed,
        Err(error) => return error_response(DIALECT, &error),
    };
    match run(state, &name, input).await {
        Ok(result) => json_response(200, &json!({"tool": name, "result": result})),
        Err(error) => {
            let status = error.kind.http_status();
            let mut body = error_body(DIALECT, status, &error);
            body["tool"] = json!(name);
            json_response(status, &body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> ToolInfo {
        ToolInfo {
            name: "get_weather".into(),
            description: String::new(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}, "required": ["city"]}),
            available: true,
        }
    }

    #[test]
    fn inputs_are_checked_against_the_schema() {
        assert!(validate(&tool(), &json!({"city": "Paris"})).is_ok());
        let err = validate(&tool(), &json!({"days": 0})).expect_err("invalid");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.contains("city"), "{}", err.message);
        assert!(err.message.contains("/days"), "{}", err.message);
    }

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
