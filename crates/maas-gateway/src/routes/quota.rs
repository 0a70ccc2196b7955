//! `/api/v1/tenants/{tenant}/quotas` (also `/quota`): a tenant's quotas (models, storage,
//! GPU-hours, daily calls and tokens) and tenant-wide rate limits, with what it uses.

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
    let usage = state.registry.set_quota(&caller, &access, quota).await?;
    state.metering.policy.forget(access.tenant.id);
    Ok(axum::Json(usage))
}

/// The tenant's quotas and rate limits, and what it uses (owners and members read them).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/quotas", tag = "tenants",
    params(("tenant" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = QuotaUsage), (status = 404, body = ErrorBody)))]
async fn show_quotas(
    state: State<AppState>,
    caller: Caller,
    tenant: Path<String>,
) -> ApiResult<axum::Json<QuotaUsage>> {
    show(state, caller, tenant).await
}

/// Set the tenant's quotas and rate limits (platform admins). `null` falls back to the server default.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/quotas", tag = "tenants", request_body = Quota,
    params(("tenant" = String, Path)),
    security(("session" = [])),
    responses((status = 200, body = QuotaUsage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_quotas(
    state: State<AppState>,
    caller: Caller,
    tenant: Path<String>,
    quota: Json<Quota>,
) -> ApiResult<axum::Json<QuotaUsage>> {
    set(state, caller, tenant, quota).await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, set)).routes(routes!(show_quotas, set_quotas))
}
