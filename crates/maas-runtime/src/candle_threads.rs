//! The rayon pool a candle model runs its forward passes on: one per loaded model (as an ONNX
//! Runtime session has its own threads), so that the model's `threads` setting bounds it and
//! candle's matrix products split on the threads already running the model.

use crate::RuntimeError;

/// A pool of `threads` threads named `{name}-{i}`; 0 means candle's default count
/// (`RAYON_NUM_THREADS`, else one per physical core).
pub(crate) fn pool(threads: usize, name: &'static str) -> Result<rayon::ThreadPool, RuntimeError> {
    let threads = if threads > 0 { threads } else { candle_core::utils::get_num_threads() };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .map_err(|e| RuntimeError::Load(format!("cannot start {threads} {name} threads: {e}")))
}
