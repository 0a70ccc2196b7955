//! Metering in the store: [`UsageLedger`] (writing records of every tenant, the event outbox)
//! and [`TenantUsage`] (one tenant's usage, budget and invoices).

use async_trait::async_trait;
use maas_core::Timestamp;
use maas_core::billing::{Budget, Invoice, Micros};
use maas_core::usage::UsageRecord;
use uuid::Uuid;

use crate::Result;

/// Writes usage records (the meter's group commit) and feeds the event outbox.
#[async_trait]
pub trait UsageLedger: Send + Sync {
    /// Inserts `records` in one transaction. A record whose id is already stored is skipped, so
    /// replaying a batch never duplicates. Returns how many were new. `published: false` puts
    /// them in the event outbox.
    async fn insert_usage(&self, records: &[UsageRecord], published: bool) -> Result<u64>;
    /// Records not yet published to the event stream, oldest first.
    async fn unpublished_usage(&self, limit: u32) -> Result<Vec<UsageRecord>>;
    async fn mark_published(&self, ids: &[Uuid]) -> Result<()>;
}

/// How usage is summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGrouping {
    Day,
    Deployment,
    Key,
    Model,
}

/// Usage summed over one group (and currency) of a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The day (`YYYY-MM-DD`), deployment, API key id (`session` for session calls) or model version.
    pub group: String,
    pub currency: String,
    pub requests: i64,
    pub errors: i64,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub compute_ms: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub cost_micros: Micros,
}

/// Totals of a period, for seeding quota and budget counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub calls: i64,
    pub tokens: i64,
    pub gpu_ms: i64,
    /// Billable cost in the currency asked for.
    pub cost_micros: Micros,
}

/// Billable usage of a period summed per deployment and price, the input of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingRow {
    pub deployment: String,
    pub currency: String,
    pub price_call: Micros,
    pub price_input_1k: Micros,
    pub price_output_1k: Micros,
    pub price_compute_second: Micros,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub compute_ms: i64,
}

/// One tenant's usage, budget and invoices. Every query binds the handle's tenant id.
#[async_trait]
pub trait TenantUsage: Send + Sync {
    async fn usage_summary(&self, from: Timestamp, to: Timestamp, group_by: UsageGrouping) -> Result<Vec<UsageRow>>;
    /// Records in `[from, to)`, in time order, after the record `after` (a cursor: its time and id).
    async fn usage_records(
        &self,
        from: Timestamp,
        to: Timestamp,
        after: Option<(Timestamp, Uuid)>,
        limit: u32,
    ) -> Result<Vec<UsageRecord>>;
    async fn usage_totals(&self, from: Timestamp, to: Timestamp, currency: &str) -> Result<UsageTotals>;
    async fn billing_rows(&self, from: Timestamp, to: Timestamp) -> Result<Vec<BillingRow>>;

    async fn budget(&self) -> Result<Option<Budget>>;
    /// Sets (or with `None` removes) the budget.
    async fn set_budget(&self, budget: Option<&Budget>) -> Result<()>;
    /// Notes that the soft-limit alert of `period` was raised; false when it already was.
    async fn mark_budget_alerted(&self, period: &str) -> Result<bool>;

    /// A stored (closed) invoice.
    async fn stored_invoice(&self, id: &str) -> Result<Option<Invoice>>;
    /// Stores a closed invoice unless one with its id exists; returns the stored one.
    async fn store_invoice(&self, invoice: &Invoice) -> Result<Invoice>;
}
