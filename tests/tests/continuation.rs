//! Mid-stream continuation, end to end: a worker SIGKILLed after output reached the client, and
//! the client still gets one answer, the same one an uninterrupted run gives.
//!
//! The synthetic engine says a known sequence (as greedy decoding would), so the continued
//! answer must equal the uninterrupted one byte for byte, with the same usage and one finish, in
//! both dialects, streaming and not, text and tool-call arguments, and for legacy completions. With the real model the
//! continued answer must be well formed and the client must see no error.

use std::time::Duration;

use auxot_tests::sse::{self, SseEvent};
use auxot_tests::{Cluster, WorkerOptions};
use futures::StreamExt as _;
use serde_json::{json, Value};

/// Tokens per synthetic answer, and how many reach the client before its worker is killed.
const TOKENS: u32 = 40;
const CUT_AFTER: usize = 8;

fn synthetic(name: &str) -> WorkerOptions {
    WorkerOptions {
        synthetic: true,
        name: Some(name.into()),
        args: [
            "--synthetic-ttft-ms",
            "50",
            "--synthetic-tokens",
            &TOKENS.to_string(),
            "--synthetic-tokens-per-sec",
            "20",
            "--max-seqs",
            "8",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }
}

/// The uninterrupted synthetic answer.
fn known_text() -> String {
    (0..TOKENS).map(|i| format!("tok{i} ")).collect()
}

/// Reads an SSE response to its end, calling `progress` with the complete events so far after
/// every chunk off the network.
async fn read_sse(response: reqwest::Response, mut progress: impl FnMut(&[SseEvent])) -> String {
    let mut body = String::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        body.push_str(&String::from_utf8_lossy(
            &chunk.expect("the stream breaks off"),
        ));
        if let Some(end) = body.rfind("\n\n") {
            progress(&sse::parse(&body[..end + 2]).expect("SSE"));
        }
    }
    body
}

/// Kills whichever worker `header` names once `count(events)` reaches [`CUT_AFTER`].
struct Cutter<'a> {
    cluster: &'a Cluster,
    worker: String,
    done: bool,
}

impl Cutter<'_> {
    fn check(&mut self, reached: usize) {
        if !self.done && reached >= CUT_AFTER {
            let node = self
                .cluster
                .workers
                .iter()
                .find(|w| w.name == self.worker)
                .expect("the serving worker");
            node.signal("KILL");
            self.done = true;
        }
    }
}

fn worker_of(response: &reqwest::Response) -> String {
    response.headers()["x-auxot-worker"]
        .to_str()
        .expect("header")
        .to_string()
}

/// What an OpenAI stream said.
#[derive(Debug, Default)]
struct OpenAiStream {
    content: String,
    arguments: String,
    call_ids: Vec<String>,
    finishes: Vec<String>,
    usage: Value,
    errors: usize,
    done: bool,
}

fn content_chunks(events: &[SseEvent]) -> usize {
    events
        .iter()
        .filter(|e| e.data.contains("\"content\"") || e.data.contains("\"arguments\""))
        .count()
}

fn fold_openai(body: &str) -> OpenAiStream {
    let mut out = OpenAiStream::default();
    for event in sse::parse(body).expect("SSE") {
        if event.data == "[DONE]" {
            out.done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(&event.data).expect("JSON chunk");
        if chunk.get("error").is_some() {
            out.errors += 1;
        }
        if !chunk["usage"].is_null() {
            out.usage = chunk["usage"].clone();
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            if let Some(text) = choice["delta"]["content"].as_str() {
                out.content.push_str(text);
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(id) = call["id"].as_str() {
                    out.call_ids.push(id.to_string());
                }
                if let Some(args) = call["function"]["arguments"].as_str() {
                    out.arguments.push_str(args);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                out.finishes.push(reason.to_string());
            }
        }
    }
    out
}

async fn cluster_with_workers(names: &[&str]) -> Cluster {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    for name in names {
        cluster.start_worker(seed, synthetic(name));
    }
    cluster.wait_workers(0, names.len() as u64).await;
    cluster
}

/// Replaces the killed worker with a fresh one, so the next check has two workers again.
async fn replace(cluster: &mut Cluster, name: &str) {
    let seed = cluster.seed();
    cluster.start_worker(seed, synthetic(name));
    cluster
        .wait_health(0, Duration::from_secs(60), |h| {
            h["capacity"]
                .as_array()
                .is_some_and(|ws| ws.iter().any(|w| w["worker"] == name))
        })
        .await;
}

async fn openai_stream(cluster: &Cluster, body: Value, cut: bool) -> (OpenAiStream, String) {
    let client = reqwest::Client::new();
    let response = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let mut cutter = Cutter {
        cluster,
        worker: worker_of(&response),
        done: !cut,
    };
    let body = read_sse(response, |events| cutter.check(content_chunks(events))).await;
    assert!(cutter.done, "the stream ended before the cut");
    (fold_openai(&body), cutter.worker)
}

/// What a legacy completions (`text_completion`) stream said.
#[derive(Debug, Default)]
struct CompletionStream {
    text: String,
    finishes: Vec<String>,
    usage: Value,
    errors: usize,
    done: bool,
}

fn fold_completions(body: &str) -> CompletionStream {
    let mut out = CompletionStream::default();
    for event in sse::parse(body).expect("SSE") {
        if event.data == "[DONE]" {
            out.done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(&event.data).expect("JSON chunk");
        if chunk.get("error").is_some() {
            out.errors += 1;
        }
        if !chunk["usage"].is_null() {
            out.usage = chunk["usage"].clone();
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            if let Some(text) = choice["text"].as_str() {
                out.text.push_str(text);
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                out.finishes.push(reason.to_string());
            }
        }
    }
    out
}

/// Chunks of a completions stream that carry text.
fn text_chunks(events: &[SseEvent]) -> usize {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter(|c| {
            c["choices"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count()
}

/// A legacy completions stream (`POST /api/openai/completions`), its serving worker killed after
/// [`CUT_AFTER`] text chunks when `cut`; what it said, the worker, and the text before the cut.
async fn completions_stream(
    cluster: &Cluster,
    body: Value,
    cut: bool,
) -> (CompletionStream, String, String) {
    let client = reqwest::Client::new();
    let response = cluster
        .post(&client, 0, "/api/openai/completions")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let mut cutter = Cutter {
        cluster,
        worker: worker_of(&response),
        done: !cut,
    };
    let mut before_cut = String::new();
    let body = read_sse(response, |events| {
        let reached = text_chunks(events);
        if !cutter.done && reached >= CUT_AFTER {
            before_cut = events
                .iter()
                .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
                .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_string))
                .collect();
        }
        cutter.check(reached);
    })
    .await;
    assert!(cutter.done, "the stream ended before the cut");
    (fold_completions(&body), cutter.worker, before_cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_sigkill_says_exactly_what_an_uninterrupted_one_says() {
    let mut cluster = cluster_with_workers(&["w0", "w1"]).await;
    let body = json!({
        "model": "auto", "stream": true, "temperature": 0,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "count for me, please"}],
    });

    let (whole, _) = openai_stream(&cluster, body.clone(), false).await;
    assert_eq!(whole.content, known_text());

    let (cut, killed) = openai_stream(&cluster, body, true).await;
    println!(
        "killed {killed} after {CUT_AFTER} chunks; usage {}",
        cut.usage
    );
    assert_eq!(cut.errors, 0, "the client saw an error: {cut:?}");
    assert!(cut.done, "no [DONE]: {cut:?}");
    assert_eq!(cut.content, whole.content, "duplicated or missing text");
    assert_eq!(cut.finishes, ["stop"], "one finish");
    assert_eq!(cut.usage, whole.usage, "usage of the whole answer");
    assert_eq!(cut.usage["completion_tokens"], TOKENS);

    // Tool-call arguments cut mid-call go on at the same index, with no second id.
    replace(&mut cluster, "w2").await;
    let body = json!({
        "model": "auto", "stream": true,
        "messages": [{"role": "user", "content": "record the count"}],
        "tools": [{"type": "function", "function": {"name": "record", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "record"}},
    });
    let (whole, _) = openai_stream(&cluster, body.clone(), false).await;
    let (cut, killed) = openai_stream(&cluster, body, true).await;
    println!("killed {killed} mid tool call");
    assert_eq!(cut.errors, 0, "{cut:?}");
    assert_eq!(cut.arguments, whole.arguments);
    let arguments: Value = serde_json::from_str(&cut.arguments).expect("JSON arguments");
    assert_eq!(arguments["text"], known_text());
    assert_eq!(cut.call_ids.len(), 1, "one call: {:?}", cut.call_ids);
    assert_eq!(cut.finishes, ["tool_calls"]);

    // A legacy completion (a raw prompt, no chat template) goes on where it was cut too.
    replace(&mut cluster, "w3").await;
    let body = json!({
        "model": "auto", "stream": true, "max_tokens": TOKENS,
        "stream_options": {"include_usage": true},
        "prompt": "Count for me:",
    });
    let (whole, _, _) = completions_stream(&cluster, body.clone(), false).await;
    assert_eq!(whole.text, known_text());
    let (cut, killed, _) = completions_stream(&cluster, body, true).await;
    println!("killed {killed} mid completion; usage {}", cut.usage);
    assert_eq!(cut.errors, 0, "{cut:?}");
    assert!(cut.done, "no [DONE]: {cut:?}");
    assert_eq!(cut.text, whole.text, "duplicated or missing text");
    assert_eq!(cut.finishes.len(), 1, "one finish: {cut:?}");
    assert_eq!(cut.usage, whole.usage, "usage of the whole answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_streams_and_answers_in_one_piece_are_continued_too() {
    let mut cluster = cluster_with_workers(&["w0", "w1"]).await;
    let client = reqwest::Client::new();

    // An Anthropic stream: one message, one text block, the whole answer's usage.
    let response = cluster
        .post(&client, 0, "/api/anthropic/v1/messages")
        .json(&json!({
            "model": "auto", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "count for me, please"}],
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let mut cutter = Cutter {
        cluster: &cluster,
        worker: worker_of(&response),
        done: false,
    };
    let count = |events: &[SseEvent]| {
        events
            .iter()
            .filter(|e| e.event.as_deref() == Some("content_block_delta"))
            .count()
    };
    let body = read_sse(response, |events| cutter.check(count(events))).await;
    assert!(cutter.done);
    let events = sse::parse(&body).expect("SSE");
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert!(!names.contains(&"error"), "{body}");
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    for once in [
        "message_start",
        "content_block_start",
        "message_delta",
        "message_stop",
    ] {
        assert_eq!(
            names.iter().filter(|n| **n == once).count(),
            1,
            "{once}: {names:?}"
        );
    }
    let mut text = String::new();
    let mut delta = Value::Null;
    for event in &events {
        let data: Value = serde_json::from_str(&event.data).expect("JSON");
        match event.event.as_deref() {
            Some("content_block_delta") => {
                text.push_str(data["delta"]["text"].as_str().expect("text delta"))
            }
            Some("message_delta") => delta = data,
            _ => {}
        }
    }
    assert_eq!(text, known_text());
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], TOKENS);

    // An answer in one piece: the worker dies while it generates, the caller gets it whole.
    replace(&mut cluster, "w2").await;
    let request = {
        let (url, key) = (cluster.router_url(0), cluster.api_key.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/api/openai/chat/completions"))
                .bearer_auth(key)
                .json(&json!({
                    "model": "auto",
                    "messages": [{"role": "user", "content": "count for me, please"}],
                }))
                .send()
                .await
        })
    };
    let health = cluster
        .wait_health(0, Duration::from_secs(30), |h| {
            h["capacity"]
                .as_array()
                .is_some_and(|ws| ws.iter().any(|w| w["active"].as_u64().unwrap_or(0) > 0))
        })
        .await;
    let busy = health["capacity"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["active"].as_u64().unwrap_or(0) > 0))
        .and_then(|w| w["worker"].as_str())
        .expect("a busy worker")
        .to_string();
    // Half-way through its 2 s of tokens.
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster
        .workers
        .iter()
        .find(|w| w.name == busy)
        .expect("busy worker")
        .signal("KILL");
    let response = request.await.expect("task").expect("response");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        known_text(),
        "{body}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], TOKENS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_model_answer_cut_mid_way_is_continued_well_formed() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    for name in ["m0", "m1"] {
        cluster.start_worker(
            seed,
            WorkerOptions {
                name: Some(name.into()),
                ..Default::default()
            },
        );
    }
    cluster.wait_workers(0, 2).await;
    let body = json!({
        "model": "auto", "stream": true, "temperature": 0, "max_tokens": 48,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Describe the sea in a few sentences."}],
    });
    let (whole, _) = openai_stream(&cluster, body.clone(), false).await;
    let client = reqwest::Client::new();
    let response = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let mut cutter = Cutter {
        cluster: &cluster,
        worker: worker_of(&response),
        done: false,
    };
    let mut before_cut = String::new();
    let body = read_sse(response, |events| {
        let reached = content_chunks(events);
        if !cutter.done && reached >= CUT_AFTER {
            before_cut = events
                .iter()
                .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
                .filter_map(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect();
        }
        cutter.check(reached);
    })
    .await;
    assert!(cutter.done, "the answer ended before the cut");
    let cut = fold_openai(&body);
    println!("uninterrupted: {:?}", whole.content);
    println!("cut after {before_cut:?}; continued: {:?}", cut.content);
    println!(
        "same text as uninterrupted: {}; usage {}",
        cut.content == whole.content,
        cut.usage
    );
    assert_eq!(cut.errors, 0, "the client saw an error: {body}");
    assert!(cut.done, "{body}");
    assert_eq!(cut.finishes.len(), 1, "{body}");
    assert!(cut.content.starts_with(&before_cut));
    assert!(
        cut.content.len() > before_cut.len(),
        "nothing was added after the cut: {body}"
    );
    // At temperature 0 the uninterrupted answer says the same up to the cut; where it goes on
    // with a space (the next word), so must the continuation ("Paris, and", not "Paris,and").
    if let Some(next) = whole.content.strip_prefix(before_cut.as_str()) {
        let spaced = |t: &str| t.starts_with(char::is_whitespace);
        assert_eq!(
            spaced(&cut.content[before_cut.len()..]),
            spaced(next),
            "the seam lost or gained whitespace: uninterrupted {:?}, continued {:?}",
            whole.content,
            cut.content
        );
    }
    let completion = cut.usage["completion_tokens"].as_u64().expect("usage");
    assert!(completion > CUT_AFTER as u64, "{}", cut.usage);
    assert_eq!(cut.usage["prompt_tokens"], whole.usage["prompt_tokens"]);

    // A legacy completion continues from its raw prompt and the cut text.
    cluster.start_worker(
        seed,
        WorkerOptions {
            name: Some("m2".into()),
            ..Default::default()
        },
    );
    cluster
        .wait_health(0, Duration::from_secs(120), |h| {
            h["capacity"]
                .as_array()
                .is_some_and(|ws| ws.iter().any(|w| w["worker"] == "m2"))
        })
        .await;
    let body = json!({
        "model": "auto", "stream": true, "temperature": 0, "max_tokens": 48,
        "stream_options": {"include_usage": true},
        "prompt": "The sea is",
    });
    let (whole, _, _) = completions_stream(&cluster, body.clone(), false).await;
    let (cut, killed, before_cut) = completions_stream(&cluster, body, true).await;
    println!("completion uninterrupted: {:?}", whole.text);
    println!(
        "killed {killed} after {before_cut:?}; continued: {:?}; usage {}",
        cut.text, cut.usage
    );
    assert_eq!(cut.errors, 0, "the client saw an error: {cut:?}");
    assert!(cut.done, "{cut:?}");
    assert_eq!(cut.finishes.len(), 1, "{cut:?}");
    assert!(cut.text.starts_with(&before_cut), "{cut:?}");
    assert!(
        cut.text.len() > before_cut.len(),
        "nothing was added after the cut: {cut:?}"
    );
    let completion = cut.usage["completion_tokens"].as_u64().expect("usage");
    assert!(completion > CUT_AFTER as u64, "{}", cut.usage);
    assert!(
        completion <= 48,
        "max_tokens covers the whole answer: {}",
        cut.usage
    );
    assert_eq!(cut.usage["prompt_tokens"], whole.usage["prompt_tokens"]);
}
