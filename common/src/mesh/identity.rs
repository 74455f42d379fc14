//! This node's identity on the mesh: its own key, the certificate chain the cluster CA issued
//! for it (naming its node id and role), and the cluster's root certificate it trusts.
//!
//! Nothing here can mint a certificate: only routers hold the CA key (see `auxot-router`), and
//! workers get theirs by enrolling ([`crate::enroll`]). The identity builds the rustls
//! configurations that enforce roles on the wire: who may connect to this node, and what a node
//! this node dials must be.

use std::time::SystemTime;

use base64::Engine as _;
use rustls_pki_types::CertificateDer;

use crate::pki::config::{mesh_client_config, mesh_server_config};
use crate::pki::{NodeKey, PeerCert, PkiError, RevocationCheck, Role};
use crate::wire::ALPN;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// A node's key, chain and trust anchor.
pub struct MeshIdentity {
    node_id: String,
    role: Role,
    not_after: SystemTime,
    key: NodeKey,
    /// Leaf first, then any intermediate.
    chain: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
}

impl std::fmt::Debug for MeshIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshIdentity")
            .field("node_id", &self.node_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Which peers a node deals with, and which node ids are revoked.
#[derive(Clone)]
pub struct TrustPolicy {
    /// Roles that may connect to this node (empty: it accepts no connections).
    pub accept_from: Vec<Role>,
    /// Roles this node may dial.
    pub dial: Vec<Role>,
    pub revoked: RevocationCheck,
}

impl MeshIdentity {
    /// The identity in `chain` (issued for `key`), trusting `root`.
    pub fn new(
        key: NodeKey,
        chain: Vec<CertificateDer<'static>>,
        root: CertificateDer<'static>,
    ) -> Result<Self, PkiError> {
        let leaf = chain
            .first()
            .ok_or_else(|| PkiError::Certificate("empty certificate chain".into()))?;
        let cert = PeerCert::parse(leaf)?;
        if cert.public_key_raw != key.public_key_raw() {
            return Err(PkiError::Certificate(
                "the certificate was issued for another key".into(),
            ));
        }
        Ok(MeshIdentity {
            node_id: cert.node_id,
            role: cert.role,
            not_after: cert.not_after,
            key,
            chain,
            root,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Server side: presents this node's chain; accepts only clients `policy` allows.
    pub fn server_tls(&self, policy: &TrustPolicy) -> Result<rustls::ServerConfig, PkiError> {
        mesh_server_config(
            &self.key,
            self.chain.clone(),
            self.root.clone(),
            &policy.accept_from,
            policy.revoked.clone(),
            &[ALPN],
        )
    }

    /// Client side: presents this node's chain; accepts only servers `policy` allows, named as
    /// the node id dialled.
    pub fn client_tls(&self, policy: &TrustPolicy) -> Result<rustls::ClientConfig, PkiError> {
        mesh_client_config(
            &self.key,
            self.chain.clone(),
            self.root.clone(),
            &policy.dial,
            policy.revoked.clone(),
            &[ALPN],
        )
    }

    /// The chain as a gossip value, so peers can check this node's signed state.
    pub fn chain_value(&self) -> String {
        encode_chain(&self.chain)
    }
}

/// A chain as a gossip value: base64 certificates joined by `,`.
pub fn encode_chain(chain: &[CertificateDer<'_>]) -> String {
    chain
        .iter()
        .map(|c| B64.encode(c.as_ref()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A chain from its gossip value.
pub fn decode_chain(value: &str) -> Option<Vec<CertificateDer<'static>>> {
    value
        .split(',')
        .map(|part| {
            B64.decode(part)
                .ok()
                .map(|der| CertificateDer::from(der).into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::CertificateAuthority;
    use std::time::Duration;

    #[test]
    fn an_identity_needs_a_certificate_for_its_own_key() {
        let ca = CertificateAuthority::generate_root("test").expect("ca");
        let key = NodeKey::generate().expect("key");
        let issued = ca
            .issue_for_key(
                &key.public_key_raw(),
                "w1",
                Role::Worker,
                Duration::from_secs(60),
            )
            .expect("issue");
        let identity =
            MeshIdentity::new(key, issued.chain.clone(), ca.root_der().clone()).expect("identity");
        assert_eq!((identity.node_id(), identity.role()), ("w1", Role::Worker));
        assert_eq!(
            decode_chain(&identity.chain_value()),
            Some(issued.chain.clone())
        );
        let other = NodeKey::generate().expect("key");
        assert!(MeshIdentity::new(other, issued.chain, ca.root_der().clone()).is_err());
    }
}
