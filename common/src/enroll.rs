//! Enrollment: how a worker gets its certificate, and renews it.
//!
//! A worker makes its own key pair and sends a router a certificate signing request with proof
//! that it may join: the join token's secret the first time ([`EnrollRequest::Join`]), a
//! signature by its current certificate's key when renewing ([`EnrollRequest::Renew`]). The
//! router, which alone holds the CA key, answers with a certificate naming the node id and the
//! role the token allows, the cluster's root certificate and the gossip key.
//!
//! The exchange is one request and one reply (length-prefixed JSON, as on QUIC streams) over TLS
//! on TCP. The worker authenticates the router before sending anything: the router must present
//! a `router` certificate chaining to the root whose fingerprint the join token carries, so a
//! stranger posing as a router learns nothing. TCP rather than QUIC because a router's QUIC
//! socket only dials, and the enrollment port is the router's gossip port number (TCP, where
//! gossip is UDP), so a worker needs one address for both.

use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use crate::mesh::gossip::GossipKey;
use crate::mesh::identity::{decode_chain, encode_chain};
use crate::pki::config::enrollment_client_config;
use crate::pki::{verify_signature, Fingerprint, NodeKey, PkiError};
use crate::wire::{read_frame_max, write_frame, FrameError};

/// ALPN of the enrollment protocol.
pub const ALPN: &[u8] = b"auxot-enroll/1";
/// Largest enrollment message: a chain, a CSR and a signature fit in a few kilobytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How long one enrollment exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;
const RENEW_DOMAIN: &[u8] = b"auxot-renew-v1\0";

/// What a worker asks a router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum EnrollRequest {
    /// A first certificate, proven by a join token.
    Join {
        node_id: String,
        token_id: String,
        /// The token's secret, base64.
        token_secret: String,
        /// DER certificate signing request, base64.
        csr: String,
    },
    /// A fresh certificate before the current one expires, proven by the current key.
    Renew {
        /// The current chain, as gossiped.
        chain: String,
        csr: String,
        /// Signature of the current key over the CSR, base64.
        proof: String,
    },
}

/// The gossip key as it travels in an enrollment reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipGrant {
    pub cluster_id: String,
    /// 32 bytes, base64.
    pub key: String,
}

/// What the router answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EnrollReply {
    Issued {
        /// The new chain (leaf first), as gossiped.
        chain: String,
        /// The cluster's root certificate, DER, base64.
        root: String,
        gossip: GossipGrant,
    },
    Refused {
        reason: String,
        /// Set when the refusal may pass (the node id is held by a live node that may be
        /// about to be declared dead): try again after this many seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
}

/// An issued certificate, decoded.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub chain: Vec<CertificateDer<'static>>,
    pub root: CertificateDer<'static>,
    pub gossip: GossipKey,
}

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with {addr} (is it a router of this cluster?): {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    #[error("enrollment exchange: {0}")]
    Frame(#[from] FrameError),
    #[error("the router closed the connection without answering")]
    NoAnswer,
    #[error("no answer within {TIMEOUT:?}")]
    Timeout,
    #[error("tls configuration: {0}")]
    Pki(#[from] PkiError),
    #[error("the router refused: {reason}")]
    Refused {
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("the router's answer is malformed: {0}")]
    Malformed(String),
}

impl EnrollError {
    /// Whether trying again later (or another router) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            EnrollError::Refused { retry_after, .. } => retry_after.is_some(),
            // The router's certificate does not chain to the token's root: another cluster.
            EnrollError::Tls { source, .. } => source.kind() != std::io::ErrorKind::InvalidData,
            EnrollError::Malformed(_) | EnrollError::Pki(_) => false,
            _ => true,
        }
    }
}

/// Base64 of DER bytes.
pub fn encode(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Bytes of base64 text.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    B64.decode(text).ok()
}

/// The proof for a renewal: the current key's signature over the new CSR.
pub fn renew_proof(current: &NodeKey, csr_der: &[u8]) -> String {
    let mut message = RENEW_DOMAIN.to_vec();
    message.extend_from_slice(csr_der);
    encode(&current.sign(&message))
}

/// Checks a renewal proof against the current certificate's public key.
pub fn check_renew_proof(public_key: &[u8; 32], csr_der: &[u8], proof: &str) -> bool {
    let Some(signature) = decode(proof) else {
        return false;
    };
    let mut message = RENEW_DOMAIN.to_vec();
    message.extend_from_slice(csr_der);
    verify_signature(public_key, &message, &signature).is_ok()
}

/// A join request for `node_id` with `key`, proven by the token.
pub fn join_request(
    key: &NodeKey,
    node_id: &str,
    token: &crate::join_token::JoinToken,
) -> Result<EnrollRequest, PkiError> {
    Ok(EnrollRequest::Join {
        node_id: node_id.to_string(),
        token_id: token.id.clone(),
        token_secret: encode(&token.secret),
        csr: encode(key.csr_der(node_id)?.as_ref()),
    })
}

/// A renewal request: a CSR for `next` (which may be the current key), proven by `current`.
pub fn renew_request(
    current: &NodeKey,
    current_chain: &[CertificateDer<'_>],
    next: &NodeKey,
    node_id: &str,
) -> Result<EnrollRequest, PkiError> {
    let csr = next.csr_der(node_id)?;
    Ok(EnrollRequest::Renew {
        chain: encode_chain(current_chain),
        csr: encode(csr.as_ref()),
        proof: renew_proof(current, csr.as_ref()),
    })
}

/// Sends `request` to the router at `addr` (`host:port`), trusting only a router certificate
/// that chains to the root with fingerprint `root`, and decodes the certificate it issues.
pub async fn enroll(
    addr: &str,
    root: Fingerprint,
    request: &EnrollRequest,
) -> Result<Enrollment, EnrollError> {
    let reply = tokio::time::timeout(TIMEOUT, exchange(addr, root, request))
        .await
        .map_err(|_| EnrollError::Timeout)??;
    match reply {
        EnrollReply::Refused {
            reason,
            retry_after_secs,
        } => Err(EnrollError::Refused {
            reason,
            retry_after: retry_after_secs.map(Duration::from_secs),
        }),
        EnrollReply::Issued {
            chain,
            root: root_der,
            gossip,
        } => {
            let malformed = |what: &str| EnrollError::Malformed(what.to_string());
            let chain = decode_chain(&chain).ok_or_else(|| malformed("chain"))?;
            let root_der = decode(&root_der).ok_or_else(|| malformed("root"))?;
            if Fingerprint::of(&root_der) != root {
                return Err(malformed("a root other than the one the token names"));
            }
            let key: [u8; 32] = decode(&gossip.key)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| malformed("gossip key"))?;
            Ok(Enrollment {
                chain,
                root: CertificateDer::from(root_der),
                gossip: GossipKey {
                    cluster_id: gossip.cluster_id,
                    key,
                },
            })
        }
    }
}

async fn exchange(
    addr: &str,
    root: Fingerprint,
    request: &EnrollRequest,
) -> Result<EnrollReply, EnrollError> {
    let config = enrollment_client_config(root, &[ALPN])?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| EnrollError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    // The pinned verifier checks the root and the router role, not a name: workers dial routers
    // by address.
    let name = ServerName::try_from("auxot-router").map_err(|e| EnrollError::Tls {
        addr: addr.to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|source| EnrollError::Tls {
            addr: addr.to_string(),
            source,
        })?;
    write_frame(&mut tls, request).await?;
    tls.flush().await.map_err(FrameError::Io)?;
    read_frame_max::<_, EnrollReply>(&mut tls, MAX_MESSAGE_BYTES)
        .await?
        .ok_or(EnrollError::NoAnswer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_proofs_bind_the_csr_to_the_current_key() {
        let current = NodeKey::generate().expect("key");
        let csr = NodeKey::generate()
            .expect("key")
            .csr_der("w1")
            .expect("csr");
        let proof = renew_proof(&current, csr.as_ref());
        assert!(check_renew_proof(
            &current.public_key_raw(),
            csr.as_ref(),
            &proof
        ));
        let other = NodeKey::generate().expect("key");
        assert!(!check_renew_proof(
            &other.public_key_raw(),
            csr.as_ref(),
            &proof
        ));
        assert!(!check_renew_proof(
            &current.public_key_raw(),
            b"another csr",
            &proof
        ));
    }

    #[test]
    fn messages_are_tagged() {
        let refused = EnrollReply::Refused {
            reason: "revoked".into(),
            retry_after_secs: None,
        };
        let json = serde_json::to_value(&refused).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"status": "refused", "reason": "revoked"})
        );
    }
}
