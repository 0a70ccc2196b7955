//! The Hugging Face Hub download API, so that `huggingface_hub` (`snapshot_download`,
//! `hf_hub_download`), `transformers` and `sentence-transformers` load models from the
//! platform unmodified with `HF_ENDPOINT` set to it. Repos are `{tenant}/{name}`, revisions
//! are version names, `main` (newest published) or the version's commit hash. Every file is
//! presented as an LFS file whose oid is its SHA-256. Tokens are API keys.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maas_core::ErrorCode;
use maas_core::registry::{Model, ModelFile, ModelVersion, Visibility};
use maas_registry::ModelRight;
use maas_registry::versions::commit_of;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{MaybeCaller, Path};
use crate::routes::files::file_response;
use crate::state::AppState;

/// An error in the Hub's dialect: our JSON body plus the `X-Error-Code` header that
/// `huggingface_hub` turns into `RepositoryNotFoundError`, `RevisionNotFoundError` or
/// `EntryNotFoundError`.
#[derive(Debug)]
struct HubError(ApiError);

impl<E: Into<ApiError>> From<E> for HubError {
    fn from(e: E) -> Self {
        HubError(e.into())
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let hub_code = match self.0.code {
            ErrorCode::ModelNotFound => Some("RepoNotFound"),
            ErrorCode::VersionNotFound => Some("RevisionNotFound"),
            ErrorCode::FileNotFound => Some("EntryNotFound"),
            _ => None,
        };
        let message = HeaderValue::from_str(&self.0.message).ok();
        let mut response = self.0.into_response();
        if let Some(code) = hub_code {
            response.headers_mut().insert("x-error-code", HeaderValue::from_static(code));
        }
        if let Some(message) = message {
            response.headers_mut().insert("x-error-message", message);
        }
        response
    }
}

type HubResult<T> = Result<T, HubError>;

/// Size of the Git LFS pointer file the Hub would store for an LFS file.
const LFS_POINTER_SIZE: u64 = 134;

/// A file in a Hub tree listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct TreeEntry {
    /// Always `file`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub path: String,
    pub size: i64,
    /// The blob id (here: the SHA-256).
    pub oid: String,
    #[schema(value_type = Object)]
    pub lfs: Value,
}

fn lfs(file: &ModelFile) -> Value {
    json!({ "oid": file.sha256, "size": file.size, "pointerSize": LFS_POINTER_SIZE })
}

fn model_info(model: &Model, version: &ModelVersion, files: &[ModelFile]) -> Value {
    json!({
        "_id": model.id,
        "id": model.full_name(),
        "modelId": model.full_name(),
        "author": model.owner,
        "sha": commit_of(version),
        "private": model.visibility == Visibility::Private,
        "gated": false,
        "disabled": false,
        "downloads": model.downloads,
        "likes": model.stars,
        "tags": model.tags,
        "pipeline_tag": model.task,
        "library_name": version.format,
        "createdAt": model.created_at,
        "lastModified": version.published_at.unwrap_or(version.created_at),
        "siblings": files.iter().map(|f| json!({
            "rfilename": f.path, "size": f.size, "blobId": f.sha256,
            "lfs": { "sha256": f.sha256, "size": f.size, "pointerSize": LFS_POINTER_SIZE },
        })).collect::<Vec<_>>(),
        "cardData": {},
        "usedStorage": files.iter().map(|f| f.size).sum::<i64>(),
    })
}

async fn info(
    state: &AppState,
    caller: Option<&maas_auth::Caller>,
    owner: &str,
    name: &str,
    revision: &str,
) -> HubResult<axum::Json<Value>> {
    let access = state.registry.model_access(caller, owner, name, ModelRight::Read).await?;
    let (version, files) = state.registry.revision(&access, revision).await?;
    Ok(axum::Json(model_info(&access.model, &version, &files)))
}

/// Model info at `main` (Hub `model_info`).
#[utoipa::path(get, path = "/api/models/{tenant}/{name}", tag = "hub",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "Hub ModelInfo", body = Object), (status = 404, body = ErrorBody)))]
async fn model(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
) -> HubResult<axum::Json<Value>> {
    info(&state, caller.as_ref(), &owner, &name, "main").await
}

/// Model info at a revision (Hub `model_info(revision=…)`, used by `snapshot_download`).
#[utoipa::path(get, path = "/api/models/{tenant}/{name}/revision/{revision}", tag = "hub",
    params(("tenant" = String, Path), ("name" = String, Path), ("revision" = String, Path)),
    responses((status = 200, description = "Hub ModelInfo", body = Object), (status = 404, body = ErrorBody)))]
async fn model_at(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path((owner, name, revision)): Path<(String, String, String)>,
) -> HubResult<axum::Json<Value>> {
    info(&state, caller.as_ref(), &owner, &name, &revision).await
}

/// The files of a revision (Hub `list_repo_tree`), optionally under a folder.
#[utoipa::path(get, path = "/api/models/{tenant}/{name}/tree/{revision}", tag = "hub",
    params(("tenant" = String, Path), ("name" = String, Path), ("revision" = String, Path)),
    responses((status = 200, body = Vec<TreeEntry>), (status = 404, body = ErrorBody)))]
async fn tree(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path((owner, name, revision)): Path<(String, String, String)>,
) -> HubResult<axum::Json<Vec<TreeEntry>>> {
    tree_under(&state, caller.as_ref(), &owner, &name, &revision, "").await
}

async fn tree_sub(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path((owner, name, revision, folder)): Path<(String, String, String, String)>,
) -> HubResult<axum::Json<Vec<TreeEntry>>> {
    tree_under(&state, caller.as_ref(), &owner, &name, &revision, &folder).await
}

async fn tree_under(
    state: &AppState,
    caller: Option<&maas_auth::Caller>,
    owner: &str,
    name: &str,
    revision: &str,
    folder: &str,
) -> HubResult<axum::Json<Vec<TreeEntry>>> {
    let access = state.registry.model_access(caller, owner, name, ModelRight::Read).await?;
    let (_, files) = state.registry.revision(&access, revision).await?;
    let prefix = if folder.is_empty() { String::new() } else { format!("{}/", folder.trim_end_matches('/')) };
    let entries = files
        .iter()
        .filter(|f| f.path.starts_with(&prefix))
        .map(|f| TreeEntry { kind: "file", path: f.path.clone(), size: f.size, oid: f.sha256.clone(), lfs: lfs(f) })
        .collect();
    Ok(axum::Json(entries))
}

/// Download a file (Hub `hf_hub_download`): `HEAD` for metadata (`X-Repo-Commit`,
/// `X-Linked-Etag`, `X-Linked-Size`), `GET` for the bytes (single `Range` supported).
#[utoipa::path(get, path = "/{tenant}/{name}/resolve/{revision}/{path}", tag = "hub",
    params(("tenant" = String, Path), ("name" = String, Path), ("revision" = String, Path),
        ("path" = String, Path, description = "file path, may contain '/'")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
        (status = 206, description = "a range of the file"), (status = 404, body = ErrorBody)))]
async fn resolve(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    method: Method,
    Path((owner, name, revision, path)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> HubResult<Response> {
    let access = state.registry.model_access(caller.as_ref(), &owner, &name, ModelRight::Read).await?;
    let (version, _) = state.registry.revision(&access, &revision).await?;
    let range = headers.get("range").and_then(|v| v.to_str().ok());
    let d = state.registry.download(&access, &version.version, &path, range, method == Method::GET).await?;
    let mut extra = HeaderMap::new();
    let text = |s: &str| HeaderValue::from_str(s).ok();
    for (name, value) in [
        ("x-repo-commit", text(&commit_of(&version))),
        ("x-linked-etag", text(&format!("\"{}\"", d.file.sha256))),
        ("x-linked-size", Some(HeaderValue::from(u64::try_from(d.file.size).unwrap_or(0)))),
    ] {
        if let Some(value) = value {
            extra.insert(name, value);
        }
    }
    Ok(file_response(&d.file, d.range, d.stream, Some(extra)))
}

#[derive(OpenApi)]
#[openapi(paths(model, model_at, tree, resolve), components(schemas(TreeEntry)))]
struct HubDoc;

pub fn router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .route("/api/models/{tenant}/{name}", get(model))
        .route("/api/models/{tenant}/{name}/revision/{revision}", get(model_at))
        .route("/api/models/{tenant}/{name}/tree/{revision}", get(tree))
        .route("/api/models/{tenant}/{name}/tree/{revision}/{*path}", get(tree_sub))
        .route("/{tenant}/{name}/resolve/{revision}/{*path}", get(resolve));
    router.get_openapi_mut().merge(HubDoc::openapi());
    router
}
