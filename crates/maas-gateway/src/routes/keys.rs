//! `/api/v1/tenants/{tenant}/keys`: API keys. The secret is in the create response only.

use axum::extract::State;
use axum::http::StatusCode;
use maas_auth::Caller;
use maas_core::identity::Role;
use maas_core::keys::{ApiKey, RateLimits, Scope};
use maas_core::{ApiKeyId, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// Any of `read`, `infer`, `manage` (`manage` needs the admin role).
    pub scopes: Vec<Scope>,
    /// Optional expiry (RFC 3339, in the future).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// The key's own rate limits (the tenant's apply as well).
    #[serde(default)]
    pub limits: RateLimits,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKeyResponse {
    /// The secret. It is shown here once and cannot be retrieved again.
    pub key: String,
    #[serde(flatten)]
    pub details: ApiKey,
}

/// Create an API key; the response is the only place the secret appears.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/keys", tag = "keys", request_body = CreateKey,
    params(("tenant" = String, Path, description = "tenant slug")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 201, body = CreatedKeyResponse), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Json(req): Json<CreateKey>,
) -> ApiResult<(StatusCode, axum::Json<CreatedKeyResponse>)> {
    let access = state.identity.access(&caller, &tenant, Role::Member, Scope::Manage).await?;
    let created =
        state.identity.create_key(&caller, &access, &req.name, &req.scopes, req.expires_at, req.limits).await?;
    let body = CreatedKeyResponse { key: created.secret, details: created.key };
    Ok((StatusCode::CREATED, axum::Json(body)))
}

/// The tenant's keys, without secrets (members see their own, admins all).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/keys", tag = "keys",
    params(("tenant" = String, Path, description = "tenant slug")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Items<ApiKey>), (status = 404, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<Items<ApiKey>>> {
    let access = state.identity.access(&caller, &tenant, Role::Member, Scope::Read).await?;
    Ok(axum::Json(state.identity.list_keys(&caller, &access).await?.into()))
}

/// Revoke a key; it fails from the very next request on.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/keys/{id}", tag = "keys",
    params(("tenant" = String, Path, description = "tenant slug"), ("id" = String, Path, format = Uuid)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 204), (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, ApiKeyId)>,
) -> ApiResult<StatusCode> {
    let access = state.identity.access(&caller, &tenant, Role::Member, Scope::Manage).await?;
    state.identity.revoke_key(&caller, &access, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a key's rate limits (tenant admins); they apply from the next request on.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/keys/{id}/limits", tag = "keys", request_body = RateLimits,
    params(("tenant" = String, Path, description = "tenant slug"), ("id" = String, Path, format = Uuid)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = ApiKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn set_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, ApiKeyId)>,
    Json(limits): Json<RateLimits>,
) -> ApiResult<axum::Json<ApiKey>> {
    let access = state.identity.access(&caller, &tenant, Role::Admin, Scope::Manage).await?;
    Ok(axum::Json(state.identity.set_key_limits(&caller, &access, id, limits).await?))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(revoke)).routes(routes!(set_limits))
}
