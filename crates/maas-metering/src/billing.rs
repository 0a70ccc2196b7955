//! Monthly invoices from usage records. A month's invoice has one line per deployment, meter
//! and unit price (prices are kept on each record, so a price change mid-month gives two
//! lines and history is never re-priced). The current month's invoice is an `open` preview;
//! a past month's is computed once, stored, and read back unchanged ever after.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike as _, TimeZone as _, Utc};
use maas_core::billing::{BillingMeter, Invoice, InvoiceLine, InvoiceStatus, amount};
use maas_store::{BillingRow, TenantStore};

use crate::MeteringError;

/// The first instant of month `period` (`YYYY-MM`) and of the month after.
pub fn month_bounds(period: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (y, m) = period.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    if y.to_string().len() != 4 || m.to_string().len() > 2 || period.len() != 7 {
        return None;
    }
    let start = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    Some((start, Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single()?))
}

fn month_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// The lines of each currency's invoice, from billable usage summed per deployment and price.
pub fn lines(rows: &[BillingRow]) -> BTreeMap<String, Vec<InvoiceLine>> {
    let mut by_currency: BTreeMap<String, Vec<InvoiceLine>> = BTreeMap::new();
    for r in rows {
        let meters = [
            (BillingMeter::Calls, r.calls, r.price_call, 1),
            (BillingMeter::InputTokens, r.input_tokens, r.price_input_1k, 1000),
            (BillingMeter::OutputTokens, r.output_tokens, r.price_output_1k, 1000),
            (BillingMeter::ComputeSeconds, r.compute_ms, r.price_compute_second, 1000),
        ];
        for (meter, quantity, unit_price, per) in meters {
            if unit_price > 0 && quantity > 0 {
                by_currency.entry(r.currency.clone()).or_default().push(InvoiceLine {
                    deployment: r.deployment.clone(),
                    meter,
                    quantity,
                    unit_price,
                    amount: amount(quantity, unit_price, per),
                });
            }
        }
    }
    by_currency
}

fn invoice_of(period: &str, currency: String, lines: Vec<InvoiceLine>, status: InvoiceStatus) -> Invoice {
    let total = lines.iter().map(|l| l.amount).fold(0i64, i64::saturating_add);
    Invoice { id: format!("{period}-{currency}"), period: period.to_owned(), currency, status, lines, total }
}

/// The invoices of month `period` (one per currency billed), stored once the month is over.
pub async fn month(store: &dyn TenantStore, period: &str, now: DateTime<Utc>) -> Result<Vec<Invoice>, MeteringError> {
    let (start, end) = month_bounds(period)
        .ok_or_else(|| MeteringError::InvalidRequest(format!("'{period}' is not a YYYY-MM month")))?;
    if start > now {
        return Ok(Vec::new());
    }
    let closed = end <= now;
    let rows = store.billing_rows(start, end).await?;
    let mut invoices = Vec::new();
    for (currency, lines) in lines(&rows) {
        let status = if closed { InvoiceStatus::Closed } else { InvoiceStatus::Open };
        let computed = invoice_of(period, currency, lines, status);
        invoices.push(if closed {
            match store.stored_invoice(&computed.id).await? {
                Some(stored) => stored,
                None => store.store_invoice(&computed).await?,
            }
        } else {
            computed
        });
    }
    Ok(invoices)
}

/// One invoice by id (`YYYY-MM-CUR`).
pub async fn invoice(store: &dyn TenantStore, id: &str, now: DateTime<Utc>) -> Result<Invoice, MeteringError> {
    let not_found = || MeteringError::InvoiceNotFound(id.to_owned());
    let (period, currency) = (id.get(..7).ok_or_else(not_found)?, id.get(8..).ok_or_else(not_found)?);
    if month_bounds(period).is_none() || id.as_bytes().get(7) != Some(&b'-') {
        return Err(not_found());
    }
    if let Some(stored) = store.stored_invoice(id).await? {
        return Ok(stored);
    }
    month(store, period, now).await?.into_iter().find(|i| i.currency == currency).ok_or_else(not_found)
}

/// The invoices of the last `months` months up to the current one, newest first.
pub async fn recent(store: &dyn TenantStore, months: u32, now: DateTime<Utc>) -> Result<Vec<Invoice>, MeteringError> {
    let mut out = Vec::new();
    let (mut y, mut m) = (now.year(), now.month());
    for _ in 0..months.max(1) {
        let period = format!("{y:04}-{m:02}");
        out.extend(month(store, &period, now).await?);
        (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    }
    Ok(out)
}

/// The current month, `YYYY-MM`.
pub fn current_month() -> String {
    month_of(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_have_bounds() {
        let (s, e) = month_bounds("2026-12").unwrap();
        assert_eq!(s.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert!(month_bounds("2026-13").is_none());
        assert!(month_bounds("26-1").is_none());
    }

    #[test]
    fn lines_per_deployment_meter_and_price() {
        let row = |deployment: &str, price_call, calls| BillingRow {
            deployment: deployment.into(),
            currency: "USD".into(),
            price_call,
            price_input_1k: 500,
            price_output_1k: 0,
            price_compute_second: 0,
            calls,
            input_tokens: 3000,
            output_tokens: 10,
            compute_ms: 5,
        };
        let lines = lines(&[row("a/x", 100, 2), row("a/x", 200, 1)]);
        let usd = &lines["USD"];
        // Two call lines (two prices), two input-token lines; free meters are left out.
        assert_eq!(usd.len(), 4);
        assert_eq!(usd[0].meter, BillingMeter::Calls);
        assert_eq!(usd[0].amount, 200);
        assert_eq!(usd[1].amount, 1500);
        assert_eq!(usd[2].amount, 200);
    }
}
