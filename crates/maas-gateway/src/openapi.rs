//! The OpenAPI document: generated from the route annotations, served at
//! `/api/v1/openapi.json`.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "MaaS management API", description = "Model-as-a-Service: identity, tenants, API keys, audit, model registry."),
    modifiers(&Security),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Registration, sessions, the current caller"),
        (name = "tenants", description = "Organisations"),
        (name = "members", description = "Tenant membership and roles"),
        (name = "keys", description = "API keys"),
        (name = "audit", description = "Audit log"),
        (name = "models", description = "Model registry: models, search, stars, collaborators"),
        (name = "versions", description = "Model versions: drafts and publishing"),
        (name = "hub", description = "Hugging Face Hub download API (for huggingface_hub, transformers)"),
        (name = "deployments", description = "Deployments: model versions served as endpoints"),
        (name = "v2", description = "KServe Open Inference Protocol v2 (REST)"),
        (name = "files", description = "Version files: streamed, resumable uploads and ranged downloads"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::extract::SESSION_COOKIE))),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("maas_…").build()),
        );
    }
}
