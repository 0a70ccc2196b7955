//! Core vocabulary of MaaS: identifiers, domain types, validation and the error-code table.
//!
//! This crate knows nothing about HTTP, SQL or Redis. Every other crate depends on it and
//! speaks its types; the gateway turns [`ErrorCode`]s into HTTP and gRPC statuses at the edge.

pub mod audit;
pub mod billing;
pub mod error;
pub mod identity;
pub mod ids;
pub mod keys;
pub mod registry;
pub mod secret;
pub mod usage;
pub mod validate;

pub use error::{Coded, ErrorCode};
pub use ids::{ApiKeyId, AuditId, DeploymentId, ModelId, TenantId, UploadId, UserId, VersionId};
pub use secret::Secret;

/// Timestamps are UTC everywhere.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current time, truncated to milliseconds (the precision the stores keep), so a value
/// read back from a store compares equal to the one written.
pub fn now() -> Timestamp {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
