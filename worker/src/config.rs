//! What a worker is given at start: its [`WorkerConfig`] and its bound [`Listeners`].
//!
//! The configuration is the command line's, minus what only a process deals with: the addresses
//! to bind become sockets the caller binds (so tests bind `127.0.0.1:0` and never race for a
//! port), the token file becomes the token's value, and the drain timeout is an argument of
//! `WorkerHandle::shutdown`. Defaults live here, as constants the CLI uses too.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::ValueEnum;

pub use crate::engine::mistral::cpu::Dequantize;

/// Default share of GPU memory for the KV cache.
pub const DEFAULT_GPU_MEMORY_UTILIZATION: f32 = 0.85;
/// Default synthetic time to first token, in milliseconds.
pub const DEFAULT_SYNTHETIC_TTFT_MS: u64 = 50;
/// Default synthetic pace.
pub const DEFAULT_SYNTHETIC_TOKENS_PER_SEC: f64 = 100.0;
/// Default time to keep trying to enroll, in seconds.
pub const DEFAULT_ENROLL_TIMEOUT_SECS: u64 = 120;
/// Default synthetic answer length.
pub const DEFAULT_SYNTHETIC_TOKENS: u32 = 16;

/// Which engine generates answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// mistral.rs running the model given with --model.
    Mistralrs,
    /// Fixed text at a fixed pace, for load tests of the router. Never gives real answers.
    Synthetic,
}

/// Whether the model is offered as reasoning-capable (routers refuse thinking requests for a
/// named model that is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ReasoningSetting {
    /// Judged from the chat template: it reacts to a thinking switch or effort, or opens a
    /// `<think>` block.
    #[default]
    Auto,
    /// The model reasons whatever its template looks like.
    On,
    /// Never offered as reasoning.
    Off,
}

impl ReasoningSetting {
    /// The setting when it is not left to detection.
    pub fn forced(self) -> Option<bool> {
        match self {
            ReasoningSetting::Auto => None,
            ReasoningSetting::On => Some(true),
            ReasoningSetting::Off => Some(false),
        }
    }
}

/// Everything a worker needs to know, except its sockets.
#[derive(Clone)]
pub struct WorkerConfig {
    /// Gossip addresses (`host:port`) of nodes already in the cluster.
    pub seeds: Vec<String>,
    /// The join token printed by `auxot-router setup` or `tokens create`: it lets the worker
    /// ask a router for a certificate.
    pub join_token: String,
    /// A `.gguf` file, a model directory, or a Hugging Face id; `None` on a tools-only worker.
    pub model: Option<String>,
    /// GGUF file(s) to use from a Hugging Face repository named by `model`.
    pub gguf_files: Vec<String>,
    /// Model id to advertise instead of the one derived from `model`.
    pub model_name: Option<String>,
    /// A `.json` or `.jinja` chat template overriding the model's own.
    pub chat_template: Option<PathBuf>,
    /// Whether the model is advertised as reasoning-capable.
    pub reasoning: ReasoningSetting,
    /// Requests run at once; `None` picks a default for the build (see [`Self::max_seqs`]).
    pub max_seqs: Option<usize>,
    /// Share of GPU memory given to the KV cache; ignored on CPU.
    pub gpu_memory_utilization: f32,
    /// Compute on the CPU even when a GPU is available.
    pub cpu: bool,
    /// Whether GGUF weights are expanded to F32 on a CPU (see [`crate::prepare_engine_environment`]).
    pub dequantize: Dequantize,
    /// Which engine generates answers.
    pub engine: EngineKind,
    /// Synthetic engine: time before the first token.
    pub synthetic_ttft: Duration,
    /// Synthetic engine: tokens per second after the first.
    pub synthetic_tokens_per_sec: f64,
    /// Synthetic engine: tokens per answer.
    pub synthetic_tokens: u32,
    /// Synthetic engine: prefill time per prompt token its modelled prefix cache misses.
    pub synthetic_prefill_per_token: Duration,
    /// Synthetic engine: conversation prefixes its modelled prefix cache holds (0: none).
    pub synthetic_prefix_cache: usize,
    /// Tools configuration file (TOML): the worker then also serves those tools.
    pub tools: Option<PathBuf>,
    /// Host or IP other nodes reach this one at (default: the bound address, or the address of
    /// the default route for a socket bound to an unspecified address).
    pub advertise_host: Option<String>,
    /// Node id, unique in the cluster (default: `worker-<hostname>-<quic port>`).
    pub node_name: Option<String>,
    /// Where the worker keeps its key between runs (`None`: a new key each start).
    pub state_dir: Option<PathBuf>,
    /// How long to keep trying to enroll (routers not up yet, the node id still held by this
    /// worker's previous incarnation).
    pub enroll_timeout: Duration,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The join token is the cluster secret: never in a log line.
        f.debug_struct("WorkerConfig")
            .field("seeds", &self.seeds)
            .field("join_token", &"<redacted>")
            .field("model", &self.model)
            .field("gguf_files", &self.gguf_files)
            .field("model_name", &self.model_name)
            .field("chat_template", &self.chat_template)
            .field("reasoning", &self.reasoning)
            .field("max_seqs", &self.max_seqs)
            .field("gpu_memory_utilization", &self.gpu_memory_utilization)
            .field("cpu", &self.cpu)
            .field("dequantize", &self.dequantize)
            .field("engine", &self.engine)
            .field("synthetic_ttft", &self.synthetic_ttft)
            .field("synthetic_tokens_per_sec", &self.synthetic_tokens_per_sec)
            .field("synthetic_tokens", &self.synthetic_tokens)
            .field(
                "synthetic_prefill_per_token",
                &self.synthetic_prefill_per_token,
            )
            .field("synthetic_prefix_cache", &self.synthetic_prefix_cache)
            .field("tools", &self.tools)
            .field("advertise_host", &self.advertise_host)
            .field("node_name", &self.node_name)
            .field("state_dir", &self.state_dir)
            .field("enroll_timeout", &self.enroll_timeout)
            .finish()
    }
}

impl WorkerConfig {
    /// A worker joining through `seeds` with `join_token`, everything else at its default: the
    /// mistral.rs engine with no model yet (set `model`, or `tools`, or the synthetic engine).
    pub fn new(seeds: Vec<String>, join_token: impl Into<String>) -> Self {
        WorkerConfig {
            seeds,
            join_token: join_token.into(),
            model: None,
            gguf_files: Vec::new(),
            model_name: None,
            chat_template: None,
            reasoning: ReasoningSetting::Auto,
            max_seqs: None,
            gpu_memory_utilization: DEFAULT_GPU_MEMORY_UTILIZATION,
            cpu: false,
            dequantize: Dequantize::Auto,
            engine: EngineKind::Mistralrs,
            synthetic_ttft: Duration::from_millis(DEFAULT_SYNTHETIC_TTFT_MS),
            synthetic_tokens_per_sec: DEFAULT_SYNTHETIC_TOKENS_PER_SEC,
            synthetic_tokens: DEFAULT_SYNTHETIC_TOKENS,
            synthetic_prefill_per_token: Duration::ZERO,
            synthetic_prefix_cache: 0,
            tools: None,
            advertise_host: None,
            node_name: None,
            state_dir: None,
            enroll_timeout: Duration::from_secs(DEFAULT_ENROLL_TIMEOUT_SECS),
        }
    }

    /// Requests run at once: the configured number, or 32 with the cuda feature and 8 on CPU.
    pub fn max_seqs(&self) -> usize {
        self.max_seqs
            .unwrap_or(if cfg!(feature = "cuda") { 32 } else { 8 })
    }

    /// Checks what can be checked before anything starts, so a mistake fails in milliseconds
    /// rather than after joining the cluster or loading a model.
    pub fn check(&self) -> anyhow::Result<()> {
        if !(self.gpu_memory_utilization > 0.0 && self.gpu_memory_utilization <= 1.0) {
            bail!("--gpu-memory-utilization must be greater than 0 and at most 1");
        }
        if self.max_seqs() == 0 {
            bail!("--max-seqs must be at least 1");
        }
        if let Some(template) = &self.chat_template {
            // mistral.rs panics on any other extension.
            let name = template.to_string_lossy();
            if !(name.ends_with(".json") || name.ends_with(".jinja")) {
                bail!(
                    "--chat-template {name} must be a .json or .jinja file (mistral.rs reads the kind from the extension)"
                );
            }
        }
        if self.engine == EngineKind::Mistralrs && self.model.is_none() && self.tools.is_none() {
            bail!("give --model (a .gguf file, a model directory or a Hugging Face id), or --tools for a tools-only worker");
        }
        Ok(())
    }
}

/// The two UDP sockets a worker serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// QUIC connections from routers.
    pub quic: UdpSocket,
    /// Gossip.
    pub gossip: UdpSocket,
    /// The operators' `/metrics` and `/health` (`--metrics-addr`), when asked for.
    pub metrics: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds both addresses, QUIC first: its port is part of the default node id, and a taken
    /// port should fail before anything else starts.
    pub fn bind(quic: SocketAddr, gossip: SocketAddr) -> anyhow::Result<Self> {
        let quic_socket =
            UdpSocket::bind(quic).with_context(|| format!("binding QUIC address {quic}"))?;
        let gossip_socket = UdpSocket::bind(gossip)
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding {gossip}/udp: {e}")))
            .context("the gossip address")?;
        Ok(Listeners {
            quic: quic_socket,
            gossip: gossip_socket,
            metrics: None,
        })
    }

    /// Also binds the operators' metrics address, when there is one.
    pub fn with_metrics(mut self, metrics: Option<SocketAddr>) -> anyhow::Result<Self> {
        if let Some(addr) = metrics {
            self.metrics = Some(
                std::net::TcpListener::bind(addr)
                    .with_context(|| format!("binding the metrics address {addr}"))?,
            );
        }
        Ok(self)
    }

    /// Both sockets on free loopback ports, for tests.
    pub fn localhost() -> anyhow::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::bind(any, any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_are_refused_before_anything_starts() {
        let ok = WorkerConfig {
            model: Some("m.gguf".into()),
            ..WorkerConfig::new(vec!["127.0.0.1:7947".into()], "t")
        };
        assert!(ok.check().is_ok());
        let cases: Vec<(WorkerConfig, &str)> = vec![
            (
                WorkerConfig {
                    gpu_memory_utilization: 1.5,
                    ..ok.clone()
                },
                "--gpu-memory-utilization must be greater than 0",
            ),
            (
                WorkerConfig {
                    max_seqs: Some(0),
                    ..ok.clone()
                },
                "--max-seqs must be at least 1",
            ),
            (
                WorkerConfig {
                    chat_template: Some("template.txt".into()),
                    ..ok.clone()
                },
                "must be a .json or .jinja file",
            ),
            (
                WorkerConfig {
                    model: None,
                    ..ok.clone()
                },
                "give --model",
            ),
        ];
        for (config, expected) in cases {
            let err = config.check().expect_err(expected);
            assert!(err.to_string().contains(expected), "{err}");
        }
        let synthetic = WorkerConfig {
            engine: EngineKind::Synthetic,
            ..WorkerConfig::new(Vec::new(), "t")
        };
        assert!(
            synthetic.check().is_ok(),
            "the synthetic engine needs no model"
        );
    }

    #[test]
    fn the_token_stays_out_of_debug_output() {
        let config = WorkerConfig::new(Vec::new(), "secret-join-token");
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret-join-token"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn a_taken_port_is_named() {
        let listeners = Listeners::localhost().expect("bind");
        let taken = listeners.gossip.local_addr().expect("addr");
        let free = SocketAddr::from(([127, 0, 0, 1], 0));
        let err = Listeners::bind(free, taken).expect_err("taken");
        let message = format!("{err:#}");
        assert!(
            message.starts_with(&format!("the gossip address: binding {taken}/udp: ")),
            "{message}"
        );
        let taken = listeners.quic.local_addr().expect("addr");
        let err = Listeners::bind(taken, free).expect_err("taken");
        assert!(
            format!("{err:#}").starts_with(&format!("binding QUIC address {taken}")),
            "{err:#}"
        );
    }
}
