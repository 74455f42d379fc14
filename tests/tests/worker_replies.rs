//! The router does not trust what workers send: a worker that takes a request and never
//! answers is abandoned at a deadline, absurd or endless replies end in an error for that
//! request (never a crash or a router holding gigabytes), and a worker that misbehaved is routed
//! around. The misbehaving worker is a fake QUIC peer with the cluster's credentials.

use std::time::{Duration, Instant};

use auxot_tests::fake_worker::{text_flood, tool_call_at, Behaviour, FakeWorker};
use auxot_tests::{Cluster, WorkerOptions};
use serde_json::{json, Value};

fn chat(stream: bool) -> Value {
    json!({"model": "auto", "stream": stream, "max_tokens": 8,
           "messages": [{"role": "user", "content": "hello"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_answers_is_abandoned_at_the_deadline() {
    let mut cluster = Cluster::setup();
    cluster.start_router_with_env(&[], &[], &[("AUXOT_WORKER_FIRST_FRAME_TIMEOUT_MS", "1000")]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut silent = Vec::new();
    for stream in [false, true] {
        // A fresh silent worker each time: the last one is suspect now and is not routed to.
        let name = format!("silent-{stream}");
        silent.push(
            FakeWorker::start(
                &cluster.join_token,
                cluster.seed(),
                &name,
                "fake-model",
                Behaviour::Silent,
            )
            .await,
        );
        cluster
            .wait_health(0, Duration::from_secs(30), |h| {
                h["capacity"]
                    .as_array()
                    .is_some_and(|w| w.iter().any(|w| w["worker"] == name.as_str()))
            })
            .await;
        let started = Instant::now();
        let response = cluster
            .post(&client, 0, "/api/openai/chat/completions")
            .json(&chat(stream))
            .send()
            .await;
        let took = started.elapsed();
        let response =
            response.unwrap_or_else(|e| panic!("no answer after {took:?} (stream: {stream}): {e}"));
        println!("silent worker abandoned after {took:?} (stream: {stream})");
        assert_eq!(response.status(), 503, "stream: {stream}");
        assert!(took < Duration::from_secs(20), "took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_worker_replies_end_the_request_not_the_router() {
    let mut cluster = Cluster::with_router(&[]);
    let liar = FakeWorker::start(
        &cluster.join_token,
        cluster.seed(),
        "liar",
        "fake-model",
        tool_call_at("fake-model", 4_000_000_000),
    )
    .await;
    cluster.wait_workers(0, 1).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");

    // A tool call at index 4e9 would have the router allocate hundreds of gigabytes.
    let response = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&chat(false))
        .send()
        .await
        .expect("the router answers");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    assert!(status.is_server_error(), "{status} {body}");
    assert!(
        body.to_string().contains("liar"),
        "the error names the worker: {body}"
    );
    assert!(cluster.routers[0].is_running(), "the router crashed");
    assert_eq!(liar.requests(), 1);

    // The liar is now suspect: a good worker gets the next requests.
    let seed = cluster.seed();
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            ..Default::default()
        },
    );
    cluster
        .wait_health(0, Duration::from_secs(30), |h| {
            h["capacity"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| w["worker"].as_str() == Some("worker0")))
        })
        .await;
    for _ in 0..4 {
        let response = cluster
            .post(&client, 0, "/api/openai/chat/completions")
            .json(&json!({"model": "auto", "max_tokens": 8,
                          "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-auxot-worker"], "worker0");
    }
    assert_eq!(liar.requests(), 1, "the suspect worker got more requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_flooding_text_is_cut_off() {
    let cluster = Cluster::with_router(&[]);
    // 64 MiB of text in 1 MiB events, for a request that collects the whole answer.
    let _flood = FakeWorker::start(
        &cluster.join_token,
        cluster.seed(),
        "flood",
        "fake-model",
        text_flood("fake-model", 64, 1 << 20),
    )
    .await;
    cluster.wait_workers(0, 1).await;
    let before = cluster.routers[0].peak_rss_kib().expect("rss");
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/openai/chat/completions",
            cluster.router_url(0)
        ))
        .bearer_auth(&cluster.api_key)
        .json(&chat(false))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    let grown_mib = cluster.routers[0]
        .peak_rss_kib()
        .expect("rss")
        .saturating_sub(before)
        / 1024;
    println!("router peak RSS grew {grown_mib} MiB collecting a 64 MiB answer");
    assert!(status.is_server_error(), "{status}");
    assert!(
        body.to_string().contains("flood"),
        "the error names the worker: {body}"
    );
    assert!(
        grown_mib < 48,
        "collected {grown_mib} MiB of a worker's text"
    );
}
