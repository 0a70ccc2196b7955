//! `/api/v1/models/{tenant}/{name}/versions`: drafts, listing, publishing.

use axum::extract::State;
use axum::http::StatusCode;
use maas_auth::Caller;
use maas_core::registry::{ModelFile, ModelFormat, ModelVersion};
use maas_registry::ModelRight;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, MaybeCaller, Path};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    /// 1–64 of letters, digits, `.`, `_`, `+`, `-` (not `main`).
    pub version: String,
    pub format: ModelFormat,
    /// Free-form JSON object: metrics, dataset references, parent version…
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    #[serde(flatten)]
    pub version: ModelVersion,
    pub files: Vec<ModelFile>,
}

type VersionPath = Path<(String, String, String)>;

/// Create a draft version (write right).
#[utoipa::path(post, path = "/api/v1/models/{tenant}/{name}/versions", tag = "versions", request_body = CreateVersion,
    params(("tenant" = String, Path), ("name" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 201, body = ModelVersion), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "version exists", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
    Json(req): Json<CreateVersion>,
) -> ApiResult<(StatusCode, axum::Json<ModelVersion>)> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Write).await?;
    let metadata = req.metadata.unwrap_or(serde_json::Value::Null);
    let version = state.registry.create_version(&caller, &access, &req.version, req.format, metadata).await?;
    Ok((StatusCode::CREATED, axum::Json(version)))
}

/// Versions, newest first (drafts only for writers).
#[utoipa::path(get, path = "/api/v1/models/{tenant}/{name}/versions", tag = "versions",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Items<ModelVersion>), (status = 404, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<Items<ModelVersion>>> {
    let access = state.registry.model_access(caller.as_ref(), &tenant, &name, ModelRight::Read).await?;
    Ok(axum::Json(state.registry.versions(&access).await?.into()))
}

/// One version with its files and signature; `main` is the newest published version.
#[utoipa::path(get, path = "/api/v1/models/{tenant}/{name}/versions/{version}", tag = "versions",
    params(("tenant" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = VersionView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path((tenant, name, version)): VersionPath,
) -> ApiResult<axum::Json<VersionView>> {
    let access = state.registry.model_access(caller.as_ref(), &tenant, &name, ModelRight::Read).await?;
    let (version, files) = state.registry.version(&access, &version).await?;
    Ok(axum::Json(VersionView { version, files }))
}

/// Delete a version (drafts: write right; published: admin).
#[utoipa::path(delete, path = "/api/v1/models/{tenant}/{name}/versions/{version}", tag = "versions",
    params(("tenant" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name, version)): VersionPath,
) -> ApiResult<StatusCode> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Write).await?;
    state.registry.delete_version(&caller, &access, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Validate the files, read the signature from them, and freeze the version.
#[utoipa::path(post, path = "/api/v1/models/{tenant}/{name}/versions/{version}/publish", tag = "versions",
    params(("tenant" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = ModelVersion), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "already published", body = ErrorBody),
        (status = 422, description = "a file is malformed or missing; the message names it", body = ErrorBody)))]
async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name, version)): VersionPath,
) -> ApiResult<axum::Json<ModelVersion>> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Write).await?;
    Ok(axum::Json(state.registry.publish(&caller, &access, &version).await?))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(show, delete)).routes(routes!(publish))
}
