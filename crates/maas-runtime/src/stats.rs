//! Inference statistics of a replica, counted the way Triton's statistics extension reports
//! them: per request (success, fail, queue, compute input/infer/output) and per model run
//! (by batch size), since the replica started.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A count of events and their cumulative duration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timed {
    pub count: u64,
    pub ns: u64,
}

impl Timed {
    /// Counts `n` events that took `took` each.
    fn add(&mut self, n: u64, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.count = self.count.saturating_add(n);
        self.ns = self.ns.saturating_add(ns.saturating_mul(n));
    }

    fn merge(&mut self, other: Timed) {
        self.count = self.count.saturating_add(other.count);
        self.ns = self.ns.saturating_add(other.ns);
    }
}

/// The three steps of a model run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSteps {
    /// Gathering the batch's inputs into the model's tensors.
    pub compute_input: Timed,
    /// The model itself.
    pub compute_infer: Timed,
    /// Splitting the outputs back and answering each request.
    pub compute_output: Timed,
}

impl RunSteps {
    fn add(&mut self, n: u64, [input, infer, output]: [Duration; 3]) {
        self.compute_input.add(n, input);
        self.compute_infer.add(n, infer);
        self.compute_output.add(n, output);
    }

    fn merge(&mut self, other: &RunSteps) {
        self.compute_input.merge(other.compute_input);
        self.compute_infer.merge(other.compute_infer);
        self.compute_output.merge(other.compute_output);
    }
}

/// What a replica (or, merged, a deployment) has served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InferStats {
    /// When the last successful request finished, in ms since the Unix epoch (0: never).
    pub last_inference_ms: u64,
    /// Rows answered successfully (a request of batch 8 counts 8).
    pub inference_count: u64,
    /// Successful model runs (a dynamic batch of several requests counts 1).
    pub execution_count: u64,
    /// Requests answered, from the replica taking them to the answer.
    pub success: Timed,
    /// Requests refused or failed once their deployment was ready.
    pub fail: Timed,
    /// Requests' time in the queue, until their batch started.
    pub queue: Timed,
    /// The run steps, once per request (a request in a batch counts the whole batch's run).
    pub steps: RunSteps,
    /// The run steps once per run, by rows in the run.
    pub batches: BTreeMap<u64, RunSteps>,
}

impl InferStats {
    /// Adds a finished request of `rows` rows that took `took` in all.
    pub(crate) fn finished(&mut self, ok: bool, rows: u64, took: Duration) {
        if ok {
            self.success.add(1, took);
            self.inference_count = self.inference_count.saturating_add(rows);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            self.last_inference_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        } else {
            self.fail.add(1, took);
        }
    }

    /// Adds a successful run of `requests` requests and `rows` rows in all: the time each
    /// request queued, and the run's steps.
    pub(crate) fn ran(&mut self, queued: &[Duration], rows: u64, steps: [Duration; 3]) {
        for &waited in queued {
            self.queue.add(1, waited);
        }
        self.execution_count = self.execution_count.saturating_add(1);
        self.steps.add(queued.len() as u64, steps);
        self.batches.entry(rows).or_default().add(1, steps);
    }

    /// Adds `other`'s counts to these (the latest `last_inference_ms` wins).
    pub fn merge(&mut self, other: &InferStats) {
        self.last_inference_ms = self.last_inference_ms.max(other.last_inference_ms);
        self.inference_count = self.inference_count.saturating_add(other.inference_count);
        self.execution_count = self.execution_count.saturating_add(other.execution_count);
        self.success.merge(other.success);
        self.fail.merge(other.fail);
        self.queue.merge(other.queue);
        self.steps.merge(&other.steps);
        for (rows, steps) in &other.batches {
            self.batches.entry(*rows).or_default().merge(steps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn runs_count_per_request_and_per_batch_size() {
        let mut stats = InferStats::default();
        stats.ran(&[MS, 3 * MS], 5, [MS, 10 * MS, 2 * MS]);
        stats.finished(true, 2, 14 * MS);
        stats.finished(true, 3, 16 * MS);
        stats.finished(false, 1, MS);
        assert_eq!(stats.execution_count, 1);
        assert_eq!(stats.inference_count, 5);
        assert_eq!(stats.success, Timed { count: 2, ns: 30_000_000 });
        assert_eq!(stats.fail, Timed { count: 1, ns: 1_000_000 });
        assert_eq!(stats.queue, Timed { count: 2, ns: 4_000_000 });
        // Each of the two requests is charged the whole run, as Triton counts it.
        assert_eq!(stats.steps.compute_infer, Timed { count: 2, ns: 20_000_000 });
        assert_eq!(stats.batches[&5].compute_infer, Timed { count: 1, ns: 10_000_000 });
        assert!(stats.last_inference_ms > 0);
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_latest_inference() {
        let mut a = InferStats::default();
        a.ran(&[MS], 1, [MS, MS, MS]);
        a.last_inference_ms = 10;
        let mut b = InferStats::default();
        b.ran(&[MS], 1, [MS, 2 * MS, MS]);
        b.ran(&[MS, MS], 4, [MS, 2 * MS, MS]);
        b.last_inference_ms = 20;
        a.merge(&b);
        assert_eq!(a.execution_count, 3);
        assert_eq!(a.last_inference_ms, 20);
        assert_eq!(a.batches[&1].compute_infer, Timed { count: 2, ns: 3_000_000 });
        assert_eq!(a.batches[&4].compute_infer, Timed { count: 1, ns: 2_000_000 });
        assert_eq!(a.queue.count, 4);
    }
}
