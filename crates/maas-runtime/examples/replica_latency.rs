//! Latency of the generated `simple` model (one row of INT32 [1,16] ×2): ONNX Runtime called
//! directly, then through a replica's queue, sequentially and with concurrent callers.
//!
//! ```sh
//! source scripts/services.sh && ensure_python_venv && ensure_onnxruntime
//! cargo run --release -p maas-runtime --example replica_latency [REQUESTS]
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maas_runtime::{Backend, InferRequest, OnnxBackend, OnnxConfig, Replica, ReplicaConfig, Tensor, TensorData};

fn request() -> Result<InferRequest, Box<dyn Error>> {
    let input = |name: &str| Tensor::new(name, vec![1, 16], TensorData::Int32((0..16).collect()));
    Ok(InferRequest { inputs: vec![input("INPUT0")?, input("INPUT1")?], outputs: vec![] })
}

/// Prints mean, p50 and p99 of `samples` in µs.
fn report(what: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let n = samples.len().max(1);
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / n as f64;
    let at = |q: f64| samples.get(((n as f64 - 1.0) * q) as usize).map_or(0.0, |d| d.as_secs_f64() * 1e6);
    println!("{what:<56} mean {mean:>8.1} µs   p50 {:>8.1} µs   p99 {:>8.1} µs", at(0.5), at(0.99));
}

async fn sequential(replica: &Replica, n: usize) -> Result<Vec<Duration>, Box<dyn Error>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let request = request()?;
        let started = Instant::now();
        replica.infer(request).await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let n: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let dir = std::env::var("MAAS_TEST_ONNX_DIR")
        .map_err(|_| "MAAS_TEST_ONNX_DIR is not set: source scripts/services.sh and run ensure_onnxruntime")?;
    let path = PathBuf::from(dir).join("simple.onnx");
    let onnx = OnnxConfig { intra_op_threads: 1, ..Default::default() };

    let mut backend = OnnxBackend::load(&path, &onnx)?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n.min(100) {
        backend.infer(request()?.inputs, &[])?; // warm-up
    }
    for _ in 0..n {
        let inputs = request()?.inputs;
        let started = Instant::now();
        backend.infer(inputs, &[])?;
        samples.push(started.elapsed());
    }
    report("OnnxBackend::infer, direct", &mut samples);

    let configs = [
        ("replica, max_batch_size 1", 1, Duration::ZERO),
        ("replica, max_batch_size 8, delay 0", 8, Duration::ZERO),
        ("replica, max_batch_size 8, delay 1 ms", 8, Duration::from_millis(1)),
    ];
    for (what, max_batch_size, max_queue_delay) in configs {
        let config =
            ReplicaConfig { max_batch_size, max_queue_delay, queue_capacity: 256, timeout: Duration::from_secs(10) };
        let replica = Replica::start("simple".into(), OnnxBackend::loader(path.clone(), onnx.clone()), config);
        replica.ready().await?;
        sequential(&replica, n.min(100)).await?; // warm-up
        let mut samples = sequential(&replica, n).await?;
        report(&format!("{what}: sequential"), &mut samples);

        // 32 concurrent callers sharing the same replica.
        let replica = Arc::new(replica);
        let started = Instant::now();
        let callers: Vec<_> = (0..32)
            .map(|_| {
                let replica = Arc::clone(&replica);
                tokio::spawn(async move { sequential(&replica, n / 32).await.map_err(|e| e.to_string()) })
            })
            .collect();
        let mut samples = Vec::with_capacity(n);
        for caller in callers {
            samples.extend(caller.await??);
        }
        let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
        report(&format!("{what}: 32 callers ({rate:.0} req/s)"), &mut samples);
    }
    Ok(())
}
