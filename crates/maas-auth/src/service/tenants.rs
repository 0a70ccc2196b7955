//! Organisations and membership.

use maas_core::identity::{Member, Role, Tenant, TenantKind, TenantView};
use maas_core::validate;
use maas_store::StoreError;

use super::IdentityService;
use crate::AuthError;
use crate::principal::{Caller, TenantAccess};

impl IdentityService {
    /// Creates an organisation owned by the caller.
    pub async fn create_organization(&self, caller: &Caller, slug: &str, name: &str) -> Result<Tenant, AuthError> {
        caller.require_scope(maas_core::keys::Scope::Manage)?;
        if caller.api_key().is_some() {
            return Err(AuthError::Forbidden("organisations are created with a session, not an API key".into()));
        }
        validate::slug("slug", slug)?;
        validate::display_name("name", name)?;
        let tenant = self.store.create_organization(slug, name.trim(), caller.user().id).await?;
        let store = self.store.scoped(tenant.id);
        self.record(caller, store.as_ref(), "tenant.create", slug, serde_json::json!({ "name": tenant.name })).await?;
        Ok(tenant)
    }

    /// The tenants the caller can see: every tenant for a platform admin, else memberships.
    pub async fn list_tenants(&self, caller: &Caller) -> Result<Vec<TenantView>, AuthError> {
        let mine = self.memberships(caller).await?;
        if !caller.is_platform_admin() {
            return Ok(mine.into_iter().map(|m| TenantView { tenant: m.tenant, role: Some(m.role) }).collect());
        }
        let all = self.store.all_tenants().await?;
        Ok(all
            .into_iter()
            .map(|tenant| {
                let role = mine.iter().find(|m| m.tenant.id == tenant.id).map(|m| m.role);
                TenantView { tenant, role }
            })
            .collect())
    }

    pub async fn members(&self, access: &TenantAccess) -> Result<Vec<Member>, AuthError> {
        Ok(access.store().members().await?)
    }

    /// Adds a user to the tenant or changes their role. Admins manage members below owner;
    /// only owners grant or take away ownership; the last owner stays.
    pub async fn set_member(
        &self,
        caller: &Caller,
        access: &TenantAccess,
        username: &str,
        role: Role,
    ) -> Result<(Member, bool), AuthError> {
        access.require_role(Role::Admin)?;
        if access.tenant.kind == TenantKind::Personal {
            return Err(AuthError::InvalidRequest(
                "a personal tenant has no other members: create an organisation".into(),
            ));
        }
        let user = self.store.user_by_username(username).await?;
        let current = match access.store().member(user.id).await {
            Ok(m) => Some(m.role),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if role == Role::Owner || current == Some(Role::Owner) {
            access.require_role(Role::Owner)?;
        }
        if current == Some(Role::Owner) && role != Role::Owner && access.store().count_owners().await? <= 1 {
            return Err(AuthError::LastOwner);
        }
        let member = access.store().set_member(user.id, role).await?;
        self.forget_keys().await;
        let details = serde_json::json!({ "role": role, "previous_role": current });
        self.record(caller, access.store(), "member.set", username, details).await?;
        Ok((member, current.is_none()))
    }

    /// Removes a member. Anyone may leave; removing others needs admin (owner for owners).
    pub async fn remove_member(&self, caller: &Caller, access: &TenantAccess, username: &str) -> Result<(), AuthError> {
        let user = self.store.user_by_username(username).await?;
        let member = access.store().member(user.id).await?;
        if user.id != caller.user().id {
            access.require_role(if member.role == Role::Owner { Role::Owner } else { Role::Admin })?;
        }
        if member.role == Role::Owner && access.store().count_owners().await? <= 1 {
            return Err(AuthError::LastOwner);
        }
        access.store().remove_member(user.id).await?;
        self.forget_keys().await;
        let details = serde_json::json!({ "role": member.role });
        self.record(caller, access.store(), "member.remove", username, details).await?;
        Ok(())
    }
}
