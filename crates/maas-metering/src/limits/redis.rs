//! `RedisLimiter`: buckets in Redis, checked and taken by one Lua script per call, so limits are
//! exact across every gateway instance sharing the Redis. Time is Redis's own clock (`TIME`),
//! so instances with skewed clocks still agree.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{Bucket, BucketKind, Level, Limiter, Verdict};
use crate::error::LimiterFailure;

/// KEYS: the buckets. ARGV: four per bucket: kind (`r` rate, `w` window), limit, cost, and the
/// period in ms (rate) or the window's end in Unix ms. Returns `{0, index, wait_ms}` when a
/// bucket has too little (nothing taken), else `{1, remaining1, reset1_ms, remaining2, …}`.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local levels = {}
for i = 1, #KEYS do
  local kind, limit, cost, p = ARGV[4*i-3], tonumber(ARGV[4*i-2]), tonumber(ARGV[4*i-1]), tonumber(ARGV[4*i])
  if kind == 'r' then
    local v = redis.call('HMGET', KEYS[i], 'l', 't')
    local level = limit
    if v[1] then level = math.min(limit, tonumber(v[1]) + (now - tonumber(v[2])) * limit / p) end
    levels[i] = level
    if cost > limit then return {0, i, p} end
    if level < cost then return {0, i, math.max(1, math.ceil((cost - level) * p / limit))} end
  else
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    levels[i] = used
    if used >= limit or used + cost > limit then return {0, i, math.max(1000, p - now)} end
  end
end
local out = {1}
for i = 1, #KEYS do
  local kind, limit, cost, p = ARGV[4*i-3], tonumber(ARGV[4*i-2]), tonumber(ARGV[4*i-1]), tonumber(ARGV[4*i])
  if kind == 'r' then
    local level = levels[i] - cost
    redis.call('HSET', KEYS[i], 'l', tostring(level), 't', now)
    redis.call('PEXPIRE', KEYS[i], 2 * p)
    out[#out + 1] = math.floor(level)
    out[#out + 1] = math.max(0, math.ceil((limit - level) * p / limit))
  else
    local used = redis.call('INCRBY', KEYS[i], cost)
    if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIREAT', KEYS[i], p) end
    out[#out + 1] = limit - used
    out[#out + 1] = math.max(0, p - now)
  end
end
return out
";

/// KEYS[1]: the bucket. ARGV: kind, limit, delta, period/end as in ACQUIRE.
const ADJUST: &str = r"
local kind, limit, delta, p = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if kind == 'r' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local v = redis.call('HMGET', KEYS[1], 'l', 't')
  local level = limit
  if v[1] then level = math.min(limit, tonumber(v[1]) + (now - tonumber(v[2])) * limit / p) end
  level = math.min(limit, level - delta)
  redis.call('HSET', KEYS[1], 'l', tostring(level), 't', now)
  redis.call('PEXPIRE', KEYS[1], 2 * p)
  return math.floor(level)
end
local used = redis.call('INCRBY', KEYS[1], delta)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIREAT', KEYS[1], p) end
return used
";

#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    acquire: redis::Script,
    adjust: redis::Script,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Buckets are stored under `{prefix}limit:{key}`.
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self { conn, prefix: prefix.into(), acquire: redis::Script::new(ACQUIRE), adjust: redis::Script::new(ADJUST) }
    }

    fn key(&self, key: &str) -> String {
        format!("{}limit:{key}", self.prefix)
    }
}

fn kind_args(kind: BucketKind) -> (&'static str, i64) {
    match kind {
        BucketKind::Rate { period } => ("r", i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1)),
        BucketKind::Window { ends_at_ms } => ("w", ends_at_ms),
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn acquire(&self, buckets: &[Bucket]) -> Result<Verdict, LimiterFailure> {
        if buckets.is_empty() {
            return Ok(Verdict::Admitted(Vec::new()));
        }
        let mut call = self.acquire.prepare_invoke();
        for b in buckets {
            let (kind, p) = kind_args(b.kind);
            call.key(self.key(&b.key)).arg(kind).arg(b.limit).arg(b.cost).arg(p);
        }
        let mut conn = self.conn.clone();
        let out: Vec<i64> = call.invoke_async(&mut conn).await?;
        match out.as_slice() {
            [0, index, wait, ..] => {
                Ok(Verdict::Refused { index: usize::try_from(*index - 1).unwrap_or(0), retry_after: millis(*wait) })
            }
            [1, rest @ ..] if rest.len() == 2 * buckets.len() => {
                Ok(Verdict::Admitted(rest.chunks(2).map(|c| Level { remaining: c[0], reset: millis(c[1]) }).collect()))
            }
            other => Err(LimiterFailure(format!("unexpected limiter reply {other:?}"))),
        }
    }

    async fn adjust(&self, b: &Bucket, delta: i64) -> Result<i64, LimiterFailure> {
        let (kind, p) = kind_args(b.kind);
        let mut conn = self.conn.clone();
        Ok(self.adjust.key(self.key(&b.key)).arg(kind).arg(b.limit).arg(delta).arg(p).invoke_async(&mut conn).await?)
    }

    async fn seed(&self, key: &str, used: i64, ends_at_ms: i64) -> Result<(), LimiterFailure> {
        let mut conn = self.conn.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(used)
            .arg("NX")
            .arg("PXAT")
            .arg(ends_at_ms)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;

    #[tokio::test]
    async fn redis_limiter_contract() {
        let client = redis::Client::open(maas_testkit::redis_url()).unwrap();
        let conn = ConnectionManager::new(client).await.expect("Redis must be running: use scripts/test.sh");
        let l = RedisLimiter::new(conn, maas_testkit::redis_prefix());
        contract::exactly_the_limit_is_admitted(&l, "").await;
        contract::a_refusal_takes_nothing(&l, "").await;
        contract::settling_gives_back_and_takes_more(&l, "").await;
        contract::seeding_starts_a_window_once(&l, "").await;
        contract::a_call_costlier_than_the_limit_is_refused(&l, "").await;
    }
}
