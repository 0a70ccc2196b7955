//! Replicas: batching, splitting, load shedding, timeouts, cancellation and life cycle, with a
//! test backend that records what it runs (no ONNX Runtime needed).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maas_core::{Coded, ErrorCode};
use maas_runtime::{
    Backend, DataType, InferRequest, IoSpec, Loader, Replica, ReplicaConfig, ReplicaError, ReplicaState, RuntimeError,
    Tensor, TensorData,
};

/// What the test backend saw.
#[derive(Debug, Default)]
struct Log {
    /// Rows of each run.
    batches: Mutex<Vec<usize>>,
    /// First element of every run's input, in order.
    firsts: Mutex<Vec<i32>>,
    /// Runs that have started.
    started: AtomicUsize,
    /// Set when the backend is dropped on the replica's worker thread.
    dropped_on_worker: AtomicBool,
}

impl Log {
    fn batches(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }
}

/// `X` INT32 [batch, 2] → `Y` = X + 1 (INT32 [batch, 2]) and `S` = row sums (INT64 [batch]).
struct TestBackend {
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    delay: Duration,
    panic: bool,
    log: Arc<Log>,
}

impl Backend for TestBackend {
    fn platform(&self) -> &'static str {
        "test"
    }

    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn infer(&mut self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, RuntimeError> {
        self.log.started.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panic, "test backend asked to panic");
        std::thread::sleep(self.delay);
        let x = &inputs[0];
        let TensorData::Int32(values) = &x.data else { panic!("expected INT32") };
        let rows = x.shape[0] as usize;
        self.log.batches.lock().unwrap().push(rows);
        self.log.firsts.lock().unwrap().push(values.first().copied().unwrap_or(-1));
        let y = Tensor::new("Y", x.shape.clone(), TensorData::Int32(values.iter().map(|v| v + 1).collect()))?;
        let sums = values.chunks(2).map(|r| r.iter().map(|&v| i64::from(v)).sum()).collect();
        let s = Tensor::new("S", vec![rows as i64], TensorData::Int64(sums))?;
        let wanted = |name: &str| outputs.is_empty() || outputs.iter().any(|o| o == name);
        Ok([y, s].into_iter().filter(|t| wanted(&t.name)).collect())
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        let on_worker = std::thread::current().name().is_some_and(|n| n.starts_with("replica-"));
        self.log.dropped_on_worker.store(on_worker, Ordering::SeqCst);
    }
}

struct Setup {
    batch: i64,
    delay: Duration,
    panic: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self { batch: -1, delay: Duration::ZERO, panic: false }
    }
}

fn loader(setup: Setup, log: &Arc<Log>) -> Loader {
    let log = Arc::clone(log);
    Box::new(move || {
        let io = |name: &str, dtype, shape| IoSpec { name: name.into(), dtype, shape };
        Ok(Box::new(TestBackend {
            inputs: vec![io("X", DataType::Int32, vec![setup.batch, 2])],
            outputs: vec![io("Y", DataType::Int32, vec![setup.batch, 2]), io("S", DataType::Int64, vec![setup.batch])],
            delay: setup.delay,
            panic: setup.panic,
            log,
        }) as Box<dyn Backend>)
    })
}

fn config(max_batch_size: usize, queue_capacity: usize) -> ReplicaConfig {
    ReplicaConfig {
        max_batch_size,
        max_queue_delay: Duration::from_millis(50),
        queue_capacity,
        timeout: Duration::from_secs(10),
    }
}

async fn start(setup: Setup, config: ReplicaConfig) -> (Arc<Replica>, Arc<Log>) {
    let log = Arc::new(Log::default());
    let replica = Replica::start("test".into(), loader(setup, &log), config);
    replica.ready().await.unwrap();
    (Arc::new(replica), log)
}

/// A request of `rows` rows whose values start at `base`.
fn request(base: i32, rows: usize, outputs: &[&str]) -> InferRequest {
    let values = (0..rows as i32 * 2).map(|i| base + i).collect();
    InferRequest {
        inputs: vec![Tensor::new("X", vec![rows as i64, 2], TensorData::Int32(values)).unwrap()],
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
    }
}

/// Checks that `outputs` answer `request(base, rows, all outputs)`.
fn check(outputs: &[Tensor], base: i32, rows: usize) {
    let values: Vec<i32> = (0..rows as i32 * 2).map(|i| base + i).collect();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0].name, "Y");
    assert_eq!(outputs[0].shape, [rows as i64, 2]);
    assert_eq!(outputs[0].data, TensorData::Int32(values.iter().map(|v| v + 1).collect()), "base {base}");
    assert_eq!(outputs[1].name, "S");
    assert_eq!(outputs[1].shape, [rows as i64]);
    let sums = values.chunks(2).map(|r| i64::from(r[0]) + i64::from(r[1])).collect();
    assert_eq!(outputs[1].data, TensorData::Int64(sums), "base {base}");
}

/// Waits (briefly) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_batched_and_split_back() {
    let (replica, log) = start(Setup::default(), config(8, 16)).await;
    let calls: Vec<_> = (0..8)
        .map(|k| {
            let replica = replica.clone();
            tokio::spawn(async move { (k, replica.infer(request(k * 100, 1, &[])).await) })
        })
        .collect();
    for call in calls {
        let (k, outputs) = call.await.unwrap();
        check(&outputs.unwrap(), k * 100, 1);
    }
    let batches = log.batches();
    assert!(batches.len() <= 2, "8 concurrent requests took {} runs: {batches:?}", batches.len());
    assert_eq!(batches.iter().sum::<usize>(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statistics_count_requests_rows_and_runs() {
    let delayed = Setup { delay: Duration::from_millis(5), ..Default::default() };
    let (replica, log) = start(delayed, config(8, 16)).await;
    let calls: Vec<_> = (0..6)
        .map(|k| {
            let replica = replica.clone();
            tokio::spawn(async move { replica.infer(request(k * 100, 2, &[])).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let invalid = InferRequest { inputs: vec![], outputs: vec![] };
    replica.infer(invalid).await.unwrap_err();
    let stats = replica.stats();
    let runs = log.batches();
    assert_eq!(stats.inference_count, 12, "rows answered");
    assert_eq!(stats.success.count, 6);
    assert_eq!(stats.fail.count, 1, "the invalid request");
    assert_eq!(stats.execution_count, runs.len() as u64);
    assert_eq!(stats.queue.count, 6);
    assert_eq!(stats.steps.compute_infer.count, 6, "each request counts its run");
    // One entry per run, by its rows; each run slept 5 ms.
    let by_size: u64 = stats.batches.iter().map(|(rows, steps)| rows * steps.compute_infer.count).sum();
    assert_eq!(by_size, 12);
    assert_eq!(stats.batches.values().map(|s| s.compute_infer.count).sum::<u64>(), runs.len() as u64);
    assert!(stats.steps.compute_infer.ns >= 6 * 5_000_000);
    assert!(stats.success.ns >= stats.steps.compute_infer.ns, "a request's time includes its run");
    assert!(stats.last_inference_ms > 1_700_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_of_several_rows_get_their_own_rows_back() {
    let (replica, log) = start(Setup::default(), config(8, 16)).await;
    let calls: Vec<_> = (0..10)
        .map(|k| {
            let replica = replica.clone();
            let rows = 1 + k as usize % 4;
            tokio::spawn(async move { (k, rows, replica.infer(request(k * 1000, rows, &[])).await) })
        })
        .collect();
    for call in calls {
        let (k, rows, outputs) = call.await.unwrap();
        check(&outputs.unwrap(), k * 1000, rows);
    }
    let batches = log.batches();
    assert!(batches.iter().all(|&rows| rows <= 8), "a batch went over max_batch_size: {batches:?}");
    assert_eq!(batches.iter().sum::<usize>(), 23);
    assert!(batches.len() < 10, "nothing was batched: {batches:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_for_different_outputs_are_not_mixed() {
    let (replica, _log) = start(Setup::default(), config(8, 16)).await;
    let calls: Vec<_> = (0..8)
        .map(|k| {
            let replica = replica.clone();
            let outputs: &[&str] = if k % 2 == 0 { &["S"] } else { &["Y"] };
            tokio::spawn(async move { (k, outputs, replica.infer(request(k * 10, 1, outputs)).await.unwrap()) })
        })
        .collect();
    for call in calls {
        let (k, wanted, outputs) = call.await.unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].name, wanted[0]);
        let expected = match wanted[0] {
            "S" => TensorData::Int64(vec![i64::from(k * 10) * 2 + 1]),
            _ => TensorData::Int32(vec![k * 10 + 1, k * 10 + 2]),
        };
        assert_eq!(outputs[0].data, expected, "request {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fixed_batch_dimension_is_never_batched() {
    let (replica, log) = start(Setup { batch: 4, ..Default::default() }, config(16, 16)).await;
    let calls: Vec<_> = (0..6)
        .map(|k| {
            let replica = replica.clone();
            tokio::spawn(async move { (k, replica.infer(request(k * 100, 4, &[])).await) })
        })
        .collect();
    for call in calls {
        let (k, outputs) = call.await.unwrap();
        check(&outputs.unwrap(), k * 100, 4);
    }
    assert_eq!(log.batches(), [4; 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_sheds_load_at_once() {
    let slow = Setup { delay: Duration::from_millis(300), ..Default::default() };
    let (replica, log) = start(slow, config(1, 1)).await;
    let running = tokio::spawn({
        let replica = replica.clone();
        async move { replica.infer(request(0, 1, &[])).await }
    });
    until("the first request runs", || log.started.load(Ordering::SeqCst) == 1).await;
    let queued = tokio::spawn({
        let replica = replica.clone();
        async move { replica.infer(request(10, 1, &[])).await }
    });
    until("the second request is queued", || replica.queue_depth() == 1).await;
    let started = Instant::now();
    let err = replica.infer(request(20, 1, &[])).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(100), "shedding load must not wait");
    let ReplicaError::Overloaded { retry_after } = &err else { panic!("expected Overloaded, got {err:?}") };
    assert!(*retry_after >= Duration::from_millis(100), "{retry_after:?}");
    assert_eq!(err.code(), ErrorCode::Overloaded);
    assert_eq!(err.code().http_status(), 429);
    assert!(err.retry_after_secs().is_some_and(|s| s >= 1));
    check(&running.await.unwrap().unwrap(), 0, 1);
    check(&queued.await.unwrap().unwrap(), 10, 1);
    assert_eq!(replica.queue_depth(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_answer_times_out() {
    let slow = Setup { delay: Duration::from_millis(300), ..Default::default() };
    let (replica, _log) = start(slow, ReplicaConfig { timeout: Duration::from_millis(50), ..config(1, 4) }).await;
    let started = Instant::now();
    let err = replica.infer(request(0, 1, &[])).await.unwrap_err();
    assert!(matches!(err, ReplicaError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(250));
    assert_eq!(err.code(), ErrorCode::InferenceTimeout);
    assert_eq!(err.code().http_status(), 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_whose_caller_went_away_is_not_run() {
    let slow = Setup { delay: Duration::from_millis(200), ..Default::default() };
    let (replica, log) = start(slow, config(1, 8)).await;
    let running = tokio::spawn({
        let replica = replica.clone();
        async move { replica.infer(request(1, 1, &[])).await }
    });
    until("the first request runs", || log.started.load(Ordering::SeqCst) == 1).await;
    // Queued behind the running one, then abandoned: its future is dropped.
    let abandoned = tokio::time::timeout(Duration::from_millis(20), replica.infer(request(2, 1, &[]))).await;
    assert!(abandoned.is_err(), "the second request cannot have been answered yet");
    // And one that times out while queued.
    let short = Replica::infer(&replica, request(3, 1, &[]));
    let timed_out = tokio::time::timeout(Duration::from_millis(20), short).await;
    assert!(timed_out.is_err());
    check(&running.await.unwrap().unwrap(), 1, 1);
    check(&replica.infer(request(4, 1, &[])).await.unwrap(), 4, 1);
    assert_eq!(*log.firsts.lock().unwrap(), [1, 4], "abandoned requests were run");
    assert_eq!(log.started.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failing_loader_fails_the_replica() {
    let replica = Replica::start(
        "broken".into(),
        Box::new(|| Err(RuntimeError::Load("no such file: model.onnx".into()))),
        config(1, 4),
    );
    let err = replica.ready().await.unwrap_err();
    assert_eq!(err.to_string(), "model 'broken' failed: loading the model failed: no such file: model.onnx");
    assert_eq!(replica.state(), ReplicaState::Failed("loading the model failed: no such file: model.onnx".into()));
    assert_eq!(replica.inputs(), None);
    let err = replica.infer(request(0, 1, &[])).await.unwrap_err();
    assert!(matches!(&err, ReplicaError::NotReady(m) if m.contains("no such file")), "{err:?}");
    assert_eq!(err.code(), ErrorCode::ModelNotReady);
    assert_eq!(err.code().http_status(), 503);
    replica.stopped().await;
}

#[tokio::test]
async fn a_panicking_loader_fails_the_replica() {
    let replica = Replica::start("panics".into(), Box::new(|| panic!("corrupt weights")), config(1, 4));
    let err = replica.ready().await.unwrap_err();
    assert!(err.to_string().contains("loading panicked: corrupt weights"), "{err}");
    assert!(matches!(replica.state(), ReplicaState::Failed(_)));
}

#[tokio::test]
async fn a_panicking_backend_fails_the_request_and_the_replica() {
    let (replica, log) = start(Setup { panic: true, ..Default::default() }, config(1, 4)).await;
    let err = replica.infer(request(0, 1, &[])).await.unwrap_err();
    assert!(matches!(&err, ReplicaError::Runtime(RuntimeError::Inference(m)) if m.contains("panicked")), "{err:?}");
    assert_eq!(err.code(), ErrorCode::InferenceFailed);
    assert!(matches!(replica.state(), ReplicaState::Failed(m) if m.contains("test backend asked to panic")));
    replica.stopped().await;
    assert!(log.dropped_on_worker.load(Ordering::SeqCst));
    assert!(matches!(replica.infer(request(0, 1, &[])).await, Err(ReplicaError::NotReady(_))));
}

#[tokio::test]
async fn requests_while_loading_are_not_ready() {
    let log = Arc::new(Log::default());
    let slow = loader(Setup::default(), &log);
    let replica = Replica::start(
        "slow".into(),
        Box::new(move || {
            std::thread::sleep(Duration::from_millis(200));
            slow()
        }),
        config(1, 4),
    );
    assert_eq!(replica.state(), ReplicaState::Loading);
    let err = replica.infer(request(0, 1, &[])).await.unwrap_err();
    assert_eq!(err.to_string(), "model 'slow' is still loading");
    replica.ready().await.unwrap();
    assert_eq!(replica.state(), ReplicaState::Ready);
    assert_eq!(replica.outputs().map(|o| o.len()), Some(2));
    check(&replica.infer(request(7, 1, &[])).await.unwrap(), 7, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_answers_the_queue_and_drops_the_backend_on_its_thread() {
    let slow = Setup { delay: Duration::from_millis(200), ..Default::default() };
    let (replica, log) = start(slow, config(1, 8)).await;
    let running = tokio::spawn({
        let replica = replica.clone();
        async move { replica.infer(request(1, 1, &[])).await }
    });
    until("the first request runs", || log.started.load(Ordering::SeqCst) == 1).await;
    let queued = tokio::spawn({
        let replica = replica.clone();
        async move { replica.infer(request(2, 1, &[])).await }
    });
    until("the second request is queued", || replica.queue_depth() == 1).await;
    replica.stop();
    assert_eq!(replica.state(), ReplicaState::Stopped);
    let err = replica.infer(request(3, 1, &[])).await.unwrap_err();
    assert_eq!(err.to_string(), "model 'test' is stopped");
    // The running batch finishes; the queued request is answered, not run.
    check(&running.await.unwrap().unwrap(), 1, 1);
    assert!(matches!(queued.await.unwrap(), Err(ReplicaError::NotReady(_))));
    replica.stopped().await;
    assert!(log.dropped_on_worker.load(Ordering::SeqCst), "the backend must be dropped on the worker thread");
    assert_eq!(log.started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dropping_a_replica_stops_it() {
    let (replica, log) = start(Setup::default(), config(1, 4)).await;
    drop(replica);
    until("the backend is dropped", || log.dropped_on_worker.load(Ordering::SeqCst)).await;
}

#[tokio::test]
async fn invalid_requests_are_refused_before_queueing() {
    let (replica, log) = start(Setup::default(), config(4, 4)).await;
    let wrong = InferRequest {
        inputs: vec![Tensor::new("X", vec![1, 3], TensorData::Int32(vec![0; 3])).unwrap()],
        outputs: vec![],
    };
    let err = replica.infer(wrong).await.unwrap_err();
    assert_eq!(err.to_string(), "input 'X': expected shape [-1,2], got [1,3]");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    let err = replica.infer(request(0, 1, &["Z"])).await.unwrap_err();
    assert_eq!(err.to_string(), "unknown output 'Z' (the model has 'Y', 'S')");
    assert_eq!(log.started.load(Ordering::SeqCst), 0);
}
