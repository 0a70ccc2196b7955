//! Store errors, and how database failures map onto them.

use maas_core::{Coded, ErrorCode};

/// Which kind of row was not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    User,
    Tenant,
    ApiKey,
    Member,
    Model,
    Version,
    File,
    Deployment,
    Invoice,
}

/// Which uniqueness rule a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Username,
    Email,
    TenantSlug,
    ModelName,
    Version,
    Deployment,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0:?} not found")]
    NotFound(Entity),
    #[error("{}", match .0 {
        Conflict::Username => "that username is taken",
        Conflict::Email => "that email address is already registered",
        Conflict::TenantSlug => "that tenant slug is taken",
        Conflict::ModelName => "the tenant already has a model with that name",
        Conflict::Version => "the model already has that version",
        Conflict::Deployment => "the tenant already has a deployment with that name",
    })]
    Conflict(Conflict),
    #[error("the version is published and can no longer change")]
    VersionNotDraft,
    #[error("database URL must start with sqlite: or postgres://")]
    UnsupportedUrl,
    #[error("database unreachable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unexpected value {value:?} in {column}")]
    Corrupt { column: &'static str, value: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::Database(e),
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => StoreError::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                // SQLite names the column in the message ("UNIQUE constraint failed:
                // users.email"); PostgreSQL names the constraint ("users_email_key").
                let what = db.constraint().map(str::to_owned).unwrap_or_else(|| db.message().to_owned());
                if what.contains("deployments") {
                    StoreError::Conflict(Conflict::Deployment)
                } else if what.contains("model_versions") {
                    StoreError::Conflict(Conflict::Version)
                } else if what.contains("models") {
                    StoreError::Conflict(Conflict::ModelName)
                } else if what.contains("email") {
                    StoreError::Conflict(Conflict::Email)
                } else if what.contains("username") {
                    StoreError::Conflict(Conflict::Username)
                } else if what.contains("slug") {
                    StoreError::Conflict(Conflict::TenantSlug)
                } else {
                    StoreError::Database(e)
                }
            }
            _ => StoreError::Database(e),
        }
    }
}

impl Coded for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound(Entity::User) => ErrorCode::UserNotFound,
            StoreError::NotFound(Entity::Tenant) => ErrorCode::TenantNotFound,
            StoreError::NotFound(Entity::ApiKey) => ErrorCode::ApiKeyNotFound,
            StoreError::NotFound(Entity::Member) => ErrorCode::MemberNotFound,
            StoreError::NotFound(Entity::Model) => ErrorCode::ModelNotFound,
            StoreError::NotFound(Entity::Version) => ErrorCode::VersionNotFound,
            StoreError::NotFound(Entity::File) => ErrorCode::FileNotFound,
            StoreError::NotFound(Entity::Deployment) => ErrorCode::DeploymentNotFound,
            StoreError::NotFound(Entity::Invoice) => ErrorCode::InvoiceNotFound,
            StoreError::Conflict(Conflict::Deployment) => ErrorCode::DeploymentExists,
            StoreError::Conflict(Conflict::ModelName) => ErrorCode::ModelExists,
            StoreError::Conflict(Conflict::Version) => ErrorCode::VersionExists,
            StoreError::VersionNotDraft => ErrorCode::VersionImmutable,
            StoreError::Conflict(Conflict::Username) => ErrorCode::UsernameTaken,
            StoreError::Conflict(Conflict::Email) => ErrorCode::EmailTaken,
            StoreError::Conflict(Conflict::TenantSlug) => ErrorCode::TenantSlugTaken,
            StoreError::Unavailable(_) => ErrorCode::ServiceUnavailable,
            StoreError::UnsupportedUrl
            | StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::Corrupt { .. } => ErrorCode::Internal,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        matches!(self, StoreError::Unavailable(_)).then_some(5)
    }
}

/// `Ok` when a write touched a row, else "`entity` not found" (the row is absent or belongs to
/// another tenant).
pub(crate) fn found(rows_affected: u64, entity: Entity) -> Result<(), StoreError> {
    if rows_affected == 0 { Err(StoreError::NotFound(entity)) } else { Ok(()) }
}
