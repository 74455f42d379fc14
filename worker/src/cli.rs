//! Command-line interface of `auxot-worker`. Every flag can also be set through the `AUXOT_*`
//! environment variable named in its help.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Join a cluster and serve until stopped (SIGTERM or Ctrl-C drains first).
    Join(JoinArgs),
}

/// Which engine generates answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// mistral.rs running the model given with --model.
    Mistralrs,
    /// Fixed text at a fixed pace, for load tests of the router. Never gives real answers.
    Synthetic,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Gossip address (host:port) of any node already in the cluster; repeat for more seeds.
    #[arg(
        required = true,
        value_name = "SEED",
        env = "AUXOT_SEEDS",
        value_delimiter = ','
    )]
    pub seeds: Vec<String>,

    /// Join token printed by `auxot-router setup` (it carries the cluster secret: prefer
    /// --token-file or AUXOT_TOKEN over the command line, which other users can read).
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

    /// Requests run at once (default: 32 with the cuda feature, 8 on CPU).
    #[arg(long, env = "AUXOT_MAX_SEQS")]
    pub max_seqs: Option<usize>,

    /// Share of GPU memory given to the KV cache (PagedAttention); ignored on CPU.
    #[arg(long, default_value_t = 0.85, env = "AUXOT_GPU_MEMORY_UTILIZATION")]
    pub gpu_memory_utilization: f32,

    /// Compute on the CPU even when a GPU is available.
    #[arg(long, env = "AUXOT_CPU")]
    pub cpu: bool,

    /// Engine that generates answers.
    #[arg(long, value_enum, default_value = "mistralrs", env = "AUXOT_ENGINE")]
    pub engine: EngineKind,

    /// Synthetic engine: milliseconds before the first token.
    #[arg(long, default_value_t = 50, env = "AUXOT_SYNTHETIC_TTFT_MS")]
    pub synthetic_ttft_ms: u64,

    /// Synthetic engine: tokens per second after the first.
    #[arg(long, default_value_t = 100.0, env = "AUXOT_SYNTHETIC_TOKENS_PER_SEC")]
    pub synthetic_tokens_per_sec: f64,

    /// Synthetic engine: tokens per answer.
    #[arg(long, default_value_t = 16, env = "AUXOT_SYNTHETIC_TOKENS")]
    pub synthetic_tokens: u32,

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

    /// Node id, unique in the cluster (default: worker-<hostname>-<quic port>).
    #[arg(long, env = "AUXOT_NODE_NAME")]
    pub name: Option<String>,

    /// Seconds to let in-flight requests finish after SIGTERM before leaving anyway.
    #[arg(long, default_value_t = 60, env = "AUXOT_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: u64,
}
