//! The authenticated caller, and the tenant-access check that is the only way for a
//! request to obtain a handle on a tenant's rows.

use maas_core::identity::{Role, Tenant, User};
use maas_core::keys::{ApiKey, Scope};
use maas_store::TenantStore;

use crate::AuthError;
use crate::session::Session;

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A browser or CLI session (full rights of the user).
    Session { user: User, session: Session },
    /// An API key: restricted to its tenant and scopes, never more than its creator.
    /// `role` is the creator's role in the key's tenant when the key was verified (`None`:
    /// no longer a member).
    ApiKey { user: User, key: ApiKey, role: Option<Role> },
}

/// An authenticated request's caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub client_ip: Option<String>,
}

impl Caller {
    pub fn user(&self) -> &User {
        match &self.principal {
            Principal::Session { user, .. } | Principal::ApiKey { user, .. } => user,
        }
    }

    pub fn api_key(&self) -> Option<&ApiKey> {
        match &self.principal {
            Principal::ApiKey { key, .. } => Some(key),
            Principal::Session { .. } => None,
        }
    }

    /// Whether an API key caller's creator is still a member of the key's tenant `tenant`
    /// (as verified with the key); `None` for session callers, whose membership the caller of
    /// this must look up.
    pub fn key_member_of(&self, tenant: maas_core::ids::TenantId) -> Option<bool> {
        match &self.principal {
            Principal::ApiKey { key, role, .. } => Some(key.tenant_id == tenant && role.is_some()),
            Principal::Session { .. } => None,
        }
    }

    /// Session callers hold every scope; a key must hold `scope` (`manage` implies `read`).
    pub fn require_scope(&self, scope: Scope) -> Result<(), AuthError> {
        match self.api_key() {
            Some(key) if !scope.granted_by(&key.scopes) => Err(AuthError::InsufficientScope(scope.as_str())),
            _ => Ok(()),
        }
    }

    /// A platform admin acting through a session (keys never carry platform-admin rights).
    pub fn is_platform_admin(&self) -> bool {
        self.api_key().is_none() && self.user().is_admin
    }
}

/// Proof that the caller may act on `tenant` with `role`, and the only source of a
/// [`TenantStore`] for request handling.
#[derive(Debug)]
pub struct TenantAccess {
    pub tenant: Tenant,
    /// The caller's effective role (platform admins act as owners).
    pub role: Role,
    pub(crate) store: Box<dyn TenantStore>,
}

impl TenantAccess {
    /// The tenant-bound store handle.
    pub fn store(&self) -> &dyn TenantStore {
        self.store.as_ref()
    }

    /// Fails with 403 unless the caller's role is at least `required`.
    pub fn require_role(&self, required: Role) -> Result<(), AuthError> {
        if self.role.allows(required) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "this needs the '{}' role in '{}'; you are '{}'",
                required.as_str(),
                self.tenant.slug,
                self.role.as_str()
            )))
        }
    }
}
