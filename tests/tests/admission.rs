//! When every worker is at capacity, requests wait briefly for a slot and are then refused in
//! the caller's dialect with `Retry-After`: 429 for OpenAI, 529 `overloaded_error` for
//! Anthropic. A slot that frees up in time admits the waiting request.

use std::time::Duration;

use auxot_tests::openapi::assert_valid;
use auxot_tests::{Cluster, WorkerOptions};
use serde_json::{json, Value};

fn slow_worker() -> WorkerOptions {
    WorkerOptions {
        synthetic: true,
        // One slot; each answer takes about 3 s.
        args: [
            "--max-seqs",
            "1",
            "--synthetic-ttft-ms",
            "1000",
            "--synthetic-tokens",
            "20",
            "--synthetic-tokens-per-sec",
            "10",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }
}

fn openai_body() -> Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_is_refused_in_each_dialect() {
    let mut cluster = Cluster::with_router(&["--queue-timeout-ms", "300"]);
    let seed = cluster.seed();
    cluster.start_worker(seed, slow_worker());
    cluster.wait_workers(0, 1).await;
    let client = reqwest::Client::new();

    // Occupy the only slot.
    let busy = tokio::spawn({
        let request = cluster
            .post(&client, 0, "/api/openai/chat/completions")
            .json(&openai_body());
        async move { request.send().await.expect("request").status() }
    });
    cluster
        .wait_health(0, Duration::from_secs(10), |h| h["active_jobs"] == 1)
        .await;

    let refused = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&openai_body())
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.expect("json");
    assert_valid("ErrorResponse", &body);
    assert_eq!(body["error"]["type"], "rate_limit_error");

    let refused = cluster
        .post(&client, 0, "/api/anthropic/v1/messages")
        .json(&json!({"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 529);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.expect("json");
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("overloaded_error"))
    );

    assert_eq!(busy.await.expect("busy request"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_takes_a_slot_that_frees_up() {
    let mut cluster = Cluster::with_router(&["--queue-timeout-ms", "20000"]);
    let seed = cluster.seed();
    cluster.start_worker(seed, slow_worker());
    cluster.wait_workers(0, 1).await;
    let client = reqwest::Client::new();
    let first = tokio::spawn({
        let request = cluster
            .post(&client, 0, "/api/openai/chat/completions")
            .json(&openai_body());
        async move { request.send().await.expect("request").status() }
    });
    cluster
        .wait_health(0, Duration::from_secs(10), |h| h["active_jobs"] == 1)
        .await;
    let second = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&openai_body())
        .send()
        .await
        .expect("request");
    assert_eq!(
        second.status(),
        200,
        "the queued request should be admitted when the slot frees"
    );
    assert_eq!(first.await.expect("first"), 200);
}
