//! The [`LmEngine`] trait: one loaded causal language model with room for several sequences.
//!
//! The scheduler owns the sequences; an engine only keeps each slot's attention cache. Slots
//! are numbered `0..info().max_sequences`. A step feeds each listed slot some tokens (a whole
//! prompt when a request joins, one token per decode step after that) and returns, for each
//! chunk in order, the logits after its last token (after every token when the chunk asks for
//! `all_logits`: the prompt's log-probabilities need them). Both engines run all chunks of a step in
//! one batched forward pass (llama.cpp's `decode`, candle's `decoder`), so each weight is read
//! once per step however many sequences decode.

use crate::RuntimeError;

/// What an engine tells about its model.
#[derive(Debug, Clone, PartialEq)]
pub struct LmInfo {
    /// `llama.cpp`, `candle`, … for logs and metadata.
    pub engine: &'static str,
    /// The architecture read from the files (`llama`, `qwen2`, …).
    pub architecture: String,
    /// The most tokens (prompt + generated) one sequence may hold.
    pub context_length: usize,
    /// How many sequences may decode at once (slots).
    pub max_sequences: usize,
    pub vocab_size: usize,
    /// Tokens that end generation (end of sequence, end of turn).
    pub eos_tokens: Vec<u32>,
    /// The chat template from the model's files, if it has one.
    pub chat_template: Option<String>,
    /// The text of the beginning/end-of-sequence tokens, for templates (`bos_token`…).
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Whether tokenizing a prompt should add the BOS token (unless the template did).
    pub add_bos: bool,
}

/// Tokens to feed one slot, starting at position `pos` of that sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqChunk<'a> {
    pub slot: usize,
    pub pos: usize,
    pub tokens: &'a [u32],
    /// Return the logits after every token of the chunk (`tokens.len()` rows, one after the
    /// other), not only after the last.
    pub all_logits: bool,
}

/// A loaded causal LM. Created on, and used from, its replica's own thread.
pub trait LmEngine: Send {
    fn info(&self) -> &LmInfo;

    /// Text to token ids. `add_special`: add BOS (when the model wants one) and parse special
    /// tokens written as text (`<|im_start|>`), as a rendered chat template needs.
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, RuntimeError>;

    /// The bytes of one token (possibly a partial UTF-8 sequence). Special tokens that end a
    /// turn may render as empty.
    fn token_bytes(&self, token: u32) -> Vec<u8>;

    /// Feeds each chunk to its slot and returns the logits (`vocab_size` floats) after each
    /// chunk's last token, in the order of `chunks`; for a chunk with `all_logits`, the rows
    /// after each of its tokens in one `Vec` (`tokens.len() × vocab_size` floats).
    fn step(&mut self, chunks: &[SeqChunk<'_>]) -> Result<Vec<Vec<f32>>, RuntimeError>;

    /// Forgets a slot's cache (its sequence finished or was cancelled).
    fn release(&mut self, slot: usize);
}
