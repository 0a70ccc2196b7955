//! The identity service: the operations behind the management API's identity routes.
//! Handlers parse and map; the rules (who may do what) and the audit entries are here.

mod account;
mod audit;
mod keys;
mod tenants;

use std::sync::Arc;
use std::time::Duration;

use maas_core::identity::Role;
use maas_core::keys::Scope;
use maas_store::{Store, StoreError};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::AuthError;
use crate::counter::Counter;
use crate::key_cache::KeyCache;
use crate::key_events::RedisKeyEvents;
use crate::principal::{Caller, TenantAccess};
use crate::session::SessionStore;
use crate::throttle::ThrottleConfig;

pub use audit::{MAX_AUDIT_PAGE, record};
pub use keys::CreatedKey;

/// Session and login settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a session lives, in seconds.
    pub session_ttl_secs: u64,
    /// `refresh` issues a new session id when less than this many seconds remain.
    pub refresh_window_secs: u64,
    pub login_throttle: ThrottleConfig,
    /// How long a verified API key is trusted without reading the store again, in
    /// milliseconds (0: every request reads it). Changes made on this instance apply at once;
    /// other instances see them within this time.
    pub key_cache_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_secs: 7 * 24 * 3600,
            refresh_window_secs: 24 * 3600,
            login_throttle: ThrottleConfig::default(),
            key_cache_ms: 2000,
        }
    }
}

/// Identity, tenancy and access, over a metadata store and the hot-state stores.
#[derive(Debug, Clone)]
pub struct IdentityService {
    store: Arc<dyn Store>,
    sessions: Arc<dyn SessionStore>,
    counter: Arc<dyn Counter>,
    keys: Arc<KeyCache>,
    /// Set when instances share Redis: tells the others to forget their verified keys.
    key_events: Option<RedisKeyEvents>,
    config: AuthConfig,
}

impl IdentityService {
    pub fn new(
        store: Arc<dyn Store>,
        sessions: Arc<dyn SessionStore>,
        counter: Arc<dyn Counter>,
        config: AuthConfig,
    ) -> Self {
        let keys = Arc::new(KeyCache::new(Duration::from_millis(config.key_cache_ms)));
        Self { store, sessions, counter, keys, key_events: None, config }
    }

    /// Shares key changes with the other instances through Redis (`client` for the
    /// subscription, `conn` for publishing, keys under `prefix`).
    pub fn share_key_changes(mut self, client: redis::Client, conn: ConnectionManager, prefix: &str) -> Self {
        self.key_events = Some(RedisKeyEvents::start(client, conn, prefix, self.keys.clone()));
        self
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Readiness: the metadata store and the session store both answer.
    /// Any failure, whatever its kind, means "not ready" (503).
    pub async fn ready(&self) -> Result<(), AuthError> {
        let not_ready = |e: AuthError| AuthError::NotReady(Box::new(e));
        self.store.ping().await.map_err(|e| not_ready(e.into()))?;
        self.sessions.ping().await.map_err(not_ready)
    }

    /// Checks that the caller may act on the tenant `slug` with at least `role`, using a key
    /// with `scope`, and returns the tenant-scoped access. Tenants the caller cannot see are
    /// reported as not found.
    pub async fn access(
        &self,
        caller: &Caller,
        slug: &str,
        role: Role,
        scope: Scope,
    ) -> Result<TenantAccess, AuthError> {
        caller.require_scope(scope)?;
        let tenant = self.store.tenant_by_slug(slug).await.map_err(|e| match e {
            StoreError::NotFound(_) => AuthError::TenantNotFound(slug.to_owned()),
            e => AuthError::Store(e),
        })?;
        if caller.api_key().is_some_and(|k| k.tenant_id != tenant.id) {
            return Err(AuthError::TenantNotFound(slug.to_owned()));
        }
        let member_role = self.store.role(caller.user().id, tenant.id).await?;
        let effective = match member_role {
            _ if caller.is_platform_admin() => Role::Owner,
            Some(role) => role,
            None => return Err(AuthError::TenantNotFound(slug.to_owned())),
        };
        let access = TenantAccess { store: self.store.scoped(tenant.id), tenant, role: effective };
        access.require_role(role)?;
        Ok(access)
    }
}
