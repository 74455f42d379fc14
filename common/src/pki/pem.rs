//! PEM in and out, so keys and certificates on disk are readable by openssl and friends.
//! Decoding is rustls-pki-types' parser; encoding is the few lines RFC 7468 asks for.

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::error::PkiError;

/// `der` as a PEM block with the given label (`CERTIFICATE`, `PRIVATE KEY`).
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // Base64 output is ASCII, so slicing at any byte offset is a char boundary.
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every certificate in `pem`, in order.
pub(crate) fn decode_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::Pem("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// The PKCS#8 private key in `pem`.
pub(crate) fn decode_key(pem: &str) -> Result<PrivatePkcs8KeyDer<'static>, PkiError> {
    PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Pem(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_blocks_decode_back() {
        let der: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let pem = encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let twice = format!("{pem}{pem}");
        let certs = decode_certs(&twice).expect("decode");
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), &der[..]);
        assert!(decode_certs("nothing here").is_err());
        let key = decode_key(&encode("PRIVATE KEY", &der)).expect("key");
        assert_eq!(key.secret_pkcs8_der(), &der[..]);
    }
}
