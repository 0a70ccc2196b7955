//! The v2 operations both transports (REST in [`super::routes`], gRPC in `super::grpc`) call:
//! resolving a model name for a caller, metadata, readiness, inference. Transport code only
//! decodes, calls these, and encodes; errors are [`ApiError`]s that each transport maps once.
//! External engines are served here too, as tensors ([`super::upstream`]); the REST routes
//! relay their bytes untouched instead, which keeps the client's JSON or binary format.

use std::sync::Arc;

use maas_auth::Caller;
use maas_controller::{Endpoint, Serves};
use maas_core::ErrorCode;
use maas_runtime::Tensor;
use serde::Serialize;

use super::upstream;
use crate::error::ApiError;
use crate::state::AppState;

/// The protocol extensions server metadata lists (`GET /v2`, gRPC `ServerMetadata`).
pub const EXTENSIONS: [&str; 4] = ["binary_tensor_data", "model_configuration", "model_repository", "statistics"];

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// The endpoint `name` (`tenant/name` or a name in the caller's tenant) at `version`.
pub async fn endpoint(
    state: &AppState,
    caller: &Caller,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<Endpoint>, ApiError> {
    let endpoint = state.controller.resolve(caller, name).await?;
    if let Some(v) = version.filter(|v| !v.is_empty())
        && *v != endpoint.version.version
    {
        return Err(ApiError::new(
            ErrorCode::VersionNotFound,
            format!("{} serves version {}, not {v}", endpoint.full_name(), endpoint.version.version),
        ));
    }
    Ok(endpoint)
}

pub(super) fn not_ready(endpoint: &Endpoint) -> ApiError {
    ApiError::new(
        ErrorCode::ModelNotReady,
        format!("{} is still loading or has no ready replica", endpoint.full_name()),
    )
}

/// Refuses text generation, which the OpenAI API serves.
pub(super) fn require_tensors(endpoint: &Endpoint) -> Result<(), ApiError> {
    if endpoint.serves() != Serves::Generation {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::UnsupportedOperation,
        format!("{} serves text generation: call /v1/chat/completions or /v1/completions", endpoint.full_name()),
    ))
}

/// Whether the endpoint can serve now: a ready replica here, or the engine's own answer.
pub async fn ready(endpoint: &Endpoint) -> Result<bool, ApiError> {
    match endpoint.serves() {
        Serves::Upstream => upstream::ready(endpoint).await,
        _ => Ok(endpoint.is_ready()),
    }
}

/// Inputs, outputs, versions and platform of a ready endpoint.
pub async fn metadata(endpoint: &Endpoint) -> Result<ModelMetadata, ApiError> {
    require_tensors(endpoint)?;
    if endpoint.serves() == Serves::Upstream {
        return upstream::metadata(endpoint).await;
    }
    let platform = match endpoint.serves() {
        Serves::Embeddings => "sentence_transformers",
        _ => "onnxruntime_onnx",
    };
    let (inputs, outputs) = endpoint.io().ok_or_else(|| not_ready(endpoint))?;
    let meta = |io: Vec<maas_runtime::IoSpec>| {
        io.into_iter().map(|s| TensorMetadata { name: s.name, datatype: s.dtype.as_str(), shape: s.shape }).collect()
    };
    Ok(ModelMetadata {
        name: endpoint.full_name(),
        versions: vec![endpoint.version.version.clone()],
        platform: platform.to_owned(),
        inputs: meta(inputs),
        outputs: meta(outputs),
    })
}

/// Validates `inputs` and `outputs` against the model's signature, then runs them. An
/// external engine gets them as they are (it checks its own signature); `id` goes with them.
pub async fn infer(
    state: &AppState,
    endpoint: &Endpoint,
    id: Option<&str>,
    inputs: Vec<Tensor>,
    outputs: Vec<String>,
) -> Result<Vec<Tensor>, ApiError> {
    require_tensors(endpoint)?;
    if endpoint.serves() == Serves::Upstream {
        return upstream::infer_tensors(endpoint, id, inputs, &outputs).await;
    }
    let (input_spec, output_spec) = endpoint.io().ok_or_else(|| not_ready(endpoint))?;
    maas_runtime::validate(&inputs, &input_spec)?;
    maas_runtime::validate_outputs(&outputs, &output_spec)?;
    Ok(state.controller.infer(endpoint, inputs, outputs).await?)
}
