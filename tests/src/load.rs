//! A load generator for whole-cluster tests and the benchmark: OpenAI chat requests through
//! routers, recording per request who served it and whether it failed before or after output
//! reached the client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{sse, Cluster};

/// What happened to one request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status: u16,
    pub worker: String,
    /// Content reached the client before the end (streaming only).
    pub started: bool,
    /// The request ended in an error (status or error event) instead of a complete answer.
    pub failed: bool,
    pub detail: String,
    /// Time to the whole answer.
    pub latency: Duration,
}

/// Sends one request and records what happened.
pub async fn one(client: &reqwest::Client, url: &str, key: &str, stream: bool) -> Outcome {
    let started = Instant::now();
    let mut outcome = attempt(client, url, key, stream).await;
    outcome.latency = started.elapsed();
    outcome
}

async fn attempt(client: &reqwest::Client, url: &str, key: &str, stream: bool) -> Outcome {
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hello"}], "stream": stream});
    let response = match client
        .post(format!("{url}/api/openai/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(err) => {
            return Outcome {
                failed: true,
                detail: err.to_string(),
                ..Default::default()
            }
        }
    };
    let mut outcome = Outcome {
        status: response.status().as_u16(),
        worker: response
            .headers()
            .get("x-auxot-worker")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        ..Default::default()
    };
    if outcome.status != 200 {
        outcome.failed = true;
        outcome.detail = response.text().await.unwrap_or_default();
        return outcome;
    }
    if !stream {
        let body: Value = response.json().await.unwrap_or_default();
        outcome.failed = body["choices"][0]["finish_reason"].as_str().is_none();
        outcome.detail = body.to_string();
        return outcome;
    }
    let mut text = String::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => {
                text.push_str(&String::from_utf8_lossy(&bytes));
                if text.contains("\"content\"") {
                    outcome.started = true;
                }
            }
            Err(err) => {
                outcome.failed = true;
                outcome.detail = err.to_string();
                return outcome;
            }
        }
    }
    let events = sse::parse(&text).unwrap_or_default();
    let errored = events.iter().any(|e| e.data.contains("\"error\""));
    let done = events.last().is_some_and(|e| e.data == "[DONE]");
    outcome.failed = errored || !done;
    outcome.detail = text;
    outcome
}

/// Sends `per_router` requests through each router, `concurrency` at a time per router.
pub async fn load(
    cluster: &Cluster,
    per_router: usize,
    concurrency: usize,
    stream: impl Fn(usize) -> bool,
) -> Vec<Outcome> {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for router in 0..cluster.routers.len() {
        let limit = Arc::new(Semaphore::new(concurrency));
        for i in 0..per_router {
            let permit = limit.clone().acquire_owned().await.expect("semaphore");
            let (client, url, key, stream) = (
                client.clone(),
                cluster.router_url(router),
                cluster.api_key.clone(),
                stream(i),
            );
            tasks.push(tokio::spawn(async move {
                let outcome = one(&client, &url, &key, stream).await;
                drop(permit);
                outcome
            }));
        }
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("request task"));
    }
    outcomes
}

pub fn by_worker(outcomes: &[Outcome]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for outcome in outcomes.iter().filter(|o| !o.failed) {
        *counts.entry(outcome.worker.clone()).or_insert(0) += 1;
    }
    counts
}

/// The `q` quantile (0..=1) of the latencies of successful requests.
pub fn quantile(outcomes: &[Outcome], q: f64) -> Duration {
    let mut latencies: Vec<Duration> = outcomes
        .iter()
        .filter(|o| !o.failed)
        .map(|o| o.latency)
        .collect();
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort();
    let index = ((latencies.len() - 1) as f64 * q).round() as usize;
    latencies[index]
}

/// The busiest worker's share relative to a fair share (1.0 = perfectly even).
pub fn imbalance(outcomes: &[Outcome], workers: usize) -> f64 {
    let counts = by_worker(outcomes);
    let total: usize = counts.values().sum();
    let max = counts.values().copied().max().unwrap_or(0);
    if total == 0 || workers == 0 {
        return 0.0;
    }
    max as f64 / (total as f64 / workers as f64)
}
