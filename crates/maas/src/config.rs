//! Server configuration: defaults, then a TOML file (`--config`), then `MAAS_*` environment
//! variables (nested keys with `__`, e.g. `MAAS_AUTH__SESSION_TTL_SECS`), then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use maas_artifacts::S3Config;
use maas_auth::AuthConfig;
use maas_core::Secret;
use maas_gateway::GatewayConfig;
use maas_registry::RegistryConfig;
use maas_runtime::embed::EmbeddingPrecision;
use serde::{Deserialize, Serialize};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything `maas serve` can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded defaults keep their files (the SQLite database, later artifacts).
    pub data_dir: PathBuf,
    /// HTTP listen address; port 0 picks a free port (the startup log says which).
    pub listen: SocketAddr,
    /// gRPC listen address (KServe v2 `inference.GRPCInferenceService`); port 0 picks a free
    /// port (the startup log says which, as `grpc_listen_addr`).
    pub grpc_listen: SocketAddr,
    /// `postgres://…` to use PostgreSQL; default: SQLite under `data_dir`.
    pub database_url: Option<Secret<String>>,
    /// `redis://…` to keep sessions and counters in Redis; default: in process.
    pub redis_url: Option<Secret<String>>,
    /// Prefix of every Redis key this instance writes.
    pub redis_prefix: String,
    pub log_format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `maas_gateway=debug,info`.
    pub log_level: String,
    pub auth: AuthConfig,
    pub http: GatewayConfig,
    pub artifacts: ArtifactsConfig,
    pub registry: RegistryConfig,
    pub runtime: RuntimeConfig,
    /// `nats://…` to publish usage events to NATS JetStream; default: no events.
    pub nats_url: Option<Secret<String>>,
    /// Metering (group commit), limits (what happens when Redis is down), tenant defaults.
    pub metering: maas_metering::MeteringConfig,
}

/// How replicas run models.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// The ONNX Runtime shared library (`libonnxruntime.so`, ≥ 1.31); unset: `ORT_DYLIB_PATH`.
    pub onnxruntime_library: Option<PathBuf>,
    /// Threads inside one operator per replica (0: ONNX Runtime's default).
    pub intra_op_threads: usize,
    /// Threads running independent operators (0: sequential).
    pub inter_op_threads: usize,
    /// Whether idle intra-op threads spin (unset: ONNX Runtime's default, which spins).
    pub intra_op_spinning: Option<bool>,
    /// Whether intra-op threads keep spinning after a run until the next (ONNX Runtime's
    /// default); off, they spin only during a run and leave the cores to request handling.
    pub spin_between_runs: bool,
    /// Sentence-embedding encoders' dense layers: `auto` (bfloat16 products with f32 sums
    /// where the CPU has AVX512_BF16, else f32) or `float32`.
    pub embeddings_precision: EmbeddingPrecision,
}

/// Where model files are stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactsConfig {
    /// `local` (files under `data_dir/artifacts`) or `s3`.
    pub backend: ArtifactsBackend,
    /// An S3-compatible bucket (AWS S3, MinIO, SeaweedFS…).
    pub s3: S3Config,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactsBackend {
    #[default]
    Local,
    S3,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("maas-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            database_url: None,
            redis_url: None,
            redis_prefix: "maas:".into(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            auth: AuthConfig::default(),
            http: GatewayConfig::default(),
            artifacts: ArtifactsConfig::default(),
            registry: RegistryConfig::default(),
            runtime: RuntimeConfig::default(),
            nats_url: None,
            metering: maas_metering::MeteringConfig::default(),
        }
    }
}

/// Values given as command-line flags (highest precedence).
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Loads and validates the configuration.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only `MAAS_*` variables naming a configuration key are configuration: the CLI's own
        // (`MAAS_SERVER`, `MAAS_PASSWORD`, …) are not. The keys come from `Config` itself.
        let keys: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let env = Env::prefixed("MAAS_").split("__").filter(move |key| {
            let top = key.as_str().split('.').next().unwrap_or_default().to_ascii_lowercase();
            keys.contains(&top)
        });
        let config: Config =
            figment.merge(env).merge(Serialized::defaults(overrides)).extract().context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.database_url {
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
                bail!("database_url must start with postgres://, postgresql:// or sqlite:");
            }
        }
        if let Some(url) = &self.redis_url
            && !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://"))
        {
            bail!("redis_url must start with redis:// or rediss://");
        }
        if let Some(url) = &self.nats_url
            && !(url.expose().starts_with("nats://") || url.expose().starts_with("tls://"))
        {
            bail!("nats_url must start with nats:// or tls://");
        }
        if self.auth.session_ttl_secs == 0 {
            bail!("auth.session_ttl_secs must be positive");
        }
        if self.auth.refresh_window_secs >= self.auth.session_ttl_secs {
            bail!("auth.refresh_window_secs must be shorter than auth.session_ttl_secs");
        }
        if self.artifacts.backend == ArtifactsBackend::S3 && self.artifacts.s3.bucket.is_empty() {
            bail!("artifacts.s3.bucket must be set when artifacts.backend is s3");
        }
        if self.grpc_listen == self.listen && self.listen.port() != 0 {
            bail!("grpc_listen must differ from listen ({})", self.listen);
        }
        if self.http.max_body_bytes < 1024 {
            bail!("http.max_body_bytes must be at least 1024");
        }
        Ok(())
    }

    /// The metadata store URL: the configured one, else SQLite under the data dir.
    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().clone(),
            None => format!("sqlite:{}", self.data_dir.join("maas.db").display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_secrets_are_redacted() {
        let mut config = Config::default();
        config.validate().unwrap();
        config.database_url = Some(Secret::new("postgres://u:hunter2@db/x".into()));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(config.store_url(), "postgres://u:hunter2@db/x");
    }

    #[test]
    fn bad_values_are_refused() {
        let mut config = Config::default();
        config.auth.refresh_window_secs = config.auth.session_ttl_secs;
        assert!(config.validate().is_err());
        let config = Config { database_url: Some(Secret::new("mysql://x".into())), ..Config::default() };
        assert!(config.validate().is_err());
        let config = Config { grpc_listen: Config::default().listen, ..Config::default() };
        assert!(config.validate().is_err(), "HTTP and gRPC on one address");
    }

    #[test]
    fn embeddings_precision_is_auto_unless_set() {
        let parse = |toml: &str| {
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(toml))
                .extract::<Config>()
                .map(|c| c.runtime.embeddings_precision)
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse(""), Ok(EmbeddingPrecision::Auto));
        assert_eq!(parse("[runtime]\nembeddings_precision = \"float32\""), Ok(EmbeddingPrecision::Float32));
        assert!(parse("[runtime]\nembeddings_precision = \"fp8\"").is_err());
    }
}
