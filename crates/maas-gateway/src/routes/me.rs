//! `GET /api/v1/me`: who am I, and where.

use axum::extract::State;
use maas_auth::Caller;
use maas_core::identity::{TenantView, User};
use maas_core::keys::ApiKey;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user: User,
    /// The tenants the caller belongs to, with roles (a key sees only its own tenant).
    pub tenants: Vec<TenantView>,
    /// The API key used for this call, if any.
    pub api_key: Option<ApiKey>,
}

/// The caller, their tenants and roles.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<MeResponse>> {
    let tenants = state
        .identity
        .memberships(&caller)
        .await?
        .into_iter()
        .map(|m| TenantView { tenant: m.tenant, role: Some(m.role) })
        .collect();
    Ok(axum::Json(MeResponse { user: caller.user().clone(), tenants, api_key: caller.api_key().cloned() }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}
