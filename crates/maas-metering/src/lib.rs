//! Policy and money: every inference call is admitted against rate limits, quotas and budgets
//! ([`Policy`]), metered as a durable [`UsageRecord`](maas_core::usage::UsageRecord) through a
//! group-committing [`Ledger`], published to an event stream ([`events`]) and priced into
//! monthly invoices ([`billing`]).
//!
//! Limits live behind the [`Limiter`] trait: [`MemoryLimiter`] in the embedded default,
//! [`RedisLimiter`] (one atomic Lua script per check) when Redis is configured, exact across
//! gateway instances.

pub mod billing;
mod error;
pub mod events;
mod ledger;
pub mod limits;
mod policy;

pub use error::{LimitError, MeteringError};
pub use ledger::{Ledger, LedgerConfig};
pub use limits::{Limiter, MemoryLimiter, RedisLimiter};
pub use policy::{Admission, FailMode, Policy, PolicyConfig, RateHeaders, Settlement, Subject};

/// Every setting of metering, limits and events (`[metering]` in the configuration file).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringConfig {
    pub ledger: LedgerConfig,
    pub policy: PolicyConfig,
    /// Server-wide defaults for the rate limits and usage quotas of tenants that have none
    /// set (`requests_per_minute`, `tokens_per_minute`, `max_calls_per_day`, …).
    pub tenant_defaults: maas_core::registry::Quota,
    /// Where usage events go when `nats_url` is set.
    pub nats: events::NatsConfig,
}
