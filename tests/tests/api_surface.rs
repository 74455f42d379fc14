//! The OpenAI surfaces beyond chat (legacy completions, the Responses API, embeddings), the
//! reasoning refusals and the router's MCP endpoint, on in-process nodes with the synthetic
//! engine: shapes checked against OpenAI's published schema, statuses and messages a client
//! sees. The real model behind them is exercised by the official clients
//! (`client_libraries.rs`).

// Shared with other test binaries; this one uses only the synthetic engine.
#[path = "support/inproc.rs"]
mod inproc;

use auxot_tests::openapi::assert_valid;
use auxot_tests::sse;
use inproc::{InProcessCluster, InProcessWorker};
use serde_json::{json, Value};

async fn post(cluster: &InProcessCluster, router: usize, path: &str, body: Value) -> (u16, Value) {
    let response = cluster
        .post(&reqwest::Client::new(), router, path)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn stream(cluster: &InProcessCluster, path: &str, body: Value) -> Vec<sse::SseEvent> {
    let text = cluster
        .post(&reqwest::Client::new(), 0, path)
        .json(&body)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    sse::parse(&text).expect("SSE")
}

const TEXT: &str = "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_responses_embeddings_reasoning_and_mcp() {
    let cluster = InProcessCluster::create(2, &[InProcessWorker::synthetic("w0")]).await;

    // Legacy completions: a raw prompt, a `text_completion` object.
    let (status, body) = post(
        &cluster,
        0,
        "/api/openai/completions",
        json!({"model": "auto", "prompt": "Once upon a time"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_valid("CreateCompletionResponse", &body);
    assert_eq!(body["choices"][0]["text"], TEXT);
    assert!(body["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("cmpl-")));
    let events = stream(
        &cluster,
        "/v1/completions",
        json!({"model": "synthetic", "prompt": "Once", "stream": true}),
    )
    .await;
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| {
            let chunk: Value = serde_json::from_str(&e.data).expect("json");
            assert_eq!(chunk["object"], "text_completion");
            chunk["choices"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(text, TEXT);
    let (status, body) = post(
        &cluster,
        0,
        "/api/openai/completions",
        json!({"model": "auto", "prompt": ["a", "b"]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_valid("ErrorResponse", &body);

    // Responses: a whole response, then a stream whose every event is one of OpenAI's.
    let (status, first) = post(
        &cluster,
        0,
        "/api/openai/v1/responses",
        json!({"model": "auto", "input": "My name is Ada.", "instructions": "Be brief."}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_valid("Response", &first);
    assert_eq!(first["status"], "completed");
    assert_eq!(first["output"][0]["content"][0]["text"], TEXT);
    assert_eq!(first["instructions"], "Be brief.");
    let events = stream(
        &cluster,
        "/api/openai/responses",
        json!({"model": "auto", "input": "Hi", "stream": true}),
    )
    .await;
    for event in &events {
        let body: Value = serde_json::from_str(&event.data).expect("json");
        assert_valid("ResponseStreamEvent", &body);
        assert_eq!(event.event.as_deref(), body["type"].as_str());
    }
    assert_eq!(
        events.last().and_then(|e| e.event.as_deref()),
        Some("response.completed")
    );
    // One id from `response.created` to `response.completed`; the streaming router continues it,
    // another router says why it cannot.
    let ids: Vec<String> = events
        .iter()
        .filter_map(|e| {
            let body: Value = serde_json::from_str(&e.data).ok()?;
            body["response"]["id"].as_str().map(str::to_string)
        })
        .collect();
    assert!(
        ids.len() >= 3 && ids.iter().all(|id| *id == ids[0]),
        "{ids:?}"
    );
    let next = json!({"model": "auto", "input": "More.", "previous_response_id": ids[0]});
    let (status, body) = post(&cluster, 0, "/api/openai/responses", next.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous_response_id"], ids[0]);
    let (status, body) = post(&cluster, 1, "/api/openai/responses", next).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("continues only through the router that streamed it")),
        "{body}"
    );

    // A conversation continues through the other router: routers share only responses.key.
    let first_id = first["id"].as_str().expect("id");
    let (status, second) = post(
        &cluster,
        1,
        "/api/openai/responses",
        json!({"model": "auto", "input": "What is my name?", "previous_response_id": first_id}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], first_id);
    assert!(
        second["usage"]["input_tokens"].as_u64() > first["usage"]["input_tokens"].as_u64(),
        "the earlier turn is part of the prompt: {second}"
    );
    let (status, body) = post(
        &cluster,
        0,
        "/api/openai/responses",
        json!({"model": "auto", "input": "Hi", "previous_response_id": "resp_0123456789abcdef"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("previous_response_id: previous response with id")),
        "{body}"
    );

    // Embeddings: the synthetic model is a chat model.
    let (status, body) = post(
        &cluster,
        0,
        "/api/openai/embeddings",
        json!({"model": "synthetic", "input": "hello"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_valid("ErrorResponse", &body);
    assert_eq!(
        body["error"]["message"],
        "model `synthetic` is not an embedding model"
    );
    let (status, body) = post(
        &cluster,
        0,
        "/api/openai/embeddings",
        json!({"model": "auto", "input": "hello"}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"]["message"],
        "no ready worker serves an embedding model"
    );

    // Thinking for a named model that does not reason: 400 in each dialect's shape; `auto`
    // still routes (no model here reasons).
    let (status, body) = post(
        &cluster,
        0,
        "/api/openai/chat/completions",
        json!({"model": "synthetic", "reasoning_effort": "high", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("model `synthetic` does not support reasoning")),
        "{body}"
    );
    let (status, body) = post(
        &cluster,
        0,
        "/api/anthropic/v1/messages",
        json!({"model": "synthetic", "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
               "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (status, _) = post(
        &cluster,
        0,
        "/api/openai/chat/completions",
        json!({"model": "auto", "reasoning_effort": "high", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, models) = (
        0,
        reqwest::Client::new()
            .get(format!("{}/api/openai/models", cluster.router_url(0)))
            .bearer_auth(&cluster.api_key)
            .send()
            .await
            .expect("models")
            .json::<Value>()
            .await
            .expect("json"),
    );
    assert_eq!(models["data"][0]["capabilities"]["reasoning"], false);

    // MCP: JSON-RPC over POST, notifications accepted without a body, no server stream.
    let (status, body) = post(
        &cluster,
        0,
        "/mcp",
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(
        body["result"]["capabilities"]["tools"]["listChanged"],
        false
    );
    let (status, _) = post(
        &cluster,
        0,
        "/mcp/",
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    let (_, body) = post(
        &cluster,
        0,
        "/mcp",
        json!([{"jsonrpc": "2.0", "id": "a", "method": "tools/list"}, {"jsonrpc": "2.0", "id": "b", "method": "resources/list"}]),
    )
    .await;
    assert_eq!(
        body[0],
        json!({"jsonrpc": "2.0", "id": "a", "result": {"tools": []}})
    );
    assert_eq!(body[1]["error"]["code"], -32601);
    let (_, body) = post(
        &cluster,
        0,
        "/mcp",
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "nope", "arguments": {}}}),
    )
    .await;
    // No tools worker at all: a result the caller can read, not a protocol error.
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert_eq!(
        body["result"]["content"][0]["text"],
        "no tools worker is connected"
    );
    let client = reqwest::Client::new();
    let get = client
        .get(format!("{}/mcp", cluster.router_url(0)))
        .bearer_auth(&cluster.api_key)
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), 405);
    let anonymous = client
        .post(format!("{}/mcp", cluster.router_url(0)))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), 401);

    // The new routes are API routes: an admin key is refused, as on chat.
    for path in [
        "/api/openai/completions",
        "/api/openai/responses",
        "/api/openai/embeddings",
        "/mcp",
    ] {
        let response = client
            .post(format!("{}{path}", cluster.router_url(0)))
            .bearer_auth(&cluster.admin_key)
            .json(&json!({}))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 403, "{path}");
    }

    // MCP runs tools: batches are capped, and bodies get the Tools API's limit (1 MiB).
    let batch: Vec<Value> = (0..17)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "ping"}))
        .collect();
    let (status, body) = post(&cluster, 0, "/mcp", Value::Array(batch)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "batch: 17 messages in one batch exceed the limit of 16"
    );
    let big = "x".repeat(1024 * 1024 + 1);
    let (status, _) = post(
        &cluster,
        0,
        "/mcp",
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": {"x": big}}}),
    )
    .await;
    assert_eq!(status, 413);

    // Each route is counted under its own name, with the model that served it.
    let metrics = client
        .get(format!("{}/metrics", cluster.router_url(0)))
        .bearer_auth(&cluster.api_key)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        r#"auxot_router_requests_total{model="synthetic",route="openai_completions",status="200"}"#,
        r#"auxot_router_requests_total{model="synthetic",route="openai_responses",status="200"}"#,
        r#"auxot_router_requests_total{model="synthetic",route="openai_embeddings",status="400"}"#,
        r#"route="mcp",status="202"}"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}
