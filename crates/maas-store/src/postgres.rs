//! `PostgresStore`: the scaled-out metadata store, shared by every gateway instance.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

/// Metadata in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: sqlx::PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and runs the migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

crate::sql::sql_store!(PostgresStore, PostgresTenantStore, sqlx::Postgres, "postgres");
crate::sql_registry::sql_registry!(PostgresStore, PostgresTenantStore, sqlx::Postgres);
crate::sql_deployments::sql_deployments!(PostgresStore, PostgresTenantStore, sqlx::Postgres);
crate::sql_usage::sql_usage!(PostgresStore, PostgresTenantStore, sqlx::Postgres);

/// Full-text condition: the generated `search` tsvector, with every word of `q` required.
fn push_text_match(qb: &mut sqlx::QueryBuilder<sqlx::Postgres>, q: &str) {
    qb.push("m.search @@ plainto_tsquery('simple', ").push_bind(q.replace('-', " ")).push(")");
}
