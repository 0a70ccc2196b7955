//! Finding the endpoint an inference call names, checking the caller may use it, and
//! calling a ready replica.

use std::sync::Arc;

use maas_auth::Caller;
use maas_core::keys::Scope;
use maas_core::registry::Visibility;
use maas_runtime::generate::{GenerateRequest, GenerationEvent};
use maas_runtime::replica::{InferRequest, ReplicaError};
use maas_runtime::{Tensor, TensorData};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{Controller, ControllerError, Endpoint, Serves};

/// Vectors of an embeddings call, in input order, and the tokens the inputs took.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
}

/// A generation that was accepted: its prompt length, and the events that follow `Started`.
#[derive(Debug)]
pub struct Generation {
    pub prompt_tokens: usize,
    pub events: UnboundedReceiver<GenerationEvent>,
}

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
        let member = match caller.key_member_of(endpoint.row.tenant_id) {
            Some(member) => member,
            None => {
                caller.is_platform_admin() || self.store.role(caller.user().id, endpoint.row.tenant_id).await?.is_some()
            }
        };
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

fn wrong_kind(endpoint: &Endpoint, wanted: &str) -> ControllerError {
    let serves = match endpoint.serves() {
        Serves::Tensors => "tensor inference (the v2 API)",
        Serves::Embeddings => "embeddings",
        Serves::Generation => "text generation (chat and completions)",
        Serves::Upstream => "an external engine",
    };
    ControllerError::Unsupported(format!("{} serves {serves}, not {wanted}", endpoint.full_name()))
}

impl Controller {
    /// Embeds `texts` on an embeddings endpoint (batched with other callers' texts).
    pub async fn embed(&self, endpoint: &Endpoint, texts: Vec<String>) -> Result<Embeddings, InferError> {
        if endpoint.serves() != Serves::Embeddings {
            return Err(wrong_kind(endpoint, "embeddings").into());
        }
        let rows = texts.len();
        let data = TensorData::Bytes(texts.into_iter().map(String::into_bytes).collect());
        let input = Tensor::new("text", vec![rows as i64], data).map_err(ReplicaError::from)?;
        let outputs = self.infer(endpoint, vec![input], vec!["embedding".into(), "tokens".into()]).await?;
        let find = |name: &str| outputs.iter().find(|t| t.name == name);
        let broken =
            || ReplicaError::from(maas_runtime::RuntimeError::Inference("the model gave no embeddings".into()));
        let (Some(embedding), Some(tokens)) = (find("embedding"), find("tokens")) else {
            return Err(broken().into());
        };
        let (TensorData::Fp32(values), TensorData::Int64(counts)) = (&embedding.data, &tokens.data) else {
            return Err(broken().into());
        };
        let dim = embedding.shape.get(1).and_then(|d| usize::try_from(*d).ok()).unwrap_or(0);
        if dim == 0 || values.len() != dim * rows {
            return Err(broken().into());
        }
        Ok(Embeddings {
            vectors: values.chunks(dim).map(<[f32]>::to_vec).collect(),
            tokens: counts.iter().map(|&c| usize::try_from(c).unwrap_or(0)).sum(),
        })
    }

    /// Starts generating on the least busy ready replica of a text-generation endpoint; waits
    /// until the prompt is accepted (so that a bad request is an error, not a broken stream).
    pub async fn generate(&self, endpoint: &Endpoint, request: GenerateRequest) -> Result<Generation, InferError> {
        if endpoint.serves() != Serves::Generation {
            return Err(wrong_kind(endpoint, "text generation").into());
        }
        let replica = endpoint
            .pick_generator()
            .ok_or_else(|| ReplicaError::NotReady(format!("{} has no ready replica", endpoint.full_name())))?;
        let mut events = replica.generate(request)?;
        match events.recv().await {
            Some(GenerationEvent::Started { prompt_tokens }) => Ok(Generation { prompt_tokens, events }),
            Some(GenerationEvent::Failed(e)) => Err(e.into()),
            Some(other) => Err(ReplicaError::from(maas_runtime::RuntimeError::Inference(format!(
                "the replica answered {other:?} before starting"
            )))
            .into()),
            None => Err(ReplicaError::Cancelled.into()),
        }
    }
}

impl Controller {
    /// The running endpoints `caller` may call (what `GET /v1/models` lists): those of the
    /// caller's tenants (an API key: its own tenant) and those serving public models, sorted
    /// by name.
    pub async fn callable(&self, caller: &Caller) -> Result<Vec<Arc<Endpoint>>, ControllerError> {
        self.visible(caller, true).await
    }

    /// The deployments of the caller's own tenants (every one for a platform admin's session):
    /// those whose serving statistics it may read.
    pub async fn owned(&self, caller: &Caller) -> Result<Vec<Arc<Endpoint>>, ControllerError> {
        self.visible(caller, false).await
    }

    async fn visible(&self, caller: &Caller, public: bool) -> Result<Vec<Arc<Endpoint>>, ControllerError> {
        caller.require_scope(Scope::Infer)?;
        let own: Vec<maas_core::TenantId> = match caller.api_key() {
            Some(key) => vec![key.tenant_id],
            None => self.store.memberships(caller.user().id).await?.into_iter().map(|m| m.tenant.id).collect(),
        };
        let admin = caller.api_key().is_none() && caller.is_platform_admin();
        let mut endpoints: Vec<Arc<Endpoint>> = self
            .endpoints()
            .values()
            .filter(|e| admin || own.contains(&e.row.tenant_id) || (public && e.model.visibility == Visibility::Public))
            .cloned()
            .collect();
        endpoints.sort_by_key(|e| e.full_name());
        Ok(endpoints)
    }
}
