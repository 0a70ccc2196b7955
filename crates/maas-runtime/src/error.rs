//! Runtime errors.

use maas_core::{Coded, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request does not fit the model's signature (name, dtype, shape, size).
    #[error("{0}")]
    InvalidInput(String),
    /// The model could not be loaded.
    #[error("loading the model failed: {0}")]
    Load(String),
    /// The runtime failed while running the model.
    #[error("inference failed: {0}")]
    Inference(String),
}

impl Coded for RuntimeError {
    fn code(&self) -> ErrorCode {
        match self {
            RuntimeError::InvalidInput(_) => ErrorCode::InvalidRequest,
            RuntimeError::Load(_) | RuntimeError::Inference(_) => ErrorCode::Internal,
        }
    }
}
