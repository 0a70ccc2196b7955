//! Model runtimes and the replicas that run them.
//!
//! - [`tensor`]: named, typed, shaped tensors in the KServe v2 data types.
//! - [`backend`]: the [`Backend`] trait a model runtime implements (load once, then infer
//!   synchronously); ONNX Runtime is the first implementation.
//!
//! Inference is blocking work: backends run on their own threads, fed by a channel, never on
//! the async executor. Nothing here knows about HTTP or gRPC.

pub mod backend;
pub mod error;
pub mod tensor;

pub use backend::{Backend, IoSpec};
pub use error::RuntimeError;
pub use tensor::{DataType, Tensor, TensorData};
