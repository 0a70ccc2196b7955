//! Usage events for downstream consumers: the [`Events`] trait (NATS JetStream in
//! [`NatsEvents`]) and the outbox [`publish_outbox`] loop that delivers every committed usage
//! record at least once, with the record id as idempotency key (JetStream drops duplicates
//! inside its deduplication window; consumers can dedupe on the id beyond it).

mod nats;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use maas_core::usage::UsageRecord;
use maas_store::Store;
use tokio::sync::Notify;

pub use self::nats::{NatsConfig, NatsEvents};

#[derive(Debug, thiserror::Error)]
#[error("event stream: {0}")]
pub struct EventsError(pub String);

/// Where usage events and alerts go.
#[async_trait]
pub trait Events: Send + Sync + std::fmt::Debug {
    /// Publishes `records`, returning once the stream has acknowledged every one.
    async fn publish(&self, records: &[UsageRecord]) -> Result<(), EventsError>;
    /// Publishes an alert (a soft budget limit reached…), best effort.
    async fn alert(&self, alert: &serde_json::Value) -> Result<(), EventsError>;
}

/// Delivers unpublished records (the outbox in the store) until `stop` fires: after each
/// commit of the ledger, and every second in case a notification was missed or a publish
/// failed. A record is marked published only after the stream acknowledged it, so a crash
/// between the two republishes it (at least once).
pub async fn publish_outbox(store: Arc<dyn Store>, events: Arc<dyn Events>, committed: Arc<Notify>) {
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), committed.notified()).await;
        loop {
            let records = match store.unpublished_usage(500).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the usage outbox");
                    break;
                }
            };
            if records.is_empty() {
                break;
            }
            if let Err(e) = events.publish(&records).await {
                tracing::warn!(error = %e, records = records.len(), "publishing usage events failed; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            }
            let ids: Vec<uuid::Uuid> = records.iter().map(|r| r.id).collect();
            if let Err(e) = store.mark_published(&ids).await {
                tracing::warn!(error = %e, "cannot mark usage events published; they will be sent again");
                break;
            }
        }
    }
}
