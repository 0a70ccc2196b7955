//! A running deployment: its model files copied to the local cache, then its replicas
//! (tensor replicas, generation replicas, or the client of an external engine).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use maas_artifacts::{ArtifactStore, Digest};
use maas_core::registry::{Model, ModelFile, ModelVersion};
use maas_runtime::generate::scheduler::{GenerationConfig, GenerationReplica};
use maas_runtime::replica::{Replica, ReplicaConfig, ReplicaState};
use maas_runtime::{InferStats, IoSpec};
use maas_store::DeploymentRow;
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;
use utoipa::ToSchema;

use crate::runtime::{Runtime, Serves};
use crate::upstream::Upstream;
use crate::{ControllerConfig, ControllerError, DeploymentSpec};

/// Where an endpoint stands.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub index: usize,
    /// `loading`, `ready`, `failed` or `stopped`.
    pub state: &'static str,
    pub reason: Option<String>,
    pub queue_depth: usize,
}

/// The running parts of an endpoint, by runtime.
#[derive(Debug, Default)]
enum Replicas {
    /// Not started yet (files being copied).
    #[default]
    None,
    Tensor(Vec<Arc<Replica>>),
    Generate(Vec<Arc<GenerationReplica>>),
    Upstream(Arc<Upstream>),
}

/// A deployment being served.
pub struct Endpoint {
    pub row: DeploymentRow,
    pub tenant: String,
    pub model: Model,
    pub version: ModelVersion,
    pub spec: DeploymentSpec,
    pub runtime: Runtime,
    replicas: Mutex<Replicas>,
    /// Why the endpoint could not start (files missing…), before any replica exists.
    failure: Mutex<Option<String>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("tenant", &self.tenant).field("name", &self.row.name).finish_non_exhaustive()
    }
}

fn state_name(state: &ReplicaState) -> (&'static str, Option<String>) {
    match state {
        ReplicaState::Loading => ("loading", None),
        ReplicaState::Ready => ("ready", None),
        ReplicaState::Failed(reason) => ("failed", Some(reason.clone())),
        ReplicaState::Stopped => ("stopped", None),
    }
}

impl Endpoint {
    pub(crate) fn new(
        tenant: String,
        row: DeploymentRow,
        model: Model,
        version: ModelVersion,
        spec: DeploymentSpec,
        runtime: Runtime,
    ) -> Self {
        Self {
            row,
            tenant,
            model,
            version,
            spec,
            runtime,
            replicas: Mutex::new(Replicas::None),
            failure: Mutex::new(None),
            next: AtomicUsize::new(0),
        }
    }

    /// `tenant/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.tenant, self.row.name)
    }

    /// What this endpoint answers.
    pub fn serves(&self) -> Serves {
        self.runtime.serves()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Replicas> {
        self.replicas.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn replicas(&self) -> Vec<Arc<Replica>> {
        match &*self.lock() {
            Replicas::Tensor(r) => r.clone(),
            _ => Vec::new(),
        }
    }

    fn generators(&self) -> Vec<Arc<GenerationReplica>> {
        match &*self.lock() {
            Replicas::Generate(r) => r.clone(),
            _ => Vec::new(),
        }
    }

    /// The engine behind an external deployment.
    pub fn upstream(&self) -> Option<Arc<Upstream>> {
        match &*self.lock() {
            Replicas::Upstream(u) => Some(u.clone()),
            _ => None,
        }
    }

    /// Each replica's state (empty while the files are being prepared).
    pub fn status(&self) -> Vec<ReplicaStatus> {
        if let Some(reason) = self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return vec![ReplicaStatus { index: 0, state: "failed", reason: Some(reason), queue_depth: 0 }];
        }
        let status = |index, state: ReplicaState, queue_depth| {
            let (state, reason) = state_name(&state);
            ReplicaStatus { index, state, reason, queue_depth }
        };
        match &*self.lock() {
            Replicas::None => Vec::new(),
            Replicas::Tensor(r) => r.iter().enumerate().map(|(i, r)| status(i, r.state(), r.queue_depth())).collect(),
            Replicas::Generate(r) => r.iter().enumerate().map(|(i, r)| status(i, r.state(), r.queue_depth())).collect(),
            Replicas::Upstream(_) => vec![status(0, ReplicaState::Ready, 0)],
        }
    }

    /// Ready when at least one replica is (an external engine counts as ready).
    pub fn is_ready(&self) -> bool {
        match &*self.lock() {
            Replicas::None => false,
            Replicas::Tensor(r) => r.iter().any(|r| matches!(r.state(), ReplicaState::Ready)),
            Replicas::Generate(r) => r.iter().any(|r| matches!(r.state(), ReplicaState::Ready)),
            Replicas::Upstream(_) => true,
        }
    }

    /// What the tensor replicas serving now have served since they started, summed; `None`
    /// for text generation and external engines.
    pub fn stats(&self) -> Option<InferStats> {
        if !matches!(self.serves(), Serves::Tensors | Serves::Embeddings) {
            return None;
        }
        Some(self.replicas().iter().fold(InferStats::default(), |mut all, r| {
            all.merge(&r.stats());
            all
        }))
    }

    /// Tensor replicas started (in any state).
    pub fn replica_count(&self) -> usize {
        self.replicas().len()
    }

    /// The model's inputs and outputs, once a replica has loaded it.
    pub fn io(&self) -> Option<(Vec<IoSpec>, Vec<IoSpec>)> {
        self.replicas().iter().find_map(|r| Some((r.inputs()?, r.outputs()?)))
    }

    /// The next ready replica, round robin.
    pub fn pick(&self) -> Option<Arc<Replica>> {
        let replicas = self.replicas();
        let n = replicas.len();
        (0..n)
            .map(|i| &replicas[(self.next.fetch_add(1, Ordering::Relaxed) + i) % n])
            .find(|r| matches!(r.state(), ReplicaState::Ready))
            .cloned()
    }

    /// The ready generation replica with the least work (running plus queued sequences).
    pub fn pick_generator(&self) -> Option<Arc<GenerationReplica>> {
        self.generators()
            .into_iter()
            .filter(|r| matches!(r.state(), ReplicaState::Ready))
            .min_by_key(|r| r.running() + r.queue_depth())
    }

    pub(crate) fn fail(&self, reason: String) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Starts `count` replicas of the runtime over the files in `dir` (or the upstream client).
    pub(crate) fn start(&self, dir: &Path, controller: &ControllerConfig, count: usize) -> Result<(), ControllerError> {
        let name = |i: usize| format!("{}#{i}", self.full_name());
        let replicas = if let Some(external) = &self.spec.external {
            let timeout = Duration::from_millis(self.spec.timeout_ms);
            Replicas::Upstream(Arc::new(Upstream::new(
                external,
                &self.full_name(),
                timeout,
                controller.max_upstream_answer_bytes,
            )?))
        } else if self.runtime.generates() {
            let config = GenerationConfig {
                queue_capacity: self.spec.queue_capacity,
                queue_timeout: Duration::from_millis(self.spec.timeout_ms),
            };
            Replicas::Generate(
                (0..count)
                    .filter_map(|i| {
                        let loader = self.runtime.lm_loader(dir, &self.spec)?;
                        Some(Arc::new(GenerationReplica::start(name(i), loader, config.clone())))
                    })
                    .collect(),
            )
        } else {
            let config = ReplicaConfig {
                max_batch_size: self.spec.batching.max_batch_size,
                max_queue_delay: Duration::from_micros(self.spec.batching.max_queue_delay_us),
                queue_capacity: self.spec.queue_capacity,
                timeout: Duration::from_millis(self.spec.timeout_ms),
            };
            Replicas::Tensor(
                (0..count)
                    .filter_map(|i| {
                        let loader = self.runtime.tensor_loader(dir, controller, &self.spec)?;
                        Some(Arc::new(Replica::start(name(i), loader, config.clone())))
                    })
                    .collect(),
            )
        };
        *self.lock() = replicas;
        Ok(())
    }

    /// Stops every replica.
    pub fn stop(&self) {
        match std::mem::take(&mut *self.lock()) {
            Replicas::Tensor(r) => r.iter().for_each(|r| r.stop()),
            Replicas::Generate(r) => r.iter().for_each(|r| r.stop()),
            Replicas::None | Replicas::Upstream(_) => {}
        }
    }
}

/// Copies a version's files from the artifact store into `dir` (skipping files already there
/// with the right size), so the runtime can open them from disk.
pub(crate) async fn materialize(
    artifacts: &dyn ArtifactStore,
    files: &[ModelFile],
    dir: &Path,
) -> Result<(), ControllerError> {
    for file in files {
        let target = dir.join(&file.path);
        if tokio::fs::metadata(&target).await.is_ok_and(|m| i64::try_from(m.len()).ok() == Some(file.size)) {
            continue;
        }
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // A name of its own per copy: two deployments of one version may copy it at once.
        let unique = maas_core::UploadId::new();
        let tmp = target.with_file_name(format!(
            ".{}.{unique}.partial",
            target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ));
        let mut out = tokio::fs::File::create(&tmp).await?;
        let mut stream = artifacts.get(&Digest::parse(&file.sha256)?, None).await?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?).await?;
        }
        out.sync_all().await?;
        tokio::fs::rename(&tmp, &target).await?;
    }
    Ok(())
}
