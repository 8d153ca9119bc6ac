//! The verification cache: a token verified once verifies again with a hash and a lookup.
//!
//! Keyed by the SHA-256 of the whole token (so a token that differs in any byte, signature
//! included, misses). An entry lives until the earlier of the token's `exp` (plus leeway) and
//! `ttl` after it was verified, so a key withdrawn from the JWKS stops a cached token within
//! `ttl`. Bounded: when full, expired entries go first, then arbitrary ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub(crate) type TokenDigest = [u8; 32];

/// The digest a token is cached under.
pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

pub(crate) struct VerifyCache<T> {
    entries: Mutex<HashMap<TokenDigest, (T, Instant)>>,
    capacity: usize,
    ttl: Duration,
}

impl<T: Clone> VerifyCache<T> {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
            ttl,
        }
    }

    /// The cached value for `key`, if it has not expired.
    pub(crate) fn get(&self, key: &TokenDigest) -> Option<T> {
        if self.capacity == 0 {
            return None;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((value, until)) if Instant::now() < *until => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Caches `value` for at most `valid_for` (the token's remaining lifetime) and the ttl.
    pub(crate) fn insert(&self, key: TokenDigest, value: T, valid_for: Duration) {
        if self.capacity == 0 || valid_for.is_zero() {
            return;
        }
        let now = Instant::now();
        let until = now + valid_for.min(self.ttl);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, u)| *u > now);
            if entries.len() >= self.capacity {
                // Still full of live entries: drop an eighth (arbitrary ones; a HashMap's
                // order is random per process, so no caller can pin which).
                let drop: Vec<TokenDigest> = entries.keys().take(self.capacity / 8 + 1).copied().collect();
                for k in drop {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key, (value, until));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_expiring() {
        let cache = VerifyCache::new(16, Duration::from_secs(60));
        for i in 0..100u32 {
            cache.insert(digest(&i.to_string()), i, Duration::from_secs(60));
            assert!(cache.len() <= 16);
        }
        assert_eq!(cache.get(&digest("99")), Some(99));
        cache.insert(digest("short"), 1, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get(&digest("short")), None);
        cache.insert(digest("zero"), 1, Duration::ZERO);
        assert_eq!(cache.get(&digest("zero")), None);
    }
}
