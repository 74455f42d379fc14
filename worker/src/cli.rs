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
use crate::engine::mistral::options::{parse_device_layers, parse_isq};

mod models;

/// Help heading of the options that belong to a model.
const MODEL_OPTIONS: &str =
    "Model options (each applies to the --model before it; from AUXOT_* variables, to every model)";

/// Parses the command line (exiting with clap's message on a mistake), models grouped.
pub fn parse() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|err| err.exit())
}

/// Parses `args`: clap's parse, then each model option given to the `--model` it follows.
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory as _, FromArgMatches as _};
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let Command::Join(join) = &mut cli.command;
    if let Some(("join", sub)) = matches.subcommand() {
        join.models = models::group(sub, join)
            .map_err(|message| command.error(clap::error::ErrorKind::ArgumentConflict, message))?;
    }
    Ok(cli)
}

fn isq_value(value: &str) -> Result<String, String> {
    parse_isq(value).map(|_| value.trim().to_string())
}

fn device_layers_value(value: &str) -> Result<String, String> {
    parse_device_layers(value).map(|_| value.trim().to_string())
}

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
    /// on a tools-only worker. Repeat to serve several models, each in an engine of its own and
    /// advertised under its own id; the model options below apply to the --model they follow.
    #[arg(long, env = "AUXOT_MODEL", help_heading = MODEL_OPTIONS)]
    pub model: Vec<String>,

    /// GGUF file to use from a Hugging Face repository given with --model; repeat for split files.
    #[arg(long = "gguf-file", env = "AUXOT_GGUF_FILE", value_delimiter = ',', help_heading = MODEL_OPTIONS)]
    pub gguf_files: Vec<String>,

    /// Model id to advertise (default: the GGUF file name without .gguf, or the directory or hub
    /// id; with adapters, `:` and the adapter's name after it).
    #[arg(long, env = "AUXOT_MODEL_NAME", help_heading = MODEL_OPTIONS)]
    pub model_name: Vec<String>,

    /// Chat template (.json or .jinja) overriding the model's own.
    #[arg(long, env = "AUXOT_CHAT_TEMPLATE", help_heading = MODEL_OPTIONS)]
    pub chat_template: Vec<PathBuf>,

    /// Whether the models reason: auto (judged from each one's chat template), on or off (for
    /// every model of the worker).
    #[arg(long, value_enum, default_value = "auto", env = "AUXOT_REASONING")]
    pub reasoning: ReasoningSetting,

    /// Requests the model runs at once (and advertises as capacity). Default: on a GPU with
    /// PagedAttention, what its KV cache holds (cache tokens / --kv-tokens-per-request, at most
    /// 256); 32 on a GPU otherwise; 8 on a CPU.
    #[arg(long, env = "AUXOT_MAX_SEQS", help_heading = MODEL_OPTIONS)]
    pub max_seqs: Vec<usize>,

    /// GPU: share of the GPU's memory mistral.rs may fill, the model's weights included, with the
    /// KV cache (PagedAttention) [default: 0.85]. Models loaded later on the same GPU need a
    /// higher share than earlier ones (e.g. 0.45 then 0.9). Ignored on a CPU.
    #[arg(long, env = "AUXOT_GPU_MEMORY_UTILIZATION", help_heading = MODEL_OPTIONS)]
    pub gpu_memory_utilization: Vec<f32>,

    /// GPU: size the KV cache (PagedAttention) for this many tokens instead of a share of memory.
    #[arg(long, env = "AUXOT_KV_CACHE_TOKENS", help_heading = MODEL_OPTIONS)]
    pub kv_cache_tokens: Vec<usize>,

    /// GPU: tokens (prompt and answer) a request is assumed to keep in the KV cache when the
    /// capacity is derived from the cache's size [default: 4096].
    #[arg(long, env = "AUXOT_KV_TOKENS_PER_REQUEST", help_heading = MODEL_OPTIONS)]
    pub kv_tokens_per_request: Vec<usize>,

    /// In-situ quantization of a safetensors model while it loads: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
    /// Q2K, Q3K, Q4K, Q5K, Q6K, Q8K, HQQ4, HQQ8, FP8, AFQ2-8 (Metal), or a bit width (2, 3, 4,
    /// 5, 6, 8: the best type of that width for the device). GGUF models are already quantized.
    #[arg(long, env = "AUXOT_ISQ", value_parser = isq_value, help_heading = MODEL_OPTIONS)]
    pub isq: Vec<String>,

    /// GPU: put the whole model on this GPU (ordinal), instead of spreading its layers over every
    /// GPU the worker sees (the default; CUDA_VISIBLE_DEVICES limits which).
    #[arg(long, env = "AUXOT_GPU", help_heading = MODEL_OPTIONS)]
    pub gpu: Vec<usize>,

    /// GPU: place the model's repeating layers by hand, ORDINAL:LAYERS separated by `;` (e.g.
    /// `0:20;1:12`); layers not placed run on the CPU. The embeddings and head stay on GPU 0.
    #[arg(long, env = "AUXOT_DEVICE_LAYERS", value_parser = device_layers_value, help_heading = MODEL_OPTIONS)]
    pub device_layers: Vec<String>,

    /// GPU: the sequence length automatic device mapping reserves activation and KV memory for
    /// when it spreads layers over the GPUs [default: 4096].
    #[arg(long, env = "AUXOT_DEVICE_MAP_MAX_SEQ_LEN", help_heading = MODEL_OPTIONS)]
    pub device_map_max_seq_len: Vec<usize>,

    /// GPU: the batch size automatic device mapping reserves memory for [default: 1].
    #[arg(long, env = "AUXOT_DEVICE_MAP_MAX_BATCH_SIZE", help_heading = MODEL_OPTIONS)]
    pub device_map_max_batch_size: Vec<usize>,

    /// LoRA adapter (a Hugging Face id or a local PEFT directory) merged into a safetensors model
    /// while it loads; repeat to merge several. Serve one adapter per id with `--model BASE
    /// --model-name ID --lora ADAPTER` once per adapter. On a GGUF model: one adapter repository
    /// with --adapter-order.
    #[arg(long, env = "AUXOT_LORA", value_delimiter = ',', help_heading = MODEL_OPTIONS)]
    pub lora: Vec<String>,

    /// X-LoRA model (adapters mixed per token by a learned classifier) over the base model; needs
    /// --adapter-order.
    #[arg(long, env = "AUXOT_XLORA", help_heading = MODEL_OPTIONS)]
    pub xlora: Vec<String>,

    /// mistral.rs adapter ordering file (JSON: order, layers, base_model_id) for --xlora, or for
    /// --lora on a GGUF model.
    #[arg(long, env = "AUXOT_ADAPTER_ORDER", help_heading = MODEL_OPTIONS)]
    pub adapter_order: Vec<PathBuf>,

    /// X-LoRA: the target non-granular index (scalings computed once, then fixed).
    #[arg(long, env = "AUXOT_XLORA_TARGET_INDEX", help_heading = MODEL_OPTIONS)]
    pub xlora_target_index: Vec<usize>,

    /// Speculative decoding: a small model with the same tokenizer (a .gguf file, a directory or
    /// a Hugging Face id) drafts tokens the model then checks. No PagedAttention with it. Refused
    /// with mistral.rs 0.8.1, whose speculative pipeline deadlocks on its first step.
    #[arg(long, env = "AUXOT_DRAFT_MODEL", help_heading = MODEL_OPTIONS)]
    pub draft_model: Vec<String>,

    /// GGUF file to use from a Hugging Face repository given with --draft-model.
    #[arg(long = "draft-gguf-file", env = "AUXOT_DRAFT_GGUF_FILE", value_delimiter = ',', help_heading = MODEL_OPTIONS)]
    pub draft_gguf_files: Vec<String>,

    /// Speculative decoding: tokens the draft model proposes per step [default: 16].
    #[arg(long, env = "AUXOT_SPECULATIVE_GAMMA", help_heading = MODEL_OPTIONS)]
    pub speculative_gamma: Vec<usize>,

    /// The models with their options, grouped by [`parse`] from where each flag stands.
    #[arg(skip)]
    pub models: Vec<models::ModelSlot>,

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
        if self.engine != EngineKind::Mistralrs {
            return;
        }
        let mut weights = crate::engine::mistral::cpu::Weights::default();
        for spec in self.slots().iter().filter_map(models::ModelSlot::spec) {
            weights.in_situ_quantized |= spec.options.isq.is_some();
            if let Some(draft) = spec.options.draft_model {
                weights.models.push((draft, spec.options.draft_gguf_files));
            }
            weights.models.push((spec.model, spec.gguf_files));
        }
        if !weights.models.is_empty() {
            crate::engine::mistral::cpu::prepare_engine_environment(
                &weights,
                self.cpu,
                self.dequantize,
            );
        }
    }

    /// The models and their options: as [`parse`] grouped them, or (parsed by clap alone) all
    /// options given to the first.
    fn slots(&self) -> Vec<models::ModelSlot> {
        if self.models.is_empty() {
            models::group_in_order(self)
        } else {
            self.models.clone()
        }
    }

    /// How long a stop signal lets in-flight requests finish.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// The worker's configuration, with the token already read by [`Self::join_token`].
    pub fn into_config(self, join_token: String) -> WorkerConfig {
        let mut slots = self.slots().into_iter();
        let first = slots.next().unwrap_or_default();
        WorkerConfig {
            seeds: self.seeds,
            join_token,
            model: first.model,
            gguf_files: first.gguf_files,
            model_name: first.name,
            chat_template: first.chat_template,
            reasoning: self.reasoning,
            max_seqs: first.max_seqs,
            gpu_memory_utilization: first
                .gpu_memory_utilization
                .unwrap_or(DEFAULT_GPU_MEMORY_UTILIZATION),
            model_options: first.options,
            more_models: slots.filter_map(|slot| slot.spec()).collect(),
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
    use crate::config::{DeviceLayers, ModelOptions};

    fn join(args: &[&str]) -> JoinArgs {
        let argv = ["auxot-worker", "join"]
            .into_iter()
            .chain(args.iter().copied());
        match try_parse_from(argv).expect("parses").command {
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
    fn model_options_belong_to_the_model_before_them() {
        let args = join(&[
            "127.0.0.1:7947",
            "--token",
            "t",
            "--cpu",
            "--model",
            "a.gguf",
            "--model-name",
            "first",
            "--max-seqs",
            "3",
            "--model",
            "org/base",
            "--model-name",
            "sql",
            "--lora",
            "org/sql-lora",
            "--lora",
            "/adapters/style",
            "--isq",
            "q4k",
            "--model",
            "b.gguf",
            "--draft-model",
            "small.gguf",
            "--speculative-gamma",
            "4",
            "--gguf-file",
            "x.gguf,y.gguf",
        ]);
        let config = args.into_config("t".into());
        assert_eq!(config.model.as_deref(), Some("a.gguf"));
        assert_eq!(config.model_name.as_deref(), Some("first"));
        assert_eq!(config.max_seqs, Some(3));
        assert_eq!(config.model_options, ModelOptions::default());
        let models = config.models();
        assert_eq!(models.len(), 3);
        let sql = &models[1];
        assert_eq!(
            (sql.model.as_str(), sql.name.as_deref(), sql.max_seqs),
            ("org/base", Some("sql"), None)
        );
        assert_eq!(sql.options.lora, ["org/sql-lora", "/adapters/style"]);
        assert_eq!(sql.options.isq.as_deref(), Some("q4k"));
        let third = &models[2];
        assert_eq!(third.name, None);
        assert_eq!(third.gguf_files, ["x.gguf", "y.gguf"]);
        assert_eq!(third.options.draft_model.as_deref(), Some("small.gguf"));
        assert_eq!(third.options.speculative_gamma, Some(4));
        assert_eq!(third.gpu_memory_utilization, DEFAULT_GPU_MEMORY_UTILIZATION);
    }

    #[test]
    fn one_model_takes_its_options_wherever_they_stand() {
        let args = join(&[
            "127.0.0.1:7947",
            "--token",
            "t",
            "--model-name",
            "chat",
            "--device-layers",
            "0:10;1:12",
            "--gpu-memory-utilization",
            "0.5",
            "--model",
            "m.gguf",
        ]);
        let config = args.into_config("t".into());
        assert_eq!(config.model_name.as_deref(), Some("chat"));
        assert_eq!(config.gpu_memory_utilization, 0.5);
        assert_eq!(
            config.model_options.device_layers,
            Some(vec![
                DeviceLayers {
                    ordinal: 0,
                    layers: 10
                },
                DeviceLayers {
                    ordinal: 1,
                    layers: 12
                }
            ])
        );
        assert!(config.more_models.is_empty());
        // The synthetic engine names its model without --model.
        let synthetic = join(&[
            "127.0.0.1:7947",
            "--token",
            "t",
            "--engine",
            "synthetic",
            "--model-name",
            "fake",
            "--max-seqs",
            "2",
        ])
        .into_config("t".into());
        assert_eq!(synthetic.model, None);
        assert_eq!(synthetic.model_name.as_deref(), Some("fake"));
        assert_eq!(synthetic.max_seqs, Some(2));
    }

    #[test]
    fn misplaced_and_malformed_model_options_are_refused() {
        let parse = |args: &[&str]| {
            let argv = ["auxot-worker", "join", "127.0.0.1:7947", "--token", "t"]
                .into_iter()
                .chain(args.iter().copied());
            try_parse_from(argv).err().map(|e| e.to_string())
        };
        let cases: [(&[&str], &str); 5] = [
            (
                &["--isq", "q4k", "--model", "a", "--model", "b"],
                "--isq comes before the first --model",
            ),
            (
                &[
                    "--model",
                    "a",
                    "--model-name",
                    "x",
                    "--model-name",
                    "y",
                    "--model",
                    "b",
                ],
                "--model-name is given more than once for model 1",
            ),
            (&["--model", "a", "--isq", "Q9K"], "--isq Q9K"),
            (
                &["--model", "a", "--device-layers", "0-16"],
                "ORDINAL:LAYERS",
            ),
            (&["--model", "a", "--gpu", "one"], "invalid value"),
        ];
        for (args, expected) in cases {
            let message = parse(args).unwrap_or_else(|| panic!("{args:?} parsed"));
            assert!(message.contains(expected), "{args:?}: {message}");
        }
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
