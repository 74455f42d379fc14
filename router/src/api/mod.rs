//! The public HTTP API: the edge, routes, authentication, bodies, and the handlers over the
//! dialects.
//!
//! [`edge::serve`] accepts connections and hands each request to [`dispatch`]: resolve the
//! route, authenticate, read the body (only on routes that take one, within the route's limit),
//! call the handler. Handlers for chat and models are written once over
//! [`crate::dialect::Dialect`].

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use warp::http::HeaderMap;
use warp::reply::Response;

use crate::dialect::anthropic::Anthropic;
use crate::dialect::openai::OpenAi;
use crate::error::{ApiError, Fault};

pub mod admin;
pub mod auth;
pub mod body;
pub mod chat;
pub mod conn;
pub mod count_tokens;
pub mod edge;
pub mod health;
pub mod openapi;
pub mod respond;
pub mod routes;
pub mod sse;
pub mod state;
pub mod tools;

pub use edge::{serve, EdgeConfig};
use respond::error_response;
use routes::{dialect_of, route, Route};
use state::AppState;

/// The largest body an admin route reads (they take a few small fields).
const ADMIN_BODY_BYTES: usize = 64 * 1024;

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

/// Answers one request from `client`.
pub async fn dispatch(
    state: Arc<AppState>,
    request: hyper::Request<Incoming>,
    client: SocketAddr,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let dialect = dialect_of(&path);
    match handle(&state, &parts.method, &path, &parts.headers, body, client).await {
        Ok(response) => response,
        Err(error) => error_response(dialect, &error),
    }
}

async fn handle(
    state: &Arc<AppState>,
    method: &warp::http::Method,
    path: &str,
    headers: &HeaderMap,
    body: Incoming,
    client: SocketAddr,
) -> Result<Response, ApiError> {
    let route = route(method, path)?;
    let key = api_key(headers);
    if let Some(needed) = route.scope() {
        let scope = state.auth.check(key, client.ip()).await?;
        if scope != needed {
            return Err(ApiError::new(
                Fault::Forbidden,
                match needed {
                    crate::keys::Scope::Admin => "this endpoint needs an admin key",
                    crate::keys::Scope::Api => "admin keys manage the cluster; use an API key here",
                },
            ));
        }
    }
    // Routes without a body never read one: the connection is closed after the answer
    // instead, so a body nobody asked for costs nothing.
    let limit = match route {
        Route::OpenAiChat | Route::AnthropicMessages | Route::AnthropicCountTokens => {
            Some(state.edge.max_body_bytes)
        }
        Route::ToolsExecute => Some(state.edge.max_tool_body_bytes),
        Route::AdminWorkerRevoke(_) | Route::AdminTokenCreate => Some(ADMIN_BODY_BYTES),
        _ => None,
    };
    let body = match limit {
        Some(max_bytes) => {
            let limits = body::BodyLimits {
                max_bytes,
                deadline: state.edge.body_timeout,
            };
            Some(body::read_body(body, headers, limits, &state.bodies).await?)
        }
        None => None,
    };
    let bytes: &[u8] = body.as_ref().map_or(&[], |b| &b.bytes);
    Ok(match route {
        Route::Health => {
            // The details are for key holders; a key that is sent must be valid.
            let detailed = match key {
                Some(_) => {
                    state.auth.check(key, client.ip()).await?;
                    true
                }
                None => false,
            };
            health::health(state, detailed)
        }
        Route::OpenApi => openapi::document(),
        Route::OpenAiModels => chat::models::<OpenAi>(state),
        Route::OpenAiModel(id) => chat::model::<OpenAi>(state, &id),
        Route::OpenAiChat => chat::chat::<OpenAi>(state, bytes).await,
        Route::AnthropicMessages => chat::chat::<Anthropic>(state, bytes).await,
        Route::AnthropicCountTokens => count_tokens::count_tokens(state, bytes).await,
        Route::AnthropicModels => chat::models::<Anthropic>(state),
        Route::AnthropicModel(id) => chat::model::<Anthropic>(state, &id),
        Route::ToolsList => tools::list(state),
        Route::ToolsExecute => tools::execute(state, bytes).await,
        Route::AdminWorkers => admin::workers(&state.admin),
        Route::AdminWorkerRevoke(node) => admin::revoke_worker(&state.admin, &node, bytes),
        Route::AdminTokens => admin::tokens(&state.admin),
        Route::AdminTokenCreate => admin::create_token(&state.admin, bytes),
        Route::AdminTokenRevoke(id) => admin::revoke_token(&state.admin, &id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
