//! The public HTTP API.
//!
//! One warp filter takes every request and hands method, path, headers and body to
//! [`dispatch`], which routes by hand. Doing the routing in one match (rather than a tree of
//! warp filters and rejections) means every unknown path, wrong method, oversized body and
//! missing key gets a JSON error in the dialect of the path, with the right status, and nothing
//! falls through to warp's plain-text defaults.

use std::sync::Arc;

use auxot_common::error::{ErrorKind, RemoteError};
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use warp::http::{HeaderMap, Method};
use warp::reply::Response;
use warp::Filter as _;

use crate::auth::AuthError;
use crate::state::AppState;

pub mod error;
pub mod generate;
pub mod health;
pub mod sse;

use error::{error_response, unauthorized, Dialect};

/// Largest request body accepted (requests with several images are large).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A resolved route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    OpenAiModels,
    OpenAiModel(String),
    OpenAiChat,
    AnthropicMessages,
    AnthropicCountTokens,
    AnthropicModels,
    AnthropicModel(String),
    ToolsList,
    ToolsExecute,
}

impl Route {
    fn needs_auth(&self) -> bool {
        !matches!(self, Route::Health)
    }
}

/// The dialect a path belongs to, for errors even when the route is unknown.
pub fn dialect_of(path: &str) -> Dialect {
    if path.starts_with("/api/anthropic") {
        Dialect::Anthropic
    } else if path.starts_with("/api/openai") || path.starts_with("/v1") {
        Dialect::OpenAi
    } else {
        Dialect::Plain
    }
}

/// Resolves `method path` to a route, or the error to answer.
pub fn route(method: &Method, path: &str) -> Result<Route, RemoteError> {
    let path = path.trim_end_matches('/');
    let (route, allowed) = if path == "/health" {
        (Some(Route::Health), Method::GET)
    } else if let Some(rest) = path
        .strip_prefix("/api/openai")
        .or_else(|| path.starts_with("/v1").then_some(path))
    {
        let rest = rest.strip_prefix("/v1").unwrap_or(rest);
        match rest {
            "/chat/completions" => (Some(Route::OpenAiChat), Method::POST),
            "/models" => (Some(Route::OpenAiModels), Method::GET),
            _ => match rest.strip_prefix("/models/") {
                Some(id) if !id.is_empty() => (Some(Route::OpenAiModel(decode(id))), Method::GET),
                _ => (None, Method::GET),
            },
        }
    } else if let Some(rest) = path.strip_prefix("/api/anthropic") {
        let rest = rest.strip_prefix("/v1").unwrap_or(rest);
        match rest {
            "/messages" => (Some(Route::AnthropicMessages), Method::POST),
            "/messages/count_tokens" => (Some(Route::AnthropicCountTokens), Method::POST),
            "/models" => (Some(Route::AnthropicModels), Method::GET),
            _ => match rest.strip_prefix("/models/") {
                Some(id) if !id.is_empty() => {
                    (Some(Route::AnthropicModel(decode(id))), Method::GET)
                }
                _ => (None, Method::GET),
            },
        }
    } else if let Some(rest) = path.strip_prefix("/api/tools") {
        let rest = rest.strip_prefix("/v1").unwrap_or(rest);
        match rest {
            "/list" | "/tools" => (Some(Route::ToolsList), Method::GET),
            "/execute" => (Some(Route::ToolsExecute), Method::POST),
            _ => (None, Method::GET),
        }
    } else {
        (None, Method::GET)
    };
    match route {
        None => Err(RemoteError::new(
            ErrorKind::NotFound,
            format!("no such endpoint: {path}"),
        )),
        Some(route) if *method == allowed => Ok(route),
        Some(_) => Err(RemoteError::new(
            ErrorKind::InvalidRequest,
            format!("{path} accepts {allowed}, not {method}"),
        )),
    }
}

/// Percent-decodes a path segment (model ids can contain `/`, sent as `%2F`).
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The API key from `Authorization: Bearer` or `x-api-key`.
fn api_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value);
        return Some(key.trim());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

/// Why a request body could not be read.
enum BodyError {
    TooLarge,
    Read(String),
}

async fn read_body<S, B>(body: S) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if out.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(out))
}

/// Answers one request.
pub async fn dispatch<S, B>(
    state: Arc<AppState>,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    let dialect = dialect_of(&path);
    let route = match route(&method, &path) {
        Ok(route) => route,
        Err(error) => {
            let mut response = error_response(dialect, &error);
            if error.kind == ErrorKind::InvalidRequest {
                *response.status_mut() = warp::http::StatusCode::METHOD_NOT_ALLOWED;
            }
            return response;
        }
    };
    if route.needs_auth() {
        match state.auth.check(api_key(&headers)).await {
            Ok(()) => {}
            Err(AuthError::Busy) => {
                let error = RemoteError::new(ErrorKind::Unavailable, AuthError::Busy.message());
                return error_response(dialect, &error);
            }
            Err(err) => return unauthorized(dialect, err.message()),
        }
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let error =
                RemoteError::invalid(format!("request body exceeds {MAX_BODY_BYTES} bytes"));
            let mut response = error_response(dialect, &error);
            *response.status_mut() = warp::http::StatusCode::PAYLOAD_TOO_LARGE;
            return response;
        }
        Err(BodyError::Read(message)) => {
            return error_response(
                dialect,
                &RemoteError::invalid(format!("reading the request body: {message}")),
            )
        }
    };
    match route {
        Route::Health => health::health(&state),
        Route::OpenAiModels => crate::openai::handlers::models(&state),
        Route::OpenAiModel(id) => crate::openai::handlers::model(&state, &id),
        Route::OpenAiChat => crate::openai::handlers::chat(&state, &body).await,
        Route::AnthropicMessages => {
            crate::anthropic::handlers::messages(&state, &headers, &body).await
        }
        Route::AnthropicCountTokens => {
            crate::anthropic::handlers::count_tokens(&state, &body).await
        }
        Route::AnthropicModels => crate::anthropic::handlers::models(&state),
        Route::AnthropicModel(id) => crate::anthropic::handlers::model(&state, &id),
        Route::ToolsList => crate::tools_api::list(&state),
        Route::ToolsExecute => crate::tools_api::execute(&state, &body).await,
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then waits for open requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let filter =
        warp::method()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::stream())
            .then(
                move |method: Method, path: warp::path::FullPath, headers: HeaderMap, body| {
                    let state = state.clone();
                    async move {
                        dispatch(state, method, path.as_str().to_string(), headers, body).await
                    }
                },
            );
    warp::serve(filter)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_aliases() {
        let ok = [
            (Method::GET, "/health", Route::Health),
            (
                Method::POST,
                "/api/openai/chat/completions",
                Route::OpenAiChat,
            ),
            (
                Method::POST,
                "/api/openai/v1/chat/completions",
                Route::OpenAiChat,
            ),
            (Method::POST, "/v1/chat/completions", Route::OpenAiChat),
            (Method::GET, "/api/openai/models", Route::OpenAiModels),
            (Method::GET, "/api/openai/v1/models/", Route::OpenAiModels),
            (
                Method::GET,
                "/api/openai/models/org%2Fname",
                Route::OpenAiModel("org/name".into()),
            ),
            (
                Method::POST,
                "/api/anthropic/v1/messages",
                Route::AnthropicMessages,
            ),
            (
                Method::POST,
                "/api/anthropic/v1/messages/count_tokens",
                Route::AnthropicCountTokens,
            ),
            (
                Method::GET,
                "/api/anthropic/v1/models/m1",
                Route::AnthropicModel("m1".into()),
            ),
            (Method::GET, "/api/tools/v1/list", Route::ToolsList),
            (Method::GET, "/api/tools/v1/tools", Route::ToolsList),
            (Method::POST, "/api/tools/v1/execute", Route::ToolsExecute),
        ];
        for (method, path, expected) in ok {
            assert_eq!(route(&method, path).expect(path), expected, "{path}");
        }
        assert_eq!(
            route(&Method::GET, "/nope").expect_err("404").kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            route(&Method::GET, "/api/openai/chat/completions")
                .expect_err("405")
                .kind,
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn dialects_follow_the_path() {
        assert_eq!(dialect_of("/api/anthropic/v1/x"), Dialect::Anthropic);
        assert_eq!(dialect_of("/api/openai/x"), Dialect::OpenAi);
        assert_eq!(dialect_of("/v1/models"), Dialect::OpenAi);
        assert_eq!(dialect_of("/api/tools/v1/list"), Dialect::Plain);
    }

    #[test]
    fn keys_come_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer rtr_x".parse().expect("header"));
        assert_eq!(api_key(&headers), Some("rtr_x"));
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "rtr_y".parse().expect("header"));
        assert_eq!(api_key(&headers), Some("rtr_y"));
        assert_eq!(api_key(&HeaderMap::new()), None);
    }
}
