//! The OpenAI-compatible API: `GET /v1/models`, `POST /v1/embeddings`,
//! `POST /v1/chat/completions` and `POST /v1/completions`, so the official SDKs work unchanged.
//!
//! `model` names a deployment (`tenant/name`, or a name in the key's tenant). Deployments that
//! run here answer from their replicas ([`embeddings`], [`chat`], [`completions`], sharing
//! [`generation`]); external deployments of protocol `openai` are forwarded ([`upstream`]).
//! Errors have the OpenAI shape `{"error": {"message", "type", "code", "param"}}`, with our
//! stable `code`.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod generation;
pub mod models;
pub mod upstream;

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use maas_auth::Caller;
use maas_controller::{Endpoint, Serves};
use maas_core::ErrorCode;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::state::AppState;

/// Every `/v1` route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(models::router())
        .merge(embeddings::router())
        .merge(chat::router())
        .merge(completions::router())
}

/// Where a `/v1` call goes: to a deployment served here (with the parsed request), or it was
/// forwarded to the external engine behind the deployment (with the engine's answer).
pub(crate) enum Routed<T> {
    Here(Arc<Endpoint>, T),
    Forwarded(Response),
}

/// What every `/v1` POST starts with: read the body, resolve the deployment its `model`
/// names for `caller`, and forward it to `path` of an external engine or parse it as `T`.
pub(crate) async fn route<T: DeserializeOwned>(
    state: &AppState,
    caller: Caller,
    body: Body,
    path: &'static str,
) -> Result<Routed<T>, ApiError> {
    let (value, model) = read_body(body, state.config.max_infer_bytes).await?;
    let endpoint = state.controller.resolve(&caller, &model).await?;
    if endpoint.serves() == Serves::Upstream {
        return Ok(Routed::Forwarded(upstream::forward(&endpoint, path, value).await?));
    }
    Ok(Routed::Here(endpoint, parse(value)?))
}

/// Reads a JSON body of at most `limit` bytes as a JSON value (kept whole for forwarding to
/// external engines) and the deployment it names in `model`.
async fn read_body(body: Body, limit: usize) -> Result<(serde_json::Value, String), ApiError> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::new(ErrorCode::PayloadTooLarge, format!("requests are limited to {limit} bytes")))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("the body is not valid JSON: {e}")))?;
    let model = match value.get("model") {
        Some(serde_json::Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(
                ApiError::new(ErrorCode::InvalidRequest, "`model` (a deployment name) is required").with_param("model")
            );
        }
    };
    Ok((value, model))
}

/// The typed request inside a JSON value.
fn parse<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("invalid request: {e}")))
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}
