//! Counters in Redis, exact across gateway instances: one atomic script per increment.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{Count, Counter};
use crate::AuthError;

/// INCR, start the window on the first hit, return the count and the time left.
const INCREMENT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

#[derive(Clone)]
pub struct RedisCounter {
    conn: ConnectionManager,
    prefix: String,
    script: redis::Script,
}

impl std::fmt::Debug for RedisCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisCounter {
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self { conn, prefix: prefix.into(), script: redis::Script::new(INCREMENT) }
    }

    fn key(&self, key: &str) -> String {
        format!("{}count:{key}", self.prefix)
    }
}

fn to_count(value: i64, ttl_ms: i64) -> Count {
    Count {
        value: u64::try_from(value).unwrap_or(0),
        resets_in: Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
    }
}

#[async_trait]
impl Counter for RedisCounter {
    async fn increment(&self, key: &str, window: Duration) -> Result<Count, AuthError> {
        let mut conn = self.conn.clone();
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let (n, ttl): (i64, i64) = self.script.key(self.key(key)).arg(window_ms).invoke_async(&mut conn).await?;
        Ok(to_count(n, ttl))
    }

    async fn get(&self, key: &str) -> Result<Count, AuthError> {
        let mut conn = self.conn.clone();
        let (n, ttl): (Option<i64>, i64) =
            redis::pipe().get(self.key(key)).pttl(self.key(key)).query_async(&mut conn).await?;
        Ok(to_count(n.unwrap_or(0), ttl))
    }

    async fn reset(&self, key: &str) -> Result<(), AuthError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("DEL").arg(self.key(key)).query_async(&mut conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn contract() {
        let (conn, prefix) = crate::test_redis().await;
        super::super::contract::counts_expire_and_reset(&super::RedisCounter::new(conn, prefix), "").await;
    }
}
