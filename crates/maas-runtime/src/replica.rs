//! A replica: one loaded model on its own worker thread, fed by a bounded queue, with dynamic
//! batching.
//!
//! The async side ([`Replica::infer`]) only validates, `try_send`s and awaits a oneshot reply,
//! so it never blocks the executor; everything blocking (loading, running) happens on the
//! replica's `std::thread`. A full queue is answered at once with
//! [`ReplicaError::Overloaded`] (load shedding); a request whose caller went away before the
//! worker reached it (timed out, or its future dropped) is skipped, never run.
//!
//! Dynamic batching: when every input and output of the model has a dynamic first dimension
//! (`-1`), the worker takes the first queued request and keeps taking compatible ones (same
//! input names, dtypes and non-batch dimensions, same requested outputs) until
//! `max_batch_size` rows are gathered or `max_queue_delay` has passed since it took the first;
//! it concatenates them along dimension 0, runs the model once and hands each caller its own
//! rows of every output. A request that does not fit waits for the next batch.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use maas_core::{Coded, ErrorCode};
use tokio::sync::oneshot;

use crate::lifecycle::Lifecycle;
use crate::stats::InferStats;
use crate::tensor::element_count;
use crate::validate::{validate, validate_outputs};
use crate::{Backend, IoSpec, RuntimeError, Tensor};

/// Loads a backend; called once, on the replica's worker thread.
pub type Loader = Box<dyn FnOnce() -> Result<Box<dyn Backend>, RuntimeError> + Send>;

/// How a replica queues and batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// The most rows one model run may take; 1 = no batching.
    pub max_batch_size: usize,
    /// How long the worker may wait for more requests to fill a batch once it has one.
    pub max_queue_delay: Duration,
    /// Requests that may wait in the queue (at least 1); more are refused as overloaded.
    pub queue_capacity: usize,
    /// How long a caller waits for its answer, queueing included.
    pub timeout: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 1,
            max_queue_delay: Duration::from_millis(5),
            queue_capacity: 64,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Where a replica is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaState {
    /// The worker is loading the model.
    Loading,
    /// The model is loaded and serving.
    Ready,
    /// Loading failed (or the backend panicked); the reason.
    Failed(String),
    /// Stopped: no new requests are taken.
    Stopped,
}

/// One inference request: the inputs, and the outputs wanted (all when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<String>,
}

/// Why a replica did not answer a request with outputs.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The model is loading, failed to load, or stopped; the message says which.
    #[error("{0}")]
    NotReady(String),
    /// The queue is full; try again after `retry_after`.
    #[error("the model is overloaded (its queue is full); retry in {} ms", retry_after.as_millis())]
    Overloaded { retry_after: Duration },
    /// No answer within the replica's timeout.
    #[error("inference did not finish within the timeout")]
    Timeout,
    /// The replica dropped the request without answering it (its worker went away).
    #[error("the request was cancelled before it ran")]
    Cancelled,
    /// The request was invalid, or the runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl Coded for ReplicaError {
    fn code(&self) -> ErrorCode {
        match self {
            ReplicaError::NotReady(_) | ReplicaError::Cancelled => ErrorCode::ModelNotReady,
            ReplicaError::Overloaded { .. } => ErrorCode::Overloaded,
            ReplicaError::Timeout => ErrorCode::InferenceTimeout,
            ReplicaError::Runtime(e) => e.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ReplicaError::Overloaded { retry_after } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).map(|s| s.max(1))
            }
            _ => None,
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Tensor>, ReplicaError>>;

struct Job {
    request: InferRequest,
    reply: Reply,
    queued: Instant,
}

/// The model's signature, known once it is loaded.
#[derive(Debug)]
struct Signature {
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    /// Every input and output has a dynamic first dimension.
    batchable: bool,
}

#[derive(Debug)]
struct Shared {
    life: Lifecycle,
    signature: OnceLock<Signature>,
    depth: AtomicUsize,
    /// Moving average of one model run, in µs (for `retry_after`).
    run_micros: AtomicU64,
    stats: Mutex<InferStats>,
}

impl Shared {
    fn lock_stats(&self) -> std::sync::MutexGuard<'_, InferStats> {
        self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One model replica; see the module docs. Dropping it stops it.
#[derive(Debug)]
pub struct Replica {
    config: ReplicaConfig,
    shared: Arc<Shared>,
    /// `None` once stopped: dropping the only sender lets the worker's `recv` end.
    sender: Mutex<Option<SyncSender<Job>>>,
}

impl Replica {
    /// Starts the worker thread, which loads the backend through `loader` and then serves.
    /// Returns at once, in [`ReplicaState::Loading`].
    pub fn start(name: String, loader: Loader, config: ReplicaConfig) -> Replica {
        let shared = Arc::new(Shared {
            life: Lifecycle::new(name.clone()),
            signature: OnceLock::new(),
            depth: AtomicUsize::new(0),
            run_micros: AtomicU64::new(0),
            stats: Mutex::new(InferStats::default()),
        });
        let (sender, receiver) = mpsc::sync_channel(config.queue_capacity.max(1));
        let worker = Worker { shared: Arc::clone(&shared), config: config.clone(), receiver };
        let spawned = std::thread::Builder::new().name(format!("replica-{name}")).spawn(move || worker.run(loader));
        if let Err(e) = spawned {
            // The loader went down with the closure; nothing will ever run.
            shared.life.fail_to_start(&e);
        }
        Replica { config, shared, sender: Mutex::new(Some(sender)) }
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

    /// The model's inputs, once loaded.
    pub fn inputs(&self) -> Option<Vec<IoSpec>> {
        self.shared.signature.get().map(|s| s.inputs.clone())
    }

    /// The model's outputs, once loaded.
    pub fn outputs(&self) -> Option<Vec<IoSpec>> {
        self.shared.signature.get().map(|s| s.outputs.clone())
    }

    /// Requests waiting in the queue (not counting those running).
    pub fn queue_depth(&self) -> usize {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// What the replica has served since it started.
    pub fn stats(&self) -> InferStats {
        self.shared.lock_stats().clone()
    }

    /// Validates `request` against the model's signature, queues it and waits for the answer.
    /// Counted in [`Replica::stats`] once the model is ready.
    pub async fn infer(&self, request: InferRequest) -> Result<Vec<Tensor>, ReplicaError> {
        if !self.shared.life.is_ready() {
            return Err(self.shared.life.not_ready());
        }
        let Some(signature) = self.shared.signature.get() else {
            return Err(self.shared.life.not_ready());
        };
        let started = Instant::now();
        let rows = batch_rows(&request).unwrap_or(1) as u64;
        let result = self.queue_and_wait(signature, request).await;
        self.shared.lock_stats().finished(result.is_ok(), rows, started.elapsed());
        result
    }

    async fn queue_and_wait(&self, signature: &Signature, request: InferRequest) -> Result<Vec<Tensor>, ReplicaError> {
        validate(&request.inputs, &signature.inputs)?;
        validate_outputs(&request.outputs, &signature.outputs)?;
        let (reply, answer) = oneshot::channel();
        {
            let sender = self.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(sender) = sender.as_ref() else {
                return Err(self.shared.life.not_ready());
            };
            // Counted before sending so that the worker's decrement never comes first.
            self.shared.depth.fetch_add(1, Ordering::Relaxed);
            match sender.try_send(Job { request, reply, queued: Instant::now() }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    let depth = self.shared.depth.fetch_sub(1, Ordering::Relaxed);
                    return Err(ReplicaError::Overloaded { retry_after: self.retry_after(depth) });
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.shared.depth.fetch_sub(1, Ordering::Relaxed);
                    return Err(self.shared.life.not_ready());
                }
            }
        }
        match tokio::time::timeout(self.config.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ReplicaError::Cancelled),
            // Dropping `answer` here marks the job cancelled: the worker skips it.
            Err(_) => Err(ReplicaError::Timeout),
        }
    }

    /// An estimate of how long the queue takes to drain: its batches times the average run.
    fn retry_after(&self, depth: usize) -> Duration {
        let batches = depth.div_ceil(self.config.max_batch_size.max(1)).max(1) as u64;
        let micros = self.shared.run_micros.load(Ordering::Relaxed).saturating_mul(batches);
        Duration::from_micros(micros).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// Stops taking requests. Queued requests are answered `NotReady`; a running batch
    /// finishes; then the worker drops the backend (on its own thread) and exits. Returns at
    /// once; [`Replica::stopped`] waits for the exit.
    pub fn stop(&self) {
        self.shared.life.stop();
        drop(self.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
    }

    /// Waits until the worker has exited and dropped the backend: after [`Replica::stop`], a
    /// failed load, or a panic in the backend.
    pub async fn stopped(&self) {
        self.shared.life.stopped().await;
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    shared: Arc<Shared>,
    config: ReplicaConfig,
    receiver: Receiver<Job>,
}

impl Worker {
    fn run(self, loader: Loader) {
        let name = self.shared.life.name.clone();
        let started = Instant::now();
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(loader));
        match loaded {
            Ok(Ok(backend)) => {
                let inputs = backend.inputs().to_vec();
                let outputs = backend.outputs().to_vec();
                let dynamic = |io: &IoSpec| io.shape.first() == Some(&-1);
                let batchable = inputs.iter().all(dynamic) && outputs.iter().all(dynamic);
                let _ = self.shared.signature.set(Signature { inputs, outputs, batchable });
                tracing::info!(
                    replica = %name,
                    platform = backend.platform(),
                    batchable,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "model loaded"
                );
                self.shared.life.set_state(ReplicaState::Ready);
                self.serve(backend);
            }
            Ok(Err(e)) => {
                tracing::warn!(replica = %name, error = %e, "model failed to load");
                self.shared.life.set_state(ReplicaState::Failed(e.to_string()));
            }
            Err(panic) => {
                let reason = format!("loading panicked: {}", crate::panic_message(panic.as_ref()));
                tracing::error!(replica = %name, "{reason}");
                self.shared.life.set_state(ReplicaState::Failed(reason));
            }
        }
        // Whatever is still queued gets an answer; then the receiver goes with `self`.
        self.reject_queued();
        let Worker { shared, receiver, .. } = self;
        drop(receiver);
        shared.life.mark_exited();
    }

    /// Serves until the replica stops or the backend panics; drops the backend on return.
    fn serve(&self, mut backend: Box<dyn Backend>) {
        let mut carried: Option<Job> = None;
        loop {
            let first = match carried.take() {
                Some(job) => job,
                None => match self.receiver.recv() {
                    Ok(job) => self.took(job),
                    Err(_) => return,
                },
            };
            if self.shared.life.is_stopping() {
                reject(first, &self.shared);
                return;
            }
            if first.reply.is_closed() {
                continue;
            }
            let (mut batch, next) = self.gather(first);
            carried = next;
            // Callers that went away while the batch was gathered are not run either.
            batch.retain(|job| !job.reply.is_closed());
            if batch.is_empty() {
                continue;
            }
            if !self.run_batch(backend.as_mut(), batch) {
                if let Some(job) = carried.take() {
                    reject(job, &self.shared);
                }
                return;
            }
        }
    }

    /// Counts a job out of the queue.
    fn took(&self, job: Job) -> Job {
        self.shared.depth.fetch_sub(1, Ordering::Relaxed);
        job
    }

    /// Collects requests compatible with `first` into a batch; returns the batch and the first
    /// request that did not fit (it starts the next batch).
    fn gather(&self, first: Job) -> (Vec<Job>, Option<Job>) {
        let max = self.config.max_batch_size;
        let batchable = self.shared.signature.get().is_some_and(|s| s.batchable);
        let (Some(mut rows), true, true) = (batch_rows(&first.request), batchable, max > 1) else {
            return (vec![first], None);
        };
        let mut batch = vec![first];
        // Bounded so that an absurd setting cannot overflow `Instant`.
        let deadline = Instant::now() + self.config.max_queue_delay.min(Duration::from_secs(3600));
        while rows < max {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Past the deadline, requests already queued still join; none is waited for.
            let job = if remaining.is_zero() {
                match self.receiver.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            } else {
                match self.receiver.recv_timeout(remaining) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            };
            let job = self.took(job);
            if job.reply.is_closed() {
                continue;
            }
            let fits = batch_rows(&job.request).filter(|&more| {
                rows + more <= max && batch.first().is_some_and(|b| compatible(&b.request, &job.request))
            });
            match fits {
                Some(more) => {
                    rows += more;
                    batch.push(job);
                }
                None => return (batch, Some(job)),
            }
        }
        (batch, None)
    }

    /// Runs one batch and answers its callers. Returns `false` when the backend panicked (the
    /// replica is then failed and stops serving).
    fn run_batch(&self, backend: &mut dyn Backend, batch: Vec<Job>) -> bool {
        let started = Instant::now();
        let queued: Vec<Duration> = batch.iter().map(|job| started.saturating_duration_since(job.queued)).collect();
        let (requests, replies): (Vec<InferRequest>, Vec<Reply>) =
            batch.into_iter().map(|job| (job.request, job.reply)).unzip();
        let outputs = requests.first().map(|r| r.outputs.clone()).unwrap_or_default();
        let single = requests.len() == 1;
        // Each request's rows (a lone request without a batch dimension counts one).
        let rows: Vec<usize> = requests.iter().map(|r| batch_rows(r).unwrap_or(1)).collect();
        let inputs = if single {
            requests.into_iter().flat_map(|r| r.inputs).collect()
        } else {
            match concatenate(requests) {
                Ok(inputs) => inputs,
                Err(e) => {
                    answer_all(replies, &e);
                    return true;
                }
            }
        };
        let gathered = Instant::now();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.infer(inputs, &outputs)));
        let finished = Instant::now();
        self.record(finished - started);
        let answered = match ran {
            Ok(Ok(results)) if single => {
                let _ = replies.into_iter().next().map(|reply| reply.send(Ok(results)));
                true
            }
            Ok(Ok(results)) => match split(results, &rows) {
                Ok(parts) => {
                    for (reply, part) in replies.into_iter().zip(parts) {
                        let _ = reply.send(Ok(part));
                    }
                    true
                }
                Err(e) => {
                    answer_all(replies, &e);
                    false
                }
            },
            Ok(Err(e)) => {
                answer_all(replies, &e);
                false
            }
            Err(panic) => {
                let reason = format!("the backend panicked: {}", crate::panic_message(panic.as_ref()));
                tracing::error!(replica = %self.shared.life.name, "{reason}");
                // Failed before anyone hears of it, so that callers see the new state.
                self.shared.life.set_state(ReplicaState::Failed(reason.clone()));
                answer_all(replies, &RuntimeError::Inference(reason));
                return false;
            }
        };
        if answered {
            let steps = [gathered - started, finished - gathered, finished.elapsed()];
            self.shared.lock_stats().ran(&queued, rows.iter().sum::<usize>() as u64, steps);
        }
        true
    }

    fn record(&self, elapsed: Duration) {
        let sample = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let old = self.shared.run_micros.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { (old.saturating_mul(4).saturating_add(sample)) / 5 };
        self.shared.run_micros.store(new, Ordering::Relaxed);
    }

    /// Answers everything still queued with `NotReady`. Requests sent after this find the
    /// receiver gone and are refused by `infer` itself.
    fn reject_queued(&self) {
        while let Ok(job) = self.receiver.try_recv() {
            reject(self.took(job), &self.shared);
        }
    }
}

fn reject(job: Job, shared: &Shared) {
    let _ = job.reply.send(Err(shared.life.not_ready()));
}

fn answer_all(replies: Vec<Reply>, error: &RuntimeError) {
    for reply in replies {
        let _ = reply.send(Err(ReplicaError::Runtime(error.clone())));
    }
}

/// The rows of a request (dimension 0, the same for every input); `None` when it cannot be
/// batched (a scalar input, or inputs that disagree on dimension 0).
fn batch_rows(request: &InferRequest) -> Option<usize> {
    let mut rows = None;
    for tensor in &request.inputs {
        let first = usize::try_from(*tensor.shape.first()?).ok()?;
        if *rows.get_or_insert(first) != first {
            return None;
        }
    }
    rows
}

/// Whether two (validated) requests can share a batch: the same outputs, and inputs of the
/// same names, dtypes and dimensions after the first.
fn compatible(a: &InferRequest, b: &InferRequest) -> bool {
    a.outputs == b.outputs
        && a.inputs.len() == b.inputs.len()
        && b.inputs.iter().all(|t| {
            a.inputs.iter().any(|u| {
                u.name == t.name
                    && u.dtype() == t.dtype()
                    && u.shape.get(1..).is_some_and(|d| Some(d) == t.shape.get(1..))
            })
        })
}

/// Concatenates compatible requests' inputs along dimension 0, in the first request's order.
fn concatenate(requests: Vec<InferRequest>) -> Result<Vec<Tensor>, RuntimeError> {
    let mut requests = requests.into_iter();
    let Some(first) = requests.next() else {
        return Ok(Vec::new());
    };
    let mut merged = first.inputs;
    for request in requests {
        for Tensor { name, shape, data } in request.inputs {
            let Some(target) = merged.iter_mut().find(|t| t.name == name) else {
                return Err(RuntimeError::Inference(format!("batched request lacks input '{name}'")));
            };
            if let (Some(total), Some(more)) = (target.shape.first_mut(), shape.first()) {
                *total += more;
            }
            target.data.extend(data)?;
        }
    }
    Ok(merged)
}

/// Splits batched outputs back into each request's rows.
fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, RuntimeError> {
    let total: usize = rows.iter().sum();
    let mut parts: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for output in outputs {
        let per_row = output
            .shape
            .split_first()
            .and_then(|(&n, rest)| (usize::try_from(n).ok() == Some(total)).then(|| element_count(rest)).flatten());
        let Some(per_row) = per_row.filter(|p| p.checked_mul(total) == Some(output.data.len())) else {
            return Err(RuntimeError::Inference(format!(
                "output '{}' has shape {} for a batch of {total} rows, so it cannot be split back; \
                 serve this model with max_batch_size 1",
                output.name,
                crate::validate::shape_str(&output.shape)
            )));
        };
        let mut offset = 0;
        for (part, &n) in parts.iter_mut().zip(rows) {
            let mut shape = output.shape.clone();
            if let Some(first) = shape.first_mut() {
                *first = n as i64;
            }
            let data = output.data.slice(offset * per_row..(offset + n) * per_row);
            part.push(Tensor { name: output.name.clone(), shape, data });
            offset += n;
        }
    }
    Ok(parts)
}
