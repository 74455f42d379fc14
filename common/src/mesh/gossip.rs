//! Cluster membership over chitchat, sealed with the cluster's gossip key.
//!
//! There is no coordinator: every node gossips its own state and learns everyone else's. The
//! interval is short (half a second) because a new worker should be routable everywhere within a
//! few rounds; per-node state is a handful of small keys, so the traffic stays low.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    NodeState, ProtocolVersion,
};
use tokio::sync::{watch, Mutex};

use super::keys;
use super::node::{NodeRole, NodeStateExt};
use super::sealed::{GossipStats, SealedUdpTransport};

/// What lets a node gossip: the cluster's id (nodes of other clusters are ignored before any
/// seal is checked) and the key that seals datagrams. Routers keep it in their data directory;
/// workers receive it when they enroll.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKey {
    pub cluster_id: String,
    pub key: [u8; 32],
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GossipKey({})", self.cluster_id)
    }
}

/// Gossip round interval.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(500);

/// Where and how a node gossips.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// This node's id; also the name on its QUIC certificate.
    pub node_id: String,
    /// UDP address to bind.
    pub listen_addr: SocketAddr,
    /// UDP address other nodes reach this node at.
    pub advertise_addr: SocketAddr,
    /// `host:port` of nodes to contact first.
    pub seeds: Vec<String>,
    pub interval: Duration,
}

/// Failure detection tuned for the short gossip interval: a silent node is declared dead within
/// a few seconds, and forgotten after an hour.
pub fn failure_detector_config() -> FailureDetectorConfig {
    FailureDetectorConfig {
        phi_threshold: 6.0,
        sampling_window_size: 1_000,
        max_interval: Duration::from_secs(5),
        initial_interval: Duration::from_secs(1),
        dead_node_grace_period: Duration::from_secs(3600),
    }
}

/// The chitchat settings every auxot node uses (also what in-process scale tests run).
pub fn chitchat_config(cluster_id: &str, config: GossipConfig) -> ChitchatConfig {
    ChitchatConfig {
        chitchat_id: ChitchatId::new(config.node_id, generation_now(), config.advertise_addr),
        cluster_id: cluster_id.to_string(),
        gossip_interval: config.interval,
        listen_addr: config.listen_addr,
        seed_nodes: config.seeds,
        failure_detector_config: failure_detector_config(),
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        // A node counts as live only once it has said what it is.
        extra_liveness_predicate: Some(Box::new(|state: &NodeState| state.role().is_some())),
        // Compressed digests: every auxot node runs the same chitchat, so the newer format is
        // safe, and digests are most of the gossip traffic.
        protocol_version: ProtocolVersion::V1,
    }
}

/// A start-time generation id: grows on every restart, so state left by a previous incarnation
/// of the same node id never shadows the new one.
pub fn generation_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A running gossip member.
pub struct Gossip {
    handle: ChitchatHandle,
    chitchat: Arc<Mutex<Chitchat>>,
    stats: Arc<GossipStats>,
}

impl Gossip {
    /// Joins the cluster with `initial` key-values already set, binding `config.listen_addr`.
    pub async fn spawn(
        key: &GossipKey,
        config: GossipConfig,
        initial: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        Self::spawn_on(key, config, None, initial).await
    }

    /// Like [`Self::spawn`], on `socket` when one is given (bound by the caller to
    /// `config.listen_addr`).
    pub async fn spawn_on(
        key: &GossipKey,
        config: GossipConfig,
        socket: Option<std::net::UdpSocket>,
        initial: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let chitchat_config = chitchat_config(&key.cluster_id, config);
        let mut transport = SealedUdpTransport::new(&key.key);
        if let Some(socket) = socket {
            transport = transport.with_socket(socket);
        }
        let stats = transport.stats();
        let handle = spawn_chitchat(chitchat_config, initial, &transport).await?;
        let chitchat = handle.chitchat();
        Ok(Gossip {
            handle,
            chitchat,
            stats,
        })
    }

    /// Traffic counters of this node's gossip socket.
    pub fn stats(&self) -> Arc<GossipStats> {
        self.stats.clone()
    }

    pub fn node_id(&self) -> &str {
        &self.handle.chitchat_id().node_id
    }

    /// This incarnation's generation, which signed values are bound to.
    pub fn generation(&self) -> u64 {
        self.handle.chitchat_id().generation_id
    }

    /// Sets keys on this node's own state.
    pub async fn set_many(&self, values: &[(&str, String)]) {
        let mut chitchat = self.chitchat.lock().await;
        let state = chitchat.self_node_state();
        for (key, value) in values {
            state.set(*key, value);
        }
    }

    pub async fn set(&self, key: &str, value: impl Into<String>) {
        self.set_many(&[(key, value.into())]).await;
    }

    /// Fires whenever a live node joins, leaves or changes state.
    pub async fn live_nodes(&self) -> watch::Receiver<BTreeMap<ChitchatId, NodeState>> {
        self.chitchat.lock().await.live_nodes_watcher()
    }

    /// Number of live nodes, this one included.
    pub async fn live_count(&self) -> usize {
        self.chitchat.lock().await.live_nodes().count()
    }

    /// Stops gossiping; the others declare this node dead once its heartbeats stop.
    pub fn shutdown(&self) {
        let _ = self.handle.initiate_shutdown();
    }
}

/// Live routers in a snapshot, as `(node id, http address)`.
pub fn routers_in(nodes: &BTreeMap<ChitchatId, NodeState>) -> Vec<(String, Option<String>)> {
    nodes
        .iter()
        .filter(|(_, state)| state.role() == Some(NodeRole::Router))
        .map(|(id, state)| {
            (
                id.node_id.to_string(),
                state.get(keys::HTTP_ADDR).map(str::to_string),
            )
        })
        .collect()
}
