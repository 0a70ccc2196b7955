//! Controller errors.

use maas_core::{Coded, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("deployment '{0}' not found")]
    NotFound(String),
    #[error("invalid deployment settings: {0}")]
    InvalidSpec(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("model version {0} is not published; publish it before deploying")]
    NotPublished(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("the external engine failed: {0}")]
    Upstream(String),
    #[error(transparent)]
    Registry(#[from] maas_registry::RegistryError),
    #[error(transparent)]
    Auth(#[from] maas_auth::AuthError),
    #[error(transparent)]
    Store(#[from] maas_store::StoreError),
    #[error(transparent)]
    Artifact(#[from] maas_artifacts::ArtifactError),
    #[error("preparing the model files failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Coded for ControllerError {
    fn code(&self) -> ErrorCode {
        match self {
            ControllerError::NotFound(_) => ErrorCode::DeploymentNotFound,
            ControllerError::InvalidSpec(_) | ControllerError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            ControllerError::NotPublished(_) => ErrorCode::VersionNotFound,
            ControllerError::Unsupported(_) => ErrorCode::UnsupportedOperation,
            ControllerError::Upstream(_) => ErrorCode::UpstreamError,
            ControllerError::Registry(e) => e.code(),
            ControllerError::Auth(e) => e.code(),
            ControllerError::Store(e) => e.code(),
            ControllerError::Artifact(e) => e.code(),
            ControllerError::Io(_) => ErrorCode::Internal,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ControllerError::Auth(e) => e.retry_after_secs(),
            ControllerError::Store(e) => e.retry_after_secs(),
            _ => None,
        }
    }
}
