//! Forwarding v2 REST calls to an external KServe v2 engine (a deployment of format
//! `external`, protocol `kserve_v2`): metadata, readiness and inference go to
//! `{url}/v2/models/{upstream model}…` with the upstream's key; the engine's answer (JSON or
//! binary tensors) comes back as it is.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maas_controller::spec::UpstreamProtocol;
use maas_controller::{Endpoint, Upstream};
use maas_core::ErrorCode;

use crate::error::ApiError;

const HEADER_LENGTH: &str = "inference-header-content-length";

fn kserve(endpoint: &Endpoint) -> Result<std::sync::Arc<Upstream>, ApiError> {
    match endpoint.upstream() {
        Some(up) if up.protocol == UpstreamProtocol::KserveV2 => Ok(up),
        Some(_) => Err(ApiError::new(
            ErrorCode::UnsupportedOperation,
            format!("{} is an external OpenAI-compatible engine; call it through /v1", endpoint.full_name()),
        )),
        None => Err(ApiError::new(ErrorCode::ModelNotReady, format!("{} is not started yet", endpoint.full_name()))),
    }
}

/// `GET` metadata (`suffix` empty) or readiness (`/ready`) from the engine.
pub async fn get(endpoint: &Endpoint, suffix: &str) -> Result<Response, ApiError> {
    let up = kserve(endpoint)?;
    let path = format!("/v2/models/{}{suffix}", up.model);
    let response = up.send(up.request(reqwest::Method::GET, &path)).await?;
    relay(response).await
}

/// `POST …/infer` with the request's body and tensor headers.
pub async fn infer(endpoint: &Endpoint, headers: &HeaderMap, body: bytes::Bytes) -> Result<Response, ApiError> {
    let up = kserve(endpoint)?;
    let path = format!("/v2/models/{}/infer", up.model);
    let mut request = up.request(reqwest::Method::POST, &path).body(body);
    for name in [header::CONTENT_TYPE.as_str(), HEADER_LENGTH] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    let response = up.send(request).await?;
    relay(response).await
}

/// The engine's status, tensor headers and body.
async fn relay(response: reqwest::Response) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let keep: Vec<(&str, HeaderValue)> = [header::CONTENT_TYPE.as_str(), HEADER_LENGTH]
        .into_iter()
        .filter_map(|name| Some((name, HeaderValue::from_bytes(response.headers().get(name)?.as_bytes()).ok()?)))
        .collect();
    let body = response
        .bytes()
        .await
        .map_err(|e| ApiError::new(ErrorCode::UpstreamError, format!("reading the engine's answer failed: {e}")))?;
    let status = if status.is_server_error() { StatusCode::BAD_GATEWAY } else { status };
    let mut out = (status, body).into_response();
    for (name, value) in keep {
        if let Ok(name) = header::HeaderName::from_bytes(name.as_bytes()) {
            out.headers_mut().insert(name, value);
        }
    }
    Ok(out)
}
