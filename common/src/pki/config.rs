//! rustls configurations for the mesh and for enrollment, ready for quinn to wrap
//! (`quinn::crypto::rustls::QuicServerConfig::try_from(config)`).
//!
//! Always TLS 1.3 (QUIC requires it) on the ring provider chosen explicitly: rustls panics at the
//! first builder when two providers are compiled in and none is chosen, and quinn's and
//! reqwest's features can pull in a second one at any time.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::NoClientAuth;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::CertificateDer;

use super::error::PkiError;
use super::fingerprint::Fingerprint;
use super::node_key::NodeKey;
use super::pinned::PinnedRootVerifier;
use super::role::Role;
use super::verify::{PeerServerVerifier, RevocationCheck, RoleClientVerifier};

/// The one crypto provider of the cluster's TLS.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn alpn_list(alpn: &[&[u8]]) -> Vec<Vec<u8>> {
    alpn.iter().map(|p| p.to_vec()).collect()
}

/// A mesh server: presents `chain` (leaf first, then any intermediate) with `key`, and accepts
/// clients of `root` whose role is in `client_roles` and whose node id is not revoked.
pub fn mesh_server_config(
    key: &NodeKey,
    chain: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
    client_roles: &[Role],
    is_revoked: RevocationCheck,
    alpn: &[&[u8]],
) -> Result<ServerConfig, PkiError> {
    let verifier = RoleClientVerifier::new(root, client_roles, is_revoked)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key.private_key_der())?;
    config.alpn_protocols = alpn_list(alpn);
    Ok(config)
}

/// A mesh client: presents `chain` with `key`, and accepts servers of `root` whose certificate
/// names the node id dialled (the server name), in one of `server_roles`, not revoked.
pub fn mesh_client_config(
    key: &NodeKey,
    chain: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
    server_roles: &[Role],
    is_revoked: RevocationCheck,
    alpn: &[&[u8]],
) -> Result<ClientConfig, PkiError> {
    let verifier = PeerServerVerifier::new(root, server_roles, is_revoked)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key.private_key_der())?;
    config.alpn_protocols = alpn_list(alpn);
    Ok(config)
}

/// A router's enrollment server: presents `chain_with_root` (leaf, any intermediate, then the
/// root, which a worker pinning the root fingerprint needs to see) and asks for no client
/// certificate, since an enrolling worker has none yet; the join token inside the connection is
/// what authenticates it.
pub fn enrollment_server_config(
    key: &NodeKey,
    chain_with_root: Vec<CertificateDer<'static>>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, PkiError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(NoClientAuth))
        .with_single_cert(chain_with_root, key.private_key_der())?;
    config.alpn_protocols = alpn_list(alpn);
    Ok(config)
}

/// A worker's enrollment client: trusts a router whose chain includes the root with fingerprint
/// `root`, and presents no certificate.
pub fn enrollment_client_config(
    root: Fingerprint,
    alpn: &[&[u8]],
) -> Result<ClientConfig, PkiError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedRootVerifier::new(root)))
        .with_no_client_auth();
    config.alpn_protocols = alpn_list(alpn);
    Ok(config)
}
