//! Errors of the identity and access layer.

use maas_core::validate::InvalidField;
use maas_core::{Coded, ErrorCode};
use maas_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send the session cookie or 'Authorization: Bearer <api key>'")]
    Unauthenticated,
    #[error("wrong username/email or password")]
    InvalidCredentials,
    #[error("the session has expired or was signed out; log in again")]
    SessionExpired,
    #[error("the API key is not valid")]
    InvalidApiKey,
    #[error("the API key has been revoked")]
    ApiKeyRevoked,
    #[error("the API key has expired")]
    ApiKeyExpired,
    #[error("too many failed login attempts; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("your role in this tenant does not allow this: {0}")]
    Forbidden(String),
    #[error("this API key lacks the '{0}' scope")]
    InsufficientScope(&'static str),
    #[error("tenant '{0}' not found")]
    TenantNotFound(String),
    #[error("a tenant must keep at least one owner")]
    LastOwner,
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("session store unavailable: {0}")]
    HotState(#[from] redis::RedisError),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("not ready: {0}")]
    NotReady(Box<AuthError>),
}

impl Coded for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Unauthenticated => ErrorCode::Unauthenticated,
            AuthError::InvalidCredentials => ErrorCode::InvalidCredentials,
            AuthError::SessionExpired => ErrorCode::SessionExpired,
            AuthError::InvalidApiKey => ErrorCode::InvalidApiKey,
            AuthError::ApiKeyRevoked => ErrorCode::ApiKeyRevoked,
            AuthError::ApiKeyExpired => ErrorCode::ApiKeyExpired,
            AuthError::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            AuthError::Forbidden(_) => ErrorCode::Forbidden,
            AuthError::InsufficientScope(_) => ErrorCode::InsufficientScope,
            AuthError::TenantNotFound(_) => ErrorCode::TenantNotFound,
            AuthError::LastOwner => ErrorCode::LastOwner,
            AuthError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            AuthError::Invalid(e) => e.code(),
            AuthError::Store(e) => e.code(),
            AuthError::HotState(_) => ErrorCode::ServiceUnavailable,
            AuthError::Hashing(_) => ErrorCode::Internal,
            AuthError::NotReady(_) => ErrorCode::ServiceUnavailable,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AuthError::TooManyAttempts { retry_after_secs } => Some(*retry_after_secs),
            AuthError::Store(e) => e.retry_after_secs(),
            AuthError::HotState(_) | AuthError::NotReady(_) => Some(5),
            _ => None,
        }
    }
}
