//! What routers replicate to each other (each a [`Record`]): join tokens, revocations of nodes,
//! API and admin keys (hashes only), and each router's usage counts per key.
//!
//! A record has a version (the Unix time in milliseconds of its last change); of two copies the
//! higher version wins, so every router converges on the same set whatever order changes arrive
//! in. Nothing is ever deleted: a revoked token keeps its record with `revoked_at` set, so an old
//! copy cannot bring it back.

use auxot_common::pki::Role;
use serde::{Deserialize, Serialize};

use crate::keys::StoredKey;

/// One replicated fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Unique within its kind: a token id, a node id.
    pub id: String,
    /// Milliseconds since the Unix epoch of the last change.
    pub version: u64,
    #[serde(flatten)]
    pub body: Body,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Token(TokenRecord),
    Revocation(RevocationRecord),
    Key(KeyRecord),
    Usage(UsageRecord),
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Token(_) => "token",
            Body::Revocation(_) => "revocation",
            Body::Key(_) => "key",
            Body::Usage(_) => "usage",
        }
    }
}

/// An API or admin key made through the admin API (id = the key id): its hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Nested, not flattened: the stored key's `id` would clash with the record's.
    pub key: StoredKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// What one router counted for one key (id = `<key id>@<router node id>`); only that router
/// writes it. The windows are calendar windows in UTC, so every router means the same minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub key_id: String,
    pub router: String,
    /// Requests this router is answering now for the key.
    #[serde(default)]
    pub in_flight: u64,
    /// Seconds since the epoch when the counts last changed.
    #[serde(default)]
    pub updated: u64,
    pub minute: Window,
    pub hour: Window,
    pub day: Window,
    /// Since the key was made: what token budgets are checked against.
    pub total: Window,
}

/// Counts over one window starting at `start` (seconds since the epoch; 0 for the total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(default)]
    pub start: u64,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub errors: u64,
}

impl Window {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// The counts of this window if it is the one starting at `start`, else an empty one.
    pub fn at(&self, start: u64) -> Window {
        if self.start == start {
            *self
        } else {
            Window {
                start,
                ..Window::default()
            }
        }
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Window) {
        self.requests = self.requests.saturating_add(other.requests);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.errors = self.errors.saturating_add(other.errors);
    }
}

/// A join token, as routers know it: only the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// `worker` or `tools`: the role certificates enrolled with it get.
    #[serde(with = "role_name")]
    pub role: Role,
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub created_at: u64,
    /// Seconds since the epoch after which the token no longer enrolls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

impl TokenRecord {
    /// Whether the token enrolls at `now` (seconds since the epoch).
    pub fn is_valid_at(&self, now: u64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }
}

/// A node that may no longer take part: refused on QUIC, ignored in gossip, never renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    pub revoked_at: u64,
    #[serde(default)]
    pub reason: String,
}

mod role_name {
    use auxot_common::pki::Role;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(role.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let name = String::deserialize(d)?;
        Role::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// Milliseconds since the Unix epoch: the version of a change made now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    now_millis() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialize_flat_with_their_kind() {
        let record = Record {
            id: "w1".into(),
            version: 5,
            body: Body::Revocation(RevocationRecord {
                revoked_at: 1,
                reason: "lost laptop".into(),
            }),
        };
        let json = serde_json::to_value(&record).expect("json");
        assert_eq!(json["kind"], "revocation");
        assert_eq!(json["id"], "w1");
        let back: Record = serde_json::from_value(json).expect("parse");
        assert_eq!(back, record);
    }

    #[test]
    fn key_and_usage_records_round_trip() {
        let key = crate::keys::generate("k", crate::keys::Scope::Api)
            .expect("key")
            .stored;
        for body in [
            Body::Key(KeyRecord {
                key: key.clone(),
                revoked_at: Some(3),
            }),
            Body::Usage(UsageRecord {
                key_id: key.id.clone(),
                router: "r1".into(),
                ..UsageRecord::default()
            }),
        ] {
            let record = Record {
                id: key.id.clone(),
                version: 2,
                body,
            };
            let json = serde_json::to_string(&record).expect("json");
            let back: Record = serde_json::from_str(&json).expect(&json);
            assert_eq!(back, record);
        }
    }

    #[test]
    fn tokens_expire_and_revoke() {
        let token = TokenRecord {
            role: Role::Worker,
            name: "t".into(),
            secret_sha256: String::new(),
            created_at: 0,
            expires_at: Some(100),
            revoked_at: None,
        };
        assert!(token.is_valid_at(99));
        assert!(!token.is_valid_at(100));
        let revoked = TokenRecord {
            revoked_at: Some(1),
            expires_at: None,
            ..token
        };
        assert!(!revoked.is_valid_at(0));
    }
}
