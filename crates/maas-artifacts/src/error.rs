//! Artifact storage errors.

use maas_core::{Coded, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("no such blob")]
    NotFound,
    #[error("'{0}' is not a SHA-256 hex digest")]
    BadDigest(String),
    #[error("the upload continues at byte {expected}, not at {given}")]
    OffsetMismatch { expected: u64, given: u64 },
    #[error("the upload is larger than the allowed {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("artifact storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
}

impl Coded for ArtifactError {
    fn code(&self) -> ErrorCode {
        match self {
            ArtifactError::NotFound => ErrorCode::FileNotFound,
            ArtifactError::BadDigest(_) => ErrorCode::InvalidRequest,
            ArtifactError::OffsetMismatch { .. } => ErrorCode::UploadOffsetMismatch,
            ArtifactError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            ArtifactError::Body(_) => ErrorCode::InvalidRequest,
            ArtifactError::Io(_) => ErrorCode::Internal,
            ArtifactError::ObjectStore(object_store::Error::NotFound { .. }) => ErrorCode::FileNotFound,
            ArtifactError::ObjectStore(_) => ErrorCode::ServiceUnavailable,
        }
    }
}
