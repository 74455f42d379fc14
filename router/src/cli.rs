//! Command-line interface of `auxot-router`. Every flag can also be set through the `AUXOT_*`
//! environment variable named in its help.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use auxot_common::logging::LogFormat;

use crate::routing::PolicyKind;

#[derive(Debug, Parser)]
#[command(
    name = "auxot-router",
    version,
    about = "The API front of an auxot cluster: OpenAI- and Anthropic-compatible endpoints over a mesh of inference workers.",
    long_about = "The API front of an auxot cluster.\n\n`setup` creates a cluster (secret, first API key, worker join token). `serve` runs a router: it joins the cluster's gossip, sees which workers serve which models, and forwards each API request over QUIC to the least-loaded worker that serves the requested model. Run as many routers as you like behind a load balancer."
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
    /// Create a new cluster in the data directory and print its first API key and join token.
    Setup(SetupArgs),
    /// Run a router.
    Serve(ServeArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Args)]
pub struct DataDir {
    /// Directory holding the cluster secret and API key hashes.
    #[arg(long, default_value = "auxot-data", env = "AUXOT_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub data: DataDir,

    /// Name recorded with the first API key.
    #[arg(long, default_value = "default", env = "AUXOT_KEY_NAME")]
    pub key_name: String,

    /// Print the result as one JSON object (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it once.
    Create {
        #[command(flatten)]
        data: DataDir,
        /// A name to recognise the key by.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List key ids and names.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Revoke the key with this id (the 12 characters after `rtr_`). Running routers keep
    /// accepting it until restarted.
    Revoke {
        #[command(flatten)]
        data: DataDir,
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDir,

    /// Address for the HTTP API.
    #[arg(long, default_value = "0.0.0.0:8080", env = "AUXOT_HTTP_ADDR")]
    pub http_addr: SocketAddr,

    /// UDP address for gossip; workers use it (or any other node's) as their seed.
    #[arg(long, default_value = "0.0.0.0:7946", env = "AUXOT_GOSSIP_ADDR")]
    pub gossip_addr: SocketAddr,

    /// Private address serving /metrics and /health without a key (else /metrics wants one).
    #[arg(long, env = "AUXOT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Local UDP address for QUIC connections to workers (port 0 picks a free one).
    #[arg(long, default_value = "0.0.0.0:0", env = "AUXOT_QUIC_ADDR")]
    pub quic_addr: SocketAddr,

    /// Host or IP other nodes reach this one at (default: the bind address, or the address of
    /// the default route when binding to 0.0.0.0).
    #[arg(long, env = "AUXOT_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// Gossip address (host:port) of another node to join through; repeatable. Not needed for
    /// the first router.
    #[arg(long = "seed", env = "AUXOT_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,

    /// Node id, unique in the cluster (default: router-<hostname>-<http port>).
    #[arg(long, env = "AUXOT_NODE_NAME")]
    pub name: Option<String>,

    /// How to choose among workers serving a model.
    #[arg(long, value_enum, default_value = "p2c", env = "AUXOT_ROUTING")]
    pub routing: PolicyKind,

    /// Milliseconds a request may wait for a free slot when every worker is at capacity, before
    /// it is refused with 429 (OpenAI) or 529 (Anthropic).
    #[arg(long, default_value_t = 5000, env = "AUXOT_QUEUE_TIMEOUT_MS")]
    pub queue_timeout_ms: u64,

    /// Requests that may wait for a slot at once; more are refused at once.
    #[arg(long, default_value_t = 256, env = "AUXOT_MAX_QUEUED")]
    pub max_queued: usize,

    /// Run the mesh's tools (from tools workers) server-side for every request that does not
    /// opt out with `"auxot_mesh_tools": false`; without this flag requests opt in.
    #[arg(long, env = "AUXOT_MESH_TOOLS")]
    pub mesh_tools: bool,

    /// Tool rounds the router runs for one request in the server-side tool loop.
    #[arg(long, default_value_t = 4, env = "AUXOT_MAX_TOOL_ROUNDS")]
    pub max_tool_rounds: u32,

    /// Let image URLs in requests point at loopback, private and link-local addresses (off by
    /// default: callers could otherwise make the router probe its own network).
    #[arg(long, env = "AUXOT_ALLOW_PRIVATE_IMAGE_URLS")]
    pub allow_private_image_urls: bool,

    /// Seconds to let open requests and streams finish after SIGTERM.
    #[arg(long, default_value_t = 30, env = "AUXOT_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: u64,
}
