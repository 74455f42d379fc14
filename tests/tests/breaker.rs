//! A worker that keeps failing requests by its own fault is routed around (its circuit breaker
//! opens) and gets traffic again once it recovers; a caller's bad requests never count against
//! it. The worker is a fake QUIC worker from the harness whose answers the test switches.

use std::time::Duration;

use auxot_common::error::{ErrorKind, RemoteError};
use auxot_tests::fake_worker::{answering, failing, FakeWorker};
use auxot_tests::Cluster;
use serde_json::{json, Value};

const MODEL: &str = "flaky-model";

async fn chat(cluster: &Cluster) -> u16 {
    cluster
        .post(&reqwest::Client::new(), 0, "/api/openai/chat/completions")
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// The breaker state router 0 reports for `worker` (`closed` when it has none).
async fn breaker(cluster: &Cluster, worker: &str) -> String {
    let health: Value = cluster
        .get(&reqwest::Client::new(), 0, "/health")
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    health["breakers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["worker"] == worker)
        .and_then(|b| b["state"].as_str())
        .unwrap_or("closed")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_worker_is_cut_off_and_let_back_in_when_it_recovers() {
    let cluster = Cluster::with_router(&[]);
    let flaky = FakeWorker::start(
        &cluster.join_token,
        cluster.seed(),
        "flaky",
        MODEL,
        failing(MODEL, RemoteError::invalid("your request is wrong")),
    )
    .await;
    cluster
        .wait_health(0, Duration::from_secs(30), |h| h["workers"] == 1)
        .await;

    // The caller's fault, however often, never opens the breaker.
    for _ in 0..5 {
        assert_eq!(chat(&cluster).await, 400);
    }
    assert_eq!(flaky.requests(), 5);
    assert_eq!(breaker(&cluster, "flaky").await, "closed");

    // The worker's own failures: three in a row open it, and it gets no more requests.
    flaky.behave(failing(
        MODEL,
        RemoteError::new(ErrorKind::Internal, "the engine crashed"),
    ));
    for _ in 0..3 {
        assert_eq!(chat(&cluster).await, 500);
    }
    assert_eq!(breaker(&cluster, "flaky").await, "open");
    let before = flaky.requests();
    let refused = chat(&cluster).await;
    assert!(refused >= 400, "{refused}");
    assert_eq!(flaky.requests(), before, "an open breaker sends nothing");

    // Recovered: after the cooldown the breaker lets a request through and closes on success.
    flaky.behave(answering(MODEL));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(breaker(&cluster, "flaky").await, "half_open");
    assert_eq!(chat(&cluster).await, 200);
    assert_eq!(breaker(&cluster, "flaky").await, "closed");
    let metrics = cluster
        .get(&reqwest::Client::new(), 0, "/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !metrics.contains("auxot_router_worker_circuit_breaker{"),
        "no breaker listed once closed"
    );
}
