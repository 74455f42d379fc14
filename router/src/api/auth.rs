//! Bearer-key authentication that a flood cannot turn against other keys.
//!
//! An Argon2id verification costs tens of milliseconds of CPU and ~19 MiB, and a key's id (its
//! first 12 characters) is not secret, so anyone can send a known id with made-up secrets. The
//! rules that keep that cheap:
//! - **One verification per key for its whole life.** Each id has exactly one valid key, so the
//!   router remembers the SHA-256 of the key it verified for each id: that key is then accepted
//!   with one hash, and any other secret for the same id is refused with one hash. The memory
//!   is gone only when the key store no longer holds the key (revoked or replaced), which a
//!   background task checks every `--keys-reload-secs`, not after an expiry.
//! - **Failures are rate-limited per key id and per client address.** A verification that fails
//!   spends a token of the id's bucket and of the address's bucket; with either empty, a key that
//!   is not already verified is refused without hashing. Refusals all look the same (401,
//!   `invalid API key`), so the limit tells an attacker nothing. Only failed verifications spend
//!   tokens, so a flood on one id spends at most the id's burst from the flood's address, and a
//!   different key from the same address still gets verified.
//! - **Bounded Argon2 work.** Verifications for one id run one at a time (the rest wait and then
//!   find the answer remembered, or the bucket empty), and all of them share a few blocking
//!   threads, at most a quarter of the CPUs (at least one): a flood on one id holds at most
//!   one of them, so other keys' first verification waits for at most one hash.
//!
//! Malformed keys and unknown ids are refused without hashing anything.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::state::AppState;
use crate::error::{ApiError, Fault};
use crate::keys::{self, Scope, StoredKey};

/// A failed verification spends one token; tokens come back at `refill_per_sec`.
#[derive(Debug, Clone, Copy)]
pub struct BucketRate {
    pub burst: f64,
    pub refill_per_sec: f64,
}

/// Failed verifications for one key id: a burst of 4, then one per 10 s.
pub const PER_KEY_ID: BucketRate = BucketRate {
    burst: 4.0,
    refill_per_sec: 0.1,
};
/// Failed verifications from one client address: a burst of 16, then one per 2 s.
pub const PER_ADDRESS: BucketRate = BucketRate {
    burst: 16.0,
    refill_per_sec: 0.5,
};
/// Client addresses tracked at once; past it, those with full buckets are forgotten.
const MAX_ADDRESSES: usize = 65_536;
/// Wrong keys remembered (so a client retrying one does not cost a hash each time).
const MAX_REFUSED: usize = 4096;
const REFUSED_FOR: Duration = Duration::from_secs(60);
/// How long a request waits for a verification thread; past it the router is busy (503).
const VERIFY_QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No key was sent.
    Missing,
    /// A key was sent and is not valid (or its checks are rate-limited: the same answer).
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

/// A token bucket of allowed failures.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: BucketRate) -> Self {
        Bucket {
            tokens: rate.burst,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, rate: BucketRate, now: Instant) {
        let earned = now.duration_since(self.at).as_secs_f64() * rate.refill_per_sec;
        self.tokens = (self.tokens + earned).min(rate.burst);
        self.at = now;
    }

    fn allows(&mut self, rate: BucketRate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= 1.0
    }

    fn spend(&mut self, rate: BucketRate, now: Instant) {
        self.refill(rate, now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

type Fingerprint = [u8; 32];

fn fingerprint(key: &str) -> Fingerprint {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn same(a: &Fingerprint, b: &Fingerprint) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Argon2 threads: a quarter of the CPUs, at least one.
fn verification_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 4)
        .unwrap_or(1)
        .max(1)
}

/// Checks API keys against the stored hashes.
pub struct Authenticator {
    /// Stored keys by id; replaced when the key store changes.
    keys: RwLock<Arc<HashMap<String, StoredKey>>>,
    /// The one key verified for each id.
    verified: Mutex<HashMap<String, Fingerprint>>,
    /// Wrong keys seen recently.
    refused: Mutex<HashMap<Fingerprint, Instant>>,
    per_id: Mutex<HashMap<String, Bucket>>,
    per_address: Mutex<HashMap<IpAddr, Bucket>>,
    /// One verification at a time per id.
    in_progress: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The blocking threads Argon2 may use.
    threads: Arc<Semaphore>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Authenticator {
    pub fn new(keys: Vec<StoredKey>) -> Self {
        Authenticator {
            keys: RwLock::new(Arc::new(
                keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
            )),
            verified: Mutex::default(),
            refused: Mutex::default(),
            per_id: Mutex::default(),
            per_address: Mutex::default(),
            in_progress: Mutex::default(),
            threads: Arc::new(Semaphore::new(verification_threads())),
        }
    }

    fn stored(&self, id: &str) -> Option<StoredKey> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Takes the key store as it is now: revoked or replaced keys stop working at once.
    pub fn replace_keys(&self, keys: Vec<StoredKey>) {
        let keys: HashMap<String, StoredKey> =
            keys.into_iter().map(|k| (k.id.clone(), k)).collect();
        let old = std::mem::replace(
            &mut *self.keys.write().unwrap_or_else(|p| p.into_inner()),
            Arc::new(keys.clone()),
        );
        let changed = |id: &String| keys.get(id).map(|k| &k.hash) != old.get(id).map(|k| &k.hash);
        lock(&self.verified).retain(|id, _| !changed(id));
        lock(&self.per_id).retain(|id, _| keys.contains_key(id));
        lock(&self.in_progress).retain(|id, _| keys.contains_key(id));
    }

    /// The answer known without hashing, if any.
    fn known(&self, id: &str, print: &Fingerprint) -> Option<Result<(), AuthError>> {
        if let Some(good) = lock(&self.verified).get(id) {
            // One valid key per id: any other secret is wrong.
            return Some(if same(good, print) {
                Ok(())
            } else {
                Err(AuthError::Invalid)
            });
        }
        let mut refused = lock(&self.refused);
        match refused.get(print) {
            Some(until) if *until > Instant::now() => Some(Err(AuthError::Invalid)),
            Some(_) => {
                refused.remove(print);
                None
            }
            None => None,
        }
    }

    /// Whether both buckets still allow a failure.
    fn may_verify(&self, id: &str, client: IpAddr) -> bool {
        let now = Instant::now();
        let id_ok = lock(&self.per_id)
            .entry(id.to_string())
            .or_insert_with(|| Bucket::full(PER_KEY_ID))
            .allows(PER_KEY_ID, now);
        let mut addresses = lock(&self.per_address);
        let address_ok = addresses
            .get_mut(&client)
            .is_none_or(|b| b.allows(PER_ADDRESS, now));
        id_ok && address_ok
    }

    fn failed(&self, id: &str, client: IpAddr, print: Fingerprint) {
        let now = Instant::now();
        if let Some(bucket) = lock(&self.per_id).get_mut(id) {
            bucket.spend(PER_KEY_ID, now);
        }
        {
            let mut addresses = lock(&self.per_address);
            if addresses.len() >= MAX_ADDRESSES && !addresses.contains_key(&client) {
                addresses.retain(|_, b| {
                    b.refill(PER_ADDRESS, now);
                    b.tokens < PER_ADDRESS.burst
                });
                if addresses.len() >= MAX_ADDRESSES {
                    addresses.clear();
                }
            }
            addresses
                .entry(client)
                .or_insert_with(|| Bucket::full(PER_ADDRESS))
                .spend(PER_ADDRESS, now);
        }
        let mut refused = lock(&self.refused);
        if refused.len() >= MAX_REFUSED {
            refused.retain(|_, until| *until > now);
            if refused.len() >= MAX_REFUSED {
                refused.clear();
            }
        }
        refused.insert(print, now + REFUSED_FOR);
    }

    fn id_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.in_progress)
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// Checks a key (`None` when the request carried none) sent from `client`; what it may do.
    pub async fn check(&self, key: Option<&str>, client: IpAddr) -> Result<Scope, AuthError> {
        let key = key
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::Missing)?;
        let id = keys::key_id(key).ok_or(AuthError::Invalid)?;
        let stored = self.stored(id).ok_or(AuthError::Invalid)?;
        let print = fingerprint(key);
        if let Some(answer) = self.known(id, &print) {
            return answer.map(|()| stored.scope);
        }
        let id_lock = self.id_lock(id);
        let _one_at_a_time = tokio::time::timeout(VERIFY_QUEUE_TIMEOUT, id_lock.lock())
            .await
            .map_err(|_| AuthError::Invalid)?;
        // The verification this one waited for may have settled it.
        if let Some(answer) = self.known(id, &print) {
            return answer.map(|()| stored.scope);
        }
        if !self.may_verify(id, client) {
            return Err(AuthError::Invalid);
        }
        let thread =
            tokio::time::timeout(VERIFY_QUEUE_TIMEOUT, self.threads.clone().acquire_owned())
                .await
                .map_err(|_| AuthError::Busy)?
                .map_err(|_| AuthError::Busy)?;
        let hash = stored.hash.clone();
        let candidate = key.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            let _thread = thread;
            keys::verify(&candidate, &hash)
        })
        .await
        .unwrap_or(false);
        if ok {
            // Unless the key was replaced while it was being checked.
            if self.stored(id).is_some_and(|now| now.hash == stored.hash) {
                lock(&self.verified).insert(id.to_string(), print);
            }
            Ok(stored.scope)
        } else {
            self.failed(id, client, print);
            Err(AuthError::Invalid)
        }
    }
}

/// Re-reads the key store every `every`, so revoked keys stop working without a restart. The
/// task ends with the router.
pub fn follow_key_store(
    state: &Arc<AppState>,
    read: impl Fn() -> anyhow::Result<Vec<StoredKey>> + Send + 'static,
    every: Duration,
) {
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { return };
            match read() {
                Ok(keys) => state.auth.replace_keys(keys),
                Err(err) => {
                    tracing::warn!(%err, "re-reading the API keys failed; keeping the last ones")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const HERE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const THERE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    fn forged(key: &str, n: usize) -> String {
        format!("{}{n:0>43}", &key[..16])
    }

    #[tokio::test]
    async fn accepts_the_key_and_refuses_others() {
        let new = keys::generate("t", Scope::Api).expect("generate");
        let admin = keys::generate("adm", Scope::Admin).expect("generate");
        let auth = Authenticator::new(vec![new.stored.clone(), admin.stored.clone()]);
        assert_eq!(auth.check(Some(&new.key), HERE).await, Ok(Scope::Api));
        assert_eq!(auth.check(Some(&admin.key), HERE).await, Ok(Scope::Admin));
        // Known the second time, same answer.
        assert_eq!(auth.check(Some(&new.key), HERE).await, Ok(Scope::Api));
        assert_eq!(auth.check(None, HERE).await, Err(AuthError::Missing));
        assert_eq!(auth.check(Some("  "), HERE).await, Err(AuthError::Missing));
        assert_eq!(
            auth.check(Some("rtr_nope"), HERE).await,
            Err(AuthError::Invalid)
        );
        let other = keys::generate("other", Scope::Api).expect("generate");
        assert_eq!(
            auth.check(Some(&other.key), HERE).await,
            Err(AuthError::Invalid)
        );
        // Right id, wrong secret: refused without a hash, since the right one is known.
        assert_eq!(
            auth.check(Some(&forged(&new.key, 1)), HERE).await,
            Err(AuthError::Invalid)
        );
    }

    #[tokio::test]
    async fn failures_are_limited_per_id_and_per_address_without_touching_other_keys() {
        let a = keys::generate("a", Scope::Api).expect("generate");
        let b = keys::generate("b", Scope::Api).expect("generate");
        let auth = Authenticator::new(vec![a.stored.clone(), b.stored.clone()]);
        for n in 0..20 {
            assert_eq!(
                auth.check(Some(&forged(&a.key, n)), HERE).await,
                Err(AuthError::Invalid)
            );
        }
        // Only the id's burst was hashed; the rest were refused unheard.
        let spent = PER_ADDRESS.burst - lock(&auth.per_address)[&HERE].tokens;
        assert!(spent <= PER_KEY_ID.burst + 0.5, "{spent} failures hashed");
        // The id's own right key, not yet verified, now waits for the bucket (same answer)...
        assert_eq!(
            auth.check(Some(&a.key), THERE).await,
            Err(AuthError::Invalid)
        );
        // ...and another key from the flooding address is verified as usual.
        assert_eq!(auth.check(Some(&b.key), HERE).await, Ok(Scope::Api));
    }

    #[tokio::test]
    async fn a_replaced_key_store_revokes_at_once() {
        let a = keys::generate("a", Scope::Api).expect("generate");
        let auth = Authenticator::new(vec![a.stored.clone()]);
        assert_eq!(auth.check(Some(&a.key), HERE).await, Ok(Scope::Api));
        auth.replace_keys(Vec::new());
        assert_eq!(
            auth.check(Some(&a.key), HERE).await,
            Err(AuthError::Invalid)
        );
        auth.replace_keys(vec![a.stored.clone()]);
        assert_eq!(auth.check(Some(&a.key), HERE).await, Ok(Scope::Api));
    }
}
