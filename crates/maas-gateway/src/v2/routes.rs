//! KServe v2 REST routes: health, server and model metadata, readiness, inference, and
//! Triton's model configuration (`…/config`), statistics (`…/stats`, `/v2/models/stats`) and
//! model repository (`/v2/repository/…`).
//!
//! The model name is `tenant/name` (URL-encoded as one segment or as two segments) or a bare
//! name in the caller's tenant, optionally followed by `/versions/{v}`; so the routes are one
//! wildcard parsed here. Errors use the v2 shape `{"error": "…"}`, plus our stable `code`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use maas_auth::Caller;
use maas_controller::{Endpoint, Serves};
use maas_core::ErrorCode;
use maas_core::usage::InferenceApi;
use serde_json::json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::core::{self, ModelMetadata, TensorMetadata};
use super::{codec, repository, triton, upstream};
use crate::error::ApiError;
use crate::extract::Path;
use crate::metering;
use crate::state::AppState;

const HEADER_LENGTH: &str = "inference-header-content-length";

/// An error in the v2 shape.
#[derive(Debug)]
pub struct V2Error(ApiError);

impl<E: Into<ApiError>> From<E> for V2Error {
    fn from(e: E) -> Self {
        V2Error(e.into())
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response =
            (status, axum::Json(json!({ "error": self.0.message, "code": self.0.code.as_str() }))).into_response();
        if let Some(secs) = self.0.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

type V2Result<T> = Result<T, V2Error>;

fn bad_request(message: impl Into<String>) -> V2Error {
    V2Error(ApiError::new(ErrorCode::InvalidRequest, message))
}

/// What a `/v2/models/…` path asks for.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    name: String,
    version: Option<String>,
    action: Option<&'static str>,
}

fn parse_target(rest: &str) -> Option<Target> {
    let mut segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let action = match segments.last() {
        Some(&"ready") => Some("ready"),
        Some(&"infer") => Some("infer"),
        Some(&"config") => Some("config"),
        Some(&"stats") => Some("stats"),
        _ => None,
    };
    if action.is_some() {
        segments.pop();
    }
    if segments.is_empty() && action == Some("stats") {
        // `/v2/models/stats`: every model's.
        return Some(Target { name: String::new(), version: None, action });
    }
    let mut version = None;
    if segments.len() >= 3 && segments[segments.len() - 2] == "versions" {
        version = segments.pop().map(str::to_owned);
        segments.pop();
    }
    if segments.is_empty() || segments.len() > 2 {
        return None;
    }
    Some(Target { name: segments.join("/"), version, action })
}

/// GET on a model path: metadata, readiness with `/ready`, configuration with `/config`,
/// statistics with `/stats`.
async fn model_get(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(rest): Path<String>,
) -> V2Result<Response> {
    let caller = caller?;
    let target = parse_target(&rest).ok_or_else(|| bad_request(format!("'{rest}' is not a v2 model path")))?;
    if target.action == Some("stats") {
        let name = Some(target.name.as_str()).filter(|n| !n.is_empty());
        return Ok(axum::Json(triton::stats(&state, &caller, name, target.version.as_deref()).await?).into_response());
    }
    let endpoint = core::endpoint(&state, &caller, &target.name, target.version.as_deref()).await?;
    if target.action == Some("config") {
        return Ok(axum::Json(triton::config(&endpoint)?).into_response());
    }
    if endpoint.serves() == Serves::Upstream && target.action != Some("infer") {
        return Ok(upstream::get(&endpoint, if target.action == Some("ready") { "/ready" } else { "" }).await?);
    }
    match target.action {
        None => Ok(axum::Json(core::metadata(&endpoint).await?).into_response()),
        Some("ready") if endpoint.is_ready() => Ok(StatusCode::OK.into_response()),
        Some("ready") => {
            Err(V2Error(ApiError::new(ErrorCode::ModelNotReady, format!("{} is not ready", endpoint.full_name()))))
        }
        Some(_) => Err(V2Error(ApiError::new(ErrorCode::MethodNotAllowed, "inference is POST"))),
    }
}

/// POST `…/infer`: JSON or binary tensors in, the same out.
async fn model_post(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> V2Result<Response> {
    let caller = caller?;
    let target = parse_target(&rest).ok_or_else(|| bad_request(format!("'{rest}' is not a v2 model path")))?;
    if target.action != Some("infer") {
        return Err(V2Error(ApiError::new(ErrorCode::MethodNotAllowed, "POST is only for …/infer")));
    }
    let endpoint = core::endpoint(&state, &caller, &target.name, target.version.as_deref()).await?;
    let header_len = match headers.get(HEADER_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| bad_request("Inference-Header-Content-Length is not a number"))?,
        ),
        None => None,
    };
    let limit = state.config.max_infer_bytes;
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if length.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    if endpoint.serves() == Serves::Upstream {
        // Relayed as it came: the engine answers in the client's format.
        let body = Limited::new(body, limit).collect().await.map_err(|e| unreadable(e, limit))?.to_bytes();
        let call = metering::admit(&state, &caller, &endpoint, InferenceApi::V2Rest, body.len(), (0, 0)).await?;
        let started = Instant::now();
        let result = upstream::infer(&endpoint, &headers, body).await;
        return Ok(call.respond(result, started.elapsed(), |e| V2Error(e).into_response()).await);
    }
    let (request, size) = read_request(body, header_len, length, limit).await?;
    // A request that arrived whole is metered, a malformed one too (as a failed call).
    let call = metering::admit(&state, &caller, &endpoint, InferenceApi::V2Rest, size, (0, 0)).await?;
    let started = Instant::now();
    let result = match request {
        Ok(request) => run(&state, &endpoint, request).await,
        Err(e) => Err(ApiError::new(ErrorCode::InvalidRequest, e.0)),
    };
    Ok(call.respond(result, started.elapsed(), |e| V2Error(e).into_response()).await)
}

fn too_large(limit: usize) -> V2Error {
    V2Error(ApiError::new(ErrorCode::PayloadTooLarge, format!("inference requests are limited to {limit} bytes")))
}

/// A body that could not be read: over the limit (413), or cut off by the client.
fn unreadable(e: Box<dyn std::error::Error + Send + Sync>, limit: usize) -> V2Error {
    if e.is::<LengthLimitError>() {
        return too_large(limit);
    }
    bad_request(format!("the request body could not be read: {e}"))
}

/// Reads the body (`length` bytes when the client said so, `limit` at most), decoding it as it
/// arrives (see [`codec::RequestDecoder`]). Returns the request or why it is malformed, and the
/// bytes read; the outer error is a body that could not be read. After a malformed part the
/// rest is still read, not decoded: the whole request is metered, and a client that sends all
/// of it before reading gets its 400 whatever the HTTP layer does with unread bodies.
async fn read_request(
    body: Body,
    header_len: Option<usize>,
    length: Option<usize>,
    limit: usize,
) -> V2Result<(Result<codec::DecodedRequest, codec::CodecError>, usize)> {
    let mut body = Limited::new(body, limit);
    let mut decoder = codec::RequestDecoder::new(header_len, length.unwrap_or(limit));
    let mut size = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|e| unreadable(e, limit))?.into_data() else { continue };
        size += data.len();
        if let Ok(d) = &mut decoder
            && let Err(e) = d.feed(&data)
        {
            decoder = Err(e);
        }
    }
    Ok((decoder.and_then(codec::RequestDecoder::finish), size))
}

/// Runs one decoded inference and encodes its answer (JSON, or binary tensors after JSON).
async fn run(state: &AppState, endpoint: &Endpoint, mut request: codec::DecodedRequest) -> Result<Response, ApiError> {
    // The inputs move to the runtime (a batch-8 ResNet request is 4.8 MB: no copy).
    let inputs = std::mem::take(&mut request.inputs);
    let result = core::infer(state, endpoint, request.id.as_deref(), inputs, request.outputs.clone()).await?;
    let (body, json_len) = codec::encode_response(&endpoint.full_name(), &endpoint.version.version, &request, result)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.0))?;
    let mut response = body.into_response();
    let h = response.headers_mut();
    match json_len {
        Some(n) => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    Ok(response)
}

/// `POST /v2/repository/index`: the models the key may call over v2, with their state. The
/// body (`{"ready": true}` for the ready ones only) may be empty, as tritonclient sends it.
#[utoipa::path(post, path = "/v2/repository/index", tag = "v2",
    request_body(content = Option<repository::RepositoryIndexRequest>, description = "optional; may be empty"),
    security(("api_key" = [])), responses((status = 200, body = Vec<repository::RepositoryIndexEntry>), (status = 401)))]
async fn repository_index(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    body: bytes::Bytes,
) -> V2Result<axum::Json<Vec<repository::RepositoryIndexEntry>>> {
    let caller = caller?;
    let request: repository::RepositoryIndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("the repository index request: {e}")))?
    };
    Ok(axum::Json(repository::index(&state, &caller, request.ready).await?))
}

/// `POST /v2/repository/models/{name}/load|unload`: refused (400 `unsupported_operation`);
/// deployments are loaded and unloaded through `/api/v1/deployments`.
#[utoipa::path(post, path = "/v2/repository/models/{name}/load", tag = "v2", params(("name" = String, Path)),
    security(("api_key" = [])), responses((status = 400, description = "unsupported_operation")))]
async fn repository_model(caller: Result<Caller, ApiError>, Path(rest): Path<String>) -> V2Result<Response> {
    caller?;
    let (name, action) = rest.rsplit_once('/').unwrap_or(("", rest.as_str()));
    match action {
        "load" | "unload" if !name.is_empty() => Err(V2Error(repository::model_control(name, action))),
        _ => Err(bad_request(format!("'{rest}' is not a repository path: …/{{name}}/load or …/{{name}}/unload"))),
    }
}

/// `GET /v2/health/live`: the server is up.
#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200)))]
async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: the server can serve (its store answers).
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", responses((status = 200), (status = 503)))]
async fn ready(State(state): State<AppState>) -> V2Result<StatusCode> {
    state.identity.ready().await?;
    Ok(StatusCode::OK)
}

/// `GET /v2`: server metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, body = Object)))]
async fn server_metadata() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "name": "maas", "version": env!("CARGO_PKG_VERSION"), "extensions": core::EXTENSIONS }))
}

/// Model metadata (inputs, outputs, versions, platform). `{name}` is `tenant/name`
/// (URL-encoded or as two segments) or a name in your tenant. Also `/versions/{v}`.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2", params(("name" = String, Path)),
    security(("api_key" = [])), responses((status = 200, body = ModelMetadata), (status = 404)))]
#[allow(dead_code)]
fn doc_model_metadata() {}

/// Model readiness: 200 when a replica is ready.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2", params(("name" = String, Path)),
    security(("api_key" = [])), responses((status = 200), (status = 503), (status = 404)))]
#[allow(dead_code)]
fn doc_model_ready() {}

/// Inference: v2 JSON tensors, or Triton's binary tensor extension with
/// `Inference-Header-Content-Length`. Needs an API key with the `infer` scope.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2", params(("name" = String, Path)),
    request_body(content = Object, description = "v2 inference request"),
    security(("api_key" = [])),
    responses((status = 200, description = "v2 inference response"), (status = 400), (status = 404), (status = 413),
        (status = 429, description = "queue full; Retry-After"), (status = 503), (status = 504)))]
#[allow(dead_code)]
fn doc_model_infer() {}

/// Triton's model configuration: `max_batch_size`, inputs and outputs with `TYPE_*` types and
/// `dims` (without the batch dimension when `max_batch_size` > 0), dynamic batching, replicas.
/// Also `/versions/{v}/config`.
#[utoipa::path(get, path = "/v2/models/{name}/config", tag = "v2", params(("name" = String, Path)),
    security(("api_key" = [])), responses((status = 200, body = triton::ModelConfig), (status = 404), (status = 503)))]
#[allow(dead_code)]
fn doc_model_config() {}

/// Triton's statistics of one deployment of your tenant since its replicas started: requests,
/// rows, runs, queue and compute times (cumulative ns), per batch size. Also
/// `/versions/{v}/stats`.
#[utoipa::path(get, path = "/v2/models/{name}/stats", tag = "v2", params(("name" = String, Path)),
    security(("api_key" = [])), responses((status = 200, body = triton::StatsList), (status = 403), (status = 404)))]
#[allow(dead_code)]
fn doc_model_stats() {}

/// Triton's statistics of every tensor and embeddings deployment of your tenant.
#[utoipa::path(get, path = "/v2/models/stats", tag = "v2",
    security(("api_key" = [])), responses((status = 200, body = triton::StatsList), (status = 401)))]
#[allow(dead_code)]
fn doc_all_stats() {}

#[derive(OpenApi)]
#[openapi(
    paths(
        live,
        ready,
        server_metadata,
        doc_model_metadata,
        doc_model_ready,
        doc_model_infer,
        doc_model_config,
        doc_model_stats,
        doc_all_stats,
        repository_index,
        repository_model
    ),
    components(schemas(
        ModelMetadata,
        TensorMetadata,
        repository::RepositoryIndexRequest,
        repository::RepositoryIndexEntry
    ))
)]
struct V2Doc;

pub fn router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{*rest}", get(model_get).post(model_post))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{*rest}", post(repository_model));
    router.get_openapi_mut().merge(V2Doc::openapi());
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_paths() {
        let t = |rest: &str| parse_target(rest);
        assert_eq!(t("acme/resnet"), Some(Target { name: "acme/resnet".into(), version: None, action: None }));
        assert_eq!(t("resnet/infer"), Some(Target { name: "resnet".into(), version: None, action: Some("infer") }));
        assert_eq!(
            t("acme/resnet/versions/2/ready"),
            Some(Target { name: "acme/resnet".into(), version: Some("2".into()), action: Some("ready") })
        );
        assert_eq!(
            t("resnet/versions/1"),
            Some(Target { name: "resnet".into(), version: Some("1".into()), action: None })
        );
        assert_eq!(
            t("acme/resnet/versions/2/config"),
            Some(Target { name: "acme/resnet".into(), version: Some("2".into()), action: Some("config") })
        );
        assert_eq!(t("resnet/stats"), Some(Target { name: "resnet".into(), version: None, action: Some("stats") }));
        assert_eq!(t("stats"), Some(Target { name: String::new(), version: None, action: Some("stats") }));
        assert_eq!(t("config"), None, "a configuration needs a model");
        assert_eq!(t("a/b/c"), None);
        assert_eq!(t(""), None);
    }
}
