//! Server-side sessions. The browser holds only an opaque id (in an HttpOnly cookie); the
//! record lives in a [`SessionStore`], keyed by the id's SHA-256.

mod memory;
mod redis;

use async_trait::async_trait;
use maas_core::{Timestamp, UserId};
use serde::{Deserialize, Serialize};

pub use self::memory::MemorySessions;
pub use self::redis::RedisSessions;
use crate::AuthError;

/// A login session. `id` is the secret the cookie carries; stores index it by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(skip)]
    pub id: String,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Session {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }
}

/// Where session records live: in process (embedded default) or in Redis (shared by every
/// gateway instance). Records expire on their own at `expires_at`.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores the session until its `expires_at`.
    async fn put(&self, session: &Session) -> Result<(), AuthError>;
    /// The live session with this id, if any (expired ones are never returned).
    async fn get(&self, id: &str) -> Result<Option<Session>, AuthError>;
    /// Deletes the session; deleting a missing one is not an error.
    async fn delete(&self, id: &str) -> Result<(), AuthError>;
    /// Cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), AuthError>;
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every [`SessionStore`] must have, run against each implementation.
    use super::*;
    use chrono::Duration;

    fn session(ttl: Duration) -> Session {
        let now = maas_core::now();
        Session { id: crate::token::random_secret(), user_id: UserId::new(), created_at: now, expires_at: now + ttl }
    }

    pub async fn put_get_delete(store: &dyn SessionStore) {
        let s = session(Duration::minutes(5));
        assert_eq!(store.get(&s.id).await.unwrap(), None);
        store.put(&s).await.unwrap();
        assert_eq!(store.get(&s.id).await.unwrap(), Some(s.clone()));
        store.delete(&s.id).await.unwrap();
        assert_eq!(store.get(&s.id).await.unwrap(), None);
        store.delete(&s.id).await.unwrap();
        store.ping().await.unwrap();
    }

    pub async fn expired_sessions_vanish(store: &dyn SessionStore) {
        let s = session(Duration::milliseconds(1100));
        store.put(&s).await.unwrap();
        assert!(store.get(&s.id).await.unwrap().is_some());
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
        assert_eq!(store.get(&s.id).await.unwrap(), None);
    }
}
