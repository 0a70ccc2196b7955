//! A short-lived, per-process cache of verified API keys, so that an inference call does not
//! pay for store round trips to check a key it checked a moment ago.
//!
//! An entry holds what verifying a key read from the store (the key, its creator, the
//! creator's role in the key's tenant) and is trusted for `auth.key_cache_ms`. Every change
//! made through this process that could alter the answer (revoking a key, changing its limits,
//! changing or removing a member) clears the cache, so on the instance that made the change it
//! applies to the very next request; other instances hear of it through
//! [`crate::key_events`] when they share Redis, and at the latest when their entries age out.
//! Expiry is checked on every request against the cached key's own `expires_at`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use maas_core::identity::{Role, User};
use maas_core::keys::ApiKey;

/// More entries than this and the cache starts over (a crude bound; keys in use are few).
const MAX_ENTRIES: usize = 10_000;

/// What verifying one key found.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    pub key: ApiKey,
    pub user: User,
    /// The creator's role in the key's tenant (`None`: no longer a member).
    pub role: Option<Role>,
}

/// Verified keys by the digest of their secret.
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, VerifiedKey)>>,
}

impl KeyCache {
    /// A cache trusting entries for `ttl`; a zero `ttl` caches nothing.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, VerifiedKey)>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry for `digest` if it is younger than the TTL.
    pub fn get(&self, digest: &str) -> Option<VerifiedKey> {
        let entries = self.entries();
        let (at, verified) = entries.get(digest)?;
        (at.elapsed() < self.ttl).then(|| verified.clone())
    }

    /// Remembers `verified` as of now.
    pub fn put(&self, digest: &str, verified: VerifiedKey) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(digest) {
            entries.clear();
        }
        entries.insert(digest.to_owned(), (Instant::now(), verified));
    }

    /// Updates the cached copy's `last_used_at` without making the entry younger.
    pub fn touched(&self, digest: &str, key: &ApiKey) {
        if let Some((_, verified)) = self.entries().get_mut(digest) {
            verified.key.last_used_at = key.last_used_at;
        }
    }

    /// Forgets everything: the next request of every key reads the store again.
    pub fn clear(&self) {
        self.entries().clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use maas_core::ids::{ApiKeyId, TenantId, UserId};
    use maas_core::keys::{RateLimits, Scope};

    pub(crate) fn verified() -> VerifiedKey {
        let now = maas_core::now();
        let user_id = UserId::new();
        VerifiedKey {
            key: ApiKey {
                id: ApiKeyId::new(),
                tenant_id: TenantId::new(),
                created_by: user_id,
                name: "k".into(),
                prefix: "maas_abcdefg".into(),
                scopes: vec![Scope::Infer],
                created_at: now,
                expires_at: None,
                last_used_at: None,
                revoked_at: None,
                limits: RateLimits::default(),
            },
            user: User {
                id: user_id,
                username: "ada".into(),
                email: "ada@example.com".into(),
                is_admin: false,
                created_at: now,
            },
            role: Some(Role::Member),
        }
    }

    #[test]
    fn entries_live_for_the_ttl_and_clear_forgets_them() {
        let cache = KeyCache::new(Duration::from_millis(50));
        cache.put("d1", verified());
        assert!(cache.get("d1").is_some());
        assert!(cache.get("d2").is_none());
        cache.clear();
        assert!(cache.get("d1").is_none());
        cache.put("d1", verified());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("d1").is_none(), "an entry older than the TTL is not trusted");
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = KeyCache::new(Duration::ZERO);
        cache.put("d1", verified());
        assert!(cache.get("d1").is_none());
    }

    #[test]
    fn touched_updates_last_used() {
        let cache = KeyCache::new(Duration::from_secs(10));
        cache.put("d1", verified());
        let mut key = verified().key;
        key.last_used_at = Some(maas_core::now());
        cache.touched("d1", &key);
        assert_eq!(cache.get("d1").map(|v| v.key.last_used_at), Some(key.last_used_at));
    }
}
