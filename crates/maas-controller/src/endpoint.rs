//! A running deployment: its model files copied to the local cache, then its replicas.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use maas_artifacts::{ArtifactStore, Digest};
use maas_core::registry::{Model, ModelFile, ModelVersion};
use maas_runtime::onnx::{OnnxBackend, OnnxConfig};
use maas_runtime::replica::{Replica, ReplicaConfig, ReplicaState};
use maas_runtime::{Backend, IoSpec};
use maas_store::DeploymentRow;
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;
use utoipa::ToSchema;

use crate::{ControllerError, DeploymentSpec};

/// Where an endpoint stands.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub index: usize,
    /// `loading`, `ready`, `failed` or `stopped`.
    pub state: &'static str,
    pub reason: Option<String>,
    pub queue_depth: usize,
}

/// A deployment being served.
pub struct Endpoint {
    pub row: DeploymentRow,
    pub tenant: String,
    pub model: Model,
    pub version: ModelVersion,
    pub spec: DeploymentSpec,
    replicas: Mutex<Vec<Arc<Replica>>>,
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
    ) -> Self {
        Self {
            row,
            tenant,
            model,
            version,
            spec,
            replicas: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            next: AtomicUsize::new(0),
        }
    }

    /// `tenant/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.tenant, self.row.name)
    }

    fn replicas(&self) -> Vec<Arc<Replica>> {
        self.replicas.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Each replica's state (empty while the files are being prepared).
    pub fn status(&self) -> Vec<ReplicaStatus> {
        if let Some(reason) = self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return vec![ReplicaStatus { index: 0, state: "failed", reason: Some(reason), queue_depth: 0 }];
        }
        self.replicas()
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let (state, reason) = state_name(&r.state());
                ReplicaStatus { index, state, reason, queue_depth: r.queue_depth() }
            })
            .collect()
    }

    /// Ready when at least one replica is.
    pub fn is_ready(&self) -> bool {
        self.replicas().iter().any(|r| matches!(r.state(), ReplicaState::Ready))
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

    pub(crate) fn fail(&self, reason: String) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Starts `count` replicas serving the ONNX file at `path`.
    pub(crate) fn start_replicas(&self, path: PathBuf, onnx: &OnnxConfig, count: usize) {
        let config = ReplicaConfig {
            max_batch_size: self.spec.batching.max_batch_size,
            max_queue_delay: Duration::from_micros(self.spec.batching.max_queue_delay_us),
            queue_capacity: self.spec.queue_capacity,
            timeout: Duration::from_millis(self.spec.timeout_ms),
        };
        let mut onnx = onnx.clone();
        if self.spec.threads > 0 {
            onnx.intra_op_threads = self.spec.threads;
        }
        let replicas = (0..count)
            .map(|i| {
                let (path, onnx) = (path.clone(), onnx.clone());
                let loader = Box::new(move || OnnxBackend::load(&path, &onnx).map(|b| Box::new(b) as Box<dyn Backend>));
                Arc::new(Replica::start(format!("{}#{i}", self.full_name()), loader, config.clone()))
            })
            .collect();
        *self.replicas.lock().unwrap_or_else(|p| p.into_inner()) = replicas;
    }

    /// Stops every replica.
    pub fn stop(&self) {
        for r in self.replicas.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            r.stop();
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
