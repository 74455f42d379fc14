//! rustls verifiers for the mesh: the cluster root, then the role, the node id and revocation.
//!
//! Chain building, validity, signatures and the TLS server-name check are rustls' own
//! (`WebPkiClientVerifier` / `WebPkiServerVerifier`), wrapped rather than reimplemented; the
//! wrappers add what webpki cannot know. Checking roles inside the handshake, rather than after
//! it in the application, means a connection from the wrong kind of node never exists, so no
//! code path can forget the check.
//!
//! Who accepts whom: a worker's server takes clients in role `router` only; a router dialling a
//! worker takes servers in role `worker` or `tools` whose certificate names the node id it
//! dialled. Revocation is a hook (`node id -> revoked?`) fed from the routers' revocation list,
//! consulted on every handshake: node certificates are short-lived, so the list only has to
//! cover the rest of a certificate's life.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::cert::PeerCert;
use super::config::provider;
use super::error::PkiError;
use super::role::Role;

/// Answers whether a node id has been revoked; consulted on every handshake, so keep it cheap
/// (a lookup in a set swapped in when the revocation list changes).
pub type RevocationCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A [`RevocationCheck`] that revokes nobody, for tests and for clusters without a list yet.
pub fn never_revoked() -> RevocationCheck {
    Arc::new(|_| false)
}

fn refused(why: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
        PkiError::Refused(why),
    ))))
}

/// Reads the leaf of a chain that already verified, and applies the role and revocation rules.
fn check_leaf(
    end_entity: &CertificateDer<'_>,
    allowed: &[Role],
    is_revoked: &RevocationCheck,
) -> Result<PeerCert, rustls::Error> {
    let peer = PeerCert::parse(end_entity).map_err(|e| refused(e.to_string()))?;
    if !allowed.contains(&peer.role) {
        return Err(refused(format!(
            "{} has role {}, expected one of {allowed:?}",
            peer.node_id, peer.role
        )));
    }
    if is_revoked(&peer.node_id) {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
    }
    Ok(peer)
}

fn roots(root: CertificateDer<'static>) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    roots.add(root)?;
    Ok(Arc::new(roots))
}

/// Server side: requires a client certificate chaining to the cluster root, in an allowed role,
/// for a node that is not revoked.
pub struct RoleClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<Role>,
    is_revoked: RevocationCheck,
}

impl RoleClientVerifier {
    pub fn new(
        root: CertificateDer<'static>,
        allowed: &[Role],
        is_revoked: RevocationCheck,
    ) -> Result<Self, PkiError> {
        let inner =
            WebPkiClientVerifier::builder_with_provider(roots(root)?, provider()).build()?;
        Ok(RoleClientVerifier {
            inner,
            allowed: allowed.to_vec(),
            is_revoked,
        })
    }
}

impl fmt::Debug for RoleClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleClientVerifier")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for RoleClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_leaf(end_entity, &self.allowed, &self.is_revoked)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Client side: requires the server to chain to the cluster root, to be the node id dialled
/// (the server name), in an allowed role, and not revoked.
pub struct PeerServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    allowed: Vec<Role>,
    is_revoked: RevocationCheck,
}

impl PeerServerVerifier {
    pub fn new(
        root: CertificateDer<'static>,
        allowed: &[Role],
        is_revoked: RevocationCheck,
    ) -> Result<Self, PkiError> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(roots(root)?, provider()).build()?;
        Ok(PeerServerVerifier {
            inner,
            allowed: allowed.to_vec(),
            is_revoked,
        })
    }
}

impl fmt::Debug for PeerServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerServerVerifier")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Checks the chain and that a DNS name in the certificate equals `server_name`.
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let peer = check_leaf(end_entity, &self.allowed, &self.is_revoked)?;
        // And that this DNS name is the identity's node id, not merely some name in it.
        match server_name {
            ServerName::DnsName(name) if name.as_ref() == peer.node_id => {
                Ok(ServerCertVerified::assertion())
            }
            _ => Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
