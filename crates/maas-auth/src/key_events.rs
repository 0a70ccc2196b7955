//! Telling every gateway instance to forget its verified keys, through Redis pub/sub, so that a
//! key revoked (or a member removed) on one instance stops working on all of them within
//! milliseconds rather than within `auth.key_cache_ms`.
//!
//! Each instance subscribes to `{prefix}auth:keys`; a change publishes one message and every
//! subscriber clears its [`KeyCache`]. A subscriber that loses its connection clears the cache
//! when it is back (it may have missed messages) and retries every second meanwhile; the cache's
//! TTL bounds what a lost message can cost. Without Redis there is one instance and nothing to
//! tell.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;

use crate::key_cache::KeyCache;

/// Publishes "forget your keys" and keeps this instance subscribed to it.
#[derive(Clone)]
pub struct RedisKeyEvents {
    conn: ConnectionManager,
    channel: String,
}

impl std::fmt::Debug for RedisKeyEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKeyEvents").field("channel", &self.channel).finish_non_exhaustive()
    }
}

impl RedisKeyEvents {
    /// Publishes on `conn` and subscribes through `client` (pub/sub needs a connection of its
    /// own); the subscription clears `cache` on every message.
    pub fn start(client: redis::Client, conn: ConnectionManager, prefix: &str, cache: Arc<KeyCache>) -> Self {
        let channel = format!("{prefix}auth:keys");
        tokio::spawn(subscribe(client, channel.clone(), cache));
        Self { conn, channel }
    }

    /// Tells every instance (this one included) to forget its verified keys. A failure is
    /// logged, not returned: the change itself is stored, and the TTL still bounds the rest.
    pub async fn publish(&self) {
        let mut conn = self.conn.clone();
        if let Err(e) = conn.publish::<_, _, i64>(&self.channel, "forget").await {
            tracing::warn!(error = %e, "could not tell the other instances to forget verified API keys");
        }
    }
}

/// Stays subscribed for the life of the process.
async fn subscribe(client: redis::Client, channel: String, cache: Arc<KeyCache>) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    // Anything published while we were not listening is lost: start afresh.
                    cache.clear();
                    let mut messages = pubsub.into_on_message();
                    while messages.next().await.is_some() {
                        cache.clear();
                    }
                    tracing::warn!(%channel, "the Redis subscription for API key changes ended; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to API key changes in Redis"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot connect to Redis for API key changes"),
        }
        cache.clear();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publish from one "instance" clears the cache of another.
    #[tokio::test]
    async fn a_publish_clears_every_subscribed_cache() {
        let (mut conn, prefix) = crate::test_redis().await;
        let url = std::env::var("MAAS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let client = || redis::Client::open(url.as_str()).unwrap();
        let cache_a = Arc::new(KeyCache::new(Duration::from_secs(600)));
        let cache_b = Arc::new(KeyCache::new(Duration::from_secs(600)));
        let a = RedisKeyEvents::start(client(), conn.clone(), &prefix, cache_a.clone());
        let _b = RedisKeyEvents::start(client(), conn.clone(), &prefix, cache_b.clone());
        // Both subscriptions live (each clears its cache once when it starts listening).
        let channel = format!("{prefix}auth:keys");
        let mut listening = 0;
        for _ in 0..500 {
            listening = conn.publish::<_, _, i64>(&channel, "probe").await.unwrap();
            if listening == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(listening, 2, "both instances subscribe");
        tokio::time::sleep(Duration::from_millis(50)).await;

        cache_b.put("d", crate::key_cache::tests::verified());
        assert!(cache_b.get("d").is_some());
        a.publish().await;
        for _ in 0..100 {
            if cache_b.get("d").is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("instance b never heard instance a's publish");
    }
}
