//! `/api/v1/models`: create, search, show, update, delete models; stars; collaborators.

use axum::extract::State;
use axum::http::StatusCode;
use maas_auth::Caller;
use maas_core::identity::Role;
use maas_core::keys::Scope;
use maas_core::registry::{Collaborator, CollaboratorAccess, Model, ModelQuery, ModelSort, Visibility};
use maas_registry::ModelRight;
use maas_registry::models::ModelSpec;
use maas_store::ModelPatch;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, MaybeCaller, Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    /// Owner tenant slug.
    pub tenant: String,
    /// 1–96 of letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// e.g. `embeddings`, `text-generation`, `image-classification`, `tensor`.
    pub task: String,
    pub visibility: Visibility,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub license: Option<String>,
    /// Markdown.
    #[serde(default)]
    pub readme: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateModel {
    pub task: Option<String>,
    pub visibility: Option<Visibility>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    /// `null` clears the license.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub license: Option<Option<String>>,
    pub readme: Option<String>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Full-text search on name and description (every word must match).
    pub q: Option<String>,
    pub tag: Option<String>,
    pub task: Option<String>,
    /// Owner tenant slug.
    pub owner: Option<String>,
    /// `downloads`, `stars` or `updated` (default).
    #[param(value_type = Option<String>)]
    pub sort: Option<ModelSort>,
    /// 1-based page (default 1).
    pub page: Option<u32>,
    /// Models per page (1–100, default 20).
    pub per_page: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelPageBody {
    pub items: Vec<Model>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelPageView {
    #[serde(flatten)]
    pub model: Model,
    /// The README as Markdown.
    pub readme: String,
    /// The README rendered to sanitised HTML.
    pub readme_html: String,
    /// Whether the caller starred this model.
    pub starred: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stars {
    pub stars: i64,
    pub starred: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddCollaborator {
    pub username: String,
    pub access: CollaboratorAccess,
}

type ModelPath = Path<(String, String)>;

/// Create a model in a tenant (members and up).
#[utoipa::path(post, path = "/api/v1/models", tag = "models", request_body = CreateModel,
    security(("session" = []), ("api_key" = [])),
    responses((status = 201, body = Model), (status = 400, body = ErrorBody), (status = 403, description = "role or quota", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "name taken", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateModel>,
) -> ApiResult<(StatusCode, axum::Json<Model>)> {
    let access = state.identity.access(&caller, &req.tenant, Role::Member, Scope::Manage).await?;
    let spec = ModelSpec {
        name: req.name,
        task: req.task,
        visibility: req.visibility,
        description: req.description,
        tags: req.tags,
        license: req.license,
        readme: req.readme,
    };
    Ok((StatusCode::CREATED, axum::Json(state.registry.create_model(&caller, &access, spec).await?)))
}

/// Search the models the caller may see (anonymous callers: public models).
#[utoipa::path(get, path = "/api/v1/models", tag = "models", params(SearchQuery),
    responses((status = 200, body = ModelPageBody), (status = 400, body = ErrorBody)))]
async fn search(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Query(q): Query<SearchQuery>,
) -> ApiResult<axum::Json<ModelPageBody>> {
    let query = ModelQuery {
        q: q.q,
        tag: q.tag,
        task: q.task,
        owner: q.owner,
        sort: q.sort,
        page: q.page.unwrap_or(1).max(1),
        per_page: q.per_page.unwrap_or(20).clamp(1, maas_registry::models::MAX_PER_PAGE),
    };
    let (page, per_page) = (query.page, query.per_page);
    let found = state.registry.search(caller.as_ref(), query).await?;
    Ok(axum::Json(ModelPageBody { items: found.items, total: found.total, page, per_page }))
}

/// One model with its README (Markdown and sanitised HTML).
#[utoipa::path(get, path = "/api/v1/models/{tenant}/{name}", tag = "models",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ModelPageView), (status = 404, description = "absent or private", body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path((tenant, name)): ModelPath,
) -> ApiResult<axum::Json<ModelPageView>> {
    let access = state.registry.model_access(caller.as_ref(), &tenant, &name, ModelRight::Read).await?;
    let d = state.registry.model_details(caller.as_ref(), &access).await?;
    Ok(axum::Json(ModelPageView { model: d.model, readme: d.readme, readme_html: d.readme_html, starred: d.starred }))
}

/// Change a model (write right; visibility needs admin).
#[utoipa::path(patch, path = "/api/v1/models/{tenant}/{name}", tag = "models", request_body = UpdateModel,
    params(("tenant" = String, Path), ("name" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Model), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): ModelPath,
    Json(req): Json<UpdateModel>,
) -> ApiResult<axum::Json<Model>> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Write).await?;
    let patch = ModelPatch {
        task: req.task,
        visibility: req.visibility,
        description: req.description,
        tags: req.tags,
        license: req.license,
        readme: req.readme,
    };
    Ok(axum::Json(state.registry.update_model(&caller, &access, patch).await?))
}

/// Delete a model, its versions and files (admin right).
#[utoipa::path(delete, path = "/api/v1/models/{tenant}/{name}", tag = "models",
    params(("tenant" = String, Path), ("name" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): ModelPath,
) -> ApiResult<StatusCode> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Admin).await?;
    state.registry.delete_model(&caller, &access).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Star a model.
#[utoipa::path(put, path = "/api/v1/models/{tenant}/{name}/star", tag = "models",
    params(("tenant" = String, Path), ("name" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Stars), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn star(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): ModelPath,
) -> ApiResult<axum::Json<Stars>> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Read).await?;
    let stars = state.registry.star(&caller, &access, true).await?;
    Ok(axum::Json(Stars { stars, starred: true }))
}

/// Remove your star.
#[utoipa::path(delete, path = "/api/v1/models/{tenant}/{name}/star", tag = "models",
    params(("tenant" = String, Path), ("name" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Stars), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unstar(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): ModelPath,
) -> ApiResult<axum::Json<Stars>> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Read).await?;
    let stars = state.registry.star(&caller, &access, false).await?;
    Ok(axum::Json(Stars { stars, starred: false }))
}

/// Users granted access to this model (readers of the model may see them).
#[utoipa::path(get, path = "/api/v1/models/{tenant}/{name}/collaborators", tag = "models",
    params(("tenant" = String, Path), ("name" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Items<Collaborator>), (status = 404, body = ErrorBody)))]
async fn collaborators(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): ModelPath,
) -> ApiResult<axum::Json<Items<Collaborator>>> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Write).await?;
    Ok(axum::Json(state.registry.collaborators(&access).await?.into()))
}

/// Grant a user read or write on this model (admin right).
#[utoipa::path(post, path = "/api/v1/models/{tenant}/{name}/collaborators", tag = "models", request_body = AddCollaborator,
    params(("tenant" = String, Path), ("name" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Collaborator), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn add_collaborator(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): ModelPath,
    Json(req): Json<AddCollaborator>,
) -> ApiResult<axum::Json<Collaborator>> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Admin).await?;
    Ok(axum::Json(state.registry.set_collaborator(&caller, &access, &req.username, req.access).await?))
}

/// Revoke a collaborator.
#[utoipa::path(delete, path = "/api/v1/models/{tenant}/{name}/collaborators/{username}", tag = "models",
    params(("tenant" = String, Path), ("name" = String, Path), ("username" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_collaborator(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name, username)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let access = state.registry.model_access(Some(&caller), &tenant, &name, ModelRight::Admin).await?;
    state.registry.remove_collaborator(&caller, &access, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, search))
        .routes(routes!(show, update, delete))
        .routes(routes!(star, unstar))
        .routes(routes!(collaborators, add_collaborator))
        .routes(routes!(remove_collaborator))
}
