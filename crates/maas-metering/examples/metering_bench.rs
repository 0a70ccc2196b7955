//! Benchmarks of metering and limits, printed as markdown tables (run by `bench/metering.sh`
//! and `bench/limits.sh`; method in bench/README.md).
//!
//! `metering_bench ledger [--seconds S] [--writers N] [--postgres URL]`: sustained durable usage
//! records per second through the group-committing `Ledger` on SQLite (a temp file,
//! `synchronous = FULL`) and PostgreSQL, next to one commit per record (`max_batch = 1`), and the
//! latency a call waits for its record (p50/p99) at 1 and N concurrent writers.
//!
//! `metering_bench limits [--calls N] [--redis URL]`: p50/p99 of one admission check (two rate
//! buckets, as a key with a per-minute limit in a tenant with one) in memory and on Redis,
//! next to a bare Redis `PING` round trip on the same connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use maas_core::billing::PricePlan;
use maas_core::usage::{InferenceApi, UsageRecord};
use maas_core::{ApiKeyId, DeploymentId, TenantId, VersionId};
use maas_metering::limits::{Bucket, BucketKind, Limiter, Verdict};
use maas_metering::{Ledger, LedgerConfig, MemoryLimiter, RedisLimiter};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn record(tenant: TenantId) -> UsageRecord {
    UsageRecord {
        id: uuid::Uuid::now_v7(),
        tenant_id: tenant,
        api_key_id: Some(ApiKeyId::new()),
        deployment_id: DeploymentId::new(),
        deployment: "bench/simple".into(),
        version_id: VersionId::new(),
        model_version: "bench/simple@1".into(),
        api: InferenceApi::V2Rest,
        calls: 1,
        input_tokens: 0,
        output_tokens: 0,
        compute_ms: 1,
        gpu_ms: 0,
        request_bytes: 400,
        response_bytes: 300,
        status: 200,
        error_code: None,
        latency_us: 250,
        at: maas_core::now(),
        billable: true,
        price: PricePlan { per_call: 10, ..PricePlan::default() },
        cost_micros: 10,
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Records/s and per-record wait of `writers` tasks recording for `seconds`.
async fn run_ledger(
    store: Arc<dyn maas_store::Store>,
    max_batch: usize,
    writers: usize,
    seconds: f64,
) -> (f64, f64, f64) {
    let tenant = TenantId::new();
    let ledger = Ledger::start(store, &LedgerConfig { max_batch, ..LedgerConfig::default() }, false);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let mut waits = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    ledger.record(record(tenant)).await.expect("recorded");
                    waits.push(t.elapsed());
                }
                waits
            })
        })
        .collect();
    let mut waits = Vec::new();
    for t in tasks {
        waits.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    waits.sort();
    (waits.len() as f64 / elapsed, pct(&waits, 0.5), pct(&waits, 0.99))
}

async fn ledger(args: &[String]) {
    let seconds: f64 = arg(args, "--seconds").and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let writers: usize = arg(args, "--writers").and_then(|s| s.parse().ok()).unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let mut backends: Vec<(String, Arc<dyn maas_store::Store>)> = Vec::new();
    let sqlite = format!("sqlite:{}", dir.path().join("bench.db").display());
    backends.push(("SQLite (WAL, synchronous=FULL)".into(), maas_store::open(&sqlite).await.unwrap()));
    if let Some(url) = arg(args, "--postgres") {
        backends.push(("PostgreSQL (loopback)".into(), maas_store::open(&url).await.unwrap()));
    }
    println!("Durable usage records through the Ledger, {seconds} s per row (`{}`).\n", args.join(" "));
    println!("| store | commit | writers | records/s | wait p50 (ms) | wait p99 (ms) |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for (name, store) in backends {
        for (commit, max_batch) in [("group (≤ 2048)", 2048), ("one per record", 1)] {
            for w in [1, writers] {
                let (rate, p50, p99) = run_ledger(store.clone(), max_batch, w, seconds).await;
                println!("| {name} | {commit} | {w} | {rate:.0} | {p50:.3} | {p99:.3} |");
            }
        }
    }
}

fn buckets(i: usize) -> Vec<Bucket> {
    let rate = BucketKind::Rate { period: Duration::from_secs(60) };
    vec![
        Bucket { key: format!("bench:key:{}:rpm", i % 64), kind: rate, limit: 1_000_000_000, cost: 1 },
        Bucket { key: "bench:tenant:rpm".into(), kind: rate, limit: 1_000_000_000, cost: 1 },
    ]
}

async fn time_limiter(l: &dyn Limiter, calls: usize) -> (f64, f64) {
    let mut t = Vec::with_capacity(calls);
    for i in 0..calls {
        let b = buckets(i);
        let s = Instant::now();
        let v = l.acquire(&b).await.unwrap();
        t.push(s.elapsed());
        assert!(matches!(v, Verdict::Admitted(_)));
    }
    t.sort();
    (pct(&t, 0.5), pct(&t, 0.99))
}

async fn limits(args: &[String]) {
    let calls: usize = arg(args, "--calls").and_then(|s| s.parse().ok()).unwrap_or(20_000);
    println!("One admission check (two rate buckets), {calls} sequential calls (`{}`).\n", args.join(" "));
    println!("| limiter | p50 (ms) | p99 (ms) |");
    println!("| --- | ---: | ---: |");
    let (p50, p99) = time_limiter(&MemoryLimiter::new(), calls).await;
    println!("| in memory | {p50:.4} | {p99:.4} |");
    if let Some(url) = arg(args, "--redis") {
        let client = redis::Client::open(url).unwrap();
        let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
        let prefix = format!("maas-bench-{}:", uuid::Uuid::new_v4().simple());
        let l = RedisLimiter::new(conn.clone(), prefix);
        time_limiter(&l, 1000).await; // warm up: the script is loaded once
        let (p50, p99) = time_limiter(&l, calls).await;
        println!("| Redis (Lua script, loopback) | {p50:.4} | {p99:.4} |");
        let mut t = Vec::with_capacity(calls);
        let mut c = conn.clone();
        for _ in 0..calls {
            let s = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
            t.push(s.elapsed());
        }
        t.sort();
        println!("| reference: Redis PING round trip | {:.4} | {:.4} |", pct(&t, 0.5), pct(&t, 0.99));
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ledger") => ledger(&args).await,
        Some("limits") => limits(&args).await,
        _ => eprintln!("usage: metering_bench ledger|limits [options]; see the file's header"),
    }
}
