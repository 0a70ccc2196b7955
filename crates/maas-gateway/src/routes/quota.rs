//! `/api/v1/tenants/{tenant}/quota`: a tenant's limits and usage.

use axum::extract::State;
use maas_auth::Caller;
use maas_core::identity::Role;
use maas_core::keys::Scope;
use maas_core::registry::Quota;
use maas_registry::QuotaUsage;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// The tenant's quota (models, storage bytes) and what it uses.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/quota", tag = "tenants",
    params(("tenant" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = QuotaUsage), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<QuotaUsage>> {
    let access = state.identity.access(&caller, &tenant, Role::Viewer, Scope::Read).await?;
    Ok(axum::Json(state.registry.usage(access.store()).await?))
}

/// Set the tenant's quota (platform admins). `null` falls back to the server default.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/quota", tag = "tenants", request_body = Quota,
    params(("tenant" = String, Path)),
    security(("session" = [])),
    responses((status = 200, body = QuotaUsage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Json(quota): Json<Quota>,
) -> ApiResult<axum::Json<QuotaUsage>> {
    let access = state.identity.access(&caller, &tenant, Role::Viewer, Scope::Manage).await?;
    Ok(axum::Json(state.registry.set_quota(&caller, &access, quota).await?))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, set))
}
