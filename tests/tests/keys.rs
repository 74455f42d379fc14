//! Keys as a shared service needs them, with two routers that each have their own data
//! directory (as separate hosts do): a key made on one works on the other within 3 s, a key
//! revoked on one is refused by the other within 3 s (its cached verification included), a
//! restarted router still knows every key, and per-key limits hold across both routers. Every
//! route that generates, embeds or runs tools counts against its key.

use std::time::{Duration, Instant};

use auxot_tests::{Cluster, WorkerOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn synthetic(name: &str) -> WorkerOptions {
    WorkerOptions {
        synthetic: true,
        name: Some(name.into()),
        ..Default::default()
    }
}

/// Two routers (router 1 on its own copy of the data directory) and one synthetic worker.
async fn two_routers() -> Cluster {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    let copy = cluster.copy_data_dir("router-b");
    cluster.start_router_in(&copy, &[seed], &[]);
    cluster.start_worker(seed, synthetic("w0"));
    cluster.wait_workers(0, 1).await;
    cluster.wait_workers(1, 1).await;
    cluster
}

/// `auxot-router keys create ARGS` through router `index`: the key and its id.
fn create_key(cluster: &Cluster, index: usize, args: &[&str]) -> (String, String) {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    let key = cluster.admin(index, &all).trim().to_string();
    assert!(key.starts_with("rtr_"), "not a key: {key}");
    let id = key["rtr_".len().."rtr_".len() + 12].to_string();
    (key, id)
}

async fn models_status(cluster: &Cluster, index: usize, key: &str) -> StatusCode {
    try_models_status(cluster, index, key)
        .await
        .expect("request")
}

/// The status of `GET /api/openai/models`; an error while the router is not listening yet.
async fn try_models_status(
    cluster: &Cluster,
    index: usize,
    key: &str,
) -> Result<StatusCode, reqwest::Error> {
    Ok(reqwest::Client::new()
        .get(format!("{}/api/openai/models", cluster.router_url(index)))
        .bearer_auth(key)
        .send()
        .await?
        .status())
}

/// Polls router `index` with `key` until it answers `want`; how long that took. A router that
/// was just started (and does not listen yet) is waited for too.
async fn until_status(cluster: &Cluster, index: usize, key: &str, want: StatusCode) -> Duration {
    let started = Instant::now();
    loop {
        let status = match try_models_status(cluster, index, key).await {
            Ok(status) => status,
            Err(e) if e.is_connect() => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "router {index} does not listen: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => panic!("request: {e}"),
        };
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "router {index} still answers {status}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn chat(cluster: &Cluster, index: usize, key: &str, stream: bool) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{}/api/openai/chat/completions",
            cluster.router_url(index)
        ))
        .bearer_auth(key)
        .json(&json!({
            "model": "auto",
            "stream": stream,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hello there"}],
        }))
        .send()
        .await
        .expect("request")
}

/// Waits, if needed, so the next few seconds stay inside one calendar minute (the limits'
/// window).
async fn early_in_a_minute() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    if now % 60 > 40 {
        tokio::time::sleep(Duration::from_secs(61 - now % 60)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_live_on_every_router_and_survive_a_restart() {
    let mut cluster = two_routers().await;

    // Made on router 0: works on router 1 within 3 s.
    let (key, id) = create_key(&cluster, 0, &["--name", "live"]);
    let took = until_status(&cluster, 1, &key, StatusCode::OK).await;
    println!("a new key worked on the other router after {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(models_status(&cluster, 0, &key).await, StatusCode::OK);

    // Revoked on router 1: refused by router 0 (which has it verified and cached) within 3 s.
    cluster.admin(1, &["keys", "revoke", &id]);
    let took = until_status(&cluster, 0, &key, StatusCode::UNAUTHORIZED).await;
    println!("a revoked key was refused by the other router after {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(
        models_status(&cluster, 1, &key).await,
        StatusCode::UNAUTHORIZED
    );

    // A key made on router 1 reaches router 0; router 0 restarts alone (no seed to catch up
    // from) and still knows both: the new key works, the revoked one does not.
    let (second, _) = create_key(&cluster, 1, &["--name", "second"]);
    until_status(&cluster, 0, &second, StatusCode::OK).await;
    cluster.routers[0].kill();
    cluster.start_router(&[], &[]);
    let restarted = cluster.routers.len() - 1;
    until_status(&cluster, restarted, &second, StatusCode::OK).await;
    assert_eq!(
        models_status(&cluster, restarted, &key).await,
        StatusCode::UNAUTHORIZED
    );
    // API keys cannot manage keys.
    let answer = reqwest::Client::new()
        .get(format!(
            "{}/api/admin/v1/keys",
            cluster.router_url(restarted)
        ))
        .bearer_auth(&second)
        .send()
        .await
        .expect("request");
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_routers() {
    let cluster = two_routers().await;
    early_in_a_minute().await;

    // 5 requests per minute, spread over both routers: the 6th is refused on either.
    let (key, id) = create_key(&cluster, 0, &["--name", "five", "--rpm", "5"]);
    until_status(&cluster, 1, &key, StatusCode::OK).await;
    for (n, router) in [0, 0, 0, 1, 1].into_iter().enumerate() {
        if n == 3 {
            // Router 0 publishes its counts every second and gossip carries them in about
            // another (the documented tolerance): then router 1 counts them too.
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        let answer = chat(&cluster, router, &key, false).await;
        assert_eq!(answer.status(), StatusCode::OK, "request {n}");
        assert_eq!(answer.headers()["x-ratelimit-limit-requests"], "5");
        assert_eq!(
            answer.headers()["x-ratelimit-remaining-requests"],
            (4 - n).to_string().as_str()
        );
    }
    // The routers publish their counts every second; gossip carries them in about another.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for router in [0, 1] {
        let answer = chat(&cluster, router, &key, false).await;
        assert_eq!(
            answer.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "router {router}"
        );
        let retry: u64 = answer.headers()["retry-after"]
            .to_str()
            .expect("header")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry), "retry-after {retry}");
        let body: Value = answer.json().await.expect("json");
        assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    }
    // Anthropic callers get their own error shape.
    let answer = reqwest::Client::new()
        .post(format!("{}/api/anthropic/v1/messages", cluster.router_url(1)))
        .header("x-api-key", &key)
        .json(&json!({"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    // The usage the admin API reports counts every router's requests.
    let usage: Value =
        serde_json::from_str(&cluster.admin(1, &["keys", "get", &id])).expect("json");
    assert_eq!(usage["usage"]["minute"]["requests"], 5, "{usage}");

    // A token budget stops a key once spent, streamed answers counted.
    let (key, id) = create_key(&cluster, 0, &["--name", "budget", "--budget", "20"]);
    let mut spent = 0u64;
    let mut answered = 0;
    for n in 0..10 {
        let answer = chat(&cluster, n % 2, &key, n == 0).await;
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            let body: Value = answer.json().await.expect("json");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("budget")),
                "{body}"
            );
            break;
        }
        assert_eq!(answer.status(), StatusCode::OK);
        answered += 1;
        if n == 0 {
            let text = answer.text().await.expect("stream");
            let usage = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|v| v["usage"]["total_tokens"].as_u64())
                .expect("usage in the stream");
            spent += usage;
        } else {
            let body: Value = answer.json().await.expect("json");
            spent += body["usage"]["total_tokens"].as_u64().expect("usage");
        }
        // Let the other router hear of the tokens before the next request.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    assert!(answered < 10, "the budget never stopped the key");
    assert!(spent >= 20, "stopped after only {spent} tokens");
    let usage: Value =
        serde_json::from_str(&cluster.admin(0, &["keys", "get", &id])).expect("json");
    let total = &usage["usage"]["total"];
    let counted = total["prompt_tokens"].as_u64().unwrap_or(0)
        + total["completion_tokens"].as_u64().unwrap_or(0);
    assert_eq!(counted, spent, "{usage}");
}

/// POSTs `body` to `path` on router `index` with `key`.
async fn post(
    cluster: &Cluster,
    index: usize,
    key: &str,
    path: &str,
    body: Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", cluster.router_url(index)))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generation_and_tool_route_counts_against_the_key() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(seed, synthetic("w0"));
    cluster.wait_workers(0, 1).await;
    early_in_a_minute().await;

    // Three requests a minute: a legacy completion, a response and an MCP request take them;
    // embeddings are then refused like a chat would be.
    let (key, id) = create_key(&cluster, 0, &["--name", "routes", "--rpm", "3"]);
    until_status(&cluster, 0, &key, StatusCode::OK).await;
    let mut tokens = 0;
    let answer = post(
        &cluster,
        0,
        &key,
        "/api/openai/completions",
        json!({"model": "auto", "prompt": "Once upon a time", "max_tokens": 8}),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["x-ratelimit-remaining-requests"], "2");
    let body: Value = answer.json().await.expect("json");
    tokens += body["usage"]["total_tokens"].as_u64().expect("usage");
    let answer = post(
        &cluster,
        0,
        &key,
        "/api/openai/responses",
        json!({"model": "auto", "input": "hello there", "max_output_tokens": 8}),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["x-ratelimit-remaining-requests"], "1");
    let body: Value = answer.json().await.expect("json");
    tokens += body["usage"]["total_tokens"].as_u64().expect("usage");
    let answer = post(
        &cluster,
        0,
        &key,
        "/mcp",
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["x-ratelimit-remaining-requests"], "0");
    let answer = post(
        &cluster,
        0,
        &key,
        "/api/openai/embeddings",
        json!({"model": "auto", "input": "hello"}),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");

    // The key's usage has the three requests and the two generations' tokens.
    let usage: Value =
        serde_json::from_str(&cluster.admin(0, &["keys", "get", &id])).expect("json");
    assert_eq!(usage["usage"]["minute"]["requests"], 3, "{usage}");
    let total = &usage["usage"]["total"];
    let counted = total["prompt_tokens"].as_u64().unwrap_or(0)
        + total["completion_tokens"].as_u64().unwrap_or(0);
    assert_eq!(counted, tokens, "{usage}");
}
