//! What a deployment asks for: replicas, resources, batching, timeouts, autoscaling and
//! pricing. Stored as JSON with the deployment; validated here.

use maas_core::Secret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ControllerError;

/// Dynamic batching of one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Batching {
    /// Largest number of rows run together; 1 disables batching.
    pub max_batch_size: usize,
    /// How long the first queued request waits for others, in microseconds.
    pub max_queue_delay_us: u64,
}

impl Default for Batching {
    fn default() -> Self {
        Self { max_batch_size: 1, max_queue_delay_us: 0 }
    }
}

/// Resources a replica reserves (used by the scheduler of later runtimes; recorded now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    pub cpu: Option<f64>,
    pub memory_mb: Option<u64>,
    pub gpu: Option<u32>,
    pub gpu_type: Option<String>,
}

/// Settings of causal language model replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Generation {
    /// Sequences one replica decodes together (continuous batching).
    pub max_sequences: usize,
    /// Tokens one sequence may hold (prompt + output); default: the model's own, at most 4096.
    pub context_length: Option<usize>,
}

impl Default for Generation {
    fn default() -> Self {
        Self { max_sequences: 8, context_length: None }
    }
}

/// The API an external engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` (vLLM, TGI, Ollama, LiteLLM…).
    Openai,
    /// KServe Open Inference Protocol v2 over REST (`/v2/models/{name}/infer`: Triton, KServe…).
    KserveV2,
}

/// An engine already running elsewhere, served through this platform (format `external`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct External {
    /// Base URL of the engine, e.g. `http://vllm.internal:8000` (without `/v1`).
    pub url: String,
    pub protocol: UpstreamProtocol,
    /// The model name the engine knows; default: the deployment's `tenant/name`.
    #[serde(default)]
    pub model: Option<String>,
    /// Sent upstream as `Authorization: Bearer …`. Write-only: never shown in responses.
    #[serde(default, skip_serializing)]
    #[schema(value_type = Option<String>, write_only)]
    pub api_key: Option<Secret<String>>,
}

/// The serving settings of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentSpec {
    pub batching: Batching,
    pub resources: Resources,
    /// Requests queued per replica before new ones are refused with 429.
    pub queue_capacity: usize,
    /// Per-request time limit in milliseconds (504 after it).
    pub timeout_ms: u64,
    /// Intra-op threads of the runtime per replica (0: the runtime's default).
    pub threads: usize,
    /// Causal language models: continuous batching and context.
    pub generation: Generation,
    /// Set for versions of format `external`: where the engine runs.
    pub external: Option<External>,
    /// Autoscaling settings (kept for the autoscaler; replicas are fixed for now).
    #[schema(value_type = Option<Object>)]
    pub autoscaling: Option<serde_json::Value>,
    /// What each call costs the caller's tenant (metering prices every call with it).
    pub pricing: Option<maas_core::billing::PricePlan>,
}

impl Default for DeploymentSpec {
    fn default() -> Self {
        Self {
            batching: Batching::default(),
            resources: Resources::default(),
            queue_capacity: 256,
            timeout_ms: 30_000,
            threads: 0,
            generation: Generation::default(),
            external: None,
            autoscaling: None,
            pricing: None,
        }
    }
}

impl DeploymentSpec {
    pub fn validate(&self) -> Result<(), ControllerError> {
        let bad = |m: &str| Err(ControllerError::InvalidSpec(m.to_owned()));
        if !(1..=1024).contains(&self.batching.max_batch_size) {
            return bad("batching.max_batch_size must be 1 to 1024");
        }
        if self.batching.max_queue_delay_us > 1_000_000 {
            return bad("batching.max_queue_delay_us must be at most 1000000 (1 s)");
        }
        if !(1..=100_000).contains(&self.queue_capacity) {
            return bad("queue_capacity must be 1 to 100000");
        }
        if !(1..=3_600_000).contains(&self.timeout_ms) {
            return bad("timeout_ms must be 1 to 3600000");
        }
        if self.threads > 256 {
            return bad("threads must be at most 256");
        }
        if !(1..=256).contains(&self.generation.max_sequences) {
            return bad("generation.max_sequences must be 1 to 256");
        }
        if self.generation.context_length.is_some_and(|n| !(16..=1_048_576).contains(&n)) {
            return bad("generation.context_length must be 16 to 1048576");
        }
        if let Some(plan) = &self.pricing {
            plan.validate().map_err(|e| ControllerError::InvalidSpec(format!("pricing: {e}")))?;
        }
        if let Some(external) = &self.external {
            let url = external.url.trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return bad("external.url must be an http:// or https:// URL");
            }
        }
        Ok(())
    }

    /// The JSON kept in the store: like the API's, but with the write-only upstream key.
    pub fn to_stored(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let (Some(key), Some(external)) =
            (self.external.as_ref().and_then(|e| e.api_key.as_ref()), value.get_mut("external"))
        {
            external["api_key"] = serde_json::Value::String(key.expose().clone());
        }
        value
    }

    /// Keeps the stored upstream key when a change does not give a new one.
    pub(crate) fn keep_secret_of(&mut self, current: &DeploymentSpec) {
        if let (Some(new), Some(old)) = (self.external.as_mut(), current.external.as_ref())
            && new.api_key.is_none()
        {
            new.api_key = old.api_key.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_key_is_stored_but_never_shown() {
        let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "external": {"url": "http://127.0.0.1:9", "protocol": "openai", "api_key": "sk-upstream"}
        }))
        .unwrap();
        let shown = serde_json::to_string(&spec).unwrap();
        assert!(!shown.contains("sk-upstream"), "{shown}");
        let stored = spec.to_stored();
        assert_eq!(stored["external"]["api_key"], "sk-upstream");
        let back: DeploymentSpec = serde_json::from_value(stored).unwrap();
        assert_eq!(back.external.unwrap().api_key.unwrap().expose(), "sk-upstream");
    }

    #[test]
    fn a_change_without_a_key_keeps_the_stored_one() {
        let current: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "external": {"url": "http://a:1", "protocol": "kserve_v2", "api_key": "k1"}
        }))
        .unwrap();
        let mut change: DeploymentSpec =
            serde_json::from_value(serde_json::json!({"external": {"url": "http://b:2", "protocol": "kserve_v2"}}))
                .unwrap();
        change.keep_secret_of(&current);
        assert_eq!(change.external.unwrap().api_key.unwrap().expose(), "k1");
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut spec = DeploymentSpec::default();
        spec.generation.max_sequences = 0;
        assert!(spec.validate().is_err());
        let spec: DeploymentSpec =
            serde_json::from_value(serde_json::json!({"external": {"url": "ftp://x", "protocol": "openai"}})).unwrap();
        assert!(spec.validate().is_err());
    }
}
