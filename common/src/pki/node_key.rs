//! A node's own Ed25519 key pair. It is drawn on the node, never leaves it, and does three jobs:
//! the TLS key behind the node's certificate, the key that signs the node's gossip advert, and
//! the key a CSR proves possession of when the node enrolls. Keeping ring's key pair next to its
//! PKCS#8 encoding makes signing infallible and hands rustls and rcgen the bytes they take.

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ED25519};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::{CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::error::PkiError;
use super::node_id::is_valid_node_id;
use super::pem;

/// An Ed25519 signing key with its PKCS#8 encoding.
pub struct NodeKey {
    /// What rustls, rcgen and the key file need.
    pkcs8: PrivatePkcs8KeyDer<'static>,
    /// What signs adverts, parsed once.
    pair: Ed25519KeyPair,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey(ed25519:{})", hex::encode(self.public_key_raw()))
    }
}

impl NodeKey {
    /// Draws a new key from the operating system's random source.
    pub fn generate() -> Result<Self, PkiError> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| PkiError::Random)?;
        Self::from_pkcs8_der(doc.as_ref())
    }

    /// Loads a PKCS#8 Ed25519 key (v1 or v2, as openssl and rcgen write them).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, PkiError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| PkiError::Key(format!("not a PKCS#8 Ed25519 key: {e}")))?;
        Ok(NodeKey {
            pkcs8: PrivatePkcs8KeyDer::from(der.to_vec()),
            pair,
        })
    }

    /// Loads a `PRIVATE KEY` PEM block.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        Self::from_pkcs8_der(pem::decode_key(pem)?.secret_pkcs8_der())
    }

    /// The key as a `PRIVATE KEY` PEM block, for the node's key file.
    pub fn to_pem(&self) -> String {
        pem::encode("PRIVATE KEY", self.pkcs8.secret_pkcs8_der())
    }

    pub fn pkcs8_der(&self) -> &PrivatePkcs8KeyDer<'static> {
        &self.pkcs8
    }

    /// The key in the form rustls' `with_single_cert` / `with_client_auth_cert` take.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.pkcs8.clone_key())
    }

    /// The 32-byte Ed25519 public key, as certificates and adverts carry it.
    pub fn public_key_raw(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Signs `msg`; Ed25519 is deterministic and cannot fail once the key is parsed.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }

    /// The key as rcgen wants it for signing a CSR (or, for a CA, certificates).
    pub(crate) fn rcgen_key(&self) -> Result<KeyPair, PkiError> {
        Ok(KeyPair::from_pkcs8_der_and_sign_algo(
            &self.pkcs8,
            &PKCS_ED25519,
        )?)
    }

    /// A certificate signing request naming `node_id`. The CA takes only the public key (and the
    /// proof that this node holds its private half) from it; the name is a courtesy for logs.
    pub fn csr_der(
        &self,
        node_id: &str,
    ) -> Result<CertificateSigningRequestDer<'static>, PkiError> {
        if !is_valid_node_id(node_id) {
            return Err(PkiError::NodeId(node_id.to_string()));
        }
        let mut params = CertificateParams::new(vec![node_id.to_string()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        params.distinguished_name = dn;
        Ok(params.serialize_request(&self.rcgen_key()?)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::cert::verify_signature;

    #[test]
    fn signatures_verify_with_the_public_key_only() {
        let key = NodeKey::generate().expect("key");
        let sig = key.sign(b"advert v1");
        verify_signature(&key.public_key_raw(), b"advert v1", &sig).expect("verifies");
        assert!(verify_signature(&key.public_key_raw(), b"advert v2", &sig).is_err());
        let other = NodeKey::generate().expect("key");
        assert!(verify_signature(&other.public_key_raw(), b"advert v1", &sig).is_err());
    }

    #[test]
    fn keys_survive_a_pem_round_trip() {
        let key = NodeKey::generate().expect("key");
        let loaded = NodeKey::from_pem(&key.to_pem()).expect("load");
        assert_eq!(loaded.public_key_raw(), key.public_key_raw());
        assert_eq!(loaded.sign(b"m"), key.sign(b"m"));
        // rcgen writes PKCS#8 v1; those load too.
        let v1 = KeyPair::generate_for(&PKCS_ED25519).expect("rcgen key");
        let from_v1 = NodeKey::from_pkcs8_der(&v1.serialize_der()).expect("v1");
        assert_eq!(&from_v1.public_key_raw()[..], v1.public_key_raw());
        assert!(NodeKey::from_pkcs8_der(b"not a key").is_err());
    }

    #[test]
    fn csrs_need_a_valid_node_id() {
        let key = NodeKey::generate().expect("key");
        assert!(!key.csr_der("worker-1").expect("csr").as_ref().is_empty());
        assert!(matches!(key.csr_der("Not.Valid"), Err(PkiError::NodeId(_))));
    }
}
