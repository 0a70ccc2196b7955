//! The metering SQL both backends share, expanded per backend by [`sql_usage!`] in the same
//! module as [`crate::sql::sql_store!`] (whose row helpers it reuses).

/// Implements [`crate::UsageLedger`] for `$Store` and [`crate::TenantUsage`] for `$Scoped`.
macro_rules! sql_usage {
    ($Store:ident, $Scoped:ident, $Db:ty) => {
        use maas_core::billing::{Budget, Invoice, InvoiceStatus, PricePlan};
        use maas_core::usage::{InferenceApi, UsageRecord};

        use crate::usage::{BillingRow, UsageGrouping, UsageRow, UsageTotals};

        const USAGE_COLS: &str = "id, tenant_id, api_key_id, deployment_id, deployment, version_id, model_version, \
             api, calls, input_tokens, output_tokens, compute_ms, gpu_ms, request_bytes, response_bytes, status, \
             error_code, latency_us, at, billable, currency, price_call, price_input_1k, price_output_1k, \
             price_compute_second, cost_micros";

        fn usage_row(row: &DbRow) -> Result<UsageRecord> {
            let api: String = row.try_get("api")?;
            let status: i32 = row.try_get("status")?;
            Ok(UsageRecord {
                id: id_col(row, "id")?,
                tenant_id: id_col(row, "tenant_id")?,
                api_key_id: opt_id_col(row, "api_key_id")?,
                deployment_id: id_col(row, "deployment_id")?,
                deployment: row.try_get("deployment")?,
                version_id: id_col(row, "version_id")?,
                model_version: row.try_get("model_version")?,
                api: InferenceApi::parse(&api)
                    .ok_or(StoreError::Corrupt { column: "usage_records.api", value: api })?,
                calls: row.try_get("calls")?,
                input_tokens: row.try_get("input_tokens")?,
                output_tokens: row.try_get("output_tokens")?,
                compute_ms: row.try_get("compute_ms")?,
                gpu_ms: row.try_get("gpu_ms")?,
                request_bytes: row.try_get("request_bytes")?,
                response_bytes: row.try_get("response_bytes")?,
                status: u16::try_from(status)
                    .map_err(|_| StoreError::Corrupt { column: "usage_records.status", value: status.to_string() })?,
                error_code: row.try_get("error_code")?,
                latency_us: row.try_get("latency_us")?,
                at: ts_col(row, "at")?,
                billable: row.try_get("billable")?,
                price: PricePlan {
                    currency: row.try_get("currency")?,
                    per_call: row.try_get("price_call")?,
                    per_1k_input_tokens: row.try_get("price_input_1k")?,
                    per_1k_output_tokens: row.try_get("price_output_1k")?,
                    per_compute_second: row.try_get("price_compute_second")?,
                },
                cost_micros: row.try_get("cost_micros")?,
            })
        }

        #[async_trait::async_trait]
        impl crate::UsageLedger for $Store {
            async fn insert_usage(&self, records: &[UsageRecord], published: bool) -> Result<u64> {
                if records.len() <= USAGE_ROWS_PER_STATEMENT {
                    // One statement is atomic by itself: no BEGIN and COMMIT round trips, so a
                    // lone caller waits for one statement and the log flush, nothing more.
                    let mut conn = self.pool.acquire().await?;
                    return insert_usage_rows(&mut conn, records, published).await;
                }
                let mut tx = begin_write(&self.pool).await?;
                // How many rows go in one statement differs per backend (`insert_usage_rows`).
                let inserted = insert_usage_rows(&mut tx, records, published).await?;
                tx.commit().await?;
                Ok(inserted)
            }

            async fn unpublished_usage(&self, limit: u32) -> Result<Vec<UsageRecord>> {
                q(format!("SELECT {USAGE_COLS} FROM usage_records WHERE published = FALSE ORDER BY at, id LIMIT $1"))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(usage_row)
                    .collect()
            }

            async fn mark_published(&self, ids: &[uuid::Uuid]) -> Result<()> {
                for chunk in ids.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$Db>::new("UPDATE usage_records SET published = TRUE WHERE id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(id.to_string());
                    }
                    qb.push(")");
                    qb.build().execute(&self.pool).await?;
                }
                Ok(())
            }
        }

        const SUMS: &str = "COUNT(*) AS requests, \
             CAST(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT) AS errors, \
             CAST(SUM(calls) AS BIGINT) AS calls, CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
             CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, CAST(SUM(compute_ms) AS BIGINT) AS compute_ms, \
             CAST(SUM(request_bytes) AS BIGINT) AS request_bytes, \
             CAST(SUM(response_bytes) AS BIGINT) AS response_bytes, \
             CAST(SUM(CASE WHEN billable THEN cost_micros ELSE 0 END) AS BIGINT) AS cost_micros";

        fn sum_col(row: &DbRow, column: &str) -> Result<i64> {
            Ok(row.try_get::<Option<i64>, _>(column)?.unwrap_or(0))
        }

        #[async_trait::async_trait]
        impl crate::TenantUsage for $Scoped {
            async fn usage_summary(
                &self,
                from: Timestamp,
                to: Timestamp,
                group_by: UsageGrouping,
            ) -> Result<Vec<UsageRow>> {
                let key = match group_by {
                    UsageGrouping::Day => "CAST(at / 86400000 AS TEXT)",
                    UsageGrouping::Deployment => "deployment",
                    UsageGrouping::Key => "COALESCE(api_key_id, 'session')",
                    UsageGrouping::Model => "model_version",
                };
                let rows = q(format!(
                    "SELECT {key} AS grp, currency, {SUMS} FROM usage_records \
                     WHERE tenant_id = $1 AND at >= $2 AND at < $3 GROUP BY {key}, currency ORDER BY {key}, currency"
                ))
                .bind(self.tenant.to_string())
                .bind(from.timestamp_millis())
                .bind(to.timestamp_millis())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let mut group: String = row.try_get("grp")?;
                        if group_by == UsageGrouping::Day {
                            let day: i64 = group
                                .parse()
                                .map_err(|_| StoreError::Corrupt { column: "usage_records.at", value: group.clone() })?;
                            group = millis("usage_records.at", day * 86_400_000)?.format("%Y-%m-%d").to_string();
                        }
                        Ok(UsageRow {
                            group,
                            currency: row.try_get("currency")?,
                            requests: row.try_get("requests")?,
                            errors: sum_col(row, "errors")?,
                            calls: sum_col(row, "calls")?,
                            input_tokens: sum_col(row, "input_tokens")?,
                            output_tokens: sum_col(row, "output_tokens")?,
                            compute_ms: sum_col(row, "compute_ms")?,
                            request_bytes: sum_col(row, "request_bytes")?,
                            response_bytes: sum_col(row, "response_bytes")?,
                            cost_micros: sum_col(row, "cost_micros")?,
                        })
                    })
                    .collect()
            }

            async fn usage_records(
                &self,
                from: Timestamp,
                to: Timestamp,
                after: Option<(Timestamp, uuid::Uuid)>,
                limit: u32,
            ) -> Result<Vec<UsageRecord>> {
                let (after_at, after_id) = match after {
                    Some((at, id)) => (at.timestamp_millis(), id.to_string()),
                    None => (i64::MIN, String::new()),
                };
                q(format!(
                    "SELECT {USAGE_COLS} FROM usage_records WHERE tenant_id = $1 AND at >= $2 AND at < $3 \
                     AND (at > $4 OR (at = $4 AND id > $5)) ORDER BY at, id LIMIT $6"
                ))
                .bind(self.tenant.to_string())
                .bind(from.timestamp_millis())
                .bind(to.timestamp_millis())
                .bind(after_at)
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(usage_row)
                .collect()
            }

            async fn usage_totals(&self, from: Timestamp, to: Timestamp, currency: &str) -> Result<UsageTotals> {
                let row = sqlx::query(
                    "SELECT CAST(SUM(calls) AS BIGINT) AS calls, \
                     CAST(SUM(input_tokens + output_tokens) AS BIGINT) AS tokens, \
                     CAST(SUM(gpu_ms) AS BIGINT) AS gpu_ms, \
                     CAST(SUM(CASE WHEN billable AND currency = $4 THEN cost_micros ELSE 0 END) AS BIGINT) AS cost \
                     FROM usage_records WHERE tenant_id = $1 AND at >= $2 AND at < $3",
                )
                .bind(self.tenant.to_string())
                .bind(from.timestamp_millis())
                .bind(to.timestamp_millis())
                .bind(currency)
                .fetch_one(&self.pool)
                .await?;
                Ok(UsageTotals {
                    calls: sum_col(&row, "calls")?,
                    tokens: sum_col(&row, "tokens")?,
                    gpu_ms: sum_col(&row, "gpu_ms")?,
                    cost_micros: sum_col(&row, "cost")?,
                })
            }

            async fn billing_rows(&self, from: Timestamp, to: Timestamp) -> Result<Vec<BillingRow>> {
                let rows = sqlx::query(
                    "SELECT deployment, currency, price_call, price_input_1k, price_output_1k, price_compute_second, \
                     CAST(SUM(calls) AS BIGINT) AS calls, CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
                     CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
                     CAST(SUM(compute_ms) AS BIGINT) AS compute_ms \
                     FROM usage_records WHERE tenant_id = $1 AND at >= $2 AND at < $3 AND billable \
                     GROUP BY deployment, currency, price_call, price_input_1k, price_output_1k, price_compute_second \
                     ORDER BY deployment, currency, price_call, price_input_1k, price_output_1k, price_compute_second",
                )
                .bind(self.tenant.to_string())
                .bind(from.timestamp_millis())
                .bind(to.timestamp_millis())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(BillingRow {
                            deployment: row.try_get("deployment")?,
                            currency: row.try_get("currency")?,
                            price_call: row.try_get("price_call")?,
                            price_input_1k: row.try_get("price_input_1k")?,
                            price_output_1k: row.try_get("price_output_1k")?,
                            price_compute_second: row.try_get("price_compute_second")?,
                            calls: sum_col(row, "calls")?,
                            input_tokens: sum_col(row, "input_tokens")?,
                            output_tokens: sum_col(row, "output_tokens")?,
                            compute_ms: sum_col(row, "compute_ms")?,
                        })
                    })
                    .collect()
            }

            async fn budget(&self) -> Result<Option<Budget>> {
                let row = sqlx::query("SELECT currency, soft_limit, hard_limit FROM tenant_budgets WHERE tenant_id = $1")
                    .bind(self.tenant.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| {
                    Ok(Budget {
                        currency: row.try_get("currency")?,
                        soft_limit: row.try_get("soft_limit")?,
                        hard_limit: row.try_get("hard_limit")?,
                    })
                })
                .transpose()
            }

            async fn set_budget(&self, budget: Option<&Budget>) -> Result<()> {
                match budget {
                    None => {
                        sqlx::query("DELETE FROM tenant_budgets WHERE tenant_id = $1")
                            .bind(self.tenant.to_string())
                            .execute(&self.pool)
                            .await?;
                    }
                    Some(b) => {
                        sqlx::query(
                            "INSERT INTO tenant_budgets (tenant_id, currency, soft_limit, hard_limit) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET \
                             currency = excluded.currency, soft_limit = excluded.soft_limit, \
                             hard_limit = excluded.hard_limit",
                        )
                        .bind(self.tenant.to_string())
                        .bind(&b.currency)
                        .bind(b.soft_limit)
                        .bind(b.hard_limit)
                        .execute(&self.pool)
                        .await?;
                    }
                }
                Ok(())
            }

            async fn mark_budget_alerted(&self, period: &str) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE tenant_budgets SET alerted = $2 WHERE tenant_id = $1 AND (alerted IS NULL OR alerted <> $2)",
                )
                .bind(self.tenant.to_string())
                .bind(period)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn stored_invoice(&self, id: &str) -> Result<Option<Invoice>> {
                let row = sqlx::query("SELECT id, period, currency, total, lines FROM invoices WHERE tenant_id = $1 AND id = $2")
                    .bind(self.tenant.to_string())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| {
                    let lines: String = row.try_get("lines")?;
                    Ok(Invoice {
                        id: row.try_get("id")?,
                        period: row.try_get("period")?,
                        currency: row.try_get("currency")?,
                        status: InvoiceStatus::Closed,
                        lines: serde_json::from_str(&lines)
                            .map_err(|_| StoreError::Corrupt { column: "invoices.lines", value: lines })?,
                        total: row.try_get("total")?,
                    })
                })
                .transpose()
            }

            async fn store_invoice(&self, invoice: &Invoice) -> Result<Invoice> {
                let lines = serde_json::to_string(&invoice.lines)
                    .map_err(|e| StoreError::Corrupt { column: "invoices.lines", value: e.to_string() })?;
                sqlx::query(
                    "INSERT INTO invoices (tenant_id, id, period, currency, total, lines, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, id) DO NOTHING",
                )
                .bind(self.tenant.to_string())
                .bind(&invoice.id)
                .bind(&invoice.period)
                .bind(&invoice.currency)
                .bind(invoice.total)
                .bind(lines)
                .bind(maas_core::now().timestamp_millis())
                .execute(&self.pool)
                .await?;
                self.stored_invoice(&invoice.id).await?.ok_or(StoreError::NotFound(Entity::Invoice))
            }
        }
    };
}

pub(crate) use sql_usage;
