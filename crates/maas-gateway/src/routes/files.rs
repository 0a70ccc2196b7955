//! Version files: streamed, resumable uploads (`PUT`), downloads with ranges (`GET`/`HEAD`),
//! upload status, removal from drafts. The file path is the rest of the URL, so these routes
//! are registered by hand with a `{*path}` wildcard and documented with `{path}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt as _;
use maas_auth::Caller;
use maas_core::registry::ModelFile;
use maas_registry::ModelRight;
use maas_registry::uploads::{UploadOutcome, UploadRequest, UploadStatus};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{MaybeCaller, Path};
use crate::state::AppState;

type FilePath = Path<(String, String, String, String)>;

/// An unfinished upload's progress (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadProgress {
    pub committed: u64,
    pub total: Option<u64>,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Upload a file into a draft version, streamed. Whole files need no other header; send
/// `X-Content-Sha256` to have the bytes verified. To resume an interrupted upload, ask
/// `GET …/uploads/{path}` for `committed` and send the rest with
/// `Content-Range: bytes {committed}-{last}/{total}`. A partial request answers 202 with the
/// committed offset (also in a `Range: bytes=0-{committed-1}` header); the final one 201.
/// `X-Maas-Reuse: true` with `X-Content-Sha256` and an empty body attaches content the tenant
/// already stores without sending it.
#[utoipa::path(put, path = "/api/v1/models/{tenant}/{name}/versions/{version}/files/{path}", tag = "files",
    params(("tenant" = String, Path), ("name" = String, Path), ("version" = String, Path),
        ("path" = String, Path, description = "file path inside the version, may contain '/'"),
        ("Content-Range" = Option<String>, Header, description = "bytes START-END/TOTAL (or /*) to upload a part"),
        ("X-Content-Sha256" = Option<String>, Header, description = "hex SHA-256 of the whole file, verified"),
        ("X-Maas-Reuse" = Option<bool>, Header, description = "attach stored content by X-Content-Sha256")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    security(("session" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "complete and verified", body = ModelFile),
        (status = 202, description = "bytes committed, more expected", body = UploadProgress),
        (status = 400, description = "bad path, checksum mismatch, bad Content-Range", body = ErrorBody),
        (status = 403, description = "right or storage quota", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "published version, wrong resume offset, or concurrent upload", body = ErrorBody),
        (status = 413, body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name, version, path)): FilePath,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Write).await?;
    let req = UploadRequest {
        path,
        content_range: header_str(&headers, "content-range").map(str::to_owned),
        content_length: header_str(&headers, "content-length").and_then(|v| v.parse().ok()),
        sha256: header_str(&headers, "x-content-sha256").map(str::to_owned),
        reuse: header_str(&headers, "x-maas-reuse").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
    };
    let outcome = state.registry.upload(&caller, &access, &version, req, body.into_data_stream()).await?;
    Ok(match outcome {
        UploadOutcome::Complete(file) => (StatusCode::CREATED, axum::Json(file)).into_response(),
        UploadOutcome::Partial { committed, total } => {
            let mut response = (StatusCode::ACCEPTED, axum::Json(UploadProgress { committed, total })).into_response();
            if committed > 0
                && let Ok(v) = HeaderValue::from_str(&format!("bytes=0-{}", committed - 1))
            {
                response.headers_mut().insert(header::RANGE, v);
            }
            response
        }
    })
}

/// Download a file (published versions for readers, drafts for writers). Supports a single
/// `Range`; answers with `ETag` (the SHA-256), `Content-Length`, `Accept-Ranges`. Each
/// download that starts at byte 0 counts once.
#[utoipa::path(get, path = "/api/v1/models/{tenant}/{name}/versions/{version}/files/{path}", tag = "files",
    params(("tenant" = String, Path), ("name" = String, Path), ("version" = String, Path),
        ("path" = String, Path, description = "file path inside the version"),
        ("Range" = Option<String>, Header, description = "bytes=START-END")),
    responses(
        (status = 200, description = "the file", content_type = "application/octet-stream"),
        (status = 206, description = "the requested range", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody), (status = 416, body = ErrorBody)))]
async fn download(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    method: Method,
    Path((tenant, name, version, path)): FilePath,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let access = state.registry.model_access(caller.as_ref(), &tenant, &name, ModelRight::Read).await?;
    let range = header_str(&headers, "range");
    let d = state.registry.download(&access, &version, &path, range, method == Method::GET).await?;
    Ok(file_response(&d.file, d.range, d.stream, None))
}

/// A streamed file response with the headers clients rely on.
pub(crate) fn file_response(
    file: &ModelFile,
    range: Option<std::ops::Range<u64>>,
    stream: maas_artifacts::ByteStream,
    extra: Option<HeaderMap>,
) -> Response {
    let size = u64::try_from(file.size).unwrap_or(0);
    let (status, len) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, size),
    };
    let body = Body::from_stream(stream.map_err(|e| std::io::Error::other(e.to_string())));
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
        h.insert(header::ETAG, etag);
    }
    if let Ok(sha) = HeaderValue::from_str(&file.sha256) {
        h.insert("x-content-sha256", sha);
    }
    if let Some(r) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1)))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if let Some(extra) = extra {
        h.extend(extra);
    }
    response
}

/// Remove a file from a draft version (write right).
#[utoipa::path(delete, path = "/api/v1/models/{tenant}/{name}/versions/{version}/files/{path}", tag = "files",
    params(("tenant" = String, Path), ("name" = String, Path), ("version" = String, Path), ("path" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name, version, path)): FilePath,
) -> ApiResult<StatusCode> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Write).await?;
    state.registry.delete_file(&caller, &access, &version, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where an upload stands: `committed` bytes (resume from there) or `complete`.
#[utoipa::path(get, path = "/api/v1/models/{tenant}/{name}/versions/{version}/uploads/{path}", tag = "files",
    params(("tenant" = String, Path), ("name" = String, Path), ("version" = String, Path), ("path" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = UploadStatus), (status = 404, description = "nothing uploaded under that path", body = ErrorBody)))]
async fn upload_status(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name, version, path)): FilePath,
) -> ApiResult<axum::Json<UploadStatus>> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Write).await?;
    Ok(axum::Json(state.registry.upload_status(&access, &version, &path).await?))
}

#[derive(OpenApi)]
#[openapi(paths(upload, download, delete_file, upload_status), components(schemas(UploadProgress, UploadStatus)))]
struct FilesDoc;

pub fn router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .route(
            "/api/v1/models/{tenant}/{name}/versions/{version}/files/{*path}",
            get(download).put(upload).delete(delete_file),
        )
        .route("/api/v1/models/{tenant}/{name}/versions/{version}/uploads/{*path}", get(upload_status));
    router.get_openapi_mut().merge(FilesDoc::openapi());
    router
}
