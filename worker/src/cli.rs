//! Command-line interface of `auxot-worker`. Every flag can also be set through the `AUXOT_*`
//! environment variable named in its help.
//!
//! It lives in the library so the binary and anything else that starts workers share one
//! definition: [`JoinArgs`] reads the token, binds the [`Listeners`] and becomes the
//! [`WorkerConfig`] that the library's `start` takes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use auxot_common::logging::LogFormat;
use clap::{Args, Parser, Subcommand};

use crate::config::{
    Dequantize, EngineKind, Listeners, ReasoningSetting, WorkerConfig,
    DEFAULT_GPU_MEMORY_UTILIZATION, DEFAULT_SYNTHETIC_TOKENS, DEFAULT_SYNTHETIC_TOKENS_PER_SEC,
    DEFAULT_SYNTHETIC_TTFT_MS,
};

#[derive(Debug, Parser)]
#[command(
    name = "auxot-worker",
    version,
    about = "Serve a model (and tools) to an auxot cluster.",
    long_about = "Serve a model (and tools) to an auxot cluster.\n\nA worker joins the cluster through any router or worker (the seed), loads its model with mistral.rs (on the GPU when built with the `cuda` feature, otherwise on the CPU), advertises it in gossip, and answers requests that routers send over QUIC."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log lines as text or as one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "AUXOT_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Join a cluster and serve until stopped (SIGTERM or Ctrl-C drains first).
    Join(JoinArgs),
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Gossip address (host:port) of a router; the worker enrolls there (TCP, same port) and
    /// joins the gossip through it. Repeat (or separate with commas) for more routers.
    #[arg(
        required = true,
        value_name = "SEED",
        env = "AUXOT_SEEDS",
        value_delimiter = ','
    )]
    pub seeds: Vec<String>,

    /// Join token printed by `auxot-router setup` or `tokens create`. Prefer --token-file or
    /// AUXOT_TOKEN: the command line is visible to other users in `ps`.
    #[arg(
        long,
        env = "AUXOT_TOKEN",
        hide_env_values = true,
        required_unless_present = "token_file",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,

    /// File holding the join token (for example a mounted secret).
    #[arg(long, env = "AUXOT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Model to serve: a .gguf file, a model directory, or a Hugging Face id (org/name). Optional
    /// on a tools-only worker.
    #[arg(long, env = "AUXOT_MODEL")]
    pub model: Option<String>,

    /// GGUF file to use from a Hugging Face repository given with --model; repeat for split files.
    #[arg(long = "gguf-file", env = "AUXOT_GGUF_FILE", value_delimiter = ',')]
    pub gguf_files: Vec<String>,

    /// Model id to advertise (default: the GGUF file name without .gguf, or the directory or hub id).
    #[arg(long, env = "AUXOT_MODEL_NAME")]
    pub model_name: Option<String>,

    /// Chat template (.json or .jinja) overriding the model's own.
    #[arg(long, env = "AUXOT_CHAT_TEMPLATE")]
    pub chat_template: Option<PathBuf>,

    /// Whether the model reasons: auto (judged from its chat template), on or off.
    #[arg(long, value_enum, default_value = "auto", env = "AUXOT_REASONING")]
    pub reasoning: ReasoningSetting,

    /// Requests run at once (default: 32 with the cuda feature, 8 on CPU).
    #[arg(long, env = "AUXOT_MAX_SEQS")]
    pub max_seqs: Option<usize>,

    /// Share of GPU memory given to the KV cache (PagedAttention); ignored on CPU.
    #[arg(long, default_value_t = DEFAULT_GPU_MEMORY_UTILIZATION, env = "AUXOT_GPU_MEMORY_UTILIZATION")]
    pub gpu_memory_utilization: f32,

    /// Compute on the CPU even when a GPU is available.
    #[arg(long, env = "AUXOT_CPU")]
    pub cpu: bool,

    /// GGUF on a CPU: expand the quantized weights to F32 at load (auto: when that stays under
    /// 2 GiB): prompts ~10x and decoding ~2x faster, for 4 bytes of memory per parameter.
    #[arg(long, value_enum, default_value = "auto", env = "AUXOT_DEQUANTIZE")]
    pub dequantize: Dequantize,

    /// Engine that generates answers.
    #[arg(long, value_enum, default_value = "mistralrs", env = "AUXOT_ENGINE")]
    pub engine: EngineKind,

    /// Synthetic engine: milliseconds before the first token.
    #[arg(long, default_value_t = DEFAULT_SYNTHETIC_TTFT_MS, env = "AUXOT_SYNTHETIC_TTFT_MS")]
    pub synthetic_ttft_ms: u64,

    /// Synthetic engine: tokens per second after the first; 0 sends them all at once, with no
    /// timer (router benchmarks).
    #[arg(long, default_value_t = DEFAULT_SYNTHETIC_TOKENS_PER_SEC, env = "AUXOT_SYNTHETIC_TOKENS_PER_SEC")]
    pub synthetic_tokens_per_sec: f64,

    /// Synthetic engine: tokens per answer.
    #[arg(long, default_value_t = DEFAULT_SYNTHETIC_TOKENS, env = "AUXOT_SYNTHETIC_TOKENS")]
    pub synthetic_tokens: u32,

    /// Synthetic engine: microseconds of prefill per prompt token not in its modelled prefix
    /// cache (0: prompts cost nothing).
    #[arg(
        long,
        default_value_t = 0,
        env = "AUXOT_SYNTHETIC_PREFILL_US_PER_TOKEN"
    )]
    pub synthetic_prefill_us_per_token: u64,

    /// Synthetic engine: conversation prefixes its modelled prefix cache holds (0: no cache).
    #[arg(long, default_value_t = 0, env = "AUXOT_SYNTHETIC_PREFIX_CACHE")]
    pub synthetic_prefix_cache: usize,

    /// Tools configuration file (TOML); the worker then also serves those tools.
    #[arg(long, env = "AUXOT_TOOLS")]
    pub tools: Option<PathBuf>,

    /// UDP address for gossip.
    #[arg(long, default_value = "0.0.0.0:7947", env = "AUXOT_GOSSIP_ADDR")]
    pub gossip_addr: SocketAddr,

    /// UDP address for QUIC connections from routers.
    #[arg(long, default_value = "0.0.0.0:7948", env = "AUXOT_QUIC_ADDR")]
    pub quic_addr: SocketAddr,

    /// Host or IP other nodes reach this one at (default: the bind address, or the address of
    /// the default route when binding to 0.0.0.0).
    #[arg(long, env = "AUXOT_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// Private TCP address serving /metrics and /health (200 once ready); off unless set.
    #[arg(long, env = "AUXOT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Node id, unique in the cluster (default: worker-<hostname>-<quic port>).
    #[arg(long, env = "AUXOT_NODE_NAME")]
    pub name: Option<String>,

    /// Seconds to let in-flight requests finish after SIGTERM before leaving anyway.
    #[arg(long, default_value_t = 60, env = "AUXOT_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: u64,

    /// Directory keeping this worker's key between runs, so a restarted worker gets its node id
    /// back at once (default: a new key each start).
    #[arg(long, env = "AUXOT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Seconds to keep trying to enroll before giving up.
    #[arg(long, default_value_t = crate::config::DEFAULT_ENROLL_TIMEOUT_SECS, env = "AUXOT_ENROLL_TIMEOUT_SECS")]
    pub enroll_timeout_secs: u64,
}

impl JoinArgs {
    /// The join token from --token (or AUXOT_TOKEN) or from the file --token-file names.
    pub fn join_token(&self) -> anyhow::Result<String> {
        match (&self.token, &self.token_file) {
            (Some(token), _) => Ok(token.clone()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the join token from {}", path.display())),
            (None, None) => bail!("give the join token with --token or --token-file"),
        }
    }

    /// Binds --quic-addr, --gossip-addr and --metrics-addr.
    pub fn bind(&self) -> anyhow::Result<Listeners> {
        Listeners::bind(self.quic_addr, self.gossip_addr)?.with_metrics(self.metrics_addr)
    }

    /// Decides whether GGUF weights are expanded on a CPU and sets candle's switch for it. Call
    /// before starting any thread (see `auxot_worker::prepare_engine_environment`).
    pub fn prepare_engine_environment(&self) {
        if let (EngineKind::Mistralrs, Some(model)) = (self.engine, &self.model) {
            crate::engine::mistral::cpu::prepare_engine_environment(
                model,
                &self.gguf_files,
                self.cpu,
                self.dequantize,
            );
        }
    }

    /// How long a stop signal lets in-flight requests finish.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// The worker's configuration, with the token already read by [`Self::join_token`].
    pub fn into_config(self, join_token: String) -> WorkerConfig {
        WorkerConfig {
            seeds: self.seeds,
            join_token,
            model: self.model,
            gguf_files: self.gguf_files,
            model_name: self.model_name,
            chat_template: self.chat_template,
            reasoning: self.reasoning,
            max_seqs: self.max_seqs,
            gpu_memory_utilization: self.gpu_memory_utilization,
            cpu: self.cpu,
            dequantize: self.dequantize,
            engine: self.engine,
            synthetic_ttft: Duration::from_millis(self.synthetic_ttft_ms),
            synthetic_tokens_per_sec: self.synthetic_tokens_per_sec,
            synthetic_tokens: self.synthetic_tokens,
            synthetic_prefill_per_token: Duration::from_micros(self.synthetic_prefill_us_per_token),
            synthetic_prefix_cache: self.synthetic_prefix_cache,
            tools: self.tools,
            advertise_host: self.advertise_host,
            node_name: self.name,
            state_dir: self.state_dir,
            enroll_timeout: Duration::from_secs(self.enroll_timeout_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(args: &[&str]) -> JoinArgs {
        let argv = ["auxot-worker", "join"]
            .into_iter()
            .chain(args.iter().copied());
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Join(args) => args,
        }
    }

    #[test]
    fn flags_become_the_configuration() {
        let args = join(&[
            "10.0.0.1:7947,10.0.0.2:7947",
            "--token",
            "tok",
            "--model",
            "m.gguf",
            "--engine",
            "synthetic",
            "--synthetic-ttft-ms",
            "5",
            "--name",
            "w1",
            "--drain-timeout-secs",
            "7",
        ]);
        assert_eq!(args.join_token().expect("token"), "tok");
        assert_eq!(args.drain_timeout(), Duration::from_secs(7));
        let config = args.into_config("tok".into());
        assert_eq!(config.seeds, ["10.0.0.1:7947", "10.0.0.2:7947"]);
        assert_eq!(config.join_token, "tok");
        assert_eq!(config.model.as_deref(), Some("m.gguf"));
        assert_eq!(config.engine, EngineKind::Synthetic);
        assert_eq!(config.synthetic_ttft, Duration::from_millis(5));
        assert_eq!(config.node_name.as_deref(), Some("w1"));
        let defaults = WorkerConfig::new(Vec::new(), "tok");
        assert_eq!(
            config.gpu_memory_utilization,
            defaults.gpu_memory_utilization
        );
        assert_eq!(config.synthetic_tokens, defaults.synthetic_tokens);
    }

    #[test]
    fn the_token_can_come_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file").expect("write");
        let path = path.display().to_string();
        let args = join(&["127.0.0.1:7947", "--token-file", &path]);
        assert_eq!(args.join_token().expect("token"), "from-file");
        let missing = join(&["127.0.0.1:7947", "--token-file", "/nonexistent/token"]);
        let err = missing.join_token().expect_err("no file");
        assert!(
            err.to_string()
                .starts_with("reading the join token from /nonexistent/token"),
            "{err}"
        );
    }
}
