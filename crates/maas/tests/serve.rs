//! `maas serve` itself: configuration sources and validation, secret hygiene, and the
//! scaled-out form (PostgreSQL + Redis) shared by two instances.

use std::path::Path;
use std::process::Command;

use maas_testkit::{
    Server, ServerOptions, browser, client, cookie_pair, fresh_postgres_db, login_set_cookie, password_of,
    redis_prefix, redis_url,
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_maas");

fn start(options: ServerOptions) -> Server {
    Server::start(Path::new(BIN), options).expect("server starts")
}

/// The `Max-Age` of the session cookie a fresh login gets.
async fn session_max_age(s: &Server) -> i64 {
    maas_testkit::register(s, "alice").await.unwrap();
    let cookie = login_set_cookie(s, "alice").await.unwrap();
    cookie.split("Max-Age=").nth(1).and_then(|v| v.split(';').next()).unwrap().parse().unwrap()
}

#[tokio::test]
async fn config_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("maas.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\n[auth]\nsession_ttl_secs = 120\nrefresh_window_secs = 60\n")
        .unwrap();
    let config = file.to_str().unwrap().to_owned();

    // The flag --listen 127.0.0.1:0 (from the helper) beats the file's port 1.
    let s = start(ServerOptions::default().arg("--config").arg(&config));
    let age = session_max_age(&s).await;
    assert!((115..=120).contains(&age), "file sets the TTL: {age}");
    drop(s);

    let s = start(ServerOptions::default().arg("--config").arg(&config).env("MAAS_AUTH__SESSION_TTL_SECS", "300"));
    let age = session_max_age(&s).await;
    assert!((295..=300).contains(&age), "environment beats the file: {age}");
}

fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN).arg("serve").args(args).envs(env.iter().copied()).output().unwrap();
    assert!(!out.status.success(), "should refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn invalid_configuration_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let err = refused(&["--config", "/nonexistent/maas.toml"], &[]);
    assert!(err.contains("/nonexistent/maas.toml") && err.contains("does not exist"), "{err}");

    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nsesion_ttl = 5\n").unwrap();
    let err = refused(&["--config", file.to_str().unwrap(), "--data-dir", d], &[]);
    assert!(err.contains("sesion_ttl"), "names the unknown key: {err}");

    let err = refused(&["--data-dir", d], &[("MAAS_LISTEN", "not-an-address")]);
    assert!(err.to_lowercase().contains("listen"), "{err}");
    let err = refused(&["--data-dir", d], &[("MAAS_DATABASE_URL", "mysql://db/x")]);
    assert!(err.contains("database_url"), "{err}");
    let err =
        refused(&["--data-dir", d, "--listen", "127.0.0.1:0"], &[("MAAS_AUTH__REFRESH_WINDOW_SECS", "999999999")]);
    assert!(err.contains("refresh_window_secs"), "{err}");
}

#[tokio::test]
async fn secrets_are_never_logged() {
    let url = fresh_postgres_db().await.unwrap();
    let secret = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(cred, _)| cred.split_once(':'))
        .map(|(_, pw)| pw.to_owned());
    let secret = secret.expect("the test script gives the PostgreSQL test role a password");
    let s = start(
        ServerOptions::default()
            .env("MAAS_DATABASE_URL", &url)
            .env("MAAS_REDIS_URL", redis_url())
            .env("MAAS_REDIS_PREFIX", redis_prefix()),
    );
    maas_testkit::register(&s, "alice").await.unwrap();
    let password = password_of("alice");
    browser()
        .post(s.at("/api/v1/auth/login"))
        .json(&json!({ "username": "alice", "password": password }))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = s.log_text();
    assert!(logs.contains("\"backend\":\"postgres\""), "{logs}");
    assert!(!logs.contains(&secret), "database password leaked into the log:\n{logs}");
    assert!(!logs.contains(&password), "user password leaked into the log");
    assert!(logs.contains("database_url: Some(***)"), "the config is logged, redacted:\n{logs}");
}

#[tokio::test]
async fn two_instances_share_postgres_and_redis() {
    let url = fresh_postgres_db().await.unwrap();
    let options = ServerOptions::default()
        .env("MAAS_DATABASE_URL", &url)
        .env("MAAS_REDIS_URL", redis_url())
        .env("MAAS_REDIS_PREFIX", redis_prefix())
        .env("MAAS_AUTH__LOGIN_THROTTLE__MAX_FAILURES_PER_ACCOUNT", "2");
    let a = start(options.clone());
    let b = start(options);
    for s in [&a, &b] {
        let r = client().get(s.at("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }

    // A user registered on A logs in on B; B's session works on A.
    maas_testkit::register(&a, "alice").await.unwrap();
    let cookie = cookie_pair(&login_set_cookie(&b, "alice").await.unwrap());
    let me = |s: &Server| client().get(s.at("/api/v1/me")).header("cookie", cookie.clone()).send();
    assert_eq!(me(&a).await.unwrap().status(), 200, "session from B accepted by A (Redis)");

    // Keys created on A authenticate on B; revocation on B is seen by A at once.
    let k: serde_json::Value = client()
        .post(a.at("/api/v1/tenants/alice/keys"))
        .header("cookie", cookie.clone())
        .json(&json!({ "name": "shared", "scopes": ["read"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = k["key"].as_str().unwrap();
    assert_eq!(client().get(b.at("/api/v1/me")).bearer_auth(secret).send().await.unwrap().status(), 200);
    let revoke = client()
        .delete(b.at(&format!("/api/v1/tenants/alice/keys/{}", k["id"].as_str().unwrap())))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    assert_eq!(client().get(a.at("/api/v1/me")).bearer_auth(secret).send().await.unwrap().status(), 401);

    // Login throttling counts failures across instances.
    for s in [&a, &b] {
        let r = client()
            .post(s.at("/api/v1/auth/login"))
            .json(&json!({ "username": "alice", "password": "wrong-password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = client()
        .post(a.at("/api/v1/auth/login"))
        .json(&json!({ "username": "alice", "password": "wrong-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "two failures (one per instance) reached the shared limit");

    // Logout on A ends the session everywhere; data survives a restart of both.
    let out = client().post(a.at("/api/v1/auth/logout")).header("cookie", cookie.clone()).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(me(&b).await.unwrap().status(), 401);
    a.stop();
    b.stop();
    let c = start(ServerOptions::default().env("MAAS_DATABASE_URL", &url));
    let r = client().post(c.at("/api/v1/tenants")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let users = client()
        .post(c.at("/api/v1/auth/register"))
        .json(&json!({ "username": "alice", "email": "x@example.com", "password": "12345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 409, "alice is still in PostgreSQL");
}

#[tokio::test]
async fn readiness_fails_with_503_when_the_database_goes_away() {
    let url = fresh_postgres_db().await.unwrap();
    let s = start(ServerOptions::default().env("MAAS_DATABASE_URL", &url));
    assert_eq!(client().get(s.at("/readyz")).send().await.unwrap().status(), 200);
    let name = url.rsplit('/').next().unwrap();
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&maas_testkit::postgres_admin_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut admin).await.unwrap();
    let r = client().get(s.at("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert_eq!(client().get(s.at("/healthz")).send().await.unwrap().status(), 200, "still live");
}

#[tokio::test]
async fn session_cookie_is_secure_behind_an_https_proxy() {
    let s = start(ServerOptions::default().env("MAAS_HTTP__TRUST_FORWARDED_FOR", "true"));
    maas_testkit::register(&s, "alice").await.unwrap();
    let login = |proto: &'static str| {
        client()
            .post(s.at("/api/v1/auth/login"))
            .header("x-forwarded-proto", proto)
            .header("x-forwarded-for", "203.0.113.9")
            .json(&json!({ "username": "alice", "password": password_of("alice") }))
            .send()
    };
    let plain = login("http").await.unwrap();
    assert!(!plain.headers()["set-cookie"].to_str().unwrap().contains("Secure"));
    let tls = login("https").await.unwrap();
    let cookie = tls.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let audit: serde_json::Value = client()
        .get(s.at("/api/v1/tenants/alice/audit"))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"][0]["client_ip"], "203.0.113.9", "client IP from the trusted proxy");
}
