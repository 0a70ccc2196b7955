//! The registry SQL both backends share, expanded per backend by [`sql_registry!`] in the
//! same module as [`crate::sql::sql_store!`] (whose row helpers it reuses). The one
//! backend-specific piece, the full-text condition, comes from the backend module's
//! `push_text_match`.

/// Implements [`crate::Catalog`] for `$Store` and [`crate::TenantModels`] for `$Scoped`.
macro_rules! sql_registry {
    ($Store:ident, $Scoped:ident, $Db:ty) => {
        use maas_core::registry::{
            Collaborator, CollaboratorAccess, Model, ModelFile, ModelFormat, ModelQuery, ModelSort, ModelVersion,
            Quota, VersionState, Viewer, Visibility,
        };
        use maas_core::{ModelId, UploadId, VersionId};

        use crate::registry::{ModelPage, ModelPatch, NewModel, Upload};

        const MODEL_COLS: &str = "m.id, m.tenant_id, t.slug AS owner, m.name, m.task, m.visibility, m.description, \
                                  m.tags, m.license, m.downloads, m.calls, m.stars, m.created_at, m.updated_at";
        const VERSION_COLS: &str =
            "id, model_id, version, format, state, metadata, signature, created_at, published_at";

        fn enum_col<T>(row: &DbRow, column: &'static str, parse: fn(&str) -> Option<T>) -> Result<T> {
            let s: String = row.try_get(column)?;
            parse(&s).ok_or(StoreError::Corrupt { column, value: s })
        }

        fn model_row(row: &DbRow) -> Result<Model> {
            let tags: String = row.try_get("tags")?;
            Ok(Model {
                id: id_col(row, "id")?,
                tenant_id: id_col(row, "tenant_id")?,
                owner: row.try_get("owner")?,
                name: row.try_get("name")?,
                task: row.try_get("task")?,
                visibility: enum_col(row, "visibility", Visibility::parse)?,
                description: row.try_get("description")?,
                tags: tags.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
                license: row.try_get("license")?,
                downloads: row.try_get("downloads")?,
                calls: row.try_get("calls")?,
                stars: row.try_get("stars")?,
                created_at: ts_col(row, "created_at")?,
                updated_at: ts_col(row, "updated_at")?,
            })
        }

        fn json_col(row: &DbRow, column: &'static str) -> Result<Option<serde_json::Value>> {
            row.try_get::<Option<String>, _>(column)?
                .map(|s| serde_json::from_str(&s).map_err(|_| StoreError::Corrupt { column, value: s }))
                .transpose()
        }

        fn version_row(row: &DbRow) -> Result<ModelVersion> {
            Ok(ModelVersion {
                id: id_col(row, "id")?,
                model_id: id_col(row, "model_id")?,
                version: row.try_get("version")?,
                format: enum_col(row, "format", ModelFormat::parse)?,
                state: enum_col(row, "state", VersionState::parse)?,
                metadata: json_col(row, "metadata")?.unwrap_or_default(),
                signature: json_col(row, "signature")?,
                created_at: ts_col(row, "created_at")?,
                published_at: opt_ts_col(row, "published_at")?,
            })
        }

        fn file_row(row: &DbRow) -> Result<ModelFile> {
            Ok(ModelFile {
                path: row.try_get("path")?,
                sha256: row.try_get("sha256")?,
                size: row.try_get("size")?,
                created_at: ts_col(row, "created_at")?,
            })
        }

        fn collaborator_row(row: &DbRow) -> Result<Collaborator> {
            Ok(Collaborator {
                user_id: id_col(row, "user_id")?,
                username: row.try_get("username")?,
                access: enum_col(row, "access", CollaboratorAccess::parse)?,
                since: ts_col(row, "created_at")?,
            })
        }

        /// `WHERE …` of a search: visibility for the viewer, then the filters.
        fn push_search_filter(qb: &mut sqlx::QueryBuilder<$Db>, viewer: &Viewer, query: &ModelQuery) {
            qb.push(" WHERE (m.visibility = 'public'");
            if viewer.is_admin {
                qb.push(" OR 1 = 1");
            } else if let Some(tenant) = viewer.only_tenant {
                qb.push(" OR m.tenant_id = ").push_bind(tenant.to_string());
            } else if let Some(user) = viewer.user_id {
                qb.push(" OR m.tenant_id IN (SELECT tenant_id FROM memberships WHERE user_id = ")
                    .push_bind(user.to_string())
                    .push(") OR m.id IN (SELECT model_id FROM model_collaborators WHERE user_id = ")
                    .push_bind(user.to_string())
                    .push(")");
            }
            qb.push(")");
            if let Some(q) = query.q.as_deref().filter(|q| !q.trim().is_empty()) {
                qb.push(" AND ");
                push_text_match(qb, q);
            }
            if let Some(tag) = &query.tag {
                qb.push(" AND m.id IN (SELECT model_id FROM model_tags WHERE tag = ").push_bind(tag.clone()).push(")");
            }
            if let Some(task) = &query.task {
                qb.push(" AND m.task = ").push_bind(task.clone());
            }
            if let Some(owner) = &query.owner {
                qb.push(" AND t.slug = ").push_bind(owner.clone());
            }
        }

        #[async_trait::async_trait]
        impl crate::Catalog for $Store {
            async fn search_models(&self, viewer: &Viewer, query: &ModelQuery) -> Result<ModelPage> {
                let mut count = sqlx::QueryBuilder::<$Db>::new(
                    "SELECT COUNT(*) FROM models m JOIN tenants t ON t.id = m.tenant_id",
                );
                push_search_filter(&mut count, viewer, query);
                let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;

                let mut select = sqlx::QueryBuilder::<$Db>::new(format!(
                    "SELECT {MODEL_COLS} FROM models m JOIN tenants t ON t.id = m.tenant_id"
                ));
                push_search_filter(&mut select, viewer, query);
                select.push(match query.sort.unwrap_or(ModelSort::Updated) {
                    ModelSort::Downloads => " ORDER BY m.downloads DESC, m.id",
                    ModelSort::Stars => " ORDER BY m.stars DESC, m.id",
                    ModelSort::Updated => " ORDER BY m.updated_at DESC, m.id",
                });
                let per_page = i64::from(query.per_page.max(1));
                select.push(" LIMIT ").push_bind(per_page);
                select.push(" OFFSET ").push_bind(i64::from(query.page.max(1) - 1) * per_page);
                let items = select.build().fetch_all(&self.pool).await?.iter().map(model_row).collect::<Result<_>>()?;
                Ok(ModelPage { items, total: u64::try_from(total).unwrap_or(0) })
            }
        }

        impl $Scoped {
            async fn write_tags(&self, tx: &mut sqlx::Transaction<'_, $Db>, model: ModelId, tags: &[String]) -> Result<()> {
                sqlx::query("DELETE FROM model_tags WHERE tenant_id = $1 AND model_id = $2")
                    .bind(self.tenant.to_string())
                    .bind(model.to_string())
                    .execute(&mut **tx)
                    .await?;
                for tag in tags {
                    sqlx::query("INSERT INTO model_tags (model_id, tenant_id, tag) VALUES ($1, $2, $3)")
                        .bind(model.to_string())
                        .bind(self.tenant.to_string())
                        .bind(tag)
                        .execute(&mut **tx)
                        .await?;
                }
                sqlx::query("UPDATE models SET tags = $3 WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(model.to_string())
                    .bind(tags.join(","))
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn model_by_id(&self, model: ModelId) -> Result<Model> {
                let row = q(format!(
                    "SELECT {MODEL_COLS} FROM models m JOIN tenants t ON t.id = m.tenant_id \
                     WHERE m.tenant_id = $1 AND m.id = $2"
                ))
                .bind(self.tenant.to_string())
                .bind(model.to_string())
                .fetch_one(&self.pool)
                .await
                .map_err(not_found(Entity::Model))?;
                model_row(&row)
            }

            /// Fails with "version not found" unless the version belongs to this tenant.
            async fn own_version(&self, version: VersionId) -> Result<()> {
                sqlx::query("SELECT 1 FROM model_versions WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(version.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|_| ())
                    .ok_or(StoreError::NotFound(Entity::Version))
            }

            async fn touch_model(&self, model: ModelId) -> Result<()> {
                sqlx::query("UPDATE models SET updated_at = $3 WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(model.to_string())
                    .bind(maas_core::now().timestamp_millis())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl crate::TenantModels for $Scoped {
            async fn create_model(&self, new: NewModel) -> Result<Model> {
                let id = ModelId::new();
                let now = maas_core::now().timestamp_millis();
                let mut tx = begin_write(&self.pool).await?;
                sqlx::query(
                    "INSERT INTO models (id, tenant_id, name, task, visibility, description, license, readme, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                )
                .bind(id.to_string())
                .bind(self.tenant.to_string())
                .bind(&new.name)
                .bind(&new.task)
                .bind(new.visibility.as_str())
                .bind(&new.description)
                .bind(&new.license)
                .bind(&new.readme)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                self.write_tags(&mut tx, id, &new.tags).await?;
                tx.commit().await?;
                self.model_by_id(id).await
            }

            async fn model(&self, name: &str) -> Result<Model> {
                let row = q(format!(
                    "SELECT {MODEL_COLS} FROM models m JOIN tenants t ON t.id = m.tenant_id \
                     WHERE m.tenant_id = $1 AND m.name = $2"
                ))
                .bind(self.tenant.to_string())
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(not_found(Entity::Model))?;
                model_row(&row)
            }

            async fn model_with_id(&self, id: ModelId) -> Result<Model> {
                self.model_by_id(id).await
            }

            async fn readme(&self, model: ModelId) -> Result<String> {
                sqlx::query_scalar("SELECT readme FROM models WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(model.to_string())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(not_found(Entity::Model))
            }

            async fn update_model(&self, model: ModelId, patch: ModelPatch) -> Result<Model> {
                let current = self.model_by_id(model).await?;
                let readme = match patch.readme {
                    Some(r) => r,
                    None => self.readme(model).await?,
                };
                let mut tx = begin_write(&self.pool).await?;
                sqlx::query(
                    "UPDATE models SET task = $3, visibility = $4, description = $5, license = $6, readme = $7, \
                     updated_at = $8 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(self.tenant.to_string())
                .bind(model.to_string())
                .bind(patch.task.unwrap_or(current.task))
                .bind(patch.visibility.unwrap_or(current.visibility).as_str())
                .bind(patch.description.unwrap_or(current.description))
                .bind(patch.license.unwrap_or(current.license))
                .bind(readme)
                .bind(maas_core::now().timestamp_millis())
                .execute(&mut *tx)
                .await?;
                if let Some(tags) = patch.tags {
                    self.write_tags(&mut tx, model, &tags).await?;
                }
                tx.commit().await?;
                self.model_by_id(model).await
            }

            async fn delete_model(&self, model: ModelId) -> Result<()> {
                let done = sqlx::query("DELETE FROM models WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(model.to_string())
                    .execute(&self.pool)
                    .await?;
                crate::error::found(done.rows_affected(), Entity::Model)
            }

            async fn count_models(&self) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM models WHERE tenant_id = $1")
                    .bind(self.tenant.to_string())
                    .fetch_one(&self.pool)
                    .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn add_downloads(&self, model: ModelId, n: i64) -> Result<()> {
                sqlx::query("UPDATE models SET downloads = downloads + $3 WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(model.to_string())
                    .bind(n)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn collaborators(&self, model: ModelId) -> Result<Vec<Collaborator>> {
                sqlx::query(
                    "SELECT c.user_id, u.username, c.access, c.created_at FROM model_collaborators c \
                     JOIN users u ON u.id = c.user_id WHERE c.tenant_id = $1 AND c.model_id = $2 \
                     ORDER BY c.created_at, u.username",
                )
                .bind(self.tenant.to_string())
                .bind(model.to_string())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(collaborator_row)
                .collect()
            }

            async fn collaborator_access(&self, model: ModelId, user: UserId) -> Result<Option<CollaboratorAccess>> {
                sqlx::query("SELECT access FROM model_collaborators WHERE tenant_id = $1 AND model_id = $2 AND user_id = $3")
                    .bind(self.tenant.to_string())
                    .bind(model.to_string())
                    .bind(user.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|row| enum_col(&row, "access", CollaboratorAccess::parse))
                    .transpose()
            }

            async fn set_collaborator(&self, model: ModelId, user: &User, access: CollaboratorAccess) -> Result<Collaborator> {
                self.model_by_id(model).await?;
                sqlx::query(
                    "INSERT INTO model_collaborators (model_id, tenant_id, user_id, access, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model_id, user_id) DO UPDATE SET access = excluded.access",
                )
                .bind(model.to_string())
                .bind(self.tenant.to_string())
                .bind(user.id.to_string())
                .bind(access.as_str())
                .bind(maas_core::now().timestamp_millis())
                .execute(&self.pool)
                .await?;
                self.collaborators(model)
                    .await?
                    .into_iter()
                    .find(|c| c.user_id == user.id)
                    .ok_or(StoreError::NotFound(Entity::Member))
            }

            async fn remove_collaborator(&self, model: ModelId, user: UserId) -> Result<()> {
                let done =
                    sqlx::query("DELETE FROM model_collaborators WHERE tenant_id = $1 AND model_id = $2 AND user_id = $3")
                        .bind(self.tenant.to_string())
                        .bind(model.to_string())
                        .bind(user.to_string())
                        .execute(&self.pool)
                        .await?;
                crate::error::found(done.rows_affected(), Entity::Member)
            }

            async fn set_star(&self, model: ModelId, user: UserId, starred: bool) -> Result<i64> {
                let mut tx = begin_write(&self.pool).await?;
                let changed = if starred {
                    sqlx::query(
                        "INSERT INTO model_stars (model_id, tenant_id, user_id, created_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (model_id, user_id) DO NOTHING",
                    )
                    .bind(model.to_string())
                    .bind(self.tenant.to_string())
                    .bind(user.to_string())
                    .bind(maas_core::now().timestamp_millis())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                } else {
                    sqlx::query("DELETE FROM model_stars WHERE tenant_id = $1 AND model_id = $2 AND user_id = $3")
                        .bind(self.tenant.to_string())
                        .bind(model.to_string())
                        .bind(user.to_string())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                };
                let delta = if starred { 1i64 } else { -1 } * i64::try_from(changed).unwrap_or(0);
                let stars: i64 =
                    sqlx::query_scalar("UPDATE models SET stars = stars + $3 WHERE tenant_id = $1 AND id = $2 RETURNING stars")
                        .bind(self.tenant.to_string())
                        .bind(model.to_string())
                        .bind(delta)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(not_found(Entity::Model))?;
                tx.commit().await?;
                Ok(stars)
            }

            async fn starred(&self, model: ModelId, user: UserId) -> Result<bool> {
                let row = sqlx::query("SELECT 1 FROM model_stars WHERE tenant_id = $1 AND model_id = $2 AND user_id = $3")
                    .bind(self.tenant.to_string())
                    .bind(model.to_string())
                    .bind(user.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn create_version(
                &self,
                model: ModelId,
                version: &str,
                format: ModelFormat,
                metadata: serde_json::Value,
            ) -> Result<ModelVersion> {
                self.model_by_id(model).await?;
                let row = q(format!(
                    "INSERT INTO model_versions (id, tenant_id, model_id, version, format, state, metadata, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'draft', $6, $7) RETURNING {VERSION_COLS}"
                ))
                .bind(VersionId::new().to_string())
                .bind(self.tenant.to_string())
                .bind(model.to_string())
                .bind(version)
                .bind(format.as_str())
                .bind(metadata.to_string())
                .bind(maas_core::now().timestamp_millis())
                .fetch_one(&self.pool)
                .await?;
                self.touch_model(model).await?;
                version_row(&row)
            }

            async fn version(&self, model: ModelId, version: &str) -> Result<ModelVersion> {
                let row = q(format!(
                    "SELECT {VERSION_COLS} FROM model_versions WHERE tenant_id = $1 AND model_id = $2 AND version = $3"
                ))
                .bind(self.tenant.to_string())
                .bind(model.to_string())
                .bind(version)
                .fetch_one(&self.pool)
                .await
                .map_err(not_found(Entity::Version))?;
                version_row(&row)
            }

            async fn versions(&self, model: ModelId) -> Result<Vec<ModelVersion>> {
                q(format!(
                    "SELECT {VERSION_COLS} FROM model_versions WHERE tenant_id = $1 AND model_id = $2 \
                     ORDER BY created_at DESC, id DESC"
                ))
                .bind(self.tenant.to_string())
                .bind(model.to_string())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(version_row)
                .collect()
            }

            async fn publish_version(&self, version: VersionId, signature: serde_json::Value) -> Result<ModelVersion> {
                let row = q(format!(
                    "UPDATE model_versions SET state = 'published', signature = $3, published_at = $4 \
                     WHERE tenant_id = $1 AND id = $2 AND state = 'draft' RETURNING {VERSION_COLS}"
                ))
                .bind(self.tenant.to_string())
                .bind(version.to_string())
                .bind(signature.to_string())
                .bind(maas_core::now().timestamp_millis())
                .fetch_optional(&self.pool)
                .await?;
                let published = row.as_ref().map(version_row).transpose()?.ok_or(StoreError::VersionNotDraft)?;
                self.touch_model(published.model_id).await?;
                Ok(published)
            }

            async fn delete_version(&self, version: VersionId) -> Result<()> {
                let done = sqlx::query("DELETE FROM model_versions WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(version.to_string())
                    .execute(&self.pool)
                    .await?;
                crate::error::found(done.rows_affected(), Entity::Version)
            }

            async fn files(&self, version: VersionId) -> Result<Vec<ModelFile>> {
                sqlx::query(
                    "SELECT path, sha256, size, created_at FROM model_files WHERE tenant_id = $1 AND version_id = $2 \
                     ORDER BY path",
                )
                .bind(self.tenant.to_string())
                .bind(version.to_string())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(file_row)
                .collect()
            }

            async fn file(&self, version: VersionId, path: &str) -> Result<ModelFile> {
                let row = sqlx::query(
                    "SELECT path, sha256, size, created_at FROM model_files \
                     WHERE tenant_id = $1 AND version_id = $2 AND path = $3",
                )
                .bind(self.tenant.to_string())
                .bind(version.to_string())
                .bind(path)
                .fetch_one(&self.pool)
                .await
                .map_err(not_found(Entity::File))?;
                file_row(&row)
            }

            async fn put_file(&self, version: VersionId, path: &str, sha256: &str, size: i64) -> Result<ModelFile> {
                self.own_version(version).await?;
                sqlx::query(
                    "INSERT INTO model_files (version_id, tenant_id, path, sha256, size, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (version_id, path) \
                     DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, created_at = excluded.created_at",
                )
                .bind(version.to_string())
                .bind(self.tenant.to_string())
                .bind(path)
                .bind(sha256)
                .bind(size)
                .bind(maas_core::now().timestamp_millis())
                .execute(&self.pool)
                .await?;
                self.file(version, path).await
            }

            async fn delete_file(&self, version: VersionId, path: &str) -> Result<()> {
                let done = sqlx::query("DELETE FROM model_files WHERE tenant_id = $1 AND version_id = $2 AND path = $3")
                    .bind(self.tenant.to_string())
                    .bind(version.to_string())
                    .bind(path)
                    .execute(&self.pool)
                    .await?;
                crate::error::found(done.rows_affected(), Entity::File)
            }

            async fn upload(&self, version: VersionId, path: &str) -> Result<Option<Upload>> {
                sqlx::query(
                    "SELECT id, version_id, path, total, sha256 FROM uploads \
                     WHERE tenant_id = $1 AND version_id = $2 AND path = $3",
                )
                .bind(self.tenant.to_string())
                .bind(version.to_string())
                .bind(path)
                .fetch_optional(&self.pool)
                .await?
                .map(|row| {
                    Ok(Upload {
                        id: id_col(&row, "id")?,
                        version_id: id_col(&row, "version_id")?,
                        path: row.try_get("path")?,
                        total: row.try_get("total")?,
                        sha256: row.try_get("sha256")?,
                    })
                })
                .transpose()
            }

            async fn start_upload(&self, upload: &Upload) -> Result<()> {
                self.own_version(upload.version_id).await?;
                sqlx::query(
                    "INSERT INTO uploads (id, tenant_id, version_id, path, total, sha256, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(upload.id.to_string())
                .bind(self.tenant.to_string())
                .bind(upload.version_id.to_string())
                .bind(&upload.path)
                .bind(upload.total)
                .bind(&upload.sha256)
                .bind(maas_core::now().timestamp_millis())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn finish_upload(&self, id: UploadId) -> Result<()> {
                sqlx::query("DELETE FROM uploads WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn blob_size(&self, sha256: &str) -> Result<Option<i64>> {
                Ok(sqlx::query_scalar("SELECT size FROM model_files WHERE tenant_id = $1 AND sha256 = $2 LIMIT 1")
                    .bind(self.tenant.to_string())
                    .bind(sha256)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn storage_bytes(&self) -> Result<i64> {
                let n: Option<i64> = sqlx::query_scalar("SELECT CAST(SUM(size) AS BIGINT) FROM model_files WHERE tenant_id = $1")
                    .bind(self.tenant.to_string())
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n.unwrap_or(0))
            }

            async fn quota(&self) -> Result<Quota> {
                let row = sqlx::query(
                    "SELECT max_models, max_storage_bytes, max_gpu_hours, max_calls_per_day, max_tokens_per_day, \
                     requests_per_minute, tokens_per_minute FROM tenant_quotas WHERE tenant_id = $1",
                )
                .bind(self.tenant.to_string())
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    Some(row) => Quota {
                        max_models: row.try_get("max_models")?,
                        max_storage_bytes: row.try_get("max_storage_bytes")?,
                        max_gpu_hours: row.try_get("max_gpu_hours")?,
                        max_calls_per_day: row.try_get("max_calls_per_day")?,
                        max_tokens_per_day: row.try_get("max_tokens_per_day")?,
                        requests_per_minute: row.try_get("requests_per_minute")?,
                        tokens_per_minute: row.try_get("tokens_per_minute")?,
                    },
                    None => Quota::default(),
                })
            }

            async fn set_quota(&self, quota: Quota) -> Result<Quota> {
                sqlx::query(
                    "INSERT INTO tenant_quotas (tenant_id, max_models, max_storage_bytes, max_gpu_hours, \
                     max_calls_per_day, max_tokens_per_day, requests_per_minute, tokens_per_minute) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (tenant_id) DO UPDATE SET max_models = excluded.max_models, \
                     max_storage_bytes = excluded.max_storage_bytes, max_gpu_hours = excluded.max_gpu_hours, \
                     max_calls_per_day = excluded.max_calls_per_day, max_tokens_per_day = excluded.max_tokens_per_day, \
                     requests_per_minute = excluded.requests_per_minute, tokens_per_minute = excluded.tokens_per_minute",
                )
                .bind(self.tenant.to_string())
                .bind(quota.max_models)
                .bind(quota.max_storage_bytes)
                .bind(quota.max_gpu_hours)
                .bind(quota.max_calls_per_day)
                .bind(quota.max_tokens_per_day)
                .bind(quota.requests_per_minute)
                .bind(quota.tokens_per_minute)
                .execute(&self.pool)
                .await?;
                self.quota().await
            }
        }
    };
}

pub(crate) use sql_registry;
