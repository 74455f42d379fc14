//! `POST /mcp`: the mesh's tools as an MCP server, for any MCP client (agents, IDEs), over the
//! streamable HTTP transport, behind the same API key as every other route.
//!
//! A small JSON-RPC handler rather than `rmcp`'s streamable-HTTP server: that one is a tower
//! service with sessions and server-initiated SSE streams, none of which a stateless list of
//! tools needs, and mounting it in warp would mean adapting bodies both ways. What the transport
//! asks of a server that never pushes is small: answer each POSTed request with one JSON
//! response (`Content-Type: application/json`), answer notifications and responses with 202 and
//! no body, and refuse GET (405: no server stream) — done in `routes.rs`. No session id is
//! issued, so any router answers any request. Methods: `initialize`, `ping`, `tools/list`,
//! `tools/call` (backed by [`crate::generation::tools`]: the same catalog and execution as the
//! Tools API); others get JSON-RPC's "method not found". A tool that fails is a result with
//! `isError: true` and the reason, as MCP asks, so a model can read it; an unknown tool is a
//! protocol error.

use serde_json::{json, Value};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use super::state::AppState;
use crate::error::{ApiError, Fault};
use crate::generation::tools;
use crate::limits::{self, Shape};

/// Protocol versions this server speaks, newest first. A client that asks for another (newer
/// clients first probe `server/discover` at a newer revision) is answered "method not found"
/// and falls back to `initialize` with one of these; the `MCP-Protocol-Version` header is not
/// checked, since every method here behaves the same in all of them.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// A JSON-RPC error for a request.
struct RpcError {
    code: i64,
    message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

fn reply(id: Value, outcome: Result<Value, RpcError>) -> Value {
    match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
        }
    }
}

fn respond(status: StatusCode, body: Option<&Value>) -> Response {
    let mut response = Response::new(body.map(Value::to_string).unwrap_or_default().into());
    *response.status_mut() = status;
    if body.is_some() {
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
    }
    response
}

/// The protocol version to answer `initialize` with: the client's when spoken here, else ours.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|v| PROTOCOL_VERSIONS.iter().find(|known| **known == v))
        .copied()
        .unwrap_or(PROTOCOL_VERSIONS[0])
}

fn initialize(params: &Value) -> Value {
    json!({
        "protocolVersion": negotiate(params.get("protocolVersion").and_then(Value::as_str)),
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "auxot-router", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "The tools of this auxot cluster's tools workers.",
    })
}

/// `tools/list`: every tool some ready tools worker can run now.
fn list(state: &AppState) -> Value {
    let tools: Vec<Value> = tools::catalog(state.registry())
        .into_iter()
        .filter(|t| t.available)
        .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.parameters}))
        .collect();
    json!({"tools": tools})
}

/// A tool's result as MCP content: its text (or JSON text), and the value itself as structured
/// content when it is an object.
fn call_result(result: &Value) -> Value {
    let text = match result {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut out = json!({"content": [{"type": "text", "text": text}], "isError": false});
    if result.is_object() {
        out["structuredContent"] = result.clone();
    }
    out
}

/// A failed call: a protocol error when the tool does not exist, otherwise a result the caller
/// (often a model) reads.
fn call_failure(name: &str, error: &ApiError) -> Result<Value, RpcError> {
    if error.fault == Fault::NotFound {
        return Err(RpcError::new(
            INVALID_PARAMS,
            format!("Unknown tool: {name} ({})", error.message),
        ));
    }
    Ok(json!({"content": [{"type": "text", "text": error.message}], "isError": true}))
}

async fn call(state: &AppState, params: &Value) -> Result<Value, RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(INVALID_PARAMS, "params.name: required"))?;
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(args @ Value::Object(_)) => args.clone(),
        Some(_) => {
            return Err(RpcError::new(
                INVALID_PARAMS,
                "params.arguments: must be an object",
            ))
        }
    };
    match tools::run(&state.generator, name, arguments).await {
        Ok(result) => Ok(call_result(&result)),
        Err(error) => call_failure(name, &error),
    }
}

/// The answer to one message; `None` for notifications and responses.
async fn handle(state: &AppState, message: &Value) -> Option<Value> {
    let Some(object) = message.as_object() else {
        return Some(reply(
            Value::Null,
            Err(RpcError::new(INVALID_REQUEST, "not a JSON-RPC message")),
        ));
    };
    let id = object.get("id").cloned();
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        // A response to something we never ask, or garbage with an id.
        return id
            .filter(|_| !object.contains_key("result") && !object.contains_key("error"))
            .map(|id| reply(id, Err(RpcError::new(INVALID_REQUEST, "no method"))));
    };
    let id = id?; // A notification: nothing to answer.
    let params = object.get("params").cloned().unwrap_or(Value::Null);
    let outcome = match method {
        "initialize" => Ok(initialize(&params)),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(list(state)),
        "tools/call" => call(state, &params).await,
        other => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("Method not found: {other}"),
        )),
    };
    Some(reply(id, outcome))
}

/// `POST /mcp`.
pub async fn mcp(state: &AppState, body: &[u8]) -> Response {
    let refuse = |message: String| {
        let error = RpcError::new(INVALID_REQUEST, message);
        respond(
            StatusCode::BAD_REQUEST,
            Some(&reply(Value::Null, Err(error))),
        )
    };
    if let Err(error) = limits::check_json_depth(body) {
        return refuse(error.message);
    }
    let message: Value = match serde_json::from_slice(body) {
        Ok(message) => message,
        Err(e) => {
            let error = RpcError::new(PARSE_ERROR, format!("Parse error: {e}"));
            return respond(
                StatusCode::BAD_REQUEST,
                Some(&reply(Value::Null, Err(error))),
            );
        }
    };
    let answer = match &message {
        // A batch (protocol versions before 2025-06-18).
        Value::Array(messages) => {
            if let Err(error) = limits::check(Shape::RpcBatch, "batch", messages.len()) {
                return refuse(error.message);
            }
            let mut answers = Vec::new();
            for message in messages {
                answers.extend(handle(state, message).await);
            }
            (!answers.is_empty()).then(|| Value::Array(answers))
        }
        single => handle(state, single).await,
    };
    match answer {
        Some(answer) => respond(StatusCode::OK, Some(&answer)),
        None => respond(StatusCode::ACCEPTED, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_version_is_kept_when_known() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2099-01-01")), PROTOCOL_VERSIONS[0]);
        assert_eq!(negotiate(None), PROTOCOL_VERSIONS[0]);
    }

    #[test]
    fn results_are_text_with_structured_objects() {
        assert_eq!(
            call_result(&json!("hello")),
            json!({"content": [{"type": "text", "text": "hello"}], "isError": false})
        );
        assert_eq!(
            call_result(&json!({"sum": 3})),
            json!({"content": [{"type": "text", "text": "{\"sum\":3}"}], "isError": false, "structuredContent": {"sum": 3}})
        );
    }

    #[test]
    fn failures_are_results_except_unknown_tools() {
        let failed = call_failure("t", &ApiError::new(Fault::Upstream, "site down"))
            .unwrap_or_else(|_| panic!("a result"));
        assert_eq!(failed["isError"], true);
        assert_eq!(failed["content"][0]["text"], "site down");
        let unknown = call_failure("t", &ApiError::new(Fault::NotFound, "no such tool"));
        assert!(matches!(
            unknown,
            Err(RpcError {
                code: INVALID_PARAMS,
                ..
            })
        ));
    }
}
