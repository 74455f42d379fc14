//! Reading a node certificate: who it names, in which role, until when, with which key; and
//! checking that a presented chain leads to the cluster root.
//!
//! The identity is written twice by the CA: a DNS SAN equal to the node id, which is what
//! rustls compares with the server name a client dials, and a URI SAN
//! `auxot://node/<role>/<node_id>`, which carries the role. [`PeerCert::parse`] insists that
//! the two agree and that there is exactly one of each, so no certificate can be read as two
//! different nodes by two different checks.
//!
//! [`verify_chain`] is a pure function of the chain, the root and the time, so a caller that
//! sees the same certificate in every gossip round can cache its answer keyed by the DER and
//! recheck only the expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::signature::{UnparsedPublicKey, ED25519};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::OID_SIG_ED25519;
use x509_parser::prelude::X509Certificate;

use super::error::PkiError;
use super::node_id::is_valid_node_id;
use super::role::Role;

/// The scheme and authority of the identity URI SAN.
pub const IDENTITY_URI_PREFIX: &str = "auxot://node/";

/// Certificates in the cluster are signed with Ed25519 only.
static CHAIN_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[webpki::ring::ED25519];

/// The URI SAN naming `node_id` in `role`.
pub fn identity_uri(role: Role, node_id: &str) -> String {
    format!("{IDENTITY_URI_PREFIX}{}/{node_id}", role.as_str())
}

/// The identity a node certificate asserts. Parsing does not establish trust: only a chain that
/// verified (TLS, or [`verify_chain`]) makes these fields believable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    pub node_id: String,
    pub role: Role,
    /// After this the certificate is refused; enrollment renews well before.
    pub not_after: SystemTime,
    /// The Ed25519 key that signs this node's gossip advert.
    pub public_key_raw: [u8; 32],
}

impl PeerCert {
    /// Reads the identity out of a DER certificate issued by the cluster CA.
    pub fn parse(der: &[u8]) -> Result<PeerCert, PkiError> {
        let bad = |why: &str| PkiError::Certificate(why.to_string());
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| PkiError::Certificate(format!("not a DER certificate: {e}")))?;
        let (role, node_id) = identity(&cert)?;
        let not_after = UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(cert.validity().not_after.timestamp())
                    .map_err(|_| bad("expiry before 1970"))?,
            );
        Ok(PeerCert {
            node_id,
            role,
            not_after,
            public_key_raw: ed25519_key(&cert)?,
        })
    }
}

/// The role and node id of the certificate's one identity URI, checked against its DNS SANs.
fn identity(cert: &X509Certificate<'_>) -> Result<(Role, String), PkiError> {
    let bad = |why: &str| PkiError::Certificate(why.to_string());
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Certificate(format!("subject alternative names: {e}")))?
        .ok_or_else(|| bad("no subject alternative names (not an auxot node certificate)"))?;
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(uri) => {
                if let Some(rest) = uri.strip_prefix(IDENTITY_URI_PREFIX) {
                    uris.push(rest);
                }
            }
            GeneralName::DNSName(name) => dns.push(*name),
            _ => {}
        }
    }
    let &[rest] = &uris[..] else {
        return Err(bad("expected exactly one auxot://node/ identity"));
    };
    let (role, node_id) = rest
        .split_once('/')
        .ok_or_else(|| bad("identity URI lacks a role"))?;
    let role = Role::parse(role)?;
    if !is_valid_node_id(node_id) {
        return Err(PkiError::NodeId(node_id.to_string()));
    }
    if dns != [node_id] {
        return Err(bad("DNS name does not match the identity URI"));
    }
    Ok((role, node_id.to_string()))
}

fn ed25519_key(cert: &X509Certificate<'_>) -> Result<[u8; 32], PkiError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(PkiError::KeyAlgorithm);
    }
    spki.subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| PkiError::KeyAlgorithm)
}

/// Checks an Ed25519 signature (a gossip advert's, say) against a raw 32-byte public key.
pub fn verify_signature(public_key_raw: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), PkiError> {
    UnparsedPublicKey::new(&ED25519, public_key_raw)
        .verify(msg, sig)
        .map_err(|_| PkiError::Signature)
}

/// Verifies `chain` (leaf first, then any intermediates) up to `root` at time `now`, the way
/// rustls verifies a TLS peer (webpki path building, validity, CA constraints, EKU serverAuth,
/// which every node certificate carries), then reads the leaf's identity.
pub fn verify_chain(
    chain: &[CertificateDer<'_>],
    root: &CertificateDer<'_>,
    now: UnixTime,
) -> Result<PeerCert, PkiError> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| PkiError::Certificate("empty certificate chain".into()))?;
    let anchor = webpki::anchor_from_trusted_cert(root).map_err(PkiError::Chain)?;
    let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(PkiError::Chain)?;
    end_entity
        .verify_for_usage(
            CHAIN_ALGORITHMS,
            &[anchor],
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(PkiError::Chain)?;
    PeerCert::parse(leaf)
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, SanType, PKCS_ED25519};

    use super::*;

    /// A self-signed certificate with the given DNS and URI names.
    fn with_names(dns: &[&str], uris: &[String]) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .expect("params");
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.clone().try_into().expect("uri")));
        }
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("key");
        params.self_signed(&key).expect("cert").der().clone()
    }

    #[test]
    fn the_identity_must_be_unambiguous() {
        let ok = with_names(&["w1"], &[identity_uri(Role::Tools, "w1")]);
        let peer = PeerCert::parse(&ok).expect("parse");
        assert_eq!((peer.node_id.as_str(), peer.role), ("w1", Role::Tools));

        let refused = [
            with_names(&["w1"], &[]),
            with_names(&["w2"], &[identity_uri(Role::Worker, "w1")]),
            with_names(&["w1", "r1"], &[identity_uri(Role::Worker, "w1")]),
            with_names(
                &["w1"],
                &[
                    identity_uri(Role::Worker, "w1"),
                    identity_uri(Role::Router, "w1"),
                ],
            ),
            with_names(&["w1"], &["auxot://node/admin/w1".to_string()]),
            with_names(&["w1"], &["auxot://node/w1".to_string()]),
        ];
        for der in refused {
            assert!(PeerCert::parse(&der).is_err());
        }
        assert!(PeerCert::parse(b"junk").is_err());
    }

    #[test]
    fn an_empty_chain_is_refused() {
        let root = with_names(&["w1"], &[identity_uri(Role::Worker, "w1")]);
        assert!(verify_chain(&[], &root, UnixTime::now()).is_err());
    }
}
