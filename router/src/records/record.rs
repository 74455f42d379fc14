//! What routers replicate to each other: join tokens and revocations (each a [`Record`]).
//!
//! A record has a version (the Unix time in milliseconds of its last change); of two copies the
//! higher version wins, so every router converges on the same set whatever order changes arrive
//! in. Nothing is ever deleted: a revoked token keeps its record with `revoked_at` set, so an old
//! copy cannot bring it back.

use auxot_common::pki::Role;
use serde::{Deserialize, Serialize};

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
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Token(_) => "token",
            Body::Revocation(_) => "revocation",
        }
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
