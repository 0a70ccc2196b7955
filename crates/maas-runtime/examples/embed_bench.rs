//! Sentence embeddings straight through `EmbeddingBackend::infer`, no server: sentences per
//! second at a given batch size. Used by bench/embeddings.sh for the in-process row.
//!
//! ```sh
//! cargo run --release -p maas-runtime --example embed_bench -- MODEL_DIR SENTENCES_FILE [BATCH] [ROUNDS] [THREADS]
//! ```
//!
//! SENTENCES_FILE holds one sentence per line. A round embeds all of them in batches of BATCH
//! (default 32). After one warm-up round it runs ROUNDS rounds (default 5) and prints one JSON
//! line: `{"sentences", "batch", "rounds", "best_per_s", "median_per_s", "each_per_s",
//! "threads", "cpu_s_per_round"}`. With ROUNDS 0 it prints `ready` after the warm-up and then
//! runs one round per line read from standard input, printing `{"per_s", "cpu_s"}` for each
//! (so that a driver can interleave it with other variants). CPU time is the process's user +
//! system time from `/proc` (0 elsewhere). THREADS is `EmbeddingConfig::threads` (default 0:
//! candle's default, `RAYON_NUM_THREADS`, else one per physical core). The dense layers'
//! precision is the server's setting, read from the same variable:
//! `MAAS_RUNTIME__EMBEDDINGS_PRECISION` = `auto` (default) or `float32`.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use maas_runtime::embed::{EmbeddingBackend, EmbeddingConfig, EmbeddingPrecision, TEXT_INPUT};
use maas_runtime::{Backend, Tensor, TensorData};

fn main() {
    if let Err(e) = run() {
        eprintln!("embed_bench: {e}");
        std::process::exit(1);
    }
}

fn arg(args: &[String], index: usize, default: usize) -> Result<usize, String> {
    args.get(index).map_or(Ok(default), |a| a.parse().map_err(|e| format!("argument {index} ({a}): {e}")))
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(file)) = (args.get(1), args.get(2)) else {
        return Err("usage: embed_bench MODEL_DIR SENTENCES_FILE [BATCH] [ROUNDS]".into());
    };
    let batch = arg(&args, 3, 32)?.max(1);
    let rounds = arg(&args, 4, 5)?;
    let threads = arg(&args, 5, 0)?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let sentences: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    let precision = match std::env::var("MAAS_RUNTIME__EMBEDDINGS_PRECISION").as_deref() {
        Err(_) | Ok("auto") => EmbeddingPrecision::Auto,
        Ok("float32") => EmbeddingPrecision::Float32,
        Ok(other) => return Err(format!("MAAS_RUNTIME__EMBEDDINGS_PRECISION={other}: expected auto or float32")),
    };
    let config = EmbeddingConfig { threads, precision, ..EmbeddingConfig::default() };
    let mut backend = EmbeddingBackend::load(&PathBuf::from(dir), &config).map_err(|e| e.to_string())?;
    // One round: (sentences per second, CPU seconds).
    let mut round = || -> Result<(f64, f64), String> {
        let (started, cpu) = (Instant::now(), cpu_seconds());
        for chunk in sentences.chunks(batch) {
            let input = Tensor::new(TEXT_INPUT, vec![chunk.len() as i64], TensorData::Bytes(chunk.to_vec()))
                .map_err(|e| e.to_string())?;
            backend.infer(vec![input], &[]).map_err(|e| e.to_string())?;
        }
        Ok((sentences.len() as f64 / started.elapsed().as_secs_f64(), cpu_seconds() - cpu))
    };
    round()?;
    if rounds == 0 {
        println!("ready");
        for line in std::io::stdin().lock().lines() {
            line.map_err(|e| e.to_string())?;
            let (per_s, cpu) = round()?;
            println!("{{\"per_s\": {per_s:.1}, \"cpu_s\": {cpu:.3}}}");
        }
        return Ok(());
    }
    let results = (0..rounds).map(|_| round()).collect::<Result<Vec<(f64, f64)>, String>>()?;
    let cpu_per_round = results.iter().map(|r| r.1).sum::<f64>() / rounds as f64;
    let mut each: Vec<f64> = results.iter().map(|r| r.0).collect();
    let listed: Vec<String> = each.iter().map(|r| format!("{r:.1}")).collect();
    each.sort_by(f64::total_cmp);
    println!(
        "{{\"sentences\": {}, \"batch\": {batch}, \"rounds\": {rounds}, \"best_per_s\": {:.1}, \
         \"median_per_s\": {:.1}, \"each_per_s\": [{}], \"threads\": {}, \"cpu_s_per_round\": {cpu_per_round:.3}}}",
        sentences.len(),
        each[each.len() - 1],
        each[each.len() / 2],
        listed.join(", "),
        if threads > 0 { threads } else { candle_core::utils::get_num_threads() },
    );
    Ok(())
}

/// User + system CPU time of this process so far, from `/proc/self/stat` (0 where absent).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at its closing parenthesis;
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
