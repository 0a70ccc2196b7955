//! The metadata store: one interface ([`Store`], [`TenantStore`]) with a SQLite and a
//! PostgreSQL implementation side by side.
//!
//! Tenancy is enforced here, not in handlers: every row a tenant owns is reached only
//! through a [`TenantStore`], a handle bound to one tenant whose every query filters on that
//! tenant's id. Code holding a handle for tenant A has no method that can name a row of B.

pub mod deployments;
mod error;
mod postgres;
pub mod registry;
mod sql;
mod sql_deployments;
mod sql_registry;
mod sql_usage;
mod sqlite;
pub mod usage;

use std::sync::Arc;

use async_trait::async_trait;
use maas_core::audit::AuditEvent;
use maas_core::identity::{Member, Membership, Role, Tenant, TenantKind, User};
use maas_core::keys::{ApiKey, Scope};
use maas_core::{ApiKeyId, TenantId, Timestamp, UserId};

pub use deployments::{DeploymentCatalog, DeploymentRow, DeploymentWrite, TenantDeployments};
pub use error::{Conflict, Entity, StoreError};
pub use postgres::PostgresStore;
pub use registry::{Catalog, ModelPage, ModelPatch, NewModel, TenantModels, Upload};
pub use sqlite::SqliteStore;
pub use usage::{BillingRow, TenantUsage, UsageGrouping, UsageLedger, UsageRow, UsageTotals};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A user to create, with their already-hashed password.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password_hash: String,
}

/// A user row together with the password hash, for login only.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

/// An API key to create. `secret_hash` is the SHA-256 of the secret; the secret is not stored.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub created_by: UserId,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub scopes: Vec<Scope>,
    pub limits: maas_core::keys::RateLimits,
    pub expires_at: Option<Timestamp>,
}

/// An audit entry to record; the tenant comes from the handle it is recorded through.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub actor_user_id: Option<UserId>,
    pub actor: String,
    pub actor_key_id: Option<ApiKeyId>,
    pub action: String,
    pub target: String,
    pub client_ip: Option<String>,
    pub details: serde_json::Value,
}

/// Platform-wide operations: users, tenants, memberships and key lookup by secret.
#[async_trait]
pub trait Store: Catalog + DeploymentCatalog + UsageLedger + Send + Sync + std::fmt::Debug + 'static {
    /// Which backend this is (`sqlite` or `postgres`), for logs.
    fn backend(&self) -> &'static str;
    /// Cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<()>;

    /// Creates the user, their personal tenant (slug = username) and the owner membership in
    /// one transaction. The first user ever registered becomes platform admin.
    async fn register_user(&self, new: NewUser) -> Result<(User, Tenant)>;
    async fn user(&self, id: UserId) -> Result<User>;
    async fn user_by_username(&self, username: &str) -> Result<User>;
    /// Looks a user up by username or email, with the password hash.
    async fn credentials(&self, login: &str) -> Result<UserCredentials>;

    /// Creates an organisation owned by `owner`.
    async fn create_organization(&self, slug: &str, name: &str, owner: UserId) -> Result<Tenant>;
    async fn tenant_by_slug(&self, slug: &str) -> Result<Tenant>;
    async fn tenant(&self, id: TenantId) -> Result<Tenant>;
    /// Every tenant (platform admins only; callers check).
    async fn all_tenants(&self) -> Result<Vec<Tenant>>;
    /// The tenants `user` belongs to, with roles.
    async fn memberships(&self, user: UserId) -> Result<Vec<Membership>>;
    /// The user's role in the tenant, if a member.
    async fn role(&self, user: UserId, tenant: TenantId) -> Result<Option<Role>>;

    /// Finds an API key by the hash of its secret, with the user who created it
    /// (authentication; any tenant).
    async fn api_key_with_creator(&self, secret_hash: &str) -> Result<(ApiKey, User)>;

    /// A handle on one tenant's rows.
    fn scoped(&self, tenant: TenantId) -> Box<dyn TenantStore>;
}

/// Operations on the rows one tenant owns. Every query binds the handle's tenant id.
#[async_trait]
pub trait TenantStore: TenantModels + TenantDeployments + TenantUsage + Send + Sync + std::fmt::Debug {
    fn tenant_id(&self) -> TenantId;

    async fn members(&self) -> Result<Vec<Member>>;
    async fn member(&self, user: UserId) -> Result<Member>;
    /// Adds the user or changes their role.
    async fn set_member(&self, user: UserId, role: Role) -> Result<Member>;
    async fn remove_member(&self, user: UserId) -> Result<()>;
    async fn count_owners(&self) -> Result<u64>;

    async fn create_api_key(&self, new: NewApiKey) -> Result<ApiKey>;
    async fn api_keys(&self) -> Result<Vec<ApiKey>>;
    async fn api_key(&self, id: ApiKeyId) -> Result<ApiKey>;
    /// Marks the key revoked (idempotent: a revoked key keeps its first revocation time).
    async fn revoke_api_key(&self, id: ApiKeyId, at: Timestamp) -> Result<ApiKey>;
    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> Result<()>;
    /// Replaces the key's rate limits.
    async fn set_api_key_limits(&self, id: ApiKeyId, limits: maas_core::keys::RateLimits) -> Result<ApiKey>;

    async fn record_audit(&self, event: NewAuditEvent) -> Result<AuditEvent>;
    /// Newest first; `before` pages backwards from an entry id.
    async fn audit(&self, limit: u32, before: Option<maas_core::AuditId>) -> Result<Vec<AuditEvent>>;
}

/// Opens the store named by `url` (`sqlite:PATH` or `postgres://…`) and runs its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

pub(crate) fn tenant_kind(s: &str) -> Result<TenantKind> {
    TenantKind::parse(s).ok_or_else(|| StoreError::Corrupt { column: "tenants.kind", value: s.into() })
}
