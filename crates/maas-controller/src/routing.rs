//! Finding the endpoint an inference call names, checking the caller may use it, and
//! calling a ready replica.

use std::sync::Arc;

use maas_auth::Caller;
use maas_core::keys::Scope;
use maas_core::registry::Visibility;
use maas_runtime::Tensor;
use maas_runtime::replica::{InferRequest, ReplicaError};

use crate::{Controller, ControllerError, Endpoint};

/// Why an inference call failed.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

impl maas_core::Coded for InferError {
    fn code(&self) -> maas_core::ErrorCode {
        match self {
            InferError::Controller(e) => e.code(),
            InferError::Replica(e) => e.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            InferError::Controller(e) => e.retry_after_secs(),
            InferError::Replica(e) => e.retry_after_secs(),
        }
    }
}

impl Controller {
    /// The endpoint `name` names for this caller: `tenant/name`, or a bare `name` in the
    /// caller's own tenant (its API key's tenant, or a user's personal tenant). A private
    /// model's deployment is "not found" outside its tenant. Keys need the `infer` scope.
    pub async fn resolve(&self, caller: &Caller, name: &str) -> Result<Arc<Endpoint>, ControllerError> {
        caller.require_scope(Scope::Infer)?;
        let (tenant, short) = match name.split_once('/') {
            Some((t, n)) => (t.to_owned(), n.to_owned()),
            None => {
                let own = match caller.api_key() {
                    Some(key) => self.store.tenant(key.tenant_id).await?.slug,
                    None => caller.user().username.clone(),
                };
                (own, name.to_owned())
            }
        };
        let not_found = || ControllerError::NotFound(format!("{tenant}/{short}"));
        let endpoint = self.endpoint(&tenant, &short).map_err(|_| not_found())?;
        let same_tenant_key = caller.api_key().is_none_or(|k| k.tenant_id == endpoint.row.tenant_id);
        let member = same_tenant_key
            && (caller.is_platform_admin()
                || self.store.role(caller.user().id, endpoint.row.tenant_id).await?.is_some());
        if !member && endpoint.model.visibility != Visibility::Public {
            return Err(not_found());
        }
        Ok(endpoint)
    }

    /// Runs one request on a ready replica of `endpoint`.
    pub async fn infer(
        &self,
        endpoint: &Endpoint,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
    ) -> Result<Vec<Tensor>, InferError> {
        let replica = endpoint
            .pick()
            .ok_or_else(|| ReplicaError::NotReady(format!("{} has no ready replica", endpoint.full_name())))?;
        Ok(replica.infer(InferRequest { inputs, outputs }).await?)
    }
}
