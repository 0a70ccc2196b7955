//! Deployment management: create, show, list, change, delete. Changes take effect in the
//! background: the call returns at once with the status to poll.

use std::sync::Arc;

use maas_auth::{Caller, TenantAccess};
use maas_core::identity::Role;
use maas_core::registry::{ModelFormat, VersionState};
use maas_registry::ModelRight;
use maas_store::{DeploymentRow, DeploymentWrite, StoreError};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::endpoint::{Endpoint, ReplicaStatus, materialize};
use crate::runtime::Runtime;
use crate::{Controller, ControllerError, DeploymentSpec};

/// Most replicas of one deployment in process.
pub const MAX_REPLICAS: i64 = 16;

/// A deployment to create.
#[derive(Debug, Clone)]
pub struct DeploymentRequest {
    pub name: String,
    /// `tenant/name` of the model.
    pub model: String,
    pub version: String,
    pub replicas: i64,
    pub spec: DeploymentSpec,
}

/// Changes to a deployment; `None` keeps the current value. A new version restarts it.
#[derive(Debug, Clone, Default)]
pub struct DeploymentChange {
    pub version: Option<String>,
    pub replicas: Option<i64>,
    pub spec: Option<DeploymentSpec>,
}

/// A deployment and how it is doing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeploymentStatus {
    /// `tenant/name`: the endpoint name for inference calls.
    pub endpoint: String,
    pub tenant: String,
    pub name: String,
    /// `tenant/name` of the model.
    pub model: String,
    pub version: String,
    /// Desired replicas.
    pub replicas: i64,
    pub spec: DeploymentSpec,
    /// `loading`, `ready` (at least one replica ready) or `failed`.
    pub state: &'static str,
    pub ready: bool,
    pub replica_status: Vec<ReplicaStatus>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: maas_core::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: maas_core::Timestamp,
}

impl DeploymentStatus {
    pub fn of(e: &Endpoint) -> Self {
        let replica_status = e.status();
        let ready = e.is_ready();
        let state = if ready {
            "ready"
        } else if !replica_status.is_empty() && replica_status.iter().all(|r| r.state == "failed") {
            "failed"
        } else {
            "loading"
        };
        Self {
            endpoint: e.full_name(),
            tenant: e.tenant.clone(),
            name: e.row.name.clone(),
            model: e.model.full_name(),
            version: e.version.version.clone(),
            replicas: e.row.replicas,
            spec: e.spec.clone(),
            state,
            ready,
            replica_status,
            created_at: e.row.created_at,
            updated_at: e.row.updated_at,
        }
    }
}

fn validate(name: &str, replicas: i64, spec: &DeploymentSpec) -> Result<(), ControllerError> {
    maas_registry::validate::model_name(name).map_err(|e| ControllerError::InvalidRequest(e.to_string()))?;
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        return Err(ControllerError::InvalidRequest(format!("replicas must be 1 to {MAX_REPLICAS}")));
    }
    spec.validate()
}

/// An `external` version needs the engine's address in `spec.external`; other versions
/// run here and must not have one.
fn check_external(format: ModelFormat, spec: &DeploymentSpec) -> Result<(), ControllerError> {
    match (format == ModelFormat::External, spec.external.is_some()) {
        (true, false) => Err(ControllerError::InvalidSpec(
            "an external version needs `external: {url, protocol}` saying where the engine runs".into(),
        )),
        (false, true) => Err(ControllerError::InvalidSpec(format!(
            "`external` is only for versions of format external; this one is {format}",
            format = format.as_str()
        ))),
        _ => Ok(()),
    }
}

impl Controller {
    /// Creates a deployment of a published version of one of the tenant's models.
    pub async fn create(
        &self,
        caller: &Caller,
        access: &TenantAccess,
        req: DeploymentRequest,
    ) -> Result<DeploymentStatus, ControllerError> {
        access.require_role(Role::Member)?;
        validate(&req.name, req.replicas, &req.spec)?;
        let (owner, model_name) = req
            .model
            .split_once('/')
            .ok_or_else(|| ControllerError::InvalidRequest("model must be 'tenant/name'".into()))?;
        if owner != access.tenant.slug {
            return Err(ControllerError::InvalidRequest(format!(
                "deploy a model of tenant '{}' (deploying another tenant's model is not supported yet)",
                access.tenant.slug
            )));
        }
        let model = self.registry.model_access(Some(caller), owner, model_name, ModelRight::Read).await?;
        let (version, _) = self.registry.version(&model, &req.version).await?;
        if version.state != VersionState::Published {
            return Err(ControllerError::NotPublished(req.version));
        }
        check_external(version.format, &req.spec)?;
        let spec = req.spec.to_stored();
        let row = access
            .store()
            .create_deployment(DeploymentWrite {
                name: req.name.clone(),
                model_id: model.model.id,
                version_id: version.id,
                replicas: req.replicas,
                spec,
            })
            .await?;
        let details = json!({ "model": req.model, "version": req.version, "replicas": req.replicas });
        maas_auth::service::record(
            caller,
            access.store(),
            "deployment.create",
            &format!("{}/{}", access.tenant.slug, req.name),
            details,
        )
        .await?;
        let endpoint = self.launch(&access.tenant.slug, row).await?;
        Ok(DeploymentStatus::of(&endpoint))
    }

    /// Starts serving a stored deployment: prepares the files in the background, then the
    /// replicas load the model on their own threads.
    pub(crate) async fn launch(&self, tenant: &str, row: DeploymentRow) -> Result<Arc<Endpoint>, ControllerError> {
        let store = self.store.scoped(row.tenant_id);
        let model = store.model_with_id(row.model_id).await?;
        let version = store
            .versions(row.model_id)
            .await?
            .into_iter()
            .find(|v| v.id == row.version_id)
            .ok_or_else(|| ControllerError::NotPublished(row.version_id.to_string()))?;
        let files = store.files(version.id).await?;
        let spec: DeploymentSpec = serde_json::from_value(row.spec.clone()).unwrap_or_default();
        let runtime = Runtime::of(&version, &model.task, &files)?;
        let endpoint = Arc::new(Endpoint::new(tenant.to_owned(), row, model, version, spec, runtime));
        if let Some(old) = self.endpoints_mut().insert((tenant.to_owned(), endpoint.row.name.clone()), endpoint.clone())
        {
            old.stop();
        }
        let dir = self.config.cache_dir.join(endpoint.version.id.to_string());
        let (artifacts, config, e) = (self.artifacts.clone(), self.config.clone(), endpoint.clone());
        let replicas = usize::try_from(e.row.replicas).unwrap_or(1);
        tokio::spawn(async move {
            match materialize(artifacts.as_ref(), &files, &dir).await.and_then(|()| e.start(&dir, &config, replicas)) {
                Ok(()) => {}
                Err(err) => {
                    tracing::warn!(endpoint = %e.full_name(), error = %err, "preparing the model files failed");
                    e.fail(err.to_string());
                }
            }
        });
        Ok(endpoint)
    }

    pub(crate) fn endpoint(&self, tenant: &str, name: &str) -> Result<Arc<Endpoint>, ControllerError> {
        self.endpoints()
            .get(&(tenant.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| ControllerError::NotFound(format!("{tenant}/{name}")))
    }

    pub async fn show(&self, access: &TenantAccess, name: &str) -> Result<DeploymentStatus, ControllerError> {
        access.store().deployment(name).await.map_err(|e| match e {
            StoreError::NotFound(_) => ControllerError::NotFound(format!("{}/{name}", access.tenant.slug)),
            e => e.into(),
        })?;
        Ok(DeploymentStatus::of(self.endpoint(&access.tenant.slug, name)?.as_ref()))
    }

    pub async fn list(&self, access: &TenantAccess) -> Result<Vec<DeploymentStatus>, ControllerError> {
        let rows = access.store().deployments().await?;
        Ok(rows
            .iter()
            .filter_map(|r| self.endpoint(&access.tenant.slug, &r.name).ok())
            .map(|e| DeploymentStatus::of(&e))
            .collect())
    }

    /// Changes version, replicas or settings; the deployment restarts with them.
    pub async fn change(
        &self,
        caller: &Caller,
        access: &TenantAccess,
        name: &str,
        change: DeploymentChange,
    ) -> Result<DeploymentStatus, ControllerError> {
        access.require_role(Role::Member)?;
        let current = self.endpoint(&access.tenant.slug, name)?;
        let replicas = change.replicas.unwrap_or(current.row.replicas);
        let mut spec = change.spec.unwrap_or_else(|| current.spec.clone());
        spec.keep_secret_of(&current.spec);
        validate(name, replicas, &spec)?;
        let version_id = match &change.version {
            Some(v) => {
                let model = self
                    .registry
                    .model_access(Some(caller), &current.model.owner, &current.model.name, ModelRight::Read)
                    .await?;
                let (version, _) = self.registry.version(&model, v).await?;
                if version.state != VersionState::Published {
                    return Err(ControllerError::NotPublished(v.clone()));
                }
                check_external(version.format, &spec)?;
                version.id
            }
            None => {
                check_external(current.version.format, &spec)?;
                current.row.version_id
            }
        };
        let write = DeploymentWrite {
            name: name.to_owned(),
            model_id: current.row.model_id,
            version_id,
            replicas,
            spec: spec.to_stored(),
        };
        let row = access.store().update_deployment(current.row.id, write).await?;
        let details = json!({ "version": change.version, "replicas": replicas });
        maas_auth::service::record(caller, access.store(), "deployment.update", &current.full_name(), details).await?;
        let endpoint = self.launch(&access.tenant.slug, row).await?;
        Ok(DeploymentStatus::of(&endpoint))
    }

    pub async fn delete(&self, caller: &Caller, access: &TenantAccess, name: &str) -> Result<(), ControllerError> {
        access.require_role(Role::Member)?;
        let row = access.store().deployment(name).await.map_err(|e| match e {
            StoreError::NotFound(_) => ControllerError::NotFound(format!("{}/{name}", access.tenant.slug)),
            e => e.into(),
        })?;
        access.store().delete_deployment(row.id).await?;
        if let Some(e) = self.endpoints_mut().remove(&(access.tenant.slug.clone(), name.to_owned())) {
            e.stop();
        }
        maas_auth::service::record(
            caller,
            access.store(),
            "deployment.delete",
            &format!("{}/{name}", access.tenant.slug),
            json!({}),
        )
        .await?;
        Ok(())
    }
}
