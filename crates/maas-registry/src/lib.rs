//! The model registry: the hub half of the platform.
//!
//! - [`access`]: who may see or change a model (members, collaborators, public visibility),
//!   and the [`ModelAccess`] that is the only way to reach a model's rows.
//! - [`models`]: create, read, update, delete, search, stars, collaborators.
//! - [`versions`]: draft versions and publishing (validation and signature reading).
//! - [`uploads`]: streamed, hashed, resumable, deduplicated file uploads.
//! - [`downloads`]: file reads with ranges, counted.
//! - [`readme`]: Markdown to safe HTML.

pub mod access;
pub mod downloads;
pub mod error;
pub mod models;
pub mod readme;
mod signature;
pub mod uploads;
pub mod validate;
pub mod versions;

use std::sync::Arc;

use maas_artifacts::{ArtifactStore, Staging};
use maas_core::registry::Quota;
use maas_store::Store;
use serde::{Deserialize, Serialize};

pub use access::{ModelAccess, ModelRight};
pub use error::RegistryError;

/// Registry limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Largest single file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Models per tenant when the tenant has no quota of its own (`None`: unlimited).
    pub default_max_models: Option<i64>,
    /// Stored bytes per tenant when the tenant has no quota of its own.
    pub default_max_storage_bytes: Option<i64>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { max_file_bytes: 200 * 1024 * 1024 * 1024, default_max_models: None, default_max_storage_bytes: None }
    }
}

/// The registry service.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    artifacts: Arc<dyn ArtifactStore>,
    staging: Staging,
    config: RegistryConfig,
    /// Uploads receiving bytes right now: one request per file at a time.
    in_flight: Arc<std::sync::Mutex<std::collections::HashSet<maas_core::UploadId>>>,
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        artifacts: Arc<dyn ArtifactStore>,
        staging: Staging,
        config: RegistryConfig,
    ) -> Self {
        Self { store, artifacts, staging, config, in_flight: Arc::default() }
    }

    /// The tenant's quota, with the configured defaults where the tenant sets none.
    pub async fn effective_quota(&self, store: &dyn maas_store::TenantStore) -> Result<Quota, RegistryError> {
        let own = store.quota().await?;
        Ok(Quota {
            max_models: own.max_models.or(self.config.default_max_models),
            max_storage_bytes: own.max_storage_bytes.or(self.config.default_max_storage_bytes),
            ..own
        })
    }

    /// What a tenant stores against its quota.
    pub async fn usage(&self, store: &dyn maas_store::TenantStore) -> Result<QuotaUsage, RegistryError> {
        Ok(QuotaUsage {
            quota: self.effective_quota(store).await?,
            models: i64::try_from(store.count_models().await?).unwrap_or(i64::MAX),
            storage_bytes: store.storage_bytes().await?,
        })
    }

    /// Sets a tenant's quota (platform admins only).
    pub async fn set_quota(
        &self,
        caller: &maas_auth::Caller,
        access: &maas_auth::TenantAccess,
        quota: Quota,
    ) -> Result<QuotaUsage, RegistryError> {
        if !caller.is_platform_admin() {
            return Err(RegistryError::Forbidden("only platform admins set quotas".into()));
        }
        access.store().set_quota(quota).await?;
        let details = serde_json::json!(quota);
        self.audit(caller, access.store(), "tenant.quota.set", &access.tenant.slug, details).await?;
        self.usage(access.store()).await
    }
}

/// A tenant's quota and what it uses of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaUsage {
    pub quota: Quota,
    pub models: i64,
    pub storage_bytes: i64,
}
