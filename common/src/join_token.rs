//! Join tokens: what an operator hands a worker host so it can ask for a certificate.
//!
//! A token is `jtk2.<id>.<secret>.<root>`: a public id (which token record to check), 32 random
//! secret bytes (the proof), and the SHA-256 fingerprint of the cluster's root certificate, so
//! the worker can authenticate the router it enrolls with before sending the secret (as
//! kubeadm's `--discovery-token-ca-cert-hash` does). A token grants the right to ask for a node
//! certificate of one role and nothing else: it carries no key of the cluster's. Routers keep
//! only a SHA-256 of the secret; the secret is 32 random bytes, so a slow hash adds nothing.

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

use crate::pki::Fingerprint;

/// First part of every join token of this format.
pub const PREFIX: &str = "jtk2";
/// Prefix of the tokens of auxot clusters created before per-node certificates.
const OLD_PREFIX: &str = "jtk_";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Public: names the token record.
    pub id: String,
    pub secret: [u8; 32],
    /// The cluster's root certificate, by its SHA-256.
    pub root: Fingerprint,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Why a join token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("this join token is from an auxot cluster of the old format (one shared secret); ask the operator to run `auxot-router migrate` and `auxot-router tokens create`, then join with the new token")]
    OldFormat,
    #[error("a join token looks like `jtk2.<id>.<secret>.<root>` (copy it exactly as `auxot-router setup` or `tokens create` printed it)")]
    Shape,
    #[error("the join token's {0} is not valid base64url")]
    Encoding(&'static str),
}

fn random<const N: usize>() -> Result<[u8; N], ring::error::Unspecified> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(bytes)
}

impl JoinToken {
    /// A new token for the cluster whose root has fingerprint `root`.
    pub fn generate(root: Fingerprint) -> Result<Self, ring::error::Unspecified> {
        Ok(JoinToken {
            id: B64.encode(random::<8>()?),
            secret: random::<32>()?,
            root,
        })
    }

    /// Parses a token as printed.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.starts_with(OLD_PREFIX) {
            return Err(TokenError::OldFormat);
        }
        let parts: Vec<&str> = text.split('.').collect();
        let [PREFIX, id, secret, root] = parts[..] else {
            return Err(TokenError::Shape);
        };
        let id_bytes = B64.decode(id).map_err(|_| TokenError::Encoding("id"))?;
        if id_bytes.len() != 8 {
            return Err(TokenError::Shape);
        }
        let secret: [u8; 32] = B64
            .decode(secret)
            .map_err(|_| TokenError::Encoding("secret"))?
            .try_into()
            .map_err(|_| TokenError::Shape)?;
        let root: [u8; 32] = B64
            .decode(root)
            .map_err(|_| TokenError::Encoding("root fingerprint"))?
            .try_into()
            .map_err(|_| TokenError::Shape)?;
        Ok(JoinToken {
            id: id.to_string(),
            secret,
            root: Fingerprint::from_bytes(root),
        })
    }

    /// The SHA-256 of the secret, hex: what routers store and compare.
    pub fn secret_hash(&self) -> String {
        secret_hash(&self.secret)
    }
}

/// The SHA-256 of a token secret, hex.
pub fn secret_hash(secret: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, secret).as_ref())
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            self.id,
            B64.encode(self.secret),
            B64.encode(self.root.as_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_hide_their_secret() {
        let token = JoinToken::generate(Fingerprint::from_bytes([7; 32])).expect("rng");
        let text = token.to_string();
        assert!(text.starts_with("jtk2."));
        assert_eq!(JoinToken::parse(&format!(" {text}\n")), Ok(token.clone()));
        assert!(!format!("{token:?}").contains(&B64.encode(token.secret)));
        assert_eq!(token.secret_hash().len(), 64);
    }

    #[test]
    fn bad_tokens_say_what_is_wrong() {
        assert_eq!(
            JoinToken::parse("jtk_AAAA"),
            Err(TokenError::OldFormat),
            "a token of the old format says how to migrate"
        );
        assert_eq!(JoinToken::parse("nope"), Err(TokenError::Shape));
        assert_eq!(JoinToken::parse("jtk2.a.b"), Err(TokenError::Shape));
        assert!(matches!(
            JoinToken::parse("jtk2.!!!.b.c"),
            Err(TokenError::Encoding(_))
        ));
        assert!(TokenError::OldFormat
            .to_string()
            .contains("auxot-router migrate"));
    }
}
