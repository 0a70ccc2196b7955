//! Validation and signature reading for model files: ONNX, safetensors and GGUF.
//!
//! Every reader is synchronous and takes any `Read + Seek` (call it from a blocking thread);
//! it measures the file and rewinds it, so the model must start at the reader's first byte.
//! Memory stays bounded whatever the file size: readers walk the file's structure, read only
//! the small parts they need (each under a fixed cap) and seek over the rest, weights included.
//! Every length found in a file is checked against the file's real length before it is used,
//! so a truncated or malformed file gives a [`FormatError`] that says what is wrong, never a
//! panic or a huge allocation.
//!
//! - [`read_onnx`]: graph inputs and outputs (initializers excluded), IR version, producer,
//!   opsets.
//! - [`read_safetensors_header`] for each file of a checkpoint, then [`safetensors_signature`]
//!   over all of them plus `config.json`.
//! - [`read_gguf`]: the facts a llama.cpp-style runtime needs (architecture, context length,
//!   chat template, tokenizer, parameter count) and a check that every tensor's data is in
//!   the file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod error;
pub mod gguf;
pub mod onnx;
pub mod safetensors;
mod source;

pub use error::FormatError;
pub use gguf::read_gguf;
pub use onnx::read_onnx;
pub use safetensors::{read_safetensors_header, safetensors_signature};

/// One tensor of a signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// A KServe v2 data type name: `BOOL`, `UINT8`, `UINT16`, `UINT32`, `UINT64`, `INT8`,
    /// `INT16`, `INT32`, `INT64`, `FP16`, `BF16`, `FP32`, `FP64`, `BYTES`. Each reader
    /// documents the few values it uses beyond these (ONNX non-tensor types, safetensors
    /// dtypes KServe has no name for).
    pub dtype: String,
    /// One entry per dimension, -1 for a dynamic dimension. Empty for a scalar, and also where
    /// the rank is unknown (the reader's metadata then says so).
    pub shape: Vec<i64>,
}

/// What a model takes and returns, plus format-specific facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Format-specific facts, a JSON object; each reader documents its keys.
    pub metadata: serde_json::Value,
}

/// The header of one safetensors file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SafetensorsHeader {
    /// Every tensor, in the order of their data in the file. `dtype` is the KServe v2 name
    /// (`F32` → `FP32`, `F16` → `FP16`, `BF16` → `BF16`, `I64` → `INT64`, `U8` → `UINT8`,
    /// `BOOL` → `BOOL`, …), or the safetensors name unchanged where KServe has none (`F8_E4M3`,
    /// `F8_E5M2`, `F8_E8M0`, `F6_E2M3`, `F6_E3M2`, `F4`, `C64`, and dtypes newer than this
    /// crate).
    pub tensors: Vec<TensorSpec>,
    /// The `__metadata__` entry (empty when absent).
    pub metadata: BTreeMap<String, String>,
    /// Length in bytes of the data section (the file after the 8-byte length and the header).
    pub data_len: u64,
}
