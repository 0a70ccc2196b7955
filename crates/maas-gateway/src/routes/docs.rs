//! `GET /api/v1/openapi.json`: the OpenAPI document of this API, itself included.

use std::sync::OnceLock;

use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The OpenAPI 3.1 document of every route.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
async fn openapi_json() -> impl IntoResponse {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    axum::Json(DOC.get_or_init(|| serde_json::to_value(crate::openapi()).unwrap_or_default()).clone())
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}
