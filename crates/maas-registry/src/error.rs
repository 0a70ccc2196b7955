//! Registry errors.

use maas_artifacts::ArtifactError;
use maas_auth::AuthError;
use maas_core::validate::InvalidField;
use maas_core::{Coded, ErrorCode};
use maas_formats::FormatError;
use maas_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    #[error("version '{0}' not found")]
    VersionNotFound(String),
    #[error("file '{0}' not found")]
    FileNotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("version '{0}' is published and can no longer change")]
    Immutable(String),
    #[error("quota exceeded: {0}")]
    Quota(String),
    #[error("invalid path '{path}': {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("the file's SHA-256 is {actual}, but {expected} was announced")]
    ChecksumMismatch { expected: String, actual: String },
    #[error(
        "the upload of '{path}' has {committed} bytes committed; resume from there (Content-Range: bytes {committed}-…)"
    )]
    OffsetMismatch { path: String, committed: u64 },
    #[error("another request is uploading '{0}' right now")]
    UploadInProgress(String),
    #[error("invalid Content-Range: {0}")]
    BadContentRange(String),
    #[error("range not satisfiable: the file has {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{path}: {source}")]
    InvalidFile { path: String, source: FormatError },
    #[error("cannot publish: {0}")]
    CannotPublish(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Coded for RegistryError {
    fn code(&self) -> ErrorCode {
        match self {
            RegistryError::ModelNotFound(_) => ErrorCode::ModelNotFound,
            RegistryError::VersionNotFound(_) => ErrorCode::VersionNotFound,
            RegistryError::FileNotFound(_) => ErrorCode::FileNotFound,
            RegistryError::Forbidden(_) => ErrorCode::Forbidden,
            RegistryError::Immutable(_) => ErrorCode::VersionImmutable,
            RegistryError::Quota(_) => ErrorCode::QuotaExceeded,
            RegistryError::InvalidPath { .. } => ErrorCode::InvalidPath,
            RegistryError::ChecksumMismatch { .. } => ErrorCode::ChecksumMismatch,
            RegistryError::OffsetMismatch { .. } => ErrorCode::UploadOffsetMismatch,
            RegistryError::UploadInProgress(_) => ErrorCode::UploadInProgress,
            RegistryError::BadContentRange(_) => ErrorCode::InvalidRequest,
            RegistryError::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
            RegistryError::InvalidFile { .. } | RegistryError::CannotPublish(_) => ErrorCode::InvalidModelFile,
            RegistryError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            RegistryError::Invalid(e) => e.code(),
            RegistryError::Auth(e) => e.code(),
            RegistryError::Store(e) => e.code(),
            RegistryError::Artifact(e) => e.code(),
            RegistryError::Task(_) => ErrorCode::Internal,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            RegistryError::Auth(e) => e.retry_after_secs(),
            RegistryError::Store(e) => e.retry_after_secs(),
            _ => None,
        }
    }
}
