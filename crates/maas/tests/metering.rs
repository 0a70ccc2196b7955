//! Metering, limits, quotas, budgets, invoices and usage events through the real binary: every
//! call through v2 REST and gRPC is recorded and priced, limits are exact across two instances
//! on one PostgreSQL + Redis, quotas and budgets refuse with named codes, a Redis outage fails
//! open or closed as configured, a SIGKILL loses no acknowledged usage, and usage events reach
//! NATS JetStream. (The OpenAI API's metering, streams cut by the client included, is checked in
//! `openai.rs`.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use maas_testkit::serving::{api_key, deploy, publish};
use maas_testkit::{
    Server, ServerOptions, call, cli, client, code, fresh_postgres_db, password_of, redis_prefix, redis_url, user,
};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_maas");

fn start(options: ServerOptions) -> Server {
    Server::start(Path::new(BIN), options).expect("server starts")
}

fn simple_onnx() -> Vec<u8> {
    let dir = PathBuf::from(std::env::var("MAAS_TEST_ONNX_DIR").expect("MAAS_TEST_ONNX_DIR: use scripts/test.sh"));
    std::fs::read(dir.join("simple.onnx")).expect("simple.onnx")
}

/// `alice` (the first user: platform admin) with `alice/simple` deployed at `pricing`, and an
/// `infer`+`read` key.
async fn alice_with_simple(s: &Server, pricing: Value) -> (Client, String) {
    let alice = user(s, "alice").await.unwrap();
    let files = [("model.onnx".to_owned(), simple_onnx())];
    publish(s, &alice, "alice/simple", "1", ("tensor", "private", "onnx"), &files).await;
    deploy(s, &alice, "alice/simple", "alice/simple", "1", json!({ "pricing": pricing })).await;
    let key = api_key(s, &alice, "alice", &["infer", "read"]).await;
    (alice, key)
}

fn simple_request() -> Value {
    let row: Vec<i32> = (0..16).collect();
    json!({ "inputs": [
        { "name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": row },
        { "name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": row },
    ]})
}

async fn infer(s: &Server, key: &str, body: &Value) -> reqwest::Response {
    client().post(s.at("/v2/models/alice%2Fsimple/infer")).bearer_auth(key).json(body).send().await.unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Every usage record of `tenant` this month, through the paged API.
async fn records(s: &Server, c: &Client, tenant: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("/api/v1/tenants/{tenant}/usage/records?limit=500");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let (status, page) = call(c.get(s.at(&url))).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        all.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return all,
        }
    }
}

const GRPC_SCRIPT: &str = r#"
import os, numpy as np, tritonclient.grpc as g
c = g.InferenceServerClient(os.environ["V2_GRPC"])
h = {"authorization": "Bearer " + os.environ["V2_KEY"]}
x = np.arange(16, dtype=np.int32).reshape(1, 16)
for _ in range(2):
    i0, i1 = g.InferInput("INPUT0", [1, 16], "INT32"), g.InferInput("INPUT1", [1, 16], "INT32")
    i0.set_data_from_numpy(x); i1.set_data_from_numpy(x)
    r = c.infer("alice/simple", [i0, i1], headers=h)
    assert (r.as_numpy("OUTPUT0") == 2 * x).all()
print("ok")
"#;

#[tokio::test]
async fn every_call_is_metered_priced_and_invoiced() {
    let s = start(ServerOptions::default());
    let (alice, key) = alice_with_simple(&s, json!({ "currency": "USD", "per_call": 1500 })).await;

    let mut ok_ids = Vec::new();
    for _ in 0..3 {
        let r = infer(&s, &key, &simple_request()).await;
        assert_eq!(r.status(), StatusCode::OK);
        ok_ids.push(header(&r, "x-request-id").expect("x-request-id on every inference response"));
    }
    let mut bad = simple_request();
    bad["inputs"][0]["datatype"] = json!("FP32");
    let r = infer(&s, &key, &bad).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let bad_id = header(&r, "x-request-id").expect("failures carry a request id too");

    let python = std::env::var("MAAS_TEST_PYTHON").expect("MAAS_TEST_PYTHON: use scripts/test.sh");
    let out = std::process::Command::new(python)
        .args(["-c", GRPC_SCRIPT])
        .env("V2_GRPC", &s.grpc_addr)
        .env("V2_KEY", &key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let records = records(&s, &alice, "alice").await;
    assert_eq!(records.len(), 6, "{records:#?}");
    let by_id: HashMap<&str, &Value> = records.iter().map(|r| (r["id"].as_str().unwrap(), r)).collect();
    for id in &ok_ids {
        let r = by_id[id.as_str()];
        assert_eq!(
            (r["status"].as_u64(), r["api"].as_str(), r["billable"].as_bool()),
            (Some(200), Some("v2_rest"), Some(true))
        );
        assert_eq!(r["cost_micros"], 1500);
        assert_eq!(r["deployment"], "alice/simple");
        assert_eq!(r["model_version"], "alice/simple@1");
        assert!(r["request_bytes"].as_i64().unwrap() > 100 && r["response_bytes"].as_i64().unwrap() > 100, "{r}");
        assert!(r["api_key_id"].is_string() && r["latency_us"].as_i64().unwrap() > 0, "{r}");
    }
    let failed = by_id[bad_id.as_str()];
    assert_eq!((failed["status"].as_u64(), failed["billable"].as_bool()), (Some(400), Some(false)), "{failed}");
    assert_eq!(failed["cost_micros"], 0);
    assert!(failed["error_code"].is_string(), "{failed}");
    let grpc = records.iter().filter(|r| r["api"] == "v2_grpc" && r["status"] == 200).count();
    assert_eq!(grpc, 2, "{records:#?}");

    let (status, summary) = call(alice.get(s.at("/api/v1/tenants/alice/usage?group_by=deployment"))).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    let row = &summary["data"][0];
    assert_eq!(
        (row["group"].as_str(), row["requests"].as_i64(), row["errors"].as_i64()),
        (Some("alice/simple"), Some(6), Some(1))
    );
    assert_eq!(row["cost"], 5 * 1500);
    let (_, by_day) = call(alice.get(s.at("/api/v1/tenants/alice/usage"))).await;
    assert_eq!(by_day["data"][0]["group"], chrono::Utc::now().format("%Y-%m-%d").to_string(), "{by_day}");
    let (status, body) = call(alice.get(s.at("/api/v1/tenants/alice/usage?group_by=week"))).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_query"));

    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let (status, invoices) = call(alice.get(s.at("/api/v1/tenants/alice/invoices"))).await;
    assert_eq!(status, StatusCode::OK, "{invoices}");
    let invoice = &invoices["items"][0];
    assert_eq!(invoice["id"], format!("{month}-USD"));
    assert_eq!(invoice["status"], "open");
    assert_eq!(invoice["total"], 7500);
    assert_eq!(
        invoice["lines"],
        json!([{ "deployment": "alice/simple", "meter": "calls", "quantity": 5,
                                          "unit_price": 1500, "amount": 7500 }])
    );
    let (_, one) = call(alice.get(s.at(&format!("/api/v1/tenants/alice/invoices/{month}-USD")))).await;
    assert_eq!(&one, invoice);
    let (status, body) = call(alice.get(s.at("/api/v1/tenants/alice/invoices/2020-01-USD"))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "invoice_not_found"));

    // The CLI shows the same.
    let cfg = tempfile::tempdir().unwrap();
    cli::ok(&cli::run(Path::new(BIN), cfg.path(), &s, &["login", "alice", "--password", &password_of("alice")]));
    let usage = cli::ok(&cli::run(Path::new(BIN), cfg.path(), &s, &["usage", "alice", "--group-by", "deployment"]));
    assert!(usage.contains("alice/simple") && usage.contains("0.007500 USD"), "{usage}");
    let list = cli::ok(&cli::run(Path::new(BIN), cfg.path(), &s, &["invoices", "alice"]));
    assert!(list.contains(&format!("{month}-USD")) && list.contains("0.007500"), "{list}");
}

#[tokio::test]
async fn rate_limits_are_exact_across_two_gateway_instances() {
    let db = fresh_postgres_db().await.unwrap();
    let prefix = redis_prefix();
    let data = tempfile::tempdir().unwrap();
    let options = || {
        ServerOptions::default()
            .env("MAAS_DATABASE_URL", &db)
            .env("MAAS_REDIS_URL", redis_url())
            .env("MAAS_REDIS_PREFIX", &prefix)
            .data_dir(data.path())
    };
    let a = start(options());
    let (alice, _) = alice_with_simple(&a, json!(null)).await;
    const LIMIT: i64 = 7;
    let (status, created) = call(alice.post(a.at("/api/v1/tenants/alice/keys")).json(&json!({
        "name": "limited", "scopes": ["infer"], "limits": { "requests_per_minute": LIMIT } })))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["limits"]["requests_per_minute"], LIMIT);
    let key = created["key"].as_str().unwrap().to_owned();
    // The second instance restores the deployment from the shared store.
    let b = start(options());
    maas_testkit::serving::wait_ready(&b, &alice_on(&b).await, "alice/simple").await;

    const N: usize = 20;
    let calls = (0..N).map(|i| {
        let (server, key) = (if i % 2 == 0 { &a } else { &b }, key.clone());
        async move { infer(server, &key, &simple_request()).await }
    });
    let responses = futures::future::join_all(calls).await;
    let mut admitted = 0;
    for r in &responses {
        match r.status() {
            StatusCode::OK => {
                admitted += 1;
                assert_eq!(header(r, "x-ratelimit-limit").as_deref(), Some("7"));
                let remaining: i64 = header(r, "x-ratelimit-remaining").unwrap().parse().unwrap();
                assert!((0..LIMIT).contains(&remaining));
                assert!(header(r, "x-ratelimit-reset").is_some());
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let retry: u64 = header(r, "retry-after").expect("Retry-After on 429").parse().unwrap();
                assert!((1..=60).contains(&retry), "{retry}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, LIMIT as usize, "exactly the limit is admitted across both instances");
    let r = infer(&b, &key, &simple_request()).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "requests_per_minute_exceeded", "{body}");
    assert!(body["error"].as_str().unwrap().contains("7 requests per minute"), "{body}");

    // A tenant-wide limit (set by the platform admin) applies to every key.
    let (status, body) =
        call(alice.put(a.at("/api/v1/tenants/alice/quotas")).json(&json!({ "requests_per_minute": 2 }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quota"]["requests_per_minute"], 2);
    let other = api_key(&a, &alice, "alice", &["infer"]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await; // instance b's quota cache
    let statuses: Vec<u16> = futures::future::join_all((0..4).map(|i| {
        let (server, key) = (if i % 2 == 0 { &a } else { &b }, other.clone());
        async move { infer(server, &key, &simple_request()).await.status().as_u16() }
    }))
    .await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
}

/// A client logged in as alice on `s` (sessions live in the shared Redis).
async fn alice_on(s: &Server) -> Client {
    let c = maas_testkit::browser();
    let (status, body) = call(
        c.post(s.at("/api/v1/auth/login")).json(&json!({ "username": "alice", "password": password_of("alice") })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    c
}

#[tokio::test]
async fn quotas_and_budgets_refuse_with_named_codes() {
    let s = start(ServerOptions::default());
    let (alice, key) = alice_with_simple(&s, json!({ "currency": "EUR", "per_call": 1000 })).await;
    let (status, body) =
        call(alice.put(s.at("/api/v1/tenants/alice/quotas")).json(&json!({ "max_calls_per_day": 3 }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..3 {
        assert_eq!(infer(&s, &key, &simple_request()).await.status(), StatusCode::OK);
    }
    let r = infer(&s, &key, &simple_request()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&r, "retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "daily_calls_quota_exceeded", "{body}");

    // Owners read quotas; only platform admins set them.
    let bob = user(&s, "bob").await.unwrap();
    let (status, body) =
        call(bob.put(s.at("/api/v1/tenants/bob/quotas")).json(&json!({ "max_calls_per_day": 1000 }))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "{body}");
    let (status, body) = call(bob.get(s.at("/api/v1/tenants/bob/quotas"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A hard budget below what the month already spent (3 calls = 3000) blocks at once…
    let (status, body) = call(alice.put(s.at("/api/v1/tenants/alice/quotas")).json(&json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, budget) = call(alice.put(s.at("/api/v1/tenants/alice/budget")).json(&json!({
        "currency": "EUR", "soft_limit": 4000, "hard_limit": 3500 })))
    .await;
    assert_eq!(status, StatusCode::OK, "{budget}");
    assert_eq!(budget["spent"], 3000);
    let r = infer(&s, &key, &simple_request()).await;
    assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "budget_exceeded", "{body}");
    // …until it is raised; crossing the soft limit raises one alert (an audit entry).
    let (status, _) = call(alice.put(s.at("/api/v1/tenants/alice/budget")).json(&json!({
        "currency": "EUR", "soft_limit": 4000, "hard_limit": 6000 })))
    .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(infer(&s, &key, &simple_request()).await.status(), StatusCode::OK);
    }
    let r = infer(&s, &key, &simple_request()).await;
    assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED, "6000 spent: the hard limit holds");
    let mut alerts = 0;
    for _ in 0..50 {
        let (_, audit) = call(alice.get(s.at("/api/v1/tenants/alice/audit"))).await;
        alerts =
            audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "budget.soft_limit_reached").count();
        if alerts > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alerts, 1, "one soft-limit alert per month");
    let (status, body) =
        call(alice.put(s.at("/api/v1/tenants/alice/budget")).json(&json!({ "currency": "eur" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"));

    // GPU-hours count only on deployments that reserve GPUs.
    let (status, _) = call(alice.put(s.at("/api/v1/tenants/alice/budget")).json(&json!(null))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(alice.put(s.at("/api/v1/tenants/alice/quotas")).json(&json!({ "max_gpu_hours": 0 }))).await;
    assert_eq!(status, StatusCode::OK);
    deploy(&s, &alice, "alice/gpu", "alice/simple", "1", json!({ "resources": { "gpu": 1 } })).await;
    let r = client()
        .post(s.at("/v2/models/alice%2Fgpu/infer"))
        .bearer_auth(&key)
        .json(&simple_request())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "gpu_hours_quota_exceeded", "{body}");
    assert_eq!(infer(&s, &key, &simple_request()).await.status(), StatusCode::OK, "CPU deployments go on");
}

#[tokio::test]
async fn a_killed_server_loses_no_acknowledged_usage() {
    let data = tempfile::tempdir().unwrap();
    let s = start(ServerOptions::default().data_dir(data.path()));
    let (_, key) = alice_with_simple(&s, json!(null)).await;
    let url = s.at("/v2/models/alice%2Fsimple/infer");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (url, key, stop) = (url.clone(), key.clone(), stop.clone());
            tokio::spawn(async move {
                let c = client();
                let mut acknowledged = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match c.post(&url).bearer_auth(&key).json(&simple_request()).send().await {
                        Ok(r) if r.status() == StatusCode::OK => {
                            let id = header(&r, "x-request-id").unwrap();
                            if r.bytes().await.is_ok() {
                                acknowledged.push(id);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.stop(); // SIGKILL, under load
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in workers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(acknowledged.len() > 50, "only {} calls before the kill", acknowledged.len());

    let s = start(ServerOptions::default().data_dir(data.path()));
    let alice = alice_on(&s).await;
    let records = records(&s, &alice, "alice").await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &records {
        *seen.entry(r["id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for id in &acknowledged {
        assert_eq!(seen.get(id), Some(&1), "acknowledged call {id} must have exactly one usage record");
    }
    assert!(seen.values().all(|n| *n == 1), "no duplicates");
    println!("{} acknowledged, {} records after the restart", acknowledged.len(), records.len());
}

#[tokio::test]
async fn a_redis_outage_fails_open_or_closed_as_configured() {
    // A Redis of our own, so the test can stop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut redis = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test.sh)");
    let redis_url = format!("redis://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let with = |mode: &str| {
        ServerOptions::default()
            .env("MAAS_REDIS_URL", &redis_url)
            .env("MAAS_REDIS_PREFIX", redis_prefix())
            .env("MAAS_METERING__POLICY__ON_LIMITER_ERROR", mode)
    };
    let open = start(with("open"));
    let closed = start(with("closed"));
    let mut keys = Vec::new();
    for s in [&open, &closed] {
        let (alice, _) = alice_with_simple(s, json!(null)).await;
        let (status, created) = call(alice.post(s.at("/api/v1/tenants/alice/keys")).json(&json!({
            "name": "limited", "scopes": ["infer"], "limits": { "requests_per_minute": 1000 } })))
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let key = created["key"].as_str().unwrap().to_owned();
        let r = infer(s, &key, &simple_request()).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-limit").as_deref(), Some("1000"));
        keys.push(key);
    }
    redis.kill().unwrap();
    redis.wait().unwrap();

    let r = infer(&open, &keys[0], &simple_request()).await;
    assert_eq!(r.status(), StatusCode::OK, "fail open: calls go on without limits");
    assert!(header(&r, "x-ratelimit-limit").is_none());
    let r = infer(&closed, &keys[1], &simple_request()).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "fail closed");
    assert!(header(&r, "retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "limiter_unavailable", "{body}");
    for s in [&open, &closed] {
        let (status, _) = call(client().get(s.at("/v2/health/live"))).await;
        assert_eq!(status, StatusCode::OK, "no panic: {}", s.log_text());
    }
}

#[tokio::test]
async fn usage_events_are_published_to_jetstream_once_per_call() {
    let nats_url = std::env::var("MAAS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (stream, subjects) = (format!("MAAS_T_{tag}"), format!("maas_t_{tag}"));
    let s = start(
        ServerOptions::default()
            .env("MAAS_NATS_URL", &nats_url)
            .env("MAAS_METERING__NATS__STREAM", &stream)
            .env("MAAS_METERING__NATS__SUBJECT_PREFIX", &subjects),
    );
    let (_, key) = alice_with_simple(&s, json!(null)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = infer(&s, &key, &simple_request()).await;
        assert_eq!(r.status(), StatusCode::OK);
        ids.push(header(&r, "x-request-id").unwrap());
    }

    let nats = async_nats::connect(&nats_url).await.expect("NATS must be running: use scripts/test.sh");
    let js = async_nats::jetstream::new(nats);
    let mut received: Vec<(String, Value)> = Vec::new();
    for _ in 0..100 {
        if let Ok(mut info) = js.get_stream(&stream).await
            && info.info().await.map(|i| i.state.messages).unwrap_or(0) >= 3
        {
            for seq in 1..=info.info().await.unwrap().state.messages {
                let m = info.get_raw_message(seq).await.unwrap();
                let id = m.headers.get("Nats-Msg-Id").map(|v| v.to_string()).unwrap_or_default();
                received.push((id, serde_json::from_slice(&m.payload).unwrap()));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = js.delete_stream(&stream).await;
    assert_eq!(received.len(), 3, "one event per call: {received:?}");
    for (msg_id, event) in &received {
        assert!(ids.contains(msg_id), "{msg_id} is a request id");
        assert_eq!(event["id"].as_str(), Some(msg_id.as_str()));
        assert_eq!(event["deployment"], "alice/simple");
    }
}
