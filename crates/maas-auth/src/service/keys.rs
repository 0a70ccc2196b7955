//! API keys: create (secret shown once), list, revoke.

use maas_core::identity::Role;
use maas_core::keys::{ApiKey, RateLimits, Scope};
use maas_core::{ApiKeyId, Timestamp, validate};
use maas_store::NewApiKey;

use super::IdentityService;
use crate::principal::{Caller, TenantAccess};
use crate::{AuthError, token};

/// A freshly created key and its secret, which is never retrievable again.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
}

impl IdentityService {
    /// Creates a key in the tenant. Members may create `read`/`infer` keys; `manage` keys
    /// need admin; a key can only create keys with a subset of its own scopes.
    pub async fn create_key(
        &self,
        caller: &Caller,
        access: &TenantAccess,
        name: &str,
        scopes: &[Scope],
        expires_at: Option<Timestamp>,
        limits: RateLimits,
    ) -> Result<CreatedKey, AuthError> {
        access.require_role(Role::Member)?;
        validate::display_name("name", name)?;
        limits.validate().map_err(|e| AuthError::InvalidRequest(format!("limits: {e}")))?;
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(AuthError::InvalidRequest("scopes: give at least one of read, infer, manage".into()));
        }
        if scopes.contains(&Scope::Manage) {
            access.require_role(Role::Admin)?;
        }
        if let Some(own) = caller.api_key()
            && let Some(extra) = scopes.iter().find(|s| !s.granted_by(&own.scopes))
        {
            return Err(AuthError::InsufficientScope(extra.as_str()));
        }
        if expires_at.is_some_and(|t| t <= maas_core::now()) {
            return Err(AuthError::InvalidRequest("expires_at: must be in the future".into()));
        }
        let secret = token::new_api_key();
        let key = access
            .store()
            .create_api_key(NewApiKey {
                created_by: caller.user().id,
                name: name.trim().to_owned(),
                prefix: secret.chars().take(12).collect(),
                secret_hash: token::digest(&secret),
                scopes: scopes.clone(),
                limits,
                expires_at,
            })
            .await?;
        let details =
            serde_json::json!({ "name": key.name, "scopes": scopes, "expires_at": expires_at, "limits": limits });
        self.record(caller, access.store(), "key.create", &key.id.to_string(), details).await?;
        Ok(CreatedKey { key, secret })
    }

    /// Admins see every key of the tenant; members see the keys they created.
    pub async fn list_keys(&self, caller: &Caller, access: &TenantAccess) -> Result<Vec<ApiKey>, AuthError> {
        access.require_role(Role::Member)?;
        let mut keys = access.store().api_keys().await?;
        if !access.role.allows(Role::Admin) {
            keys.retain(|k| k.created_by == caller.user().id);
        }
        Ok(keys)
    }

    /// Changes a key's rate limits (tenant admins).
    pub async fn set_key_limits(
        &self,
        caller: &Caller,
        access: &TenantAccess,
        id: ApiKeyId,
        limits: RateLimits,
    ) -> Result<ApiKey, AuthError> {
        access.require_role(Role::Admin)?;
        limits.validate().map_err(|e| AuthError::InvalidRequest(format!("limits: {e}")))?;
        let key = access.store().set_api_key_limits(id, limits).await?;
        self.forget_keys().await;
        self.record(caller, access.store(), "key.limits.set", &id.to_string(), serde_json::json!({ "limits": limits }))
            .await?;
        Ok(key)
    }

    /// Revokes a key; it stops working on the very next request. Members revoke their own
    /// keys, admins any key of the tenant.
    pub async fn revoke_key(&self, caller: &Caller, access: &TenantAccess, id: ApiKeyId) -> Result<ApiKey, AuthError> {
        access.require_role(Role::Member)?;
        let key = access.store().api_key(id).await?;
        if key.created_by != caller.user().id {
            access.require_role(Role::Admin)?;
        }
        let key = access.store().revoke_api_key(id, maas_core::now()).await?;
        self.forget_keys().await;
        self.record(caller, access.store(), "key.revoke", &id.to_string(), serde_json::json!({ "name": key.name }))
            .await?;
        Ok(key)
    }
}
