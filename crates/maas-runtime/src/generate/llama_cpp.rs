//! GGUF causal LMs through llama.cpp (the `llama-cpp-2` crate).
//!
//! One llama.cpp context holds every slot: `n_seq_max = max_sequences`, one sequence id per
//! slot, and a KV cache that is not unified, so each slot owns `context_length` cells and
//! attends only to them. A [`LmEngine::step`] builds one `LlamaBatch` from all chunks (each
//! token at its position with its slot's sequence id; logits only after each chunk's last
//! token) and decodes it at once, in several decodes when it holds more than `n_batch` tokens.
//!
//! With a KV cache per slot, llama.cpp puts sequences in one micro-batch only when their ids are
//! consecutive and they come in increasing order, so a step feeds its chunks sorted by slot
//! (and the scheduler fills the lowest free slot first).
//!
//! A llama.cpp context borrows its model, and this crate forbids `unsafe`, so the context
//! lives on a decoder thread of its own that borrows the model from its stack; the engine
//! sends it steps over a channel and waits for the logits (a round trip of microseconds next
//! to a decode of milliseconds). Tokenizing reads the shared model directly. Dropping the
//! engine stops that thread and frees the context, then the model.
//!
//! llama.cpp's own logging goes to `tracing` (target `llama-cpp-2`), not to stderr.

use std::fmt;
use std::num::NonZeroU32;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LogOptions, send_logs_to_tracing};

use super::engine::{LmEngine, LmInfo, SeqChunk};
use crate::RuntimeError;

/// The longest context a slot gets unless configured: the model's trained context, at most this.
const DEFAULT_CONTEXT: usize = 4096;
/// The most tokens one llama.cpp decode takes, and the micro-batch it computes at once (larger
/// batches would only be split again); a step with more tokens takes several decodes.
pub const MAX_BATCH: usize = 512;

/// How a GGUF model is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaCppConfig {
    /// Threads for decoding and prompt processing; 0 = all cores.
    pub threads: usize,
    /// Sequences that may decode at once (slots), each with its own KV cache.
    pub max_sequences: usize,
    /// The most tokens one sequence may hold; default: the model's trained context, at most 4096.
    pub context_length: Option<usize>,
}

impl Default for LlamaCppConfig {
    fn default() -> Self {
        Self { threads: 0, max_sequences: 8, context_length: None }
    }
}

/// The llama.cpp backend: initialised once per process, logs sent to `tracing` first.
fn backend() -> Result<&'static LlamaBackend, RuntimeError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| RuntimeError::Load(format!("cannot initialise llama.cpp: {e}")))
}

/// A GGUF model loaded with llama.cpp; see the module docs.
pub struct LlamaCppEngine {
    info: LmInfo,
    model: Arc<LlamaModel>,
    /// `None` once dropping: closing it ends the decoder thread.
    commands: Option<Sender<Command>>,
    replies: Receiver<Reply>,
    decoder: Option<JoinHandle<()>>,
}

impl fmt::Debug for LlamaCppEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlamaCppEngine").field("info", &self.info).finish_non_exhaustive()
    }
}

/// One chunk of a step, owned so that it can cross to the decoder thread.
struct OwnedChunk {
    /// Its place in the step's chunks (and logits).
    index: usize,
    slot: i32,
    pos: i32,
    tokens: Vec<LlamaToken>,
    all_logits: bool,
}

enum Command {
    Step(Vec<OwnedChunk>),
    Release(i32),
}

enum Reply {
    Logits(Result<Vec<Vec<f32>>, RuntimeError>),
    /// The decoder panicked (the payload); its thread has ended.
    Panicked(Box<dyn std::any::Any + Send>),
}

impl LlamaCppEngine {
    /// Loads the GGUF file at `path` and creates a context with `config.max_sequences` slots.
    pub fn load(path: &Path, config: &LlamaCppConfig) -> Result<LlamaCppEngine, RuntimeError> {
        if config.max_sequences == 0 {
            return Err(RuntimeError::Load("max_sequences must be at least 1".into()));
        }
        if !path.is_file() {
            return Err(RuntimeError::Load(format!("{} is not a file", path.display())));
        }
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| RuntimeError::Load(format!("llama.cpp cannot load {}: {e}", path.display())))?;
        let model = Arc::new(model);
        let trained = usize::try_from(model.n_ctx_train()).unwrap_or(usize::MAX);
        let context_length = config.context_length.unwrap_or(trained.min(DEFAULT_CONTEXT));
        if context_length < 2 {
            return Err(RuntimeError::Load(format!("context_length {context_length} is too small")));
        }
        let params = context_params(context_length, config)?;
        let info = model_info(&model, context_length, config.max_sequences)?;
        let (commands, decoder_commands) = mpsc::channel();
        let (decoder_replies, replies) = mpsc::channel();
        let (ready_sender, ready) = mpsc::sync_channel(1);
        let decoder_model = Arc::clone(&model);
        let decoder = std::thread::Builder::new()
            .name("llama-cpp-decoder".into())
            .spawn(move || decode_loop(&decoder_model, params, ready_sender, decoder_commands, decoder_replies))
            .map_err(|e| RuntimeError::Load(format!("cannot start the llama.cpp decoder thread: {e}")))?;
        let engine = LlamaCppEngine { info, model, commands: Some(commands), replies, decoder: Some(decoder) };
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(RuntimeError::Load("the llama.cpp decoder thread died while starting".into())),
        }
        tracing::debug!(
            architecture = %engine.info.architecture,
            context_length,
            max_sequences = config.max_sequences,
            "llama.cpp model loaded"
        );
        Ok(engine)
    }

    fn n_vocab(&self) -> i32 {
        self.model.n_vocab()
    }

    /// Checks a step before it reaches llama.cpp (which aborts the process on some bad input).
    fn check_chunks(&self, chunks: &[SeqChunk<'_>]) -> Result<Vec<OwnedChunk>, RuntimeError> {
        let n_vocab = self.n_vocab();
        let mut slots = vec![false; self.info.max_sequences];
        let mut owned = chunks
            .iter()
            .enumerate()
            .map(|(index, chunk)| {
                let seen = slots.get_mut(chunk.slot).ok_or_else(|| {
                    RuntimeError::Inference(format!(
                        "slot {} does not exist ({} slots)",
                        chunk.slot, self.info.max_sequences
                    ))
                })?;
                if std::mem::replace(seen, true) {
                    return Err(RuntimeError::Inference(format!("slot {} appears twice in one step", chunk.slot)));
                }
                if chunk.tokens.is_empty() {
                    return Err(RuntimeError::Inference(format!("empty chunk for slot {}", chunk.slot)));
                }
                let end = chunk.pos.saturating_add(chunk.tokens.len());
                if end > self.info.context_length {
                    return Err(RuntimeError::Inference(format!(
                        "slot {} would hold {end} tokens; its context holds {}",
                        chunk.slot, self.info.context_length
                    )));
                }
                let tokens = chunk
                    .tokens
                    .iter()
                    .map(|&t| match i32::try_from(t) {
                        Ok(id) if id < n_vocab => Ok(LlamaToken::new(id)),
                        _ => Err(RuntimeError::Inference(format!("token {t} is outside the vocabulary"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(OwnedChunk {
                    index,
                    slot: i32::try_from(chunk.slot).unwrap_or(i32::MAX),
                    pos: i32::try_from(chunk.pos).unwrap_or(i32::MAX),
                    tokens,
                    all_logits: chunk.all_logits,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Consecutive slots in increasing order share micro-batches (see the module docs).
        owned.sort_unstable_by_key(|chunk| chunk.slot);
        Ok(owned)
    }

    /// The decoder thread has gone (it panicked earlier, or could not be reached).
    fn gone() -> RuntimeError {
        RuntimeError::Inference("the llama.cpp decoder thread has stopped".into())
    }
}

impl LmEngine for LlamaCppEngine {
    fn info(&self) -> &LmInfo {
        &self.info
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, RuntimeError> {
        // llama.cpp counts bytes in an i32 (and panics beyond); halved for its token buffer.
        if text.len() > (i32::MAX / 2) as usize {
            return Err(RuntimeError::InvalidInput(format!("the text is too long ({} bytes)", text.len())));
        }
        let tokens = self.model.vocab().tokenize(text.as_bytes(), add_special, add_special);
        Ok(tokens.into_iter().filter_map(|t| u32::try_from(t.0).ok()).collect())
    }

    fn token_bytes(&self, token: u32) -> Vec<u8> {
        match i32::try_from(token) {
            // `special = false`: control tokens (`<|im_end|>`) render as nothing.
            Ok(id) if id < self.n_vocab() => self.model.vocab().token_to_piece(LlamaToken::new(id), false, None),
            _ => Vec::new(),
        }
    }

    fn step(&mut self, chunks: &[SeqChunk<'_>]) -> Result<Vec<Vec<f32>>, RuntimeError> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let owned = self.check_chunks(chunks)?;
        let commands = self.commands.as_ref().ok_or_else(Self::gone)?;
        commands.send(Command::Step(owned)).map_err(|_| Self::gone())?;
        match self.replies.recv() {
            Ok(Reply::Logits(result)) => result,
            // Re-raised here, so that the replica that drives this engine sees the panic.
            Ok(Reply::Panicked(payload)) => panic::resume_unwind(payload),
            Err(_) => Err(Self::gone()),
        }
    }

    fn release(&mut self, slot: usize) {
        if let (Some(commands), Ok(slot)) = (self.commands.as_ref(), i32::try_from(slot)) {
            // Ordered with the steps on the same channel; nothing to wait for.
            let _ = commands.send(Command::Release(slot));
        }
    }
}

impl Drop for LlamaCppEngine {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(decoder) = self.decoder.take() {
            // The context is freed there before the model (dropped with `self`).
            let _ = decoder.join();
        }
    }
}

/// The context parameters: every slot's cells, not unified; batches as large as allowed.
fn context_params(context_length: usize, config: &LlamaCppConfig) -> Result<LlamaContextParams, RuntimeError> {
    let total = context_length
        .checked_mul(config.max_sequences)
        .and_then(|n| u32::try_from(n).ok())
        .and_then(NonZeroU32::new)
        .ok_or_else(|| {
            RuntimeError::Load(format!(
                "{} sequences of {context_length} tokens do not fit one llama.cpp context",
                config.max_sequences
            ))
        })?;
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let threads = i32::try_from(threads).unwrap_or(i32::MAX);
    let n_batch = MAX_BATCH.min(total.get() as usize) as u32;
    let n_seq_max = u32::try_from(config.max_sequences).unwrap_or(u32::MAX);
    Ok(LlamaContextParams::default()
        .with_n_ctx(Some(total))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_seq_max(n_seq_max)
        .with_kv_unified(false)
        .with_n_threads(threads)
        .with_n_threads_batch(threads))
}

/// What the engine tells about the model, from its metadata and vocabulary.
fn model_info(model: &LlamaModel, context_length: usize, max_sequences: usize) -> Result<LmInfo, RuntimeError> {
    let vocab = model.vocab();
    let n_vocab = model.n_vocab();
    let vocab_size =
        usize::try_from(n_vocab).map_err(|_| RuntimeError::Load(format!("the model has {n_vocab} tokens")))?;
    let eos_tokens: Vec<u32> =
        (0..n_vocab).filter(|&id| vocab.is_eog(LlamaToken::new(id))).filter_map(|id| u32::try_from(id).ok()).collect();
    // Out-of-range ids (LLAMA_TOKEN_NULL = -1 when the model has none) must not reach llama.cpp.
    let token_text = |token: LlamaToken| {
        (0..n_vocab)
            .contains(&token.0)
            .then(|| vocab.text(token).map(|text| text.to_string_lossy().into_owned()))
            .flatten()
    };
    let chat_template = model
        .meta_val_str("tokenizer.chat_template")
        .ok()
        .or_else(|| model.chat_template(None).ok().and_then(|t| t.to_string().ok()))
        .filter(|t| !t.trim().is_empty());
    Ok(LmInfo {
        engine: "llama.cpp",
        architecture: model.meta_val_str("general.architecture").unwrap_or_else(|_| "unknown".into()),
        context_length,
        max_sequences,
        vocab_size,
        eos_tokens,
        chat_template,
        bos_token: token_text(vocab.bos()),
        eos_token: token_text(vocab.eos()),
        add_bos: vocab.should_add_bos(),
    })
}

/// The decoder thread: creates the context (borrowing the model) and serves steps until the
/// engine is dropped or a decode panics.
fn decode_loop(
    model: &LlamaModel,
    params: LlamaContextParams,
    ready: SyncSender<Result<(), RuntimeError>>,
    commands: Receiver<Command>,
    replies: Sender<Reply>,
) {
    let created = backend().and_then(|backend| {
        model
            .new_context(backend, params)
            .map_err(|e| RuntimeError::Load(format!("llama.cpp cannot create a context: {e}")))
    });
    let mut decoder = match created {
        Ok(context) => Decoder::new(context),
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Ok(command) = commands.recv() {
        match command {
            Command::Step(chunks) => match panic::catch_unwind(AssertUnwindSafe(|| decoder.step(&chunks))) {
                Ok(result) => {
                    let _ = replies.send(Reply::Logits(result));
                }
                Err(payload) => {
                    let _ = replies.send(Reply::Panicked(payload));
                    return;
                }
            },
            Command::Release(slot) => decoder.release(slot),
        }
    }
}

/// The context and a reusable batch, on the decoder thread.
struct Decoder<'m> {
    context: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
}

impl<'m> Decoder<'m> {
    fn new(context: LlamaContext<'m>) -> Self {
        let n_batch = (context.n_batch() as usize).max(1);
        Decoder { batch: LlamaBatch::new(n_batch, 1), context, n_batch }
    }

    /// Feeds every chunk, `n_batch` tokens per decode, and copies out each chunk's logits (in
    /// the order of their `index`): its last token's row, or every token's with `all_logits`.
    fn step(&mut self, chunks: &[OwnedChunk]) -> Result<Vec<Vec<f32>>, RuntimeError> {
        let mut logits: Vec<Vec<f32>> = vec![Vec::new(); chunks.len()];
        // (index in the batch, chunk index) of the rows to copy after the next decode.
        let mut wanted: Vec<(i32, usize)> = Vec::with_capacity(chunks.len());
        self.batch.clear();
        for chunk in chunks {
            let last = chunk.tokens.len().saturating_sub(1);
            for (offset, (&token, pos)) in chunk.tokens.iter().zip(chunk.pos..).enumerate() {
                if self.batch.n_tokens() as usize >= self.n_batch {
                    self.decode(&mut wanted, &mut logits)?;
                }
                let output = chunk.all_logits || offset == last;
                self.batch
                    .add(token, pos, &[chunk.slot], output)
                    .map_err(|e| RuntimeError::Inference(format!("building the batch failed: {e}")))?;
                if output {
                    wanted.push((self.batch.n_tokens() - 1, chunk.index));
                }
            }
        }
        if self.batch.n_tokens() > 0 {
            self.decode(&mut wanted, &mut logits)?;
        }
        Ok(logits)
    }

    /// Decodes the batch, copies the wanted logits rows and empties the batch.
    fn decode(&mut self, wanted: &mut Vec<(i32, usize)>, logits: &mut [Vec<f32>]) -> Result<(), RuntimeError> {
        self.context.decode(&mut self.batch).map_err(|e| RuntimeError::Inference(format!("llama.cpp decode: {e}")))?;
        for (row, chunk) in wanted.drain(..) {
            if let Some(out) = logits.get_mut(chunk) {
                // In token order: a chunk's rows may span several decodes.
                out.extend_from_slice(self.context.get_logits_ith(row));
            }
        }
        self.batch.clear();
        Ok(())
    }

    /// Forgets a slot's cells.
    fn release(&mut self, slot: i32) {
        let Ok(slot) = u32::try_from(slot) else { return };
        if let Err(e) = self.context.clear_kv_cache_seq(Some(slot), None, None) {
            tracing::warn!(slot, error = %e, "clearing a llama.cpp sequence failed");
        }
    }
}
