//! Errors of the model-file readers: each says in words what is wrong with the file.

use maas_core::{Coded, ErrorCode};

/// A model file could not be read: it is truncated, malformed, or not in the format asked for.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("the file is empty")]
    Empty,
    /// The file ends before a structure its own lengths announce. `needed` is the file length
    /// that structure requires, `available` the real one.
    #[error("truncated: the file ends inside {what} (needs {needed} bytes, has {available})")]
    Truncated { what: String, needed: u64, available: u64 },
    /// A part the reader must hold in memory is larger than it accepts.
    #[error("{what} is {len} bytes, over the limit of {limit} bytes")]
    TooLarge { what: String, len: u64, limit: u64 },
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
    #[error("invalid ONNX model: {0}")]
    InvalidOnnx(String),
    #[error("unsupported element type {elem_type} for '{name}'")]
    UnsupportedElementType { name: String, elem_type: i32 },
    #[error("safetensors header is not valid JSON: {0}")]
    SafetensorsJson(String),
    #[error("invalid safetensors file: {0}")]
    InvalidSafetensors(String),
    #[error("tensor '{name}' data range [{begin},{end}) lies outside the data section (len {data_len})")]
    TensorOutOfBounds { name: String, begin: u64, end: u64, data_len: u64 },
    #[error("config.json is invalid: {0}")]
    InvalidConfig(String),
    #[error("not a GGUF file (magic is {magic})")]
    NotGguf { magic: String },
    #[error("unsupported GGUF version {0} (versions 2 and 3, little-endian, are supported)")]
    UnsupportedGgufVersion(u32),
    #[error("malformed GGUF file: {0}")]
    MalformedGguf(String),
    /// Reading failed for a reason other than the file's content (a disk error).
    #[error("reading the model file failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Coded for FormatError {
    fn code(&self) -> ErrorCode {
        match self {
            FormatError::Io(_) => ErrorCode::Internal,
            _ => ErrorCode::InvalidModelFile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_errors_are_invalid_model_file_and_io_is_internal() {
        let truncated = FormatError::Truncated { what: "the header".into(), needed: 1234, available: 100 };
        assert_eq!(truncated.code(), ErrorCode::InvalidModelFile);
        assert_eq!(truncated.to_string(), "truncated: the file ends inside the header (needs 1234 bytes, has 100)");
        let io = FormatError::Io(std::io::Error::other("disk on fire"));
        assert_eq!(io.code(), ErrorCode::Internal);
    }
}
