//! `maas usage TENANT` (metered usage per day, deployment, key or model) and
//! `maas invoices TENANT [ID]` (monthly invoices).

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use crate::CliError;
use crate::client::{self, segment};
use crate::commands;
use crate::output::{self, Output, field};

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
Examples:
  maas usage acme                              # this month, per day
  maas usage acme --group-by deployment --from 2026-11-01 --to 2026-12-01")]
pub struct UsageArgs {
    /// The tenant (slug).
    pub tenant: String,
    /// Start (RFC 3339 or YYYY-MM-DD, UTC); default: the first of this month.
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive; default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// day, deployment, key or model.
    #[arg(long, default_value = "day")]
    pub group_by: String,
}

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
Examples:
  maas invoices acme               # the last twelve months
  maas invoices acme 2026-11-USD   # one invoice with its lines")]
pub struct InvoicesArgs {
    /// The tenant (slug).
    pub tenant: String,
    /// An invoice id (YYYY-MM-CUR) to show with its lines.
    pub id: Option<String>,
}

/// Micro-units as a decimal amount: 1234567 → "1.234567".
fn money(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

fn micros(v: &Value) -> String {
    money(v.as_i64().unwrap_or_default())
}

pub async fn usage(server: Option<&str>, out: Output, args: UsageArgs) -> Result<(), CliError> {
    let c = client::authenticated(server).await?;
    let mut query = vec![("group_by", args.group_by.clone())];
    query.extend(args.from.map(|v| ("from", v)));
    query.extend(args.to.map(|v| ("to", v)));
    let path = format!("/api/v1/tenants/{}/usage", segment(&args.tenant));
    let response = c.json(c.request(Method::GET, &path).query(&query)).await?;
    commands::show(out, &response, || {
        let rows: Vec<Vec<String>> = response["data"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let cost = format!("{} {}", micros(&r["cost"]), field(r, "currency"));
                ["group", "requests", "errors", "input_tokens", "output_tokens", "compute_ms"]
                    .iter()
                    .map(|f| field(r, f))
                    .chain([cost])
                    .collect()
            })
            .collect();
        let group = args.group_by.as_str();
        output::table(&[group, "requests", "errors", "input tokens", "output tokens", "compute ms", "cost"], &rows);
    });
    Ok(())
}

pub async fn invoices(server: Option<&str>, out: Output, args: InvoicesArgs) -> Result<(), CliError> {
    let c = client::authenticated(server).await?;
    let base = format!("/api/v1/tenants/{}/invoices", segment(&args.tenant));
    match args.id {
        Some(id) => {
            let invoice = c.json(c.request(Method::GET, &format!("{base}/{}", segment(&id)))).await?;
            commands::show(out, &invoice, || {
                println!(
                    "invoice {} ({}, {})",
                    field(&invoice, "id"),
                    field(&invoice, "period"),
                    field(&invoice, "status")
                );
                let rows: Vec<Vec<String>> = invoice["lines"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|l| {
                        vec![
                            field(l, "deployment"),
                            field(l, "meter"),
                            field(l, "quantity"),
                            micros(&l["unit_price"]),
                            micros(&l["amount"]),
                        ]
                    })
                    .collect();
                output::table(&["deployment", "meter", "quantity", "unit price", "amount"], &rows);
                println!("total: {} {}", micros(&invoice["total"]), field(&invoice, "currency"));
            });
        }
        None => {
            let list = c.json(c.request(Method::GET, &base)).await?;
            commands::show(out, &list, || {
                let rows: Vec<Vec<String>> = list["items"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|i| {
                        let lines = i["lines"].as_array().map_or(0, Vec::len);
                        vec![
                            field(i, "id"),
                            field(i, "status"),
                            lines.to_string(),
                            micros(&i["total"]),
                            field(i, "currency"),
                        ]
                    })
                    .collect();
                output::table(&["id", "status", "lines", "total", "currency"], &rows);
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn micro_units_print_as_decimals() {
        assert_eq!(super::money(1_234_567), "1.234567");
        assert_eq!(super::money(5), "0.000005");
        assert_eq!(super::money(-2_000_000), "-2.000000");
    }
}
