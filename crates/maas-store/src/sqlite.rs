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
        // No ping before each acquire (sqlx's default): an embedded file cannot be cut off like a
        // socket, and the ping costs every statement a round trip to the connection's thread.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
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

/// Opens a write transaction with `BEGIN IMMEDIATE`: SQLite's write lock is taken at once,
/// waiting through the busy timeout while another connection writes.
async fn begin_write(pool: &sqlx::SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// Full-text condition: FTS5 over name and description. Each word of `q` becomes a quoted
/// prefix term, so user input can never be FTS5 syntax.
fn push_text_match(qb: &mut sqlx::QueryBuilder<sqlx::Sqlite>, q: &str) {
    let terms: Vec<String> =
        q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| format!("\"{w}\"*")).collect();
    qb.push("m.id IN (SELECT model_id FROM models_fts WHERE models_fts MATCH ").push_bind(terms.join(" ")).push(")");
}

/// Most usage records in one INSERT (27 binds each, under SQLite's limit of 32766 variables).
const USAGE_ROWS_PER_STATEMENT: usize = 500;

/// Usage records as multi-row INSERTs of at most [`USAGE_ROWS_PER_STATEMENT`] rows.
async fn insert_usage_rows(
    conn: &mut sqlx::SqliteConnection,
    records: &[maas_core::usage::UsageRecord],
    published: bool,
) -> Result<u64> {
    let mut inserted = 0;
    for chunk in records.chunks(USAGE_ROWS_PER_STATEMENT) {
        let mut qb =
            sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!("INSERT INTO usage_records ({USAGE_COLS}, published) "));
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.id.to_string())
                .push_bind(r.tenant_id.to_string())
                .push_bind(r.api_key_id.map(|k| k.to_string()))
                .push_bind(r.deployment_id.to_string())
                .push_bind(r.deployment.clone())
                .push_bind(r.version_id.to_string())
                .push_bind(r.model_version.clone())
                .push_bind(r.api.as_str())
                .push_bind(r.calls)
                .push_bind(r.input_tokens)
                .push_bind(r.output_tokens)
                .push_bind(r.compute_ms)
                .push_bind(r.gpu_ms)
                .push_bind(r.request_bytes)
                .push_bind(r.response_bytes)
                .push_bind(i32::from(r.status))
                .push_bind(r.error_code.clone())
                .push_bind(r.latency_us)
                .push_bind(r.at.timestamp_millis())
                .push_bind(r.billable)
                .push_bind(r.price.currency.clone())
                .push_bind(r.price.per_call)
                .push_bind(r.price.per_1k_input_tokens)
                .push_bind(r.price.per_1k_output_tokens)
                .push_bind(r.price.per_compute_second)
                .push_bind(r.cost_micros)
                .push_bind(published);
        });
        qb.push(" ON CONFLICT (id) DO NOTHING");
        inserted += qb.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}
