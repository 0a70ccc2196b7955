//! Who may do what with a model. A private model is a 404 to anyone who may not see it; a
//! visible model answers 403 to a caller whose right is too small.

use maas_auth::Caller;
use maas_core::identity::Role;
use maas_core::keys::Scope;
use maas_core::registry::{CollaboratorAccess, Model, Visibility};
use maas_store::{StoreError, TenantStore};

use crate::{Registry, RegistryError};

/// A caller's right on one model, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ModelRight {
    /// See it, read its README and versions, download published files.
    Read,
    /// Also edit it, create versions, upload, publish.
    Write,
    /// Also delete it, change visibility, manage collaborators.
    Admin,
}

impl ModelRight {
    fn as_str(self) -> &'static str {
        match self {
            ModelRight::Read => "read",
            ModelRight::Write => "write",
            ModelRight::Admin => "admin",
        }
    }
}

/// Proof that the caller holds `right` on `model`, and the handle on the model's tenant.
#[derive(Debug)]
pub struct ModelAccess {
    pub model: Model,
    pub right: ModelRight,
    pub(crate) store: Box<dyn TenantStore>,
}

impl ModelAccess {
    pub fn store(&self) -> &dyn TenantStore {
        self.store.as_ref()
    }

    pub fn require(&self, need: ModelRight) -> Result<(), RegistryError> {
        if self.right >= need {
            Ok(())
        } else {
            Err(RegistryError::Forbidden(format!(
                "this needs the '{}' right on {}; you have '{}'",
                need.as_str(),
                self.model.full_name(),
                self.right.as_str()
            )))
        }
    }
}

fn role_right(role: Role) -> ModelRight {
    match role {
        Role::Viewer => ModelRight::Read,
        Role::Member => ModelRight::Write,
        Role::Admin | Role::Owner => ModelRight::Admin,
    }
}

impl Registry {
    /// Finds `owner/name` and checks the caller's right on it (anonymous callers: `None`).
    /// API keys act only inside their own tenant (public models are readable by anyone);
    /// reads need the `read` scope, changes the `manage` scope.
    pub async fn model_access(
        &self,
        caller: Option<&Caller>,
        owner: &str,
        name: &str,
        need: ModelRight,
    ) -> Result<ModelAccess, RegistryError> {
        let not_found = || RegistryError::ModelNotFound(format!("{owner}/{name}"));
        let tenant = match self.store.tenant_by_slug(owner).await {
            Ok(t) => t,
            Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        let store = self.store.scoped(tenant.id);
        let model = match store.model(name).await {
            Ok(m) => m,
            Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        let right = self.right_on(caller, &model, store.as_ref()).await?.ok_or_else(not_found)?;
        if let Some(caller) = caller {
            caller.require_scope(if need == ModelRight::Read { Scope::Read } else { Scope::Manage })?;
        }
        let access = ModelAccess { model, right, store };
        access.require(need)?;
        Ok(access)
    }

    async fn right_on(
        &self,
        caller: Option<&Caller>,
        model: &Model,
        store: &dyn TenantStore,
    ) -> Result<Option<ModelRight>, RegistryError> {
        let public = (model.visibility == Visibility::Public).then_some(ModelRight::Read);
        let Some(caller) = caller else { return Ok(public) };
        if caller.is_platform_admin() {
            return Ok(Some(ModelRight::Admin));
        }
        let user = caller.user().id;
        if caller.api_key().is_some_and(|k| k.tenant_id != model.tenant_id) {
            return Ok(public);
        }
        if let Some(role) = self.store.role(user, model.tenant_id).await? {
            return Ok(Some(role_right(role)));
        }
        if caller.api_key().is_none() {
            match store.collaborator_access(model.id, user).await? {
                Some(CollaboratorAccess::Write) => return Ok(Some(ModelRight::Write)),
                Some(CollaboratorAccess::Read) => return Ok(Some(ModelRight::Read)),
                None => {}
            }
        }
        Ok(public)
    }
}
