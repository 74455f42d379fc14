//! The public HTTP API: the edge, routes, authentication, bodies, and the handlers over the
//! dialects.
//!
//! [`edge::serve`] accepts connections and hands each request to [`dispatch`]: resolve the
//! route, authenticate, read the body (only on routes that take one, within the route's limit),
//! call the handler. Handlers for chat and models are written once over
//! [`crate::dialect::Dialect`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use tracing::Instrument as _;
use warp::http::{HeaderMap, HeaderValue};
use warp::reply::Response;

use crate::dialect::anthropic::Anthropic;
use crate::dialect::completions::Completions;
use crate::dialect::openai::OpenAi;
use crate::dialect::responses::Responses;
use crate::error::{ApiError, Fault};
use crate::ids;
use crate::keys::Scope;

pub mod admin;
pub mod admin_keys;
pub mod auth;
pub mod body;
pub mod chat;
pub mod conn;
pub mod count_tokens;
pub mod edge;
pub mod embeddings;
pub mod health;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod record;
pub mod respond;
pub mod routes;
pub mod sse;
pub mod state;
pub mod tools;

use auth::AuthError;
pub use edge::{serve, EdgeConfig};
use record::RequestRecord;
use respond::error_response;
use routes::{dialect_of, route, Route};
use state::AppState;

/// The largest body an admin route reads (they take a few small fields).
const ADMIN_BODY_BYTES: usize = 64 * 1024;

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

/// Answers one request from `client`: gives it an id (the caller's sane `x-request-id`, or a
/// new one) that every log line of the request carries and the response returns in
/// `x-request-id`, and records it when it ends ([`RequestRecord`]).
pub async fn dispatch(
    state: Arc<AppState>,
    request: hyper::Request<Incoming>,
    client: SocketAddr,
) -> Response {
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let id = ids::request_id_from(
        parts
            .headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let span = tracing::info_span!("request", request_id = %id);
    let scoped = id.clone();
    let answer = async move {
        let path = parts.uri.path().to_string();
        let dialect = dialect_of(&path);
        let route = route(&parts.method, &path);
        let name = route.as_ref().map_or("unknown", Route::name);
        let mut record = RequestRecord::start(state.metrics().clone(), id.clone(), name, arrived);
        let request = Request {
            headers: &parts.headers,
            body,
            client,
        };
        let mut response = match handle(&state, route, request, &mut record).await {
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

/// What [`handle`] needs of the HTTP request besides its route.
struct Request<'a> {
    headers: &'a HeaderMap,
    body: Incoming,
    client: SocketAddr,
}

/// The label of an authentication result in the metrics.
fn auth_result(result: &Result<Scope, AuthError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(AuthError::Missing) => "missing",
        Err(AuthError::Invalid) => "invalid",
        Err(AuthError::Busy) => "busy",
    }
}

/// Checks the request's key, counting the result; what the key may do.
async fn authenticate(
    state: &AppState,
    key: Option<&str>,
    client: SocketAddr,
) -> Result<Scope, ApiError> {
    let checked = state.auth.check(key, client.ip()).await;
    state.metrics().key_checked(auth_result(&checked));
    Ok(checked?)
}

async fn handle(
    state: &Arc<AppState>,
    route: Result<Route, ApiError>,
    request: Request<'_>,
    record: &mut RequestRecord,
) -> Result<Response, ApiError> {
    let route = route?;
    let Request {
        headers,
        body,
        client,
    } = request;
    let key = api_key(headers);
    if let Some(needed) = route.scope() {
        let scope = authenticate(state, key, client).await?;
        record.key(key.and_then(crate::keys::key_id));
        if scope != needed {
            return Err(ApiError::new(
                Fault::Forbidden,
                match needed {
                    Scope::Admin => "this endpoint needs an admin key",
                    Scope::Api => "admin keys manage the cluster; use an API key here",
                },
            ));
        }
    }
    // Generations and tool calls count against the key's limits and usage, before the body is
    // read: a key over its limits costs no more than its authentication.
    let mut quota_headers = Vec::new();
    if route.uses_quota() {
        if let Some(id) = key.and_then(crate::keys::key_id) {
            let admitted = match state.quotas.admit(id, &state.auth.limits(id))? {
                Some(admitted) => admitted,
                None => state.quotas.count(id),
            };
            quota_headers = admitted.headers.clone();
            record.quota(admitted);
        }
    }
    // Routes without a body never read one: the connection is closed after the answer
    // instead, so a body nobody asked for costs nothing.
    let limit = match route {
        Route::OpenAiChat
        | Route::OpenAiCompletions
        | Route::OpenAiResponses
        | Route::OpenAiEmbeddings
        | Route::AnthropicMessages
        | Route::AnthropicCountTokens => Some(state.edge.max_body_bytes),
        // MCP runs the same tools as the Tools API: the same limit, or it would be a way round it.
        Route::ToolsExecute | Route::Mcp => Some(state.edge.max_tool_body_bytes),
        Route::AdminWorkerRevoke(_)
        | Route::AdminTokenCreate
        | Route::AdminKeyCreate
        | Route::AdminKeyUpdate(_) => Some(ADMIN_BODY_BYTES),
        _ => None,
    };
    let body = match limit {
        Some(max_bytes) => {
            let limits = body::BodyLimits {
                max_bytes,
                deadline: state.edge.body_timeout,
            };
            let reading = Instant::now();
            let body = body::read_body(body, headers, limits, &state.bodies).await?;
            record.body_read(reading.elapsed());
            Some(body)
        }
        None => None,
    };
    let bytes: &[u8] = body.as_ref().map_or(&[], |b| &b.bytes);
    let mut response = match route {
        Route::Health => {
            // The details are for key holders; a key that is sent must be valid.
            let detailed = match key {
                Some(_) => {
                    authenticate(state, key, client).await?;
                    true
                }
                None => false,
            };
            health::health(state, detailed)
        }
        Route::Metrics => metrics::metrics(state),
        Route::OpenApi => openapi::document(),
        Route::OpenAiModels => chat::models::<OpenAi>(state),
        Route::OpenAiModel(id) => chat::model::<OpenAi>(state, &id),
        Route::OpenAiChat => chat::chat::<OpenAi>(state, bytes, record).await,
        Route::OpenAiCompletions => chat::chat::<Completions>(state, bytes, record).await,
        Route::OpenAiResponses => chat::chat::<Responses>(state, bytes, record).await,
        Route::OpenAiEmbeddings => embeddings::embeddings(state, bytes, record).await,
        Route::Mcp => mcp::mcp(state, bytes).await,
        Route::AnthropicMessages => chat::chat::<Anthropic>(state, bytes, record).await,
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
        Route::AdminKeys => admin_keys::list(state),
        Route::AdminKeyCreate => admin_keys::create(state, bytes),
        Route::AdminKey(id) => admin_keys::get(state, &id),
        Route::AdminKeyUpdate(id) => admin_keys::update(state, &id, bytes),
        Route::AdminKeyRevoke(id) => admin_keys::revoke(state, &id),
        Route::AdminCluster => admin::cluster(state),
    };
    for (name, value) in quota_headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// Serves `/metrics` and `/health` (with details), without API keys, on the operators'
/// listener (`--metrics-addr`), until `shutdown` resolves. Only GETs without bodies are
/// answered; this port is for a private network.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use warp::Filter as _;
    let filter = warp::get().and(warp::path::full()).map(move |path: warp::path::FullPath| {
        match path.as_str().trim_end_matches('/') {
            "/metrics" => metrics::metrics(&state),
            "/health" => health::health(&state, true),
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
