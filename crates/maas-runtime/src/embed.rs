//! Sentence embeddings: BERT-family encoders (sentence-transformers layout) through HF candle.
//!
//! [`EmbeddingBackend`] loads a sentence-transformers folder and runs it as a tensor
//! [`Backend`], so that a [`Replica`](crate::Replica) queues and batches it like any other
//! model. The folder holds:
//!
//! - `config.json`: the encoder, `model_type` `bert` (absolute positions; `hidden_act` `gelu`,
//!   `gelu_new`/`gelu_pytorch_tanh` or `relu`). Other model types are refused at load;
//! - `model.safetensors` (or `model.safetensors.index.json` and its shards), any float dtype.
//!   PyTorch weights (`pytorch_model.bin`) are not supported: convert them to safetensors;
//! - `tokenizer.json`: its own padding is ignored (nothing is padded, see below), its
//!   truncation replaced by the model's `max_seq_length`;
//! - `modules.json`: `Transformer`, then `Pooling` (its folder's `config.json` picks the modes:
//!   `cls_token`, `max_tokens`, `mean_tokens`, `mean_sqrt_len_tokens`, `lasttoken`; several are
//!   concatenated in sentence-transformers' order), then optionally `Normalize` (L2). Without
//!   `modules.json` the default is mean pooling followed by L2 normalisation;
//! - `sentence_bert_config.json`: `max_seq_length`, the tokens kept per text (longer texts are
//!   truncated); without it, the encoder's `max_position_embeddings`.
//!
//! Signature: input `text` (`BYTES`, `[-1]`, one UTF-8 string per row); outputs `embedding`
//! (`FP32`, `[-1, dimension]`) and `tokens` (`INT64`, `[-1]`: the tokens of each text after
//! truncation, special tokens included, for usage accounting).
//!
//! How it runs: the encoder works on the texts' tokens packed one after the other, never
//! padded, so a text's vector does not depend on the other texts of its batch and no work goes
//! to padding. The dense layers (nearly all of the work) are matrix products over all tokens of
//! a group at once, multi-threaded through rayon: in bfloat16 with f32 sums where the CPU has
//! AVX512_BF16 ([`crate::bf16`], [`EmbeddingPrecision::Auto`]), else candle's f32 products
//! (the `gemm` crate); attention is
//! computed per text and head over the text's own tokens; bias, activation, residual and
//! layer norm are fused passes over the products' outputs. A batch is split into up to
//! [`EmbeddingConfig::threads`] groups of about equal tokens, each encoded on its own thread.
//! The groups and their matrix products run on a rayon pool of `threads` threads that belongs
//! to the backend (as an ONNX Runtime session has its own), so the encoder stays within
//! `threads`, and a group's products split on the very threads that run the groups instead of
//! handing their parts to rayon's global pool (measured: up to 1.3× the sentences/s).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{CpuStorage, DType, Device, Storage, Tensor as CandleTensor};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bf16::Bf16Matrix;
use crate::validate::{validate, validate_outputs};
use crate::{Backend, DataType, IoSpec, RuntimeError, Tensor, TensorData};

/// The name of the input: one UTF-8 text per row.
pub const TEXT_INPUT: &str = "text";
/// The name of the output holding one vector per text.
pub const EMBEDDING_OUTPUT: &str = "embedding";
/// The name of the output holding the token count of each text.
pub const TOKENS_OUTPUT: &str = "tokens";

/// Tokens encoded in one pass at most (bounds the memory of a large request: about 10 KiB of
/// activations per token for a 384-wide model).
const TOKENS_PER_PASS: usize = 8192;
/// Rows of the feed-forward block computed together: bounds its 4×-wide intermediate (6 MiB
/// for a 384-wide model) while a whole group of a usual batch goes through at once (each
/// slice packs the block's two weights again: 256 rows cost 2–3 % more CPU).
const FEED_FORWARD_ROWS: usize = 1024;
/// Fused passes smaller than this many values run on one thread.
const PARALLEL_MIN: usize = 32 * 1024;

/// How an [`EmbeddingBackend`] loads and runs its model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbeddingConfig {
    /// Threads encoding a batch, matrix products included (a rayon pool of the backend's
    /// own); 0 = candle's default count (`RAYON_NUM_THREADS`, else one per CPU).
    pub threads: usize,
    /// Tokens kept per text; `None` = the model's `max_seq_length`. Never more than that.
    pub max_tokens: Option<usize>,
    /// The precision of the dense layers' matrix products.
    pub precision: EmbeddingPrecision,
}

/// The precision of an encoder's dense layers (everything else is f32 either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingPrecision {
    /// bfloat16 products summed in f32 where the CPU has AVX512_BF16 (about 1.7× the f32
    /// products' speed; vectors within cosine 0.9999 of f32), else f32.
    #[default]
    Auto,
    /// f32 products everywhere.
    Float32,
}

// --- the folder: modules, pooling, weights, tokenizer -----------------------------------------

/// Which pooling modes are on (sentence-transformers' `1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
struct Pooling {
    pooling_mode_cls_token: bool,
    pooling_mode_max_tokens: bool,
    pooling_mode_mean_tokens: bool,
    pooling_mode_mean_sqrt_len_tokens: bool,
    pooling_mode_weightedmean_tokens: bool,
    pooling_mode_lasttoken: bool,
}

impl Pooling {
    /// Mean pooling, the default without `modules.json`.
    fn mean() -> Self {
        Pooling { pooling_mode_mean_tokens: true, ..Default::default() }
    }

    /// The number of modes on: the embedding is that many hidden vectors, concatenated.
    fn modes(&self) -> usize {
        [
            self.pooling_mode_cls_token,
            self.pooling_mode_max_tokens,
            self.pooling_mode_mean_tokens,
            self.pooling_mode_mean_sqrt_len_tokens,
            self.pooling_mode_lasttoken,
        ]
        .into_iter()
        .filter(|&on| on)
        .count()
    }

    /// Pools one text's token vectors (`states`: its tokens' rows of `hidden` values) into
    /// `out`, in sentence-transformers' order of modes.
    fn pool(&self, states: &[f32], hidden: usize, out: &mut Vec<f32>) {
        let tokens = states.len() / hidden.max(1);
        if tokens == 0 {
            // A text without tokens (a tokenizer without special tokens, an empty text).
            out.resize(out.len() + hidden * self.modes(), 0.0);
            return;
        }
        let rows = || states.chunks_exact(hidden);
        if self.pooling_mode_cls_token {
            out.extend_from_slice(&states[..hidden]);
        }
        if self.pooling_mode_max_tokens {
            let mut max = vec![f32::NEG_INFINITY; hidden];
            for row in rows() {
                max.iter_mut().zip(row).for_each(|(m, &x)| *m = m.max(x));
            }
            out.extend(max);
        }
        if self.pooling_mode_mean_tokens || self.pooling_mode_mean_sqrt_len_tokens {
            let mut sum = vec![0f32; hidden];
            for row in rows() {
                sum.iter_mut().zip(row).for_each(|(s, &x)| *s += x);
            }
            let n = tokens.max(1) as f32;
            if self.pooling_mode_mean_tokens {
                out.extend(sum.iter().map(|s| s / n));
            }
            if self.pooling_mode_mean_sqrt_len_tokens {
                out.extend(sum.iter().map(|s| s / n.sqrt()));
            }
        }
        if self.pooling_mode_lasttoken {
            let start = tokens.saturating_sub(1) * hidden;
            out.extend_from_slice(&states[start..start + hidden]);
        }
    }
}

/// One entry of `modules.json`.
#[derive(Debug, Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `sentence_bert_config.json`.
#[derive(Debug, Default, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// The modules after the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    pooling: Pooling,
    normalize: bool,
}

fn load_error(path: &Path, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Load(format!("{}: {e}", path.display()))
}

/// Reads and parses a JSON file.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|e| load_error(path, e))?;
    serde_json::from_str(&text).map_err(|e| load_error(path, e))
}

/// Reads a JSON file that may be absent (`Ok(None)`).
fn read_optional_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, RuntimeError> {
    if path.exists() { read_json(path).map(Some) } else { Ok(None) }
}

/// The pooling and normalisation after the encoder, from `modules.json` (mean + normalise
/// without it).
fn load_head(dir: &Path) -> Result<Head, RuntimeError> {
    let Some(modules) = read_optional_json::<Vec<Module>>(&dir.join("modules.json"))? else {
        return Ok(Head { pooling: Pooling::mean(), normalize: true });
    };
    let mut pooling = None;
    let mut normalize = false;
    for module in modules {
        match module.kind.rsplit('.').next().unwrap_or_default() {
            "Transformer" => {}
            "Pooling" => pooling = Some(read_json::<Pooling>(&dir.join(&module.path).join("config.json"))?),
            "Normalize" => normalize = true,
            _ => {
                return Err(RuntimeError::Load(format!(
                    "{}: the module {} is not supported (only Transformer, Pooling and Normalize)",
                    dir.join("modules.json").display(),
                    module.kind
                )));
            }
        }
    }
    let pooling = pooling.unwrap_or_else(Pooling::mean);
    if pooling.pooling_mode_weightedmean_tokens {
        return Err(RuntimeError::Load(format!(
            "{}: pooling_mode_weightedmean_tokens is not supported",
            dir.display()
        )));
    }
    if pooling.modes() == 0 {
        return Err(RuntimeError::Load(format!("{}: the pooling module enables no mode", dir.display())));
    }
    Ok(Head { pooling, normalize })
}

/// The safetensors files holding the weights: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let index: serde_json::Value = read_json(&index)?;
        let mut files: Vec<PathBuf> = index
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| m.values().filter_map(|v| v.as_str()).map(|f| dir.join(f)).collect())
            .unwrap_or_default();
        files.sort();
        files.dedup();
        if !files.is_empty() {
            return Ok(files);
        }
    }
    let pytorch = ["pytorch_model.bin", "model.pt", "model.bin"].into_iter().find(|f| dir.join(f).exists());
    Err(RuntimeError::Load(match pytorch {
        Some(file) => format!(
            "{}: only safetensors weights are supported, found PyTorch weights ({file}); convert them to \
             model.safetensors",
            dir.display()
        ),
        None => format!("{}: no weights (model.safetensors)", dir.display()),
    }))
}

/// Loads `tokenizer.json` without its own padding, truncating to `max_tokens`.
fn load_tokenizer(dir: &Path, max_tokens: usize) -> Result<Tokenizer, RuntimeError> {
    let path = dir.join("tokenizer.json");
    let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| load_error(&path, e))?;
    tokenizer.with_padding(None);
    let truncation = TruncationParams {
        direction: TruncationDirection::Right,
        max_length: max_tokens,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
    };
    tokenizer.with_truncation(Some(truncation)).map_err(|e| load_error(&path, e))?;
    Ok(tokenizer)
}

/// The weights of a checkpoint by name, found under any prefix (`bert.`, `model.`, …).
struct Weights {
    tensors: HashMap<String, CandleTensor>,
    prefix: String,
    dir: PathBuf,
}

impl Weights {
    /// Loads every weight file of `dir`; the prefix is whatever precedes the word embeddings.
    fn load(dir: &Path) -> Result<Weights, RuntimeError> {
        let mut tensors = HashMap::new();
        for file in weight_files(dir)? {
            tensors.extend(candle_core::safetensors::load(&file, &Device::Cpu).map_err(|e| load_error(&file, e))?);
        }
        let marker = "embeddings.word_embeddings.weight";
        let prefix = tensors
            .keys()
            .filter_map(|k| k.strip_suffix(marker))
            .min_by_key(|p| p.len())
            .ok_or_else(|| RuntimeError::Load(format!("{}: the weights have no {marker}", dir.display())))?
            .to_owned();
        Ok(Weights { tensors, prefix, dir: dir.to_path_buf() })
    }

    /// The tensor `name` (the first of `names` present) as f32, with the expected shape.
    fn get(&self, names: &[&str], shape: &[usize]) -> Result<CandleTensor, RuntimeError> {
        let found = names.iter().find_map(|n| self.tensors.get(&format!("{}{n}", self.prefix)));
        let Some(tensor) = found else {
            return Err(RuntimeError::Load(format!(
                "{}: the weights have no {}{}",
                self.dir.display(),
                self.prefix,
                names[0]
            )));
        };
        if tensor.dims() != shape {
            return Err(RuntimeError::Load(format!(
                "{}: {}{} has shape {:?}, expected {shape:?}",
                self.dir.display(),
                self.prefix,
                names[0],
                tensor.dims()
            )));
        }
        tensor.to_dtype(DType::F32).map_err(|e| load_error(&self.dir, e))
    }

    /// The tensor `name` as a flat vector.
    fn vec(&self, names: &[&str], shape: &[usize]) -> Result<Vec<f32>, RuntimeError> {
        self.get(names, shape)?.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| load_error(&self.dir, e))
    }

    /// A layer norm `{name}.weight`/`.bias` (or the old `.gamma`/`.beta`).
    fn norm(&self, name: &str, width: usize, eps: f32) -> Result<Norm, RuntimeError> {
        let (w, g, b, beta) =
            (format!("{name}.weight"), format!("{name}.gamma"), format!("{name}.bias"), format!("{name}.beta"));
        Ok(Norm { weight: self.vec(&[&w, &g], &[width])?, bias: self.vec(&[&b, &beta], &[width])?, eps })
    }

    /// Linear layers `names` (PyTorch layout `[out, in]`) stacked as one `[Σ out, in]`
    /// product (e.g. query, key and value at once), kept transposed as `[in, Σ out]`.
    /// With `bf16`, the products run in bfloat16 where the CPU can ([`Bf16Matrix`]).
    fn dense(&self, names: &[&str], inputs: usize, outputs: usize, bf16: bool) -> Result<Dense, RuntimeError> {
        let mut weights = Vec::with_capacity(names.len());
        let mut bias = Vec::with_capacity(names.len() * outputs);
        for name in names {
            weights.push(self.get(&[&format!("{name}.weight")], &[outputs, inputs])?);
            bias.extend(self.vec(&[&format!("{name}.bias")], &[outputs])?);
        }
        let failed = |e| load_error(&self.dir, e);
        let weight = CandleTensor::cat(&weights, 0).and_then(|w| w.t()?.contiguous()).map_err(failed)?;
        let packed = match bf16 {
            true => with_values(&weight, |w| Bf16Matrix::pack(w, inputs, bias.len())).map_err(failed)?,
            false => None,
        };
        let weight = packed.map_or(Weight::F32(weight), Weight::Bf16);
        Ok(Dense { weight, bias })
    }
}

// --- the encoder -----------------------------------------------------------------------------

/// The parts of `config.json` the encoder needs.
#[derive(Debug, Deserialize)]
struct BertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_positions")]
    position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_positions() -> String {
    "absolute".into()
}

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    /// `gelu`: x·Φ(x) with the exact (erf) Φ.
    GeluErf,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_approximate" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }

    /// `out[i] = act(raw[i] + bias[i % width])`, one loop per activation so that each
    /// vectorises, compiled for the widest vectors the CPU has (pulp picks AVX-512 or AVX2 +
    /// FMA at run time; the build targets baseline x86-64, whose 4-wide SSE2 took twice as long
    /// for GELU's erf).
    fn apply(self, raw: &[f32], bias: &[f32], out: &mut [f32]) {
        pulp::Arch::new().dispatch(Activate { activation: self, raw, bias, out });
    }

    /// [`Activation::apply`] for the instruction set of the caller.
    #[inline(always)]
    fn apply_here(self, raw: &[f32], bias: &[f32], out: &mut [f32]) {
        #[inline(always)]
        fn each(raw: &[f32], bias: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
            for (o, r) in out.chunks_exact_mut(bias.len()).zip(raw.chunks_exact(bias.len())) {
                for ((o, &r), &b) in o.iter_mut().zip(r).zip(bias) {
                    *o = f(r + b);
                }
            }
        }
        match self {
            Activation::GeluErf => each(raw, bias, out, |x| 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))),
            Activation::GeluTanh => each(raw, bias, out, |x| {
                let inner = 0.797_884_6 * (x + 0.044_715 * x * x * x);
                0.5 * x * (1.0 + inner.tanh())
            }),
            Activation::Relu => each(raw, bias, out, |x| x.max(0.0)),
        }
    }
}

/// [`Activation::apply_here`] as pulp dispatches it: compiled once per instruction set.
struct Activate<'a> {
    activation: Activation,
    raw: &'a [f32],
    bias: &'a [f32],
    out: &'a mut [f32],
}

impl pulp::WithSimd for Activate<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        self.activation.apply_here(self.raw, self.bias, self.out);
    }
}

/// erf for f32 as a rational function of x² (the approximation of XLA and Eigen): no
/// branches or library calls, so that loops over it vectorise; error a few ulp.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    for c in [2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_6e-3, -1.609_603_3e-2] {
        p = p * x2 + c;
    }
    let mut q = -1.456_607_2e-5_f32;
    for c in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329_3e-3, -1.426_474e-2] {
        q = q * x2 + c;
    }
    x * p / q
}

/// A layer norm over rows of `weight.len()` values.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    /// Normalises `row` in place. The sums run in eight lanes ([`lane_sum`]): one running f32
    /// sum is a chain of dependent additions, 384 of them per row and statistic.
    fn apply(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = lane_sum(row, |x| x) / n;
        let var = lane_sum(row, |x| (x - mean) * (x - mean)) / n;
        let scale = 1.0 / (var + self.eps).sqrt();
        for ((x, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *x = (*x - mean) * scale * w + b;
        }
    }
}

/// A linear layer: a candle product with the weight stored `[in, out]`, transposed once at load
/// from PyTorch's `[out, in]` (read transposed at every call, the matrix kernel gathered it
/// one value at a time: 17 % of the encoder's time); the bias is added by whatever reads the
/// product.
struct Dense {
    weight: Weight,
    bias: Vec<f32>,
}

/// A dense layer's weight, `[in, out]`.
enum Weight {
    /// f32, multiplied by candle (the `gemm` crate).
    F32(CandleTensor),
    /// bfloat16 on a CPU with AVX512_BF16 ([`EmbeddingPrecision::Auto`]).
    Bf16(Bf16Matrix),
}

impl Dense {
    /// `x` (`[rows, in]`) times the weight, without the bias.
    fn product(&self, x: &CandleTensor) -> candle_core::Result<CandleTensor> {
        match &self.weight {
            Weight::F32(weight) => x.matmul(weight),
            Weight::Bf16(weight) => matrix(with_values(x, |x| weight.product(x))?, self.bias.len()),
        }
    }
}

/// Calls `f` with the values of a contiguous f32 CPU tensor, without copying them.
fn with_values<R>(tensor: &CandleTensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(values)), Some((start, end))) => Ok(f(&values[start..end])),
        _ => {
            drop(storage);
            let values: Vec<f32> = tensor.flatten_all()?.to_vec1()?;
            Ok(f(&values))
        }
    }
}

/// A `[rows, width]` tensor of `values`.
fn matrix(values: Vec<f32>, width: usize) -> candle_core::Result<CandleTensor> {
    let rows = values.len() / width.max(1);
    CandleTensor::from_vec(values, (rows, width), &Device::Cpu)
}

/// Fills `out` (rows of `width`) by `f(first_row, rows)` over row-aligned chunks, on up to
/// `threads` threads (one when the work is small).
fn parallel_rows(out: &mut [f32], width: usize, threads: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len() / width.max(1);
    let threads = if out.len() < PARALLEL_MIN { 1 } else { threads.clamp(1, rows.max(1)) };
    if threads == 1 {
        f(0, out);
        return;
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = out.chunks_mut(per * width).enumerate();
        let first = chunks.next();
        for (i, chunk) in chunks {
            let f = &f;
            scope.spawn(move || f(i * per, chunk));
        }
        if let Some((_, chunk)) = first {
            f(0, chunk);
        }
    });
}

/// One transformer layer.
struct Layer {
    /// Query, key and value side by side: `[3·hidden, hidden]`.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    up: Dense,
    down: Dense,
    output_norm: Norm,
}

/// A BERT encoder over packed token sequences; see the module docs.
struct Bert {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Token type 0 (every text is a single segment).
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    activation: Activation,
}

impl Bert {
    /// Loads the encoder from `config.json` and the weights of `dir`.
    fn load(dir: &Path, config: BertConfig, precision: EmbeddingPrecision) -> Result<Bert, RuntimeError> {
        let path = dir.join("config.json");
        let activation = Activation::parse(&config.hidden_act).ok_or_else(|| {
            load_error(&path, format!("hidden_act '{}' is not supported (gelu, gelu_new, relu)", config.hidden_act))
        })?;
        if config.position_embedding_type != "absolute" {
            return Err(load_error(&path, "only absolute position embeddings are supported"));
        }
        let (h, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || h % heads != 0 || config.type_vocab_size == 0 {
            return Err(load_error(&path, "hidden_size must be a multiple of num_attention_heads"));
        }
        let w = Weights::load(dir)?;
        let eps = config.layer_norm_eps as f32;
        let bf16 = precision == EmbeddingPrecision::Auto;
        let types = w.vec(&["embeddings.token_type_embeddings.weight"], &[config.type_vocab_size, h])?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = format!("encoder.layer.{i}.");
                let at = |n: &str| format!("{l}attention.{n}");
                Ok(Layer {
                    qkv: w.dense(&[&at("self.query"), &at("self.key"), &at("self.value")], h, h, bf16)?,
                    attention_out: w.dense(&[&at("output.dense")], h, h, bf16)?,
                    attention_norm: w.norm(&at("output.LayerNorm"), h, eps)?,
                    up: w.dense(&[&format!("{l}intermediate.dense")], h, config.intermediate_size, bf16)?,
                    down: w.dense(&[&format!("{l}output.dense")], config.intermediate_size, h, bf16)?,
                    output_norm: w.norm(&format!("{l}output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok(Bert {
            word: w.vec(&["embeddings.word_embeddings.weight"], &[config.vocab_size, h])?,
            position: w.vec(&["embeddings.position_embeddings.weight"], &[config.max_position_embeddings, h])?,
            token_type: types[..h].to_vec(),
            embedding_norm: w.norm("embeddings.LayerNorm", h, eps)?,
            layers,
            hidden: h,
            heads,
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            activation,
        })
    }

    /// The last hidden states of the texts `ids` (packed, `lengths` tokens each): one row of
    /// `hidden` values per token. Attention and the fused passes use up to `threads` threads.
    fn forward(&self, ids: &[u32], lengths: &[usize], threads: usize) -> Result<Vec<f32>, RuntimeError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let failed = |e: candle_core::Error| RuntimeError::Inference(e.to_string());
        let mut x = matrix(self.embed(ids, lengths)?, self.hidden).map_err(failed)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, lengths, threads).map_err(failed)?;
        }
        with_values(&x, <[f32]>::to_vec).map_err(failed)
    }

    /// Word + position + token-type embeddings, normalised.
    fn embed(&self, ids: &[u32], lengths: &[usize]) -> Result<Vec<f32>, RuntimeError> {
        let h = self.hidden;
        let mut x = vec![0f32; ids.len() * h];
        let positions = lengths.iter().flat_map(|&n| 0..n);
        for ((row, &id), position) in x.chunks_exact_mut(h).zip(ids).zip(positions) {
            let id = id as usize;
            if id >= self.vocab || position >= self.max_positions {
                return Err(RuntimeError::Inference(format!("token {id} at position {position} is out of range")));
            }
            let word = &self.word[id * h..(id + 1) * h];
            let pos = &self.position[position * h..(position + 1) * h];
            for (((v, w), p), t) in row.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                *v = w + p + t;
            }
            self.embedding_norm.apply(row);
        }
        Ok(x)
    }

    /// One layer: attention, then the feed-forward block, each with residual and layer norm.
    fn layer(
        &self,
        layer: &Layer,
        x: &CandleTensor,
        lengths: &[usize],
        threads: usize,
    ) -> candle_core::Result<CandleTensor> {
        let h = self.hidden;
        let context =
            with_values(&layer.qkv.product(x)?, |qkv| self.attention(qkv, &layer.qkv.bias, lengths, threads))?;
        let product = layer.attention_out.product(&matrix(context, h)?)?;
        let attended = with_values(x, |x| {
            self.residual_norm(&product, &layer.attention_out.bias, x, &layer.attention_norm, threads)
        })??;
        let attended = matrix(attended, h)?;
        // The feed-forward block in slices of rows: its 4×-wide intermediate stays small
        // enough for the allocator to reuse from slice to slice.
        let tokens = attended.dim(0)?;
        let mut out = Vec::with_capacity(tokens * h);
        for start in (0..tokens).step_by(FEED_FORWARD_ROWS) {
            let rows = attended.narrow(0, start, FEED_FORWARD_ROWS.min(tokens - start))?;
            let product = layer.down.product(&self.intermediate(layer, &rows, threads)?)?;
            let normed = with_values(&rows, |rows| {
                self.residual_norm(&product, &layer.down.bias, rows, &layer.output_norm, threads)
            })??;
            out.extend(normed);
        }
        matrix(out, h)
    }

    /// `activation(x · up + bias)` of the rows `x`.
    fn intermediate(&self, layer: &Layer, x: &CandleTensor, threads: usize) -> candle_core::Result<CandleTensor> {
        let width = layer.up.bias.len();
        let up = with_values(&layer.up.product(x)?, |raw| {
            let mut up = vec![0f32; raw.len()];
            parallel_rows(&mut up, width, threads, |first, rows| {
                let raw = &raw[first * width..first * width + rows.len()];
                self.activation.apply(raw, &layer.up.bias, rows);
            });
            up
        })?;
        matrix(up, width)
    }

    /// `norm(product + bias + residual)`, row by row.
    fn residual_norm(
        &self,
        product: &CandleTensor,
        bias: &[f32],
        residual: &[f32],
        norm: &Norm,
        threads: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        with_values(product, |raw| {
            let mut out = vec![0f32; raw.len()];
            parallel_rows(&mut out, h, threads, |first, rows| {
                let (raw, residual) = (&raw[first * h..], &residual[first * h..]);
                for ((row, raw), res) in rows.chunks_exact_mut(h).zip(raw.chunks_exact(h)).zip(residual.chunks_exact(h))
                {
                    for (((v, r), b), s) in row.iter_mut().zip(raw).zip(bias).zip(res) {
                        *v = r + b + s;
                    }
                    norm.apply(row);
                }
            });
            out
        })
    }

    /// Multi-head self-attention of each text over its own tokens. `qkv` holds each token's
    /// query, key and value side by side, without `bias`; returns the context rows.
    fn attention(&self, qkv: &[f32], bias: &[f32], lengths: &[usize], threads: usize) -> Vec<f32> {
        let h = self.hidden;
        let mut context = vec![0f32; qkv.len() / 3];
        let threads = if context.len() < PARALLEL_MIN { 1 } else { threads.max(1) };
        // Whole texts per thread, of about equal work (∝ n²).
        let runs = split_runs(lengths, threads, |n| n * n);
        std::thread::scope(|scope| {
            let mut rest = context.as_mut_slice();
            let mut own = None;
            let (mut first, mut text) = (0, 0);
            for count in runs {
                let texts = &lengths[text..text + count];
                text += count;
                let tokens: usize = texts.iter().sum();
                let (mine, after) = rest.split_at_mut(tokens * h);
                rest = after;
                let qkv = &qkv[first * 3 * h..(first + tokens) * 3 * h];
                first += tokens;
                if own.is_none() {
                    own = Some((qkv, texts, mine));
                } else {
                    scope.spawn(move || self.attend_texts(qkv, bias, texts, mine));
                }
            }
            if let Some((qkv, texts, mine)) = own {
                self.attend_texts(qkv, bias, texts, mine);
            }
        });
        context
    }

    /// Attention for consecutive texts (`qkv` and `context` start at the first one's tokens),
    /// compiled for the widest vectors the CPU has (see [`Activation::apply`]).
    fn attend_texts(&self, qkv: &[f32], bias: &[f32], lengths: &[usize], context: &mut [f32]) {
        pulp::Arch::new().dispatch(AttendTexts { bert: self, qkv, bias, lengths, context });
    }

    /// [`Bert::attend_texts`] for the instruction set of the caller.
    #[inline(always)]
    fn attend_texts_here(&self, qkv: &[f32], bias: &[f32], lengths: &[usize], context: &mut [f32]) {
        let h = self.hidden;
        let mut scratch = Scratch::default();
        let mut offset = 0;
        for &n in lengths {
            let text_qkv = &qkv[offset * 3 * h..(offset + n) * 3 * h];
            let text_context = &mut context[offset * h..(offset + n) * h];
            self.attend(text_qkv, bias, n, text_context, &mut scratch);
            offset += n;
        }
    }

    /// Attention of one text of `n` tokens, head by head. The head's queries (scaled) and
    /// values are gathered with their bias into contiguous rows, its keys into columns (one
    /// row of `n` padded to [`SCORE_LANES`] per component): a query's scores are then sums of
    /// whole vectors kept in registers over its `d` components, rather than `n` dot products
    /// of `d` values, each ending in a horizontal sum.
    #[inline(always)]
    fn attend(&self, qkv: &[f32], bias: &[f32], n: usize, context: &mut [f32], s: &mut Scratch) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        let padded = n.next_multiple_of(SCORE_LANES);
        s.scores.resize(padded, 0.0);
        s.keys.clear();
        s.keys.resize(d * padded, 0.0);
        for head in 0..self.heads {
            let (q0, k0, v0) = (head * d, h + head * d, 2 * h + head * d);
            s.queries.clear();
            s.values.clear();
            for (j, token) in qkv.chunks_exact(3 * h).enumerate() {
                let q = token[q0..q0 + d].iter().zip(&bias[q0..q0 + d]);
                s.queries.extend(q.map(|(x, b)| (x + b) * scale));
                s.values.extend(token[v0..v0 + d].iter().zip(&bias[v0..v0 + d]).map(|(x, b)| x + b));
                let key = token[k0..k0 + d].iter().zip(&bias[k0..k0 + d]);
                for (column, (x, b)) in s.keys.chunks_exact_mut(padded).zip(key) {
                    column[j] = x + b;
                }
            }
            for (i, q) in s.queries.chunks_exact(d).enumerate() {
                for (block, scores) in s.scores.chunks_exact_mut(SCORE_LANES).enumerate() {
                    let mut sums = [0f32; SCORE_LANES];
                    for (&qc, keys) in q.iter().zip(s.keys.chunks_exact(padded)) {
                        let Ok(keys) = <&[f32; SCORE_LANES]>::try_from(&keys[block * SCORE_LANES..][..SCORE_LANES])
                        else {
                            continue;
                        };
                        for l in 0..SCORE_LANES {
                            sums[l] += qc * keys[l];
                        }
                    }
                    scores.copy_from_slice(&sums);
                }
                softmax(&mut s.scores[..n]);
                weighted_sum(&s.scores[..n], &s.values, &mut context[i * h + head * d..i * h + head * d + d]);
            }
        }
    }
}

/// Attention scores are computed this many keys at a time (one AVX-512 vector).
const SCORE_LANES: usize = 16;

/// [`Bert::attend_texts_here`] as pulp dispatches it: compiled once per instruction set.
struct AttendTexts<'a> {
    bert: &'a Bert,
    qkv: &'a [f32],
    bias: &'a [f32],
    lengths: &'a [usize],
    context: &'a mut [f32],
}

impl pulp::WithSimd for AttendTexts<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        self.bert.attend_texts_here(self.qkv, self.bias, self.lengths, self.context);
    }
}

/// Buffers of [`Bert::attend`], reused across texts.
#[derive(Default)]
struct Scratch {
    queries: Vec<f32>,
    keys: Vec<f32>,
    values: Vec<f32>,
    scores: Vec<f32>,
}

/// `Σ f(v[i])` in eight interleaved sums, so that it vectorises (a single running sum must
/// stay scalar: f32 addition is not reassociated).
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for chunk in chunks {
        for l in 0..8 {
            lanes[l] += f(chunk[l]);
        }
    }
    tree_sum(lanes) + tail
}

/// The sum of eight lanes, halves added pairwise: a tree of three additions rather than a
/// chain of eight, whose latency dominated short vectors such as a 32-wide attention head.
#[inline(always)]
fn tree_sum(lanes: [f32; 8]) -> f32 {
    let [a0, a1, a2, a3, a4, a5, a6, a7] = lanes;
    let quarter = [a0 + a4, a1 + a5, a2 + a6, a3 + a7];
    (quarter[0] + quarter[2]) + (quarter[1] + quarter[3])
}

/// `out = Σⱼ weights[j] · rows[j]`, `rows` holding rows of `out.len()` values. The sums of
/// 16 columns at a time stay in registers over all rows (accumulated in memory, every row
/// paid a load and a store of `out`).
#[inline(always)]
fn weighted_sum(weights: &[f32], rows: &[f32], out: &mut [f32]) {
    const LANES: usize = 16;
    let d = out.len();
    let mut start = 0;
    for chunk in out.chunks_exact_mut(LANES) {
        let mut sums = [0f32; LANES];
        for (&w, row) in weights.iter().zip(rows.chunks_exact(d)) {
            let Ok(values) = <&[f32; LANES]>::try_from(&row[start..start + LANES]) else { continue };
            for l in 0..LANES {
                sums[l] += w * values[l];
            }
        }
        chunk.copy_from_slice(&sums);
        start += LANES;
    }
    for (c, o) in out.iter_mut().enumerate().skip(start) {
        *o = weights.iter().zip(rows.chunks_exact(d)).map(|(&w, row)| w * row[c]).sum();
    }
}

/// Softmax in place.
#[inline(always)]
fn softmax(v: &mut [f32]) {
    // A plain comparison, not `f32::max` (whose NaN rule kept the loop to scalar branches);
    // scores are never NaN.
    // Eight running maxima, like the sums of [`lane_sum`].
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = v.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    for chunk in chunks {
        for l in 0..8 {
            lanes[l] = if chunk[l] > lanes[l] { chunk[l] } else { lanes[l] };
        }
    }
    let max = lanes.iter().fold(tail, |m, &x| if x > m { x } else { m });
    v.iter_mut().for_each(|x| *x = exp(*x - max));
    let scale = 1.0 / lane_sum(v, |x| x);
    v.iter_mut().for_each(|x| *x *= scale);
}

/// e^x for x ≤ 0 (softmax's range) without a library call, so that loops over it vectorise:
/// 2^k · e^r with r = x − k·ln 2 in [−ln2/2, ln2/2] and a degree-6 polynomial for e^r;
/// relative error about 2e-7. Below −87 it is e^−87 (≈ 2e-38), above 0 it is 1. k is rounded
/// by adding and subtracting 1.5·2²³ (exact for |k| < 2²²): `f32::round` is a call to libm's
/// `roundf` on baseline x86-64, which kept the softmax loop scalar. 2^k is built from the
/// bits of that sum, whose low mantissa bits hold k: a float-to-integer `as` saturates and
/// maps NaN to 0, four scalar instructions per value, which kept the loop half scalar.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 0.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = x - k * 0.693_145_75 - k * 1.428_606_8e-6;
    let mut p = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * r + c;
    }
    // shifted's bits are those of 1.5·2²³ plus k; k ∈ [−126, 0] here, so 2^k is normal.
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(k_bits.wrapping_add(127) << 23)
}

/// Scales `v` to unit L2 norm (sentence-transformers' `Normalize`: the norm is clamped at 1e-12).
fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

// --- the backend -----------------------------------------------------------------------------

/// A sentence-transformers model; see the module docs.
pub struct EmbeddingBackend {
    encoder: Bert,
    tokenizer: Tokenizer,
    head: Head,
    max_tokens: usize,
    /// `EmbeddingConfig::threads` threads for the groups and their matrix products.
    pool: rayon::ThreadPool,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
}

impl std::fmt::Debug for EmbeddingBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingBackend")
            .field("head", &self.head)
            .field("hidden", &self.encoder.hidden)
            .field("layers", &self.encoder.layers.len())
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

/// The encoder named by `config.json`.
fn load_encoder(dir: &Path, precision: EmbeddingPrecision) -> Result<Bert, RuntimeError> {
    let path = dir.join("config.json");
    let config: serde_json::Value = read_json(&path)?;
    let model_type = config.get("model_type").and_then(|t| t.as_str()).unwrap_or_default().to_owned();
    match model_type.as_str() {
        "bert" => Bert::load(dir, serde_json::from_value(config).map_err(|e| load_error(&path, e))?, precision),
        other => {
            Err(load_error(&path, format!("model_type '{other}' is not supported for embeddings (supported: bert)")))
        }
    }
}

impl EmbeddingBackend {
    /// Loads the sentence-transformers folder `dir`; see the module docs for what it holds.
    pub fn load(dir: &Path, config: &EmbeddingConfig) -> Result<EmbeddingBackend, RuntimeError> {
        if !dir.is_dir() {
            return Err(RuntimeError::Load(format!("{} is not a folder", dir.display())));
        }
        let head = load_head(dir)?;
        let pool = crate::candle_threads::pool(config.threads, "embed")?;
        let encoder = load_encoder(dir, config.precision)?;
        let bf16 = encoder.layers.iter().any(|l| matches!(l.qkv.weight, Weight::Bf16(_)));
        tracing::info!(
            model = %dir.display(),
            products = if bf16 { "bfloat16" } else { "float32" },
            "sentence-embedding encoder loaded"
        );
        let st: SentenceBertConfig = read_optional_json(&dir.join("sentence_bert_config.json"))?.unwrap_or_default();
        let max_tokens =
            [st.max_seq_length, config.max_tokens].into_iter().flatten().fold(encoder.max_positions, usize::min).max(1);
        let tokenizer = load_tokenizer(dir, max_tokens)?;
        let dimension = (encoder.hidden * head.pooling.modes()) as i64;
        let inputs = vec![IoSpec { name: TEXT_INPUT.into(), dtype: DataType::Bytes, shape: vec![-1] }];
        let outputs = vec![
            IoSpec { name: EMBEDDING_OUTPUT.into(), dtype: DataType::Fp32, shape: vec![-1, dimension] },
            IoSpec { name: TOKENS_OUTPUT.into(), dtype: DataType::Int64, shape: vec![-1] },
        ];
        Ok(EmbeddingBackend { encoder, tokenizer, head, max_tokens, pool, inputs, outputs })
    }

    /// A loader for [`Replica::start`](crate::Replica::start): loads the model on the replica's
    /// own thread.
    pub fn loader(dir: PathBuf, config: EmbeddingConfig) -> crate::Loader {
        Box::new(move || EmbeddingBackend::load(&dir, &config).map(|b| Box::new(b) as Box<dyn Backend>))
    }

    /// The length of one embedding.
    pub fn dimension(&self) -> usize {
        self.encoder.hidden * self.head.pooling.modes()
    }

    /// The most tokens kept per text.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Embeds `texts`: one vector of [`dimension`](Self::dimension) values per text (flat, in
    /// order) and the token count of each text.
    pub fn embed(&self, texts: &[&str]) -> Result<(Vec<f32>, Vec<i64>), RuntimeError> {
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|e| RuntimeError::Inference(format!("tokenizing failed: {e}")))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let tokens = ids.iter().map(|ids| ids.len() as i64).collect();
        let mut vectors = Vec::with_capacity(texts.len() * self.dimension());
        let mut start = 0;
        while start < ids.len() {
            // Whole texts, up to TOKENS_PER_PASS tokens (at least one text).
            let mut end = start + 1;
            let mut count = ids[start].len();
            while end < ids.len() && count + ids[end].len() <= TOKENS_PER_PASS {
                count += ids[end].len();
                end += 1;
            }
            self.embed_pass(&ids[start..end], &mut vectors)?;
            start = end;
        }
        Ok((vectors, tokens))
    }

    /// Encodes `texts` (token ids) in one pass and appends their pooled vectors to `out`: the
    /// texts are split into up to `threads` groups of about equal tokens, each encoded on its
    /// own thread (fewer synchronisation points than splitting every operation); a group's
    /// share of the remaining threads goes to its attention and fused passes.
    fn embed_pass(&self, texts: &[&[u32]], out: &mut Vec<f32>) -> Result<(), RuntimeError> {
        let lengths: Vec<usize> = texts.iter().map(|t| t.len()).collect();
        let threads = self.pool.current_num_threads();
        let groups = split_runs(&lengths, threads, |n| n);
        if groups.len() <= 1 {
            return self.on_pool(|| self.embed_group(texts, threads, out));
        }
        let inner = (threads / groups.len()).max(1);
        let results: Vec<Result<Vec<f32>, RuntimeError>> = std::thread::scope(|scope| {
            let mut start = 0;
            let handles: Vec<_> = groups
                .iter()
                .map(|&count| {
                    let group = &texts[start..start + count];
                    start += count;
                    scope.spawn(move || {
                        let mut vectors = Vec::with_capacity(count * self.dimension());
                        self.on_pool(|| self.embed_group(group, inner, &mut vectors)).map(|()| vectors)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|panic| {
                        Err(RuntimeError::Inference(format!(
                            "encoding panicked: {}",
                            crate::panic_message(panic.as_ref())
                        )))
                    })
                })
                .collect()
        });
        for vectors in results {
            out.extend(vectors?);
        }
        Ok(())
    }

    /// Runs `work` on the backend's pool, where its matrix products take their threads (the
    /// calling thread waits meanwhile).
    fn on_pool<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        self.pool.install(work)
    }

    /// Encodes `texts` together on `threads` threads and appends their pooled vectors to `out`.
    fn embed_group(&self, texts: &[&[u32]], threads: usize, out: &mut Vec<f32>) -> Result<(), RuntimeError> {
        let h = self.encoder.hidden;
        let lengths: Vec<usize> = texts.iter().map(|t| t.len()).collect();
        let packed: Vec<u32> = texts.concat();
        let states = self.encoder.forward(&packed, &lengths, threads)?;
        let mut offset = 0;
        for &n in &lengths {
            let before = out.len();
            self.head.pooling.pool(&states[offset * h..(offset + n) * h], h, out);
            if self.head.normalize {
                normalize(&mut out[before..]);
            }
            offset += n;
        }
        Ok(())
    }
}

/// Splits texts (`lengths` tokens each) into up to `parts` runs of consecutive texts of about
/// equal `weight` (of a text's length) in total: the number of texts in each run. A run ends
/// where the running total comes nearest its share.
fn split_runs(lengths: &[usize], parts: usize, weight: impl Fn(usize) -> usize) -> Vec<usize> {
    let total: usize = lengths.iter().map(|&n| weight(n)).sum();
    let mut out = Vec::with_capacity(parts);
    let (mut start, mut done) = (0, 0);
    for (i, &n) in lengths.iter().enumerate() {
        done += weight(n);
        let target = total * (out.len() + 1) / parts.max(1);
        let next = lengths.get(i + 1).map_or(0, |&m| weight(m));
        // Ending here is nearer the target than ending after the next text.
        let nearest = done >= target || 2 * target <= 2 * done + next;
        if (out.len() + 1 < parts && nearest) || i + 1 == lengths.len() {
            out.push(i + 1 - start);
            start = i + 1;
        }
    }
    out
}

/// The texts of the `text` input, as UTF-8 strings.
fn texts(inputs: &[Tensor]) -> Result<Vec<&str>, RuntimeError> {
    let Some(TensorData::Bytes(rows)) = inputs.iter().find(|t| t.name == TEXT_INPUT).map(|t| &t.data) else {
        return Err(RuntimeError::InvalidInput(format!("missing BYTES input '{TEXT_INPUT}'")));
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            std::str::from_utf8(row).map_err(|e| {
                RuntimeError::InvalidInput(format!("input '{TEXT_INPUT}': row {i} is not valid UTF-8 ({e})"))
            })
        })
        .collect()
}

impl Backend for EmbeddingBackend {
    fn platform(&self) -> &'static str {
        "sentence-transformers"
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
        let texts = texts(&inputs)?;
        let rows = texts.len() as i64;
        let (vectors, tokens) = self.embed(&texts)?;
        let dimension = self.dimension() as i64;
        let names: Vec<&str> = if outputs.is_empty() {
            vec![EMBEDDING_OUTPUT, TOKENS_OUTPUT]
        } else {
            outputs.iter().map(String::as_str).collect()
        };
        let (mut vectors, mut tokens) = (Some(vectors), Some(tokens));
        names
            .into_iter()
            .map(|name| match name {
                EMBEDDING_OUTPUT => {
                    Tensor::new(name, vec![rows, dimension], TensorData::Fp32(vectors.take().unwrap_or_default()))
                }
                TOKENS_OUTPUT => Tensor::new(name, vec![rows], TensorData::Int64(tokens.take().unwrap_or_default())),
                other => Err(RuntimeError::InvalidInput(format!("unknown output '{other}'"))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_sums_match_the_plain_loop() {
        for d in [5, 16, 20, 32, 64] {
            let rows: Vec<f32> = (0..7 * d).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
            let weights: Vec<f32> = (0..7).map(|j| (j as f32 + 1.0) / 28.0).collect();
            let mut out = vec![f32::NAN; d];
            weighted_sum(&weights, &rows, &mut out);
            for (c, &o) in out.iter().enumerate() {
                let expected: f32 = (0..7).map(|j| weights[j] * rows[j * d + c]).sum();
                assert!((o - expected).abs() < 1e-5, "d {d} column {c}: {o} vs {expected}");
            }
        }
    }

    #[test]
    fn erf_matches_the_series() {
        // erf by its Taylor series in f64 (converges well for |x| ≤ 3).
        let reference = |x: f64| {
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        for i in -300..=300 {
            let x = i as f64 / 100.0;
            let err = (erf(x as f32) as f64 - reference(x)).abs();
            assert!(err < 2e-6, "erf({x}): error {err}");
        }
        assert_eq!(erf(10.0), erf(4.0));
        assert!((erf(4.0) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn pooling_modes_concatenate_in_order() {
        let states = [1.0, 2.0, 3.0, -4.0, 5.0, 0.0]; // three tokens of two values
        let all = Pooling {
            pooling_mode_cls_token: true,
            pooling_mode_max_tokens: true,
            pooling_mode_mean_tokens: true,
            pooling_mode_mean_sqrt_len_tokens: true,
            pooling_mode_weightedmean_tokens: false,
            pooling_mode_lasttoken: true,
        };
        let mut out = Vec::new();
        all.pool(&states, 2, &mut out);
        let s3 = 3f32.sqrt();
        let want = [1.0, 2.0, 5.0, 2.0, 3.0, -2.0 / 3.0, 9.0 / s3, -2.0 / s3, 5.0, 0.0];
        assert_eq!(all.modes(), 5);
        assert!(out.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{out:?}");
    }

    #[test]
    fn work_is_split_into_runs_of_about_equal_size() {
        let tokens = |lengths: &[usize], parts| split_runs(lengths, parts, |n| n);
        assert_eq!(tokens(&[10, 10, 10, 10], 2), [2, 2]);
        assert_eq!(tokens(&[30, 5, 5, 5, 5], 2), [1, 4]);
        assert_eq!(tokens(&[5, 5, 5, 5, 30], 2), [4, 1]);
        assert_eq!(tokens(&[7], 4), [1]);
        assert_eq!(tokens(&[0, 0, 0], 2), [1, 2], "never more runs than asked");
        assert_eq!(tokens(&[3, 3, 3], 1), [3]);
        assert!(tokens(&[], 2).is_empty());
        assert_eq!(split_runs(&[4, 4, 8], 2, |n| n * n), [2, 1], "attention work grows as n²");
    }

    #[test]
    fn softmax_exp_and_normalize() {
        let mut v = [1.0, 2.0, 3.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6 && v[2] > v[1] && v[1] > v[0]);
        for i in 0..=870 {
            let x = -i as f32 / 10.0;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= 5e-7 * want, "exp({x}) = {got}, want {want}");
        }
        let mut z = [0.0, 0.0];
        normalize(&mut z);
        assert_eq!(z, [0.0, 0.0], "a zero vector stays zero");
        // Lengths with and without a remainder past the eight lanes.
        for len in [3, 8, 32, 35] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let want: f64 = a.iter().map(|&x| x as f64 * x as f64).sum();
            assert!((lane_sum(&a, |x| x * x) as f64 - want).abs() < 1e-5, "sum of {len} squares");
        }
    }
}
