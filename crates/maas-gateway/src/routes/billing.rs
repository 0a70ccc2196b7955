//! `/api/v1/tenants/{tenant}/invoices` (monthly invoices from usage) and
//! `/api/v1/tenants/{tenant}/budget` (soft and hard monthly spending limits).

use axum::extract::State;
use maas_auth::Caller;
use maas_core::billing::{Budget, Invoice};
use maas_core::identity::Role;
use maas_core::keys::Scope;
use maas_core::{ErrorCode, billing};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// Months of invoices listed.
const INVOICE_MONTHS: u32 = 12;

/// Invoices of the last twelve months, newest first; the current month's is `open`.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/invoices", tag = "billing",
    params(("tenant" = String, Path, description = "tenant slug")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Items<Invoice>), (status = 404, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<Items<Invoice>>> {
    let access = state.identity.access(&caller, &tenant, Role::Admin, Scope::Read).await?;
    let invoices = maas_metering::billing::recent(access.store(), INVOICE_MONTHS, chrono::Utc::now()).await?;
    Ok(axum::Json(invoices.into()))
}

/// One invoice, by id `YYYY-MM-CUR`.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/invoices/{id}", tag = "billing",
    params(("tenant" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "e.g. 2026-11-USD")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = Invoice), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<Invoice>> {
    let access = state.identity.access(&caller, &tenant, Role::Admin, Scope::Read).await?;
    Ok(axum::Json(maas_metering::billing::invoice(access.store(), &id, chrono::Utc::now()).await?))
}

/// The budget and what the month has spent.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetStatus {
    /// `null` when the tenant has no budget.
    pub budget: Option<Budget>,
    /// `YYYY-MM`.
    pub period: String,
    /// Billable spend this month, in micro-units of the budget's currency (USD without a budget).
    pub spent: billing::Micros,
}

async fn status(access: &maas_auth::TenantAccess) -> ApiResult<BudgetStatus> {
    let budget = access.store().budget().await?;
    let period = maas_metering::billing::current_month();
    let currency = budget.as_ref().map_or("USD", |b| b.currency.as_str());
    let (start, end) = maas_metering::billing::month_bounds(&period)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the current month has no bounds"))?;
    let spent = access.store().usage_totals(start, end, currency).await?.cost_micros;
    Ok(BudgetStatus { budget, period, spent })
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/budget", tag = "billing",
    params(("tenant" = String, Path, description = "tenant slug")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = BudgetStatus), (status = 404, body = ErrorBody)))]
async fn show_budget(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<BudgetStatus>> {
    let access = state.identity.access(&caller, &tenant, Role::Member, Scope::Read).await?;
    Ok(axum::Json(status(&access).await?))
}

/// Set the monthly budget (tenant admins): `soft_limit` raises an alert once a month (audit
/// entry and event), `hard_limit` blocks calls with `budget_exceeded` until it is raised or the
/// month turns. Amounts in micro-units of `currency`. `null` removes the budget.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/budget", tag = "billing", request_body = Option<Budget>,
    params(("tenant" = String, Path, description = "tenant slug")),
    security(("session" = []), ("api_key" = [])),
    responses((status = 200, body = BudgetStatus), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn set_budget(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Json(budget): Json<Option<Budget>>,
) -> ApiResult<axum::Json<BudgetStatus>> {
    let access = state.identity.access(&caller, &tenant, Role::Admin, Scope::Manage).await?;
    if let Some(b) = &budget {
        let plan = billing::PricePlan { currency: b.currency.clone(), ..Default::default() };
        plan.validate().map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e))?;
        if b.soft_limit.is_some_and(|v| v < 0) || b.hard_limit.is_some_and(|v| v < 0) {
            return Err(ApiError::new(ErrorCode::InvalidRequest, "budget limits cannot be negative"));
        }
    }
    access.store().set_budget(budget.as_ref()).await?;
    maas_auth::service::record(&caller, access.store(), "tenant.budget.set", &tenant, serde_json::json!(budget))
        .await?;
    state.metering.policy.forget(access.tenant.id);
    Ok(axum::Json(status(&access).await?))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(show)).routes(routes!(show_budget, set_budget))
}
