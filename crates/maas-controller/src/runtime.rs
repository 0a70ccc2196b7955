//! Which runtime serves a version, decided once from its format, task and files, and the
//! loaders that start it on a replica's thread.
//!
//! | format | files | runtime |
//! | --- | --- | --- |
//! | `onnx` | `*.onnx` | ONNX Runtime, tensor replicas (v2 API) |
//! | `safetensors` | sentence-transformers files (`modules.json`, `1_Pooling/`) or an embedding task | BERT encoder, tensor replicas (v2 and `/v1/embeddings`) |
//! | `safetensors` | anything else (`*ForCausalLM` config) | candle causal LM, generation replicas (`/v1/chat/completions`, `/v1/completions`) |
//! | `gguf` | `*.gguf` | llama.cpp, generation replicas |
//! | `external` | none | proxied to the engine named in the deployment's `external` settings |

use std::path::{Path, PathBuf};

use maas_core::registry::{ModelFile, ModelFormat, ModelVersion};
use maas_runtime::Backend;
use maas_runtime::embed::{EmbeddingBackend, EmbeddingConfig};
use maas_runtime::generate::LmEngine;
use maas_runtime::generate::candle_lm::{CandleLmConfig, CandleLmEngine};
use maas_runtime::generate::llama_cpp::{LlamaCppConfig, LlamaCppEngine};
use maas_runtime::generate::scheduler::LmLoader;
use maas_runtime::onnx::OnnxBackend;
use maas_runtime::replica::Loader;

use crate::{ControllerConfig, ControllerError, DeploymentSpec};

/// Tasks whose safetensors versions are sentence-embedding encoders.
const EMBEDDING_TASKS: &[&str] = &["feature-extraction", "sentence-similarity", "embeddings", "text-embedding"];

/// How a deployment's version is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// An ONNX file, run by ONNX Runtime.
    Onnx { file: String },
    /// A sentence-transformers folder: text in, vectors out.
    Embeddings,
    /// A causal LM in safetensors, run by candle.
    CandleLm,
    /// A causal LM in GGUF, run by llama.cpp.
    LlamaCpp { file: String },
    /// An engine running elsewhere.
    External,
}

/// What an endpoint answers, for routing API calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// v2 tensors.
    Tensors,
    /// v2 tensors (`text` → `embedding`), and `/v1/embeddings`.
    Embeddings,
    /// `/v1/chat/completions` and `/v1/completions`.
    Generation,
    /// Whatever the upstream engine serves, in its protocol.
    Upstream,
}

impl Runtime {
    /// Chooses the runtime of `version` of a model with `task`.
    pub fn of(version: &ModelVersion, task: &str, files: &[ModelFile]) -> Result<Runtime, ControllerError> {
        let main = || version.signature.as_ref().and_then(|s| s["file"].as_str()).map(str::to_owned);
        let has = |path: &str| files.iter().any(|f| f.path == path);
        Ok(match version.format {
            ModelFormat::Onnx => Runtime::Onnx { file: main().unwrap_or_else(|| "model.onnx".into()) },
            ModelFormat::Gguf => Runtime::LlamaCpp { file: main().unwrap_or_else(|| "model.gguf".into()) },
            ModelFormat::External => Runtime::External,
            ModelFormat::Safetensors => {
                if has("modules.json") || has("1_Pooling/config.json") || EMBEDDING_TASKS.contains(&task) {
                    Runtime::Embeddings
                } else {
                    Runtime::CandleLm
                }
            }
        })
    }

    pub fn serves(&self) -> Serves {
        match self {
            Runtime::Onnx { .. } => Serves::Tensors,
            Runtime::Embeddings => Serves::Embeddings,
            Runtime::CandleLm | Runtime::LlamaCpp { .. } => Serves::Generation,
            Runtime::External => Serves::Upstream,
        }
    }

    /// Whether replicas are generation replicas (streams) rather than tensor replicas.
    pub fn generates(&self) -> bool {
        self.serves() == Serves::Generation
    }

    /// A loader of one tensor replica's backend, for runtimes that have tensor replicas.
    pub(crate) fn tensor_loader(&self, dir: &Path, config: &ControllerConfig, spec: &DeploymentSpec) -> Option<Loader> {
        match self {
            Runtime::Onnx { file } => {
                let mut onnx = config.onnx.clone();
                if spec.threads > 0 {
                    onnx.intra_op_threads = spec.threads;
                }
                let path = dir.join(file);
                Some(Box::new(move || OnnxBackend::load(&path, &onnx).map(|b| Box::new(b) as Box<dyn Backend>)))
            }
            Runtime::Embeddings => {
                let config = EmbeddingConfig { threads: spec.threads, ..config.embeddings.clone() };
                let dir = dir.to_path_buf();
                Some(Box::new(move || EmbeddingBackend::load(&dir, &config).map(|b| Box::new(b) as Box<dyn Backend>)))
            }
            _ => None,
        }
    }

    /// A loader of one generation replica's engine, for causal LMs.
    pub(crate) fn lm_loader(&self, dir: &Path, spec: &DeploymentSpec) -> Option<LmLoader> {
        let (threads, max_sequences, context_length) =
            (spec.threads, spec.generation.max_sequences, spec.generation.context_length);
        match self {
            Runtime::LlamaCpp { file } => {
                let path: PathBuf = dir.join(file);
                let config = LlamaCppConfig { threads, max_sequences, context_length };
                Some(Box::new(move || LlamaCppEngine::load(&path, &config).map(|e| Box::new(e) as Box<dyn LmEngine>)))
            }
            Runtime::CandleLm => {
                let dir = dir.to_path_buf();
                let config = CandleLmConfig { threads, max_sequences, context_length };
                Some(Box::new(move || CandleLmEngine::load(&dir, &config).map(|e| Box::new(e) as Box<dyn LmEngine>)))
            }
            _ => None,
        }
    }
}
