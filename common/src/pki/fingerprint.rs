//! The SHA-256 of the root CA certificate's DER: what a join token carries so that a worker,
//! which has no certificate yet, can tell the real cluster's routers from an impostor on first
//! contact (kubeadm's `discovery-token-ca-cert-hash`). Hashing the whole certificate rather than
//! only its public key pins the exact root, validity and name included.

use std::fmt;
use std::str::FromStr;

use ring::digest::{digest, SHA256};

use super::error::PkiError;

const PREFIX: &str = "sha256:";

/// SHA-256 of a certificate's DER, written `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `der` (a DER-encoded certificate).
    pub fn of(der: &[u8]) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, der).as_ref());
        Fingerprint(out)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = PkiError;

    /// Accepts `sha256:<hex>` or bare hex, in either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.trim().strip_prefix(PREFIX).unwrap_or(s.trim());
        let bad = || PkiError::Certificate(format!("`{s}` is not a sha256 fingerprint"));
        let bytes = hex::decode(hex_part).map_err(|_| bad())?;
        Ok(Fingerprint(bytes.try_into().map_err(|_| bad())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_print_and_parse() {
        let fp = Fingerprint::of(b"some certificate");
        let text = fp.to_string();
        assert!(text.starts_with("sha256:"));
        assert_eq!(text.len(), PREFIX.len() + 64);
        assert_eq!(text.parse::<Fingerprint>().expect("parse"), fp);
        assert_eq!(
            text[PREFIX.len()..]
                .to_uppercase()
                .parse::<Fingerprint>()
                .expect("bare hex"),
            fp
        );
        assert_ne!(Fingerprint::of(b"another"), fp);
        assert!("sha256:abcd".parse::<Fingerprint>().is_err());
        assert!("sha256:zz".parse::<Fingerprint>().is_err());
    }
}
