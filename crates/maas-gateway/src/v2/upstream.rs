//! Forwarding v2 calls to an external KServe v2 engine (a deployment of format `external`,
//! protocol `kserve_v2`): metadata, readiness and inference go to
//! `{url}/v2/models/{upstream model}…` over REST with the upstream's key. A REST call's answer
//! (JSON or binary tensors) comes back as it is; a gRPC call's tensors go to the engine as
//! binary REST tensors and its answer is decoded back into tensors ([`infer_tensors`]).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maas_controller::spec::UpstreamProtocol;
use maas_controller::{Endpoint, Upstream};
use maas_core::ErrorCode;
use maas_runtime::Tensor;

use super::codec;
use super::core::{ModelMetadata, TensorMetadata};
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
    relay(&up, response).await
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
    relay(&up, response).await
}

/// Runs decoded tensors on the engine: one binary v2 request, its answer decoded to tensors
/// (`outputs` empty: all of them).
pub async fn infer_tensors(
    endpoint: &Endpoint,
    id: Option<&str>,
    inputs: Vec<Tensor>,
    outputs: &[String],
) -> Result<Vec<Tensor>, ApiError> {
    let up = kserve(endpoint)?;
    let (body, header_len) =
        codec::encode_request(id, inputs, outputs).map_err(|e| ApiError::new(ErrorCode::Internal, e.0))?;
    let path = format!("/v2/models/{}/infer", up.model);
    let request = up
        .request(reqwest::Method::POST, &path)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(HEADER_LENGTH, header_len)
        .body(body);
    let response = success(&up, up.send(request).await?).await?;
    let header_len = match response.headers().get(HEADER_LENGTH) {
        Some(v) => {
            Some(v.to_str().ok().and_then(|s| s.parse().ok()).ok_or_else(|| bad_answer(&up, "a bad header length"))?)
        }
        None => None,
    };
    let body = up.body(response).await?;
    codec::decode_response(body, header_len).map_err(|e| bad_answer(&up, &e.0))
}

/// The engine's metadata of the model, under our deployment's name and version.
pub async fn metadata(endpoint: &Endpoint) -> Result<ModelMetadata, ApiError> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        platform: String,
        #[serde(default)]
        inputs: Vec<Io>,
        #[serde(default)]
        outputs: Vec<Io>,
    }
    #[derive(serde::Deserialize)]
    struct Io {
        name: String,
        datatype: String,
        shape: Vec<i64>,
    }
    let up = kserve(endpoint)?;
    let path = format!("/v2/models/{}", up.model);
    let response = success(&up, up.send(up.request(reqwest::Method::GET, &path)).await?).await?;
    let meta: Meta = serde_json::from_slice(&up.body(response).await?)
        .map_err(|e| bad_answer(&up, &format!("unreadable metadata ({e})")))?;
    let io = |list: Vec<Io>| -> Result<Vec<TensorMetadata>, ApiError> {
        list.into_iter()
            .map(|t| {
                let dtype = maas_runtime::DataType::parse(&t.datatype)
                    .ok_or_else(|| bad_answer(&up, &format!("the unknown datatype '{}'", t.datatype)))?;
                Ok(TensorMetadata { name: t.name, datatype: dtype.as_str(), shape: t.shape })
            })
            .collect()
    };
    Ok(ModelMetadata {
        name: endpoint.full_name(),
        versions: vec![endpoint.version.version.clone()],
        platform: meta.platform,
        inputs: io(meta.inputs)?,
        outputs: io(meta.outputs)?,
    })
}

/// Whether the engine says the model is ready (`GET …/ready` answers 200).
pub async fn ready(endpoint: &Endpoint) -> Result<bool, ApiError> {
    let up = kserve(endpoint)?;
    let path = format!("/v2/models/{}/ready", up.model);
    Ok(up.send(up.request(reqwest::Method::GET, &path)).await?.status().is_success())
}

/// The response when it is a success, else the engine's error.
async fn success(up: &Upstream, response: reqwest::Response) -> Result<reqwest::Response, ApiError> {
    if response.status().is_success() { Ok(response) } else { Err(ApiError::from_upstream(up, response).await) }
}

fn bad_answer(up: &Upstream, what: &str) -> ApiError {
    ApiError::new(ErrorCode::UpstreamError, format!("the engine at {} answered with {what}", up.url("")))
}

/// The engine's status, tensor headers and body.
async fn relay(up: &Upstream, response: reqwest::Response) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let keep: Vec<(&str, HeaderValue)> = [header::CONTENT_TYPE.as_str(), HEADER_LENGTH]
        .into_iter()
        .filter_map(|name| Some((name, HeaderValue::from_bytes(response.headers().get(name)?.as_bytes()).ok()?)))
        .collect();
    let body = up.body(response).await?;
    let status = if status.is_server_error() { StatusCode::BAD_GATEWAY } else { status };
    let mut out = (status, body).into_response();
    for (name, value) in keep {
        if let Ok(name) = header::HeaderName::from_bytes(name.as_bytes()) {
            out.headers_mut().insert(name, value);
        }
    }
    Ok(out)
}
