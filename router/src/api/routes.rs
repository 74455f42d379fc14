//! Which endpoint a method and path name. Resolved by hand in one match (rather than a tree
//! of warp filters and rejections) so every unknown path and wrong method gets a JSON error in
//! the dialect of the path, with the right status, and nothing falls through to warp's
//! plain-text defaults.

use warp::http::Method;

use crate::error::{ApiError, DialectKind, Fault};
use crate::keys::Scope;

/// A resolved route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    /// The OpenAPI description of the API (for clients and schema-driven fuzzers).
    OpenApi,
    /// Prometheus metrics (on the API port it needs a key; see `--metrics-addr`).
    Metrics,
    OpenAiModels,
    OpenAiModel(String),
    OpenAiChat,
    OpenAiCompletions,
    OpenAiResponses,
    OpenAiEmbeddings,
    AnthropicMessages,
    AnthropicCountTokens,
    AnthropicModels,
    AnthropicModel(String),
    ToolsList,
    ToolsExecute,
    /// The mesh's tools as an MCP server (streamable HTTP).
    Mcp,
    AdminWorkers,
    AdminWorkerRevoke(String),
    AdminTokens,
    AdminTokenCreate,
    AdminTokenRevoke(String),
    AdminKeys,
    AdminKeyCreate,
    AdminKey(String),
    AdminKeyUpdate(String),
    AdminKeyRevoke(String),
    AdminCluster,
}

impl Route {
    /// The scope of key the route needs; `None` for routes open to all.
    pub fn scope(&self) -> Option<Scope> {
        match self {
            Route::Health | Route::OpenApi => None,
            Route::AdminWorkers
            | Route::AdminWorkerRevoke(_)
            | Route::AdminTokens
            | Route::AdminTokenCreate
            | Route::AdminTokenRevoke(_)
            | Route::AdminKeys
            | Route::AdminKeyCreate
            | Route::AdminKey(_)
            | Route::AdminKeyUpdate(_)
            | Route::AdminKeyRevoke(_)
            | Route::AdminCluster => Some(Scope::Admin),
            _ => Some(Scope::Api),
        }
    }

    /// Whether requests on the route count against their key's limits and usage: generations,
    /// embeddings and tool calls (every MCP request too: it runs the same tools as the Tools
    /// API, and counting only its calls would mean reading the body before the limits).
    pub fn uses_quota(&self) -> bool {
        matches!(
            self,
            Route::OpenAiChat
                | Route::OpenAiCompletions
                | Route::OpenAiResponses
                | Route::OpenAiEmbeddings
                | Route::AnthropicMessages
                | Route::ToolsExecute
                | Route::Mcp
        )
    }

    /// The route's name in logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::OpenAiModels | Route::OpenAiModel(_) => "openai_models",
            Route::OpenAiChat => "openai_chat",
            Route::OpenAiCompletions => "openai_completions",
            Route::OpenAiResponses => "openai_responses",
            Route::OpenAiEmbeddings => "openai_embeddings",
            Route::AnthropicMessages => "anthropic_messages",
            Route::AnthropicCountTokens => "anthropic_count_tokens",
            Route::AnthropicModels | Route::AnthropicModel(_) => "anthropic_models",
            Route::ToolsList => "tools_list",
            Route::ToolsExecute => "tools_execute",
            Route::Mcp => "mcp",
            Route::OpenApi => "openapi",
            Route::AdminWorkers | Route::AdminWorkerRevoke(_) => "admin_workers",
            Route::AdminTokens | Route::AdminTokenCreate | Route::AdminTokenRevoke(_) => {
                "admin_tokens"
            }
            Route::AdminKeys
            | Route::AdminKeyCreate
            | Route::AdminKey(_)
            | Route::AdminKeyUpdate(_)
            | Route::AdminKeyRevoke(_) => "admin_keys",
            Route::AdminCluster => "admin_cluster",
        }
    }
}

/// The dialect a path belongs to, for errors even when the route is unknown.
pub fn dialect_of(path: &str) -> DialectKind {
    if path.starts_with("/api/anthropic") {
        DialectKind::Anthropic
    } else if path.starts_with("/api/openai") || path.starts_with("/v1") {
        DialectKind::OpenAi
    } else {
        DialectKind::Plain
    }
}

/// Resolves `method path` to a route, or the error to answer.
pub fn route(method: &Method, path: &str) -> Result<Route, ApiError> {
    let path = path.trim_end_matches('/');
    let (route, allowed) = if path == "/health" {
        (Some(Route::Health), Method::GET)
    } else if path == "/openapi.json" {
        (Some(Route::OpenApi), Method::GET)
    } else if path == "/metrics" {
        (Some(Route::Metrics), Method::GET)
    } else if let Some(rest) = path
        .strip_prefix("/api/openai")
        .or_else(|| path.starts_with("/v1").then_some(path))
    {
        let rest = rest.strip_prefix("/v1").unwrap_or(rest);
        match rest {
            "/chat/completions" => (Some(Route::OpenAiChat), Method::POST),
            "/completions" => (Some(Route::OpenAiCompletions), Method::POST),
            "/responses" => (Some(Route::OpenAiResponses), Method::POST),
            "/embeddings" => (Some(Route::OpenAiEmbeddings), Method::POST),
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
    } else if path == "/mcp" {
        // Streamable HTTP: JSON-RPC over POST; no server-initiated stream (GET is 405).
        (Some(Route::Mcp), Method::POST)
    } else if let Some(rest) = path.strip_prefix("/api/admin/v1") {
        admin_route(method, rest)
    } else {
        (None, Method::GET)
    };
    match route {
        None => Err(ApiError::new(
            Fault::NotFound,
            format!("no such endpoint: {path}"),
        )),
        Some(route) if *method == allowed => Ok(route),
        Some(_) => Err(ApiError::new(
            Fault::MethodNotAllowed,
            format!("{path} accepts {allowed}, not {method}"),
        )),
    }
}

/// The admin API: workers (list, revoke), join tokens (list, create, revoke), keys (list,
/// create, get, update limits, revoke) and the cluster's status.
fn admin_route(method: &Method, rest: &str) -> (Option<Route>, Method) {
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match segments[..] {
        ["workers"] => (Some(Route::AdminWorkers), Method::GET),
        ["workers", node, "revoke"] if !node.is_empty() => {
            (Some(Route::AdminWorkerRevoke(decode(node))), Method::POST)
        }
        ["tokens"] if *method == Method::POST => (Some(Route::AdminTokenCreate), Method::POST),
        ["tokens"] => (Some(Route::AdminTokens), Method::GET),
        ["tokens", id, "revoke"] if !id.is_empty() => {
            (Some(Route::AdminTokenRevoke(decode(id))), Method::POST)
        }
        ["keys"] if *method == Method::POST => (Some(Route::AdminKeyCreate), Method::POST),
        ["keys"] => (Some(Route::AdminKeys), Method::GET),
        ["keys", id] if !id.is_empty() && *method == Method::PATCH => {
            (Some(Route::AdminKeyUpdate(decode(id))), Method::PATCH)
        }
        ["keys", id] if !id.is_empty() => (Some(Route::AdminKey(decode(id))), Method::GET),
        ["keys", id, "revoke"] if !id.is_empty() => {
            (Some(Route::AdminKeyRevoke(decode(id))), Method::POST)
        }
        ["cluster"] => (Some(Route::AdminCluster), Method::GET),
        _ => (None, Method::GET),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_aliases() {
        let ok = [
            (Method::GET, "/health", Route::Health),
            (Method::GET, "/openapi.json", Route::OpenApi),
            (Method::GET, "/metrics", Route::Metrics),
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
            (
                Method::POST,
                "/api/openai/completions",
                Route::OpenAiCompletions,
            ),
            (Method::POST, "/v1/completions", Route::OpenAiCompletions),
            (
                Method::POST,
                "/api/openai/v1/responses",
                Route::OpenAiResponses,
            ),
            (
                Method::POST,
                "/api/openai/embeddings",
                Route::OpenAiEmbeddings,
            ),
            (Method::POST, "/mcp", Route::Mcp),
            (Method::POST, "/mcp/", Route::Mcp),
            (Method::GET, "/api/admin/v1/workers", Route::AdminWorkers),
            (
                Method::POST,
                "/api/admin/v1/workers/w1/revoke",
                Route::AdminWorkerRevoke("w1".into()),
            ),
            (Method::GET, "/api/admin/v1/tokens", Route::AdminTokens),
            (
                Method::POST,
                "/api/admin/v1/tokens",
                Route::AdminTokenCreate,
            ),
            (
                Method::POST,
                "/api/admin/v1/tokens/abc/revoke",
                Route::AdminTokenRevoke("abc".into()),
            ),
            (Method::GET, "/api/admin/v1/keys", Route::AdminKeys),
            (Method::POST, "/api/admin/v1/keys", Route::AdminKeyCreate),
            (
                Method::GET,
                "/api/admin/v1/keys/k1",
                Route::AdminKey("k1".into()),
            ),
            (
                Method::PATCH,
                "/api/admin/v1/keys/k1",
                Route::AdminKeyUpdate("k1".into()),
            ),
            (
                Method::POST,
                "/api/admin/v1/keys/k1/revoke",
                Route::AdminKeyRevoke("k1".into()),
            ),
            (Method::GET, "/api/admin/v1/cluster", Route::AdminCluster),
        ];
        for (method, path, expected) in ok {
            assert_eq!(route(&method, path).expect(path), expected, "{path}");
        }
        assert_eq!(
            route(&Method::GET, "/nope").expect_err("404").fault,
            Fault::NotFound
        );
        assert_eq!(
            route(&Method::GET, "/api/openai/chat/completions")
                .expect_err("405")
                .fault,
            Fault::MethodNotAllowed
        );
        // MCP clients probe for a server-initiated stream with GET; 405 tells them there is none.
        assert_eq!(
            route(&Method::GET, "/mcp").expect_err("405").fault,
            Fault::MethodNotAllowed
        );
    }

    #[test]
    fn only_admin_routes_need_an_admin_key() {
        assert_eq!(Route::Health.scope(), None);
        assert_eq!(Route::OpenAiChat.scope(), Some(Scope::Api));
        assert_eq!(Route::AdminWorkers.scope(), Some(Scope::Admin));
        assert_eq!(
            route(&Method::GET, "/api/admin/v1/workers/w1/revoke")
                .expect_err("405")
                .fault,
            Fault::MethodNotAllowed
        );
    }

    #[test]
    fn dialects_follow_the_path() {
        assert_eq!(dialect_of("/api/anthropic/v1/x"), DialectKind::Anthropic);
        assert_eq!(dialect_of("/api/openai/x"), DialectKind::OpenAi);
        assert_eq!(dialect_of("/v1/models"), DialectKind::OpenAi);
        assert_eq!(dialect_of("/api/tools/v1/list"), DialectKind::Plain);
    }
}
