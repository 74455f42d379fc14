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
            "/health",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} is not described");
        }
    }
}
