//! The Llama-family decoder (Llama, Mistral, Qwen2, Qwen3) that runs every slot's chunk of a
//! step in one forward pass, so concurrent sequences decode together.
//!
//! The tokens of all chunks are packed into one `[tokens, hidden]` matrix: the projections and
//! the feed-forward block are single matrix products over every row, so each weight is read
//! once per step however many sequences decode (a decode step is bound by reading the weights).
//! Only attention is per chunk: the chunk's queries against its own slot's key/value cache,
//! causal from the chunk's position (and within Mistral's sliding window). Each token carries
//! its own position into the rotary embedding.
//!
//! Weights have Hugging Face names (`model.layers.{i}.self_attn.q_proj.weight`…). Query, key
//! and value are one product, gate and up another, and every matrix is stored `[in, out]` so
//! the matrix kernel reads it contiguously. A projection's bias is used when the file has one
//! (Qwen2's q/k/v, models with `attention_bias`), and so are Qwen3's per-head `q_norm`/`k_norm`.
//! The output layer keeps PyTorch's `[vocab, hidden]` layout and computes `(W · xᵀ)ᵀ` for the
//! step's last rows, so a model without `lm_head.weight` (`tie_word_embeddings`) uses the
//! embedding matrix itself, without a transposed copy.
//!
//! Everything is candle tensor operations, so the same code runs on the CPU (F32) and, with the
//! `cuda` feature, on a GPU (BF16; attention probabilities in F32).

use std::collections::HashMap;
use std::f64::consts::PI;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use serde_json::Value;

use super::engine::SeqChunk;
use crate::RuntimeError;

/// The first cache allocation of a slot, in tokens; it doubles as the sequence grows.
const FIRST_CACHE_TOKENS: usize = 64;

/// The `config.json` fields the decoder reads (Hugging Face names and defaults).
#[derive(Debug, Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    hidden_act: Option<String>,
    rope_scaling: Option<Value>,
    sliding_window: Option<usize>,
    #[serde(default)]
    use_sliding_window: bool,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_theta() -> f64 {
    10_000.0
}

/// Llama 3's rotary frequency scaling (`rope_scaling` with `rope_type: llama3`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
struct Llama3Scaling {
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_max_position_embeddings: f64,
}

/// The shape of the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct DecoderConfig {
    vocab_size: usize,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rms_eps: f32,
    rope_theta: f64,
    rope_scaling: Option<Llama3Scaling>,
    /// Mistral: a query sees the keys of at most this many positions (itself included).
    sliding_window: Option<usize>,
}

impl DecoderConfig {
    /// Reads the `config.json` of an `architecture` model (one of `candle_lm::SUPPORTED`).
    pub(super) fn parse(architecture: &str, config: &Value) -> Result<DecoderConfig, RuntimeError> {
        let bad = |message: String| RuntimeError::Load(format!("config.json: {message}"));
        let raw = RawConfig::deserialize(config).map_err(|e| bad(e.to_string()))?;
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(bad(format!("{heads} attention heads cannot share {kv_heads} key/value heads")));
        }
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / heads);
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(bad(format!("head_dim {head_dim} must be even")));
        }
        if let Some(act) = raw.hidden_act.as_deref().filter(|act| !matches!(*act, "silu" | "swish")) {
            return Err(bad(format!("hidden_act {act:?} is not supported (silu)")));
        }
        let sliding_window = match architecture {
            "mistral" => raw.sliding_window,
            "qwen2" | "qwen3" if raw.use_sliding_window => {
                return Err(bad("use_sliding_window is not supported".into()));
            }
            _ => None,
        };
        Ok(DecoderConfig {
            vocab_size: raw.vocab_size,
            hidden: raw.hidden_size,
            intermediate: raw.intermediate_size,
            layers: raw.num_hidden_layers,
            heads,
            kv_heads,
            head_dim,
            rms_eps: raw.rms_norm_eps as f32,
            rope_theta: raw.rope_theta,
            rope_scaling: rope_scaling(raw.rope_scaling.as_ref()).map_err(bad)?,
            sliding_window: sliding_window.filter(|&w| w > 0),
        })
    }

    /// The rotary frequencies of the pairs of a head (`head_dim / 2` values).
    fn inverse_frequencies(&self) -> Vec<f64> {
        let d = self.head_dim as f64;
        (0..self.head_dim / 2)
            .map(|i| {
                let freq = 1.0 / self.rope_theta.powf(2.0 * i as f64 / d);
                match self.rope_scaling {
                    Some(s) => {
                        let wavelen = 2.0 * PI / freq;
                        let (low, high) = (
                            s.original_max_position_embeddings / s.low_freq_factor,
                            s.original_max_position_embeddings / s.high_freq_factor,
                        );
                        if wavelen < high {
                            freq
                        } else if wavelen > low {
                            freq / s.factor
                        } else {
                            let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * freq / s.factor + smooth * freq
                        }
                    }
                    None => freq,
                }
            })
            .collect()
    }
}

/// `rope_scaling`: absent, `default`, or Llama 3's; other kinds (linear, dynamic, YaRN) are
/// refused rather than silently ignored.
fn rope_scaling(value: Option<&Value>) -> Result<Option<Llama3Scaling>, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(None) };
    let kind = value.get("rope_type").or_else(|| value.get("type")).and_then(Value::as_str).unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "llama3" => Llama3Scaling::deserialize(value).map(Some).map_err(|e| format!("rope_scaling: {e}")),
        other => Err(format!("rope_scaling type {other:?} is not supported (default, llama3)")),
    }
}

/// `x · weight + bias` with the weight stored `[in, out]`.
struct Projection {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Projection {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.matmul(&self.weight)?;
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}

/// One decoder layer.
struct Layer {
    input_norm: Tensor,
    /// Queries, keys and values side by side: `[hidden, (heads + 2·kv_heads)·head_dim]`.
    qkv: Projection,
    /// Qwen3's RMS norms over each head's queries and keys (before the rotary embedding).
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    out: Projection,
    post_attention_norm: Tensor,
    /// Gate and up side by side: `[hidden, 2·intermediate]`.
    gate_up: Projection,
    down: Projection,
}

/// A slot's keys or values of one layer: `[kv_heads, capacity, head_dim]`, the first `len`
/// positions filled.
#[derive(Default)]
struct KvCache {
    keys: Option<Tensor>,
    values: Option<Tensor>,
    len: usize,
}

impl KvCache {
    /// Appends `keys` and `values` (`[kv_heads, n, head_dim]`, contiguous) and returns every
    /// cached position's keys and values. The buffers grow by doubling, up to `limit` positions.
    fn append(&mut self, keys: &Tensor, values: &Tensor, limit: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let len = self.len + keys.dim(1)?;
        let capacity = self.keys.as_ref().map_or(Ok(0), |k| k.dim(1))?;
        if len > capacity {
            let capacity = (2 * capacity).max(FIRST_CACHE_TOKENS).min(limit).max(len);
            self.keys = Some(grown(self.keys.take(), keys, capacity)?);
            self.values = Some(grown(self.values.take(), values, capacity)?);
        }
        let (Some(all_keys), Some(all_values)) = (&self.keys, &self.values) else {
            candle_core::bail!("the cache has no buffers")
        };
        all_keys.slice_set(keys, 1, self.len)?;
        all_values.slice_set(values, 1, self.len)?;
        self.len = len;
        Ok((all_keys.narrow(1, 0, len)?, all_values.narrow(1, 0, len)?))
    }
}

/// A buffer of `capacity` positions shaped like `like`, holding `old`'s positions first.
fn grown(old: Option<Tensor>, like: &Tensor, capacity: usize) -> candle_core::Result<Tensor> {
    let (kv_heads, _, head_dim) = like.dims3()?;
    let buffer = Tensor::zeros((kv_heads, capacity, head_dim), like.dtype(), like.device())?;
    if let Some(old) = old {
        buffer.slice_set(&old, 1, 0)?;
    }
    Ok(buffer)
}

/// The model with one key/value cache per slot; see the module docs.
pub(super) struct Decoder {
    config: DecoderConfig,
    /// `[vocab, hidden]`.
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// `[vocab, hidden]`; the same tensor as `embed` when tied.
    lm_head: Tensor,
    /// The rotary embedding of every position below the context length: `[context, head_dim/2]`.
    cos: Tensor,
    sin: Tensor,
    context_length: usize,
    /// `caches[slot][layer]`.
    caches: Vec<Vec<KvCache>>,
    dtype: DType,
    device: Device,
}

/// The weights of a model folder by name, converted as they are taken.
struct Source {
    tensors: HashMap<String, Tensor>,
    dtype: DType,
    device: Device,
}

impl Source {
    fn missing(name: &str) -> RuntimeError {
        RuntimeError::Load(format!("the model has no tensor {name}"))
    }

    fn failed(name: &str, e: candle_core::Error) -> RuntimeError {
        RuntimeError::Load(format!("tensor {name}: {e}"))
    }

    /// The tensor `name` as read, checked against `shape`; `None` when the files lack it.
    fn optional_raw(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>, RuntimeError> {
        let Some(tensor) = self.tensors.remove(name) else { return Ok(None) };
        if tensor.dims() != shape {
            return Err(RuntimeError::Load(format!("tensor {name} has shape {:?}, expected {shape:?}", tensor.dims())));
        }
        Ok(Some(tensor))
    }

    /// [`Source::optional_raw`] on the device in the model's dtype.
    fn optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>, RuntimeError> {
        self.optional_raw(name, shape)?.map(|t| self.convert(t).map_err(|e| Source::failed(name, e))).transpose()
    }

    /// A tensor the model needs, on the device in the model's dtype.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, RuntimeError> {
        self.optional(name, shape)?.ok_or_else(|| Source::missing(name))
    }

    fn convert(&self, tensor: Tensor) -> candle_core::Result<Tensor> {
        tensor.to_dtype(self.dtype)?.to_device(&self.device)
    }

    /// The linear layers `prefix.{part}` (PyTorch `[out, in]` weights, `outputs` rows each)
    /// as one `[inputs, Σ outs]` projection; a bias where any part has one (zeros for the rest).
    fn projection(&mut self, prefix: &str, parts: &[(&str, usize)], inputs: usize) -> Result<Projection, RuntimeError> {
        let mut weights = Vec::with_capacity(parts.len());
        let mut biases = Vec::with_capacity(parts.len());
        for &(part, outputs) in parts {
            let name = format!("{prefix}.{part}.weight");
            weights.push(self.optional_raw(&name, &[outputs, inputs])?.ok_or_else(|| Source::missing(&name))?);
            biases.push(self.optional_raw(&format!("{prefix}.{part}.bias"), &[outputs])?);
        }
        let failed = |e| Source::failed(&format!("{prefix}.{}", parts[0].0), e);
        let weight = Tensor::cat(&weights, 0).and_then(|w| w.t()?.contiguous()).map_err(failed)?;
        let bias = if biases.iter().any(Option::is_some) {
            let dtype = weights[0].dtype();
            let parts: Vec<Tensor> = biases
                .into_iter()
                .zip(parts)
                .map(|(bias, &(_, outputs))| bias.map_or_else(|| Tensor::zeros(outputs, dtype, &Device::Cpu), Ok))
                .collect::<candle_core::Result<_>>()
                .map_err(failed)?;
            Some(Tensor::cat(&parts, 0).and_then(|b| self.convert(b)).map_err(failed)?)
        } else {
            None
        };
        Ok(Projection { weight: self.convert(weight).map_err(failed)?, bias })
    }
}

impl Decoder {
    /// Builds the model from its weights (`tensors`, on the CPU as read from the files), with
    /// `slots` empty caches of up to `context_length` positions.
    pub(super) fn load(
        config: DecoderConfig,
        tensors: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
        slots: usize,
        context_length: usize,
    ) -> Result<Decoder, RuntimeError> {
        let mut w = Source { tensors, dtype, device: device.clone() };
        let c = &config;
        let (h, d) = (c.hidden, c.head_dim);
        let layers = (0..c.layers)
            .map(|i| {
                let l = format!("model.layers.{i}");
                let attention = format!("{l}.self_attn");
                Ok(Layer {
                    input_norm: w.take(&format!("{l}.input_layernorm.weight"), &[h])?,
                    qkv: w.projection(
                        &attention,
                        &[("q_proj", c.heads * d), ("k_proj", c.kv_heads * d), ("v_proj", c.kv_heads * d)],
                        h,
                    )?,
                    q_norm: w.optional(&format!("{attention}.q_norm.weight"), &[d])?,
                    k_norm: w.optional(&format!("{attention}.k_norm.weight"), &[d])?,
                    out: w.projection(&attention, &[("o_proj", h)], c.heads * d)?,
                    post_attention_norm: w.take(&format!("{l}.post_attention_layernorm.weight"), &[h])?,
                    gate_up: w.projection(
                        &format!("{l}.mlp"),
                        &[("gate_proj", c.intermediate), ("up_proj", c.intermediate)],
                        h,
                    )?,
                    down: w.projection(&format!("{l}.mlp"), &[("down_proj", h)], c.intermediate)?,
                })
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        let norm = w.take("model.norm.weight", &[h])?;
        let embed = w.take("model.embed_tokens.weight", &[c.vocab_size, h])?;
        let lm_head = w.optional("lm_head.weight", &[c.vocab_size, h])?.unwrap_or_else(|| embed.clone());
        let (cos, sin) = rotary_tables(c, context_length, dtype, device)
            .map_err(|e| RuntimeError::Load(format!("rotary embedding: {e}")))?;
        let caches = (0..slots).map(|_| (0..c.layers).map(|_| KvCache::default()).collect()).collect();
        Ok(Decoder {
            config,
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            context_length,
            caches,
            dtype,
            device: device.clone(),
        })
    }

    /// How many positions `slot`'s cache holds; `None` for a slot that does not exist.
    pub(super) fn held(&self, slot: usize) -> Option<usize> {
        self.caches.get(slot).map(|layers| layers.first().map_or(0, |cache| cache.len))
    }

    /// Forgets `slot`'s keys and values (and frees their memory).
    pub(super) fn clear(&mut self, slot: usize) {
        if let Some(layers) = self.caches.get_mut(slot) {
            layers.iter_mut().for_each(|cache| *cache = KvCache::default());
        }
    }

    /// One forward pass over every chunk (distinct slots, each continuing its slot's cache):
    /// the logits after each chunk's last token (after each of its tokens with `all_logits`),
    /// `[rows, vocab]` in the order of the chunks.
    pub(super) fn forward(&mut self, chunks: &[SeqChunk<'_>]) -> candle_core::Result<Tensor> {
        let ids: Vec<u32> = chunks.iter().flat_map(|c| c.tokens.iter().copied()).collect();
        let positions: Vec<u32> =
            chunks.iter().flat_map(|c| (c.pos..c.pos + c.tokens.len()).map(|p| p as u32)).collect();
        let ids = Tensor::new(ids, &self.device)?;
        let positions = Tensor::new(positions, &self.device)?;
        let cos = self.cos.index_select(&positions, 0)?;
        let sin = self.sin.index_select(&positions, 0)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        for index in 0..self.layers.len() {
            x = self.layer(index, &x, chunks, (&cos, &sin))?;
        }
        // The row of each chunk's last token, or of all its tokens with `all_logits`.
        let mut rows: Vec<u32> = Vec::with_capacity(chunks.len());
        let mut start = 0u32;
        for chunk in chunks {
            let end = start + chunk.tokens.len() as u32;
            if chunk.all_logits {
                rows.extend(start..end);
            } else {
                rows.push(end - 1);
            }
            start = end;
        }
        let x = x.index_select(&Tensor::new(rows, &self.device)?, 0)?;
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.config.rms_eps)?;
        self.lm_head.matmul(&x.t()?)?.t()?.contiguous()
    }

    /// One layer over the packed rows `x`.
    fn layer(
        &mut self,
        index: usize,
        x: &Tensor,
        chunks: &[SeqChunk<'_>],
        rotary: (&Tensor, &Tensor),
    ) -> candle_core::Result<Tensor> {
        let c = self.config;
        let (tokens, d) = (x.dim(0)?, c.head_dim);
        let layer = &self.layers[index];
        let qkv = layer.qkv.forward(&candle_nn::ops::rms_norm(x, &layer.input_norm, c.rms_eps)?)?;
        let heads = |start: usize, count: usize| qkv.narrow(1, start * d, count * d)?.reshape((1, tokens, count, d));
        let mut q = heads(0, c.heads)?;
        let mut k = heads(c.heads, c.kv_heads)?;
        let v = heads(c.heads + c.kv_heads, c.kv_heads)?;
        if let Some(q_norm) = &layer.q_norm {
            q = candle_nn::ops::rms_norm(&q, q_norm, c.rms_eps)?;
        }
        if let Some(k_norm) = &layer.k_norm {
            k = candle_nn::ops::rms_norm(&k, k_norm, c.rms_eps)?;
        }
        let q = candle_nn::rotary_emb::rope_thd(&q.contiguous()?, rotary.0, rotary.1)?.squeeze(0)?;
        let k = candle_nn::rotary_emb::rope_thd(&k.contiguous()?, rotary.0, rotary.1)?.squeeze(0)?;
        let v = v.squeeze(0)?;
        let mut contexts = Vec::with_capacity(chunks.len());
        let mut start = 0;
        for chunk in chunks {
            let n = chunk.tokens.len();
            let rows = |t: &Tensor| t.narrow(0, start, n);
            contexts.push(self.attend(index, chunk, &rows(&q)?, &rows(&k)?, &rows(&v)?)?);
            start += n;
        }
        let layer = &self.layers[index];
        let attended = layer.out.forward(&Tensor::cat(&contexts, 0)?)?;
        let x = (x + attended)?;
        let gate_up = layer.gate_up.forward(&candle_nn::ops::rms_norm(&x, &layer.post_attention_norm, c.rms_eps)?)?;
        let gate = gate_up.narrow(1, 0, c.intermediate)?;
        let up = gate_up.narrow(1, c.intermediate, c.intermediate)?;
        x + layer.down.forward(&(candle_nn::ops::silu(&gate)? * up)?)?
    }

    /// Attention of one chunk's `n` tokens (queries `[n, heads, d]`, new keys and values
    /// `[n, kv_heads, d]`) over its slot's cache, which they join: the context rows
    /// `[n, heads·d]`. Grouped heads share a key/value head: query head `i` reads key/value
    /// head `i / (heads / kv_heads)`.
    fn attend(
        &mut self,
        layer: usize,
        chunk: &SeqChunk<'_>,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let c = self.config;
        let (n, d, kv) = (chunk.tokens.len(), c.head_dim, c.kv_heads);
        let group = c.heads / kv;
        let cache = &mut self.caches[chunk.slot][layer];
        let (keys, values) =
            cache.append(&k.transpose(0, 1)?.contiguous()?, &v.transpose(0, 1)?.contiguous()?, self.context_length)?;
        let held = keys.dim(1)?;
        // [n, heads, d] → [kv, group·n, d]: the queries of each key/value head together.
        let q = q.reshape((n, kv, group, d))?.permute((1, 2, 0, 3))?.contiguous()?.reshape((kv, group * n, d))?;
        let q = (q * (1.0 / (d as f64).sqrt()))?;
        let scores = q.matmul(&keys.t()?)?.to_dtype(DType::F32)?;
        let scores = match self.mask(chunk.pos, n, held)? {
            Some(mask) => scores.reshape((kv, group, n, held))?.broadcast_add(&mask)?.reshape((kv, group * n, held))?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(self.dtype)?;
        let context = probs.matmul(&values)?;
        // [kv, group·n, d] → [n, kv, group, d] = [n, heads·d].
        context.reshape((kv, group, n, d))?.permute((2, 0, 1, 3))?.contiguous()?.reshape((n, c.heads * d))
    }

    /// [`attention_mask`] as a tensor.
    fn mask(&self, pos: usize, n: usize, held: usize) -> candle_core::Result<Option<Tensor>> {
        attention_mask(pos, n, held, self.config.sliding_window)
            .map(|mask| Tensor::from_vec(mask, (n, held), &self.device))
            .transpose()
    }
}

/// The additive mask (`n × held` values, 0 or −∞) of `n` queries at positions `pos..` over
/// `held` cached positions: a query sees the keys at its position and before, and within
/// `window` positions (itself included; Hugging Face's `kv > q − window`). `None` when every
/// query sees every key (one new token within the window).
fn attention_mask(pos: usize, n: usize, held: usize, window: Option<usize>) -> Option<Vec<f32>> {
    let window = window.unwrap_or(usize::MAX);
    if n == 1 && held <= window {
        return None;
    }
    let mask = (pos..pos + n)
        .flat_map(|query| {
            (0..held).map(move |key| if key > query || query - key >= window { f32::NEG_INFINITY } else { 0.0 })
        })
        .collect();
    Some(mask)
}

/// cos and sin of every position's rotary angles, `[context_length, head_dim / 2]` each.
fn rotary_tables(
    config: &DecoderConfig,
    context_length: usize,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let frequencies = config.inverse_frequencies();
    let angles: Vec<f64> = (0..context_length).flat_map(|p| frequencies.iter().map(move |f| p as f64 * f)).collect();
    let table = |f: fn(f64) -> f64| {
        let values: Vec<f32> = angles.iter().map(|&a| f(a) as f32).collect();
        Tensor::from_vec(values, (context_length, frequencies.len()), device)?.to_dtype(dtype)
    };
    Ok((table(f64::cos)?, table(f64::sin)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: Value) -> Value {
        let mut base = serde_json::json!({
            "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1,
        });
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        base
    }

    #[test]
    fn config_defaults_and_refusals() {
        let c = DecoderConfig::parse("llama", &config(serde_json::json!({}))).unwrap();
        assert_eq!((c.head_dim, c.kv_heads, c.rope_theta, c.sliding_window), (4, 1, 10_000.0, None));
        let mistral = config(serde_json::json!({"sliding_window": 3}));
        assert_eq!(DecoderConfig::parse("mistral", &mistral).unwrap().sliding_window, Some(3));
        assert_eq!(DecoderConfig::parse("llama", &mistral).unwrap().sliding_window, None);
        for (arch, extra) in [
            ("llama", serde_json::json!({"num_key_value_heads": 3})),
            ("llama", serde_json::json!({"hidden_act": "gelu"})),
            ("llama", serde_json::json!({"rope_scaling": {"type": "yarn", "factor": 4.0}})),
            ("qwen2", serde_json::json!({"use_sliding_window": true})),
        ] {
            assert!(
                matches!(DecoderConfig::parse(arch, &config(extra.clone())), Err(RuntimeError::Load(_))),
                "{extra}"
            );
        }
    }

    /// Llama 3.1's scaling keeps high frequencies, divides low ones by `factor`, and blends
    /// in between (the values transformers computes).
    #[test]
    fn llama3_scaling_of_frequencies() {
        let scaled = config(serde_json::json!({
            "hidden_size": 256, "num_attention_heads": 2, "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        }));
        let plain = DecoderConfig::parse(
            "llama",
            &config(serde_json::json!({
            "hidden_size": 256, "num_attention_heads": 2, "rope_theta": 500000.0})),
        )
        .unwrap();
        let (a, b) =
            (DecoderConfig::parse("llama", &scaled).unwrap().inverse_frequencies(), plain.inverse_frequencies());
        assert_eq!(a.len(), 64);
        assert_eq!(a[0], b[0]);
        assert!((a[63] - b[63] / 8.0).abs() < 1e-15);
        let middle = a.iter().zip(&b).filter(|(x, y)| **x < **y && **x > **y / 8.0).count();
        assert!(middle > 0);
    }

    #[test]
    fn masks_are_causal_and_windowed() {
        const X: f32 = f32::NEG_INFINITY;
        assert_eq!(attention_mask(5, 1, 6, None), None);
        // Two queries at positions 2 and 3 over 4 keys.
        assert_eq!(attention_mask(2, 2, 4, None).unwrap(), [0., 0., 0., X, 0., 0., 0., 0.]);
        // A window of 2: position 3 sees 2 and 3.
        assert_eq!(attention_mask(3, 1, 4, Some(2)).unwrap(), [X, X, 0., 0.]);
        assert_eq!(attention_mask(1, 1, 2, Some(2)), None);
    }

    #[test]
    fn cache_grows_and_keeps_what_it_held() {
        let mut cache = KvCache::default();
        let chunk = |start: f32, n: usize| {
            let values: Vec<f32> = (0..2 * n * 3).map(|i| start + i as f32).collect();
            Tensor::from_vec(values, (2, n, 3), &Device::Cpu).unwrap()
        };
        let first = chunk(0.0, 40);
        cache.append(&first, &first, 1000).unwrap();
        let second = chunk(1000.0, 30);
        let (keys, _) = cache.append(&second, &second, 1000).unwrap();
        assert_eq!(keys.dims(), [2, 70, 3]);
        assert_eq!(cache.keys.as_ref().unwrap().dim(1).unwrap(), 128);
        let head1: Vec<Vec<f32>> = keys.get(1).unwrap().to_vec2().unwrap();
        assert_eq!(head1[0], first.get(1).unwrap().to_vec2::<f32>().unwrap()[0]);
        assert_eq!(head1[40], second.get(1).unwrap().to_vec2::<f32>().unwrap()[0]);
        // Never beyond the limit.
        let mut small = KvCache::default();
        small.append(&chunk(0.0, 5), &chunk(0.0, 5), 10).unwrap();
        assert_eq!(small.keys.as_ref().unwrap().dim(1).unwrap(), 10);
    }
}
