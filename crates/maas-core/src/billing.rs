//! Money: price plans, budgets and invoices. Amounts are integer micro-units of a currency
//! (1 USD = 1_000_000), never floating point.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Micro-units of a currency.
pub type Micros = i64;

/// What a deployment charges. Every price is in micro-units of `currency`; a missing plan
/// charges nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PricePlan {
    /// ISO 4217 code, upper case.
    pub currency: String,
    pub per_call: Micros,
    pub per_1k_input_tokens: Micros,
    pub per_1k_output_tokens: Micros,
    pub per_compute_second: Micros,
}

impl Default for PricePlan {
    fn default() -> Self {
        PricePlan {
            currency: "USD".into(),
            per_call: 0,
            per_1k_input_tokens: 0,
            per_1k_output_tokens: 0,
            per_compute_second: 0,
        }
    }
}

/// `quantity × unit_price / per`, rounded half up, saturating (never wraps).
pub fn amount(quantity: i64, unit_price: Micros, per: i64) -> Micros {
    let q = i128::from(quantity) * i128::from(unit_price);
    let per = i128::from(per.max(1));
    let rounded = (q + per / 2).div_euclid(per);
    i64::try_from(rounded).unwrap_or(if rounded > 0 { i64::MAX } else { i64::MIN })
}

impl PricePlan {
    /// Checks the plan: a three-letter currency and no negative price.
    pub fn validate(&self) -> Result<(), String> {
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("currency must be a three-letter ISO 4217 code like USD, not '{}'", self.currency));
        }
        let prices = [self.per_call, self.per_1k_input_tokens, self.per_1k_output_tokens, self.per_compute_second];
        if prices.iter().any(|p| *p < 0) {
            return Err("prices cannot be negative".into());
        }
        Ok(())
    }

    /// The cost of one call's meters under this plan.
    pub fn cost(&self, calls: i64, input_tokens: i64, output_tokens: i64, compute_ms: i64) -> Micros {
        [
            amount(calls, self.per_call, 1),
            amount(input_tokens, self.per_1k_input_tokens, 1000),
            amount(output_tokens, self.per_1k_output_tokens, 1000),
            amount(compute_ms, self.per_compute_second, 1000),
        ]
        .into_iter()
        .fold(0i64, i64::saturating_add)
    }
}

/// The meters a call is priced on; one invoice line per deployment, meter and unit price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingMeter {
    Calls,
    InputTokens,
    OutputTokens,
    ComputeSeconds,
}

/// A tenant's monthly spending limits, in micro-units of `currency`. Crossing `soft_limit`
/// raises an alert once a month; reaching `hard_limit` blocks calls until the budget is raised or
/// the month turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default = "usd")]
    pub currency: String,
    pub soft_limit: Option<Micros>,
    pub hard_limit: Option<Micros>,
}

fn usd() -> String {
    "USD".into()
}

/// One line of an invoice: a deployment's meter at one unit price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvoiceLine {
    pub deployment: String,
    pub meter: BillingMeter,
    /// Calls, tokens, or milliseconds of compute.
    pub quantity: i64,
    /// Price per call, per 1K tokens or per compute second.
    pub unit_price: Micros,
    pub amount: Micros,
}

/// A tenant's invoice for one calendar month (UTC) in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Invoice {
    /// `YYYY-MM-CUR`, e.g. `2026-11-USD`.
    pub id: String,
    /// `YYYY-MM`.
    pub period: String,
    pub currency: String,
    /// `open` for the current month (a preview that still changes), `closed` for past months.
    pub status: InvoiceStatus,
    pub lines: Vec<InvoiceLine>,
    pub total: Micros,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Open,
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_half_up_in_integers() {
        assert_eq!(amount(1500, 2_000, 1000), 3_000);
        assert_eq!(amount(1, 1, 1000), 0);
        assert_eq!(amount(1, 500, 1000), 1);
        assert_eq!(amount(i64::MAX, i64::MAX, 1), i64::MAX);
    }

    #[test]
    fn a_plan_prices_every_meter() {
        let plan = PricePlan {
            currency: "EUR".into(),
            per_call: 100,
            per_1k_input_tokens: 1_000,
            per_1k_output_tokens: 2_000,
            per_compute_second: 10_000,
        };
        // 100 + 500 + 500 + 2_500
        assert_eq!(plan.cost(1, 500, 250, 250), 3_600);
        assert!(plan.validate().is_ok());
        assert!(PricePlan { currency: "usd".into(), ..plan.clone() }.validate().is_err());
        assert!(PricePlan { per_call: -1, ..plan }.validate().is_err());
    }
}
