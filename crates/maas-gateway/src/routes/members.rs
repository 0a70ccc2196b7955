//! `/api/v1/tenants/{tenant}/members`: who belongs to a tenant, with which role.

use axum::extract::State;
use axum::http::StatusCode;
use maas_auth::Caller;
use maas_core::identity::{Member, Role};
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
pub struct AddMember {
    pub username: String,
    pub role: Role,
}

/// The tenant's members.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/members", tag = "members",
    params(("tenant" = String, Path, description = "tenant slug")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Items<Member>), (status = 404, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<Items<Member>>> {
    let access = state.identity.access(&caller, &tenant, Role::Viewer, Scope::Read).await?;
    Ok(axum::Json(state.identity.members(&access).await?.into()))
}

/// Add a member (201) or change a member's role (200). Needs admin; owner to grant owner.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/members", tag = "members", request_body = AddMember,
    params(("tenant" = String, Path, description = "tenant slug")),
    security(("session" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "added", body = Member),
        (status = 200, description = "role changed", body = Member),
        (status = 403, body = ErrorBody),
        (status = 404, description = "tenant or user not found", body = ErrorBody),
        (status = 409, description = "would leave no owner", body = ErrorBody),
    ))]
async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Json(req): Json<AddMember>,
) -> ApiResult<(StatusCode, axum::Json<Member>)> {
    let access = state.identity.access(&caller, &tenant, Role::Admin, Scope::Manage).await?;
    let (member, added) = state.identity.set_member(&caller, &access, &req.username, req.role).await?;
    Ok((if added { StatusCode::CREATED } else { StatusCode::OK }, axum::Json(member)))
}

/// Remove a member (or leave the tenant).
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/members/{username}", tag = "members",
    params(("tenant" = String, Path, description = "tenant slug"), ("username" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "would leave no owner", body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, username)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let access = state.identity.access(&caller, &tenant, Role::Viewer, Scope::Manage).await?;
    state.identity.remove_member(&caller, &access, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, add)).routes(routes!(remove))
}
