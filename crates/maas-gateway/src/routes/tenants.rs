//! `/api/v1/tenants`: organisations; the tenants a caller can see.

use axum::extract::State;
use axum::http::StatusCode;
use maas_auth::Caller;
use maas_core::identity::{Role, Tenant, TenantView};
use maas_core::keys::Scope;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// URL name: 2–39 lowercase letters, digits and hyphens.
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// Create an organisation; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    security(("session" = [])),
    responses(
        (status = 201, body = Tenant),
        (status = 400, body = ErrorBody),
        (status = 409, description = "slug taken", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateTenant>,
) -> ApiResult<(StatusCode, axum::Json<Tenant>)> {
    let tenant = state.identity.create_organization(&caller, &req.slug, &req.name).await?;
    Ok((StatusCode::CREATED, axum::Json(tenant)))
}

/// The caller's tenants (every tenant for a platform admin).
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants",
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Items<TenantView>), (status = 401, body = ErrorBody)))]
async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Items<TenantView>>> {
    caller.require_scope(Scope::Read)?;
    Ok(axum::Json(state.identity.list_tenants(&caller).await?.into()))
}

/// One tenant, with the caller's role in it.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant slug")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<TenantView>> {
    let access = state.identity.access(&caller, &tenant, Role::Viewer, Scope::Read).await?;
    Ok(axum::Json(TenantView { tenant: access.tenant, role: Some(access.role) }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(show))
}
