//! The cluster's certificate authority: a certificate and the key that signs node certificates.
//!
//! `auxot-router setup` makes a random root. Operators who want the root offline make an
//! intermediate with it ([`CertificateAuthority::generate_intermediate`]), copy only the
//! intermediate to the routers, and keep the root's key elsewhere; nodes then present
//! `leaf + intermediate` and trust only the root, so replacing a compromised intermediate needs
//! no change on any node. The root may sign intermediates but an intermediate may sign only
//! leaves (path length 1 and 0), so a leaked node key can never mint certificates.
//!
//! The CA decides every field of what it issues: [`CertificateAuthority::issue`] takes only the
//! public key out of a CSR (after checking the CSR is signed by it, i.e. that the requester holds
//! the private key), never the names or extensions the requester asked for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
    PKCS_ED25519,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::OID_SIG_ED25519;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::cert::identity_uri;
use super::error::PkiError;
use super::fingerprint::Fingerprint;
use super::node_id::is_valid_node_id;
use super::pem;
use super::role::Role;

const ROOT_CN_PREFIX: &str = "auxot root CA ";
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
/// A root outlives any deployment it is likely to see; rotating it means re-enrolling everyone.
pub const ROOT_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// An intermediate is replaced by re-signing with the offline root, at no cost to nodes.
pub const INTERMEDIATE_LIFETIME: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// Certificates start this long before they are made, so a peer whose clock is a little behind
/// does not refuse a certificate that was just issued.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A certificate authority: its certificate, its signing key, and the root it chains to.
pub struct CertificateAuthority {
    /// This CA's certificate: the root itself, or an intermediate signed by the root.
    cert: CertificateDer<'static>,
    /// Signs what this CA issues; lives only in the routers' data directory.
    key: KeyPair,
    /// The trust anchor every node pins; the same as `cert` for a root.
    root: CertificateDer<'static>,
    /// When `cert` expires; nothing this CA issues outlives it.
    not_after: SystemTime,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("root", &self.root_fingerprint())
            .field("intermediate", &!self.is_root())
            .finish_non_exhaustive()
    }
}

/// A certificate the CA issued, as the holder presents it.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Leaf first, then the intermediate when the CA is one; never the root, which peers hold.
    pub chain: Vec<CertificateDer<'static>>,
    /// When the leaf expires (whole seconds, as the certificate records it).
    pub not_after: SystemTime,
}

/// The CA files, as written by [`CertificateAuthority::to_pem`].
#[derive(Clone)]
pub struct CaPem {
    /// This CA's certificate, followed by the root when this CA is an intermediate.
    pub chain: String,
    /// This CA's PKCS#8 private key.
    pub key: String,
}

/// An Ed25519 public key as rcgen signs it into a certificate.
struct Ed25519Public<'a>(&'a [u8]);

impl PublicKeyData for Ed25519Public<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ED25519
    }
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    // A positive INTEGER: the top bit clear keeps the encoding at 16 bytes.
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// `t` rounded down to a whole second, as X.509 times are.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn ca_params(common_name: String, path_len: u8, not_after: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = (SystemTime::now() - CLOCK_SKEW).into();
    params.not_after = whole_seconds(not_after).into();
    params.use_authority_key_identifier_extension = true;
    params
}

fn parse_x509<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::Certificate(format!("not a DER certificate: {e}")))
}

fn not_after_of(cert: &X509Certificate<'_>) -> SystemTime {
    let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

impl CertificateAuthority {
    /// A new self-signed root for the cluster called `cluster_name`.
    pub fn generate_root(cluster_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let not_after = whole_seconds(SystemTime::now() + ROOT_LIFETIME);
        let mut params = ca_params(format!("{ROOT_CN_PREFIX}{cluster_name}"), 1, not_after);
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?.der().clone();
        Ok(CertificateAuthority {
            root: cert.clone(),
            cert,
            key,
            not_after,
        })
    }

    /// A new intermediate signed by `root`, for routers to hold while the root stays offline.
    pub fn generate_intermediate(root: &CertificateAuthority) -> Result<Self, PkiError> {
        if !root.is_root() {
            return Err(PkiError::Authority(
                "an intermediate must be signed by the root".into(),
            ));
        }
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let not_after = root
            .not_after
            .min(whole_seconds(SystemTime::now() + INTERMEDIATE_LIFETIME));
        let root_name = parse_x509(&root.cert)?
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(|cn| cn.strip_prefix(ROOT_CN_PREFIX).unwrap_or(cn).to_string())
            .unwrap_or_default();
        let mut params = ca_params(format!("auxot intermediate CA {root_name}"), 0, not_after);
        params.serial_number = Some(random_serial()?);
        let issuer = Issuer::from_ca_cert_der(&root.cert, &root.key)?;
        let cert = params.signed_by(&key, &issuer)?.der().clone();
        Ok(CertificateAuthority {
            cert,
            key,
            root: root.root.clone(),
            not_after,
        })
    }

    /// Whether this CA is the root (rather than an intermediate below it).
    pub fn is_root(&self) -> bool {
        self.cert == self.root
    }

    /// This CA's own certificate.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The root certificate: the one trust anchor of the cluster.
    pub fn root_der(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// SHA-256 of the root certificate's DER, for join tokens.
    pub fn root_fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.root)
    }

    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The certificates a holder of this CA's leaves presents after the leaf: the intermediate,
    /// or nothing under a root.
    pub fn intermediates(&self) -> Vec<CertificateDer<'static>> {
        if self.is_root() {
            Vec::new()
        } else {
            vec![self.cert.clone()]
        }
    }

    /// The CA as two PEM files: certificate chain and private key.
    pub fn to_pem(&self) -> CaPem {
        let mut chain = pem::encode("CERTIFICATE", &self.cert);
        if !self.is_root() {
            chain.push_str(&pem::encode("CERTIFICATE", &self.root));
        }
        CaPem {
            chain,
            key: pem::encode("PRIVATE KEY", &self.key.serialize_der()),
        }
    }

    /// Loads what [`CertificateAuthority::to_pem`] wrote, checking that the key belongs to the
    /// certificate, that it is a CA, and that the chain ends in a self-signed root.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let certs = pem::decode_certs(chain_pem)?;
        let (cert, root) = match &certs[..] {
            [root] => (root.clone(), root.clone()),
            [cert, root] => (cert.clone(), root.clone()),
            _ => {
                return Err(PkiError::Authority(
                    "expected the CA certificate, then the root if it is an intermediate".into(),
                ))
            }
        };
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&pem::decode_key(key_pem)?, &PKCS_ED25519)?;
        let bad = |why: &str| PkiError::Authority(why.to_string());
        let (parsed, parsed_root) = (parse_x509(&cert)?, parse_x509(&root)?);
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(bad("the key does not belong to the CA certificate"));
        }
        if !parsed.is_ca() || !parsed_root.is_ca() {
            return Err(bad("not a CA certificate"));
        }
        parsed_root
            .verify_signature(None)
            .map_err(|_| bad("the root is not self-signed"))?;
        parsed
            .verify_signature(Some(parsed_root.public_key()))
            .map_err(|_| bad("the CA certificate is not signed by the root"))?;
        let not_after = not_after_of(&parsed);
        Ok(CertificateAuthority {
            cert,
            key,
            root,
            not_after,
        })
    }

    /// Issues a certificate for the key in `csr_der`, naming `node_id` in `role`. The CSR must
    /// be signed by its own Ed25519 key; its subject, names and extensions are ignored.
    pub fn issue(
        &self,
        csr_der: &[u8],
        node_id: &str,
        role: Role,
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let (_, csr) = X509CertificationRequest::from_der(csr_der)
            .map_err(|e| PkiError::Csr(format!("not a DER CSR: {e}")))?;
        let spki = &csr.certification_request_info.subject_pki;
        if spki.algorithm.algorithm != OID_SIG_ED25519 {
            return Err(PkiError::KeyAlgorithm);
        }
        csr.verify_signature()
            .map_err(|_| PkiError::Csr("not signed by the key it asks to certify".into()))?;
        self.issue_for_key(
            spki.subject_public_key.data.as_ref(),
            node_id,
            role,
            lifetime,
        )
    }

    /// Issues a certificate for a raw 32-byte Ed25519 public key (a router certifying itself).
    pub fn issue_for_key(
        &self,
        public_key_raw: &[u8],
        node_id: &str,
        role: Role,
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        if !is_valid_node_id(node_id) {
            return Err(PkiError::NodeId(node_id.to_string()));
        }
        if public_key_raw.len() != 32 {
            return Err(PkiError::KeyAlgorithm);
        }
        let now = SystemTime::now();
        if self.not_after <= now {
            return Err(PkiError::Authority("the CA certificate has expired".into()));
        }
        let not_after = whole_seconds((now + lifetime.min(10 * YEAR)).min(self.not_after));
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::DnsName(node_id.try_into()?),
            SanType::URI(identity_uri(role, node_id).try_into()?),
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(&self.cert, &self.key)?;
        let leaf = params
            .signed_by(&Ed25519Public(public_key_raw), &issuer)?
            .der()
            .clone();
        let mut chain = vec![leaf];
        chain.extend(self.intermediates());
        Ok(IssuedCert { chain, not_after })
    }
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
