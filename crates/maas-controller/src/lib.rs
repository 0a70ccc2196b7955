//! Deployments: the desired state lives in the store; the [`Controller`] runs it as
//! in-process replicas (the embedded runtime; worker processes and Kubernetes come behind the
//! same replica interface later) and routes inference calls to ready replicas.
//!
//! - [`spec`]: what a deployment asks for (batching, timeouts, resources…).
//! - [`endpoint`]: one running deployment: its model files, replicas and their states.
//! - [`service`]: create / show / list / change / delete, with access checks.
//! - [`runtime`]: which runtime serves a version (ONNX, embeddings, llama.cpp, candle, external).
//! - [`upstream`]: the client of an external engine.
//! - [`routing`]: finding the endpoint an inference call names, and calling it (tensors,
//!   embeddings, generation streams).

pub mod endpoint;
pub mod error;
pub mod routing;
pub mod runtime;
pub mod service;
pub mod spec;
pub mod upstream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use maas_artifacts::ArtifactStore;
use maas_registry::Registry;
use maas_runtime::embed::EmbeddingConfig;
use maas_runtime::onnx::OnnxConfig;
use maas_store::Store;

pub use endpoint::{Endpoint, ReplicaStatus};
pub use error::ControllerError;
pub use runtime::{Runtime, Serves};
pub use spec::DeploymentSpec;
pub use upstream::Upstream;

/// Where the controller keeps model files and how it runs them.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Local copies of deployed versions' files, one folder per version.
    pub cache_dir: PathBuf,
    pub onnx: OnnxConfig,
    /// How sentence-embedding replicas run (`threads` is the deployment's, not this one's).
    pub embeddings: EmbeddingConfig,
    /// Largest answer read from an external engine, in bytes (a whole body, or one event of a
    /// stream): an engine that sends without end must not exhaust the server's memory.
    pub max_upstream_answer_bytes: usize,
}

/// Running endpoints by (tenant slug, deployment name).
type Endpoints = HashMap<(String, String), Arc<Endpoint>>;

/// Runs deployments in this process.
#[derive(Debug, Clone)]
pub struct Controller {
    store: Arc<dyn Store>,
    artifacts: Arc<dyn ArtifactStore>,
    registry: Registry,
    config: Arc<ControllerConfig>,
    running: Arc<RwLock<Endpoints>>,
}

impl Controller {
    pub fn new(
        store: Arc<dyn Store>,
        artifacts: Arc<dyn ArtifactStore>,
        registry: Registry,
        config: ControllerConfig,
    ) -> Self {
        Self { store, artifacts, registry, config: Arc::new(config), running: Arc::default() }
    }

    fn endpoints(&self) -> std::sync::RwLockReadGuard<'_, Endpoints> {
        self.running.read().unwrap_or_else(|p| p.into_inner())
    }

    fn endpoints_mut(&self) -> std::sync::RwLockWriteGuard<'_, Endpoints> {
        self.running.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts every stored deployment (at server start).
    pub async fn restore(&self) -> Result<usize, ControllerError> {
        let rows = self.store.all_deployments().await?;
        let count = rows.len();
        for row in rows {
            let tenant = self.store.tenant(row.tenant_id).await?;
            if let Err(e) = self.launch(&tenant.slug, row).await {
                tracing::warn!(error = %e, "a deployment could not be restored");
            }
        }
        Ok(count)
    }

    /// Stops every replica (at shutdown).
    pub fn shutdown(&self) {
        for endpoint in self.endpoints_mut().drain().map(|(_, e)| e) {
            endpoint.stop();
        }
    }
}
