//! The deployments SQL both backends share, expanded per backend by [`sql_deployments!`] in
//! the same module as [`crate::sql::sql_store!`] (whose row helpers it reuses).

/// Implements [`crate::DeploymentCatalog`] for `$Store` and [`crate::TenantDeployments`] for
/// `$Scoped`.
macro_rules! sql_deployments {
    ($Store:ident, $Scoped:ident, $Db:ty) => {
        use maas_core::DeploymentId;

        use crate::deployments::{DeploymentRow, DeploymentWrite};

        const DEPLOYMENT_COLS: &str =
            "id, tenant_id, name, model_id, version_id, replicas, spec, created_at, updated_at";

        fn deployment_row(row: &DbRow) -> Result<DeploymentRow> {
            let spec: String = row.try_get("spec")?;
            Ok(DeploymentRow {
                id: id_col(row, "id")?,
                tenant_id: id_col(row, "tenant_id")?,
                name: row.try_get("name")?,
                model_id: id_col(row, "model_id")?,
                version_id: id_col(row, "version_id")?,
                replicas: row.try_get("replicas")?,
                spec: serde_json::from_str(&spec)
                    .map_err(|_| StoreError::Corrupt { column: "deployments.spec", value: spec })?,
                created_at: ts_col(row, "created_at")?,
                updated_at: ts_col(row, "updated_at")?,
            })
        }

        #[async_trait::async_trait]
        impl crate::DeploymentCatalog for $Store {
            async fn all_deployments(&self) -> Result<Vec<DeploymentRow>> {
                q(format!("SELECT {DEPLOYMENT_COLS} FROM deployments ORDER BY created_at, id"))
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(deployment_row)
                    .collect()
            }
        }

        #[async_trait::async_trait]
        impl crate::TenantDeployments for $Scoped {
            async fn create_deployment(&self, new: DeploymentWrite) -> Result<DeploymentRow> {
                self.own_version(new.version_id).await?;
                let now = maas_core::now().timestamp_millis();
                let row = q(format!(
                    "INSERT INTO deployments (id, tenant_id, name, model_id, version_id, replicas, spec, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {DEPLOYMENT_COLS}"
                ))
                .bind(DeploymentId::new().to_string())
                .bind(self.tenant.to_string())
                .bind(&new.name)
                .bind(new.model_id.to_string())
                .bind(new.version_id.to_string())
                .bind(new.replicas)
                .bind(new.spec.to_string())
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                deployment_row(&row)
            }

            async fn deployment(&self, name: &str) -> Result<DeploymentRow> {
                let row = q(format!("SELECT {DEPLOYMENT_COLS} FROM deployments WHERE tenant_id = $1 AND name = $2"))
                    .bind(self.tenant.to_string())
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(not_found(Entity::Deployment))?;
                deployment_row(&row)
            }

            async fn deployments(&self) -> Result<Vec<DeploymentRow>> {
                q(format!("SELECT {DEPLOYMENT_COLS} FROM deployments WHERE tenant_id = $1 ORDER BY name"))
                    .bind(self.tenant.to_string())
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(deployment_row)
                    .collect()
            }

            async fn update_deployment(&self, id: DeploymentId, write: DeploymentWrite) -> Result<DeploymentRow> {
                self.own_version(write.version_id).await?;
                let row = q(format!(
                    "UPDATE deployments SET model_id = $3, version_id = $4, replicas = $5, spec = $6, updated_at = $7 \
                     WHERE tenant_id = $1 AND id = $2 RETURNING {DEPLOYMENT_COLS}"
                ))
                .bind(self.tenant.to_string())
                .bind(id.to_string())
                .bind(write.model_id.to_string())
                .bind(write.version_id.to_string())
                .bind(write.replicas)
                .bind(write.spec.to_string())
                .bind(maas_core::now().timestamp_millis())
                .fetch_one(&self.pool)
                .await
                .map_err(not_found(Entity::Deployment))?;
                deployment_row(&row)
            }

            async fn delete_deployment(&self, id: DeploymentId) -> Result<()> {
                let done = sqlx::query("DELETE FROM deployments WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await?;
                crate::error::found(done.rows_affected(), Entity::Deployment)
            }
        }
    };
}

pub(crate) use sql_deployments;
