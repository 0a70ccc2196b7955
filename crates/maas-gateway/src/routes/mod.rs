//! Routes, one file per resource. Each file's `router()` registers its handlers together
//! with their OpenAPI descriptions, so the document cannot omit a route that exists.

pub mod audit;
pub mod auth;
pub mod billing;
pub mod deployments;
pub mod docs;
pub mod files;
pub mod health;
pub mod hub;
pub mod keys;
pub mod me;
pub mod members;
pub mod models;
pub mod quota;
pub mod tenants;
pub mod usage;
pub mod versions;

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// A list response. Lists are wrapped so that paging fields can be added without breaking
/// clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

impl<T> From<Vec<T>> for Items<T> {
    fn from(items: Vec<T>) -> Self {
        Self { items }
    }
}

/// Every route of the management API.
pub fn all() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::router())
        .merge(docs::router())
        .merge(auth::router())
        .merge(me::router())
        .merge(tenants::router())
        .merge(members::router())
        .merge(keys::router())
        .merge(audit::router())
        .merge(quota::router())
        .merge(usage::router())
        .merge(billing::router())
        .merge(models::router())
        .merge(versions::router())
        .merge(files::router())
        .merge(hub::router())
        .merge(deployments::router())
        .merge(crate::v2::routes::router())
        .merge(crate::openai::router())
}
