//! The cluster secret: the one thing that lets nodes trust each other.
//!
//! `auxot-router setup` draws 32 random bytes. Everything else is derived from them with
//! HKDF-SHA256 under distinct labels: the key that seals gossip datagrams, the seed of the
//! cluster's certificate authority for QUIC mutual TLS, and a public cluster id. Deriving instead
//! of distributing a CA certificate and key means a worker needs a single string (the join token)
//! and no file copying. The alternative, a PKI with a stored CA key and per-node enrolment, buys
//! revocation of single nodes at the cost of an enrolment service; rotating the cluster secret
//! is the revocation story here.

use base64::Engine as _;
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// Prefix of a worker join token, so a pasted token is recognisable.
pub const JOIN_TOKEN_PREFIX: &str = "jtk_";

const SALT: &[u8] = b"auxot cluster secret v1";

/// 32 secret bytes shared by every node of one cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret([u8; 32]);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret({})", self.cluster_id())
    }
}

/// Why a join token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("join token must start with `{JOIN_TOKEN_PREFIX}` (copy it exactly as `auxot-router setup` printed it)")]
    Prefix,
    #[error("join token is not valid base64url after the `{JOIN_TOKEN_PREFIX}` prefix")]
    Encoding,
    #[error("join token has the wrong length (expected 32 bytes of secret)")]
    Length,
}

impl ClusterSecret {
    /// Draws a new secret from the operating system's random source.
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes)?;
        Ok(ClusterSecret(bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ClusterSecret(bytes)
    }

    /// Parses a join token as printed by `auxot-router setup`.
    pub fn from_join_token(token: &str) -> Result<Self, TokenError> {
        let encoded = token
            .trim()
            .strip_prefix(JOIN_TOKEN_PREFIX)
            .ok_or(TokenError::Prefix)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| TokenError::Encoding)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| TokenError::Length)?;
        Ok(ClusterSecret(bytes))
    }

    /// The join token that carries this secret.
    pub fn join_token(&self) -> String {
        format!(
            "{JOIN_TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
        )
    }

    /// 32 bytes derived for one purpose; different labels give independent keys.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(&self.0);
        let mut out = [0u8; 32];
        let info = [label.as_bytes()];
        // Expanding 32 bytes with SHA-256 cannot exceed HKDF's 255-block limit.
        if let Ok(okm) = prk.expand(&info, hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut out);
        }
        out
    }

    /// A public identifier of the cluster (safe to log): nodes of different clusters ignore each
    /// other's gossip even before the seal is checked.
    pub fn cluster_id(&self) -> String {
        let id = self.derive("cluster id");
        format!("auxot-{}", hex::encode(&id[..6]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_token_round_trips() {
        let secret = ClusterSecret::generate().expect("rng");
        let token = secret.join_token();
        assert!(token.starts_with(JOIN_TOKEN_PREFIX));
        assert_eq!(ClusterSecret::from_join_token(&token), Ok(secret));
    }

    #[test]
    fn bad_tokens_say_what_is_wrong() {
        assert_eq!(
            ClusterSecret::from_join_token("abc"),
            Err(TokenError::Prefix)
        );
        assert_eq!(
            ClusterSecret::from_join_token("jtk_!!!"),
            Err(TokenError::Encoding)
        );
        assert_eq!(
            ClusterSecret::from_join_token("jtk_AAAA"),
            Err(TokenError::Length)
        );
    }

    #[test]
    fn derivations_are_stable_and_independent() {
        let secret = ClusterSecret::from_bytes([7; 32]);
        assert_eq!(secret.derive("a"), secret.derive("a"));
        assert_ne!(secret.derive("a"), secret.derive("b"));
        let other = ClusterSecret::from_bytes([8; 32]);
        assert_ne!(secret.cluster_id(), other.cluster_id());
        assert!(secret.cluster_id().starts_with("auxot-"));
    }
}
