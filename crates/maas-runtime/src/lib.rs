//! Model runtimes and the replicas that run them.
//!
//! - [`tensor`]: named, typed, shaped tensors in the KServe v2 data types.
//! - [`backend`]: the [`Backend`] trait a model runtime implements (load once, then infer
//!   synchronously); ONNX Runtime ([`onnx`]) and sentence embeddings ([`embed`]) implement it.
//! - [`generate`]: causal language models that stream tokens (llama.cpp for GGUF, candle for
//!   safetensors), with continuous batching on their own replicas.
//! - [`validate`]: checks a request against a model's signature (also used by the gateway
//!   before it queues a request).
//! - [`replica`]: a [`Replica`] runs one backend on its own thread behind a bounded queue, with
//!   dynamic batching, timeouts and load shedding.
//!
//! Inference is blocking work: backends run on their own threads, fed by a channel, never on
//! the async executor. Nothing here knows about HTTP or gRPC.

pub mod backend;
mod bf16;
mod candle_threads;
pub mod embed;
pub mod error;
pub mod generate;
mod lifecycle;
pub mod onnx;
pub mod replica;
pub mod stats;
pub mod tensor;
pub mod validate;

pub use backend::{Backend, IoSpec};
pub use error::RuntimeError;
pub use onnx::{OnnxBackend, OnnxConfig};
pub use replica::{InferRequest, Loader, Replica, ReplicaConfig, ReplicaError, ReplicaState};
pub use stats::InferStats;
pub use tensor::{DataType, Tensor, TensorData};
pub use validate::{validate, validate_outputs};

/// The message of a caught panic, for error texts.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
