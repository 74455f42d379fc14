//! What this worker tells the cluster through gossip.
//!
//! One [`WorkerAdvert`] is the single truth of what is published: every change is made to it
//! under one lock and written signed with this worker's key (`signed_key_values()`,
//! `signed_load()`), never with key strings of our own, so a republished advert can never undo a
//! newer change (draining turned back into ready by a tools refresh, say). chitchat ignores a
//! write of an unchanged value, so republishing the whole advert costs nothing on the wire.
//! Readiness only moves forward: not ready, ready, draining. The certificate chain is published
//! beside it, so routers can check the signatures.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use std::net::SocketAddr;

use auxot_common::mesh::gossip::{Gossip, GossipConfig, GossipKey};
use auxot_common::mesh::keys;
use auxot_common::mesh::node::{
    DeviceInfo, ModelInfo, NodeRole, NodeStateExt, Readiness, WorkerAdvert,
};
use auxot_common::pki::NodeKey;
use auxot_common::tools::ToolInfo;
use tokio::sync::Mutex;

use crate::server::WorkerState;
use crate::tools::ToolRunner;

/// How often the load figure may change in gossip.
const LOAD_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Largest tools advertisement. chitchat sends each key-value whole in a datagram (64 KB at
/// most) and in order, so one oversized value would hold back every later key, readiness
/// included: refuse it at start instead.
const MAX_TOOLS_ADVERT_BYTES: usize = 48 * 1024;

/// The tools as advertised, or why they cannot be gossiped.
pub fn tools_advert(tools: &ToolRunner) -> anyhow::Result<Vec<ToolInfo>> {
    let infos = tools.infos();
    let size = serde_json::to_string(&infos)?.len();
    if size > MAX_TOOLS_ADVERT_BYTES {
        bail!(
            "the tools of this worker describe themselves in {size} bytes; gossip carries at most {MAX_TOOLS_ADVERT_BYTES}: serve fewer tools (or MCP servers) per worker"
        );
    }
    Ok(infos)
}

/// What a worker serves once loaded.
pub struct Offer {
    pub model: Option<ModelInfo>,
    pub device: DeviceInfo,
    pub capacity: u32,
    pub tools: Vec<ToolInfo>,
}

/// This worker's gossip membership and the advert it publishes.
pub struct Advertiser {
    gossip: Gossip,
    key: Arc<NodeKey>,
    advert: Mutex<WorkerAdvert>,
}

impl Advertiser {
    /// Joins the cluster on `socket`, publishing its certificate `chain`, the product version
    /// and `advert` signed with `key`.
    pub async fn join(
        gossip_key: &GossipKey,
        config: GossipConfig,
        socket: std::net::UdpSocket,
        mut advert: WorkerAdvert,
        key: Arc<NodeKey>,
        chain: String,
    ) -> anyhow::Result<Self> {
        let initial = vec![
            (
                keys::ROLE.to_string(),
                NodeRole::Worker.as_str().to_string(),
            ),
            (keys::VERSION.to_string(), auxot_common::VERSION.to_string()),
            (keys::CERT.to_string(), chain),
        ];
        let gossip = Gossip::spawn_on(gossip_key, config, Some(socket), initial).await?;
        // Signatures bind values to this incarnation, known once chitchat has started.
        advert.generation = gossip.generation();
        gossip.set_many(&advert.signed_key_values(&key)).await;
        Ok(Advertiser {
            gossip,
            key,
            advert: Mutex::new(advert),
        })
    }

    /// Publishes what the worker serves and that it is ready; false (and nothing published)
    /// when it is already draining.
    pub async fn ready(&self, offer: Offer) -> bool {
        let mut advert = self.advert.lock().await;
        if advert.readiness == Readiness::Draining {
            return false;
        }
        advert.models = offer.model.into_iter().collect();
        advert.device = offer.device;
        advert.capacity = offer.capacity;
        advert.tools = offer.tools;
        advert.readiness = Readiness::Ready;
        self.gossip
            .set_many(&advert.signed_key_values(&self.key))
            .await;
        true
    }

    /// Tells routers to send nothing new.
    pub async fn draining(&self) {
        let mut advert = self.advert.lock().await;
        advert.readiness = Readiness::Draining;
        self.gossip
            .set_many(&advert.signed_key_values(&self.key))
            .await;
    }

    async fn set_load(&self, load: u32) {
        let mut advert = self.advert.lock().await;
        advert.load = load;
        let (key, value) = advert.signed_load(&self.key);
        self.gossip.set(key, value).await;
    }

    async fn set_tools(&self, tools: Vec<ToolInfo>) {
        let mut advert = self.advert.lock().await;
        advert.tools = tools;
        self.gossip
            .set_many(&advert.signed_key_values(&self.key))
            .await;
    }

    /// Publishes a renewed certificate chain.
    pub async fn set_chain(&self, chain: String) {
        self.gossip.set(keys::CERT, chain).await;
    }

    /// The gossip addresses of the routers in the cluster: where renewals go (TCP, same port).
    pub async fn routers(&self) -> Vec<SocketAddr> {
        let nodes = self.gossip.live_nodes().await;
        let nodes = nodes.borrow();
        nodes
            .iter()
            .filter(|(_, state)| state.role() == Some(NodeRole::Router))
            .map(|(id, _)| id.gossip_advertise_addr)
            .collect()
    }

    /// Stops gossiping; the others declare this node dead once its heartbeats stop.
    pub fn leave(&self) {
        self.gossip.shutdown();
    }
}

/// Publishes the load figure (at most once per interval) and the tools' availability whenever
/// it changes (an MCP server that died, for example). Runs until aborted.
pub async fn publish_changes(state: Arc<WorkerState>, advertiser: Arc<Advertiser>) {
    let mut last_load = None;
    let mut last_tools = state.tools.as_ref().and_then(|t| tools_advert(t).ok());
    let mut tick = tokio::time::interval(LOAD_PUBLISH_INTERVAL);
    loop {
        tick.tick().await;
        let load = state.in_flight();
        if last_load != Some(load) {
            advertiser.set_load(load).await;
            last_load = Some(load);
        }
        if let Some(tools) = &state.tools {
            // An advert grown too big keeps the last one that fitted.
            if let Ok(infos) = tools_advert(tools) {
                if last_tools.as_ref() != Some(&infos) {
                    advertiser.set_tools(infos.clone()).await;
                    last_tools = Some(infos);
                }
            }
        }
    }
}
