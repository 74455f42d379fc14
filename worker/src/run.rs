//! A worker's life: join the gossip cluster as not ready, load the engine, serve and advertise
//! ready, publish load once a second, and on SIGTERM drain (advertise draining, refuse new
//! requests, finish the ones in flight within a deadline) before leaving.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use auxot_common::mesh::addr;
use auxot_common::mesh::gossip::{Gossip, GossipConfig, DEFAULT_GOSSIP_INTERVAL};
use auxot_common::mesh::keys;
use auxot_common::mesh::node::{NodeRole, Readiness};
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::mesh::tls::NodeIdentity;
use auxot_common::secret::ClusterSecret;
use auxot_common::signal::stop_signal;
use tracing::{info, warn};

use crate::cli::{EngineKind, JoinArgs};
use crate::engine::mistral::{MistralEngine, MistralOptions};
use crate::engine::synthetic::{SyntheticEngine, SyntheticOptions};
use crate::engine::Engine;
use crate::server::{self, WorkerState};
use crate::tools::ToolRunner;

/// How often the load figure may change in gossip.
const LOAD_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

fn default_max_seqs() -> usize {
    if cfg!(feature = "cuda") {
        32
    } else {
        8
    }
}

async fn load_engine(args: &JoinArgs) -> anyhow::Result<Option<Arc<dyn Engine>>> {
    let max_seqs = args.max_seqs.unwrap_or_else(default_max_seqs);
    if !(args.gpu_memory_utilization > 0.0 && args.gpu_memory_utilization <= 1.0) {
        bail!("--gpu-memory-utilization must be greater than 0 and at most 1");
    }
    if max_seqs == 0 {
        bail!("--max-seqs must be at least 1");
    }
    match args.engine {
        EngineKind::Synthetic => {
            let engine = SyntheticEngine::new(SyntheticOptions {
                model_id: args
                    .model_name
                    .clone()
                    .unwrap_or_else(|| "synthetic".into()),
                time_to_first_token: Duration::from_millis(args.synthetic_ttft_ms),
                tokens_per_second: args.synthetic_tokens_per_sec,
                tokens: args.synthetic_tokens,
                capacity: max_seqs as u32,
            })
            .map_err(anyhow::Error::msg)?;
            Ok(Some(Arc::new(engine)))
        }
        EngineKind::Mistralrs => {
            let Some(model) = &args.model else {
                if args.tools.is_some() {
                    return Ok(None);
                }
                bail!("give --model (a .gguf file, a model directory or a Hugging Face id), or --tools for a tools-only worker");
            };
            let engine = MistralEngine::load(&MistralOptions {
                model: model.clone(),
                gguf_files: args.gguf_files.clone(),
                name: args.model_name.clone(),
                max_seqs,
                force_cpu: args.cpu,
                chat_template: args.chat_template.clone(),
                gpu_memory_utilization: args.gpu_memory_utilization,
            })
            .await?;
            Ok(Some(Arc::new(engine)))
        }
    }
}

async fn load_tools(args: &JoinArgs) -> anyhow::Result<Option<Arc<ToolRunner>>> {
    match &args.tools {
        None => Ok(None),
        Some(path) => {
            // Starts the file's MCP servers, so it is async.
            let runner = crate::tools::config::load(path)
                .await
                .with_context(|| format!("loading tools configuration {}", path.display()))?;
            Ok(Some(Arc::new(runner)))
        }
    }
}

/// Runs the worker until it is stopped.
pub async fn join(args: JoinArgs) -> anyhow::Result<()> {
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the join token from {}", path.display()))?,
        (None, None) => bail!("give the join token with --token or --token-file"),
    };
    let secret = ClusterSecret::from_join_token(&token).context("invalid join token")?;
    let tools = load_tools(&args).await?;

    // Bind QUIC first: its port is part of the default node id, and a taken port should fail
    // before minutes of model loading.
    let quic_socket = std::net::UdpSocket::bind(args.quic_addr)
        .with_context(|| format!("binding QUIC address {}", args.quic_addr))?;
    let quic_port = quic_socket.local_addr()?.port();
    drop(quic_socket);
    let node_id = match &args.name {
        Some(name) => addr::sanitize_node_id(name),
        None => addr::sanitize_node_id(&format!("worker-{}-{quic_port}", addr::hostname())),
    };
    let identity = NodeIdentity::issue(&secret, &node_id)?;
    let quic_bind = std::net::SocketAddr::new(args.quic_addr.ip(), quic_port);
    let endpoint = QuicEndpoint::bind(&identity, quic_bind, true)?;
    let quic_advertise =
        addr::advertise_addr(quic_bind, args.advertise_host.as_deref(), quic_port)?;

    let (gossip_bind, gossip_advertise) =
        addr::bind_and_advertise(args.gossip_addr, args.advertise_host.as_deref())
            .context("the gossip address")?;

    let initial = vec![
        (
            keys::ROLE.to_string(),
            NodeRole::Worker.as_str().to_string(),
        ),
        (keys::VERSION.to_string(), auxot_common::VERSION.to_string()),
        (keys::QUIC_ADDR.to_string(), quic_advertise.to_string()),
        (
            keys::READINESS.to_string(),
            Readiness::NotReady.as_str().to_string(),
        ),
    ];
    let gossip = Gossip::spawn(
        &secret,
        GossipConfig {
            node_id: node_id.clone(),
            listen_addr: gossip_bind,
            advertise_addr: gossip_advertise,
            seeds: args.seeds.clone(),
            interval: DEFAULT_GOSSIP_INTERVAL,
        },
        initial,
    )
    .await
    .context("joining the gossip cluster")?;
    info!(node = %node_id, gossip = %gossip_advertise, quic = %quic_advertise, cluster = %secret.cluster_id(), "joined cluster, loading");

    let engine = tokio::select! {
        engine = load_engine(&args) => engine?,
        _ = stop_signal() => {
            info!("stopped while loading");
            gossip.shutdown();
            return Ok(());
        }
    };

    let state = Arc::new(WorkerState::new(
        node_id.clone(),
        engine.clone(),
        tools.clone(),
    ));
    tokio::spawn(server::serve(endpoint.clone(), state.clone()));

    let mut advert = vec![(keys::CAPACITY, "0".to_string())];
    if let Some(engine) = &engine {
        advert = vec![
            (keys::MODELS, serde_json::to_string(&[engine.model()])?),
            (keys::DEVICE, serde_json::to_string(&engine.device())?),
            (keys::CAPACITY, engine.capacity().to_string()),
        ];
    }
    if let Some(tools) = &tools {
        advert.push((keys::TOOLS, tools_advert(tools)?));
    }
    advert.push((keys::LOAD, "0".to_string()));
    advert.push((keys::READINESS, Readiness::Ready.as_str().to_string()));
    gossip.set_many(&advert).await;
    info!(node = %node_id, model = ?engine.as_ref().map(|e| e.model().id.clone()), "ready");

    let gossip = Arc::new(gossip);
    let publisher = tokio::spawn(publish(state.clone(), gossip.clone()));
    stop_signal().await;

    info!(in_flight = state.in_flight(), "draining");
    state.start_draining();
    gossip
        .set(keys::READINESS, Readiness::Draining.as_str())
        .await;
    let deadline = Duration::from_secs(args.drain_timeout_secs);
    let drained = tokio::select! {
        _ = state.wait_idle() => true,
        _ = tokio::time::sleep(deadline) => false,
        // A second signal means "stop now".
        _ = stop_signal() => false,
    };
    if drained {
        info!("drained");
    } else {
        warn!(
            in_flight = state.in_flight(),
            "leaving with requests still in flight"
        );
    }
    publisher.abort();
    // Let the draining state reach every router before this node goes silent.
    tokio::time::sleep(DEFAULT_GOSSIP_INTERVAL * 2).await;
    gossip.shutdown();
    endpoint.close();
    endpoint.inner().wait_idle().await;
    Ok(())
}

/// Largest tools advertisement. chitchat sends each key-value whole in a datagram (64 KB at
/// most) and in order, so one oversized value would hold back every later key, readiness
/// included: refuse it at start instead.
const MAX_TOOLS_ADVERT_BYTES: usize = 48 * 1024;

/// The `tools` gossip value, or why it cannot be gossiped.
fn tools_advert(tools: &ToolRunner) -> anyhow::Result<String> {
    let advert = serde_json::to_string(&tools.infos())?;
    if advert.len() > MAX_TOOLS_ADVERT_BYTES {
        bail!(
            "the tools of this worker describe themselves in {} bytes; gossip carries at most {MAX_TOOLS_ADVERT_BYTES}: serve fewer tools (or MCP servers) per worker",
            advert.len()
        );
    }
    Ok(advert)
}

/// Publishes the load figure (at most once per interval) and the tools' availability whenever
/// it changes (an MCP server that died, for example).
async fn publish(state: Arc<WorkerState>, gossip: Arc<Gossip>) {
    let mut last_load = u32::MAX;
    let mut last_tools = state.tools.as_ref().and_then(|t| tools_advert(t).ok());
    let mut tick = tokio::time::interval(LOAD_PUBLISH_INTERVAL);
    loop {
        tick.tick().await;
        let load = state.in_flight();
        if load != last_load {
            gossip.set(keys::LOAD, load.to_string()).await;
            last_load = load;
        }
        if let Some(tools) = &state.tools {
            let advert = tools_advert(tools).ok();
            if advert.is_some() && advert != last_tools {
                if let Some(value) = &advert {
                    gossip.set(keys::TOOLS, value.clone()).await;
                }
                last_tools = advert;
            }
        }
    }
}
