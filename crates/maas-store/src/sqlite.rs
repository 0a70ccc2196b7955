//! `SqliteStore`: the embedded default, one file under the data dir, WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Metadata in a SQLite file. `synchronous = FULL`: a committed write survives a crash.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite:PATH` or
    /// `sqlite::memory:`) and runs the migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

crate::sql::sql_store!(SqliteStore, SqliteTenantStore, sqlx::Sqlite, "sqlite");
crate::sql_registry::sql_registry!(SqliteStore, SqliteTenantStore, sqlx::Sqlite);
crate::sql_deployments::sql_deployments!(SqliteStore, SqliteTenantStore, sqlx::Sqlite);
crate::sql_usage::sql_usage!(SqliteStore, SqliteTenantStore, sqlx::Sqlite);

/// Full-text condition: FTS5 over name and description. Each word of `q` becomes a quoted
/// prefix term, so user input can never be FTS5 syntax.
fn push_text_match(qb: &mut sqlx::QueryBuilder<sqlx::Sqlite>, q: &str) {
    let terms: Vec<String> =
        q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| format!("\"{w}\"*")).collect();
    qb.push("m.id IN (SELECT model_id FROM models_fts WHERE models_fts MATCH ").push_bind(terms.join(" ")).push(")");
}
