//! Safetensors causal LMs (Llama, Qwen2, Qwen3, Mistral) through HF candle.
//!
//! A model is a Hugging Face folder: `config.json`, the weights (`model.safetensors`, or shards
//! listed in `model.safetensors.index.json`), `tokenizer.json`, `tokenizer_config.json` and
//! optionally `generation_config.json`. The network is [`decoder`](super::decoder), which keeps
//! a key/value cache per slot and runs all chunks of a [`LmEngine::step`] in one forward pass
//! (the weights are read once per step, however many sequences decode), on a rayon pool of the
//! engine's own (`threads` threads), where candle's CPU matrix products split.
//!
//! The weights run on the CPU in F32, or, when the crate is built with `candle-cuda` (part of
//! `cuda`) and a GPU is present, on GPU 0 in BF16.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use tokenizers::Tokenizer;

use super::decoder::{Decoder, DecoderConfig};
use super::engine::{LmEngine, LmInfo, SeqChunk};
use crate::RuntimeError;

/// The longest context a slot gets unless configured (and never more than the model's
/// `max_position_embeddings`).
const DEFAULT_CONTEXT: usize = 4096;

/// The architectures this engine runs, as `model_type` values of `config.json`.
const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2", "qwen3"];

/// How a safetensors model is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandleLmConfig {
    /// CPU threads for the forward passes (a rayon pool of the engine's own); 0 = candle's
    /// default count (`RAYON_NUM_THREADS`, else one per physical core).
    pub threads: usize,
    /// Sequences that may decode at once (slots), each with its own KV cache.
    pub max_sequences: usize,
    /// The most tokens one sequence may hold; default 4096. Never more than the model's
    /// `max_position_embeddings`.
    pub context_length: Option<usize>,
}

impl Default for CandleLmConfig {
    fn default() -> Self {
        Self { threads: 0, max_sequences: 4, context_length: None }
    }
}

/// A safetensors model loaded with candle; see the module docs.
pub struct CandleLmEngine {
    info: LmInfo,
    /// Adds the post-processor's special tokens and parses special tokens written as text.
    tokenizer: Tokenizer,
    /// The same vocabulary with special tokens written as text tokenized as plain text.
    plain_tokenizer: Tokenizer,
    /// The bytes of each token id (`vocab_size` entries).
    pieces: Vec<Vec<u8>>,
    model: Decoder,
    device: Device,
    /// The threads the forward passes run on.
    pool: Arc<rayon::ThreadPool>,
}

impl std::fmt::Debug for CandleLmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleLmEngine").field("info", &self.info).field("device", &self.device).finish_non_exhaustive()
    }
}

impl CandleLmEngine {
    /// Loads the model folder `dir` with `config.max_sequences` slots.
    pub fn load(dir: &Path, config: &CandleLmConfig) -> Result<CandleLmEngine, RuntimeError> {
        if config.max_sequences == 0 {
            return Err(RuntimeError::Load("max_sequences must be at least 1".into()));
        }
        let model_config = read_json(&dir.join("config.json"))?;
        let architecture = architecture(&model_config)?;
        let max_positions = usize_field(&model_config, "max_position_embeddings")?;
        let vocab_size = usize_field(&model_config, "vocab_size")?;
        let context_length = config.context_length.unwrap_or(DEFAULT_CONTEXT).min(max_positions);
        if context_length < 2 {
            return Err(RuntimeError::Load(format!("context_length {context_length} is too small")));
        }
        let pool = crate::candle_threads::pool(config.threads, "candle-lm")?;
        let (device, dtype) = device_and_dtype()?;
        let decoder_config = DecoderConfig::parse(&architecture, &model_config)?;
        let model =
            Decoder::load(decoder_config, load_weights(dir)?, dtype, &device, config.max_sequences, context_length)?;
        let tokenizer_file = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tokenizer_file)
            .map_err(|e| RuntimeError::Load(format!("cannot read {}: {e}", tokenizer_file.display())))?;
        let pieces = token_pieces(&tokenizer, &read_json(&tokenizer_file)?, vocab_size);
        let mut plain_tokenizer = tokenizer.clone();
        plain_tokenizer.set_encode_special_tokens(true);
        let info = model_info(dir, &model_config, &tokenizer, architecture, context_length, config.max_sequences)?;
        tracing::info!(
            model = %dir.display(), architecture = %info.architecture, device = ?device, ?dtype,
            context_length, slots = config.max_sequences, "candle model loaded"
        );
        Ok(CandleLmEngine { info, tokenizer, plain_tokenizer, pieces, model, device, pool: Arc::new(pool) })
    }

    /// Checks a chunk against the slots, the context and the vocabulary.
    fn check_chunk(&self, chunk: &SeqChunk<'_>) -> Result<(), RuntimeError> {
        let held = self.model.held(chunk.slot).ok_or_else(|| {
            RuntimeError::InvalidInput(format!(
                "slot {} does not exist ({} slots)",
                chunk.slot, self.info.max_sequences
            ))
        })?;
        if chunk.tokens.is_empty() {
            return Err(RuntimeError::InvalidInput(format!("empty chunk for slot {}", chunk.slot)));
        }
        if chunk.pos != 0 && chunk.pos != held {
            return Err(RuntimeError::InvalidInput(format!(
                "slot {} holds {held} tokens, a chunk cannot start at {}",
                chunk.slot, chunk.pos
            )));
        }
        if chunk.pos + chunk.tokens.len() > self.info.context_length {
            return Err(RuntimeError::ContextLength(format!(
                "{} tokens do not fit the context of {}",
                chunk.pos + chunk.tokens.len(),
                self.info.context_length
            )));
        }
        if let Some(&bad) = chunk.tokens.iter().find(|&&t| t as usize >= self.info.vocab_size) {
            return Err(RuntimeError::InvalidInput(format!("token {bad} is not in the vocabulary")));
        }
        Ok(())
    }

    /// Runs every chunk in one forward pass (checked first: nothing runs if one is bad) and
    /// returns the logits after each chunk's last token. A chunk at position 0 starts its slot
    /// afresh. A failed pass empties every slot of the step.
    fn run(&mut self, chunks: &[SeqChunk<'_>]) -> Result<Vec<Vec<f32>>, RuntimeError> {
        for (i, chunk) in chunks.iter().enumerate() {
            self.check_chunk(chunk)?;
            if chunks[..i].iter().any(|other| other.slot == chunk.slot) {
                return Err(RuntimeError::InvalidInput(format!("two chunks for slot {} in one step", chunk.slot)));
            }
        }
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        for chunk in chunks.iter().filter(|chunk| chunk.pos == 0) {
            self.release(chunk.slot);
        }
        let rows =
            self.model.forward(chunks).and_then(|logits| logits.to_dtype(DType::F32)?.to_vec2::<f32>()).map_err(
                |e| {
                    chunks.iter().for_each(|chunk| self.release(chunk.slot));
                    RuntimeError::Inference(format!("candle forward pass failed: {e}"))
                },
            )?;
        // One row per chunk, or all of a chunk's rows one after the other with `all_logits`.
        let mut rows = rows.into_iter();
        Ok(chunks
            .iter()
            .map(|chunk| match chunk.all_logits {
                true => rows.by_ref().take(chunk.tokens.len()).flatten().collect(),
                false => rows.next().unwrap_or_default(),
            })
            .collect())
    }
}

impl LmEngine for CandleLmEngine {
    fn info(&self) -> &LmInfo {
        &self.info
    }

    /// Without `add_special`, special tokens written as text (`<|im_end|>`) are tokenized as
    /// text, as llama.cpp does; other added tokens are still recognised.
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, RuntimeError> {
        let tokenizer = if add_special { &self.tokenizer } else { &self.plain_tokenizer };
        tokenizer
            .encode_fast(text, add_special)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|e| RuntimeError::Inference(format!("tokenizing failed: {e}")))
    }

    fn token_bytes(&self, token: u32) -> Vec<u8> {
        self.pieces.get(token as usize).cloned().unwrap_or_default()
    }

    /// Runs all chunks in one forward pass; on an error every slot of the step is emptied.
    fn step(&mut self, chunks: &[SeqChunk<'_>]) -> Result<Vec<Vec<f32>>, RuntimeError> {
        let pool = Arc::clone(&self.pool);
        pool.install(|| self.run(chunks))
    }

    fn release(&mut self, slot: usize) {
        self.model.clear(slot);
    }
}

fn unsupported(architecture: &str) -> RuntimeError {
    RuntimeError::Load(format!(
        "unsupported architecture {architecture:?} for the candle engine (supported: {})",
        SUPPORTED.join(", ")
    ))
}

/// The architecture named by `config.json`: `model_type`, else the first of `architectures`.
fn architecture(config: &Value) -> Result<String, RuntimeError> {
    let from_class = |class: &str| {
        let lower = class.to_ascii_lowercase();
        lower.strip_suffix("forcausallm").map(str::to_owned).unwrap_or(lower)
    };
    let name = match (config.get("model_type").and_then(Value::as_str), config.get("architectures")) {
        (Some(model_type), _) => model_type.to_owned(),
        (None, Some(Value::Array(classes))) => {
            classes.first().and_then(Value::as_str).map(from_class).unwrap_or_default()
        }
        _ => String::new(),
    };
    if SUPPORTED.contains(&name.as_str()) { Ok(name) } else { Err(unsupported(&name)) }
}

/// GPU 0 in BF16 when built with `candle-cuda` and a GPU is present, else the CPU in F32 (candle's
/// CPU matmuls do not take BF16).
fn device_and_dtype() -> Result<(Device, DType), RuntimeError> {
    if cfg!(feature = "candle-cuda") {
        let device = Device::cuda_if_available(0).map_err(|e| RuntimeError::Load(format!("cannot open GPU 0: {e}")))?;
        if device.is_cuda() {
            return Ok((device, DType::BF16));
        }
    }
    Ok((Device::Cpu, DType::F32))
}

/// The safetensors files of `dir`: the shards of `model.safetensors.index.json`, else every
/// `*.safetensors` file.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let index = dir.join("model.safetensors.index.json");
    let mut files: Vec<PathBuf> = if index.is_file() {
        let map = read_json(&index)?;
        let map = map
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| RuntimeError::Load(format!("{} has no weight_map", index.display())))?;
        map.values().filter_map(Value::as_str).map(|name| dir.join(name)).collect()
    } else {
        std::fs::read_dir(dir)
            .map_err(|e| RuntimeError::Load(format!("cannot list {}: {e}", dir.display())))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "safetensors"))
            .collect()
    };
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(RuntimeError::Load(format!("no .safetensors files in {}", dir.display())));
    }
    Ok(files)
}

/// Reads every weight into memory, on the CPU as stored; the decoder converts each to the
/// device and dtype it runs in.
fn load_weights(dir: &Path) -> Result<HashMap<String, Tensor>, RuntimeError> {
    let mut tensors = HashMap::new();
    for file in weight_files(dir)? {
        let shard = candle_core::safetensors::load(&file, &Device::Cpu)
            .map_err(|e| RuntimeError::Load(format!("cannot read {}: {e}", file.display())))?;
        tensors.extend(shard);
    }
    Ok(tensors)
}

fn read_json(path: &Path) -> Result<Value, RuntimeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RuntimeError::Load(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| RuntimeError::Load(format!("{} is not valid JSON: {e}", path.display())))
}

/// A JSON file that may be absent (an empty object then).
fn read_optional_json(path: &Path) -> Result<Value, RuntimeError> {
    if path.is_file() { read_json(path) } else { Ok(Value::Object(Default::default())) }
}

fn usize_field(config: &Value, name: &str) -> Result<usize, RuntimeError> {
    config
        .get(name)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| RuntimeError::Load(format!("config.json has no {name}")))
}

/// What the engine tells about the model, from its JSON files and tokenizer.
fn model_info(
    dir: &Path,
    config: &Value,
    tokenizer: &Tokenizer,
    architecture: String,
    context_length: usize,
    max_sequences: usize,
) -> Result<LmInfo, RuntimeError> {
    let tokenizer_config = read_optional_json(&dir.join("tokenizer_config.json"))?;
    let generation_config = read_optional_json(&dir.join("generation_config.json"))?;
    let bos_token = token_text(tokenizer_config.get("bos_token"));
    let eos_token = token_text(tokenizer_config.get("eos_token"));
    let mut listed = token_ids(generation_config.get("eos_token_id"));
    if listed.is_empty() {
        listed = token_ids(config.get("eos_token_id"));
    }
    listed.extend(eos_token.as_deref().and_then(|t| tokenizer.token_to_id(t)));
    let mut eos_tokens = Vec::new();
    for id in listed {
        if !eos_tokens.contains(&id) {
            eos_tokens.push(id);
        }
    }
    let add_bos = match tokenizer_config.get("add_bos_token").and_then(Value::as_bool) {
        Some(add) => add,
        None => adds_bos(tokenizer, bos_token.as_deref()),
    };
    Ok(LmInfo {
        engine: "candle",
        architecture,
        context_length,
        max_sequences,
        vocab_size: usize_field(config, "vocab_size")?,
        eos_tokens,
        chat_template: chat_template(dir, &tokenizer_config)?,
        bos_token,
        eos_token,
        add_bos,
    })
}

/// Whether the tokenizer's post-processor puts the BOS token first.
fn adds_bos(tokenizer: &Tokenizer, bos_token: Option<&str>) -> bool {
    let Some(bos) = bos_token.and_then(|t| tokenizer.token_to_id(t)) else { return false };
    tokenizer.encode_fast("", true).is_ok_and(|e| e.get_ids().first() == Some(&bos))
}

/// A special token's text in tokenizer_config.json: a string or an object with `content`.
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Object(object) => object.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// Token ids written as a number or a list of numbers.
fn token_ids(value: Option<&Value>) -> Vec<u32> {
    let id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(id).collect(),
        Some(other) => id(other).into_iter().collect(),
        None => Vec::new(),
    }
}

/// The chat template: tokenizer_config.json's `chat_template` (a string, or named templates of
/// which `default` is taken), else `chat_template.jinja`, else `chat_template.json`.
fn chat_template(dir: &Path, tokenizer_config: &Value) -> Result<Option<String>, RuntimeError> {
    match tokenizer_config.get("chat_template") {
        Some(Value::String(template)) => return Ok(Some(template.clone())),
        Some(Value::Array(named)) => {
            let template = |item: &Value| item.get("template").and_then(Value::as_str).map(str::to_owned);
            let default = named.iter().find(|item| item.get("name").and_then(Value::as_str) == Some("default"));
            return Ok(default.or(named.first()).and_then(template));
        }
        _ => {}
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| RuntimeError::Load(format!("cannot read {}: {e}", jinja.display())));
    }
    let json = read_optional_json(&dir.join("chat_template.json"))?;
    Ok(json.get("chat_template").and_then(Value::as_str).map(str::to_owned))
}

/// How a tokenizer writes bytes in its token strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceStyle {
    /// GPT-2 byte-level BPE: each byte is one printable character.
    ByteLevel,
    /// SentencePiece: `▁` for a space, `<0xNN>` for a byte the vocabulary lacks.
    SentencePiece,
    /// The token string is the text.
    Plain,
}

impl PieceStyle {
    /// Reads the style from tokenizer.json: its decoder (or pre-tokenizer) and model.
    fn of(tokenizer_json: &Value) -> PieceStyle {
        let decoder = tokenizer_json.get("decoder").unwrap_or(&Value::Null);
        let pre_tokenizer = tokenizer_json.get("pre_tokenizer").unwrap_or(&Value::Null);
        let byte_fallback = tokenizer_json.pointer("/model/byte_fallback").and_then(Value::as_bool) == Some(true);
        if has_type(decoder, "ByteLevel") || (decoder.is_null() && has_type(pre_tokenizer, "ByteLevel")) {
            PieceStyle::ByteLevel
        } else if byte_fallback || has_type(decoder, "Metaspace") || has_type(decoder, "ByteFallback") {
            PieceStyle::SentencePiece
        } else {
            PieceStyle::Plain
        }
    }

    /// The bytes a vocabulary token stands for.
    fn bytes(self, token: &str) -> Vec<u8> {
        match self {
            PieceStyle::ByteLevel => {
                let mut bytes = Vec::with_capacity(token.len());
                for c in token.chars() {
                    match gpt2_byte(c) {
                        Some(b) => bytes.push(b),
                        None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
                bytes
            }
            PieceStyle::SentencePiece => match sentencepiece_byte(token) {
                Some(b) => vec![b],
                None => token.replace('\u{2581}', " ").into_bytes(),
            },
            PieceStyle::Plain => token.as_bytes().to_vec(),
        }
    }
}

/// Whether a tokenizer.json component (or one inside a `Sequence`) has this `type`.
fn has_type(component: &Value, kind: &str) -> bool {
    match component {
        Value::Object(object) => {
            object.get("type").and_then(Value::as_str) == Some(kind)
                || object.values().any(|v| matches!(v, Value::Array(_)) && has_type(v, kind))
        }
        Value::Array(items) => items.iter().any(|item| has_type(item, kind)),
        _ => false,
    }
}

/// The byte behind a character of GPT-2's byte-to-unicode table: printable Latin-1 bytes stand
/// for themselves, the other 68 bytes are U+0100.. in byte order.
fn gpt2_byte(c: char) -> Option<u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let code = u32::from(c);
    if let Ok(b) = u8::try_from(code) {
        return printable(b).then_some(b);
    }
    let index = usize::try_from(code.checked_sub(256)?).ok()?;
    (0..=255u8).filter(|&b| !printable(b)).nth(index)
}

/// The byte of a SentencePiece byte-fallback token (`<0x0A>`).
fn sentencepiece_byte(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() == 2 { u8::from_str_radix(hex, 16).ok() } else { None }
}

/// The bytes of every token id below `vocab_size`: special tokens render empty, other added
/// tokens as their text, vocabulary tokens decoded according to the tokenizer's style.
fn token_pieces(tokenizer: &Tokenizer, tokenizer_json: &Value, vocab_size: usize) -> Vec<Vec<u8>> {
    let style = PieceStyle::of(tokenizer_json);
    let added = tokenizer.get_added_tokens_decoder();
    (0..vocab_size)
        .map(|id| {
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            match added.get(&id) {
                Some(token) if token.special => Vec::new(),
                Some(token) => token.content.as_bytes().to_vec(),
                None => tokenizer.id_to_token(id).map(|t| style.bytes(&t)).unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_table_round_trips_every_byte() {
        let mut seen = [false; 256];
        for code in 0..400u32 {
            if let Some(b) = char::from_u32(code).and_then(gpt2_byte) {
                assert!(!seen[b as usize], "byte {b} twice");
                seen[b as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(gpt2_byte('Ġ'), Some(b' '));
        assert_eq!(gpt2_byte('Ċ'), Some(b'\n'));
        assert_eq!(gpt2_byte('a'), Some(b'a'));
    }

    #[test]
    fn sentencepiece_pieces() {
        assert_eq!(PieceStyle::SentencePiece.bytes("<0x0A>"), b"\n");
        assert_eq!(PieceStyle::SentencePiece.bytes("\u{2581}Paris"), b" Paris");
        assert_eq!(PieceStyle::ByteLevel.bytes("ĠParis"), b" Paris");
    }

    #[test]
    fn token_fields_take_both_forms() {
        let v: Value = serde_json::json!({"a": "<s>", "b": {"content": "</s>"}, "c": 2, "d": [2, 7]});
        assert_eq!(token_text(v.get("a")).as_deref(), Some("<s>"));
        assert_eq!(token_text(v.get("b")).as_deref(), Some("</s>"));
        assert_eq!(token_ids(v.get("c")), [2]);
        assert_eq!(token_ids(v.get("d")), [2, 7]);
    }

    #[test]
    fn architecture_from_model_type_or_class() {
        let arch = |v: Value| architecture(&v);
        assert_eq!(arch(serde_json::json!({"model_type": "qwen2"})).ok().as_deref(), Some("qwen2"));
        assert_eq!(arch(serde_json::json!({"architectures": ["MistralForCausalLM"]})).ok().as_deref(), Some("mistral"));
        assert!(
            matches!(arch(serde_json::json!({"model_type": "gpt2"})), Err(RuntimeError::Load(m)) if m.contains("gpt2") && m.contains("qwen3"))
        );
    }
}
