//! `/api/v1/tenants/{tenant}/usage`: metered usage, summed per day, deployment, API key or
//! model (members), and the raw usage records (`/usage/records`, for exports and audits).

use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use maas_auth::Caller;
use maas_core::ErrorCode;
use maas_core::identity::Role;
use maas_core::keys::Scope;
use maas_core::usage::UsageRecord;
use maas_store::UsageGrouping;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Start (inclusive): RFC 3339 or `YYYY-MM-DD` (UTC). Default: the first of this month.
    pub from: Option<String>,
    /// End (exclusive): RFC 3339 or `YYYY-MM-DD`. Default: now.
    pub to: Option<String>,
    /// `day` (default), `deployment`, `key` or `model`.
    pub group_by: Option<String>,
}

/// Usage of one group in one currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageGroup {
    /// The day, deployment, API key id (`session` for session calls) or model version.
    pub group: String,
    pub requests: i64,
    pub errors: i64,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub compute_ms: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
    /// Billable cost in micro-units of `currency`.
    pub cost: i64,
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSummary {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: String,
    pub data: Vec<UsageGroup>,
}

fn bad_query(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

/// A time given as RFC 3339 or as a UTC date.
fn instant(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| bad_query(format!("{name}: '{value}' is neither RFC 3339 nor YYYY-MM-DD")))
}

fn range(from: Option<&str>, to: Option<&str>) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let now = Utc::now();
    let month_start = maas_metering::billing::month_bounds(&now.format("%Y-%m").to_string()).map_or(now, |(s, _)| s);
    let from = from.map(|v| instant("from", v)).transpose()?.unwrap_or(month_start);
    let to = to.map(|v| instant("to", v)).transpose()?.unwrap_or(now + chrono::Duration::milliseconds(1));
    if from >= to {
        return Err(bad_query("from must be before to".into()));
    }
    Ok((from, to))
}

/// Usage summed per group over a period.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/usage", tag = "usage",
    params(("tenant" = String, Path, description = "tenant slug"), UsageQuery),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = UsageSummary), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<axum::Json<UsageSummary>> {
    let access = state.identity.access(&caller, &tenant, Role::Member, Scope::Read).await?;
    let (from, to) = range(q.from.as_deref(), q.to.as_deref())?;
    let group_by = q.group_by.unwrap_or_else(|| "day".into());
    let grouping = match group_by.as_str() {
        "day" => UsageGrouping::Day,
        "deployment" => UsageGrouping::Deployment,
        "key" => UsageGrouping::Key,
        "model" => UsageGrouping::Model,
        other => return Err(bad_query(format!("group_by: '{other}' is not day, deployment, key or model"))),
    };
    let rows = access.store().usage_summary(from, to, grouping).await?;
    let data = rows
        .into_iter()
        .map(|r| UsageGroup {
            group: r.group,
            requests: r.requests,
            errors: r.errors,
            calls: r.calls,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            compute_ms: r.compute_ms,
            request_bytes: r.request_bytes,
            response_bytes: r.response_bytes,
            cost: r.cost_micros,
            currency: r.currency,
        })
        .collect();
    Ok(axum::Json(UsageSummary { from, to, group_by, data }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// As for the summary.
    pub from: Option<String>,
    pub to: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
    /// Records per page (1–10000, default 1000).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordsPage {
    /// In time order.
    pub data: Vec<UsageRecord>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Raw usage records of a period, in time order.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/usage/records", tag = "usage",
    params(("tenant" = String, Path, description = "tenant slug"), RecordsQuery),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = RecordsPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn records(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(q): Query<RecordsQuery>,
) -> ApiResult<axum::Json<RecordsPage>> {
    let access = state.identity.access(&caller, &tenant, Role::Member, Scope::Read).await?;
    let (from, to) = range(q.from.as_deref(), q.to.as_deref())?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(bad_query("limit must be 1 to 10000".into()));
    }
    let after = match q.after.as_deref() {
        None => None,
        Some(cursor) => {
            let parsed = cursor.split_once('_').and_then(|(ms, id)| {
                Some((DateTime::from_timestamp_millis(ms.parse().ok()?)?, id.parse::<uuid::Uuid>().ok()?))
            });
            Some(parsed.ok_or_else(|| bad_query("after: not a cursor from a previous page".into()))?)
        }
    };
    let data = access.store().usage_records(from, to, after, limit).await?;
    let next = (data.len() == limit as usize)
        .then(|| data.last().map(|r| format!("{}_{}", r.at.timestamp_millis(), r.id)))
        .flatten();
    Ok(axum::Json(RecordsPage { data, next }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(summary)).routes(routes!(records))
}
