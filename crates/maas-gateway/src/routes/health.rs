//! Liveness and readiness probes.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` (live) or `ready`.
    pub status: &'static str,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Status)))]
async fn healthz() -> axum::Json<Status> {
    axum::Json(Status { status: "ok" })
}

/// The metadata store and the session store both answer.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Status),
    (status = 503, description = "a backing service is unreachable", body = ErrorBody),
))]
async fn readyz(State(state): State<AppState>) -> ApiResult<axum::Json<Status>> {
    state.identity.ready().await?;
    Ok(axum::Json(Status { status: "ready" }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}
