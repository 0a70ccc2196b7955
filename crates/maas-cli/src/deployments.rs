//! `maas deploy` and `maas deployments …`: serve a published model version as an inference
//! endpoint `tenant/name`, follow it until it is ready (`--wait`), and list, show, change and
//! delete deployments. Changes answer at once (202); replicas load in the background.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::CliError;
use crate::client::{self, Client, segment};
use crate::commands;
use crate::models::ModelRef;
use crate::output::{self, Output, field};
use crate::progress::Progress;

/// How long `--wait` waits for `ready` or `failed`.
const WAIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Time between two status polls.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// TENANT/NAME of the endpoint: what inference calls (`maas predict`) name.
    pub deployment: String,
    /// TENANT/NAME of the model (a model of the same tenant).
    #[arg(long)]
    pub model: String,
    /// A published ONNX version of the model.
    #[arg(long)]
    pub version: String,
    /// Replicas, 1 to 16 (default 1).
    #[arg(long)]
    pub replicas: Option<u32>,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Wait until the deployment is ready or failed (up to 120 s), showing replica states.
    #[arg(long)]
    pub wait: bool,
}

/// Serving settings; those not given keep their defaults (or, on update, their current values).
#[derive(Debug, Clone, Default, Args)]
pub struct SpecArgs {
    /// Most rows a replica runs together; 1 disables batching (default 1).
    #[arg(long)]
    pub max_batch_size: Option<u64>,
    /// How long the first queued request waits for others to batch with, in µs (default 0).
    #[arg(long)]
    pub max_queue_delay_us: Option<u64>,
    /// Per-request time limit in milliseconds (default 30000).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Requests queued per replica before new ones are refused (default 256).
    #[arg(long)]
    pub queue_capacity: Option<u64>,
    /// Runtime threads per replica (default 0: the runtime's choice).
    #[arg(long)]
    pub threads: Option<u64>,
    /// Language models: sequences one replica decodes together (default 8).
    #[arg(long)]
    pub max_sequences: Option<u64>,
    /// Language models: tokens per sequence (default: the model's, at most 4096).
    #[arg(long)]
    pub context_length: Option<u64>,
    /// External versions: the engine's base URL (e.g. http://vllm:8000).
    #[arg(long)]
    pub external_url: Option<String>,
    /// External versions: `openai` or `kserve_v2` (default openai).
    #[arg(long, requires = "external_url")]
    pub external_protocol: Option<String>,
    /// External versions: the engine's model name (default: the deployment's TENANT/NAME).
    #[arg(long, requires = "external_url")]
    pub external_model: Option<String>,
    /// External versions: the engine's API key (write-only; never shown back).
    #[arg(long, env = "MAAS_EXTERNAL_API_KEY", hide_env_values = true, requires = "external_url")]
    pub external_api_key: Option<String>,
}

impl SpecArgs {
    fn is_empty(&self) -> bool {
        let numbers = [
            self.max_batch_size,
            self.max_queue_delay_us,
            self.timeout_ms,
            self.queue_capacity,
            self.threads,
            self.max_sequences,
            self.context_length,
        ];
        numbers.iter().all(Option::is_none) && self.external_url.is_none()
    }

    /// Writes the settings given into `spec` (a create body, which flattens the spec, or a spec).
    fn apply(&self, spec: &mut Map<String, Value>) {
        let batching = [("max_batch_size", self.max_batch_size), ("max_queue_delay_us", self.max_queue_delay_us)];
        merge_section(spec, "batching", &batching);
        let rest =
            [("timeout_ms", self.timeout_ms), ("queue_capacity", self.queue_capacity), ("threads", self.threads)];
        spec.extend(rest.into_iter().filter_map(|(k, v)| Some((k.to_owned(), Value::from(v?)))));
        let generation = [("max_sequences", self.max_sequences), ("context_length", self.context_length)];
        merge_section(spec, "generation", &generation);
        if let Some(url) = &self.external_url {
            let mut external = json!({ "url": url, "protocol": self.external_protocol.as_deref().unwrap_or("openai") });
            if let Some(model) = &self.external_model {
                external["model"] = json!(model);
            }
            if let Some(key) = &self.external_api_key {
                external["api_key"] = json!(key);
            }
            spec.insert("external".to_owned(), external);
        }
    }
}

/// Sets the given `values` inside the object `spec[section]` (created when missing).
fn merge_section(spec: &mut Map<String, Value>, section: &str, values: &[(&str, Option<u64>)]) {
    if values.iter().all(|(_, v)| v.is_none()) {
        return;
    }
    let entry = spec.entry(section).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    if let Some(object) = entry.as_object_mut() {
        object.extend(values.iter().filter_map(|(k, v)| Some(((*k).to_owned(), Value::from((*v)?)))));
    }
}

// Parsed once per process: the size of the `Update` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Subcommand)]
pub enum DeploymentsCommand {
    /// A tenant's deployments and their states.
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
    /// A deployment's status, with each replica's state (`--output json`: the raw status).
    Show {
        /// TENANT/NAME
        deployment: String,
    },
    /// Change the version, replicas or settings (what is not given stays); the deployment restarts.
    Update {
        /// TENANT/NAME
        deployment: String,
        /// Another published version of the same model.
        #[arg(long)]
        version: Option<String>,
        /// Replicas, 1 to 16.
        #[arg(long)]
        replicas: Option<u32>,
        #[command(flatten)]
        spec: SpecArgs,
        /// Wait until the deployment is ready or failed (up to 120 s), showing replica states.
        #[arg(long)]
        wait: bool,
    },
    /// Stop serving and delete the deployment.
    Delete {
        /// TENANT/NAME
        deployment: String,
    },
}

/// `tenant/name` of a deployment.
fn parse_ref(reference: &str) -> Result<ModelRef, CliError> {
    ModelRef::parse(reference, false)
        .map_err(|_| CliError::Usage(format!("'{reference}' is not a deployment: expected TENANT/NAME")))
}

/// `/api/v1/deployments/{tenant}/{name}`.
fn api(r: &ModelRef) -> String {
    format!("/api/v1/deployments/{}/{}", segment(&r.tenant), segment(&r.name))
}

/// `maas deploy`.
pub async fn deploy(server: Option<&str>, out: Output, args: DeployArgs) -> Result<(), CliError> {
    let r = parse_ref(&args.deployment)?;
    ModelRef::parse(&args.model, false)?;
    let mut body = Map::new();
    body.insert("tenant".into(), r.tenant.clone().into());
    body.insert("name".into(), r.name.clone().into());
    body.insert("model".into(), args.model.clone().into());
    body.insert("version".into(), args.version.clone().into());
    if let Some(n) = args.replicas {
        body.insert("replicas".into(), n.into());
    }
    args.spec.apply(&mut body);
    let c = client::authenticated(server).await?;
    let status = c.json(c.request(Method::POST, "/api/v1/deployments").json(&body)).await?;
    finish(&c, out, &r, status, args.wait).await
}

pub async fn run(server: Option<&str>, out: Output, cmd: DeploymentsCommand) -> Result<(), CliError> {
    let c = client::authenticated(server).await?;
    match cmd {
        DeploymentsCommand::List { tenant } => {
            let list = c.json(c.request(Method::GET, "/api/v1/deployments").query(&[("tenant", &tenant)])).await?;
            commands::show(out, &list, || {
                let rows: Vec<_> = commands::items(&list)
                    .iter()
                    .map(|d| {
                        vec![
                            field(d, "name"),
                            field(d, "model"),
                            field(d, "version"),
                            field(d, "state"),
                            format!("{}/{}", ready_count(d), field(d, "replicas")),
                        ]
                    })
                    .collect();
                output::table(&["name", "model", "version", "state", "replicas"], &rows);
            });
        }
        DeploymentsCommand::Show { deployment } => {
            let r = parse_ref(&deployment)?;
            let status = c.json(c.request(Method::GET, &api(&r))).await?;
            commands::show(out, &status, || print_status(&status));
        }
        DeploymentsCommand::Update { deployment, version, replicas, spec, wait } => {
            let r = parse_ref(&deployment)?;
            if version.is_none() && replicas.is_none() && spec.is_empty() {
                return Err(CliError::Usage("nothing to change: give --version, --replicas or a setting".into()));
            }
            let mut body = Map::new();
            if let Some(v) = version {
                body.insert("version".into(), v.into());
            }
            if let Some(n) = replicas {
                body.insert("replicas".into(), n.into());
            }
            if !spec.is_empty() {
                // The server replaces the whole spec: start from the current one.
                let current = c.json(c.request(Method::GET, &api(&r))).await?;
                let mut settings = current["spec"].as_object().cloned().unwrap_or_default();
                spec.apply(&mut settings);
                body.insert("spec".into(), settings.into());
            }
            let status = c.json(c.request(Method::PATCH, &api(&r)).json(&body)).await?;
            return finish(&c, out, &r, status, wait).await;
        }
        DeploymentsCommand::Delete { deployment } => {
            let r = parse_ref(&deployment)?;
            c.send(c.request(Method::DELETE, &api(&r))).await?;
            commands::show(out, &json!({ "deleted": r.full_name() }), || {
                println!("Deleted deployment {}", r.full_name());
            });
        }
    }
    Ok(())
}

/// After a create or change: optionally waits, prints the status, and fails on `failed`.
async fn finish(c: &Client, out: Output, r: &ModelRef, status: Value, wait: bool) -> Result<(), CliError> {
    let status = if wait { wait_settled(c, out, r, status).await? } else { status };
    commands::show(out, &status, || print_status(&status));
    if status["state"] == "failed" {
        return Err(CliError::DeploymentFailed { name: r.full_name(), reasons: failure_reasons(&status) });
    }
    Ok(())
}

/// Polls the status until `ready` or `failed`, noting replica states as they change.
async fn wait_settled(c: &Client, out: Output, r: &ModelRef, mut status: Value) -> Result<Value, CliError> {
    let progress = Progress::new(out);
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let line = progress_line(&status);
        if line != last {
            progress.note(&line);
            last = line;
        }
        if matches!(status["state"].as_str(), Some("ready" | "failed")) {
            return Ok(status);
        }
        if started.elapsed() >= WAIT_TIMEOUT {
            return Err(CliError::WaitTimedOut {
                name: r.full_name(),
                state: field(&status, "state"),
                secs: WAIT_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        status = c.json(c.request(Method::GET, &api(r))).await?;
    }
}

fn replicas(status: &Value) -> &[Value] {
    status["replica_status"].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn ready_count(status: &Value) -> usize {
    replicas(status).iter().filter(|r| r["state"] == "ready").count()
}

/// `bob/simple: loading (replica 0 ready, replica 1 loading)`.
fn progress_line(status: &Value) -> String {
    let states: Vec<String> =
        replicas(status).iter().map(|r| format!("replica {} {}", field(r, "index"), field(r, "state"))).collect();
    let states = if states.is_empty() { String::new() } else { format!(" ({})", states.join(", ")) };
    format!("{}: {}{states}", field(status, "endpoint"), field(status, "state"))
}

/// Why the replicas failed, one `replica N: reason` per failed replica.
fn failure_reasons(status: &Value) -> String {
    let reasons: Vec<String> = replicas(status)
        .iter()
        .filter(|r| r["state"] == "failed")
        .map(|r| format!("replica {}: {}", field(r, "index"), field(r, "reason")))
        .collect();
    if reasons.is_empty() { "no replica became ready".to_owned() } else { reasons.join("; ") }
}

fn print_status(s: &Value) {
    let spec = &s["spec"];
    let batching = &spec["batching"];
    println!("Deployment {}: {}", field(s, "endpoint"), field(s, "state"));
    println!("  model     {} version {}", field(s, "model"), field(s, "version"));
    println!("  replicas  {}/{} ready", ready_count(s), field(s, "replicas"));
    println!(
        "  settings  max batch size {}, queue delay {} µs · timeout {} ms · queue capacity {}",
        field(batching, "max_batch_size"),
        field(batching, "max_queue_delay_us"),
        field(spec, "timeout_ms"),
        field(spec, "queue_capacity")
    );
    println!("  created   {} · updated {}", field(s, "created_at"), field(s, "updated_at"));
    let rows: Vec<_> = replicas(s)
        .iter()
        .map(|r| vec![field(r, "index"), field(r, "state"), field(r, "queue_depth"), field(r, "reason")])
        .collect();
    if !rows.is_empty() {
        println!();
        output::table(&["replica", "state", "queue", "reason"], &rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_merge_into_the_spec() {
        let args = SpecArgs { max_batch_size: Some(4), timeout_ms: Some(500), ..SpecArgs::default() };
        let mut body = Map::new();
        args.apply(&mut body);
        assert_eq!(Value::from(body), json!({ "batching": { "max_batch_size": 4 }, "timeout_ms": 500 }));

        let mut current = json!({ "batching": { "max_batch_size": 1, "max_queue_delay_us": 50 }, "timeout_ms": 9,
            "queue_capacity": 256, "threads": 0 });
        let args = SpecArgs { max_batch_size: Some(8), threads: Some(2), ..SpecArgs::default() };
        args.apply(current.as_object_mut().unwrap());
        assert_eq!(
            current,
            json!({ "batching": { "max_batch_size": 8, "max_queue_delay_us": 50 }, "timeout_ms": 9,
                "queue_capacity": 256, "threads": 2 })
        );
        assert!(SpecArgs::default().is_empty() && !args.is_empty());
    }

    #[test]
    fn status_lines() {
        let status = json!({ "endpoint": "bob/simple", "state": "failed", "replicas": 2, "replica_status": [
            { "index": 0, "state": "failed", "reason": "bad model", "queue_depth": 0 },
            { "index": 1, "state": "failed", "reason": "bad model", "queue_depth": 0 },
        ] });
        assert_eq!(progress_line(&status), "bob/simple: failed (replica 0 failed, replica 1 failed)");
        assert_eq!(failure_reasons(&status), "replica 0: bad model; replica 1: bad model");
        assert_eq!(failure_reasons(&json!({ "state": "failed" })), "no replica became ready");
        assert_eq!(ready_count(&status), 0);
        assert!(parse_ref("bob").is_err() && parse_ref("bob/simple").is_ok());
        assert_eq!(api(&parse_ref("bob/a.b").unwrap()), "/api/v1/deployments/bob/a.b");
    }
}
