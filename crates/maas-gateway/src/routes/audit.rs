//! `GET /api/v1/tenants/{tenant}/audit`: the tenant's audit log (owners and admins).

use axum::extract::State;
use maas_auth::Caller;
use maas_core::AuditId;
use maas_core::audit::AuditEvent;
use maas_core::identity::Role;
use maas_core::keys::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries per page (1–500, default 100).
    pub limit: Option<u32>,
    /// Return entries older than this entry id (the previous page's `next_before`).
    #[param(value_type = Option<String>, format = Uuid)]
    pub before: Option<AuditId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<AuditEvent>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub next_before: Option<AuditId>,
}

/// Who did what, when and from where, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/audit", tag = "audit",
    params(("tenant" = String, Path, description = "tenant slug"), AuditQuery),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<axum::Json<AuditPage>> {
    let access = state.identity.access(&caller, &tenant, Role::Admin, Scope::Read).await?;
    let limit = q.limit.unwrap_or(100);
    let items = state.identity.audit_log(&access, limit, q.before).await?;
    let full = u32::try_from(items.len()).unwrap_or(u32::MAX) >= limit.clamp(1, maas_auth::service::MAX_AUDIT_PAGE);
    let next_before = if full { items.last().map(|e| e.id) } else { None };
    Ok(axum::Json(AuditPage { items, next_before }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}
