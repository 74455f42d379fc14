//! Which sealed gossip datagrams were already opened, so a captured datagram replayed within
//! the age window is dropped instead of being handed to chitchat again.
//!
//! A replay repeats state chitchat already has (versions are monotonic), but it still costs the
//! receiver a decode and can make it answer: an attacker on the path could reflect a node's
//! answers at a victim. Nonces are random, so the cache is keyed by (sealing time, nonce), both
//! authenticated by the seal: a replay must carry exactly the same pair.
//!
//! Bounded two ways. An entry is forgotten once its sealing time is more than [`super::MAX_AGE`]
//! in the past, because the age check refuses that datagram anyway. And the cache holds at most
//! `capacity` entries; when full it evicts the one sealed earliest, which is the next to expire.
//! Eviction reopens a replay window for that datagram only, and only under a flood of genuine
//! (correctly sealed) traffic: the default 65 536 entries per minute is over a thousand datagrams
//! a second, where a node gossiping with three peers a second receives tens. Only datagrams that
//! opened are recorded, so strangers cannot fill the cache.

use std::collections::BTreeSet;

use ring::aead::NONCE_LEN;

/// Recently opened datagrams, ordered by sealing time.
#[derive(Debug)]
pub struct NonceCache {
    capacity: usize,
    /// (sealed at, in Unix milliseconds; nonce), earliest first: what expires or is evicted next.
    seen: BTreeSet<(u64, [u8; NONCE_LEN])>,
}

impl Default for NonceCache {
    fn default() -> Self {
        NonceCache::new(NonceCache::DEFAULT_CAPACITY)
    }
}

impl NonceCache {
    pub const DEFAULT_CAPACITY: usize = 65_536;

    pub fn new(capacity: usize) -> Self {
        NonceCache {
            capacity: capacity.max(1),
            seen: BTreeSet::new(),
        }
    }

    /// Records a datagram that just opened at `now_millis`; `false` when it was seen before
    /// (a replay, to be dropped).
    pub fn insert(&mut self, sealed_at: u64, nonce: [u8; NONCE_LEN], now_millis: u64) -> bool {
        let max_age = super::MAX_AGE.as_millis() as u64;
        while let Some(&(oldest, _)) = self.seen.first() {
            if oldest.saturating_add(max_age) >= now_millis {
                break;
            }
            self.seen.pop_first();
        }
        if self.seen.contains(&(sealed_at, nonce)) {
            return false;
        }
        if self.seen.len() >= self.capacity {
            self.seen.pop_first();
        }
        self.seen.insert((sealed_at, nonce));
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once() {
        let mut cache = NonceCache::default();
        assert!(cache.insert(1_000, [1; NONCE_LEN], 1_000));
        assert!(!cache.insert(1_000, [1; NONCE_LEN], 2_000));
        assert!(cache.insert(1_000, [2; NONCE_LEN], 2_000));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = NonceCache::new(100);
        let now = 10_000_000;
        for i in 0..1_000u32 {
            let mut nonce = [0; NONCE_LEN];
            nonce[..4].copy_from_slice(&i.to_be_bytes());
            assert!(cache.insert(now + u64::from(i), nonce, now));
            assert!(cache.len() <= 100);
        }
        assert_eq!(cache.len(), 100);
        // Entries past the age window go without waiting for the cache to fill.
        let later = now + 1_000 + super::super::MAX_AGE.as_millis() as u64 + 1;
        assert!(cache.insert(later, [9; NONCE_LEN], later));
        assert_eq!(cache.len(), 1);
    }
}
