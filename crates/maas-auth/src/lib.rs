//! Identity and access: who is calling, and what they may do.
//!
//! - [`password`]: argon2id hashing, run off the async executor.
//! - [`token`]: random secrets (session ids, API keys) and their SHA-256 digests.
//! - [`session`]: server-side sessions behind [`SessionStore`] (in-memory and Redis).
//! - [`counter`]: expiring counters behind [`Counter`] (in-memory and Redis), used by
//!   [`throttle`] to slow down password guessing.
//! - [`key_cache`]: verified API keys remembered for a moment, so inference calls skip the store;
//!   [`key_events`] tells the other instances (Redis pub/sub) to forget theirs after a change.
//! - [`principal`]: the authenticated caller and the tenant-access check that hands out a
//!   tenant-scoped store handle.
//! - [`service`]: the operations the management API exposes (accounts, tenants, members,
//!   keys, audit), each recording its audit entry.

pub mod counter;
pub mod error;
pub mod key_cache;
pub mod key_events;
pub mod password;
pub mod principal;
pub mod service;
pub mod session;
pub mod throttle;
pub mod token;

pub use counter::{Counter, MemoryCounter, RedisCounter};
pub use error::AuthError;
pub use principal::{Caller, Principal, TenantAccess};
pub use service::{AuthConfig, IdentityService};
pub use session::{MemorySessions, RedisSessions, Session, SessionStore};
pub use throttle::ThrottleConfig;

/// A connection to the test Redis (`MAAS_TEST_REDIS_URL`, started by `scripts/test.sh`) and a
/// key prefix no other test uses.
#[cfg(test)]
pub(crate) async fn test_redis() -> (redis::aio::ConnectionManager, String) {
    let url = std::env::var("MAAS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url).expect("valid Redis URL");
    let conn = redis::aio::ConnectionManager::new(client).await.expect("Redis must be running: use scripts/test.sh");
    (conn, format!("maas-test-{}:", uuid::Uuid::new_v4().simple()))
}
