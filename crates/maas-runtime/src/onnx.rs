//! The ONNX Runtime backend, through the `ort` crate with ONNX Runtime loaded at run time.
//!
//! The shared library is not linked: it is `dlopen`ed once per process from
//! [`OnnxConfig::library_path`], else from the `ORT_DYLIB_PATH` environment variable, else as
//! `libonnxruntime.so` through the dynamic linker's search path. It must be ONNX Runtime 1.31 or
//! newer; the PyPI wheel `onnxruntime==1.31.1` ships one as
//! `onnxruntime/capi/libonnxruntime.so.1.31.1`. The first successful load wins for the whole
//! process (ONNX Runtime allows one environment per process); a failed one is retried by the next
//! [`OnnxBackend::load`].
//!
//! `ort`'s dynamic loading panics in a few places instead of returning errors (resolving a
//! relative library path, using its API before a library is loaded). [`OnnxBackend::load`] loads
//! the library explicitly through `ort::init_from` before any other `ort` call, and runs that
//! under [`std::panic::catch_unwind`], so a missing or broken library is a
//! [`RuntimeError::Load`], never a panic.
//!
//! Execution providers: CPU always. With the crate feature `onnx-cuda` (part of `cuda`),
//! sessions also register ONNX Runtime's CUDA execution provider, which falls back to the CPU
//! (with a log line from ONNX Runtime) when the loaded library has no CUDA support, e.g. the
//! CPU-only PyPI wheel; use the library of the `onnxruntime-gpu` wheel for GPUs. The feature
//! changes only registration code and builds without any CUDA software installed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::{OutputSelector, RunOptions, Session, SessionOutputs};
use ort::value::{DynValue, TensorElementType, ValueType};

use crate::validate::{validate, validate_outputs};
use crate::{Backend, DataType, IoSpec, RuntimeError, Tensor, TensorData};

/// The environment variable that names the ONNX Runtime shared library.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// What to do when ONNX Runtime cannot be loaded; appended to every such error.
const LIBRARY_HINT: &str = "set ORT_DYLIB_PATH to the path of libonnxruntime.so (ONNX Runtime >= 1.31), e.g. \
     onnxruntime/capi/libonnxruntime.so.1.31.1 from the PyPI wheel onnxruntime==1.31.1";

/// How an [`OnnxBackend`] loads its model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnnxConfig {
    /// The ONNX Runtime shared library; `None` = `ORT_DYLIB_PATH`, else `libonnxruntime.so`
    /// through the dynamic linker. Only the first library loaded in a process is used.
    pub library_path: Option<PathBuf>,
    /// Threads used inside one operator; 0 = ONNX Runtime's default (one per physical core).
    pub intra_op_threads: usize,
    /// Threads used to run independent operators in parallel; 0 = sequential execution
    /// (ONNX Runtime's default). Any other value turns on parallel execution.
    pub inter_op_threads: usize,
    /// Whether idle intra-op threads spin waiting for work (`None`: ONNX Runtime's default,
    /// which spins). Spinning shaves wake-ups off each parallel operator but keeps a core busy
    /// after every run, which on a small machine the server's own request handling needs.
    pub intra_op_spinning: Option<bool>,
    /// Whether intra-op threads go on spinning after a run returns, until the next one
    /// (ONNX Runtime's default). Off (the default here), they spin only while a run lasts
    /// (`session.force_spinning_stop`): between two runs the server receives and answers
    /// requests, and a spinning pool thread would take the core it needs.
    pub spin_between_runs: bool,
}

/// The process's ONNX Runtime environment, with the library it came from.
static ENVIRONMENT: Mutex<Option<(Environment, PathBuf)>> = Mutex::new(None);

/// Loads the ONNX Runtime library and creates the environment, once per process.
fn environment(config: &OnnxConfig) -> Result<Environment, RuntimeError> {
    let requested = config
        .library_path
        .clone()
        .or_else(|| std::env::var_os(ORT_DYLIB_ENV).filter(|v| !v.is_empty()).map(PathBuf::from));
    // An explicit path that names a directory must exist, whatever is loaded already.
    if let Some(path) = &requested
        && path.components().count() > 1
        && !path.is_file()
    {
        return Err(RuntimeError::Load(format!(
            "the ONNX Runtime library {} does not exist; {LIBRARY_HINT}",
            path.display()
        )));
    }
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((env, loaded)) = slot.as_ref() {
        if let Some(path) = requested.as_ref().filter(|p| *p != loaded) {
            tracing::warn!(
                requested = %path.display(),
                loaded = %loaded.display(),
                "ONNX Runtime is already loaded in this process from another library; using that one"
            );
        }
        return Ok(env.clone());
    }
    let path = requested.unwrap_or_else(|| PathBuf::from("libonnxruntime.so"));
    let built = catch_unwind(AssertUnwindSafe(|| {
        ort::init_from(&path).map(|builder| builder.with_name("maas").with_telemetry(false).build())
    }));
    let env = match built {
        Ok(Ok(Ok(env))) => env,
        Ok(Ok(Err(e))) => {
            return Err(RuntimeError::Load(format!("creating the ONNX Runtime environment failed: {e}")));
        }
        Ok(Err(e)) => {
            return Err(RuntimeError::Load(format!("cannot load ONNX Runtime: {e}; {LIBRARY_HINT}")));
        }
        Err(panic) => {
            return Err(RuntimeError::Load(format!(
                "loading ONNX Runtime from {} panicked: {}; {LIBRARY_HINT}",
                path.display(),
                crate::panic_message(panic.as_ref())
            )));
        }
    };
    tracing::info!(library = %path.display(), "ONNX Runtime loaded");
    *slot = Some((env.clone(), path));
    Ok(env)
}

/// One ONNX model in an ONNX Runtime session.
#[derive(Debug)]
pub struct OnnxBackend {
    session: Session,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
}

impl OnnxBackend {
    /// Loads the model at `path` (loading ONNX Runtime first if this is the process's first
    /// model). Fails with [`RuntimeError::Load`] when the library or the model cannot be loaded,
    /// or the model has an input or output that is not a tensor of a v2 data type.
    pub fn load(path: &Path, config: &OnnxConfig) -> Result<Self, RuntimeError> {
        let env = environment(config)?;
        let load = |e: ort::Error<ort::session::builder::SessionBuilder>| {
            RuntimeError::Load(format!("configuring the ONNX Runtime session failed: {e}"))
        };
        let mut builder = Session::builder(&env).map_err(|e| RuntimeError::Load(e.to_string()))?;
        if config.intra_op_threads > 0 {
            builder = builder.with_intra_threads(config.intra_op_threads).map_err(load)?;
        }
        if let Some(spin) = config.intra_op_spinning {
            builder = builder.with_intra_op_spinning(spin).map_err(load)?;
        }
        if !config.spin_between_runs {
            builder = builder.with_config_entry("session.force_spinning_stop", "1").map_err(load)?;
        }
        if config.inter_op_threads > 0 {
            builder = builder
                .with_parallel_execution(true)
                .map_err(load)?
                .with_inter_threads(config.inter_op_threads)
                .map_err(load)?;
        }
        #[cfg(feature = "onnx-cuda")]
        {
            // Fails silently (falls back to the CPU) when the library was built without CUDA.
            builder = builder.with_execution_providers([ort::ep::CUDA::default().build()]).map_err(load)?;
        }
        let session =
            builder.commit_from_file(path).map_err(|e| RuntimeError::Load(format!("{}: {e}", path.display())))?;
        let inputs =
            session.inputs().iter().map(|o| io_spec("input", o.name(), o.dtype())).collect::<Result<_, _>>()?;
        let outputs =
            session.outputs().iter().map(|o| io_spec("output", o.name(), o.dtype())).collect::<Result<_, _>>()?;
        Ok(Self { session, inputs, outputs })
    }

    /// A loader for [`Replica::start`](crate::Replica::start): loads the model on the replica's
    /// own thread.
    pub fn loader(path: PathBuf, config: OnnxConfig) -> crate::Loader {
        Box::new(move || OnnxBackend::load(&path, &config).map(|b| Box::new(b) as Box<dyn Backend>))
    }
}

impl Backend for OnnxBackend {
    fn platform(&self) -> &'static str {
        "onnx"
    }

    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn infer(&mut self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, RuntimeError> {
        validate(&inputs, &self.inputs)?;
        validate_outputs(outputs, &self.outputs)?;
        let values = inputs
            .into_iter()
            .map(|t| Ok((t.name.clone(), to_ort(t)?)))
            .collect::<Result<Vec<(String, DynValue)>, RuntimeError>>()?;
        let all: Vec<String>;
        let names: &[String] = if outputs.is_empty() {
            all = self.outputs.iter().map(|o| o.name.clone()).collect();
            &all
        } else {
            outputs
        };
        let failed = |e: ort::Error| RuntimeError::Inference(e.to_string());
        if names.len() == self.outputs.len() {
            let results = self.session.run(values).map_err(failed)?;
            take_outputs(results, names)
        } else {
            // Only the requested outputs: ONNX Runtime can skip the parts of the graph the others need.
            let selector = names.iter().fold(OutputSelector::no_default(), |s, name| s.with(name.as_str()));
            let options = RunOptions::new().map_err(failed)?.with_outputs(selector);
            let results = self.session.run_with_options(values, &options).map_err(failed)?;
            take_outputs(results, names)
        }
    }
}

fn take_outputs(mut results: SessionOutputs<'_>, names: &[String]) -> Result<Vec<Tensor>, RuntimeError> {
    names
        .iter()
        .map(|name| {
            let value = results
                .remove(name.as_str())
                .ok_or_else(|| RuntimeError::Inference(format!("ONNX Runtime returned no output '{name}'")))?;
            from_ort(name, &value)
        })
        .collect()
}

/// The v2 data type of an ONNX element type; `None` for those v2 has no name for.
fn data_type(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

fn io_spec(kind: &str, name: &str, dtype: &ValueType) -> Result<IoSpec, RuntimeError> {
    match dtype {
        ValueType::Tensor { ty, shape, .. } => {
            let dtype = data_type(*ty).ok_or_else(|| {
                RuntimeError::Load(format!("{kind} '{name}' has element type {ty}, which is not supported"))
            })?;
            Ok(IoSpec { name: name.to_owned(), dtype, shape: shape.to_vec() })
        }
        other => Err(RuntimeError::Load(format!("{kind} '{name}' is a {other}; only tensors are supported"))),
    }
}

/// Moves a tensor into an ONNX Runtime value (BYTES become UTF-8 STRING elements).
fn to_ort(tensor: Tensor) -> Result<DynValue, RuntimeError> {
    use ort::value::Tensor as Ort;
    let Tensor { name, shape, data } = tensor;
    let failed = |e: ort::Error| RuntimeError::InvalidInput(format!("input '{name}': {e}"));
    let value = match data {
        TensorData::Bool(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Uint8(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Uint16(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Uint32(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Uint64(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Int8(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Int16(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Int32(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Int64(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Fp16(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Fp32(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Fp64(v) => Ort::from_array((shape, v)).map_err(failed)?.into_dyn(),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .enumerate()
                .map(|(i, bytes)| {
                    if bytes.contains(&0) {
                        return Err(RuntimeError::InvalidInput(format!(
                            "input '{name}': element {i} contains a NUL byte, which ONNX STRING tensors cannot hold"
                        )));
                    }
                    String::from_utf8(bytes).map_err(|_| {
                        RuntimeError::InvalidInput(format!(
                            "input '{name}': element {i} is not valid UTF-8 (ONNX STRING tensors hold UTF-8 text)"
                        ))
                    })
                })
                .collect::<Result<Vec<String>, _>>()?;
            Ort::from_string_array((shape, strings.as_slice())).map_err(failed)?.into_dyn()
        }
    };
    Ok(value)
}

/// Copies an ONNX Runtime output into a tensor (STRING elements become BYTES).
fn from_ort(name: &str, value: &DynValue) -> Result<Tensor, RuntimeError> {
    let ValueType::Tensor { ty, shape, .. } = value.dtype() else {
        return Err(RuntimeError::Inference(format!("output '{name}' is a {}, not a tensor", value.dtype())));
    };
    let failed = |e: ort::Error| RuntimeError::Inference(format!("output '{name}': {e}"));
    macro_rules! copy {
        ($variant:ident, $t:ty) => {
            TensorData::$variant(value.try_extract_tensor::<$t>().map_err(failed)?.1.to_vec())
        };
    }
    let data = match ty {
        TensorElementType::Bool => copy!(Bool, bool),
        TensorElementType::Uint8 => copy!(Uint8, u8),
        TensorElementType::Uint16 => copy!(Uint16, u16),
        TensorElementType::Uint32 => copy!(Uint32, u32),
        TensorElementType::Uint64 => copy!(Uint64, u64),
        TensorElementType::Int8 => copy!(Int8, i8),
        TensorElementType::Int16 => copy!(Int16, i16),
        TensorElementType::Int32 => copy!(Int32, i32),
        TensorElementType::Int64 => copy!(Int64, i64),
        TensorElementType::Float16 => copy!(Fp16, half::f16),
        TensorElementType::Float32 => copy!(Fp32, f32),
        TensorElementType::Float64 => copy!(Fp64, f64),
        TensorElementType::String => TensorData::Bytes(
            value.try_extract_strings().map_err(failed)?.1.into_iter().map(String::into_bytes).collect(),
        ),
        other => {
            return Err(RuntimeError::Inference(format!(
                "output '{name}' has element type {other}, which is not supported"
            )));
        }
    };
    Ok(Tensor { name: name.to_owned(), shape: shape.to_vec(), data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_load_error_naming_the_variable() {
        let config = OnnxConfig { library_path: Some("/nonexistent/libonnxruntime.so".into()), ..Default::default() };
        let err = OnnxBackend::load(Path::new("/nonexistent/model.onnx"), &config).unwrap_err();
        let RuntimeError::Load(message) = err else { panic!("expected a load error, got {err:?}") };
        assert!(message.contains("ORT_DYLIB_PATH"), "{message}");
        assert!(message.contains("onnxruntime==1.31.1"), "{message}");
    }

    #[test]
    fn a_library_that_is_not_onnx_runtime_is_a_load_error() {
        // This test binary never loads ONNX Runtime, so the load is really attempted.
        let config = OnnxConfig { library_path: Some(std::env::current_exe().unwrap()), ..Default::default() };
        let err = OnnxBackend::load(Path::new("/nonexistent/model.onnx"), &config).unwrap_err();
        let RuntimeError::Load(message) = err else { panic!("expected a load error, got {err:?}") };
        assert!(message.starts_with("cannot load ONNX Runtime"), "{message}");
        assert!(message.contains("ORT_DYLIB_PATH"), "{message}");
    }

    #[test]
    fn every_v2_type_has_an_onnx_type() {
        let onnx = [
            TensorElementType::Bool,
            TensorElementType::Uint8,
            TensorElementType::Uint16,
            TensorElementType::Uint32,
            TensorElementType::Uint64,
            TensorElementType::Int8,
            TensorElementType::Int16,
            TensorElementType::Int32,
            TensorElementType::Int64,
            TensorElementType::Float16,
            TensorElementType::Float32,
            TensorElementType::Float64,
            TensorElementType::String,
        ];
        let mapped: Vec<_> = onnx.into_iter().filter_map(data_type).collect();
        assert_eq!(mapped, DataType::ALL);
        assert_eq!(data_type(TensorElementType::Bfloat16), None);
    }
}
