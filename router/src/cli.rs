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
    long_about = "The API front of an auxot cluster.\n\n`setup` creates a cluster (certificate authority, gossip key, first API key, first admin key, first worker join token). `serve` runs a router: it joins the cluster's gossip, enrolls workers (issues their certificates), sees which workers serve which models, and forwards each API request over QUIC to the least-loaded worker that serves the requested model. Run as many routers as you like behind a load balancer, each with a copy of the data directory. `tokens` and `workers` manage join tokens and workers through a running router's admin API."
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

// Parsed once at start-up: boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new cluster in the data directory and print its first API key, admin key and
    /// join token.
    Setup(SetupArgs),
    /// Run a router.
    Serve(Box<ServeArgs>),
    /// Convert a data directory made by an older auxot (one shared secret) to per-node
    /// certificates; prints a new join token and an admin key.
    Migrate(MigrateArgs),
    /// Manage API and admin keys: create, list, limits, usage, revoke (through a router's
    /// admin API, or offline with --data-dir).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Every node of the cluster in one table: routers and workers, roles, models, load,
    /// capacity, versions.
    Status {
        #[command(flatten)]
        client: AdminClient,
    },
    /// Manage worker join tokens through a router's admin API.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// List and revoke workers through a router's admin API.
    #[command(subcommand)]
    Workers(WorkersCommand),
}

#[derive(Debug, Args)]
pub struct DataDir {
    /// Directory holding the cluster's CA, gossip key, key hashes and records.
    #[arg(long, default_value = "auxot-data", env = "AUXOT_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// How the CLI reaches a running router's admin API.
#[derive(Debug, Args)]
pub struct AdminClient {
    /// Base URL of a router (any router: changes replicate to all).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "AUXOT_ROUTER_URL"
    )]
    pub router: String,
    /// The admin key (printed by `setup`); prefer --admin-key-file, the command line is visible
    /// to other users.
    #[arg(long, env = "AUXOT_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// File holding the admin key.
    #[arg(long, env = "AUXOT_ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a join token and print it once.
    Create {
        #[command(flatten)]
        client: AdminClient,
        /// `worker` (models and tools) or `tools` (tools only).
        #[arg(long, default_value = "worker")]
        role: String,
        /// A name to recognise the token by.
        #[arg(long, default_value = "")]
        name: String,
        /// Hours the token enrolls workers for (default: until revoked).
        #[arg(long)]
        ttl_hours: Option<u64>,
    },
    /// List tokens (ids, roles, expiry; never secrets).
    List {
        #[command(flatten)]
        client: AdminClient,
    },
    /// Revoke a token: it enrolls no more (workers it enrolled keep running).
    Revoke {
        #[command(flatten)]
        client: AdminClient,
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Nodes, roles, readiness and certificate expiry, as the router sees them.
    List {
        #[command(flatten)]
        client: AdminClient,
    },
    /// Take a worker out of routing on every router and stop it from renewing.
    Revoke {
        #[command(flatten)]
        client: AdminClient,
        node: String,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub data: DataDir,

    /// Name recorded with the first API key.
    #[arg(long, default_value = "default", env = "AUXOT_KEY_NAME")]
    pub key_name: String,

    /// Keep the root CA's key in this directory (take it offline afterwards) and give the
    /// routers only an intermediate CA signed by it.
    #[arg(long, env = "AUXOT_OFFLINE_ROOT")]
    pub offline_root: Option<PathBuf>,

    /// Print the result as one JSON object (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where `keys` commands act: a running router's admin API (live, every router within
/// seconds), or a data directory's `keys.json` offline.
#[derive(Debug, Args)]
pub struct KeysTarget {
    /// Work offline on this data directory's `keys.json` instead of a router's admin API
    /// (running routers re-read it every `--keys-reload-secs`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub client: AdminClient,
}

/// Limits of a key; each also takes `none` for no limit.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Requests per minute (a calendar minute).
    #[arg(long, value_name = "N|none")]
    pub rpm: Option<String>,
    /// Prompt plus completion tokens per minute.
    #[arg(long, value_name = "N|none")]
    pub tpm: Option<String>,
    /// Requests at once.
    #[arg(long, value_name = "N|none")]
    pub concurrent: Option<String>,
    /// Prompt plus completion tokens over the key's life.
    #[arg(long, value_name = "N|none")]
    pub budget: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once.
    Create {
        #[command(flatten)]
        target: KeysTarget,
        /// A name to recognise the key by.
        #[arg(long, default_value = "default")]
        name: String,
        /// An admin key (the admin API only) instead of an API key.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List keys: ids, names, scopes, limits and usage (never hashes).
    List {
        #[command(flatten)]
        target: KeysTarget,
    },
    /// Show one key with its limits and its usage this minute, hour, day and in all.
    Get {
        #[command(flatten)]
        client: AdminClient,
        id: String,
    },
    /// Change a key's limits (those given; `none` removes one).
    Limits {
        #[command(flatten)]
        client: AdminClient,
        id: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Revoke the key with this id (the 12 characters after `rtr_`): refused on every router
    /// within seconds (offline: when routers next re-read `keys.json`).
    Revoke {
        #[command(flatten)]
        target: KeysTarget,
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

    /// UDP address for gossip; workers give it as their seed and enroll at the same address on
    /// TCP.
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
    #[arg(
        long,
        value_enum,
        default_value = "prefix-affinity",
        env = "AUXOT_ROUTING"
    )]
    pub routing: PolicyKind,

    /// Times one generation may move to another worker when its worker dies or stalls after
    /// output reached the caller (0: end the stream with an error instead).
    #[arg(long, default_value_t = crate::generation::DEFAULT_MAX_CONTINUATIONS, env = "AUXOT_MAX_CONTINUATIONS")]
    pub max_continuations: u32,

    /// Seconds a worker may go silent in the middle of a generation before it counts as stalled
    /// (and the generation continues elsewhere).
    #[arg(long, default_value_t = 300, env = "AUXOT_WORKER_STALL_TIMEOUT_SECS")]
    pub worker_stall_timeout_secs: u64,

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

    /// Lifetime of the certificates this router issues to workers, in seconds; workers renew at
    /// two thirds of it, so a revoked worker's certificate is useless soon after.
    #[arg(long, default_value_t = 24 * 3600, env = "AUXOT_NODE_CERT_LIFETIME_SECS", value_parser = clap::value_parser!(u64).range(10..))]
    pub node_cert_lifetime_secs: u64,

    /// Seconds a client has to send a request head, from its first byte (and a new connection
    /// from its opening).
    #[arg(long, default_value_t = 10, env = "AUXOT_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: u64,

    /// Seconds a kept-alive connection may sit between two requests before it is closed.
    #[arg(long, default_value_t = 60, env = "AUXOT_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: u64,

    /// Seconds a response (or a stream) may wait for a client that stopped reading before the
    /// connection is cut and its generation cancelled.
    #[arg(long, default_value_t = 30, env = "AUXOT_WRITE_TIMEOUT_SECS")]
    pub write_timeout_secs: u64,

    /// Seconds a client has to send a whole request body (408 after).
    #[arg(long, default_value_t = 30, env = "AUXOT_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: u64,

    /// Client connections served at once; more get 503 and are closed.
    #[arg(long, default_value_t = 1024, env = "AUXOT_MAX_CONNECTIONS")]
    pub max_connections: usize,

    /// Largest body of the chat, completions, responses, embeddings, messages and count_tokens
    /// endpoints in bytes (413 above).
    #[arg(long, default_value_t = 16 * 1024 * 1024, env = "AUXOT_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,

    /// Largest body of the tools execute and `/mcp` endpoints in bytes (413 above).
    #[arg(long, default_value_t = 1024 * 1024, env = "AUXOT_MAX_TOOL_BODY_BYTES")]
    pub max_tool_body_bytes: usize,

    /// Bytes of request bodies held at once across all requests; past it, requests get 503.
    #[arg(long, default_value_t = 128 * 1024 * 1024, env = "AUXOT_BODY_BUDGET_BYTES")]
    pub body_budget_bytes: usize,

    /// Seconds one chat request may take from its body to its last event (504, or an error
    /// event in a stream).
    #[arg(long, default_value_t = 900, env = "AUXOT_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: u64,

    /// Milliseconds a worker has to answer a request's first frame before it counts as wedged
    /// and the request moves to another worker.
    #[arg(
        long,
        default_value_t = 10_000,
        env = "AUXOT_WORKER_FIRST_FRAME_TIMEOUT_MS"
    )]
    pub worker_first_frame_timeout_ms: u64,

    /// Seconds a worker has to produce a request's first output (prefill included).
    #[arg(long, default_value_t = 300, env = "AUXOT_FIRST_OUTPUT_TIMEOUT_SECS")]
    pub first_output_timeout_secs: u64,

    /// Seconds between two re-reads of the API keys (revocations take effect then).
    #[arg(long, default_value_t = 30, env = "AUXOT_KEYS_RELOAD_SECS")]
    pub keys_reload_secs: u64,
}
