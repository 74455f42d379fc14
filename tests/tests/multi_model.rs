//! Several models on one worker, each answered by its own mistral.rs engine: one worker process
//! serves the test model twice under two ids (each with its own `--max-seqs`); requests name a
//! model and reach that model's engine through the router. Model options a model cannot take stop
//! the worker before it joins.

use std::time::Duration;

use auxot_tests::{bin, free_udp_port, model_path, tiny_model, Cluster, WorkerOptions};
use serde_json::{json, Value};

const QUESTION: &str = "What is the capital of France? Answer in one sentence.";

/// Asks `model` through router 0; the answer's text, after checking it came from `model`.
async fn ask(cluster: &Cluster, client: &reqwest::Client, model: &str, stream: bool) -> String {
    let response = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .json(&json!({
            "model": model,
            "messages": [{"role": "user", "content": QUESTION}],
            "temperature": 0,
            "max_tokens": 40,
            "stream": stream,
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{model}");
    if stream {
        let body = response.text().await.expect("body");
        let events = auxot_tests::sse::parse(&body).expect("well-formed SSE");
        let mut text = String::new();
        for event in events.iter().filter(|e| e.data != "[DONE]") {
            let chunk: Value = serde_json::from_str(&event.data).expect("chunk");
            assert_eq!(chunk["model"], model, "{chunk}");
            if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
                text.push_str(piece);
            }
        }
        return text;
    }
    let body: Value = response.json().await.expect("json");
    // The model id in the answer is the one the engine that generated it serves.
    assert_eq!(body["model"], model, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

async fn model_ids(cluster: &Cluster, client: &reqwest::Client) -> Vec<String> {
    let body: Value = cluster
        .get(client, 0, "/api/openai/models")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect()
}

fn args(args: &[&str]) -> WorkerOptions {
    WorkerOptions {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_on_one_worker_both_answer() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    let model = model_path().display().to_string();
    // The harness gives `--model <test model> --cpu` first: these options follow it.
    cluster.start_worker(
        seed,
        args(&[
            "--model-name",
            "smol-a",
            "--max-seqs",
            "3",
            "--model",
            &model,
            "--model-name",
            "smol-b",
            "--max-seqs",
            "2",
        ]),
    );
    let health = cluster
        .wait_health(0, Duration::from_secs(120), |h| h["workers"] == 1)
        .await;
    // One worker, both models, capacity from both engines.
    let workers = health["capacity"].as_array().expect("capacity");
    assert_eq!(workers.len(), 1, "{health}");
    assert_eq!(
        workers[0]["models"],
        json!(["smol-a", "smol-b"]),
        "{health}"
    );
    assert_eq!(workers[0]["slots"], 5, "3 + 2 requests at once: {health}");

    let client = reqwest::Client::new();
    assert_eq!(model_ids(&cluster, &client).await, ["smol-a", "smol-b"]);
    let (a, b) = tokio::join!(
        ask(&cluster, &client, "smol-a", false),
        ask(&cluster, &client, "smol-b", false)
    );
    assert!(a.contains("Paris"), "smol-a said {a:?}");
    assert!(b.contains("Paris"), "smol-b said {b:?}");
    let streamed = ask(&cluster, &client, "smol-b", true).await;
    assert_eq!(streamed, b, "the same engine, the same greedy answer");

    let unknown = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&json!({"model": "smol-c", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 404);
}

/// Asks `model` for a few tokens; the answer's JSON, after checking it came from `model`.
async fn ask_briefly(cluster: &Cluster, client: &reqwest::Client, model: &str) -> Value {
    let response = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .json(&json!({
            "model": model,
            // The tiny model's greedy answer to "Hello" makes mistral.rs 0.8.1 drop the sequence
            // without a last chunk after its third token; "abc" runs to the end on all three.
            "messages": [{"role": "user", "content": "abc"}],
            "temperature": 0,
            "max_tokens": 8,
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{model}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["model"], model, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 8, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "length", "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safetensors_models_take_isq_and_a_local_lora_adapter() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    let model = cluster.dir.path().join("tiny-llama");
    tiny_model::write_model(&model);
    let adapter = cluster.dir.path().join("adapters/tiny-lora");
    tiny_model::write_lora(&adapter);
    let (model, adapter) = (model.display().to_string(), adapter.display().to_string());
    cluster.start_worker(
        seed,
        WorkerOptions {
            // No bundled GGUF model: the worker serves exactly these three.
            tools_only: true,
            args: [
                "--cpu",
                "--model",
                &model,
                "--model",
                &model,
                "--model-name",
                "tiny-q8",
                "--isq",
                "Q8_0",
                "--model",
                &model,
                "--lora",
                &adapter,
            ]
            .iter()
            .map(|a| a.to_string())
            .collect(),
            ..Default::default()
        },
    );
    cluster
        .wait_health(0, Duration::from_secs(120), |h| h["workers"] == 1)
        .await;
    let client = reqwest::Client::new();
    // The adapter's model is named after the base and the adapter directory.
    assert_eq!(
        model_ids(&cluster, &client).await,
        ["tiny-llama", "tiny-llama:tiny-lora", "tiny-q8"]
    );
    let mut answers = Vec::new();
    for id in ["tiny-llama", "tiny-q8", "tiny-llama:tiny-lora"] {
        let body = ask_briefly(&cluster, &client, id).await;
        answers.push(body["choices"][0]["message"]["content"].clone());
    }
    // Greedy answers of fixed weights: the merged adapter changes what the model says.
    assert_ne!(answers[0], answers[2], "the LoRA adapter changed nothing");
    let log = cluster.workers[0].log_text();
    assert!(log.contains("Applying ISQ"), "tiny-q8 quantized in situ");
    assert!(
        log.contains("Loading adapter at"),
        "the local adapter read through the Hugging Face cache"
    );
}

#[test]
fn model_options_a_model_cannot_take_stop_the_worker_before_it_joins() {
    let model = model_path().display().to_string();
    // A real join token (the checks come after it is parsed); no router runs.
    let cluster = Cluster::setup();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--model", &model, "--isq", "Q4K"],
            "is GGUF, already quantized",
        ),
        (
            &["--model", &model, "--model", &model],
            "two models are served as `SmolLM2-135M-Instruct.Q4_1`",
        ),
        (
            &["--model", &model, "--cpu", "--gpu", "1"],
            "--gpu needs a GPU",
        ),
        // mistral.rs 0.8.1's speculative pipeline deadlocks on its first step: refused rather
        // than a worker that never becomes ready.
        (
            &["--model", &model, "--draft-model", &model],
            "speculative decoding is not available with mistral.rs 0.8.1",
        ),
    ];
    for (args, expected) in cases {
        // Nothing listens at the seed: a worker that got past its checks would fail to enroll.
        // Its own ports are free ones, not the defaults a local cluster (`make run`) may hold.
        let (gossip, quic) = (
            format!("127.0.0.1:{}", free_udp_port()),
            format!("127.0.0.1:{}", free_udp_port()),
        );
        let output = std::process::Command::new(bin("auxot-worker"))
            .args(["join", "127.0.0.1:9", "--enroll-timeout-secs", "1"])
            .args(["--gossip-addr", &gossip, "--quic-addr", &quic])
            .env("AUXOT_TOKEN", &cluster.join_token)
            .args(args)
            .output()
            .expect("run worker");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
