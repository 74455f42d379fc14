//! Bearer-key authentication with a bounded cost per request.
//!
//! Argon2id verification costs tens of milliseconds and ~19 MiB, so it runs on the blocking pool
//! behind a small semaphore, and its outcome is cached by the key's SHA-256 (good keys for five
//! minutes, bad ones for ten seconds so a client retrying a wrong key cannot pin the CPUs).
//! Malformed keys and unknown key ids are refused without hashing anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::error::{ApiError, Fault};
use crate::keys::{self, Scope, StoredKey};

const GOOD_TTL: Duration = Duration::from_secs(300);
const BAD_TTL: Duration = Duration::from_secs(10);
const MAX_CACHED: usize = 10_000;
const CONCURRENT_VERIFICATIONS: usize = 2;
/// How long a request waits for a verification slot; past it, a flood of made-up keys cannot
/// delay everyone else indefinitely.
const VERIFY_QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No key was sent.
    Missing,
    /// A key was sent and is not valid.
    Invalid,
    /// Too many verifications are queued; the caller should retry shortly.
    Busy,
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let fault = match error {
            AuthError::Missing | AuthError::Invalid => Fault::Unauthorized,
            AuthError::Busy => Fault::Unavailable,
        };
        ApiError::new(fault, error.message())
    }
}

impl AuthError {
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "missing API key: send `Authorization: Bearer rtr_...`",
            AuthError::Invalid => "invalid API key",
            AuthError::Busy => "too many API key verifications in progress; retry shortly",
        }
    }
}

/// Checks API keys against the stored hashes.
pub struct Authenticator {
    by_id: HashMap<String, StoredKey>,
    cache: Mutex<HashMap<[u8; 32], (Instant, bool)>>,
    permits: Arc<Semaphore>,
}

fn fingerprint(key: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl Authenticator {
    pub fn new(keys: Vec<StoredKey>) -> Self {
        Authenticator {
            by_id: keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
            cache: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(CONCURRENT_VERIFICATIONS)),
        }
    }

    fn cached(&self, print: &[u8; 32]) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(print)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, ok)| *ok)
    }

    fn remember(&self, print: [u8; 32], ok: bool) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            let now = Instant::now();
            cache.retain(|_, (until, _)| *until > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        let ttl = if ok { GOOD_TTL } else { BAD_TTL };
        cache.insert(print, (Instant::now() + ttl, ok));
    }

    /// Checks a key (`None` when the request carried none); what it may do.
    pub async fn check(&self, key: Option<&str>) -> Result<Scope, AuthError> {
        let key = key
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::Missing)?;
        let stored = keys::key_id(key)
            .and_then(|id| self.by_id.get(id))
            .ok_or(AuthError::Invalid)?;
        let print = fingerprint(key);
        let verdict = |ok: bool| {
            if ok {
                Ok(stored.scope)
            } else {
                Err(AuthError::Invalid)
            }
        };
        if let Some(ok) = self.cached(&print) {
            return verdict(ok);
        }
        let permit =
            tokio::time::timeout(VERIFY_QUEUE_TIMEOUT, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| AuthError::Busy)?
                .map_err(|_| AuthError::Invalid)?;
        // Another request may have verified the same key while this one waited.
        if let Some(ok) = self.cached(&print) {
            return verdict(ok);
        }
        let key = key.to_string();
        let hash = stored.hash.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            keys::verify(&key, &hash)
        })
        .await
        .unwrap_or(false);
        self.remember(print, ok);
        verdict(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_the_key_and_refuses_others() {
        let new = keys::generate("t", Scope::Api).expect("generate");
        let admin = keys::generate("a", Scope::Admin).expect("generate");
        let auth = Authenticator::new(vec![new.stored.clone(), admin.stored.clone()]);
        assert_eq!(auth.check(Some(&new.key)).await, Ok(Scope::Api));
        // Cached the second time, same answer.
        assert_eq!(auth.check(Some(&new.key)).await, Ok(Scope::Api));
        assert_eq!(auth.check(Some(&admin.key)).await, Ok(Scope::Admin));
        assert_eq!(auth.check(None).await, Err(AuthError::Missing));
        assert_eq!(auth.check(Some("  ")).await, Err(AuthError::Missing));
        assert_eq!(auth.check(Some("rtr_nope")).await, Err(AuthError::Invalid));
        let other = keys::generate("other", Scope::Api).expect("generate");
        assert_eq!(auth.check(Some(&other.key)).await, Err(AuthError::Invalid));
        // Right id, wrong secret.
        let forged = format!("{}{}", &new.key[..16], "A".repeat(43));
        assert_eq!(auth.check(Some(&forged)).await, Err(AuthError::Invalid));
    }
}
