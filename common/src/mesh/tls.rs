//! Mutual-TLS identities, derived from the cluster secret. This module knows rustls only; the QUIC
//! transport ([`super::quic`]) wraps its configurations.
//!
//! The cluster's certificate authority key is an Ed25519 key whose seed is derived from the
//! cluster secret, so every node can rebuild the same CA without any file being shipped. Each
//! node draws its own key, issues itself a certificate for its node id signed by that CA, and
//! trusts exactly that CA on both sides of every connection. A node without the secret cannot
//! produce a certificate the others accept, so it can neither open nor accept QUIC streams.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::secret::ClusterSecret;
use crate::wire::ALPN;

/// PKCS#8 v1 header of an Ed25519 private key (RFC 8410); the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a TLS identity or configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("node id `{0}` is not usable as a certificate name (use letters, digits and `-`)")]
    NodeId(String),
}

/// This node's certificate and key, and the cluster CA it trusts.
pub struct NodeIdentity {
    node_id: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    ca: CertificateDer<'static>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn ca_params(secret: &ClusterSecret) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("auxot cluster CA {}", secret.cluster_id()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Fixed fields: every node must rebuild a byte-identical subject and key.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params.serial_number = Some(SerialNumber::from_slice(&[1]));
    Ok(params)
}

fn ca_key(secret: &ClusterSecret) -> Result<KeyPair, TlsError> {
    let seed = secret.derive("quic ca ed25519 seed");
    let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(&seed);
    let der = PrivatePkcs8KeyDer::from(pkcs8);
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &der,
        &rcgen::PKCS_ED25519,
    )?)
}

/// Whether a node id can be a certificate's DNS name and a TLS server name.
pub fn is_valid_node_id(node_id: &str) -> bool {
    !node_id.is_empty()
        && node_id.len() <= 63
        && node_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !node_id.starts_with('-')
        && !node_id.ends_with('-')
}

impl NodeIdentity {
    /// Issues a fresh certificate for `node_id` under the cluster CA.
    pub fn issue(secret: &ClusterSecret, node_id: &str) -> Result<Self, TlsError> {
        if !is_valid_node_id(node_id) {
            return Err(TlsError::NodeId(node_id.to_string()));
        }
        let ca_params = ca_params(secret)?;
        let ca_key = ca_key(secret)?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let node_key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let mut params = CertificateParams::new(vec![node_id.to_string()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = std::time::SystemTime::now();
        params.not_before = (now - Duration::from_secs(24 * 3600)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * 24 * 3600)).into();
        let cert = params.signed_by(&node_key, &issuer)?;

        Ok(NodeIdentity {
            node_id: node_id.to_string(),
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(node_key.serialize_der()),
            ca: ca_cert.der().clone(),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// Server side: presents this node's certificate and requires one from the cluster CA.
    pub fn server_tls_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Self::provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone()).build()?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        Ok(tls)
    }

    /// Client side: presents this node's certificate and accepts servers of the cluster CA whose
    /// certificate names the node id it dials.
    pub fn client_tls_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(Self::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        Ok(tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_must_be_dns_labels() {
        assert!(is_valid_node_id("worker-gpu1-7948"));
        assert!(!is_valid_node_id("Worker"));
        assert!(!is_valid_node_id("a.b"));
        assert!(!is_valid_node_id("-a"));
        assert!(!is_valid_node_id(""));
    }

    #[test]
    fn the_ca_is_the_same_on_every_node() {
        let secret = ClusterSecret::from_bytes([3; 32]);
        let a = NodeIdentity::issue(&secret, "node-a").expect("issue a");
        let b = NodeIdentity::issue(&secret, "node-b").expect("issue b");
        assert_eq!(a.ca, b.ca);
        assert_ne!(a.chain, b.chain);
        let other = NodeIdentity::issue(&ClusterSecret::from_bytes([4; 32]), "node-a")
            .expect("issue other");
        assert_ne!(a.ca, other.ca);
    }
}
