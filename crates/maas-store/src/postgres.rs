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

/// Opens a write transaction (PostgreSQL's row locks need nothing more than `BEGIN`).
async fn begin_write(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    Ok(pool.begin().await?)
}

/// Full-text condition: the generated `search` tsvector, with every word of `q` required.
fn push_text_match(qb: &mut sqlx::QueryBuilder<sqlx::Postgres>, q: &str) {
    qb.push("m.search @@ plainto_tsquery('simple', ").push_bind(q.replace('-', " ")).push(")");
}

/// Every batch of usage records is one statement (below).
const USAGE_ROWS_PER_STATEMENT: usize = usize::MAX;

/// Usage records as one INSERT of column arrays (`UNNEST`): one statement text whatever the
/// batch size, so it is prepared once and PostgreSQL does not plan thousands of parameters.
async fn insert_usage_rows(
    conn: &mut sqlx::PgConnection,
    records: &[maas_core::usage::UsageRecord],
    published: bool,
) -> Result<u64> {
    fn col<T>(records: &[maas_core::usage::UsageRecord], f: impl Fn(&maas_core::usage::UsageRecord) -> T) -> Vec<T> {
        records.iter().map(f).collect()
    }
    let done = sqlx::query(
        "INSERT INTO usage_records (id, tenant_id, api_key_id, deployment_id, deployment, version_id, model_version, \
         api, calls, input_tokens, output_tokens, compute_ms, gpu_ms, request_bytes, response_bytes, status, \
         error_code, latency_us, at, billable, currency, price_call, price_input_1k, price_output_1k, \
         price_compute_second, cost_micros, published) \
         SELECT *, $27 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], \
         $14::bigint[], $15::bigint[], $16::int[], $17::text[], $18::bigint[], $19::bigint[], $20::boolean[], \
         $21::text[], $22::bigint[], $23::bigint[], $24::bigint[], $25::bigint[], $26::bigint[]) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(col(records, |r| r.id.to_string()))
    .bind(col(records, |r| r.tenant_id.to_string()))
    .bind(col(records, |r| r.api_key_id.map(|k| k.to_string())))
    .bind(col(records, |r| r.deployment_id.to_string()))
    .bind(col(records, |r| r.deployment.clone()))
    .bind(col(records, |r| r.version_id.to_string()))
    .bind(col(records, |r| r.model_version.clone()))
    .bind(col(records, |r| r.api.as_str().to_owned()))
    .bind(col(records, |r| r.calls))
    .bind(col(records, |r| r.input_tokens))
    .bind(col(records, |r| r.output_tokens))
    .bind(col(records, |r| r.compute_ms))
    .bind(col(records, |r| r.gpu_ms))
    .bind(col(records, |r| r.request_bytes))
    .bind(col(records, |r| r.response_bytes))
    .bind(col(records, |r| i32::from(r.status)))
    .bind(col(records, |r| r.error_code.clone()))
    .bind(col(records, |r| r.latency_us))
    .bind(col(records, |r| r.at.timestamp_millis()))
    .bind(col(records, |r| r.billable))
    .bind(col(records, |r| r.price.currency.clone()))
    .bind(col(records, |r| r.price.per_call))
    .bind(col(records, |r| r.price.per_1k_input_tokens))
    .bind(col(records, |r| r.price.per_1k_output_tokens))
    .bind(col(records, |r| r.price.per_compute_second))
    .bind(col(records, |r| r.cost_micros))
    .bind(published)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
