//! The SQL both backends share, written once and expanded per backend by [`sql_store!`].
//!
//! Queries use `$N` placeholders, which SQLite and PostgreSQL both accept, and only portable
//! types (TEXT, BIGINT, BOOLEAN): ids are UUID text, times are Unix milliseconds. What really
//! differs between the backends (connecting, pragmas, migrations) lives in `sqlite.rs` and
//! `postgres.rs`.

/// Implements [`crate::Store`] for `$Store` and defines `$Scoped`, its [`crate::TenantStore`].
macro_rules! sql_store {
    ($Store:ident, $Scoped:ident, $Db:ty, $backend:literal) => {
        use maas_core::audit::AuditEvent;
        use maas_core::identity::{Member, Membership, Role, Tenant, TenantKind, User};
        use maas_core::keys::{ApiKey, Scope};
        use maas_core::{ApiKeyId, AuditId, TenantId, Timestamp, UserId};
        use sqlx::Row as _;

        use crate::{Entity, NewApiKey, NewAuditEvent, NewUser, Result, StoreError, UserCredentials};

        type DbRow = <$Db as sqlx::Database>::Row;

        const USER_COLS: &str = "id, username, email, is_admin, created_at";
        const TENANT_COLS: &str = "id, slug, name, kind, created_at";
        const KEY_COLS: &str = "id, tenant_id, created_by, name, prefix, scopes, rpm_limit, tpm_limit, \
                                expires_at, revoked_at, last_used_at, created_at";
        const AUDIT_COLS: &str = "id, tenant_id, actor_user_id, actor, actor_key_id, action, \
                                  target, client_ip, details, at";

        /// A query whose text was assembled from the column-list constants above (never from
        /// input: values are always bound).
        fn q<'a>(sql: String) -> sqlx::query::Query<'a, $Db, <$Db as sqlx::Database>::Arguments> {
            sqlx::query(sqlx::AssertSqlSafe(sql))
        }

        fn parse_id<T: std::str::FromStr>(column: &'static str, s: String) -> Result<T> {
            s.parse().map_err(|_| StoreError::Corrupt { column, value: s })
        }

        fn id_col<T: std::str::FromStr>(row: &DbRow, column: &'static str) -> Result<T> {
            parse_id(column, row.try_get::<String, _>(column)?)
        }

        fn opt_id_col<T: std::str::FromStr>(row: &DbRow, column: &'static str) -> Result<Option<T>> {
            row.try_get::<Option<String>, _>(column)?.map(|s| parse_id(column, s)).transpose()
        }

        fn millis(column: &'static str, ms: i64) -> Result<Timestamp> {
            chrono::DateTime::from_timestamp_millis(ms).ok_or(StoreError::Corrupt { column, value: ms.to_string() })
        }

        fn ts_col(row: &DbRow, column: &'static str) -> Result<Timestamp> {
            millis(column, row.try_get::<i64, _>(column)?)
        }

        fn opt_ts_col(row: &DbRow, column: &'static str) -> Result<Option<Timestamp>> {
            row.try_get::<Option<i64>, _>(column)?.map(|ms| millis(column, ms)).transpose()
        }

        fn role_col(row: &DbRow, column: &'static str) -> Result<Role> {
            let s: String = row.try_get(column)?;
            Role::parse(&s).ok_or(StoreError::Corrupt { column, value: s })
        }

        fn user_row(row: &DbRow) -> Result<User> {
            Ok(User {
                id: id_col(row, "id")?,
                username: row.try_get("username")?,
                email: row.try_get("email")?,
                is_admin: row.try_get("is_admin")?,
                created_at: ts_col(row, "created_at")?,
            })
        }

        fn tenant_row(row: &DbRow) -> Result<Tenant> {
            let kind: String = row.try_get("kind")?;
            Ok(Tenant {
                id: id_col(row, "id")?,
                slug: row.try_get("slug")?,
                name: row.try_get("name")?,
                kind: crate::tenant_kind(&kind)?,
                created_at: ts_col(row, "created_at")?,
            })
        }

        fn key_row(row: &DbRow) -> Result<ApiKey> {
            let scopes: String = row.try_get("scopes")?;
            let scopes = scopes
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| Scope::parse(s).ok_or(StoreError::Corrupt { column: "api_keys.scopes", value: s.into() }))
                .collect::<Result<Vec<_>>>()?;
            Ok(ApiKey {
                id: id_col(row, "id")?,
                tenant_id: id_col(row, "tenant_id")?,
                created_by: id_col(row, "created_by")?,
                name: row.try_get("name")?,
                prefix: row.try_get("prefix")?,
                scopes,
                limits: maas_core::keys::RateLimits {
                    requests_per_minute: row.try_get("rpm_limit")?,
                    tokens_per_minute: row.try_get("tpm_limit")?,
                },
                expires_at: opt_ts_col(row, "expires_at")?,
                revoked_at: opt_ts_col(row, "revoked_at")?,
                last_used_at: opt_ts_col(row, "last_used_at")?,
                created_at: ts_col(row, "created_at")?,
            })
        }

        fn member_row(row: &DbRow) -> Result<Member> {
            Ok(Member {
                user_id: id_col(row, "user_id")?,
                username: row.try_get("username")?,
                role: role_col(row, "role")?,
                since: ts_col(row, "created_at")?,
            })
        }

        fn audit_row(row: &DbRow) -> Result<AuditEvent> {
            let details: String = row.try_get("details")?;
            Ok(AuditEvent {
                id: id_col(row, "id")?,
                tenant_id: id_col(row, "tenant_id")?,
                actor_user_id: opt_id_col(row, "actor_user_id")?,
                actor: row.try_get("actor")?,
                actor_key_id: opt_id_col(row, "actor_key_id")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                client_ip: row.try_get("client_ip")?,
                details: serde_json::from_str(&details)
                    .map_err(|_| StoreError::Corrupt { column: "audit_log.details", value: details })?,
                at: ts_col(row, "at")?,
            })
        }

        /// Maps "no row" to "`entity` not found", any other failure as usual.
        fn not_found(entity: Entity) -> impl FnOnce(sqlx::Error) -> StoreError {
            move |e| match e {
                sqlx::Error::RowNotFound => StoreError::NotFound(entity),
                e => e.into(),
            }
        }

        #[async_trait::async_trait]
        impl crate::Store for $Store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn register_user(&self, new: NewUser) -> Result<(User, Tenant)> {
                let now = maas_core::now();
                let user_id = UserId::new();
                let tenant_id = TenantId::new();
                let mut tx = begin_write(&self.pool).await?;
                let row = q(format!(
                    "INSERT INTO users (id, username, email, password_hash, is_admin, created_at) \
                     VALUES ($1, $2, $3, $4, (SELECT COUNT(*) = 0 FROM users), $5) \
                     RETURNING {USER_COLS}"
                ))
                .bind(user_id.to_string())
                .bind(&new.username)
                .bind(&new.email)
                .bind(&new.password_hash)
                .bind(now.timestamp_millis())
                .fetch_one(&mut *tx)
                .await?;
                let user = user_row(&row)?;
                let row = q(format!(
                    "INSERT INTO tenants (id, slug, name, kind, created_at) \
                     VALUES ($1, $2, $2, 'personal', $3) RETURNING {TENANT_COLS}"
                ))
                .bind(tenant_id.to_string())
                .bind(&new.username)
                .bind(now.timestamp_millis())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| match StoreError::from(e) {
                    // An organisation already holds this name: it is the username that is taken.
                    StoreError::Conflict(_) => StoreError::Conflict(crate::Conflict::Username),
                    e => e,
                })?;
                let tenant = tenant_row(&row)?;
                sqlx::query(
                    "INSERT INTO memberships (tenant_id, user_id, role, created_at) \
                     VALUES ($1, $2, 'owner', $3)",
                )
                .bind(tenant_id.to_string())
                .bind(user_id.to_string())
                .bind(now.timestamp_millis())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok((user, tenant))
            }

            async fn user(&self, id: UserId) -> Result<User> {
                let row = q(format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
                    .bind(id.to_string())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(not_found(Entity::User))?;
                user_row(&row)
            }

            async fn user_by_username(&self, username: &str) -> Result<User> {
                let row = q(format!("SELECT {USER_COLS} FROM users WHERE username = $1"))
                    .bind(username)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(not_found(Entity::User))?;
                user_row(&row)
            }

            async fn credentials(&self, login: &str) -> Result<UserCredentials> {
                let row = q(format!("SELECT {USER_COLS}, password_hash FROM users WHERE username = $1 OR email = $1"))
                    .bind(login)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(not_found(Entity::User))?;
                Ok(UserCredentials { user: user_row(&row)?, password_hash: row.try_get("password_hash")? })
            }

            async fn create_organization(&self, slug: &str, name: &str, owner: UserId) -> Result<Tenant> {
                let now = maas_core::now().timestamp_millis();
                let id = TenantId::new();
                let mut tx = begin_write(&self.pool).await?;
                let row = q(format!(
                    "INSERT INTO tenants (id, slug, name, kind, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING {TENANT_COLS}"
                ))
                .bind(id.to_string())
                .bind(slug)
                .bind(name)
                .bind(TenantKind::Organization.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let tenant = tenant_row(&row)?;
                sqlx::query(
                    "INSERT INTO memberships (tenant_id, user_id, role, created_at) \
                     VALUES ($1, $2, 'owner', $3)",
                )
                .bind(id.to_string())
                .bind(owner.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(tenant)
            }

            async fn tenant_by_slug(&self, slug: &str) -> Result<Tenant> {
                let row = q(format!("SELECT {TENANT_COLS} FROM tenants WHERE slug = $1"))
                    .bind(slug)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(not_found(Entity::Tenant))?;
                tenant_row(&row)
            }

            async fn tenant(&self, id: TenantId) -> Result<Tenant> {
                let row = q(format!("SELECT {TENANT_COLS} FROM tenants WHERE id = $1"))
                    .bind(id.to_string())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(not_found(Entity::Tenant))?;
                tenant_row(&row)
            }

            async fn all_tenants(&self) -> Result<Vec<Tenant>> {
                q(format!("SELECT {TENANT_COLS} FROM tenants ORDER BY slug"))
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(tenant_row)
                    .collect()
            }

            async fn memberships(&self, user: UserId) -> Result<Vec<Membership>> {
                sqlx::query(
                    "SELECT t.id, t.slug, t.name, t.kind, t.created_at, m.role \
                     FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
                     WHERE m.user_id = $1 ORDER BY t.kind DESC, t.slug",
                )
                .bind(user.to_string())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|row| Ok(Membership { tenant: tenant_row(row)?, role: role_col(row, "role")? }))
                .collect()
            }

            async fn role(&self, user: UserId, tenant: TenantId) -> Result<Option<Role>> {
                sqlx::query("SELECT role FROM memberships WHERE user_id = $1 AND tenant_id = $2")
                    .bind(user.to_string())
                    .bind(tenant.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|row| role_col(&row, "role"))
                    .transpose()
            }

            async fn api_key_with_creator(&self, secret_hash: &str) -> Result<(ApiKey, User)> {
                // One round trip on the authentication hot path: the key and its creator.
                let row = sqlx::query(
                    "SELECT k.id, k.tenant_id, k.created_by, k.name, k.prefix, k.scopes, k.rpm_limit, k.tpm_limit, \
                     k.expires_at, \
                     k.revoked_at, k.last_used_at, k.created_at, u.username AS u_username, u.email AS u_email, \
                     u.is_admin AS u_is_admin, u.created_at AS u_created_at \
                     FROM api_keys k JOIN users u ON u.id = k.created_by WHERE k.secret_hash = $1",
                )
                .bind(secret_hash)
                .fetch_one(&self.pool)
                .await
                .map_err(not_found(Entity::ApiKey))?;
                let key = key_row(&row)?;
                let user = User {
                    id: key.created_by,
                    username: row.try_get("u_username")?,
                    email: row.try_get("u_email")?,
                    is_admin: row.try_get("u_is_admin")?,
                    created_at: ts_col(&row, "u_created_at")?,
                };
                Ok((key, user))
            }

            fn scoped(&self, tenant: TenantId) -> Box<dyn crate::TenantStore> {
                Box::new($Scoped { pool: self.pool.clone(), tenant })
            }
        }

        /// The tenant-bound handle of this backend. Every query binds `self.tenant`.
        #[derive(Debug)]
        pub struct $Scoped {
            pool: sqlx::Pool<$Db>,
            tenant: TenantId,
        }

        #[async_trait::async_trait]
        impl crate::TenantStore for $Scoped {
            fn tenant_id(&self) -> TenantId {
                self.tenant
            }

            async fn members(&self) -> Result<Vec<Member>> {
                sqlx::query(
                    "SELECT m.user_id, u.username, m.role, m.created_at \
                     FROM memberships m JOIN users u ON u.id = m.user_id \
                     WHERE m.tenant_id = $1 ORDER BY m.created_at, u.username",
                )
                .bind(self.tenant.to_string())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(member_row)
                .collect()
            }

            async fn member(&self, user: UserId) -> Result<Member> {
                let row = sqlx::query(
                    "SELECT m.user_id, u.username, m.role, m.created_at \
                     FROM memberships m JOIN users u ON u.id = m.user_id \
                     WHERE m.tenant_id = $1 AND m.user_id = $2",
                )
                .bind(self.tenant.to_string())
                .bind(user.to_string())
                .fetch_one(&self.pool)
                .await
                .map_err(not_found(Entity::Member))?;
                member_row(&row)
            }

            async fn set_member(&self, user: UserId, role: Role) -> Result<Member> {
                sqlx::query(
                    "INSERT INTO memberships (tenant_id, user_id, role, created_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
                )
                .bind(self.tenant.to_string())
                .bind(user.to_string())
                .bind(role.as_str())
                .bind(maas_core::now().timestamp_millis())
                .execute(&self.pool)
                .await?;
                self.member(user).await
            }

            async fn remove_member(&self, user: UserId) -> Result<()> {
                let done = sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                    .bind(self.tenant.to_string())
                    .bind(user.to_string())
                    .execute(&self.pool)
                    .await?;
                crate::error::found(done.rows_affected(), Entity::Member)
            }

            async fn count_owners(&self) -> Result<u64> {
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE tenant_id = $1 AND role = 'owner'")
                        .bind(self.tenant.to_string())
                        .fetch_one(&self.pool)
                        .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn create_api_key(&self, new: NewApiKey) -> Result<ApiKey> {
                let scopes: Vec<&str> = new.scopes.iter().map(|s| s.as_str()).collect();
                let row = q(format!(
                    "INSERT INTO api_keys (id, tenant_id, created_by, name, prefix, secret_hash, \
                     scopes, expires_at, created_at, rpm_limit, tpm_limit) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {KEY_COLS}"
                ))
                .bind(ApiKeyId::new().to_string())
                .bind(self.tenant.to_string())
                .bind(new.created_by.to_string())
                .bind(&new.name)
                .bind(&new.prefix)
                .bind(&new.secret_hash)
                .bind(scopes.join(","))
                .bind(new.expires_at.map(|t| t.timestamp_millis()))
                .bind(maas_core::now().timestamp_millis())
                .bind(new.limits.requests_per_minute)
                .bind(new.limits.tokens_per_minute)
                .fetch_one(&self.pool)
                .await?;
                key_row(&row)
            }

            async fn api_keys(&self) -> Result<Vec<ApiKey>> {
                q(format!("SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"))
                    .bind(self.tenant.to_string())
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(key_row)
                    .collect()
            }

            async fn api_key(&self, id: ApiKeyId) -> Result<ApiKey> {
                let row = q(format!("SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 AND id = $2"))
                    .bind(self.tenant.to_string())
                    .bind(id.to_string())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(not_found(Entity::ApiKey))?;
                key_row(&row)
            }

            async fn revoke_api_key(&self, id: ApiKeyId, at: Timestamp) -> Result<ApiKey> {
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(self.tenant.to_string())
                .bind(id.to_string())
                .bind(at.timestamp_millis())
                .execute(&self.pool)
                .await?;
                crate::error::found(done.rows_affected(), Entity::ApiKey)?;
                self.api_key(id).await
            }

            async fn set_api_key_limits(&self, id: ApiKeyId, limits: maas_core::keys::RateLimits) -> Result<ApiKey> {
                let done =
                    sqlx::query("UPDATE api_keys SET rpm_limit = $3, tpm_limit = $4 WHERE tenant_id = $1 AND id = $2")
                        .bind(self.tenant.to_string())
                        .bind(id.to_string())
                        .bind(limits.requests_per_minute)
                        .bind(limits.tokens_per_minute)
                        .execute(&self.pool)
                        .await?;
                crate::error::found(done.rows_affected(), Entity::ApiKey)?;
                self.api_key(id).await
            }

            async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> Result<()> {
                sqlx::query("UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(id.to_string())
                    .bind(at.timestamp_millis())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn record_audit(&self, event: NewAuditEvent) -> Result<AuditEvent> {
                let row = q(format!(
                    "INSERT INTO audit_log (id, tenant_id, actor_user_id, actor, actor_key_id, \
                     action, target, client_ip, details, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {AUDIT_COLS}"
                ))
                .bind(AuditId::new().to_string())
                .bind(self.tenant.to_string())
                .bind(event.actor_user_id.map(|id| id.to_string()))
                .bind(&event.actor)
                .bind(event.actor_key_id.map(|id| id.to_string()))
                .bind(&event.action)
                .bind(&event.target)
                .bind(&event.client_ip)
                .bind(event.details.to_string())
                .bind(maas_core::now().timestamp_millis())
                .fetch_one(&self.pool)
                .await?;
                audit_row(&row)
            }

            async fn audit(&self, limit: u32, before: Option<AuditId>) -> Result<Vec<AuditEvent>> {
                // UUIDv7 text sorts in creation order, so the id is also the page cursor.
                let before = before.map(|id| id.to_string()).unwrap_or_else(|| "~".into());
                q(format!(
                    "SELECT {AUDIT_COLS} FROM audit_log WHERE tenant_id = $1 AND id < $2 \
                     ORDER BY id DESC LIMIT $3"
                ))
                .bind(self.tenant.to_string())
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(audit_row)
                .collect()
            }
        }
    };
}

pub(crate) use sql_store;
