//! The public HTTP API: routes, authentication, bodies, and the handlers over the dialects.
//!
//! One warp filter takes every request and hands method, path, headers and body to
//! [`dispatch`]: resolve the route, authenticate, read the body, call the handler. Handlers for
//! chat and models are written once over [`crate::dialect::Dialect`].

use std::sync::Arc;

use futures::Stream;
use warp::http::{HeaderMap, Method};
use warp::reply::Response;
use warp::Filter as _;

use crate::dialect::anthropic::Anthropic;
use crate::dialect::completions::Completions;
use crate::dialect::openai::OpenAi;
use crate::dialect::responses::Responses;
use crate::error::ApiError;

pub mod auth;
pub mod body;
pub mod chat;
pub mod count_tokens;
pub mod embeddings;
pub mod health;
pub mod mcp;
pub mod respond;
pub mod routes;
pub mod sse;
pub mod state;
pub mod tools;

use respond::error_response;
use routes::{dialect_of, route, Route};
use state::AppState;

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
    match handle(&state, &method, &path, &headers, body).await {
        Ok(response) => response,
        Err(error) => error_response(dialect, &error),
    }
}

async fn handle<S, B>(
    state: &Arc<AppState>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    let route = route(method, path)?;
    if route.needs_auth() {
        state.auth.check(api_key(headers)).await?;
    }
    let body = body::read_body(body).await?;
    Ok(match route {
        Route::Health => health::health(state),
        Route::OpenAiModels => chat::models::<OpenAi>(state),
        Route::OpenAiModel(id) => chat::model::<OpenAi>(state, &id),
        Route::OpenAiChat => chat::chat::<OpenAi>(state, &body).await,
        Route::OpenAiCompletions => chat::chat::<Completions>(state, &body).await,
        Route::OpenAiResponses => chat::chat::<Responses>(state, &body).await,
        Route::OpenAiEmbeddings => embeddings::embeddings(state, &body).await,
        Route::Mcp => mcp::mcp(state, &body).await,
        Route::AnthropicMessages => chat::chat::<Anthropic>(state, &body).await,
        Route::AnthropicCountTokens => count_tokens::count_tokens(state, &body).await,
        Route::AnthropicModels => chat::models::<Anthropic>(state),
        Route::AnthropicModel(id) => chat::model::<Anthropic>(state, &id),
        Route::ToolsList => tools::list(state),
        Route::ToolsExecute => tools::execute(state, &body).await,
    })
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
