//! The OpenAI-compatible API: `GET /v1/models`, `POST /v1/embeddings`,
//! `POST /v1/chat/completions` and `POST /v1/completions`, so the official SDKs work unchanged.
//!
//! `model` names a deployment (`tenant/name`, or a name in the key's tenant). Deployments that
//! run here answer from their replicas ([`embeddings`], [`chat`], [`completions`], sharing
//! [`generation`] and the response shapes in [`choices`]); external deployments of protocol `openai` are forwarded ([`upstream`]).
//! Errors have the OpenAI shape `{"error": {"message", "type", "code", "param"}}`, with our
//! stable `code`.

pub mod call_list;
pub mod chat;
pub mod choices;
pub mod completions;
pub mod embeddings;
pub mod formats;
pub mod generation;
pub mod models;
pub mod tools;
pub mod upstream;

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use maas_auth::Caller;
use maas_controller::{Endpoint, Serves};
use maas_core::ErrorCode;
use maas_core::usage::InferenceApi;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::metering::{self, Metered};
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
    Here(Arc<Endpoint>, T, Box<Metered>),
    Forwarded(Response),
}

/// What every `/v1` POST starts with: read the body, resolve the deployment its `model`
/// names for `caller`, admit the call (limits, quotas, budget), and forward it to `path` of an
/// external engine (metered here) or parse it as `T` (metered by the caller with the
/// [`Metered`] it gets).
pub(crate) async fn route<T: DeserializeOwned>(
    state: &AppState,
    caller: Caller,
    body: Body,
    path: &'static str,
    api: InferenceApi,
) -> Result<Routed<T>, ApiError> {
    let (value, model, size) = read_body(body, state.config.max_infer_bytes).await?;
    let endpoint = state.controller.resolve(&caller, &model).await?;
    let call = metering::admit(state, &caller, &endpoint, api, size, estimate(&value)).await?;
    if endpoint.serves() == Serves::Upstream {
        return Ok(Routed::Forwarded(upstream::forward(&endpoint, path, value, call).await?));
    }
    match parse(value) {
        Ok(request) => Ok(Routed::Here(endpoint, request, Box::new(call))),
        Err(e) => Err(call.fail(e).await),
    }
}

/// Tokens a request may use, estimated before it runs (input: a token per 4 bytes of text;
/// output: `max_tokens`, else 256 for generation, for each choice: `n` per prompt), reserved
/// against token limits and settled with the real counts afterwards.
fn estimate(v: &serde_json::Value) -> (i64, i64) {
    use serde_json::Value;
    fn bytes(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len(),
            Value::Array(a) => a.iter().map(bytes).sum(),
            Value::Object(o) => o.get("content").or_else(|| o.get("text")).map_or(0, bytes),
            _ => 0,
        }
    }
    let input: usize = ["messages", "prompt", "input"].iter().filter_map(|k| v.get(*k)).map(bytes).sum();
    let generates = v.get("messages").is_some() || v.get("prompt").is_some();
    let output = v
        .get("max_completion_tokens")
        .or_else(|| v.get("max_tokens"))
        .and_then(Value::as_i64)
        .unwrap_or(if generates { 256 } else { 0 });
    let prompts = match v.get("prompt") {
        Some(Value::Array(a)) => a.len().max(1),
        _ => 1,
    };
    let n = v.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    let choices = i64::try_from(n.saturating_mul(prompts as u64)).unwrap_or(i64::MAX);
    (i64::try_from(input.div_ceil(4)).unwrap_or(i64::MAX), output.max(0).saturating_mul(choices))
}

/// Reads a JSON body of at most `limit` bytes as a JSON value (kept whole for forwarding to
/// external engines), the deployment it names in `model`, and its size.
async fn read_body(body: Body, limit: usize) -> Result<(serde_json::Value, String, usize), ApiError> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::new(ErrorCode::PayloadTooLarge, format!("requests are limited to {limit} bytes")))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("the body is not valid JSON: {e}")))?;
    let model = match value.get("model") {
        Some(serde_json::Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(ApiError::invalid("model", "`model` (a deployment name) is required"));
        }
    };
    Ok((value, model, bytes.len()))
}

/// The typed request inside a JSON value.
fn parse<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("invalid request: {e}")))
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn token_estimates_cover_text_and_the_answer() {
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": "12345678"},
                          {"role": "user", "content": [{"type": "text", "text": "1234"}]}], "max_tokens": 10});
        assert_eq!(super::estimate(&chat), (3, 10));
        assert_eq!(super::estimate(&json!({"model": "m", "prompt": "hi"})), (1, 256));
        assert_eq!(super::estimate(&json!({"model": "m", "input": ["abcd", "efgh"]})), (2, 0));
        let choices = json!({"model": "m", "prompt": ["abcd", "efgh"], "n": 3, "max_tokens": 5});
        assert_eq!(super::estimate(&choices), (2, 30));
    }
}
