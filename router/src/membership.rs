//! Who is in the cluster, as far as this router believes: gossip state checked against the
//! cluster's certificates.
//!
//! Every node publishes its certificate chain and signs what it publishes. A node counts only if
//! its chain verifies to the cluster root, its certificate names the node id it gossips under,
//! its role allows what it claims, it is not revoked, and its advert is signed and in range.
//! Anything else is ignored and logged once per node and reason, so a member holding the gossip
//! key can neither add nodes nor write another node's state. When a worker's advert stops
//! checking out (a forged update of its load, say) the last advert that did is kept, so a forger
//! can freeze another node's figures but not take it out of routing or redirect its traffic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;

use auxot_common::mesh::identity::decode_chain;
use auxot_common::mesh::keys;
use auxot_common::mesh::node::{AdvertError, WorkerAdvert};
use auxot_common::pki::{verify_chain, PeerCert, Role};
use chitchat::{ChitchatId, NodeState};
use rustls_pki_types::{CertificateDer, UnixTime};
use tracing::{debug, warn};

use crate::records::Records;

/// A router whose certificate checked out.
#[derive(Debug, Clone)]
pub struct RouterView {
    pub node_id: String,
    pub generation: u64,
    /// Its gossip address: workers renew their certificates there (TCP, same port).
    pub gossip_addr: SocketAddr,
    pub http_addr: Option<String>,
    pub cert: PeerCert,
}

/// A worker as the admin API shows it.
#[derive(Debug, Clone)]
pub struct MemberWorker {
    pub advert: WorkerAdvert,
    pub role: Role,
    pub cert_not_after: std::time::SystemTime,
}

/// The verified members of one gossip snapshot.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub workers: Vec<MemberWorker>,
    pub routers: Vec<RouterView>,
    /// The public key each live worker's certificate holds, by node id: a node id belongs to
    /// the key that holds it while that node lives.
    pub owners: HashMap<String, [u8; 32]>,
}

impl View {
    pub fn adverts(&self) -> Vec<WorkerAdvert> {
        self.workers.iter().map(|w| w.advert.clone()).collect()
    }
}

/// The latest view, shared with the admin API and the enrollment service.
pub type SharedView = std::sync::Arc<std::sync::RwLock<std::sync::Arc<View>>>;

/// (generation, advert value, load value) and what they verified to.
type CheckedAdvert = (u64, String, String, Result<WorkerAdvert, AdvertError>);

/// Checks gossip state against the cluster root.
pub struct Membership {
    root: CertificateDer<'static>,
    records: Records,
    /// Certificate chains already verified (by their gossip value): the expensive part.
    chains: Mutex<HashMap<String, Result<PeerCert, String>>>,
    /// node id -> the last advert that checked out, per generation.
    last_good: Mutex<HashMap<String, MemberWorker>>,
    /// node id -> (generation, advert value, load value) and what they verified to: only a
    /// changed value costs a signature check.
    verified: Mutex<HashMap<String, CheckedAdvert>>,
    /// (node id, reason) already logged.
    logged: Mutex<HashSet<(String, String)>>,
}

impl Membership {
    pub fn new(root: CertificateDer<'static>, records: Records) -> Self {
        Membership {
            root,
            records,
            chains: Mutex::new(HashMap::new()),
            last_good: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            logged: Mutex::new(HashSet::new()),
        }
    }

    fn refuse(&self, node: &str, reason: String) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() > 10_000 {
            logged.clear();
        }
        if logged.insert((node.to_string(), reason.clone())) {
            warn!(node, %reason, "ignoring a node's gossip state");
        }
    }

    /// The certificate in a node's `cert` value, verified to the root and unexpired.
    fn certificate(&self, value: &str) -> Result<PeerCert, String> {
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        if chains.len() > 10_000 {
            chains.clear();
        }
        let result = chains
            .entry(value.to_string())
            .or_insert_with(|| {
                let chain = decode_chain(value).ok_or("malformed certificate chain")?;
                verify_chain(&chain, &self.root, UnixTime::now()).map_err(|e| e.to_string())
            })
            .clone();
        let cert = result?;
        if cert.not_after <= std::time::SystemTime::now() {
            return Err("certificate expired".into());
        }
        Ok(cert)
    }

    /// A worker's advert, verified unless the same values were verified before.
    fn verify_advert(
        &self,
        node: &str,
        generation: u64,
        cert: &PeerCert,
        state: &NodeState,
    ) -> Result<WorkerAdvert, AdvertError> {
        let advert = state.get(keys::ADVERT).unwrap_or_default();
        let load = state.get(keys::LOAD).unwrap_or_default();
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, a, l, result)) = verified.get(node) {
            if *g == generation && a == advert && l == load {
                return result.clone();
            }
        }
        let result = WorkerAdvert::verify(node, generation, cert, |k| state.get(k));
        verified.insert(
            node.to_string(),
            (
                generation,
                advert.to_string(),
                load.to_string(),
                result.clone(),
            ),
        );
        result
    }

    /// The verified members of `nodes`.
    pub fn view(&self, nodes: &BTreeMap<ChitchatId, NodeState>) -> View {
        let mut view = View::default();
        let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        let mut live = HashSet::new();
        for (id, state) in nodes {
            let node: &str = &id.node_id;
            let Some(cert_value) = state.get(keys::CERT) else {
                // Not started yet, or not a member at all.
                continue;
            };
            let cert = match self.certificate(cert_value) {
                Ok(cert) if cert.node_id != node => {
                    self.refuse(node, format!("certificate names {}", cert.node_id));
                    continue;
                }
                Ok(cert) => cert,
                Err(reason) => {
                    self.refuse(node, reason);
                    continue;
                }
            };
            if self.records.is_revoked(node) {
                self.refuse(node, "revoked".into());
                continue;
            }
            match cert.role {
                Role::Router => view.routers.push(RouterView {
                    node_id: node.to_string(),
                    generation: id.generation_id,
                    gossip_addr: id.gossip_advertise_addr,
                    http_addr: state.get(keys::HTTP_ADDR).map(str::to_string),
                    cert,
                }),
                Role::Worker | Role::Tools => {
                    live.insert(node.to_string());
                    view.owners.insert(node.to_string(), cert.public_key_raw);
                    let verified = self.verify_advert(node, id.generation_id, &cert, state);
                    match verified {
                        Ok(advert) => {
                            let worker = MemberWorker {
                                advert,
                                role: cert.role,
                                cert_not_after: cert.not_after,
                            };
                            last_good.insert(node.to_string(), worker.clone());
                            view.workers.push(worker);
                        }
                        // Still starting: it publishes its advert right after joining.
                        Err(AdvertError::Missing(what)) => {
                            debug!(node, what, "no advert yet");
                        }
                        Err(err) => {
                            self.refuse(node, err.to_string());
                            let kept = last_good
                                .get(node)
                                .filter(|w| w.advert.generation == id.generation_id);
                            if let Some(worker) = kept {
                                view.workers.push(worker.clone());
                            }
                        }
                    }
                }
            }
        }
        last_good.retain(|node, _| live.contains(node));
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|node, _| live.contains(node));
        view
    }
}
