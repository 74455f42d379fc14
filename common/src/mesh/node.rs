//! Typed views of gossip state: what a node is and what it offers.
//!
//! chitchat stores string key-values; [`NodeStateExt`] reads them into types and
//! [`WorkerAdvert`] is the routing-relevant summary of one worker. Parsing is lenient per key (a
//! worker whose `load` is garbled still routes, with load 0) but a worker without a QUIC address
//! or models is not routable at all.

use std::net::SocketAddr;

use chitchat::NodeState;
use serde::{Deserialize, Serialize};

use super::keys;
use crate::tools::ToolInfo;

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    Router,
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Router => "router",
            NodeRole::Worker => "worker",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "router" => Some(NodeRole::Router),
            "worker" => Some(NodeRole::Worker),
            _ => None,
        }
    }
}

/// Whether a worker takes new requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Starting: loading the model.
    NotReady,
    /// Serving.
    Ready,
    /// Stopping: finishing what it has, taking nothing new.
    Draining,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::NotReady => "not_ready",
            Readiness::Ready => "ready",
            Readiness::Draining => "draining",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "not_ready" => Some(Readiness::NotReady),
            "ready" => Some(Readiness::Ready),
            "draining" => Some(Readiness::Draining),
            _ => None,
        }
    }
}

/// A model a worker serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The id callers put in `model`.
    pub id: String,
    /// Longest prompt plus answer in tokens, when the engine knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u32>,
    /// Accepts images.
    #[serde(default)]
    pub vision: bool,
    /// Produces reasoning separately from the answer.
    #[serde(default)]
    pub reasoning: bool,
}

/// Where a worker computes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `cpu` or `cuda`.
    pub kind: String,
    /// GPU model name, or the CPU description.
    pub name: String,
    /// Total memory of the GPU in MiB (absent on CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Number of GPUs used.
    #[serde(default)]
    pub count: u32,
}

impl DeviceInfo {
    pub fn cpu() -> Self {
        DeviceInfo {
            kind: "cpu".into(),
            name: "cpu".into(),
            memory_mib: None,
            count: 0,
        }
    }
}

/// Everything a router needs to route to one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerAdvert {
    pub node_id: String,
    /// Start time of this incarnation; a restarted worker has a larger one.
    pub generation: u64,
    pub quic_addr: SocketAddr,
    pub readiness: Readiness,
    pub models: Vec<ModelInfo>,
    pub tools: Vec<ToolInfo>,
    pub device: DeviceInfo,
    /// Requests it runs at once.
    pub capacity: u32,
    /// Requests in flight when it last published.
    pub load: u32,
}

impl WorkerAdvert {
    pub fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m.id == model)
    }
}

/// Typed reads of a node's gossip state.
pub trait NodeStateExt {
    fn role(&self) -> Option<NodeRole>;
    fn readiness(&self) -> Option<Readiness>;
    fn parsed<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T>;
    /// The worker's advertisement, if this node is a worker with an address.
    fn worker_advert(&self) -> Option<WorkerAdvert>;
}

impl NodeStateExt for NodeState {
    fn role(&self) -> Option<NodeRole> {
        self.get(keys::ROLE).and_then(NodeRole::parse)
    }

    fn readiness(&self) -> Option<Readiness> {
        self.get(keys::READINESS).and_then(Readiness::parse)
    }

    fn parsed<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.get(key).and_then(|v| serde_json::from_str(v).ok())
    }

    fn worker_advert(&self) -> Option<WorkerAdvert> {
        if self.role() != Some(NodeRole::Worker) {
            return None;
        }
        let id = self.chitchat_id();
        Some(WorkerAdvert {
            node_id: id.node_id.to_string(),
            generation: id.generation_id,
            quic_addr: self.get(keys::QUIC_ADDR)?.parse().ok()?,
            readiness: self.readiness().unwrap_or(Readiness::NotReady),
            models: self.parsed(keys::MODELS).unwrap_or_default(),
            tools: self.parsed(keys::TOOLS).unwrap_or_default(),
            device: self.parsed(keys::DEVICE).unwrap_or_else(DeviceInfo::cpu),
            capacity: self.parsed(keys::CAPACITY).unwrap_or(1),
            load: self.parsed(keys::LOAD).unwrap_or(0),
        })
    }
}
