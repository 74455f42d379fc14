//! SIGTERM on a router: it stops accepting connections, lets the open stream finish, then exits.

use std::time::Duration;

use auxot_tests::{sse, Cluster, WorkerOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_router_finishes_open_streams_then_exits() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    // Answers take about three seconds.
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            args: [
                "--synthetic-ttft-ms",
                "100",
                "--synthetic-tokens",
                "30",
                "--synthetic-tokens-per-sec",
                "10",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        },
    );
    cluster.wait_workers(0, 1).await;
    let client = reqwest::Client::new();
    let mut response = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let mut body =
        String::from_utf8_lossy(&response.chunk().await.expect("read").expect("first chunk"))
            .into_owned();

    cluster.routers[0].signal("TERM");
    // The router closes its listener once the signal is handled: poll for that.
    let health = format!("{}/health", cluster.router_url(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut refused = false;
    while !refused && std::time::Instant::now() < deadline {
        refused = reqwest::Client::new().get(&health).send().await.is_err();
        if !refused {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(refused, "a stopping router must not accept new connections");

    while let Some(chunk) = response
        .chunk()
        .await
        .expect("the open stream keeps flowing")
    {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events = sse::parse(&body).expect("complete SSE");
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    auxot_tests::openapi::assert_valid_stream(&body);
    assert!(!body.contains("\"error\""), "{body}");
    assert_eq!(body.matches("tok").count(), 30, "every token arrives");
    assert_eq!(
        cluster.routers[0].wait_exit(Duration::from_secs(20)),
        Some(0),
        "the router exits cleanly once the stream is done"
    );
}
