//! Runtime errors.

use maas_core::{Coded, ErrorCode};

/// Cloneable, so that one failed batch can answer each of its requests.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// The request does not fit the model's signature (name, dtype, shape, size).
    #[error("{0}")]
    InvalidInput(String),
    /// The prompt (with the tokens asked for) does not fit the model's context window.
    #[error("{0}")]
    ContextLength(String),
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
            RuntimeError::ContextLength(_) => ErrorCode::ContextLengthExceeded,
            RuntimeError::Load(_) => ErrorCode::Internal,
            RuntimeError::Inference(_) => ErrorCode::InferenceFailed,
        }
    }
}
