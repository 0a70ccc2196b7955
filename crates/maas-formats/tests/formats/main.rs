//! Readers against model files built in memory: what they report, and that truncated,
//! corrupted or foreign files give a readable error and never a panic.

mod fixtures;
mod gguf;
mod onnx;
mod robustness;
mod safetensors;
