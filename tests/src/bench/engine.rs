//! Engine speed with the real model: the same prompts through a router (HTTP, QUIC, worker
//! process), straight to the engine in this process (the worker's own `Engine`, no network), and
//! through llama.cpp on the same GGUF file (llama-cpp-python, the reference; run by
//! `scripts/llama-reference.py` from the bench's cached virtual environment).
//!
//! Each system runs the prompts one at a time (concurrency 1) and all at once (concurrency 4),
//! greedy, `MAX_TOKENS` each, for `ROUNDS` rounds in turn, the router and the in-process engine
//! taking turns prompt by prompt (so that other load on the machine falls on all of them
//! alike). Figures are medians: time to first token, and tokens per second (at concurrency 1
//! the tokens of a request over its whole time, at 4 all tokens of a batch over its wall time).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use auxot_common::chat::{ChatEvent, ChatRequest, Message, Role, Sampling};
use futures::StreamExt as _;
use serde_json::{json, Value};

/// Prompts of different lengths, as real traffic has (equal lengths would flatter batching).
pub const PROMPTS: [&str; 4] = [
    "Write a short story about a dragon who learns to cook.",
    "Explain how a bicycle works.",
    "List five facts about the Moon, one per line.",
    "Describe Paris to a tourist who has one day there, with three places to visit.",
];
pub const MAX_TOKENS: u32 = 64;
pub const ROUNDS: usize = 5;

/// One request's timing.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub ttft: Duration,
    pub total: Duration,
    pub tokens: u32,
}

/// All runs of one system.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// Sequential requests.
    pub c1: Vec<Run>,
    /// Concurrent batches: the runs of each batch and its wall time.
    pub c4: Vec<(Vec<Run>, Duration)>,
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

impl Figures {
    pub fn ttft_c1(&self) -> f64 {
        median(self.c1.iter().map(|r| r.ttft.as_secs_f64()).collect())
    }

    pub fn ttft_c4(&self) -> f64 {
        median(
            self.c4
                .iter()
                .flat_map(|(runs, _)| runs.iter().map(|r| r.ttft.as_secs_f64()))
                .collect(),
        )
    }

    /// Tokens per second of one request at a time: the median over requests of its tokens
    /// over its whole time (medians, because other work on a shared machine lands on a few runs).
    pub fn tps_c1(&self) -> f64 {
        median(
            self.c1
                .iter()
                .map(|r| f64::from(r.tokens) / r.total.as_secs_f64())
                .collect(),
        )
    }

    /// Tokens per second of all four together: the median over batches of all their tokens
    /// over the batch's wall time.
    pub fn tps_c4(&self) -> f64 {
        median(
            self.c4
                .iter()
                .map(|(runs, wall)| {
                    let tokens: u32 = runs.iter().map(|r| r.tokens).sum();
                    f64::from(tokens) / wall.as_secs_f64()
                })
                .collect(),
        )
    }
}

/// A system under test.
pub trait System {
    async fn one(&self, prompt: &'static str) -> anyhow::Result<Run>;
}

/// One round for two systems: each prompt on one, then on the other (so that a change in the
/// machine's load falls on both), then all prompts at once on each; adds to the figures.
pub async fn round(
    a: &impl System,
    a_figures: &mut Figures,
    b: &impl System,
    b_figures: &mut Figures,
) -> anyhow::Result<()> {
    for prompt in PROMPTS {
        a_figures.c1.push(a.one(prompt).await?);
        b_figures.c1.push(b.one(prompt).await?);
    }
    batch(a, a_figures).await?;
    batch(b, b_figures).await
}

/// All prompts at once.
async fn batch(system: &impl System, figures: &mut Figures) -> anyhow::Result<()> {
    let started = Instant::now();
    let runs = futures::future::join_all(PROMPTS.map(|p| system.one(p))).await;
    let wall = started.elapsed();
    figures
        .c4
        .push((runs.into_iter().collect::<anyhow::Result<_>>()?, wall));
    Ok(())
}

fn request(prompt: &str) -> ChatRequest {
    ChatRequest {
        model: "auto".into(),
        messages: vec![Message::text(Role::User, prompt)],
        sampling: Sampling {
            temperature: Some(0.0),
            max_tokens: Some(MAX_TOKENS),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The worker's engine, in this process.
pub struct InProcess(pub Arc<dyn auxot_worker::Engine>);

impl System for InProcess {
    async fn one(&self, prompt: &'static str) -> anyhow::Result<Run> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = self.0.clone();
        let started = Instant::now();
        tokio::spawn(async move { engine.chat(request(prompt), tx).await });
        let mut ttft = None;
        while let Some(event) = rx.recv().await {
            match event {
                ChatEvent::Text { .. } if ttft.is_none() => ttft = Some(started.elapsed()),
                ChatEvent::Usage(usage) => {
                    return Ok(Run {
                        ttft: ttft.unwrap_or_default(),
                        total: started.elapsed(),
                        tokens: usage.completion_tokens,
                    })
                }
                ChatEvent::Error(e) => bail!("engine error: {}", e.message),
                _ => {}
            }
        }
        bail!("the engine ended without usage")
    }
}

/// A router's OpenAI endpoint, streaming.
pub struct ThroughRouter {
    pub client: reqwest::Client,
    pub url: String,
    pub key: String,
}

impl System for ThroughRouter {
    async fn one(&self, prompt: &'static str) -> anyhow::Result<Run> {
        let body = json!({
            "model": "auto",
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": MAX_TOKENS,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        let started = Instant::now();
        let response = self
            .client
            .post(format!("{}/api/openai/chat/completions", self.url))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("router answered {}", response.status());
        }
        let mut ttft = None;
        let mut tokens = None;
        let mut buffer = String::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk?));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let Some(data) = event.trim().strip_prefix("data: ") else {
                    continue;
                };
                let Ok(data) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                let has_text = data["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty());
                if has_text && ttft.is_none() {
                    ttft = Some(started.elapsed());
                }
                if let Some(n) = data["usage"]["completion_tokens"].as_u64() {
                    tokens = Some(n as u32);
                }
            }
        }
        Ok(Run {
            ttft: ttft.context("no text streamed")?,
            total: started.elapsed(),
            tokens: tokens.context("no usage streamed")?,
        })
    }
}

/// llama-cpp-python serving the same file in a child process, driven line by line.
pub struct LlamaCpp {
    child: Child,
    stdin: std::sync::Mutex<ChildStdin>,
    stdout: std::sync::Mutex<BufReader<ChildStdout>>,
}

impl LlamaCpp {
    /// Starts `python script model`; waits until it is ready (it loads the model on first use).
    pub fn start(python: &Path, script: &Path, model: &Path) -> anyhow::Result<LlamaCpp> {
        let mut child = Command::new(python)
            .arg(script)
            .arg(model)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut ready = String::new();
        stdout.read_line(&mut ready)?;
        if ready.trim() != "ready" {
            bail!("llama.cpp reference did not start: {ready:?}");
        }
        Ok(LlamaCpp {
            child,
            stdin: std::sync::Mutex::new(stdin),
            stdout: std::sync::Mutex::new(stdout),
        })
    }

    /// One round with `threads` compute threads: the prompts one by one, then all at once
    /// (llama-cpp-python serves one sequence at a time, so "at once" queues them as its own
    /// server does).
    pub fn round(&self, threads: usize, figures: &mut Figures) -> anyhow::Result<()> {
        let mut stdin = self.stdin.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let mut stdout = self.stdout.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let command = json!({"prompts": PROMPTS, "max_tokens": MAX_TOKENS, "threads": threads});
        writeln!(stdin, "{command}")?;
        stdin.flush()?;
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let reply: Value = serde_json::from_str(&line)
            .with_context(|| format!("llama.cpp reply {line:?} (its stderr is above)"))?;
        let run = |v: &Value| Run {
            ttft: Duration::from_secs_f64(v["ttft"].as_f64().unwrap_or(f64::NAN)),
            total: Duration::from_secs_f64(v["total"].as_f64().unwrap_or(f64::NAN)),
            tokens: v["tokens"].as_u64().unwrap_or(0) as u32,
        };
        for v in reply["c1"].as_array().context("c1")? {
            figures.c1.push(run(v));
        }
        let runs = reply["c4"]
            .as_array()
            .context("c4")?
            .iter()
            .map(run)
            .collect();
        let wall = Duration::from_secs_f64(reply["c4_wall"].as_f64().unwrap_or(f64::NAN));
        figures.c4.push((runs, wall));
        Ok(())
    }
}

impl Drop for LlamaCpp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
