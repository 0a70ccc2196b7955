//! Recording and reading the audit log.

use maas_core::AuditId;
use maas_core::audit::AuditEvent;
use maas_core::identity::Role;
use maas_store::{NewAuditEvent, TenantStore};

use super::IdentityService;
use crate::AuthError;
use crate::principal::{Caller, TenantAccess};

/// Most entries returned by one audit page.
pub const MAX_AUDIT_PAGE: u32 = 500;

impl IdentityService {
    /// Records a management action by `caller` in the tenant behind `store`.
    pub(crate) async fn record(
        &self,
        caller: &Caller,
        store: &dyn TenantStore,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<AuditEvent, AuthError> {
        record(caller, store, action, target, details).await
    }
}

/// Records a management action by `caller` in the tenant behind `store`. Every service
/// (identity, registry, …) records its actions through this one function.
pub async fn record(
    caller: &Caller,
    store: &dyn TenantStore,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<AuditEvent, AuthError> {
    let user = caller.user();
    Ok(store
        .record_audit(NewAuditEvent {
            actor_user_id: Some(user.id),
            actor: user.username.clone(),
            actor_key_id: caller.api_key().map(|k| k.id),
            action: action.to_owned(),
            target: target.to_owned(),
            client_ip: caller.client_ip.clone(),
            details,
        })
        .await?)
}

impl IdentityService {
    /// A page of the tenant's audit log, newest first (owners and admins only).
    pub async fn audit_log(
        &self,
        access: &TenantAccess,
        limit: u32,
        before: Option<AuditId>,
    ) -> Result<Vec<AuditEvent>, AuthError> {
        access.require_role(Role::Admin)?;
        Ok(access.store().audit(limit.clamp(1, MAX_AUDIT_PAGE), before).await?)
    }
}
