//! Expiring counters ("N events in this window"), the hot state behind login throttling and,
//! later, rate limits. In process by default, in Redis when instances must agree.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryCounter;
pub use self::redis::RedisCounter;
use crate::AuthError;

/// A counter's value and how long until its window ends and it resets to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub value: u64,
    pub resets_in: Duration,
}

/// Fixed-window counters. The window starts at the first increment of a key.
#[async_trait]
pub trait Counter: Send + Sync + std::fmt::Debug + 'static {
    /// Adds one and returns the new count; a new key lives for `window`.
    async fn increment(&self, key: &str, window: Duration) -> Result<Count, AuthError>;
    /// The current count (zero when absent or expired).
    async fn get(&self, key: &str) -> Result<Count, AuthError>;
    /// Forgets the key.
    async fn reset(&self, key: &str) -> Result<(), AuthError>;
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every [`Counter`] must have, run against each implementation.
    use super::*;

    pub async fn counts_expire_and_reset(counter: &dyn Counter, prefix: &str) {
        let key = format!("{prefix}k");
        let window = Duration::from_millis(1200);
        assert_eq!(counter.get(&key).await.unwrap().value, 0);
        assert_eq!(counter.increment(&key, window).await.unwrap().value, 1);
        let c = counter.increment(&key, window).await.unwrap();
        assert_eq!(c.value, 2);
        assert!(c.resets_in <= window && c.resets_in > Duration::ZERO, "{c:?}");
        assert_eq!(counter.get(&key).await.unwrap().value, 2);
        counter.reset(&key).await.unwrap();
        assert_eq!(counter.get(&key).await.unwrap().value, 0);
        counter.increment(&key, window).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1400)).await;
        assert_eq!(counter.get(&key).await.unwrap().value, 0, "window elapsed");
        assert_eq!(counter.increment(&key, window).await.unwrap().value, 1);
    }
}
