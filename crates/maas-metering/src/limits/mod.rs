//! The [`Limiter`] trait: atomic check-and-take over several buckets at once, with the
//! in-process ([`MemoryLimiter`]) and the Redis ([`RedisLimiter`]) implementation side by side.
//!
//! Two kinds of bucket:
//! - **rate** buckets (requests or tokens per minute) are token buckets holding up to `limit`
//!   that refill continuously at `limit` per `period`; a call takes `cost` from each;
//! - **window** buckets (calls or tokens per day, GPU-milliseconds or money per month) count
//!   up to `limit` until the window ends; a call adds `cost`.
//!
//! A check takes from every bucket or from none, so a refused call consumes nothing. Costs
//! reserved on admission are settled later with [`Limiter::adjust`] (the real token count may
//! differ from the estimate).

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryLimiter;
pub use self::redis::RedisLimiter;
use crate::error::LimiterFailure;

/// What a bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    /// A token bucket refilling `limit` per `period`.
    Rate { period: Duration },
    /// A counter that resets when the window ends (Unix milliseconds).
    Window { ends_at_ms: i64 },
}

/// One bucket to check (and take `cost` from) in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    pub kind: BucketKind,
    pub limit: i64,
    pub cost: i64,
}

/// The state of one bucket after a call was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// What is left (rate: tokens in the bucket; window: limit minus used).
    pub remaining: i64,
    /// Until the bucket is full again (rate) or the window ends.
    pub reset: Duration,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Taken from every bucket; one level per bucket, in order.
    Admitted(Vec<Level>),
    /// Nothing taken: bucket `index` has too little; retry after `retry_after`.
    Refused { index: usize, retry_after: Duration },
}

/// Where limits are counted.
#[async_trait]
pub trait Limiter: Send + Sync + std::fmt::Debug {
    /// Takes each bucket's cost if every bucket has room, else nothing.
    async fn acquire(&self, buckets: &[Bucket]) -> Result<Verdict, LimiterFailure>;
    /// Adds `delta` to what `bucket` has used (negative gives back); never refuses. Returns
    /// what the bucket has used after it (window buckets) or its remaining level (rate).
    async fn adjust(&self, bucket: &Bucket, delta: i64) -> Result<i64, LimiterFailure>;
    /// Starts a window bucket at `used` unless it exists (counters seeded from stored usage).
    async fn seed(&self, key: &str, used: i64, ends_at_ms: i64) -> Result<(), LimiterFailure>;
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The wait until a rate bucket of `limit` per `period` holding `level` has `cost`.
pub(crate) fn rate_wait(level: f64, cost: i64, limit: i64, period: Duration) -> Duration {
    if cost > limit {
        return period;
    }
    let per_ms = limit as f64 / period.as_millis().max(1) as f64;
    Duration::from_millis(((cost as f64 - level) / per_ms).ceil().max(1.0) as u64)
}

/// Until a rate bucket holding `level` is full again.
pub(crate) fn rate_reset(level: f64, limit: i64, period: Duration) -> Duration {
    let per_ms = limit as f64 / period.as_millis().max(1) as f64;
    Duration::from_millis(((limit as f64 - level) / per_ms).ceil().max(0.0) as u64)
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every limiter must have; run against each implementation.
    use super::*;

    pub fn rate(key: &str, limit: i64, cost: i64) -> Bucket {
        Bucket { key: key.into(), kind: BucketKind::Rate { period: Duration::from_secs(60) }, limit, cost }
    }

    pub fn window(key: &str, limit: i64, cost: i64) -> Bucket {
        Bucket { key: key.into(), kind: BucketKind::Window { ends_at_ms: now_ms() + 3_600_000 }, limit, cost }
    }

    pub async fn exactly_the_limit_is_admitted(l: &dyn Limiter, p: &str) {
        let b = [rate(&format!("{p}a"), 3, 1)];
        for i in 0..3 {
            match l.acquire(&b).await.unwrap() {
                Verdict::Admitted(levels) => assert_eq!(levels[0].remaining, 2 - i),
                v => panic!("call {i} refused: {v:?}"),
            }
        }
        match l.acquire(&b).await.unwrap() {
            Verdict::Refused { index: 0, retry_after } => {
                assert!(
                    retry_after > Duration::from_secs(15) && retry_after <= Duration::from_secs(20),
                    "{retry_after:?}"
                )
            }
            v => panic!("the fourth call was admitted: {v:?}"),
        }
    }

    pub async fn a_refusal_takes_nothing(l: &dyn Limiter, p: &str) {
        let roomy = rate(&format!("{p}roomy"), 10, 1);
        let full = window(&format!("{p}full"), 1, 1);
        assert!(matches!(l.acquire(std::slice::from_ref(&full)).await.unwrap(), Verdict::Admitted(_)));
        let v = l.acquire(&[roomy.clone(), full]).await.unwrap();
        assert!(matches!(v, Verdict::Refused { index: 1, .. }), "{v:?}");
        match l.acquire(&[roomy]).await.unwrap() {
            Verdict::Admitted(levels) => assert_eq!(levels[0].remaining, 9, "the refused call took from 'roomy'"),
            v => panic!("{v:?}"),
        }
    }

    pub async fn settling_gives_back_and_takes_more(l: &dyn Limiter, p: &str) {
        let tokens = rate(&format!("{p}tpm"), 100, 60);
        assert!(matches!(l.acquire(std::slice::from_ref(&tokens)).await.unwrap(), Verdict::Admitted(_)));
        // 60 reserved, 20 used: 40 come back.
        let left = l.adjust(&tokens, -40).await.unwrap();
        assert!((79..=80).contains(&left), "{left}");
        let day = window(&format!("{p}day"), 1000, 10);
        assert!(matches!(l.acquire(std::slice::from_ref(&day)).await.unwrap(), Verdict::Admitted(_)));
        assert_eq!(l.adjust(&day, 15).await.unwrap(), 25);
        // A zero-cost check is refused once the window is used up.
        let used_up = Bucket { limit: 25, cost: 0, ..day };
        assert!(matches!(l.acquire(&[used_up]).await.unwrap(), Verdict::Refused { index: 0, .. }));
    }

    pub async fn seeding_starts_a_window_once(l: &dyn Limiter, p: &str) {
        let key = format!("{p}seeded");
        let ends = now_ms() + 60_000;
        l.seed(&key, 7, ends).await.unwrap();
        l.seed(&key, 100, ends).await.unwrap();
        let b = Bucket { key, kind: BucketKind::Window { ends_at_ms: ends }, limit: 10, cost: 3 };
        match l.acquire(std::slice::from_ref(&b)).await.unwrap() {
            Verdict::Admitted(levels) => assert_eq!(levels[0].remaining, 0),
            v => panic!("{v:?}"),
        }
        assert!(matches!(l.acquire(&[b]).await.unwrap(), Verdict::Refused { .. }));
    }

    pub async fn a_call_costlier_than_the_limit_is_refused(l: &dyn Limiter, p: &str) {
        let v = l.acquire(&[rate(&format!("{p}big"), 10, 11)]).await.unwrap();
        assert!(matches!(v, Verdict::Refused { index: 0, .. }), "{v:?}");
    }
}
