//! `GET /v1/models[/{model}]`: the deployments the caller may call, as OpenAI model objects.

use axum::extract::State;
use axum::routing::get;
use maas_auth::Caller;
use maas_controller::Endpoint;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;
use crate::state::AppState;

/// A deployment, as OpenAI describes a model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelObject {
    /// `tenant/name`: the `model` to send.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds of the deployment's creation.
    pub created: i64,
    /// The deployment's tenant.
    pub owned_by: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

fn object(e: &Endpoint) -> ModelObject {
    ModelObject {
        id: e.full_name(),
        object: "model",
        created: e.row.created_at.timestamp(),
        owned_by: e.tenant.clone(),
    }
}

/// The deployments your key may call: your tenant's and those serving public models.
#[utoipa::path(get, path = "/v1/models", tag = "openai", security(("api_key" = [])),
    responses((status = 200, body = ModelList), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
) -> Result<axum::Json<ModelList>, ApiError> {
    let endpoints = state.controller.callable(&caller?).await?;
    Ok(axum::Json(ModelList { object: "list", data: endpoints.iter().map(|e| object(e)).collect() }))
}

/// One deployment by name (`tenant/name`, or a name in your tenant).
#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai", params(("model" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = ModelObject), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn doc_retrieve() {}

#[derive(OpenApi)]
#[openapi(paths(doc_retrieve), components(schemas(ModelObject)))]
struct RetrieveDoc;

async fn retrieve(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(model): Path<String>,
) -> Result<axum::Json<ModelObject>, ApiError> {
    let endpoint = state.controller.resolve(&caller?, &model).await?;
    Ok(axum::Json(object(&endpoint)))
}

pub fn router() -> OpenApiRouter<AppState> {
    // A wildcard: the name holds a `/`; documented through `doc_retrieve`.
    let mut router = OpenApiRouter::new().routes(routes!(list)).route("/v1/models/{*model}", get(retrieve));
    router.get_openapi_mut().merge(RetrieveDoc::openapi());
    router
}
