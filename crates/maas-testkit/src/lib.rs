//! The one shared helper of the black-box tests: real backing services (a fresh PostgreSQL
//! database per test, a unique Redis key prefix) and a real `maas serve` process on
//! `127.0.0.1:0` with its own data directory.
//!
//! The services are the ones `scripts/test.sh` makes sure are running; their addresses come
//! from `MAAS_TEST_POSTGRES_URL` and `MAAS_TEST_REDIS_URL` (defaults: the local servers).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sqlx::Connection as _;

/// Server URL of the PostgreSQL instance tests may create databases in.
pub fn postgres_admin_url() -> String {
    std::env::var("MAAS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// URL of the Redis server tests use (each test with its own key prefix).
pub fn redis_url() -> String {
    std::env::var("MAAS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A unique Redis key prefix for one test.
pub fn redis_prefix() -> String {
    format!("maas-test-{}:", uuid::Uuid::new_v4().simple())
}

/// Creates an empty database named `maas_t_<random>` and returns its URL. The test script
/// drops leftovers of earlier runs before it starts.
pub async fn fresh_postgres_db() -> anyhow::Result<String> {
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .with_context(|| format!("PostgreSQL must be running at {admin}: use scripts/test.sh"))?;
    let name = format!("maas_t_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
    conn.close().await?;
    let (base, _) = admin.rsplit_once('/').context("MAAS_TEST_POSTGRES_URL has no database part")?;
    Ok(format!("{base}/{name}"))
}

/// A running `maas serve` child process; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// e.g. `http://127.0.0.1:41234`
    pub url: String,
    /// The gRPC address, `host:port` without a scheme (what Triton's client takes), e.g.
    /// `127.0.0.1:41235`.
    pub grpc_addr: String,
    /// Every log line the server printed so far is also kept here (JSON lines).
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub data_dir: tempfile::TempDir,
}

/// How to start a server: extra environment variables and arguments.
#[derive(Debug, Default, Clone)]
pub struct ServerOptions {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// Reuse this data directory (to restart a server on the same data) instead of a fresh one.
    pub data_dir: Option<std::path::PathBuf>,
}

impl ServerOptions {
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }
}

impl Server {
    /// Starts `bin serve --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --data-dir <temp>
    /// --log-format json` and waits for the `listen_addr` and `grpc_listen_addr` log lines.
    pub fn start(bin: &Path, options: ServerOptions) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
            .arg(options.data_dir.as_deref().unwrap_or(data_dir.path()))
            .args(&options.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Tests choose the backends explicitly; ignore whatever the environment says.
        for var in [
            "MAAS_DATABASE_URL",
            "MAAS_NATS_URL",
            "MAAS_REDIS_URL",
            "MAAS_LISTEN",
            "MAAS_GRPC_LISTEN",
            "MAAS_DATA_DIR",
            "MAAS_LOG_FORMAT",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (tx, logs) = (tx.clone(), logs.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        for (key, grpc) in [("listen_addr", false), ("grpc_listen_addr", true)] {
                            if let Some(addr) = v[key].as_str() {
                                let _ = tx.send((grpc, addr.to_owned()));
                            }
                        }
                    }
                    logs.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        drop(tx);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let (mut http, mut grpc): (Option<String>, Option<String>) = (None, None);
        let (http, grpc_addr) = loop {
            if let (Some(http), Some(grpc)) = (&http, &grpc) {
                break (http.clone(), grpc.clone());
            }
            match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok((false, addr)) => http = Some(addr),
                Ok((true, addr)) => grpc = Some(addr),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let logs = logs.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
                    bail!("the server did not report its addresses; its output:\n{logs}")
                }
            }
        };
        Ok(Server { child, url: format!("http://{http}"), grpc_addr, logs, data_dir })
    }

    /// `self.url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    /// Stops the server with SIGTERM-like kill and waits for it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that keeps cookies, like a browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().unwrap_or_default()
}

/// An HTTP client without a cookie store.
pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// The password the helpers give every test user.
pub fn password_of(username: &str) -> String {
    format!("pw-{username}-123")
}

/// Registers `username` (email `<username>@example.com`) and returns the response body.
pub async fn register(server: &Server, username: &str) -> anyhow::Result<serde_json::Value> {
    let response = client()
        .post(server.at("/api/v1/auth/register"))
        .json(&serde_json::json!({
            "username": username,
            "email": format!("{username}@example.com"),
            "password": password_of(username),
        }))
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::CREATED {
        bail!("register {username}: {} {}", response.status(), response.text().await?);
    }
    Ok(response.json().await?)
}

/// Registers `username` and returns a cookie-keeping client logged in as them.
pub async fn user(server: &Server, username: &str) -> anyhow::Result<reqwest::Client> {
    register(server, username).await?;
    let browser = browser();
    let response = browser
        .post(server.at("/api/v1/auth/login"))
        .json(&serde_json::json!({ "username": username, "password": password_of(username) }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("login {username}: {} {}", response.status(), response.text().await?);
    }
    Ok(browser)
}

/// Logs `username` in without a cookie store and returns the whole `Set-Cookie` value.
pub async fn login_set_cookie(server: &Server, username: &str) -> anyhow::Result<String> {
    let response = client()
        .post(server.at("/api/v1/auth/login"))
        .json(&serde_json::json!({ "username": username, "password": password_of(username) }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("login {username}: {} {}", response.status(), response.text().await?);
    }
    Ok(response.headers().get("set-cookie").context("no Set-Cookie")?.to_str()?.to_owned())
}

/// The `name=value` part of a `Set-Cookie` value, ready for a `Cookie` header.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().trim().to_owned()
}

/// Sends a request; returns the status and the JSON body (`null` when empty or not JSON).
pub async fn call(req: reqwest::RequestBuilder) -> (reqwest::StatusCode, serde_json::Value) {
    let response = req.send().await.expect("request sent");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// The `error.code` of an error body.
pub fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// The directory of real model files (`scripts/services.sh` fetches them from PyPI).
pub fn models_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var("MAAS_TEST_MODELS_DIR").expect("MAAS_TEST_MODELS_DIR is not set: use scripts/test.sh"),
    )
}

/// Models and deployments made through the API, for tests that need one served.
pub mod serving {
    use std::time::Duration;

    use reqwest::{Client, StatusCode};
    use serde_json::{Value, json};

    use super::{Server, call};

    /// Creates model `repo` (`tenant/name`, once) with `task` and `visibility`, version
    /// `version` of `format` holding `files` (path, bytes), and publishes it.
    pub async fn publish(
        s: &Server,
        c: &Client,
        repo: &str,
        version: &str,
        (task, visibility, format): (&str, &str, &str),
        files: &[(String, Vec<u8>)],
    ) {
        let (tenant, name) = repo.split_once('/').expect("tenant/name");
        let (status, body) = call(
            c.post(s.at("/api/v1/models"))
                .json(&json!({ "tenant": tenant, "name": name, "task": task, "visibility": visibility })),
        )
        .await;
        assert!(status == StatusCode::CREATED || status == StatusCode::CONFLICT, "{status} {body}");
        let url = s.at(&format!("/api/v1/models/{repo}/versions"));
        let (status, body) = call(c.post(url).json(&json!({ "version": version, "format": format }))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        for (path, bytes) in files {
            let url = s.at(&format!("/api/v1/models/{repo}/versions/{version}/files/{path}"));
            let (status, body) = call(c.put(url).body(bytes.clone())).await;
            assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
        }
        let (status, body) = call(c.post(s.at(&format!("/api/v1/models/{repo}/versions/{version}/publish")))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Every file under `dir`, as (relative path, bytes).
    pub fn files_of(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                    let relative = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                    files.push((relative, std::fs::read(&path).unwrap()));
                }
            }
        }
        files
    }

    /// Deploys `model` at `version` as `endpoint` (`tenant/name`) with extra settings merged
    /// into the request, and waits until it is ready.
    pub async fn deploy(s: &Server, c: &Client, endpoint: &str, model: &str, version: &str, extra: Value) -> Value {
        let (tenant, name) = endpoint.split_once('/').expect("tenant/name");
        let mut body = json!({ "tenant": tenant, "name": name, "model": model, "version": version });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, created) = call(c.post(s.at("/api/v1/deployments")).json(&body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{created}");
        wait_ready(s, c, endpoint).await
    }

    /// Polls a deployment until it is ready; panics (with the server log) if it fails or
    /// takes more than a minute.
    pub async fn wait_ready(s: &Server, c: &Client, endpoint: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..600 {
            let (_, status) = call(c.get(s.at(&format!("/api/v1/deployments/{endpoint}")))).await;
            if status["ready"] == true {
                return status;
            }
            assert_ne!(status["state"], "failed", "{endpoint} failed to load: {status}\n{}", s.log_text());
            last = status;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{endpoint} did not become ready: {last}\n{}", s.log_text());
    }

    /// A new API key of `tenant` with `scopes`.
    pub async fn api_key(s: &Server, c: &Client, tenant: &str, scopes: &[&str]) -> String {
        let url = s.at(&format!("/api/v1/tenants/{tenant}/keys"));
        let (status, body) = call(c.post(url).json(&json!({ "name": "test", "scopes": scopes }))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["key"].as_str().expect("the key's secret").to_owned()
    }
}

/// Running the `maas` CLI against a test server.
pub mod cli {
    use std::path::Path;
    use std::process::{Command, Output, Stdio};

    use super::Server;

    /// Runs `bin ARGS` with its own config dir, pointed at `server`, with no credentials from
    /// the environment and no standard input.
    pub fn run(bin: &Path, config_dir: &Path, server: &Server, args: &[&str]) -> Output {
        Command::new(bin)
            .args(args)
            .env("MAAS_CONFIG_DIR", config_dir)
            .env("MAAS_SERVER", &server.url)
            .env_remove("MAAS_API_KEY")
            .env_remove("MAAS_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .expect("maas runs")
    }

    /// The standard output of a run that must have succeeded.
    pub fn ok(output: &Output) -> String {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
        stdout
    }

    /// The standard error of a run that must have failed.
    pub fn fails(output: &Output) -> String {
        assert!(!output.status.success(), "expected a failure: {}", String::from_utf8_lossy(&output.stdout));
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// The JSON a successful `--output json` run printed.
    pub fn json_of(output: &Output) -> serde_json::Value {
        serde_json::from_str(&ok(output)).expect("--output json prints JSON")
    }
}
