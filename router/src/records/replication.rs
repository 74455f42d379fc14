//! Replicating records between routers through gossip.
//!
//! Each router publishes every record it knows as one gossip key (`rec/<kind>/<id>`), signed with
//! its own key, and merges the records other routers publish once their signatures check out
//! against certificates with the `router` role. Workers hold the gossip key too, so they could
//! write such keys; without a router certificate their writes are ignored. A value is verified
//! once: the signature check is skipped while a router's value stays the same.

use std::collections::HashMap;
use std::sync::Mutex;

use auxot_common::mesh::keys::RECORD_PREFIX;
use auxot_common::mesh::signed::{self, Slot};
use auxot_common::pki::{NodeKey, PeerCert};
use chitchat::NodeState;
use tracing::{debug, warn};

use super::{Record, Records};

/// The gossip key of a record.
pub fn gossip_key(record: &Record) -> String {
    format!("{RECORD_PREFIX}{}/{}", record.body.kind(), record.id)
}

/// A router's side of the replication.
pub struct Replicator {
    records: Records,
    /// (router node id, gossip key) -> the value last verified and merged.
    seen: Mutex<HashMap<(String, String), String>>,
}

/// A router whose certificate was verified, and its gossip state.
pub struct PeerRouter<'a> {
    pub node_id: &'a str,
    pub generation: u64,
    pub cert: &'a PeerCert,
    pub state: &'a NodeState,
}

impl Replicator {
    pub fn new(records: Records) -> Self {
        Replicator {
            records,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Every record as a signed gossip key-value of this router (`node_id`, incarnation
    /// `generation`).
    pub fn signed_values(
        &self,
        key: &NodeKey,
        node_id: &str,
        generation: u64,
    ) -> Vec<(String, String)> {
        self.records
            .all()
            .into_iter()
            .filter_map(|record| {
                let gossip_key = gossip_key(&record);
                let payload = serde_json::to_string(&record).ok()?;
                let slot = Slot {
                    node_id,
                    generation,
                    key: &gossip_key,
                };
                let value = signed::sign(key, slot, &payload);
                Some((gossip_key, value))
            })
            .collect()
    }

    /// Merges what `routers` publish; returns how many records changed.
    pub fn ingest(&self, routers: &[PeerRouter<'_>]) -> usize {
        let mut fresh = Vec::new();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            for router in routers {
                for (key, versioned) in router.state.iter_prefix(RECORD_PREFIX) {
                    let value = versioned.value.as_str();
                    let seen_key = (router.node_id.to_string(), key.to_string());
                    if seen.get(&seen_key).is_some_and(|v| v == value) {
                        continue;
                    }
                    let slot = Slot {
                        node_id: router.node_id,
                        generation: router.generation,
                        key,
                    };
                    let record = signed::verify(&router.cert.public_key_raw, slot, value)
                        .map_err(|e| e.to_string())
                        .and_then(|payload| {
                            serde_json::from_str::<Record>(payload).map_err(|e| e.to_string())
                        });
                    match record {
                        Ok(record) if gossip_key(&record) == key => fresh.push(record),
                        Ok(_) => warn!(router = router.node_id, key, "record under the wrong key"),
                        Err(err) => warn!(router = router.node_id, key, %err, "ignored a record"),
                    }
                    seen.insert(seen_key, value.to_string());
                }
            }
        }
        let count = fresh.len();
        if self.records.merge(fresh) {
            debug!(count, "merged records from other routers");
        }
        count
    }
}
