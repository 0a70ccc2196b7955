//! In-process counters: the embedded default.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Count, Counter};
use crate::AuthError;

#[derive(Debug, Default)]
pub struct MemoryCounter {
    counts: Mutex<HashMap<String, (u64, Instant)>>,
}

impl MemoryCounter {
    pub fn new() -> Self {
        Self::default()
    }
}

fn count(value: u64, until: Instant, now: Instant) -> Count {
    Count { value, resets_in: until.saturating_duration_since(now) }
}

#[async_trait]
impl Counter for MemoryCounter {
    async fn increment(&self, key: &str, window: Duration) -> Result<Count, AuthError> {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() > 100_000 {
            counts.retain(|_, (_, until)| *until > now);
        }
        let entry = counts.entry(key.to_owned()).or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        Ok(count(entry.0, entry.1, now))
    }

    async fn get(&self, key: &str) -> Result<Count, AuthError> {
        let now = Instant::now();
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match counts.get(key) {
            Some(&(value, until)) if until > now => count(value, until, now),
            _ => Count { value: 0, resets_in: Duration::ZERO },
        })
    }

    async fn reset(&self, key: &str) -> Result<(), AuthError> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn contract() {
        super::super::contract::counts_expire_and_reset(&super::MemoryCounter::new(), "").await;
    }
}
