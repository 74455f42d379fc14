//! The public HTTP API: routes, authentication, bodies, and the handlers over the dialects.
//!
//! One warp filter takes every request and hands method, path, headers and body to
//! [`dispatch`]: resolve the route, authenticate, read the body, call the handler. Handlers for
//! chat and models are written once over [`crate::dialect::Dialect`].

use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use tracing::Instrument as _;
use warp::http::{HeaderMap, HeaderValue, Method};
use warp::reply::Response;
use warp::Filter as _;

use crate::dialect::anthropic::Anthropic;
use crate::dialect::openai::OpenAi;
use crate::error::ApiError;
use crate::ids;

pub mod auth;
pub mod body;
pub mod chat;
pub mod count_tokens;
pub mod health;
pub mod metrics;
pub mod record;
pub mod respond;
pub mod routes;
pub mod sse;
pub mod state;
pub mod tools;

use auth::AuthError;
use record::RequestRecord;
use respond::error_response;
use routes::{dialect_of, route, Route};
use state::AppState;

/// The header that carries a request's id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

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

/// Answers one request: gives it an id (the caller's sane `x-request-id`, or a new one) that
/// every log line of the request carries and the response returns in `x-request-id`, and
/// records it when it ends ([`RequestRecord`]).
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
    let arrived = Instant::now();
    let id = ids::request_id_from(headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()));
    let span = tracing::info_span!("request", request_id = %id);
    let scoped = id.clone();
    let answer = async move {
        let dialect = dialect_of(&path);
        let route = route(&method, &path);
        let name = route.as_ref().map_or("unknown", Route::name);
        let mut record = RequestRecord::start(state.metrics().clone(), id.clone(), name, arrived);
        let mut response = match handle(&state, route, &headers, body, &mut record).await {
            Ok(response) => response,
            Err(error) => error_response(dialect, &error),
        };
        record.status(response.status().as_u16());
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    };
    ids::with_request_id(scoped, answer).instrument(span).await
}

/// The label of an authentication result in the metrics.
fn auth_result(result: &Result<(), AuthError>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(AuthError::Missing) => "missing",
        Err(AuthError::Invalid) => "invalid",
        Err(AuthError::Busy) => "busy",
    }
}

async fn handle<S, B>(
    state: &Arc<AppState>,
    route: Result<Route, ApiError>,
    headers: &HeaderMap,
    body: S,
    record: &mut RequestRecord,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    let route = route?;
    if route.needs_auth() {
        let key = api_key(headers);
        let checked = state.auth.check(key).await;
        state.metrics().key_checked(auth_result(&checked));
        checked?;
        record.key(key.and_then(crate::keys::key_id));
    }
    let reading = Instant::now();
    let body = body::read_body(body).await?;
    record.body_read(reading.elapsed());
    Ok(match route {
        Route::Health => health::health(state),
        Route::Metrics => metrics::metrics(state),
        Route::OpenAiModels => chat::models::<OpenAi>(state),
        Route::OpenAiModel(id) => chat::model::<OpenAi>(state, &id),
        Route::OpenAiChat => chat::chat::<OpenAi>(state, &body, record).await,
        Route::AnthropicMessages => chat::chat::<Anthropic>(state, &body, record).await,
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

/// Serves `/metrics` and `/health`, without API keys, on the operators' listener
/// (`--metrics-addr`), until `shutdown` resolves.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let filter = warp::get().and(warp::path::full()).map(move |path: warp::path::FullPath| {
        match path.as_str().trim_end_matches('/') {
            "/metrics" => metrics::metrics(&state),
            "/health" => health::health(&state),
            other => respond::json_response(
                404,
                &serde_json::json!({"error": format!("no such endpoint: {other} (this port serves /metrics and /health)")}),
            ),
        }
    });
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
