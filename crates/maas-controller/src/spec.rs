//! What a deployment asks for: replicas, resources, batching, timeouts, autoscaling and
//! pricing. Stored as JSON with the deployment; validated here.

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
    /// Autoscaling settings (kept for the autoscaler; replicas are fixed for now).
    #[schema(value_type = Option<Object>)]
    pub autoscaling: Option<serde_json::Value>,
    /// Price plan (kept for metering and billing).
    #[schema(value_type = Option<Object>)]
    pub pricing: Option<serde_json::Value>,
}

impl Default for DeploymentSpec {
    fn default() -> Self {
        Self {
            batching: Batching::default(),
            resources: Resources::default(),
            queue_capacity: 256,
            timeout_ms: 30_000,
            threads: 0,
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
        Ok(())
    }
}
