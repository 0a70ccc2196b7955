//! Triton's model-configuration and statistics extensions (`GET …/config`, `GET …/stats`, and
//! the gRPC `ModelConfig` / `ModelStatistics` calls), which Triton clients and tools such as
//! `perf_analyzer` read: the values both transports encode, derived from the deployment.

use std::sync::Arc;

use maas_auth::Caller;
use maas_controller::{Endpoint, Serves};
use maas_core::ErrorCode;
use maas_runtime::stats::{RunSteps, Timed};
use maas_runtime::{DataType, InferStats, IoSpec};
use serde::Serialize;
use utoipa::ToSchema;

use super::core::{not_ready, require_tensors};
use crate::error::ApiError;
use crate::state::AppState;

/// One input or output in a model configuration. With `max_batch_size` > 0, `dims` leave out
/// the batch dimension, as in Triton.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfigTensor {
    pub name: String,
    /// `TYPE_FP32`, `TYPE_STRING` (BYTES), …
    #[serde(serialize_with = "type_name")]
    #[schema(value_type = String)]
    pub data_type: DataType,
    /// `FORMAT_NONE` for inputs (no image layout is declared); absent for outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    pub dims: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DynamicBatching {
    pub preferred_batch_size: Vec<i32>,
    pub max_queue_delay_microseconds: u64,
}

/// Where a deployment's replicas run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum InstanceKind {
    #[serde(rename = "KIND_CPU")]
    Cpu,
    /// The deployment reserves GPUs.
    #[serde(rename = "KIND_GPU")]
    Gpu,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstanceGroup {
    pub name: String,
    pub kind: InstanceKind,
    pub count: i32,
}

/// A deployment's model configuration in Triton's terms (`model_config.proto`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelConfig {
    pub name: String,
    pub platform: &'static str,
    pub backend: &'static str,
    /// Rows one request may batch up to; 0 when the deployment does not batch (then `dims`
    /// are the full shapes, a dynamic first dimension included).
    pub max_batch_size: i32,
    pub input: Vec<ConfigTensor>,
    pub output: Vec<ConfigTensor>,
    /// Present when the deployment batches requests together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_batching: Option<DynamicBatching>,
    pub instance_group: Vec<InstanceGroup>,
}

/// Triton's name of a tensor type and its `DataType` enum value.
pub fn triton_type(dtype: DataType) -> (&'static str, i32) {
    let name = match dtype {
        DataType::Bool => "TYPE_BOOL",
        DataType::Uint8 => "TYPE_UINT8",
        DataType::Uint16 => "TYPE_UINT16",
        DataType::Uint32 => "TYPE_UINT32",
        DataType::Uint64 => "TYPE_UINT64",
        DataType::Int8 => "TYPE_INT8",
        DataType::Int16 => "TYPE_INT16",
        DataType::Int32 => "TYPE_INT32",
        DataType::Int64 => "TYPE_INT64",
        DataType::Fp16 => "TYPE_FP16",
        DataType::Fp32 => "TYPE_FP32",
        DataType::Fp64 => "TYPE_FP64",
        DataType::Bytes => "TYPE_STRING",
    };
    // Triton numbers the types 1… in the order of `DataType::ALL` (0 is TYPE_INVALID).
    let number = DataType::ALL.iter().position(|d| *d == dtype).map_or(0, |i| i as i32 + 1);
    (name, number)
}

fn type_name<S: serde::Serializer>(dtype: &DataType, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(triton_type(*dtype).0)
}

/// The configuration of a ready tensor or embeddings deployment.
pub fn config(endpoint: &Endpoint) -> Result<ModelConfig, ApiError> {
    require_tensors(endpoint)?;
    if endpoint.serves() == Serves::Upstream {
        return Err(external(endpoint, "configuration"));
    }
    let (inputs, outputs) = endpoint.io().ok_or_else(|| not_ready(endpoint))?;
    let batching = &endpoint.spec.batching;
    let dynamic = inputs.iter().chain(&outputs).all(|io| io.shape.first() == Some(&-1));
    let batches = dynamic && !inputs.is_empty() && batching.max_batch_size > 1;
    let tensors = |io: Vec<IoSpec>, format: Option<&'static str>| {
        io.into_iter()
            .map(|s| ConfigTensor {
                name: s.name,
                data_type: s.dtype,
                format,
                dims: if batches { s.shape[1..].to_vec() } else { s.shape },
            })
            .collect()
    };
    let gpu = endpoint.spec.resources.gpu.is_some_and(|g| g > 0);
    let (platform, backend) = match endpoint.serves() {
        Serves::Embeddings => ("sentence_transformers", "sentence_transformers"),
        _ => ("onnxruntime_onnx", "onnxruntime"),
    };
    Ok(ModelConfig {
        name: endpoint.full_name(),
        platform,
        backend,
        max_batch_size: if batches { i32::try_from(batching.max_batch_size).unwrap_or(i32::MAX) } else { 0 },
        input: tensors(inputs, Some("FORMAT_NONE")),
        output: tensors(outputs, None),
        dynamic_batching: batches.then(|| DynamicBatching {
            preferred_batch_size: Vec::new(),
            max_queue_delay_microseconds: batching.max_queue_delay_us,
        }),
        instance_group: vec![InstanceGroup {
            name: endpoint.full_name(),
            kind: if gpu { InstanceKind::Gpu } else { InstanceKind::Cpu },
            count: i32::try_from(endpoint.replica_count()).unwrap_or(i32::MAX),
        }],
    })
}

fn external(endpoint: &Endpoint, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedOperation,
        format!("{} is an external engine: ask the engine for its {what}", endpoint.full_name()),
    )
}

/// A count and its cumulative nanoseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
pub struct StatDuration {
    pub count: u64,
    pub ns: u64,
}

impl From<Timed> for StatDuration {
    fn from(t: Timed) -> Self {
        Self { count: t.count, ns: t.ns }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InferenceStats {
    pub success: StatDuration,
    pub fail: StatDuration,
    pub queue: StatDuration,
    pub compute_input: StatDuration,
    pub compute_infer: StatDuration,
    pub compute_output: StatDuration,
    /// Always zero: there is no response cache.
    pub cache_hit: StatDuration,
    pub cache_miss: StatDuration,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchStats {
    pub batch_size: u64,
    pub compute_input: StatDuration,
    pub compute_infer: StatDuration,
    pub compute_output: StatDuration,
}

/// What one deployment has served since its replicas started (Triton's `ModelStatistics`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelStats {
    pub name: String,
    pub version: String,
    /// When the last successful request finished, in ms since the Unix epoch (0: none yet).
    pub last_inference: u64,
    /// Rows answered (a request of batch 8 counts 8).
    pub inference_count: u64,
    /// Model runs (a dynamic batch counts once).
    pub execution_count: u64,
    pub inference_stats: InferenceStats,
    pub batch_stats: Vec<BatchStats>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsList {
    pub model_stats: Vec<ModelStats>,
}

fn model_stats(endpoint: &Endpoint, stats: InferStats) -> ModelStats {
    let steps = |s: RunSteps| (s.compute_input.into(), s.compute_infer.into(), s.compute_output.into());
    let (compute_input, compute_infer, compute_output) = steps(stats.steps);
    ModelStats {
        name: endpoint.full_name(),
        version: endpoint.version.version.clone(),
        last_inference: stats.last_inference_ms,
        inference_count: stats.inference_count,
        execution_count: stats.execution_count,
        inference_stats: InferenceStats {
            success: stats.success.into(),
            fail: stats.fail.into(),
            queue: stats.queue.into(),
            compute_input,
            compute_infer,
            compute_output,
            cache_hit: StatDuration::default(),
            cache_miss: StatDuration::default(),
        },
        batch_stats: stats
            .batches
            .into_iter()
            .map(|(batch_size, s)| {
                let (compute_input, compute_infer, compute_output) = steps(s);
                BatchStats { batch_size, compute_input, compute_infer, compute_output }
            })
            .collect(),
    }
}

/// Statistics of the deployment `name` (with `version`, when given), or of every tensor and
/// embeddings deployment of the caller's tenants when `name` is `None`. Another tenant's
/// deployment is refused even when its model is public: the numbers are its owner's.
pub async fn stats(
    state: &AppState,
    caller: &Caller,
    name: Option<&str>,
    version: Option<&str>,
) -> Result<StatsList, ApiError> {
    let owned = state.controller.owned(caller).await?;
    let Some(name) = name else {
        let model_stats =
            owned.iter().filter_map(|e| e.stats().map(|s| model_stats(e, s))).collect::<Vec<ModelStats>>();
        return Ok(StatsList { model_stats });
    };
    let endpoint: Arc<Endpoint> = super::core::endpoint(state, caller, name, version).await?;
    require_tensors(&endpoint)?;
    if !owned.iter().any(|e| e.full_name() == endpoint.full_name()) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("the statistics of {} are shown to its own tenant only", endpoint.full_name()),
        ));
    }
    let stats = endpoint.stats().ok_or_else(|| external(&endpoint, "statistics"))?;
    Ok(StatsList { model_stats: vec![model_stats(&endpoint, stats)] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triton_type_names_and_numbers() {
        // Numbers from Triton's model_config.proto.
        assert_eq!(triton_type(DataType::Bool), ("TYPE_BOOL", 1));
        assert_eq!(triton_type(DataType::Int32), ("TYPE_INT32", 8));
        assert_eq!(triton_type(DataType::Fp32), ("TYPE_FP32", 11));
        assert_eq!(triton_type(DataType::Bytes), ("TYPE_STRING", 13));
        for (i, d) in DataType::ALL.into_iter().enumerate() {
            let (name, number) = triton_type(d);
            assert_eq!(number, i as i32 + 1);
            assert!(name == "TYPE_STRING" || name == format!("TYPE_{}", d.as_str()));
        }
    }
}
