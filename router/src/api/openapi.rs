//! `GET /openapi.json`: the API described in OpenAPI 3.0, for client generators and for the
//! schema-driven HTTP fuzz run (`make fuzz`). Needs no key: it describes only what the public
//! documentation does.

use warp::http::HeaderValue;
use warp::reply::Response;

/// The document, kept next to the code it describes.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn document() -> Response {
    let mut response = Response::new(DOCUMENT.into());
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_json_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("JSON");
        assert_eq!(doc["openapi"], "3.0.3");
        for path in [
            "/api/openai/chat/completions",
            "/api/openai/completions",
            "/api/openai/responses",
            "/api/openai/embeddings",
            "/mcp",
            "/api/openai/models",
            "/api/openai/models/{model}",
            "/api/anthropic/v1/messages",
            "/api/anthropic/v1/messages/count_tokens",
            "/api/anthropic/v1/models",
            "/api/anthropic/v1/models/{model}",
            "/api/tools/v1/list",
            "/api/tools/v1/execute",
            "/api/admin/v1/workers",
            "/api/admin/v1/workers/{node}/revoke",
            "/api/admin/v1/tokens",
            "/api/admin/v1/tokens/{id}/revoke",
            "/health",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} is not described");
        }
    }

    /// Every described operation is one the router routes (with the method it takes), and
    /// needs the key the document says: the schema-driven fuzz run trusts the document.
    #[test]
    fn the_document_matches_the_routes() {
        use crate::api::routes::route;
        use crate::keys::Scope;
        use warp::http::Method;

        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let mut operations = 0;
        for (path, ops) in paths {
            let concrete = path
                .replace("{model}", "m1")
                .replace("{node}", "w1")
                .replace("{id}", "t1");
            for (method, op) in ops.as_object().expect("operations") {
                let method: Method = method.to_uppercase().parse().expect("method");
                let resolved =
                    route(&method, &concrete).unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
                let scheme = op
                    .get("security")
                    .or_else(|| doc.get("security"))
                    .and_then(|s| s.as_array())
                    .and_then(|s| s.iter().find_map(|r| r.as_object()?.keys().next().cloned()));
                let expected = match resolved.scope() {
                    Some(Scope::Admin) => Some("admin"),
                    Some(Scope::Api) => Some("bearer"),
                    None => None,
                };
                // `/health` takes an optional key, listed second.
                if resolved != crate::api::routes::Route::Health {
                    assert_eq!(scheme.as_deref(), expected, "{method} {path}");
                }
                operations += 1;
            }
        }
        assert_eq!(operations, 21);
    }
}
