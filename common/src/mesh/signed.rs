//! Gossip values signed by the node they describe.
//!
//! Every cluster member holds the gossip key, and chitchat relays any node's state through any
//! other, so the seal alone cannot stop a member from writing another member's state. Each node
//! therefore signs what it publishes with its own key (whose certificate it also publishes), and
//! readers check the signature before believing a value. The signed message binds the value to
//! the node id, its incarnation (generation) and the key name, so a value cannot be moved to
//! another node, another incarnation or another key.
//!
//! A signed value is `<base64url signature>.<payload>`.

use base64::Engine as _;

use crate::pki::{verify_signature, NodeKey};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const DOMAIN: &str = "auxot-gossip-v1";

/// Where a value lives: the node, its incarnation and the key.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    pub node_id: &'a str,
    pub generation: u64,
    pub key: &'a str,
}

fn message(slot: Slot<'_>, payload: &str) -> Vec<u8> {
    format!(
        "{DOMAIN}\0{}\0{}\0{}\0{payload}",
        slot.node_id, slot.generation, slot.key
    )
    .into_bytes()
}

/// `payload` signed for `slot` with `key`.
pub fn sign(key: &NodeKey, slot: Slot<'_>, payload: &str) -> String {
    let signature = key.sign(&message(slot, payload));
    format!("{}.{payload}", B64.encode(signature))
}

/// Why a signed value was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    #[error("not a signed value")]
    Shape,
    #[error("the signature does not match the node's key")]
    Signature,
}

/// The payload of `value` if `public_key` signed it for `slot`.
pub fn verify<'a>(
    public_key: &[u8; 32],
    slot: Slot<'_>,
    value: &'a str,
) -> Result<&'a str, SignedError> {
    let (signature, payload) = value.split_once('.').ok_or(SignedError::Shape)?;
    let signature = B64.decode(signature).map_err(|_| SignedError::Shape)?;
    verify_signature(public_key, &message(slot, payload), &signature)
        .map_err(|_| SignedError::Signature)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_verify_only_where_they_were_signed() {
        let key = NodeKey::generate().expect("key");
        let public = key.public_key_raw();
        let slot = Slot {
            node_id: "w1",
            generation: 7,
            key: "advert",
        };
        let value = sign(&key, slot, r#"{"capacity":4}"#);
        assert_eq!(verify(&public, slot, &value), Ok(r#"{"capacity":4}"#));
        let elsewhere = [
            Slot {
                node_id: "w2",
                ..slot
            },
            Slot {
                generation: 8,
                ..slot
            },
            Slot {
                key: "load",
                ..slot
            },
        ];
        for other in elsewhere {
            assert_eq!(verify(&public, other, &value), Err(SignedError::Signature));
        }
        let tampered = value.replace("4", "4000000000");
        assert_eq!(
            verify(&public, slot, &tampered),
            Err(SignedError::Signature)
        );
        let stranger = NodeKey::generate().expect("key").public_key_raw();
        assert_eq!(verify(&stranger, slot, &value), Err(SignedError::Signature));
        assert_eq!(verify(&public, slot, "unsigned"), Err(SignedError::Shape));
    }
}
