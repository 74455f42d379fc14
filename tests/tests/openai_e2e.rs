//! One router and one worker with the real model, driven through the OpenAI dialect.

use std::time::Duration;

use auxot_tests::openapi::assert_valid;
use auxot_tests::{sse, Cluster, WorkerOptions, MODEL_ID};
use serde_json::{json, Value};

const QUESTION: &str = "What is the capital of France? Answer in one sentence.";

fn chat_body(stream: bool) -> Value {
    json!({
        "model": "auto",
        "messages": [{"role": "user", "content": QUESTION}],
        "temperature": 0,
        "max_tokens": 40,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

async fn non_streaming(cluster: &Cluster, client: &reqwest::Client) -> Value {
    let response = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .json(&chat_body(false))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!(
        text.contains("Paris"),
        "the model should say Paris, said {text:?}"
    );
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL_ID);
    assert!(body["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_u64().expect("prompt"),
        usage["completion_tokens"].as_u64().expect("completion"),
    );
    assert!(prompt > 0 && completion > 0, "{usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt + completion));
    assert_valid("CreateChatCompletionResponse", &body);
    body
}

async fn streaming(cluster: &Cluster, client: &reqwest::Client, expected: &Value) {
    let response = cluster
        .post(client, 0, "/api/openai/v1/chat/completions")
        .json(&chat_body(true))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/event-stream"));
    let body = response.text().await.expect("body");
    let events = sse::parse(&body).expect("well-formed SSE");
    assert_eq!(
        events.last().map(|e| e.data.as_str()),
        Some("[DONE]"),
        "[DONE] must come last"
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str(&e.data)
                .unwrap_or_else(|err| panic!("chunk {:?} is not JSON: {err}", e.data))
        })
        .collect();
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_valid("CreateChatCompletionStreamResponse", chunk);
        if let Some(choice) = chunk["choices"].get(0) {
            if let Some(piece) = choice["delta"]["content"].as_str() {
                text.push_str(piece);
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_string());
            }
        }
        if !chunk["usage"].is_null() {
            usage = Some(chunk["usage"].clone());
        }
    }
    assert_eq!(
        text,
        expected["choices"][0]["message"]["content"]
            .as_str()
            .expect("content"),
        "streamed text must equal the non-streaming answer"
    );
    assert_eq!(finish.as_deref(), Some("stop"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage = usage.expect("a usage chunk when include_usage is set");
    assert_eq!(
        usage, expected["usage"],
        "streamed usage must match the non-streaming usage"
    );
}

async fn models(cluster: &Cluster, client: &reqwest::Client) {
    for path in ["/api/openai/models", "/api/openai/v1/models"] {
        let body: Value = cluster
            .get(client, 0, path)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(body["object"], "list");
        assert_valid("ListModelsResponse", &body);
        let ids: Vec<&str> = body["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert_eq!(ids, vec![MODEL_ID], "{path}");
    }
    let one = cluster
        .get(client, 0, &format!("/api/openai/models/{MODEL_ID}"))
        .send()
        .await
        .expect("request");
    assert_eq!(one.status(), 200);
    assert_valid("Model", &one.json::<Value>().await.expect("json"));
    let missing = cluster
        .get(client, 0, "/api/openai/models/gpt-17")
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
}

async fn errors(cluster: &Cluster, client: &reqwest::Client) {
    let url = format!("{}/api/openai/chat/completions", cluster.router_url(0));
    let no_key = client
        .post(&url)
        .json(&chat_body(false))
        .send()
        .await
        .expect("request");
    assert_eq!(no_key.status(), 401);
    let body: Value = no_key.json().await.expect("json");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_valid("ErrorResponse", &body);
    let wrong_key = client
        .post(&url)
        .bearer_auth(format!("rtr_{}", "x".repeat(55)))
        .json(&chat_body(false))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_key.status(), 401);

    let malformed = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .body("{\"model\": ")
        .send()
        .await
        .expect("request");
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("invalid request body"),
        "{body}"
    );

    let missing_messages = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .json(&json!({"model": "auto"}))
        .send()
        .await
        .expect("request");
    assert_eq!(missing_messages.status(), 400);
    let body: Value = missing_messages.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("messages"),
        "{body}"
    );

    let unknown = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .json(&json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.expect("json");
    assert_valid("ErrorResponse", &body);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains(MODEL_ID),
        "the error should list what is available: {body}"
    );

    let health = client
        .get(format!("{}/health", cluster.router_url(0)))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 200);
}

async fn sampling_limits(cluster: &Cluster, client: &reqwest::Client) {
    let body: Value = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .json(&json!({
            "model": MODEL_ID,
            "messages": [{"role": "user", "content": "List the numbers from 1 to 30, separated by commas."}],
            "temperature": 0,
            "max_completion_tokens": 6,
        }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(body["choices"][0]["finish_reason"], "length", "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 6, "{body}");

    let unstopped: Value = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": QUESTION}], "temperature": 0}))
        .send().await.expect("request").json().await.expect("json");
    let full = unstopped["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    let stopped: Value = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": QUESTION}], "temperature": 0, "stop": ["Paris"]}))
        .send().await.expect("request").json().await.expect("json");
    let cut = stopped["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!(
        !cut.contains("Paris"),
        "the stop string must not appear: {cut:?}"
    );
    assert!(full.starts_with(cut), "{full:?} should start with {cut:?}");
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
}

/// A client that disconnects mid-stream frees the worker: its in-flight count drops to zero
/// long before the requested generation could have finished.
async fn disconnect_cancels(cluster: &Cluster, client: &reqwest::Client) {
    let mut response = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .json(&json!({
            "model": "auto",
            "messages": [{"role": "user", "content": "Write a very long story about a dragon, at least 3000 words."}],
            "max_tokens": 4000,
            "stream": true,
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.expect("read").expect("first chunk");
    assert!(!first.is_empty());
    cluster
        .wait_health(0, Duration::from_secs(10), |h| {
            h["active_jobs"].as_u64() == Some(1)
        })
        .await;
    drop(response);
    // 4000 tokens take minutes on this model; without cancellation the load would stay at 1.
    cluster
        .wait_health(0, Duration::from_secs(20), |h| {
            h["active_jobs"].as_u64() == Some(0)
        })
        .await;
    let worker_log = cluster.workers[0].log_text();
    assert!(
        !worker_log.contains("panicked"),
        "worker panicked:\n{worker_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_dialect_against_a_real_model() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(seed, WorkerOptions::default());
    cluster.wait_workers(0, 1).await;
    let client = reqwest::Client::new();

    let answer = non_streaming(&cluster, &client).await;
    streaming(&cluster, &client, &answer).await;
    models(&cluster, &client).await;
    errors(&cluster, &client).await;
    sampling_limits(&cluster, &client).await;
    disconnect_cancels(&cluster, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ready_worker_is_an_immediate_503() {
    let cluster = Cluster::with_router(&[]);
    cluster
        .wait_health(0, Duration::from_secs(30), |h| h["status"] == "ok")
        .await;
    // A router that queued silently would hold the request; the timeout turns that into a failure.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let response = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&chat_body(false))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "service_unavailable");
    let models: Value = cluster
        .get(&client, 0, "/api/openai/models")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(models["data"], json!([]));
}
