//! The `Backend` trait: one loaded model, run synchronously on a replica's worker thread.

use crate::tensor::DataType;
use crate::{RuntimeError, Tensor};

/// One input or output of a loaded model. `-1` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<i64>,
}

/// A loaded model. Implementations are created on (and used from) the replica's own thread;
/// `infer` may block for as long as the model takes.
pub trait Backend: Send {
    /// `onnx`, …, for logs and metadata.
    fn platform(&self) -> &'static str;
    fn inputs(&self) -> &[IoSpec];
    fn outputs(&self) -> &[IoSpec];
    /// Runs the model on validated inputs; returns the requested outputs (all when empty).
    fn infer(&mut self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, RuntimeError>;
}
