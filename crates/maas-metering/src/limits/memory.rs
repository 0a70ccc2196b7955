//! `MemoryLimiter`: the embedded default, exact within one process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{Bucket, BucketKind, Level, Limiter, Verdict, now_ms, rate_reset, rate_wait};
use crate::error::LimiterFailure;

#[derive(Debug, Clone, Copy)]
enum State {
    /// Tokens held at `at_ms`; full again (hence forgettable) by `full_at_ms`.
    Rate {
        level: f64,
        at_ms: i64,
        full_at_ms: i64,
    },
    Window {
        used: i64,
        ends_at_ms: i64,
    },
}

impl State {
    /// Whether the state still matters at `now` (else it equals a fresh bucket).
    fn live(&self, now: i64) -> bool {
        match self {
            State::Rate { full_at_ms, .. } => *full_at_ms > now,
            State::Window { ends_at_ms, .. } => *ends_at_ms > now,
        }
    }
}

/// Above this many buckets, buckets that no longer matter are dropped.
const SWEEP_AT: usize = 100_000;

/// Buckets in a map behind one lock; a check is a few map operations.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    buckets: Mutex<HashMap<String, State>>,
}

impl MemoryLimiter {
    pub fn new() -> Self {
        Self::default()
    }
}

fn rate_level(state: Option<&State>, limit: i64, period: Duration, now: i64) -> f64 {
    match state {
        Some(State::Rate { level, at_ms, .. }) => {
            let refill = (now - at_ms).max(0) as f64 * limit as f64 / period.as_millis().max(1) as f64;
            (level + refill).min(limit as f64)
        }
        _ => limit as f64,
    }
}

fn window_used(state: Option<&State>, now: i64) -> i64 {
    match state {
        Some(State::Window { used, ends_at_ms }) if *ends_at_ms > now => *used,
        _ => 0,
    }
}

#[async_trait]
impl Limiter for MemoryLimiter {
    async fn acquire(&self, buckets: &[Bucket]) -> Result<Verdict, LimiterFailure> {
        let now = now_ms();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        for (index, b) in buckets.iter().enumerate() {
            let state = map.get(&b.key);
            let refused = match b.kind {
                BucketKind::Rate { period } => {
                    let level = rate_level(state, b.limit, period, now);
                    (level < b.cost as f64 || b.cost > b.limit).then(|| rate_wait(level, b.cost, b.limit, period))
                }
                BucketKind::Window { ends_at_ms } => {
                    let used = window_used(state, now);
                    (used >= b.limit || used + b.cost > b.limit)
                        .then(|| Duration::from_millis((ends_at_ms - now).max(1000) as u64))
                }
            };
            if let Some(retry_after) = refused {
                return Ok(Verdict::Refused { index, retry_after });
            }
        }
        let mut levels = Vec::with_capacity(buckets.len());
        for b in buckets {
            let state = map.get(&b.key);
            let (next, level) = match b.kind {
                BucketKind::Rate { period } => {
                    let level = rate_level(state, b.limit, period, now) - b.cost as f64;
                    let reset = rate_reset(level, b.limit, period);
                    let full_at_ms = now + reset.as_millis() as i64;
                    (State::Rate { level, at_ms: now, full_at_ms }, Level { remaining: level.floor() as i64, reset })
                }
                BucketKind::Window { ends_at_ms } => {
                    let used = window_used(state, now) + b.cost;
                    let reset = Duration::from_millis((ends_at_ms - now).max(0) as u64);
                    (State::Window { used, ends_at_ms }, Level { remaining: b.limit - used, reset })
                }
            };
            map.insert(b.key.clone(), next);
            levels.push(level);
        }
        if map.len() > SWEEP_AT {
            map.retain(|_, s| s.live(now));
        }
        Ok(Verdict::Admitted(levels))
    }

    async fn adjust(&self, b: &Bucket, delta: i64) -> Result<i64, LimiterFailure> {
        let now = now_ms();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let state = map.get(&b.key);
        let (next, out) = match b.kind {
            BucketKind::Rate { period } => {
                let level = (rate_level(state, b.limit, period, now) - delta as f64).min(b.limit as f64);
                let full_at_ms = now + rate_reset(level, b.limit, period).as_millis() as i64;
                (State::Rate { level, at_ms: now, full_at_ms }, level.floor() as i64)
            }
            BucketKind::Window { ends_at_ms } => {
                let used = window_used(state, now) + delta;
                (State::Window { used, ends_at_ms }, used)
            }
        };
        map.insert(b.key.clone(), next);
        Ok(out)
    }

    async fn seed(&self, key: &str, used: i64, ends_at_ms: i64) -> Result<(), LimiterFailure> {
        let now = now_ms();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let live = matches!(map.get(key), Some(State::Window { ends_at_ms, .. }) if *ends_at_ms > now);
        if !live {
            map.insert(key.to_owned(), State::Window { used, ends_at_ms });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;

    #[tokio::test]
    async fn memory_limiter_contract() {
        let l = MemoryLimiter::new();
        contract::exactly_the_limit_is_admitted(&l, "").await;
        contract::a_refusal_takes_nothing(&l, "").await;
        contract::settling_gives_back_and_takes_more(&l, "").await;
        contract::seeding_starts_a_window_once(&l, "").await;
        contract::a_call_costlier_than_the_limit_is_refused(&l, "").await;
    }
}
