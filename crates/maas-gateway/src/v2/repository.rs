//! Triton's model repository extension: the index of the models a caller may call over v2
//! (`POST /v2/repository/index`, gRPC `RepositoryIndex`), and explicit load/unload, which is
//! refused with a pointer to the deployments API that owns a model's lifecycle here.

use maas_auth::Caller;
use maas_controller::{Endpoint, ReplicaStatus, Serves};
use maas_core::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v2/repository/index` body; every field optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct RepositoryIndexRequest {
    /// Accepted and ignored: there is one repository, the caller's deployments.
    #[serde(default)]
    pub repository_name: Option<String>,
    /// Only the models ready for inference now.
    #[serde(default)]
    pub ready: bool,
}

/// One model of the index, as Triton lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RepositoryIndexEntry {
    /// `tenant/name`, the name every v2 route accepts.
    pub name: String,
    /// The model version the deployment serves.
    pub version: String,
    /// `READY`, `LOADING` or `UNAVAILABLE`.
    pub state: &'static str,
    /// Why the model is not ready (empty when it is, or while it loads).
    pub reason: String,
}

/// Triton's state of a deployment from its readiness and its replicas' states: ready when one
/// replica is; loading while any replica (or the deployment's files) still loads; otherwise
/// unavailable, with the replicas' failure reasons.
fn index_state(ready: bool, replicas: &[ReplicaStatus]) -> (&'static str, String) {
    if ready {
        return ("READY", String::new());
    }
    if replicas.is_empty() || replicas.iter().any(|r| r.state == "loading") {
        return ("LOADING", String::new());
    }
    let mut reasons: Vec<&str> = replicas.iter().filter_map(|r| r.reason.as_deref()).collect();
    reasons.dedup();
    let reason = if reasons.is_empty() { "no replica is running".to_owned() } else { reasons.join("; ") };
    ("UNAVAILABLE", reason)
}

fn entry(endpoint: &Endpoint) -> RepositoryIndexEntry {
    let (state, reason) = index_state(endpoint.is_ready(), &endpoint.status());
    RepositoryIndexEntry { name: endpoint.full_name(), version: endpoint.version.version.clone(), state, reason }
}

/// The deployments `caller` may call over v2 (its tenant's and public ones; text generation,
/// which v2 does not serve, left out), sorted by name; with `ready_only`, the ready ones.
pub async fn index(state: &AppState, caller: &Caller, ready_only: bool) -> Result<Vec<RepositoryIndexEntry>, ApiError> {
    let endpoints = state.controller.callable(caller).await?;
    Ok(endpoints
        .iter()
        .filter(|e| e.serves() != Serves::Generation)
        .map(|e| entry(e))
        .filter(|e| !ready_only || e.state == "READY")
        .collect())
}

/// Explicit model control: a deployment is loaded by creating or scaling it and unloaded by
/// deleting it, through the deployments API, which checks the `deploy` scope and is audited.
/// Triton answers the same way when it runs without explicit model control.
pub fn model_control(name: &str, action: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedOperation,
        format!(
            "explicit model {action} is not offered over v2: deployments are loaded and unloaded through \
             /api/v1/deployments (maas deploy, maas deployments delete); '{name}' is unchanged"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(state: &'static str, reason: Option<&str>) -> ReplicaStatus {
        ReplicaStatus { index: 0, state, reason: reason.map(str::to_owned), queue_depth: 0 }
    }

    #[test]
    fn states_follow_readiness_then_loading_then_failure() {
        assert_eq!(index_state(true, &[replica("failed", Some("oom")), replica("ready", None)]), ("READY", "".into()));
        assert_eq!(index_state(false, &[]), ("LOADING", "".into()), "files still being prepared");
        assert_eq!(
            index_state(false, &[replica("failed", Some("oom")), replica("loading", None)]),
            ("LOADING", "".into())
        );
        assert_eq!(
            index_state(false, &[replica("failed", Some("bad model")), replica("failed", Some("bad model"))]),
            ("UNAVAILABLE", "bad model".into())
        );
        assert_eq!(index_state(false, &[replica("stopped", None)]), ("UNAVAILABLE", "no replica is running".into()));
    }
}
