//! Multi-turn conversations for measuring prefix-aware routing: each conversation has its own
//! long system prompt and grows turn by turn (the answers go back into the history, as chat
//! clients do), and every turn records its time to first token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// The shape of a conversation load.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub conversations: usize,
    pub turns: usize,
    /// Conversations in progress at once.
    pub concurrency: usize,
    /// Bytes of each conversation's system prompt.
    pub system_bytes: usize,
    /// `max_tokens` of every turn (`None`: the engine's own limit).
    pub max_tokens: Option<u32>,
}

/// One turn as the client saw it.
#[derive(Debug, Clone)]
pub struct Turn {
    /// 0 for a conversation's first turn.
    pub index: usize,
    pub worker: String,
    pub ttft: Duration,
    pub failed: bool,
}

fn system_prompt(tag: &str, conversation: usize, bytes: usize) -> String {
    let head = format!("You are assistant {tag}-{conversation}. ");
    let filler = "Answer with care, cite what you rely on, and keep the user's goals in mind. ";
    let mut prompt = head;
    while prompt.len() < bytes {
        prompt.push_str(filler);
    }
    prompt
}

/// One streamed turn: the answer's text, and the turn as seen.
async fn turn(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    messages: &[Value],
    index: usize,
    max_tokens: Option<u32>,
) -> (String, Turn) {
    let started = Instant::now();
    let mut seen = Turn {
        index,
        worker: String::new(),
        ttft: Duration::ZERO,
        failed: true,
    };
    let response = client
        .post(format!("{url}/api/openai/chat/completions"))
        .bearer_auth(key)
        .json(&json!({
            "model": "auto",
            "stream": true,
            "messages": messages,
            "max_tokens": max_tokens,
        }))
        .send()
        .await;
    let Ok(response) = response else {
        return (String::new(), seen);
    };
    seen.worker = response
        .headers()
        .get("x-auxot-worker")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if response.status() != 200 {
        return (String::new(), seen);
    }
    let mut body = String::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let Ok(bytes) = chunk else {
            return (String::new(), seen);
        };
        body.push_str(&String::from_utf8_lossy(&bytes));
        if seen.ttft.is_zero() && body.contains("\"content\":\"") {
            seen.ttft = started.elapsed();
        }
    }
    let mut answer = String::new();
    let mut done = false;
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap_or_default();
        if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
            answer.push_str(text);
        }
    }
    seen.failed = !done || answer.is_empty();
    (answer, seen)
}

/// Runs `shape.conversations` conversations of `shape.turns` turns through the router at `url`;
/// `tag` makes their prompts differ from another run's.
pub async fn run(url: &str, key: &str, shape: Shape, tag: &str) -> Vec<Turn> {
    let client = reqwest::Client::new();
    let limit = Arc::new(Semaphore::new(shape.concurrency));
    let mut tasks = Vec::new();
    for c in 0..shape.conversations {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (client, url, key) = (client.clone(), url.to_string(), key.to_string());
        let system = system_prompt(tag, c, shape.system_bytes);
        tasks.push(tokio::spawn(async move {
            let mut messages = vec![json!({"role": "system", "content": system})];
            let mut turns = Vec::new();
            for t in 0..shape.turns {
                let question = format!(
                    "Question {t} of conversation {c}: what should I look at next, and why? \
                     Please consider what we said so far before you answer."
                );
                messages.push(json!({"role": "user", "content": question}));
                let (answer, seen) =
                    turn(&client, &url, &key, &messages, t, shape.max_tokens).await;
                messages.push(json!({"role": "assistant", "content": answer}));
                turns.push(seen);
            }
            drop(permit);
            turns
        }));
    }
    let mut turns = Vec::new();
    for task in tasks {
        if let Ok(done) = task.await {
            turns.extend(done);
        }
    }
    turns
}

/// The `q` quantile of the time to first token of successful turns from `from_turn` on.
pub fn ttft_quantile(turns: &[Turn], from_turn: usize, q: f64) -> Duration {
    let mut ttfts: Vec<Duration> = turns
        .iter()
        .filter(|t| !t.failed && t.index >= from_turn)
        .map(|t| t.ttft)
        .collect();
    if ttfts.is_empty() {
        return Duration::ZERO;
    }
    ttfts.sort();
    ttfts[((ttfts.len() - 1) as f64 * q).round() as usize]
}
