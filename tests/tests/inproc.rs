//! Routers and workers started in this process through their libraries (no ports released and
//! re-bound, no processes): the request path end to end in both dialects, with the served model
//! and worker named, and OpenAI shapes checked against OpenAI's published schema.

#[path = "support/inproc.rs"]
mod inproc;

use auxot_tests::openapi::assert_valid;
use auxot_tests::sse;
use inproc::{InProcessCluster, InProcessWorker};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_nodes_serve_both_dialects() {
    let cluster = InProcessCluster::create(
        2,
        &[
            InProcessWorker::synthetic("w0"),
            InProcessWorker::synthetic("w1"),
        ],
    )
    .await;
    let client = reqwest::Client::new();

    for router in 0..2 {
        let response = cluster
            .post(&client, router, "/api/openai/chat/completions")
            .json(
                &json!({"model": "auto", "messages": [{"role": "user", "content": "hello there"}]}),
            )
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        let worker = response.headers()["x-auxot-worker"]
            .to_str()
            .expect("header")
            .to_string();
        assert!(worker == "w0" || worker == "w1", "{worker}");
        let body: Value = response.json().await.expect("json");
        assert_valid("CreateChatCompletionResponse", &body);
        assert_eq!(
            body["model"], "synthetic",
            "`auto` resolves to the served model"
        );
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 "
        );
        assert!(body["usage"]["prompt_tokens"].as_u64() > Some(0));
    }

    let stream = cluster
        .post(&client, 0, "/api/anthropic/v1/messages")
        .json(
            &json!({"model": "synthetic", "max_tokens": 3, "stream": true,
                      "messages": [{"role": "user", "content": "hello there, how are you"}]}),
        )
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    let events = sse::parse(&stream).expect("SSE");
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let start: Value = serde_json::from_str(&events[0].data).expect("json");
    assert!(
        start["message"]["usage"]["input_tokens"].as_u64() > Some(0),
        "the prompt size opens the stream: {start}"
    );
    let delta: Value = serde_json::from_str(
        &events
            .iter()
            .find(|e| e.event.as_deref() == Some("message_delta"))
            .expect("message_delta")
            .data,
    )
    .expect("json");
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 3);

    let models: Value = cluster
        .get(&client, 1, "/api/openai/models")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_valid("ListModelsResponse", &models);
    assert_eq!(models["data"][0]["id"], "synthetic");
}
