//! Deployments in the store: [`TenantDeployments`] (one tenant's endpoints) and
//! [`DeploymentCatalog`] (every deployment, for the controller that runs them).

use async_trait::async_trait;
use maas_core::{DeploymentId, ModelId, TenantId, Timestamp, VersionId};

use crate::Result;

/// A deployment row. `spec` holds the serving settings (resources, batching, autoscaling,
/// pricing) as JSON; the controller and the gateway give it its meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRow {
    pub id: DeploymentId,
    pub tenant_id: TenantId,
    pub name: String,
    pub model_id: ModelId,
    pub version_id: VersionId,
    pub replicas: i64,
    pub spec: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A deployment to create or the new state of one.
#[derive(Debug, Clone)]
pub struct DeploymentWrite {
    pub name: String,
    pub model_id: ModelId,
    pub version_id: VersionId,
    pub replicas: i64,
    pub spec: serde_json::Value,
}

/// Every deployment of every tenant (the controller's view).
#[async_trait]
pub trait DeploymentCatalog: Send + Sync {
    async fn all_deployments(&self) -> Result<Vec<DeploymentRow>>;
}

/// One tenant's deployments. Every query binds the handle's tenant id.
#[async_trait]
pub trait TenantDeployments: Send + Sync {
    async fn create_deployment(&self, new: DeploymentWrite) -> Result<DeploymentRow>;
    async fn deployment(&self, name: &str) -> Result<DeploymentRow>;
    async fn deployments(&self) -> Result<Vec<DeploymentRow>>;
    async fn update_deployment(&self, id: DeploymentId, write: DeploymentWrite) -> Result<DeploymentRow>;
    async fn delete_deployment(&self, id: DeploymentId) -> Result<()>;
}
