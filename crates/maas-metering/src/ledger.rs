//! The [`Ledger`]: usage records made durable with group commit. Every caller waits until its
//! record is committed (so no response is acknowledged before its record is durable), and one
//! writer task commits whatever has queued meanwhile in a single transaction.

use std::sync::Arc;
use std::time::Duration;

use maas_core::usage::UsageRecord;
use maas_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::MeteringError;

/// Group-commit settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Most records committed in one transaction.
    pub max_batch: usize,
    /// Records waiting for the writer before callers wait for room.
    pub queue: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self { max_batch: 2048, queue: 65_536 }
    }
}

type Done = oneshot::Sender<Result<(), Arc<StoreError>>>;

/// The handle calls record through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ledger {
    tx: mpsc::Sender<(UsageRecord, Done)>,
    committed: Arc<Notify>,
}

impl Ledger {
    /// Starts the writer task. With `outbox`, records are stored unpublished for the event
    /// publisher; without, they are stored as already published.
    pub fn start(store: Arc<dyn Store>, config: &LedgerConfig, outbox: bool) -> Ledger {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let committed = Arc::new(Notify::new());
        tokio::spawn(write(store, rx, config.max_batch.max(1), !outbox, committed.clone()));
        Ledger { tx, committed }
    }

    /// Records `record` and returns once it is committed.
    pub async fn record(&self, record: UsageRecord) -> Result<(), MeteringError> {
        let (done, committed) = oneshot::channel();
        self.tx.send((record, done)).await.map_err(|_| MeteringError::LedgerStopped)?;
        match committed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(MeteringError::NotMetered(e)),
            Err(_) => Err(MeteringError::LedgerStopped),
        }
    }

    /// Woken after every commit (the event publisher waits on it).
    pub fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }
}

/// The writer: takes what has queued (up to `max_batch`), commits it in one transaction with a
/// few retries, and answers every waiter.
async fn write(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<(UsageRecord, Done)>,
    max_batch: usize,
    published: bool,
    committed: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let (records, waiters): (Vec<UsageRecord>, Vec<Done>) = batch.drain(..).unzip();
        let mut result = store.insert_usage(&records, published).await;
        for attempt in 1..=3u32 {
            let Err(e) = &result else { break };
            tracing::warn!(error = %e, attempt, records = records.len(), "usage commit failed; retrying");
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            result = store.insert_usage(&records, published).await;
        }
        let result = match result {
            Ok(_) => {
                committed.notify_one();
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, records = records.len(), "usage records could not be committed");
                Err(Arc::new(e))
            }
        };
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}
