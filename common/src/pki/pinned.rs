//! The verifier a worker uses to enroll, when it has no certificate and knows the cluster only
//! by the root fingerprint in its join token.
//!
//! How the chain is presented: the router's enrollment endpoint sends
//! `leaf + intermediate (if any) + root`, i.e. its usual chain with the root certificate
//! appended (see [`super::config::enrollment_server_config`]). The worker finds, among the
//! certificates after the leaf, the one whose SHA-256 equals the pinned fingerprint, makes it
//! the trust anchor, and verifies the leaf against it exactly as any peer would (webpki path,
//! validity, signatures). Sending the root costs a few hundred bytes once per enrollment and
//! spares the worker a separate, unauthenticated download of the root.
//!
//! The server name is not checked: a worker dials a router by address and cannot know its node
//! id. What it must know is that the server is a router of this cluster, so the leaf must carry
//! role `router`. An attacker that is not a router holds no such certificate and so cannot see
//! the join token the worker sends next.

use std::fmt;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::cert::verify_chain;
use super::config::provider;
use super::error::PkiError;
use super::fingerprint::Fingerprint;
use super::role::Role;

/// Accepts a router whose presented chain includes the root with a known fingerprint.
pub struct PinnedRootVerifier {
    root: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedRootVerifier {
    pub fn new(root: Fingerprint) -> Self {
        PinnedRootVerifier {
            root,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl fmt::Debug for PinnedRootVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedRootVerifier")
            .field("root", &self.root)
            .finish()
    }
}

fn to_rustls(err: PkiError) -> rustls::Error {
    let cert_err = match err {
        PkiError::Chain(webpki::Error::CertExpired { .. }) => CertificateError::Expired,
        PkiError::Chain(webpki::Error::CertNotValidYet { .. }) => CertificateError::NotValidYet,
        PkiError::Chain(webpki::Error::UnknownIssuer) => CertificateError::UnknownIssuer,
        other => CertificateError::Other(rustls::OtherError(std::sync::Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert_err)
}

impl ServerCertVerifier for PinnedRootVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let root = intermediates
            .iter()
            .find(|cert| Fingerprint::of(cert) == self.root)
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let mut chain = vec![end_entity.clone()];
        chain.extend(intermediates.iter().filter(|c| *c != root).cloned());
        let peer = verify_chain(&chain, root, now).map_err(to_rustls)?;
        if peer.role != Role::Router {
            return Err(to_rustls(PkiError::Refused(format!(
                "{} has role {}, only a router enrolls nodes",
                peer.node_id, peer.role
            ))));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
