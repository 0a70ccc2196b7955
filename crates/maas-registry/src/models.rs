//! Models: create, show, update, delete, search, stars, collaborators.

use maas_auth::{Caller, TenantAccess};
use maas_core::identity::Role;
use maas_core::registry::{Collaborator, CollaboratorAccess, Model, ModelQuery, Viewer, Visibility};
use maas_store::{ModelPage, ModelPatch, NewModel, StoreError};
use serde_json::json;

use crate::access::{ModelAccess, ModelRight};
use crate::{Registry, RegistryError, readme, validate};

/// Most models per page.
pub const MAX_PER_PAGE: u32 = 100;

/// A model to create (tenant and caller come from the access check).
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub task: String,
    pub visibility: Visibility,
    pub description: String,
    pub tags: Vec<String>,
    pub license: Option<String>,
    pub readme: String,
}

/// A model with its README, as shown on the model page.
#[derive(Debug, Clone)]
pub struct ModelDetails {
    pub model: Model,
    pub readme: String,
    /// The README rendered to sanitised HTML.
    pub readme_html: String,
    /// Whether the caller has starred it.
    pub starred: bool,
}

fn check_texts(description: Option<&str>, license: Option<&str>, readme: Option<&str>) -> Result<(), RegistryError> {
    if let Some(d) = description {
        validate::text("description", d, 2000)?;
    }
    if let Some(l) = license {
        validate::text("license", l, 100)?;
    }
    if let Some(r) = readme {
        validate::text("readme", r, 1_000_000)?;
    }
    Ok(())
}

impl Registry {
    /// Creates a model in the tenant of `access` (members and up), within the models quota.
    pub async fn create_model(
        &self,
        caller: &Caller,
        access: &TenantAccess,
        spec: ModelSpec,
    ) -> Result<Model, RegistryError> {
        access.require_role(Role::Member)?;
        validate::model_name(&spec.name)?;
        validate::task(&spec.task)?;
        let tags = validate::tags(&spec.tags)?;
        check_texts(Some(&spec.description), spec.license.as_deref(), Some(&spec.readme))?;
        let store = access.store();
        let quota = self.effective_quota(store).await?;
        if let Some(max) = quota.max_models {
            let count = store.count_models().await?;
            if i64::try_from(count).unwrap_or(i64::MAX) >= max {
                return Err(RegistryError::Quota(format!(
                    "max_models: tenant '{}' may have {max} models and has {count}",
                    access.tenant.slug
                )));
            }
        }
        let model = store
            .create_model(NewModel {
                name: spec.name,
                task: spec.task,
                visibility: spec.visibility,
                description: spec.description,
                tags,
                license: spec.license,
                readme: spec.readme,
            })
            .await?;
        let details = json!({ "visibility": model.visibility, "task": model.task });
        self.audit(caller, store, "model.create", &model.full_name(), details).await?;
        Ok(model)
    }

    /// The model page: the model, its README (Markdown and safe HTML), the caller's star.
    pub async fn model_details(
        &self,
        caller: Option<&Caller>,
        access: &ModelAccess,
    ) -> Result<ModelDetails, RegistryError> {
        let readme = access.store().readme(access.model.id).await?;
        let starred = match caller {
            Some(c) => access.store().starred(access.model.id, c.user().id).await?,
            None => false,
        };
        Ok(ModelDetails { model: access.model.clone(), readme_html: readme::render(&readme), readme, starred })
    }

    /// Changes a model. Visibility changes need the admin right; the rest write.
    pub async fn update_model(
        &self,
        caller: &Caller,
        access: &ModelAccess,
        mut patch: ModelPatch,
    ) -> Result<Model, RegistryError> {
        access.require(ModelRight::Write)?;
        if patch.visibility.is_some_and(|v| v != access.model.visibility) {
            access.require(ModelRight::Admin)?;
        }
        if let Some(task) = &patch.task {
            validate::task(task)?;
        }
        if let Some(tags) = &patch.tags {
            patch.tags = Some(validate::tags(tags)?);
        }
        check_texts(
            patch.description.as_deref(),
            patch.license.as_ref().and_then(|l| l.as_deref()),
            patch.readme.as_deref(),
        )?;
        let details = json!({
            "visibility": patch.visibility, "task": patch.task, "tags": patch.tags,
            "description_changed": patch.description.is_some(), "readme_changed": patch.readme.is_some(),
        });
        let model = access.store().update_model(access.model.id, patch).await?;
        self.audit(caller, access.store(), "model.update", &model.full_name(), details).await?;
        Ok(model)
    }

    /// Deletes a model with its versions and files (admin right). Blobs other files still
    /// reference stay; see `docs/decisions/006-registry-storage.md`.
    pub async fn delete_model(&self, caller: &Caller, access: &ModelAccess) -> Result<(), RegistryError> {
        access.require(ModelRight::Admin)?;
        access.store().delete_model(access.model.id).await?;
        self.audit(caller, access.store(), "model.delete", &access.model.full_name(), json!({})).await?;
        Ok(())
    }

    /// The models the caller may see that match `query`.
    pub async fn search(&self, caller: Option<&Caller>, mut query: ModelQuery) -> Result<ModelPage, RegistryError> {
        query.page = query.page.max(1);
        query.per_page = query.per_page.clamp(1, MAX_PER_PAGE);
        let viewer = match caller {
            None => Viewer::default(),
            Some(c) => Viewer {
                user_id: Some(c.user().id),
                is_admin: c.is_platform_admin(),
                only_tenant: c.api_key().map(|k| k.tenant_id),
            },
        };
        if let Some(c) = caller {
            c.require_scope(maas_core::keys::Scope::Read)?;
        }
        Ok(self.store.search_models(&viewer, &query).await?)
    }

    /// Stars or unstars the model for the caller; returns the new star count.
    pub async fn star(&self, caller: &Caller, access: &ModelAccess, starred: bool) -> Result<i64, RegistryError> {
        Ok(access.store().set_star(access.model.id, caller.user().id, starred).await?)
    }

    pub async fn collaborators(&self, access: &ModelAccess) -> Result<Vec<Collaborator>, RegistryError> {
        Ok(access.store().collaborators(access.model.id).await?)
    }

    /// Grants a user read or write on this one model (admin right).
    pub async fn set_collaborator(
        &self,
        caller: &Caller,
        access: &ModelAccess,
        username: &str,
        right: CollaboratorAccess,
    ) -> Result<Collaborator, RegistryError> {
        access.require(ModelRight::Admin)?;
        let user = self.store.user_by_username(username).await.map_err(|e| match e {
            StoreError::NotFound(_) => RegistryError::InvalidRequest(format!("no user named '{username}'")),
            e => e.into(),
        })?;
        let collaborator = access.store().set_collaborator(access.model.id, &user, right).await?;
        let target = format!("{}:{username}", access.model.full_name());
        self.audit(caller, access.store(), "model.collaborator.set", &target, json!({ "access": right })).await?;
        Ok(collaborator)
    }

    pub async fn remove_collaborator(
        &self,
        caller: &Caller,
        access: &ModelAccess,
        username: &str,
    ) -> Result<(), RegistryError> {
        access.require(ModelRight::Admin)?;
        let user = self.store.user_by_username(username).await?;
        access.store().remove_collaborator(access.model.id, user.id).await?;
        let target = format!("{}:{username}", access.model.full_name());
        self.audit(caller, access.store(), "model.collaborator.remove", &target, json!({})).await?;
        Ok(())
    }

    pub(crate) async fn audit(
        &self,
        caller: &Caller,
        store: &dyn maas_store::TenantStore,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), RegistryError> {
        maas_auth::service::record(caller, store, action, target, details).await?;
        Ok(())
    }
}
