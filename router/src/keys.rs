//! API key format and hashing.
//!
//! A key is `rtr_` + a 12-character id + a 43-character secret (base64url of 9 and 32 random
//! bytes). The id is not secret: it lets the router find the one hash to check instead of trying
//! every stored hash, which at tens of milliseconds per Argon2id verification would not scale.
//! The stored hash is Argon2id (default parameters) over the whole key, as a PHC string.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

pub const KEY_PREFIX: &str = "rtr_";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 43;

/// What a key may do. Admin keys manage the cluster (`/api/admin/...`) and nothing else; API
/// keys call the model and tools APIs and never the admin API.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    #[default]
    Api,
    Admin,
}

/// One stored API key: what the router keeps about it (never the key itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredKey {
    /// The public part of the key, after `rtr_`.
    pub id: String,
    pub name: String,
    /// Argon2id PHC string of the whole key.
    pub hash: String,
    pub created_at: u64,
    /// Keys written before scopes existed are API keys.
    #[serde(default)]
    pub scope: Scope,
}

/// A freshly generated key and what to store about it.
pub struct NewKey {
    pub key: String,
    pub stored: StoredKey,
}

/// The id part of a well-formed key.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    if rest.len() != ID_LEN + SECRET_LEN
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    Some(&rest[..ID_LEN])
}

/// Draws a new key named `name`.
pub fn generate(name: &str, scope: Scope) -> anyhow::Result<NewKey> {
    let mut id = [0u8; 9];
    let mut secret = [0u8; 32];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let id = b64.encode(id);
    let key = format!("{KEY_PREFIX}{id}{}", b64.encode(secret));
    let hash = hash(&key)?;
    let created_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(NewKey {
        key,
        stored: StoredKey {
            id,
            name: name.to_string(),
            hash,
            created_at,
            scope,
        },
    })
}

/// Argon2id PHC string of `key`.
pub fn hash(key: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(key.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the API key: {e}"))
}

/// Whether `key` matches the PHC string `phc`. Slow by design (tens of milliseconds).
pub fn verify(key: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(key.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let NewKey { key, stored } = generate("test", Scope::Api).expect("generate");
        assert_eq!(key.len(), KEY_PREFIX.len() + ID_LEN + SECRET_LEN);
        assert_eq!(key_id(&key), Some(stored.id.as_str()));
        assert!(stored.hash.starts_with("$argon2id$v=19$"));
        assert!(verify(&key, &stored.hash));
        let mut wrong = key.clone();
        wrong.pop();
        wrong.push(if key.ends_with('A') { 'B' } else { 'A' });
        assert!(!verify(&wrong, &stored.hash));
    }

    #[test]
    fn malformed_keys_have_no_id() {
        assert_eq!(key_id("sk-abc"), None);
        assert_eq!(key_id("rtr_short"), None);
        assert_eq!(key_id(&format!("rtr_{}", "a".repeat(54))), None);
        assert_eq!(key_id(&format!("rtr_{}", "!".repeat(55))), None);
    }
}
