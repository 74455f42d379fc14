use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, Issuer, SanType};
use rustls_pki_types::UnixTime;

use super::*;
use crate::pki::cert::{verify_chain, PeerCert};
use crate::pki::node_key::NodeKey;

const HOUR: Duration = Duration::from_secs(3600);

fn at(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).expect("after 1970"))
}

fn root() -> CertificateAuthority {
    CertificateAuthority::generate_root("test").expect("root")
}

#[test]
fn an_issued_certificate_names_the_node_and_role_the_ca_chose() {
    let ca = root();
    let key = NodeKey::generate().expect("key");
    let csr = key.csr_der("w1").expect("csr");
    let issued = ca.issue(&csr, "w1", Role::Worker, HOUR).expect("issue");
    assert_eq!(issued.chain.len(), 1, "a root adds no intermediate");
    let peer = verify_chain(&issued.chain, ca.root_der(), UnixTime::now()).expect("verifies");
    assert_eq!(peer.node_id, "w1");
    assert_eq!(peer.role, Role::Worker);
    assert_eq!(peer.public_key_raw, key.public_key_raw());
    assert_eq!(peer.not_after, issued.not_after);
    let lifetime = issued
        .not_after
        .duration_since(SystemTime::now())
        .expect("in the future");
    assert!(lifetime <= HOUR && lifetime > HOUR - Duration::from_secs(60));
}

#[test]
fn what_the_csr_claims_is_ignored() {
    let ca = root();
    let key = NodeKey::generate().expect("key");
    // The requester asks to be a router CA called `evil`.
    let mut params = CertificateParams::new(vec!["evil".to_string()]).expect("params");
    params.subject_alt_names.push(SanType::URI(
        identity_uri(Role::Router, "evil").try_into().expect("uri"),
    ));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let csr = params
        .serialize_request(&key.rcgen_key().expect("rcgen key"))
        .expect("csr");
    let issued = ca
        .issue(csr.der(), "w1", Role::Worker, HOUR)
        .expect("issue");
    let peer = PeerCert::parse(&issued.chain[0]).expect("parse");
    assert_eq!((peer.node_id.as_str(), peer.role), ("w1", Role::Worker));
    let (_, x509) = x509_parser::parse_x509_certificate(&issued.chain[0]).expect("x509");
    assert!(!x509.is_ca());
}

#[test]
fn a_csr_must_be_signed_by_the_key_it_carries() {
    let ca = root();
    let key = NodeKey::generate().expect("key");
    let mut csr = key.csr_der("w1").expect("csr").as_ref().to_vec();
    let last = csr.len() - 1;
    csr[last] ^= 1; // inside the signature
    assert!(matches!(
        ca.issue(&csr, "w1", Role::Worker, HOUR),
        Err(PkiError::Csr(_))
    ));
    assert!(matches!(
        ca.issue(b"junk", "w1", Role::Worker, HOUR),
        Err(PkiError::Csr(_))
    ));
}

#[test]
fn bad_node_ids_and_keys_are_refused() {
    let ca = root();
    let key = NodeKey::generate().expect("key").public_key_raw();
    for id in ["", "W1", "a.b", "-a", &"x".repeat(64)] {
        assert!(matches!(
            ca.issue_for_key(&key, id, Role::Worker, HOUR),
            Err(PkiError::NodeId(_))
        ));
    }
    assert!(matches!(
        ca.issue_for_key(&key[..31], "w1", Role::Worker, HOUR),
        Err(PkiError::KeyAlgorithm)
    ));
}

#[test]
fn a_certificate_from_another_cluster_is_refused() {
    let (ours, theirs) = (root(), root());
    let key = NodeKey::generate().expect("key").public_key_raw();
    let issued = theirs
        .issue_for_key(&key, "w1", Role::Router, HOUR)
        .expect("issue");
    // Both roots are called `test`, so webpki gets as far as the signature.
    let refused = verify_chain(&issued.chain, ours.root_der(), UnixTime::now());
    assert!(matches!(refused, Err(PkiError::Chain(_))), "{refused:?}");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let ca = root();
    let key = NodeKey::generate().expect("key").public_key_raw();
    let issued = ca
        .issue_for_key(&key, "w1", Role::Worker, HOUR)
        .expect("issue");
    let later = at(issued.not_after + Duration::from_secs(1));
    assert!(matches!(
        verify_chain(&issued.chain, ca.root_der(), later),
        Err(PkiError::Chain(webpki::Error::CertExpired { .. }))
    ));
    let earlier = at(SystemTime::now() - CLOCK_SKEW - Duration::from_secs(60));
    assert!(matches!(
        verify_chain(&issued.chain, ca.root_der(), earlier),
        Err(PkiError::Chain(webpki::Error::CertNotValidYet { .. }))
    ));
    // A little behind is fine: that is what the clock-skew margin is for.
    let skewed = at(SystemTime::now() - Duration::from_secs(60));
    assert!(verify_chain(&issued.chain, ca.root_der(), skewed).is_ok());
}

#[test]
fn an_intermediate_chain_verifies_against_the_root_only() {
    let root = root();
    let inter = CertificateAuthority::generate_intermediate(&root).expect("intermediate");
    assert!(!inter.is_root());
    assert_eq!(inter.root_fingerprint(), root.root_fingerprint());
    let key = NodeKey::generate().expect("key").public_key_raw();
    let issued = inter
        .issue_for_key(&key, "r1", Role::Router, HOUR)
        .expect("issue");
    assert_eq!(issued.chain.len(), 2);
    assert_eq!(&issued.chain[1], inter.cert_der());
    let peer = verify_chain(&issued.chain, root.root_der(), UnixTime::now()).expect("verifies");
    assert_eq!((peer.node_id.as_str(), peer.role), ("r1", Role::Router));
    // Without the intermediate there is no path to the root.
    assert!(verify_chain(&issued.chain[..1], root.root_der(), UnixTime::now()).is_err());
    // Nor to a different root.
    assert!(verify_chain(&issued.chain, self::root().root_der(), UnixTime::now()).is_err());
    // An intermediate may not make intermediates.
    assert!(CertificateAuthority::generate_intermediate(&inter).is_err());
}

#[test]
fn a_node_key_cannot_mint_certificates() {
    let ca = root();
    let leaked = NodeKey::generate().expect("key");
    let issued = ca
        .issue_for_key(&leaked.public_key_raw(), "w1", Role::Worker, HOUR)
        .expect("issue");
    let leaked_key = leaked.rcgen_key().expect("rcgen key");
    let issuer = Issuer::from_ca_cert_der(&issued.chain[0], &leaked_key).expect("issuer");
    let victim = NodeKey::generate()
        .expect("key")
        .rcgen_key()
        .expect("rcgen key");
    let mut params = CertificateParams::new(vec!["r9".to_string()]).expect("params");
    params.subject_alt_names.push(SanType::URI(
        identity_uri(Role::Router, "r9").try_into().expect("uri"),
    ));
    let forged = params.signed_by(&victim, &issuer).expect("sign");
    let chain = vec![forged.der().clone(), issued.chain[0].clone()];
    assert!(verify_chain(&chain, ca.root_der(), UnixTime::now()).is_err());
}

#[test]
fn a_ca_survives_a_pem_round_trip() {
    let root = root();
    let inter = CertificateAuthority::generate_intermediate(&root).expect("intermediate");
    for ca in [&root, &inter] {
        let pem = ca.to_pem();
        let loaded = CertificateAuthority::from_pem(&pem.chain, &pem.key).expect("load");
        assert_eq!(loaded.cert_der(), ca.cert_der());
        assert_eq!(loaded.root_fingerprint(), root.root_fingerprint());
        assert_eq!(loaded.is_root(), ca.is_root());
        assert_eq!(loaded.not_after(), ca.not_after());
        let key = NodeKey::generate().expect("key").public_key_raw();
        let issued = loaded
            .issue_for_key(&key, "w1", Role::Worker, HOUR)
            .expect("issue");
        verify_chain(&issued.chain, root.root_der(), UnixTime::now()).expect("verifies");
    }
    // A key that is not the certificate's is refused.
    let other = self::root().to_pem();
    assert!(matches!(
        CertificateAuthority::from_pem(&root.to_pem().chain, &other.key),
        Err(PkiError::Authority(_))
    ));
    // An intermediate presented with a foreign root is refused.
    let inter_pem = inter.to_pem();
    let own_cert = inter_pem
        .chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .expect("first block");
    let mixed = format!("{own_cert}{}", other.chain);
    assert!(matches!(
        CertificateAuthority::from_pem(&mixed, &inter_pem.key),
        Err(PkiError::Authority(_))
    ));
}

#[test]
fn leaves_never_outlive_their_ca() {
    let ca = root();
    let key = NodeKey::generate().expect("key").public_key_raw();
    let issued = ca
        .issue_for_key(&key, "w1", Role::Worker, Duration::MAX)
        .expect("issue");
    assert!(issued.not_after <= ca.not_after());
}
