//! Errors of admission, metering and billing, each with its stable code.

use std::time::Duration;

use maas_core::{Coded, ErrorCode};
use maas_store::StoreError;

/// A call refused by a limit, quota or budget: which one, and when to retry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LimitError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    #[error(transparent)]
    Limited(#[from] LimitError),
    /// The limit store could not be reached and limits fail closed.
    #[error("rate limits cannot be checked right now (the limit store is unreachable); retry shortly")]
    LimiterUnavailable(#[source] LimiterFailure),
    /// The usage record could not be made durable, so the call is not acknowledged.
    #[error("the call could not be metered (usage store unavailable); it was not billed, retry shortly")]
    NotMetered(#[source] std::sync::Arc<StoreError>),
    /// The server is shutting down.
    #[error("the server is shutting down; the call was not metered, retry")]
    LedgerStopped,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no invoice '{0}': invoices are named YYYY-MM-CUR, for months up to the current one")]
    InvoiceNotFound(String),
}

/// Why the limit store failed (Redis unreachable, script error…).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LimiterFailure(pub String);

impl From<redis::RedisError> for LimiterFailure {
    fn from(e: redis::RedisError) -> Self {
        LimiterFailure(e.to_string())
    }
}

impl Coded for MeteringError {
    fn code(&self) -> ErrorCode {
        match self {
            MeteringError::Limited(e) => e.code,
            MeteringError::LimiterUnavailable(_) => ErrorCode::LimiterUnavailable,
            MeteringError::NotMetered(_) | MeteringError::LedgerStopped => ErrorCode::ServiceUnavailable,
            MeteringError::Store(e) => e.code(),
            MeteringError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            MeteringError::InvoiceNotFound(_) => ErrorCode::InvoiceNotFound,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            MeteringError::Limited(e) => e.retry_after.map(|d| d.as_millis().div_ceil(1000).max(1) as u64),
            MeteringError::LimiterUnavailable(_) | MeteringError::NotMetered(_) | MeteringError::LedgerStopped => {
                Some(1)
            }
            MeteringError::Store(e) => e.retry_after_secs(),
            _ => None,
        }
    }
}
