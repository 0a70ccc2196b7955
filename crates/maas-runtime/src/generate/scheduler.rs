//! A generation replica: one engine on its own thread, continuous batching, streamed events.
//!
//! The async side ([`GenerationReplica::generate`]) only validates, queues and hands back an
//! event receiver; the worker `std::thread` loads the engine and runs the loop:
//!
//! - idle, it blocks on the queue; busy, it takes what is queued between steps into its own
//!   waiting line, so that waiting requests time out ([`GenerationConfig::queue_timeout`]) or
//!   are dropped (receiver gone) promptly even while every slot is taken;
//! - whenever a slot is free, the oldest waiting request joins: its prompt is rendered (chat
//!   template) and tokenized, checked against the context, and fed to the engine over the next
//!   steps, at most [`PREFILL_BUDGET`] prompt tokens per step so that running streams keep
//!   decoding while a long prompt is read;
//! - each step is one [`LmEngine::step`] over every running sequence; each sequence samples
//!   its next token with its own sampler, turns it into text (holding back partial characters
//!   and stop-sequence prefixes) and streams it; a sequence that ends or whose receiver is
//!   dropped leaves the batch and frees its slot at once.
//!
//! An engine error fails the sequences of that step; the replica keeps serving. A panic in the
//! engine marks the replica failed, like [`crate::Replica`] does.

use std::collections::{BTreeSet, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::engine::{LmEngine, LmInfo, SeqChunk};
use super::sampler::{Sampler, log_probabilities};
use super::structured::{Grammars, OutputConstraint, OutputFormat};
use super::template::ChatTemplate;
use super::text::TextStream;
use super::{
    FinishReason, GenerateRequest, GenerationEvent, Logprobs, MAX_TOP_LOGPROBS, Prompt, PromptToken, TokenLogprob,
    Usage,
};
use crate::lifecycle::Lifecycle;
use crate::{ReplicaError, ReplicaState, RuntimeError};

/// Loads an engine; called once, on the replica's worker thread.
pub type LmLoader = Box<dyn FnOnce() -> Result<Box<dyn LmEngine>, RuntimeError> + Send>;

/// The most prompt tokens fed in one step (over all joining requests).
pub const PREFILL_BUDGET: usize = 512;

/// The most prompt tokens of one sequence fed in one step when their log-probabilities are
/// asked for: every position's logits are kept (`tokens × vocabulary` floats).
pub const PROMPT_LOGPROBS_CHUNK: usize = 64;

/// How a generation replica queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationConfig {
    /// Requests that may wait for a slot (at least 1); more are refused as overloaded.
    pub queue_capacity: usize,
    /// How long a request may wait for a slot before it fails with [`ReplicaError::Timeout`].
    pub queue_timeout: Duration,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self { queue_capacity: 64, queue_timeout: Duration::from_secs(60) }
    }
}

/// A queued request and where its events go.
struct Job {
    request: GenerateRequest,
    events: UnboundedSender<GenerationEvent>,
    queued_at: Instant,
}

#[derive(Debug)]
struct Shared {
    life: Lifecycle,
    info: OnceLock<LmInfo>,
    /// Requests queued or waiting for a slot.
    depth: AtomicUsize,
    /// Sequences holding a slot.
    running: AtomicUsize,
    /// Moving average of how long a request holds its slot, in µs (for `retry_after`).
    request_micros: AtomicU64,
}

impl Shared {
    fn record_request(&self, elapsed: Duration) {
        let sample = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let old = self.request_micros.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { (old.saturating_mul(4).saturating_add(sample)) / 5 };
        self.request_micros.store(new, Ordering::Relaxed);
    }
}

/// A causal LM replica with continuous batching; see the module docs. Dropping it stops it.
#[derive(Debug)]
pub struct GenerationReplica {
    config: GenerationConfig,
    shared: Arc<Shared>,
    /// `None` once stopped: dropping the only sender lets the worker's `recv` end.
    sender: Mutex<Option<Sender<Job>>>,
}

impl GenerationReplica {
    /// Starts the worker thread, which loads the engine through `loader` and then serves.
    /// Returns at once, in [`ReplicaState::Loading`].
    pub fn start(name: String, loader: LmLoader, config: GenerationConfig) -> GenerationReplica {
        let shared = Arc::new(Shared {
            life: Lifecycle::new(name.clone()),
            info: OnceLock::new(),
            depth: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            request_micros: AtomicU64::new(0),
        });
        let (sender, receiver) = mpsc::channel();
        let worker = Worker { shared: Arc::clone(&shared), config: config.clone(), receiver };
        let spawned = std::thread::Builder::new().name(format!("generate-{name}")).spawn(move || worker.run(loader));
        if let Err(e) = spawned {
            shared.life.fail_to_start(&e);
        }
        GenerationReplica { config, shared, sender: Mutex::new(Some(sender)) }
    }

    /// The replica's name (used in messages).
    pub fn name(&self) -> &str {
        &self.shared.life.name
    }

    pub fn state(&self) -> ReplicaState {
        self.shared.life.state()
    }

    /// Waits until the model is loaded (`Ok`) or failed or stopped (`NotReady` with the reason).
    pub async fn ready(&self) -> Result<(), ReplicaError> {
        self.shared.life.ready().await
    }

    /// What the engine tells about the model, once loaded.
    pub fn info(&self) -> Option<LmInfo> {
        self.shared.info.get().cloned()
    }

    /// Requests waiting for a slot (not counting those running).
    pub fn queue_depth(&self) -> usize {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Sequences holding a slot now (reading their prompt or decoding).
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::Relaxed)
    }

    /// Validates the sampling parameters (`InvalidInput`), queues the request (`Overloaded`
    /// with a retry hint when the queue is full; `NotReady` unless ready) and returns its event
    /// stream. Dropping the receiver cancels the request: the worker notices before its next
    /// step and frees the slot.
    pub fn generate(&self, request: GenerateRequest) -> Result<UnboundedReceiver<GenerationEvent>, ReplicaError> {
        if !self.shared.life.is_ready() {
            return Err(self.shared.life.not_ready());
        }
        request.sampling.validate()?;
        if request.max_tokens == Some(0) {
            return Err(RuntimeError::InvalidInput("max_tokens must be at least 1".into()).into());
        }
        if [request.logprobs, request.prompt_logprobs].iter().any(|l| l.is_some_and(|top| top > MAX_TOP_LOGPROBS)) {
            let message = format!("at most {MAX_TOP_LOGPROBS} top logprobs per token");
            return Err(RuntimeError::InvalidInput(message).into());
        }
        let (events, receiver) = unbounded_channel();
        let sender = self.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(sender) = sender.as_ref() else {
            return Err(self.shared.life.not_ready());
        };
        // Counted before sending so that the worker's decrement never comes first.
        let depth = self.shared.depth.fetch_add(1, Ordering::Relaxed);
        if depth >= self.config.queue_capacity.max(1) {
            self.shared.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(ReplicaError::Overloaded { retry_after: self.retry_after(depth) });
        }
        if sender.send(Job { request, events, queued_at: Instant::now() }).is_err() {
            self.shared.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(self.shared.life.not_ready());
        }
        Ok(receiver)
    }

    /// An estimate of when a slot frees for a new request: the waiting requests, a slot-full
    /// at a time, each taking the average request's time.
    fn retry_after(&self, depth: usize) -> Duration {
        let slots = self.shared.info.get().map_or(1, |i| i.max_sequences.max(1));
        let rounds = (depth / slots + 1) as u64;
        let micros = self.shared.request_micros.load(Ordering::Relaxed).saturating_mul(rounds);
        Duration::from_micros(micros).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// Stops taking requests. Waiting requests are answered `NotReady`; the step under way
    /// finishes, then running sequences fail with `NotReady`; the worker drops the engine (on
    /// its own thread) and exits. Returns at once; [`GenerationReplica::stopped`] waits.
    pub fn stop(&self) {
        self.shared.life.stop();
        drop(self.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
    }

    /// Waits until the worker has exited and dropped the engine: after
    /// [`GenerationReplica::stop`], a failed load, or a panic in the engine.
    pub async fn stopped(&self) {
        self.shared.life.stopped().await;
    }
}

impl Drop for GenerationReplica {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request holding a slot.
struct Sequence {
    slot: usize,
    events: UnboundedSender<GenerationEvent>,
    sampler: Sampler,
    text: TextStream,
    prompt: Vec<u32>,
    /// Tokens in the engine's cache for this slot (prompt fed so far, then generated ones).
    cached: usize,
    /// The last sampled token, fed at the next step.
    next: Option<u32>,
    max_tokens: Option<usize>,
    /// How many alternatives to report with each token's log-probability, if asked.
    logprobs: Option<usize>,
    /// Whether the prompt's tokens are sent back once read ([`GenerationEvent::Prompt`]).
    echo: bool,
    /// How many alternatives to report with each prompt token's log-probability, if asked;
    /// the prompt tokens scored so far (from the second on: the first has nothing before it).
    prompt_logprobs: Option<usize>,
    prompt_scores: Vec<Logprobs>,
    /// Structured output: what the answer may continue with.
    constraint: Option<OutputConstraint>,
    completion_tokens: usize,
    /// Tokens generated since the last `Delta` sent, and their log-probabilities if asked.
    unsent_tokens: usize,
    unsent_logprobs: Vec<Logprobs>,
    joined_at: Instant,
}

impl Sequence {
    /// The tokens this sequence feeds at the next step, limited by the prefill `budget`.
    fn chunk(&self, budget: &mut usize) -> Option<&[u32]> {
        if let Some(next) = self.next.as_ref() {
            return Some(std::slice::from_ref(next));
        }
        let rest = self.prompt.get(self.cached..)?;
        let cap = if self.prompt_logprobs.is_some() { PROMPT_LOGPROBS_CHUNK } else { usize::MAX };
        let n = rest.len().min(*budget).min(cap);
        *budget -= n;
        (n > 0).then(|| &rest[..n])
    }

    fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.prompt.len(), completion_tokens: self.completion_tokens }
    }

    /// Sends an event; `false` when the receiver is gone.
    fn send(&self, event: GenerationEvent) -> bool {
        self.events.send(event).is_ok()
    }
}

/// What became of a sequence after a step.
enum Outcome {
    /// Still generating.
    Continue,
    /// Done (finished, failed or cancelled): its slot is freed.
    Leave,
}

struct Worker {
    shared: Arc<Shared>,
    config: GenerationConfig,
    receiver: Receiver<Job>,
}

/// The worker's serving state: the engine and who is running or waiting.
struct Serving {
    engine: Box<dyn LmEngine>,
    info: LmInfo,
    /// The model's chat template (or the error that building it gave).
    template: Result<ChatTemplate, RuntimeError>,
    running: Vec<Sequence>,
    /// The vocabulary indexed for structured outputs, made the first time one is asked for.
    grammars: Option<Grammars>,
    /// Taken lowest first, which keeps running slots together (see `llama_cpp`).
    free_slots: BTreeSet<usize>,
    waiting: VecDeque<Job>,
}

impl Worker {
    fn run(self, loader: LmLoader) {
        let name = self.shared.life.name.clone();
        let started = Instant::now();
        match panic::catch_unwind(AssertUnwindSafe(loader)) {
            Ok(Ok(engine)) => {
                let info = engine.info().clone();
                let _ = self.shared.info.set(info.clone());
                tracing::info!(
                    replica = %name,
                    engine = info.engine,
                    architecture = %info.architecture,
                    context_length = info.context_length,
                    max_sequences = info.max_sequences,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "language model loaded"
                );
                let mut serving = Serving::new(engine, info);
                self.shared.life.set_state(ReplicaState::Ready);
                if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| self.serve(&mut serving))) {
                    let reason = format!("the engine panicked: {}", crate::panic_message(panic.as_ref()));
                    tracing::error!(replica = %name, "{reason}");
                    // Failed before anyone hears of it, so that callers see the new state.
                    self.shared.life.set_state(ReplicaState::Failed(reason.clone()));
                    let error = RuntimeError::Inference(reason);
                    serving.fail_all(|| ReplicaError::Runtime(error.clone()), &self.shared);
                }
                serving.fail_all(|| self.shared.life.not_ready(), &self.shared);
                drop(serving);
            }
            Ok(Err(e)) => {
                tracing::warn!(replica = %name, error = %e, "language model failed to load");
                self.shared.life.set_state(ReplicaState::Failed(e.to_string()));
            }
            Err(panic) => {
                let reason = format!("loading panicked: {}", crate::panic_message(panic.as_ref()));
                tracing::error!(replica = %name, "{reason}");
                self.shared.life.set_state(ReplicaState::Failed(reason));
            }
        }
        // Whatever is still queued gets an answer; then the receiver goes with `self`.
        while let Ok(job) = self.receiver.try_recv() {
            self.shared.depth.fetch_sub(1, Ordering::Relaxed);
            let _ = job.events.send(GenerationEvent::Failed(self.shared.life.not_ready()));
        }
        let Worker { shared, receiver, .. } = self;
        drop(receiver);
        shared.life.mark_exited();
    }

    /// Serves until the replica stops (returns) or the engine panics (unwinds).
    fn serve(&self, serving: &mut Serving) {
        loop {
            if self.shared.life.is_stopping() {
                return;
            }
            if serving.running.is_empty() && serving.waiting.is_empty() {
                match self.receiver.recv() {
                    Ok(job) => serving.waiting.push_back(job),
                    Err(_) => return,
                }
            }
            loop {
                match self.receiver.try_recv() {
                    Ok(job) => serving.waiting.push_back(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if serving.running.is_empty() && serving.waiting.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            serving.sweep_waiting(&self.config, &self.shared);
            serving.admit(&self.config, &self.shared);
            serving.drop_cancelled(&self.shared);
            if !serving.running.is_empty() {
                serving.step(&self.shared);
            }
        }
    }
}

impl Serving {
    fn new(engine: Box<dyn LmEngine>, info: LmInfo) -> Self {
        let template = match &info.chat_template {
            Some(source) => ChatTemplate::new(source, info.bos_token.as_deref(), info.eos_token.as_deref())
                .map_err(|e| RuntimeError::Inference(format!("the model's chat template is unusable: {e}"))),
            None => Ok(ChatTemplate::chatml()),
        };
        if let Err(e) = &template {
            tracing::warn!(error = %e, "chat requests will fail");
        }
        let free_slots = (0..info.max_sequences).collect();
        Serving { engine, info, template, running: Vec::new(), grammars: None, free_slots, waiting: VecDeque::new() }
    }

    /// Drops waiting requests whose receiver is gone, and fails those that waited too long.
    fn sweep_waiting(&mut self, config: &GenerationConfig, shared: &Shared) {
        self.waiting.retain(|job| {
            let expired = job.queued_at.elapsed() > config.queue_timeout;
            if !job.events.is_closed() && !expired {
                return true;
            }
            // Counted out before the caller can hear of it.
            shared.depth.fetch_sub(1, Ordering::Relaxed);
            if expired {
                let _ = job.events.send(GenerationEvent::Failed(ReplicaError::Timeout));
            }
            false
        });
    }

    /// Moves waiting requests into free slots, oldest first.
    fn admit(&mut self, config: &GenerationConfig, shared: &Shared) {
        while !self.free_slots.is_empty() {
            let Some(job) = self.waiting.pop_front() else { return };
            shared.depth.fetch_sub(1, Ordering::Relaxed);
            if job.events.is_closed() {
                continue;
            }
            if job.queued_at.elapsed() > config.queue_timeout {
                let _ = job.events.send(GenerationEvent::Failed(ReplicaError::Timeout));
                continue;
            }
            let bias_ids = job.request.sampling.logit_bias.iter().map(|&(token, _)| token);
            let checked = self.check_ids("logit_bias", bias_ids).and_then(|()| self.prompt_tokens(&job.request.prompt));
            let checked = checked.and_then(|prompt| Ok((prompt, self.constraint(job.request.format.as_ref())?)));
            let (prompt, constraint) = match checked {
                Ok(prompt) => prompt,
                Err(e) => {
                    let _ = job.events.send(GenerationEvent::Failed(ReplicaError::Runtime(e)));
                    continue;
                }
            };
            let Some(slot) = self.free_slots.pop_first() else { return };
            // Counted before `Started`, so that whoever hears of it sees it running.
            shared.running.store(self.running.len() + 1, Ordering::Relaxed);
            if job.events.send(GenerationEvent::Started { prompt_tokens: prompt.len() }).is_err() {
                self.free_slots.insert(slot);
                shared.running.store(self.running.len(), Ordering::Relaxed);
                continue;
            }
            self.running.push(Sequence {
                slot,
                sampler: Sampler::new(&job.request.sampling),
                text: TextStream::new(job.request.stop),
                events: job.events,
                prompt,
                cached: 0,
                next: None,
                max_tokens: job.request.max_tokens,
                logprobs: job.request.logprobs,
                echo: job.request.echo || job.request.prompt_logprobs.is_some(),
                prompt_logprobs: job.request.prompt_logprobs,
                prompt_scores: Vec::new(),
                constraint,
                completion_tokens: 0,
                unsent_tokens: 0,
                unsent_logprobs: Vec::new(),
                joined_at: Instant::now(),
            });
        }
    }

    /// The structured-output constraint a request asks for, if any (the vocabulary is indexed
    /// on first use).
    fn constraint(&mut self, format: Option<&OutputFormat>) -> Result<Option<OutputConstraint>, RuntimeError> {
        let Some(format) = format else { return Ok(None) };
        if self.grammars.is_none() {
            self.grammars = Some(Grammars::of(self.engine.as_ref())?);
        }
        self.grammars.as_ref().map(|grammars| grammars.constrain(format)).transpose()
    }

    /// Refuses token ids the model does not have (`what` names where they came from).
    fn check_ids(&self, what: &str, mut ids: impl Iterator<Item = u32>) -> Result<(), RuntimeError> {
        let vocab = self.info.vocab_size;
        match ids.find(|&t| t as usize >= vocab) {
            Some(bad) => Err(RuntimeError::InvalidInput(format!(
                "{what}: token id {bad} is outside the vocabulary ({vocab} tokens)"
            ))),
            None => Ok(()),
        }
    }

    /// The prompt's tokens, checked to leave room for at least one generated token.
    fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<u32>, RuntimeError> {
        let tokens = match prompt {
            Prompt::Text(text) => self.engine.tokenize(text, true)?,
            Prompt::Chat { messages, tools } => {
                let template = self.template.as_ref().map_err(Clone::clone)?;
                let rendered = template.render_with_tools(messages, tools, true)?;
                self.engine.tokenize(&rendered, true)?
            }
            Prompt::Tokens(tokens) => {
                self.check_ids("prompt", tokens.iter().copied())?;
                tokens.clone()
            }
        };
        let context = self.info.context_length;
        if tokens.is_empty() {
            return Err(RuntimeError::InvalidInput("the prompt is empty".into()));
        }
        if tokens.len() >= context {
            return Err(RuntimeError::ContextLength(format!(
                "the prompt is {} tokens, the context holds {context} (prompt and completion together)",
                tokens.len()
            )));
        }
        Ok(tokens)
    }

    /// Frees the slots of sequences whose receiver was dropped.
    fn drop_cancelled(&mut self, shared: &Shared) {
        let mut index = 0;
        while index < self.running.len() {
            if self.running[index].events.is_closed() {
                let sequence = self.running.swap_remove(index);
                self.leave(sequence, shared);
            } else {
                index += 1;
            }
        }
    }

    /// Gives the slot of a sequence (already out of `running`) back. Counted before its event
    /// sender goes (at the end), so that a caller that saw its stream end sees it gone.
    fn leave(&mut self, sequence: Sequence, shared: &Shared) {
        self.engine.release(sequence.slot);
        self.free_slots.insert(sequence.slot);
        shared.running.store(self.running.len(), Ordering::Relaxed);
        shared.record_request(sequence.joined_at.elapsed());
    }

    /// One engine step over the running sequences, then sampling and streaming.
    fn step(&mut self, shared: &Shared) {
        let mut budget = PREFILL_BUDGET;
        // (index in `running`, tokens fed, every position's logits) of each sequence in this step.
        let mut fed: Vec<(usize, usize, bool)> = Vec::with_capacity(self.running.len());
        let mut chunks: Vec<SeqChunk<'_>> = Vec::with_capacity(self.running.len());
        for (index, sequence) in self.running.iter().enumerate() {
            if let Some(tokens) = sequence.chunk(&mut budget) {
                let all_logits = sequence.next.is_none() && sequence.prompt_logprobs.is_some();
                fed.push((index, tokens.len(), all_logits));
                chunks.push(SeqChunk { slot: sequence.slot, pos: sequence.cached, tokens, all_logits });
            }
        }
        let result = self.engine.step(&chunks);
        drop(chunks);
        let mut leaving: Vec<usize> = Vec::new();
        match result {
            Ok(logits) if logits.len() == fed.len() => {
                for ((index, n, all_logits), mut rows) in fed.into_iter().zip(logits) {
                    let sequence = &mut self.running[index];
                    let engine = self.engine.as_ref();
                    let last = match all_logits {
                        true => score_prompt(sequence, n, &rows, engine).map(|width| rows.len() - width),
                        false => Ok(0),
                    };
                    let outcome = match last {
                        Ok(last) => advance(sequence, n, &mut rows[last..], engine),
                        Err(error) => {
                            let _ = sequence.send(GenerationEvent::Failed(ReplicaError::Runtime(error)));
                            Outcome::Leave
                        }
                    };
                    if let Outcome::Leave = outcome {
                        leaving.push(index);
                    }
                }
            }
            result => {
                let error = match result {
                    Err(e) => e,
                    Ok(logits) => RuntimeError::Inference(format!(
                        "the engine returned {} logits rows for {} sequences",
                        logits.len(),
                        fed.len()
                    )),
                };
                tracing::warn!(replica = %shared.life.name, error = %error, "a generation step failed");
                for (index, _, _) in fed {
                    let _ = self.running[index].send(GenerationEvent::Failed(ReplicaError::Runtime(error.clone())));
                    leaving.push(index);
                }
            }
        }
        // Highest index first, so that `swap_remove` leaves the others in place.
        leaving.sort_unstable_by(|a, b| b.cmp(a));
        for index in leaving {
            let sequence = self.running.swap_remove(index);
            self.leave(sequence, shared);
        }
    }

    /// Fails every running and waiting request with `error()` and frees all slots.
    fn fail_all(&mut self, error: impl Fn() -> ReplicaError, shared: &Shared) {
        let running = std::mem::take(&mut self.running);
        shared.running.store(0, Ordering::Relaxed);
        for sequence in running {
            let _ = sequence.send(GenerationEvent::Failed(error()));
            self.free_slots.insert(sequence.slot);
        }
        for job in self.waiting.drain(..) {
            shared.depth.fetch_sub(1, Ordering::Relaxed);
            let _ = job.events.send(GenerationEvent::Failed(error()));
        }
    }
}

/// Moves a sequence past the `n` tokens it was fed; once its prompt is read, samples the next
/// token from `logits`, streams its text and decides whether it goes on.
fn advance(sequence: &mut Sequence, n: usize, logits: &mut [f32], engine: &dyn LmEngine) -> Outcome {
    sequence.cached += n;
    if sequence.next.is_none() && sequence.cached < sequence.prompt.len() {
        // Still reading the prompt.
        return Outcome::Continue;
    }
    if sequence.next.is_none() && sequence.echo && !send_prompt(sequence, engine) {
        return Outcome::Leave;
    }
    // The raw row, before the sampler reshapes it, when log-probabilities are asked for.
    let raw = sequence.logprobs.map(|_| logits.to_vec());
    if let Some(constraint) = &mut sequence.constraint {
        constraint.mask(logits);
    }
    let token = sequence.sampler.sample(logits);
    if let Some(constraint) = &mut sequence.constraint {
        constraint.accept(token);
    }
    sequence.completion_tokens += 1;
    sequence.unsent_tokens += 1;
    let info = engine.info();
    let eos = info.eos_tokens.contains(&token);
    // The end of sequence has no text, and no entry, except when the prompt is echoed: a
    // scored prompt's continuation is read as every generated token.
    if let (Some(top), Some(raw), false) = (sequence.logprobs, raw, eos && !sequence.echo) {
        sequence.unsent_logprobs.push(scored(engine, &raw, token, top));
    }
    if eos {
        return finish(sequence, FinishReason::Stop, true);
    }
    let pushed = sequence.text.push(&engine.token_bytes(token));
    if !pushed.text.is_empty() && !send_delta(sequence, pushed.text) {
        return Outcome::Leave;
    }
    if pushed.stopped {
        // What the stream held back belongs to the stop sequence.
        return finish(sequence, FinishReason::Stop, false);
    }
    let length = sequence.max_tokens.is_some_and(|max| sequence.completion_tokens >= max)
        // The token would be fed at position `cached`: no room left.
        || sequence.cached >= info.context_length;
    if length {
        return finish(sequence, FinishReason::Length, true);
    }
    sequence.next = Some(token);
    Outcome::Continue
}

/// Records the log-probability of each prompt token that the `n` rows of a chunk predict (the
/// row after position `p` scores the token at `p + 1`); returns the width of a row.
fn score_prompt(sequence: &mut Sequence, n: usize, rows: &[f32], engine: &dyn LmEngine) -> Result<usize, RuntimeError> {
    let width = rows.len().checked_div(n).filter(|w| *w > 0 && w * n == rows.len()).ok_or_else(|| {
        RuntimeError::Inference(format!("the engine returned {} logits for {n} positions", rows.len()))
    })?;
    let top = sequence.prompt_logprobs.unwrap_or(0);
    for (i, row) in rows.chunks_exact(width).enumerate() {
        let Some(&token) = sequence.prompt.get(sequence.cached + i + 1) else { break };
        sequence.prompt_scores.push(scored(engine, row, token, top));
    }
    Ok(width)
}

/// `token`'s log-probability under the logits `row`, with the `top` most likely tokens.
fn scored(engine: &dyn LmEngine, row: &[f32], token: u32, top: usize) -> Logprobs {
    let (logprob, alternatives) = log_probabilities(row, token, top);
    let entry = |token, logprob| TokenLogprob { token, bytes: engine.token_bytes(token), logprob };
    Logprobs { chosen: entry(token, logprob), top: alternatives.into_iter().map(|(t, l)| entry(t, l)).collect() }
}

/// Sends the prompt's tokens (with the log-probabilities scored while it was read); `false`
/// when the receiver is gone.
fn send_prompt(sequence: &mut Sequence, engine: &dyn LmEngine) -> bool {
    // The first token has no score; each later one has the next score, when scored.
    let scores = std::iter::once(None).chain(std::mem::take(&mut sequence.prompt_scores).into_iter().map(Some));
    let tokens = sequence
        .prompt
        .iter()
        .zip(scores.chain(std::iter::repeat(None)))
        .map(|(&token, logprobs)| PromptToken { token, bytes: engine.token_bytes(token), logprobs })
        .collect();
    sequence.send(GenerationEvent::Prompt(tokens))
}

/// Sends the rest of the text (when `flush`) and of the log-probabilities, and `Finished`;
/// the sequence leaves either way.
fn finish(sequence: &mut Sequence, reason: FinishReason, flush: bool) -> Outcome {
    let rest = if flush { sequence.text.finish() } else { String::new() };
    if (!rest.is_empty() || !sequence.unsent_logprobs.is_empty()) && !send_delta(sequence, rest) {
        return Outcome::Leave;
    }
    let _ = sequence.send(GenerationEvent::Finished { reason, usage: sequence.usage() });
    Outcome::Leave
}

/// Sends `text` with the tokens generated since the last delta; `false` when the receiver is
/// gone.
fn send_delta(sequence: &mut Sequence, text: String) -> bool {
    let tokens = std::mem::take(&mut sequence.unsent_tokens);
    let logprobs = std::mem::take(&mut sequence.unsent_logprobs);
    sequence.send(GenerationEvent::Delta { text, tokens, logprobs })
}
