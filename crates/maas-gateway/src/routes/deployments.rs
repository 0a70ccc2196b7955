//! `/api/v1/deployments`: serve a published model version as an endpoint `{tenant}/{name}`.
//! Changes return at once (202) with the status to poll; loading runs in the background.

use axum::extract::State;
use axum::http::StatusCode;
use maas_auth::Caller;
use maas_controller::DeploymentSpec;
use maas_controller::service::{DeploymentChange, DeploymentRequest, DeploymentStatus};
use maas_core::identity::Role;
use maas_core::keys::Scope;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// Tenant that owns the endpoint.
    pub tenant: String,
    /// Endpoint name: calls use `tenant/name` (or `name` within the tenant).
    pub name: String,
    /// `tenant/name` of the model.
    pub model: String,
    /// A published version.
    pub version: String,
    /// Replicas (1–16, default 1).
    pub replicas: Option<i64>,
    /// Batching, timeouts, resources, autoscaling, pricing.
    #[serde(flatten)]
    pub spec: DeploymentSpec,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeDeployment {
    /// A new published version: the deployment restarts on it.
    pub version: Option<String>,
    pub replicas: Option<i64>,
    /// Replaces all serving settings.
    pub spec: Option<DeploymentSpec>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Tenant slug.
    pub tenant: String,
}

/// Deploy a published ONNX version. Answers 202 with the status; poll it until `ready`.
#[utoipa::path(post, path = "/api/v1/deployments", tag = "deployments", request_body = CreateDeployment,
    security(("session" = []), ("api_key" = [])),
    responses((status = 202, body = DeploymentStatus), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "name taken", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateDeployment>,
) -> ApiResult<(StatusCode, axum::Json<DeploymentStatus>)> {
    let access = state.identity.access(&caller, &req.tenant, Role::Member, Scope::Manage).await?;
    let request = DeploymentRequest {
        name: req.name,
        model: req.model,
        version: req.version,
        replicas: req.replicas.unwrap_or(1),
        spec: req.spec,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(state.controller.create(&caller, &access, request).await?)))
}

/// A tenant's deployments with their status.
#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments", params(ListQuery),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Items<DeploymentStatus>), (status = 404, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Items<DeploymentStatus>>> {
    let access = state.identity.access(&caller, &q.tenant, Role::Viewer, Scope::Read).await?;
    Ok(axum::Json(state.controller.list(&access).await?.into()))
}

/// A deployment's status: each replica's state, readiness.
#[utoipa::path(get, path = "/api/v1/deployments/{tenant}/{name}", tag = "deployments",
    params(("tenant" = String, Path), ("name" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = DeploymentStatus), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<DeploymentStatus>> {
    let access = state.identity.access(&caller, &tenant, Role::Viewer, Scope::Read).await?;
    Ok(axum::Json(state.controller.show(&access, &name).await?))
}

/// Change version, replicas or settings; answers 202 and restarts in the background.
#[utoipa::path(patch, path = "/api/v1/deployments/{tenant}/{name}", tag = "deployments", request_body = ChangeDeployment,
    params(("tenant" = String, Path), ("name" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 202, body = DeploymentStatus), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
    Json(req): Json<ChangeDeployment>,
) -> ApiResult<(StatusCode, axum::Json<DeploymentStatus>)> {
    let access = state.identity.access(&caller, &tenant, Role::Member, Scope::Manage).await?;
    let change = DeploymentChange { version: req.version, replicas: req.replicas, spec: req.spec };
    Ok((StatusCode::ACCEPTED, axum::Json(state.controller.change(&caller, &access, &name, change).await?)))
}

/// Stop serving and delete the deployment.
#[utoipa::path(delete, path = "/api/v1/deployments/{tenant}/{name}", tag = "deployments",
    params(("tenant" = String, Path), ("name" = String, Path)),
    security(("session" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let access = state.identity.access(&caller, &tenant, Role::Member, Scope::Manage).await?;
    state.controller.delete(&caller, &access, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(show, change, delete))
}
