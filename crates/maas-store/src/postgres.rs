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
