//! Text generation: causal language models that stream tokens, many sequences decoding
//! together (continuous batching).
//!
//! - [`engine`]: the [`LmEngine`] trait one model implementation provides (tokenize, run a
//!   batch of sequence chunks, hand back logits), and what it tells about itself ([`LmInfo`]).
//! - [`llama_cpp`]: GGUF files through llama.cpp (the `llama-cpp-2` crate).
//! - [`candle_lm`]: safetensors Llama / Qwen2 / Qwen3 / Mistral weights through HF candle; its
//!   network is `decoder` (all slots' chunks in one forward pass).
//! - [`template`]: chat templates from the model's files, rendered with minijinja.
//! - [`sampler`]: temperature, top-k, top-p, penalties and seeds over one logits row.
//! - [`structured`]: decoding constrained to JSON or a JSON Schema (`response_format`, forced
//!   tool calls), a regex, choices or a grammar, through llguidance; [`gbnf`] translates
//!   llama.cpp's GBNF grammars to llguidance's Lark.
//! - [`text`]: turning token pieces back into UTF-8 text, and stop sequences.
//! - [`scheduler`]: a [`GenerationReplica`]: one engine on its own thread; requests join and
//!   leave the running batch between decode steps; tokens stream back through a channel.
//!
//! Everything blocking runs on the replica's thread; the async side only sends requests and
//! reads events.

pub mod candle_lm;
mod decoder;
pub mod engine;
pub mod gbnf;
pub mod llama_cpp;
pub mod sampler;
pub mod scheduler;
pub mod structured;
pub mod template;
pub mod text;

pub use engine::{LmEngine, LmInfo, SeqChunk};

use serde::Serialize;

/// What to generate from.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Plain text, tokenized as is (the `completions` API).
    Text(String),
    /// Messages rendered through the model's chat template with the generation prompt added,
    /// and the tools the model may call (OpenAI's `tools` list, passed to the template).
    Chat { messages: Vec<template::ChatMessage>, tools: Vec<serde_json::Value> },
    /// Token ids, fed as they are (no BOS added), as evaluation harnesses send them.
    Tokens(Vec<u32>),
}

impl Prompt {
    /// A conversation without tools.
    pub fn chat(messages: Vec<template::ChatMessage>) -> Prompt {
        Prompt::Chat { messages, tools: Vec::new() }
    }
}

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub sampling: sampler::SamplingParams,
    /// The most tokens to generate; `None`: until end of sequence or the context is full.
    pub max_tokens: Option<usize>,
    /// Text that ends generation; it is not part of the output.
    pub stop: Vec<String>,
    /// Report each generated token's log-probability, with this many of the most likely
    /// tokens at its position (0..=[`MAX_TOP_LOGPROBS`]); `None`: none.
    pub logprobs: Option<usize>,
    /// Send the prompt's tokens back ([`GenerationEvent::Prompt`]) once it is read, as the
    /// completions API's `echo` needs.
    pub echo: bool,
    /// With `echo`: each prompt token's log-probability given the tokens before it, with this
    /// many of the most likely tokens at its position (0..=[`MAX_TOP_LOGPROBS`]). The engine
    /// then computes the logits of every prompt position, not only the last.
    pub prompt_logprobs: Option<usize>,
    /// Constrain the output to JSON: one object, or a value matching a schema.
    pub format: Option<structured::OutputFormat>,
}

/// The most alternatives [`GenerateRequest::logprobs`] may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A token and its log-probability under the model's own distribution at that position: the
/// softmax of the raw logits, before penalties, temperature, top-k or top-p (vLLM's default,
/// `raw_logprobs`).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    /// The token's bytes (possibly part of a UTF-8 character).
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// A generated token's log-probability and the most likely tokens at its position, most
/// likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct Logprobs {
    pub chosen: TokenLogprob,
    pub top: Vec<TokenLogprob>,
}

/// A prompt token as [`GenerationEvent::Prompt`] reports it: its log-probabilities when they
/// were asked for, except for the first token, which has nothing before it.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptToken {
    pub token: u32,
    pub bytes: Vec<u8>,
    pub logprobs: Option<Logprobs>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-sequence token or a stop sequence.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// What a running request reports, in order: `Started`, `Prompt` when echo was asked for, any
/// number of `Delta`s, then `Finished` (or `Failed` at any point, after which nothing follows).
#[derive(Debug)]
pub enum GenerationEvent {
    /// The prompt was accepted (it fits the context); its length in tokens.
    Started {
        prompt_tokens: usize,
    },
    /// The prompt's tokens, once read ([`GenerateRequest::echo`]).
    Prompt(Vec<PromptToken>),
    /// New text, and how many tokens it took (text may lag tokens: an incomplete UTF-8
    /// sequence or a possible stop-sequence prefix is held back). With
    /// [`GenerateRequest::logprobs`], the log-probabilities of the tokens generated since the
    /// last delta, an end-of-sequence token excepted unless the prompt is echoed (a last delta
    /// may carry only these).
    Delta {
        text: String,
        tokens: usize,
        logprobs: Vec<Logprobs>,
    },
    Finished {
        reason: FinishReason,
        usage: Usage,
    },
    /// Invalid request (prompt too long for the context, template refused the messages…),
    /// timeout, or engine failure.
    Failed(crate::ReplicaError),
}
