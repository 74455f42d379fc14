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

/// What a model does with its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Generates text: chat, completions, responses.
    #[default]
    Chat,
    /// Turns text into vectors: only `/embeddings`.
    Embedding,
}

impl ModelKind {
    pub fn is_chat(&self) -> bool {
        *self == ModelKind::Chat
    }
}

/// A model a worker serves.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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
    /// Chat or embedding; adverts from workers that predate the field are chat models.
    #[serde(default, skip_serializing_if = "ModelKind::is_chat")]
    pub kind: ModelKind,
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

    /// The gossip key-values that publish this advert. The node id and generation are not among
    /// them: chitchat carries those in the node's identity.
    pub fn key_values(&self) -> Vec<(&'static str, String)> {
        let mut values = vec![
            (keys::ROLE, NodeRole::Worker.as_str().to_string()),
            (keys::QUIC_ADDR, self.quic_addr.to_string()),
            (keys::READINESS, self.readiness.as_str().to_string()),
            (keys::MODELS, json(&self.models)),
            (keys::DEVICE, json(&self.device)),
            (keys::CAPACITY, self.capacity.to_string()),
            (keys::LOAD, self.load.to_string()),
        ];
        if !self.tools.is_empty() {
            values.push((keys::TOOLS, json(&self.tools)));
        }
        values
    }

    /// Reads an advert from key-values (`get` looks one key up). `None` when the node is not a
    /// worker or has no usable QUIC address; other keys fall back to safe defaults.
    pub fn from_key_values<'a>(
        node_id: &str,
        generation: u64,
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<Self> {
        if get(keys::ROLE).and_then(NodeRole::parse) != Some(NodeRole::Worker) {
            return None;
        }
        Some(WorkerAdvert {
            node_id: node_id.to_string(),
            generation,
            quic_addr: get(keys::QUIC_ADDR)?.parse().ok()?,
            readiness: get(keys::READINESS)
                .and_then(Readiness::parse)
                .unwrap_or(Readiness::NotReady),
            models: parse_value(&get, keys::MODELS).unwrap_or_default(),
            tools: parse_value(&get, keys::TOOLS).unwrap_or_default(),
            device: parse_value(&get, keys::DEVICE).unwrap_or_else(DeviceInfo::cpu),
            capacity: parse_value(&get, keys::CAPACITY).unwrap_or(1),
            load: parse_value(&get, keys::LOAD).unwrap_or(0),
        })
    }
}

/// A JSON gossip value, `None` when absent or garbled.
fn parse_value<'a, T: serde::de::DeserializeOwned>(
    get: &impl Fn(&str) -> Option<&'a str>,
    key: &str,
) -> Option<T> {
    get(key).and_then(|v| serde_json::from_str(v).ok())
}

/// JSON text of a gossip value; the advert's types always serialise.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The gossip key-values a router publishes: its role and where its HTTP API is.
pub fn router_key_values(http_addr: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        (keys::ROLE, NodeRole::Router.as_str().to_string()),
        (keys::HTTP_ADDR, http_addr.to_string()),
    ]
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
        let id = self.chitchat_id();
        WorkerAdvert::from_key_values(&id.node_id, id.generation_id, |key| self.get(key))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn adverts_round_trip_through_key_values() {
        let advert = WorkerAdvert {
            node_id: "w1".into(),
            generation: 42,
            quic_addr: "10.0.0.7:7948".parse().expect("addr"),
            readiness: Readiness::Ready,
            models: vec![ModelInfo {
                id: "m".into(),
                context_length: Some(4096),
                vision: true,
                reasoning: false,
                kind: ModelKind::Embedding,
            }],
            tools: vec![ToolInfo {
                name: "web_fetch".into(),
                description: "fetch".into(),
                parameters: serde_json::json!({"type": "object"}),
                available: true,
            }],
            device: DeviceInfo {
                kind: "cuda".into(),
                name: "H100".into(),
                memory_mib: Some(81_559),
                count: 2,
            },
            capacity: 32,
            load: 5,
        };
        let values: HashMap<&str, String> = advert.key_values().into_iter().collect();
        let back = WorkerAdvert::from_key_values("w1", 42, |k| values.get(k).map(String::as_str));
        assert_eq!(back, Some(advert));
    }

    #[test]
    fn routers_and_address_less_nodes_are_not_workers() {
        let router: HashMap<&str, String> =
            router_key_values("127.0.0.1:8080".parse().expect("addr"))
                .into_iter()
                .collect();
        assert_eq!(
            WorkerAdvert::from_key_values("r", 1, |k| router.get(k).map(String::as_str)),
            None
        );
        let no_addr: HashMap<&str, &str> = HashMap::from([(keys::ROLE, "worker")]);
        assert_eq!(
            WorkerAdvert::from_key_values("w", 1, |k| no_addr.get(k).copied()),
            None
        );
    }
}
