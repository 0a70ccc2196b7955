//! `NatsEvents`: usage records and alerts on NATS JetStream. Records go to
//! `{subject_prefix}.usage.{tenant_id}`, alerts to `{subject_prefix}.alerts.{tenant_id}`, all in
//! one stream, each with a `Nats-Msg-Id` header (the record id) for deduplication.

use std::time::Duration;

use async_nats::jetstream;
use async_trait::async_trait;
use maas_core::usage::UsageRecord;
use serde::{Deserialize, Serialize};

use super::{Events, EventsError};

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// The JetStream stream (created if missing).
    pub stream: String,
    /// Subjects are `{subject_prefix}.usage.<tenant>` and `{subject_prefix}.alerts.<tenant>`.
    pub subject_prefix: String,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self { stream: "MAAS_USAGE".into(), subject_prefix: "maas".into() }
    }
}

#[derive(Clone)]
pub struct NatsEvents {
    js: jetstream::Context,
    prefix: String,
}

impl std::fmt::Debug for NatsEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsEvents").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> EventsError {
    EventsError(e.to_string())
}

impl NatsEvents {
    /// Connects and makes sure the stream exists.
    pub async fn connect(url: &str, config: &NatsConfig) -> Result<NatsEvents, EventsError> {
        let client = async_nats::connect(url).await.map_err(err)?;
        let js = jetstream::new(client);
        js.get_or_create_stream(jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(err)?;
        Ok(NatsEvents { js, prefix: config.subject_prefix.clone() })
    }
}

#[async_trait]
impl Events for NatsEvents {
    async fn publish(&self, records: &[UsageRecord]) -> Result<(), EventsError> {
        // Send all, then wait for every acknowledgement (pipelined).
        let mut acks = Vec::with_capacity(records.len());
        for r in records {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", r.id.to_string().as_str());
            let payload = serde_json::to_vec(r).map_err(err)?;
            let subject = format!("{}.usage.{}", self.prefix, r.tenant_id);
            acks.push(self.js.publish_with_headers(subject, headers, payload.into()).await.map_err(err)?);
        }
        for ack in acks {
            ack.await.map_err(err)?;
        }
        Ok(())
    }

    async fn alert(&self, alert: &serde_json::Value) -> Result<(), EventsError> {
        let tenant = alert["tenant_id"].as_str().unwrap_or("unknown");
        let subject = format!("{}.alerts.{tenant}", self.prefix);
        let payload = serde_json::to_vec(alert).map_err(err)?;
        self.js.publish(subject, payload.into()).await.map_err(err)?.await.map_err(err)?;
        Ok(())
    }
}
