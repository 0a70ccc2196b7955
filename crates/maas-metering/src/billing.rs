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

    /// A billable call of `tenant` to `alice/x` at `at`, priced 100 per call and 2,000 per 1K
    /// input tokens (500 tokens: 1,000), so 1,100 micro-USD.
    fn call_at(tenant: maas_core::TenantId, at: DateTime<Utc>) -> maas_core::usage::UsageRecord {
        let price = maas_core::billing::PricePlan {
            currency: "USD".into(),
            per_call: 100,
            per_1k_input_tokens: 2000,
            ..Default::default()
        };
        maas_core::usage::UsageRecord {
            id: uuid::Uuid::now_v7(),
            tenant_id: tenant,
            api_key_id: None,
            deployment_id: maas_core::DeploymentId::new(),
            deployment: "alice/x".into(),
            version_id: maas_core::VersionId::new(),
            model_version: "alice/x@1".into(),
            api: maas_core::usage::InferenceApi::OpenaiChat,
            calls: 1,
            input_tokens: 500,
            output_tokens: 0,
            compute_ms: 3,
            gpu_ms: 0,
            request_bytes: 100,
            response_bytes: 100,
            status: 200,
            error_code: None,
            latency_us: 1000,
            at,
            billable: true,
            cost_micros: price.cost(1, 500, 0, 3),
            price,
        }
    }

    /// A past month's invoice is computed from its records once, stored, and never changes,
    /// even when a late record for that month arrives; the current month's is an open preview
    /// that follows its records. Runs on a real SQLite store.
    #[tokio::test]
    async fn a_closed_month_is_invoiced_once_and_never_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = maas_store::open(&format!("sqlite:{}", dir.path().join("maas.db").display())).await.unwrap();
        let user = maas_store::NewUser {
            username: "alice".into(),
            email: "alice@example.com".into(),
            password_hash: "$argon2id$x".into(),
        };
        let (_, tenant) = store.register_user(user).await.unwrap();
        let alice = store.scoped(tenant.id);
        let day = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 10, d, h, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 3, 9, 0, 0).unwrap();
        let october = [call_at(tenant.id, day(2, 8)), call_at(tenant.id, day(31, 23))];
        let november = call_at(tenant.id, Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap());
        store.insert_usage(&[october[0].clone(), october[1].clone(), november], false).await.unwrap();

        let closed = month(alice.as_ref(), "2026-10", now).await.unwrap();
        assert_eq!(closed.len(), 1, "{closed:?}");
        let stored = &closed[0];
        assert_eq!((stored.id.as_str(), stored.status), ("2026-10-USD", InvoiceStatus::Closed));
        let quantities: Vec<(BillingMeter, i64, i64)> =
            stored.lines.iter().map(|l| (l.meter, l.quantity, l.amount)).collect();
        assert_eq!(quantities, [(BillingMeter::Calls, 2, 200), (BillingMeter::InputTokens, 1000, 2000)]);
        assert_eq!(stored.total, 2200);

        // A late record for October (a replica that was cut off, replayed) changes nothing.
        store.insert_usage(&[call_at(tenant.id, day(15, 12))], false).await.unwrap();
        let later = now + chrono::Duration::days(40);
        assert_eq!(&month(alice.as_ref(), "2026-10", later).await.unwrap()[0], stored);
        assert_eq!(&invoice(alice.as_ref(), "2026-10-USD", later).await.unwrap(), stored);

        // November is still open on the 3rd: a preview that counts a new record.
        let open = invoice(alice.as_ref(), "2026-11-USD", now).await.unwrap();
        assert_eq!((open.status, open.total), (InvoiceStatus::Open, 1100));
        store
            .insert_usage(&[call_at(tenant.id, Utc.with_ymd_and_hms(2026, 11, 3, 8, 0, 0).unwrap())], false)
            .await
            .unwrap();
        assert_eq!(invoice(alice.as_ref(), "2026-11-USD", now).await.unwrap().total, 2200);
        let listed: Vec<(String, InvoiceStatus)> =
            recent(alice.as_ref(), 3, now).await.unwrap().into_iter().map(|i| (i.id, i.status)).collect();
        assert_eq!(
            listed,
            [("2026-11-USD".to_owned(), InvoiceStatus::Open), ("2026-10-USD".to_owned(), InvoiceStatus::Closed)]
        );

        // Unknown currencies, malformed ids and months to come have no invoice.
        for id in ["2026-10-EUR", "2026-1-USD", "nope", "2026-12-USD"] {
            let e = invoice(alice.as_ref(), id, now).await.unwrap_err();
            assert!(matches!(e, MeteringError::InvoiceNotFound(_)), "{id}: {e:?}");
        }
    }
}
