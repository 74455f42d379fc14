//! A worker's life: [`start`] joins the gossip cluster as not ready and returns a
//! [`WorkerHandle`]; loading the engine, advertising ready and publishing load go on in the
//! background; [`WorkerHandle::shutdown`] drains (advertise draining, refuse new requests,
//! finish the ones in flight within a deadline) before leaving.
//!
//! `start` returns before the model is loaded because loading takes from a second to many
//! minutes and the caller has things to do meanwhile: a process waits for a stop signal, a test
//! starts the next node. [`WorkerHandle::ready`] is how either learns the outcome.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auxot_common::join_token::JoinToken;
use auxot_common::mesh::addr;
use auxot_common::mesh::gossip::{GossipConfig, DEFAULT_GOSSIP_INTERVAL};
use auxot_common::mesh::identity::{MeshIdentity, TrustPolicy};
use auxot_common::mesh::node::{DeviceInfo, Readiness, WorkerAdvert};
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::pki::{never_revoked, Role};
use auxot_common::tools::ToolInfo;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin;
use crate::advertise::{self, Advertiser, Offer};
use crate::config::{Listeners, WorkerConfig};
use crate::enrollment::{self, Renewal};
use crate::loading;
use crate::server::{self, WorkerState};

/// Where the worker is in its start.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Loading,
    Ready,
    /// Loading failed; the message says why.
    Failed(String),
}

/// A running worker.
pub struct WorkerHandle {
    node_id: String,
    /// Where the QUIC socket is bound.
    quic_addr: SocketAddr,
    /// Where the gossip socket is bound.
    gossip_addr: SocketAddr,
    state: Arc<WorkerState>,
    advertiser: Arc<Advertiser>,
    endpoint: QuicEndpoint,
    phase: watch::Receiver<Phase>,
    /// Loads the engine, then publishes load and tools changes.
    background: JoinHandle<()>,
    /// Accepts QUIC connections.
    server: JoinHandle<()>,
    /// Renews the certificate before it expires.
    renewal: JoinHandle<()>,
    /// Where `/metrics` and `/health` are served, if anywhere, and the task serving them.
    metrics_addr: Option<SocketAddr>,
    admin: Option<JoinHandle<()>>,
}

/// Starts a worker on `listeners`: checks the configuration, loads the tools, joins the cluster
/// as not ready and starts accepting routers' connections. The engine loads in the background;
/// await [`WorkerHandle::ready`] for the outcome.
pub async fn start(config: WorkerConfig, listeners: Listeners) -> anyhow::Result<WorkerHandle> {
    let token = JoinToken::parse(&config.join_token).context("invalid join token")?;
    config.check()?;
    let tools = loading::load_tools(&config).await?;
    let tools_advert = match &tools {
        Some(tools) => advertise::tools_advert(tools)?,
        None => Vec::new(),
    };

    let quic_addr = listeners.quic.local_addr().context("the QUIC socket")?;
    let gossip_addr = listeners.gossip.local_addr().context("the gossip socket")?;
    let node_id = match &config.node_name {
        Some(name) => addr::sanitize_node_id(name),
        None => {
            addr::sanitize_node_id(&format!("worker-{}-{}", addr::hostname(), quic_addr.port()))
        }
    };
    let key = enrollment::node_key(config.state_dir.as_deref())?;
    let enrolled =
        enrollment::join(&config.seeds, &token, &key, &node_id, config.enroll_timeout).await?;
    // The token's only use was to enroll: renewals use the certificate.
    drop(token);
    let gossip_key = enrolled.gossip.clone();
    let key = Arc::new(key);
    let identity = MeshIdentity::new(
        auxot_common::pki::NodeKey::from_pkcs8_der(key.pkcs8_der().secret_pkcs8_der())?,
        enrolled.chain,
        enrolled.root,
    )?;
    // Only routers may open streams here: another worker's certificate cannot ask this one to
    // generate or run tools.
    let policy = TrustPolicy {
        accept_from: vec![Role::Router],
        dial: Vec::new(),
        revoked: never_revoked(),
    };
    let endpoint = QuicEndpoint::on_socket(&identity, &policy, listeners.quic, true)?;
    let advertise_host = config.advertise_host.as_deref();
    let quic_advertise = addr::advertise_addr(quic_addr, advertise_host, quic_addr.port())
        .context("the QUIC address")?;
    let gossip_advertise = addr::advertise_addr(gossip_addr, advertise_host, gossip_addr.port())
        .context("the gossip address")?;

    let advert = WorkerAdvert {
        node_id: node_id.clone(),
        // chitchat carries the generation in the node's identity, not in a key.
        generation: 0,
        quic_addr: quic_advertise,
        readiness: Readiness::NotReady,
        models: Vec::new(),
        tools: Vec::new(),
        device: DeviceInfo::cpu(),
        capacity: 0,
        load: 0,
    };
    let gossip_config = GossipConfig {
        node_id: node_id.clone(),
        listen_addr: gossip_addr,
        advertise_addr: gossip_advertise,
        seeds: config.seeds.clone(),
        interval: DEFAULT_GOSSIP_INTERVAL,
    };
    let advertiser = Advertiser::join(
        &gossip_key,
        gossip_config,
        listeners.gossip,
        advert,
        key.clone(),
        identity.chain_value(),
    )
    .await
    .context("joining the gossip cluster")?;
    let advertiser = Arc::new(advertiser);
    info!(node = %node_id, role = identity.role().as_str(), gossip = %gossip_advertise, quic = %quic_advertise, cluster = %gossip_key.cluster_id, "joined cluster, loading");
    let renewal = tokio::spawn(enrollment::renew_forever(
        Renewal {
            key,
            root: auxot_common::pki::Fingerprint::of(identity.root()),
            endpoint: endpoint.clone(),
            policy,
            advertiser: advertiser.clone(),
        },
        identity,
    ));

    let state = Arc::new(WorkerState::new(node_id.clone(), tools));
    let server = tokio::spawn(server::serve(endpoint.clone(), state.clone()));
    let (metrics_addr, admin) = admin::start(listeners.metrics, &state)?;
    let (phase_tx, phase) = watch::channel(Phase::Loading);
    let background = tokio::spawn(bring_up(
        config,
        state.clone(),
        advertiser.clone(),
        tools_advert,
        phase_tx,
    ));
    Ok(WorkerHandle {
        node_id,
        quic_addr,
        gossip_addr,
        state,
        advertiser,
        endpoint,
        phase,
        background,
        server,
        renewal,
        metrics_addr,
        admin,
    })
}

/// Loads the engine, advertises the worker ready, then keeps its load and tools current.
async fn bring_up(
    config: WorkerConfig,
    state: Arc<WorkerState>,
    advertiser: Arc<Advertiser>,
    tools: Vec<ToolInfo>,
    phase: watch::Sender<Phase>,
) {
    let engine = match loading::load_engine(&config, &state.metrics).await {
        Ok(engine) => engine,
        Err(err) => {
            state.mark_failed();
            warn!("loading failed: {err:#}");
            phase.send_replace(Phase::Failed(format!("{err:#}")));
            return;
        }
    };
    let offer = Offer {
        model: engine.as_ref().map(|e| e.model().clone()),
        device: engine.as_ref().map_or_else(DeviceInfo::cpu, |e| e.device()),
        capacity: engine.as_ref().map_or(0, |e| e.capacity()),
        tools,
    };
    let model = offer.model.as_ref().map(|m| m.id.clone());
    state.set_engine(engine);
    if !advertiser.ready(offer).await {
        phase.send_replace(Phase::Failed("the worker was stopped while loading".into()));
        return;
    }
    info!(node = %state.node_id, ?model, "ready");
    phase.send_replace(Phase::Ready);
    advertise::publish_changes(state, advertiser).await;
}

impl WorkerHandle {
    /// This worker's node id in the cluster (also the name on its QUIC certificate).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The address the QUIC socket is bound to.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The address the gossip socket is bound to (what other nodes give as a seed).
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// Where `/metrics` and `/health` are served (`--metrics-addr`), if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> u32 {
        self.state.in_flight()
    }

    /// Resolves once the engine is loaded and the worker advertises itself ready, or with the
    /// reason loading failed.
    pub async fn ready(&self) -> anyhow::Result<()> {
        let mut phase = self.phase.clone();
        let outcome = phase
            .wait_for(|phase| *phase != Phase::Loading)
            .await
            .map(|phase| phase.clone());
        match outcome {
            Ok(Phase::Ready) => Ok(()),
            Ok(Phase::Failed(why)) => Err(anyhow::anyhow!(why)),
            // The loading task ended without a word: it panicked.
            Ok(Phase::Loading) | Err(_) => Err(anyhow::anyhow!(
                "loading stopped unexpectedly (see the log for a panic)"
            )),
        }
    }

    /// Drains and leaves: advertises draining and refuses new requests, lets the ones in flight
    /// finish for up to `drain_deadline`, then leaves the cluster and closes QUIC connections.
    /// A worker still loading stops loading.
    pub async fn shutdown(self, drain_deadline: Duration) {
        let was_ready = *self.phase.borrow() == Phase::Ready;
        info!(in_flight = self.state.in_flight(), "draining");
        self.state.start_draining();
        self.advertiser.draining().await;
        let drained = tokio::select! {
            _ = self.state.wait_idle() => true,
            _ = tokio::time::sleep(drain_deadline) => false,
        };
        if drained {
            info!("drained");
        } else {
            warn!(
                in_flight = self.state.in_flight(),
                "leaving with requests still in flight"
            );
        }
        self.background.abort();
        self.renewal.abort();
        if was_ready {
            // Let the draining state reach every router before this node goes silent.
            tokio::time::sleep(DEFAULT_GOSSIP_INTERVAL * 2).await;
        }
        self.advertiser.leave();
        self.endpoint.close();
        self.endpoint.inner().wait_idle().await;
        self.server.abort();
        if let Some(admin) = &self.admin {
            admin.abort();
        }
    }
}

impl Drop for WorkerHandle {
    /// A handle dropped without [`WorkerHandle::shutdown`] stops the worker at once, without
    /// draining: routers see its connections close and its gossip fall silent.
    fn drop(&mut self) {
        self.background.abort();
        self.renewal.abort();
        self.server.abort();
        if let Some(admin) = &self.admin {
            admin.abort();
        }
        self.advertiser.leave();
        self.endpoint.close();
    }
}
