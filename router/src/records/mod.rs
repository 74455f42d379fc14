//! The records routers share (join tokens, revocations), without a database.
//!
//! Each router keeps the whole set in memory and in `records.json` in its data directory, so a
//! restarted router comes back with everything it knew. Routers replicate the set through
//! gossip ([`replication`]): every router publishes every record it knows, signed with its own
//! key, and merges what the other routers publish, the higher version winning. A router that was
//! down catches up from any other when it rejoins; a record survives as long as one router
//! holds it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use tokio::sync::watch;
use tracing::warn;

use crate::files;

pub mod record;
pub mod replication;

pub use record::{now_millis, now_secs, Body, Record, RevocationRecord, TokenRecord};

/// Records a router keeps at most: far more than any cluster's tokens and revocations, small
/// enough that gossip carries them all.
pub const MAX_RECORDS: usize = 10_000;

type Key = (&'static str, String);

#[derive(Default)]
struct Inner {
    records: BTreeMap<Key, Record>,
    /// Node ids revoked, kept apart for the per-connection check.
    revoked: HashSet<String>,
}

/// This router's copy of the replicated records.
pub struct RecordStore {
    /// Where the set is persisted; `None` keeps it in memory only.
    path: Option<PathBuf>,
    inner: RwLock<Inner>,
    /// Bumped on every change, for the publisher and anyone else watching.
    changed: watch::Sender<u64>,
}

impl RecordStore {
    /// An empty store that persists to `path` when set.
    pub fn new(path: Option<PathBuf>) -> Self {
        RecordStore {
            path,
            inner: RwLock::default(),
            changed: watch::Sender::new(0),
        }
    }

    /// The store persisted at `path`, with what it holds (none if the file does not exist).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let store = Self::new(Some(path.to_path_buf()));
        if path.exists() {
            let records: Vec<Record> = serde_json::from_slice(&files::read(path)?)
                .with_context(|| format!("parsing {}", path.display()))?;
            store.merge_quietly(records);
        }
        Ok(store)
    }

    /// The records to write into a new data directory.
    pub fn to_json(records: &[Record]) -> anyhow::Result<Vec<u8>> {
        Ok(serde_json::to_vec_pretty(records)?)
    }

    fn merge_quietly(&self, records: impl IntoIterator<Item = Record>) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        for record in records {
            let key = (record.body.kind(), record.id.clone());
            let newer = match inner.records.get(&key) {
                None => inner.records.len() < MAX_RECORDS,
                Some(old) => {
                    record.version > old.version
                        // Equal versions from two routers: any fixed rule converges.
                        || (record.version == old.version
                            && serde_json::to_string(&record).ok()
                                > serde_json::to_string(old).ok())
                }
            };
            if newer {
                if let Body::Revocation(_) = record.body {
                    inner.revoked.insert(record.id.clone());
                }
                inner.records.insert(key, record);
                changed = true;
            }
        }
        changed
    }

    /// Merges records (a local change or what another router published); true when anything
    /// changed, which is then persisted and announced.
    pub fn merge(&self, records: impl IntoIterator<Item = Record>) -> bool {
        let changed = self.merge_quietly(records);
        if changed {
            if let Err(err) = self.persist() {
                warn!("could not persist the cluster records: {err:#}");
            }
            self.changed.send_modify(|v| *v += 1);
        }
        changed
    }

    fn persist(&self) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let records = self.all();
        files::replace_private(path, &Self::to_json(&records)?)
    }

    /// Every record.
    pub fn all(&self) -> Vec<Record> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.records.values().cloned().collect()
    }

    /// The token with this id.
    pub fn token(&self, id: &str) -> Option<TokenRecord> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        match inner.records.get(&("token", id.to_string())) {
            Some(Record {
                body: Body::Token(token),
                ..
            }) => Some(token.clone()),
            _ => None,
        }
    }

    /// Every token, with its id.
    pub fn tokens(&self) -> Vec<(String, TokenRecord)> {
        self.all()
            .into_iter()
            .filter_map(|r| match r.body {
                Body::Token(token) => Some((r.id, token)),
                _ => None,
            })
            .collect()
    }

    /// Whether node `node_id` is revoked.
    pub fn is_revoked(&self, node_id: &str) -> bool {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.revoked.contains(node_id)
    }

    /// Fires on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// A shared store.
pub type Records = Arc<RecordStore>;

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::pki::Role;

    fn token(id: &str, version: u64, revoked: bool) -> Record {
        Record {
            id: id.into(),
            version,
            body: Body::Token(TokenRecord {
                role: Role::Worker,
                name: "t".into(),
                secret_sha256: "00".into(),
                created_at: 1,
                expires_at: None,
                revoked_at: revoked.then_some(9),
            }),
        }
    }

    #[test]
    fn the_newer_version_wins_whatever_the_order() {
        let a = RecordStore::new(None);
        let b = RecordStore::new(None);
        a.merge([token("t1", 1, false)]);
        a.merge([token("t1", 2, true)]);
        b.merge([token("t1", 2, true)]);
        assert!(
            !b.merge([token("t1", 1, false)]),
            "an old copy changes nothing"
        );
        assert_eq!(a.all(), b.all());
        assert!(a.token("t1").is_some_and(|t| t.revoked_at.is_some()));
    }

    #[test]
    fn revocations_are_seen_at_once_and_persist() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("records.json");
        let store = RecordStore::load(&path).expect("load");
        let changes = store.subscribe();
        store.merge([Record {
            id: "w1".into(),
            version: 3,
            body: Body::Revocation(RevocationRecord {
                revoked_at: 3,
                reason: String::new(),
            }),
        }]);
        assert!(store.is_revoked("w1"));
        assert!(!store.is_revoked("w2"));
        assert!(changes.has_changed().expect("watch"));
        let reloaded = RecordStore::load(&path).expect("reload");
        assert!(reloaded.is_revoked("w1"));
    }
}
