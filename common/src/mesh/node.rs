//! Typed views of gossip state: what a node is and what it offers.
//!
//! [`WorkerAdvert`] is the routing-relevant summary of one worker. A worker publishes it signed
//! with its own key ([`WorkerAdvert::signed_key_values`]); a router believes it only when the
//! signatures check against the worker's certificate and every figure is in range
//! ([`WorkerAdvert::verify`]), so no node can write another node's advert or pull all traffic
//! with an absurd capacity.

use std::net::SocketAddr;

use chitchat::NodeState;
use serde::{Deserialize, Serialize};

use super::keys;
use super::signed::{self, SignedError, Slot};
use crate::pki::{NodeKey, PeerCert, Role};
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
    /// Can continue an assistant turn cut short on another worker
    /// ([`ChatRequest::continue_final`](crate::chat::ChatRequest::continue_final)); a router
    /// sends continuations only to such workers (older workers would start a new turn).
    #[serde(default)]
    pub continues: bool,
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

/// Largest capacity a worker may advertise: more than any single engine runs at once. An
/// absurd figure would pull every request to one node.
pub const MAX_CAPACITY: u32 = 4096;
/// Largest load a worker may report.
pub const MAX_LOAD: u32 = 65_536;
/// Models one worker may advertise.
pub const MAX_MODELS: usize = 64;
/// Tools one worker may advertise.
pub const MAX_TOOLS: usize = 512;
/// Longest advert, in bytes of JSON (tools carry schemas).
pub const MAX_ADVERT_BYTES: usize = 56 * 1024;
/// Longest model id or device name.
const MAX_NAME_BYTES: usize = 256;

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

/// The signed part of an advert that changes rarely (everything but the load).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AdvertBody {
    quic_addr: SocketAddr,
    readiness: Readiness,
    #[serde(default)]
    models: Vec<ModelInfo>,
    #[serde(default)]
    tools: Vec<ToolInfo>,
    device: DeviceInfo,
    capacity: u32,
}

/// Why a node's advert was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    #[error("no {0}")]
    Missing(&'static str),
    #[error("{0} is not signed by the node's certificate key: {1}")]
    Signature(&'static str, SignedError),
    #[error("the certificate names {0}, not this node")]
    NodeId(String),
    #[error("the certificate's role {0} may not serve models")]
    Role(Role),
    #[error("malformed advert: {0}")]
    Malformed(String),
    #[error("out of range: {0}")]
    OutOfRange(String),
}

impl WorkerAdvert {
    pub fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m.id == model)
    }

    fn body(&self) -> AdvertBody {
        AdvertBody {
            quic_addr: self.quic_addr,
            readiness: self.readiness,
            models: self.models.clone(),
            tools: self.tools.clone(),
            device: self.device.clone(),
            capacity: self.capacity,
        }
    }

    fn slot<'a>(&'a self, key: &'a str) -> Slot<'a> {
        Slot {
            node_id: &self.node_id,
            generation: self.generation,
            key,
        }
    }

    /// The gossip key-values that publish this advert, signed with the node's `key`. The node
    /// id and generation are not among them: chitchat carries those in the node's identity.
    pub fn signed_key_values(&self, key: &NodeKey) -> Vec<(&'static str, String)> {
        vec![
            (keys::ROLE, NodeRole::Worker.as_str().to_string()),
            (
                keys::ADVERT,
                signed::sign(key, self.slot(keys::ADVERT), &json(&self.body())),
            ),
            self.signed_load(key),
        ]
    }

    /// Only the load, signed: what changes every second.
    pub fn signed_load(&self, key: &NodeKey) -> (&'static str, String) {
        (
            keys::LOAD,
            signed::sign(key, self.slot(keys::LOAD), &self.load.to_string()),
        )
    }

    /// Reads and checks the advert of node `node_id` (incarnation `generation`) from its
    /// key-values (`get` looks one key up), given its certificate, already verified to chain to
    /// the cluster root. Every value must be signed by that certificate's key and in range.
    pub fn verify<'a>(
        node_id: &str,
        generation: u64,
        cert: &PeerCert,
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, AdvertError> {
        if cert.node_id != node_id {
            return Err(AdvertError::NodeId(cert.node_id.clone()));
        }
        let slot = |key| Slot {
            node_id,
            generation,
            key,
        };
        let value = get(keys::ADVERT).ok_or(AdvertError::Missing("advert"))?;
        if value.len() > MAX_ADVERT_BYTES {
            return Err(AdvertError::OutOfRange(format!(
                "advert of {} bytes (at most {MAX_ADVERT_BYTES})",
                value.len()
            )));
        }
        let body = signed::verify(&cert.public_key_raw, slot(keys::ADVERT), value)
            .map_err(|e| AdvertError::Signature("advert", e))?;
        let body: AdvertBody =
            serde_json::from_str(body).map_err(|e| AdvertError::Malformed(e.to_string()))?;
        let load = get(keys::LOAD).ok_or(AdvertError::Missing("load"))?;
        let load = signed::verify(&cert.public_key_raw, slot(keys::LOAD), load)
            .map_err(|e| AdvertError::Signature("load", e))?;
        let load: u32 = load
            .parse()
            .map_err(|_| AdvertError::Malformed(format!("load `{load}`")))?;
        let advert = WorkerAdvert {
            node_id: node_id.to_string(),
            generation,
            quic_addr: body.quic_addr,
            readiness: body.readiness,
            models: body.models,
            tools: body.tools,
            device: body.device,
            capacity: body.capacity,
            load,
        };
        advert.check_ranges()?;
        match cert.role {
            Role::Worker => Ok(advert),
            // A tools certificate serves tools only.
            Role::Tools if advert.models.is_empty() => Ok(advert),
            role => Err(AdvertError::Role(role)),
        }
    }

    /// Refuses figures no real worker advertises.
    fn check_ranges(&self) -> Result<(), AdvertError> {
        let out = |what: String| Err(AdvertError::OutOfRange(what));
        if self.capacity > MAX_CAPACITY {
            return out(format!(
                "capacity {} (at most {MAX_CAPACITY})",
                self.capacity
            ));
        }
        if self.load > MAX_LOAD {
            return out(format!("load {} (at most {MAX_LOAD})", self.load));
        }
        if self.models.len() > MAX_MODELS {
            return out(format!(
                "{} models (at most {MAX_MODELS})",
                self.models.len()
            ));
        }
        if self.tools.len() > MAX_TOOLS {
            return out(format!("{} tools (at most {MAX_TOOLS})", self.tools.len()));
        }
        let long = self
            .models
            .iter()
            .map(|m| &m.id)
            .chain(self.tools.iter().map(|t| &t.name))
            .chain([&self.device.name, &self.device.kind])
            .find(|name| name.len() > MAX_NAME_BYTES);
        if let Some(name) = long {
            return out(format!("a name of {} bytes", name.len()));
        }
        Ok(())
    }
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
    /// What the node claims to be.
    fn role(&self) -> Option<NodeRole>;
}

impl NodeStateExt for NodeState {
    fn role(&self) -> Option<NodeRole> {
        self.get(keys::ROLE).and_then(NodeRole::parse)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, SystemTime};

    use super::*;

    fn advert() -> WorkerAdvert {
        WorkerAdvert {
            node_id: "w1".into(),
            generation: 42,
            quic_addr: "10.0.0.7:7948".parse().expect("addr"),
            readiness: Readiness::Ready,
            models: vec![ModelInfo {
                id: "m".into(),
                context_length: Some(4096),
                vision: true,
                reasoning: false,
                continues: false,
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
        }
    }

    fn cert_for(key: &NodeKey, node_id: &str, role: Role) -> PeerCert {
        PeerCert {
            node_id: node_id.into(),
            role,
            not_after: SystemTime::now() + Duration::from_secs(60),
            public_key_raw: key.public_key_raw(),
        }
    }

    fn verify(
        advert: &WorkerAdvert,
        cert: &PeerCert,
        values: &HashMap<&str, String>,
    ) -> Result<WorkerAdvert, AdvertError> {
        WorkerAdvert::verify(&advert.node_id, advert.generation, cert, |k| {
            values.get(k).map(String::as_str)
        })
    }

    #[test]
    fn signed_adverts_round_trip() {
        let key = NodeKey::generate().expect("key");
        let advert = advert();
        let values: HashMap<&str, String> = advert.signed_key_values(&key).into_iter().collect();
        let cert = cert_for(&key, "w1", Role::Worker);
        assert_eq!(verify(&advert, &cert, &values), Ok(advert.clone()));
    }

    #[test]
    fn nobody_else_can_write_an_advert() {
        let key = NodeKey::generate().expect("key");
        let advert = advert();
        let values: HashMap<&str, String> = advert.signed_key_values(&key).into_iter().collect();
        // Another node's key, even with a valid certificate of its own.
        let intruder = NodeKey::generate().expect("key");
        let intruder_cert = cert_for(&intruder, "w1", Role::Worker);
        assert!(matches!(
            verify(&advert, &intruder_cert, &values),
            Err(AdvertError::Signature("advert", _))
        ));
        // A certificate for another node id.
        let other_node = cert_for(&key, "w2", Role::Worker);
        assert!(matches!(
            verify(&advert, &other_node, &values),
            Err(AdvertError::NodeId(_))
        ));
        // A load written by someone else.
        let mut forged = values.clone();
        let (_, load) = WorkerAdvert {
            load: 0,
            ..advert.clone()
        }
        .signed_load(&intruder);
        forged.insert(keys::LOAD, load);
        let cert = cert_for(&key, "w1", Role::Worker);
        assert!(matches!(
            verify(&advert, &cert, &forged),
            Err(AdvertError::Signature("load", _))
        ));
    }

    #[test]
    fn absurd_figures_are_refused() {
        let key = NodeKey::generate().expect("key");
        let cert = cert_for(&key, "w1", Role::Worker);
        for greedy in [
            WorkerAdvert {
                capacity: 4_000_000_000,
                load: 0,
                ..advert()
            },
            WorkerAdvert {
                load: MAX_LOAD + 1,
                ..advert()
            },
            WorkerAdvert {
                models: vec![advert().models[0].clone(); MAX_MODELS + 1],
                ..advert()
            },
        ] {
            let values: HashMap<&str, String> =
                greedy.signed_key_values(&key).into_iter().collect();
            assert!(
                matches!(
                    verify(&greedy, &cert, &values),
                    Err(AdvertError::OutOfRange(_))
                ),
                "{greedy:?}"
            );
        }
    }

    #[test]
    fn a_tools_certificate_serves_no_models() {
        let key = NodeKey::generate().expect("key");
        let advert = advert();
        let values: HashMap<&str, String> = advert.signed_key_values(&key).into_iter().collect();
        let tools = cert_for(&key, "w1", Role::Tools);
        assert_eq!(
            verify(&advert, &tools, &values),
            Err(AdvertError::Role(Role::Tools))
        );
        let tools_only = WorkerAdvert {
            models: Vec::new(),
            ..advert
        };
        let values: HashMap<&str, String> =
            tools_only.signed_key_values(&key).into_iter().collect();
        assert!(verify(&tools_only, &tools, &values).is_ok());
    }
}
