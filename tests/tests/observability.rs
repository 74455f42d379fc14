//! What an operator sees of a request: its id on the response (`x-request-id`, and in
//! Anthropic error bodies), in the router's one JSON line per request and in the worker's log,
//! and the Prometheus metrics of both, which parse as Prometheus text and move after a chat.
//!
//! Processes with the synthetic engine: the flags (`--log-format`, `--metrics-addr`) are the
//! command line's, and each node's log is a file of its own.

use std::process::Command;

use auxot_tests::{free_tcp_port, workspace_root, Cluster, WorkerOptions};
use serde_json::{json, Value};

/// `/metrics` text parsed by prometheus_client's parser (tests/deploy/check.py): a failure to
/// parse fails the test.
fn parse_prometheus(text: &str) -> Vec<Value> {
    use std::io::Write as _;
    let python = workspace_root().join(".venv/bin/python");
    assert!(python.exists(), "`make venv` installs prometheus_client");
    let mut child = Command::new(python)
        .arg(workspace_root().join("tests/deploy/check.py"))
        .arg("prom")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run check.py prom");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let output = child.wait_with_output().expect("check.py prom");
    assert!(
        output.status.success(),
        "/metrics is not Prometheus text: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Value = serde_json::from_slice(&output.stdout).expect("json");
    parsed["samples"].as_array().expect("samples").clone()
}

/// The sum of the samples named `name` whose labels include `labels`.
fn sample(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .filter_map(|s| s["value"].as_f64())
        .sum()
}

async fn scrape(port: u16) -> Vec<Value> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("text/plain"));
    parse_prometheus(&response.text().await.expect("text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_traced_and_measured_on_router_and_worker() {
    let (router_metrics, worker_metrics) = (free_tcp_port(), free_tcp_port());
    let router_metrics_addr = format!("127.0.0.1:{router_metrics}");
    let mut cluster = Cluster::with_router(&[
        "--log-format",
        "json",
        "--metrics-addr",
        &router_metrics_addr,
    ]);
    let seed = cluster.seed();
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            args: vec![
                "--metrics-addr".into(),
                format!("127.0.0.1:{worker_metrics}"),
            ],
            ..Default::default()
        },
    );
    cluster.wait_workers(0, 1).await;
    let client = reqwest::Client::new();

    let chat_labels = [("route", "openai_chat"), ("status", "200")];
    let ttft = "gen_ai_server_time_to_first_token_seconds_count";
    let before = scrape(router_metrics).await;
    let worker_before = scrape(worker_metrics).await;
    let requests_before = sample(&before, "auxot_router_requests_total", &chat_labels);

    // A chat with the caller's own id, and a streamed one that gets a new id.
    let response = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .header("x-request-id", "trace-me-42")
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let body: Value = response.json().await.expect("json");
    assert!(body["choices"][0]["message"]["content"].is_string());

    let response = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .header("x-request-id", "not a sane id!")
        .json(&json!({"model": "auto", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let streamed_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(streamed_id.starts_with("req_"), "{streamed_id}");
    let text = response.text().await.expect("stream body");
    assert!(text.contains("[DONE]"));

    // An Anthropic error names the same id in its body as in its header.
    let response = cluster
        .post(&client, 0, "/api/anthropic/v1/messages")
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("anthropic");
    assert_eq!(response.status(), 400);
    let header = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["request_id"], header.as_str());

    // The counters and the time-to-first-token histograms moved, on both sides.
    let after = scrape(router_metrics).await;
    let requests_after = sample(&after, "auxot_router_requests_total", &chat_labels);
    assert_eq!(requests_after - requests_before, 2.0);
    assert_eq!(sample(&after, ttft, &[]) - sample(&before, ttft, &[]), 2.0);
    assert!(
        sample(
            &after,
            "gen_ai_client_token_usage_sum",
            &[("gen_ai_token_type", "output")]
        ) > 0.0
    );
    assert_eq!(sample(&after, "auxot_router_requests_in_flight", &[]), 0.0);
    assert_eq!(sample(&after, "auxot_router_worker_capacity", &[]), 8.0);
    assert!(sample(&after, "auxot_router_gossip_members", &[]) >= 2.0);
    assert_eq!(
        sample(
            &after,
            "auxot_router_key_verifications_total",
            &[("result", "ok")]
        ),
        3.0
    );
    let worker_after = scrape(worker_metrics).await;
    assert_eq!(
        sample(&worker_after, ttft, &[]) - sample(&worker_before, ttft, &[]),
        2.0
    );
    assert_eq!(
        sample(
            &worker_after,
            "auxot_worker_requests_total",
            &[("op", "chat"), ("outcome", "ok")]
        ),
        2.0
    );
    let health = reqwest::get(format!("http://127.0.0.1:{worker_metrics}/health"))
        .await
        .expect("worker health");
    assert_eq!(health.status(), 200);

    // On the API port /metrics wants a key.
    let url = format!("{}/metrics", cluster.router_url(0));
    assert_eq!(client.get(&url).send().await.expect("get").status(), 401);
    let keyed = cluster
        .get(&client, 0, "/metrics")
        .send()
        .await
        .expect("get");
    assert_eq!(keyed.status(), 200);

    // One JSON line per request on the router, with the key's public id but never the key.
    let router_log = cluster.routers[0].log_text();
    assert!(
        !router_log.contains(&cluster.api_key),
        "the key leaked into the log"
    );
    let lines: Vec<Value> = router_log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let line = |id: &str| {
        lines
            .iter()
            .find(|l| l["message"] == "request" && l["request_id"] == id)
            .unwrap_or_else(|| panic!("no request line for {id} in\n{router_log}"))
            .clone()
    };
    let traced = line("trace-me-42");
    assert_eq!(traced["key_id"], &cluster.api_key[4..16]);
    assert_eq!(traced["route"], "openai_chat");
    assert_eq!(traced["status"], 200);
    assert_eq!(traced["worker"], cluster.workers[0].name.as_str());
    assert!(traced["completion_tokens"].as_u64().is_some_and(|n| n > 0));
    assert!(traced["prompt_tokens"].as_u64().is_some());
    assert!(traced["ttft_ms"].as_f64().is_some());
    assert!(traced["duration_ms"].as_f64().is_some());
    assert_eq!(traced["failovers"], 0);
    assert_eq!(traced["span"]["request_id"], "trace-me-42");
    let streamed = line(&streamed_id);
    assert!(streamed["completion_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
    assert_eq!(line(&header)["status"], 400);

    // The worker's lines for those requests carry the same ids.
    let worker_log = cluster.workers[0].log_text();
    for id in ["trace-me-42", streamed_id.as_str()] {
        assert!(
            worker_log
                .lines()
                .any(|l| l.contains(id) && l.contains("generation")),
            "the worker's log does not name {id}:\n{worker_log}"
        );
    }
}
