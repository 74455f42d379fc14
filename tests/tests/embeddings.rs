//! Embeddings with a real engine: a worker process runs mistral.rs on a tiny sentence-transformers
//! model written on the spot (no download), and the router's OpenAI embeddings route answers
//! with its vectors: OpenAI's shape, one unit-length vector per input in order, the same text
//! giving the same vector, base64 the same numbers, `auto` finding the embedding model, and the
//! refusals a client can meet (a chat to an embedding model, `dimensions` it cannot make).

use std::time::Duration;

use auxot_tests::openapi::assert_valid;
use auxot_tests::{tiny_model, Cluster, WorkerOptions};
use base64::Engine as _;
use serde_json::{json, Value};

const MODEL: &str = "tiny-embed";

async fn post(cluster: &Cluster, path: &str, body: Value) -> (u16, Value) {
    let response = cluster
        .post(&reqwest::Client::new(), 0, path)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

/// Posts `body` to `path` and checks it is refused with a 400 whose message says `says`.
async fn refused(cluster: &Cluster, path: &str, body: Value, says: &str) {
    let (status, body) = post(cluster, path, body).await;
    assert_eq!(status, 400, "{body}");
    assert_valid("ErrorResponse", &body);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(says)),
        "{body}"
    );
}

fn vector(item: &Value) -> Vec<f64> {
    item["embedding"]
        .as_array()
        .expect("a float vector")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_embedding_model_answers_the_openai_embeddings_route() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    let dir = cluster.dir.path().join(MODEL);
    tiny_model::write_embedding_model(&dir);
    let dir = dir.display().to_string();
    cluster.start_worker(
        seed,
        WorkerOptions {
            // No bundled GGUF model: the worker serves only the embedding model.
            tools_only: true,
            args: ["--cpu", "--model", &dir]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            ..Default::default()
        },
    );
    cluster
        .wait_health(0, Duration::from_secs(120), |h| h["workers"] == 1)
        .await;

    let inputs = [
        "The cat sat on the mat.",
        "Stock prices fell sharply",
        "The cat sat on the mat.",
    ];
    let (status, body) = post(
        &cluster,
        "/api/openai/embeddings",
        json!({"model": MODEL, "input": inputs}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_valid("CreateEmbeddingResponse", &body);
    assert_eq!(body["model"], MODEL, "{body}");
    let data = body["data"].as_array().expect("data");
    assert_eq!(data.len(), inputs.len(), "{body}");
    let vectors: Vec<Vec<f64>> = data.iter().map(vector).collect();
    for (i, (item, v)) in data.iter().zip(&vectors).enumerate() {
        assert_eq!(item["index"], i, "{body}");
        assert_eq!(v.len(), tiny_model::EMBEDDING_DIMENSION);
        // The model's last module normalizes.
        assert!(
            (dot(v, v) - 1.0).abs() < 1e-3,
            "vector {i} is not unit length"
        );
    }
    assert!(
        dot(&vectors[0], &vectors[2]) > 0.9999,
        "the same text gave different vectors"
    );
    assert!(
        dot(&vectors[0], &vectors[1]) < 0.999,
        "different texts gave the same vector"
    );
    let prompt_tokens = body["usage"]["prompt_tokens"].as_u64().expect("usage");
    // The byte-level tokenizer: at least one token per character of the inputs.
    let characters: usize = inputs.iter().map(|t| t.len()).sum();
    assert!(prompt_tokens as usize >= characters, "{body}");
    assert_eq!(body["usage"]["total_tokens"], prompt_tokens, "{body}");

    // base64: the same numbers as little-endian f32.
    let (status, body) = post(
        &cluster,
        "/api/openai/embeddings",
        json!({"model": MODEL, "input": inputs[1], "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let encoded = body["data"][0]["embedding"].as_str().expect("base64 text");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("valid base64");
    let decoded: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    assert_eq!(decoded.len(), tiny_model::EMBEDDING_DIMENSION);
    assert!(
        dot(&decoded, &vectors[1]) > 0.9999,
        "base64 and float disagree"
    );

    // `auto` finds the embedding model.
    let (status, body) = post(
        &cluster,
        "/api/openai/embeddings",
        json!({"model": "auto", "input": "hello"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], MODEL, "{body}");

    // What the model cannot do is refused in OpenAI's error shape.
    refused(
        &cluster,
        "/api/openai/embeddings",
        json!({"model": MODEL, "input": "hello", "dimensions": 16}),
        "cannot shorten",
    )
    .await;
    refused(
        &cluster,
        "/api/openai/chat/completions",
        json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}),
        "is an embedding model",
    )
    .await;
}
