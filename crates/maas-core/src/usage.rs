//! Usage records: one per inference call, the data every meter, limit, invoice and event is
//! derived from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::billing::PricePlan;
use crate::{ApiKeyId, DeploymentId, TenantId, VersionId};

/// Which API a call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InferenceApi {
    V2Rest,
    V2Grpc,
    OpenaiEmbeddings,
    OpenaiChat,
    OpenaiCompletions,
}

impl InferenceApi {
    pub fn as_str(self) -> &'static str {
        match self {
            InferenceApi::V2Rest => "v2_rest",
            InferenceApi::V2Grpc => "v2_grpc",
            InferenceApi::OpenaiEmbeddings => "openai_embeddings",
            InferenceApi::OpenaiChat => "openai_chat",
            InferenceApi::OpenaiCompletions => "openai_completions",
        }
    }

    pub fn parse(s: &str) -> Option<InferenceApi> {
        [
            InferenceApi::V2Rest,
            InferenceApi::V2Grpc,
            InferenceApi::OpenaiEmbeddings,
            InferenceApi::OpenaiChat,
            InferenceApi::OpenaiCompletions,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One inference call, as metered. `id` is the request id the response carried
/// (`x-request-id`) and the idempotency key of the record everywhere downstream: the store keeps
/// at most one record per id and the event stream deduplicates on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    #[schema(value_type = String)]
    pub id: Uuid,
    /// The tenant that pays: the API key's tenant (or the deployment's, for a member's session).
    pub tenant_id: TenantId,
    pub api_key_id: Option<ApiKeyId>,
    pub deployment_id: DeploymentId,
    /// `tenant/name` of the deployment.
    pub deployment: String,
    pub version_id: VersionId,
    /// `tenant/model@version`.
    pub model_version: String,
    pub api: InferenceApi,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Time the call spent in the runtime (queue wait excluded where the runtime says so).
    pub compute_ms: i64,
    /// `compute_ms` times the GPUs of one replica (0 on CPU deployments): what GPU-hour quotas count.
    pub gpu_ms: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
    /// The HTTP status answered (gRPC calls: the HTTP status of the same outcome).
    pub status: u16,
    /// The error code, when the call failed.
    pub error_code: Option<String>,
    pub latency_us: i64,
    pub at: DateTime<Utc>,
    /// False for traffic that is recorded but never billed (shadow/mirrored calls, failures).
    pub billable: bool,
    /// The deployment's prices when the call was made (invoices never re-price history).
    pub price: PricePlan,
    /// What this call costs under `price`, in micro-units of `price.currency` (0 when not billable).
    pub cost_micros: i64,
}

impl UsageRecord {
    pub fn succeeded(&self) -> bool {
        self.status < 400
    }
}
