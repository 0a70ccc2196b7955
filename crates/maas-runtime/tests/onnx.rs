//! The ONNX Runtime backend against the generated test models (scripts/gen_onnx_models.py) and
//! the Python onnxruntime as the reference. Needs ORT_DYLIB_PATH, MAAS_TEST_ONNX_DIR and
//! MAAS_TEST_PYTHON, which scripts/test.sh sets.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use maas_runtime::{
    Backend, DataType, InferRequest, IoSpec, OnnxBackend, OnnxConfig, Replica, ReplicaConfig, RuntimeError, Tensor,
    TensorData,
};

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: run the tests through scripts/test.sh, or first \
             `source scripts/services.sh && ensure_python_venv && ensure_onnxruntime`"
        ),
    }
}

fn model(name: &str) -> PathBuf {
    // Checked here too, so that a missing library is reported as such.
    env("ORT_DYLIB_PATH");
    PathBuf::from(env("MAAS_TEST_ONNX_DIR")).join(format!("{name}.onnx"))
}

fn config() -> OnnxConfig {
    OnnxConfig { intra_op_threads: 1, ..Default::default() }
}

fn load(name: &str) -> OnnxBackend {
    OnnxBackend::load(&model(name), &config()).unwrap()
}

fn int32(name: &str, rows: usize, f: impl Fn(usize) -> i32) -> Tensor {
    Tensor::new(name, vec![rows as i64, 16], TensorData::Int32((0..rows * 16).map(f).collect())).unwrap()
}

fn invalid(result: Result<Vec<Tensor>, RuntimeError>) -> String {
    match result {
        Err(RuntimeError::InvalidInput(message)) => message,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn simple_reports_its_signature() {
    let backend = load("simple");
    assert_eq!(backend.platform(), "onnx");
    let spec = |name: &str| IoSpec { name: name.into(), dtype: DataType::Int32, shape: vec![-1, 16] };
    assert_eq!(backend.inputs(), [spec("INPUT0"), spec("INPUT1")]);
    assert_eq!(backend.outputs(), [spec("OUTPUT0"), spec("OUTPUT1")]);
}

#[test]
fn simple_sums_and_subtracts_exactly() {
    let mut backend = load("simple");
    let a = |i: usize| i as i32 * 3 - 40;
    let b = |i: usize| 1000 - i as i32;
    let outputs = backend.infer(vec![int32("INPUT0", 3, a), int32("INPUT1", 3, b)], &[]).unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0].name, "OUTPUT0");
    assert_eq!(outputs[0].shape, [3, 16]);
    assert_eq!(outputs[0].data, TensorData::Int32((0..48).map(|i| a(i) + b(i)).collect()));
    assert_eq!(outputs[1].name, "OUTPUT1");
    assert_eq!(outputs[1].data, TensorData::Int32((0..48).map(|i| a(i) - b(i)).collect()));
}

#[test]
fn only_the_requested_outputs_come_back_in_the_requested_order() {
    let mut backend = load("simple");
    let inputs = || vec![int32("INPUT0", 1, |i| i as i32), int32("INPUT1", 1, |_| 1)];
    let one = backend.infer(inputs(), &["OUTPUT1".into()]).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name, "OUTPUT1");
    assert_eq!(one[0].data, TensorData::Int32((0..16).map(|i| i - 1).collect()));
    let both = backend.infer(inputs(), &["OUTPUT1".into(), "OUTPUT0".into()]).unwrap();
    let names: Vec<&str> = both.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["OUTPUT1", "OUTPUT0"]);
}

#[test]
fn invalid_requests_are_refused_before_running() {
    let mut backend = load("simple");
    let ok = || int32("INPUT1", 1, |_| 0);
    assert_eq!(
        invalid(backend.infer(vec![int32("INPUT0", 1, |_| 0), int32("INPUT7", 1, |_| 0)], &[])),
        "unknown input 'INPUT7' (the model takes 'INPUT0', 'INPUT1')"
    );
    assert_eq!(invalid(backend.infer(vec![ok()], &[])), "missing input 'INPUT0'");
    let fp32 = Tensor::new("INPUT0", vec![1, 16], TensorData::Fp32(vec![0.0; 16])).unwrap();
    assert_eq!(invalid(backend.infer(vec![fp32, ok()], &[])), "input 'INPUT0': expected INT32, got FP32");
    let narrow = Tensor::new("INPUT0", vec![1, 15], TensorData::Int32(vec![0; 15])).unwrap();
    assert_eq!(invalid(backend.infer(vec![narrow, ok()], &[])), "input 'INPUT0': expected shape [-1,16], got [1,15]");
    let flat = Tensor::new("INPUT0", vec![16], TensorData::Int32(vec![0; 16])).unwrap();
    assert_eq!(invalid(backend.infer(vec![flat, ok()], &[])), "input 'INPUT0': expected shape [-1,16], got [16]");
    assert_eq!(
        invalid(backend.infer(vec![int32("INPUT0", 1, |_| 0), ok()], &["OUTPUT9".into()])),
        "unknown output 'OUTPUT9' (the model has 'OUTPUT0', 'OUTPUT1')"
    );
}

#[test]
fn strings_are_upper_cased() {
    let mut backend = load("strings");
    assert_eq!(backend.inputs(), [IoSpec { name: "INPUT0".into(), dtype: DataType::Bytes, shape: vec![-1] }]);
    let words: Vec<Vec<u8>> = ["hello", "MaaS 1.0", "onnx runtime"].iter().map(|s| s.as_bytes().to_vec()).collect();
    let input = Tensor::new("INPUT0", vec![3], TensorData::Bytes(words)).unwrap();
    let outputs = backend.infer(vec![input], &[]).unwrap();
    let expected: Vec<Vec<u8>> = ["HELLO", "MAAS 1.0", "ONNX RUNTIME"].iter().map(|s| s.as_bytes().to_vec()).collect();
    assert_eq!(outputs[0].shape, [3]);
    assert_eq!(outputs[0].data, TensorData::Bytes(expected));
}

#[test]
fn bytes_that_are_not_utf8_are_invalid_input() {
    let mut backend = load("strings");
    let input = Tensor::new("INPUT0", vec![2], TensorData::Bytes(vec![b"fine".to_vec(), vec![0xff, 0xfe]])).unwrap();
    assert_eq!(
        invalid(backend.infer(vec![input], &[])),
        "input 'INPUT0': element 1 is not valid UTF-8 (ONNX STRING tensors hold UTF-8 text)"
    );
    let input = Tensor::new("INPUT0", vec![1], TensorData::Bytes(vec![b"a\0b".to_vec()])).unwrap();
    assert!(invalid(backend.infer(vec![input], &[])).contains("NUL byte"));
}

/// Runs `script` with the test venv's Python, `stdin` as its input; returns its stdout.
fn python(script: &str, stdin: &str) -> String {
    let mut child = Command::new(env("MAAS_TEST_PYTHON"))
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn dense_matches_the_python_onnxruntime() {
    let mut backend = load("dense");
    assert_eq!(backend.outputs(), [IoSpec { name: "OUTPUT0".into(), dtype: DataType::Fp32, shape: vec![-1, 32] }]);
    let rows = 5;
    let x: Vec<f32> = (0..rows * 64).map(|i| ((i as f32) * 0.37).sin() * 2.0).collect();
    let reference = python(
        r#"
import json, sys
import numpy as np
import onnxruntime as ort
req = json.load(sys.stdin)
session = ort.InferenceSession(req["model"], providers=["CPUExecutionProvider"])
x = np.array(req["x"], dtype=np.float32).reshape(req["shape"])
print(json.dumps(session.run(["OUTPUT0"], {"INPUT0": x})[0].ravel().tolist()))
"#,
        &serde_json::json!({ "model": model("dense"), "x": x, "shape": [rows, 64] }).to_string(),
    );
    let expected: Vec<f32> = serde_json::from_str(&reference).unwrap();
    let input = Tensor::new("INPUT0", vec![rows as i64, 64], TensorData::Fp32(x)).unwrap();
    let outputs = backend.infer(vec![input], &[]).unwrap();
    assert_eq!(outputs[0].shape, [rows as i64, 32]);
    let TensorData::Fp32(got) = &outputs[0].data else { panic!("expected FP32, got {:?}", outputs[0].dtype()) };
    assert_eq!(got.len(), expected.len());
    assert!(got.iter().any(|&v| v > 0.0) && got.contains(&0.0), "relu output should have both signs clipped");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!((g - e).abs() <= 1e-5, "element {i}: {g} vs reference {e}");
    }
}

/// Every v2 data type in and out of ONNX Runtime, through a model of Identity nodes written by
/// the venv's `onnx` package.
#[test]
fn every_data_type_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.onnx");
    python(
        r#"
import sys
import onnx
from onnx import TensorProto, helper
types = {"BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
         "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
         "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
         "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
         "BYTES": TensorProto.STRING}
inputs = [helper.make_tensor_value_info(f"x_{n}", t, ["batch", 2]) for n, t in types.items()]
outputs = [helper.make_tensor_value_info(f"y_{n}", t, ["batch", 2]) for n, t in types.items()]
nodes = [helper.make_node("Identity", [f"x_{n}"], [f"y_{n}"]) for n in types]
model = helper.make_model(helper.make_graph(nodes, "identity", inputs, outputs),
                          opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 9
onnx.checker.check_model(model)
onnx.save(model, sys.stdin.read())
"#,
        path.to_str().unwrap(),
    );
    let mut backend = OnnxBackend::load(&path, &config()).unwrap();
    let data = [
        TensorData::Bool(vec![true, false, false, true]),
        TensorData::Uint8(vec![0, 1, 254, 255]),
        TensorData::Uint16(vec![0, 1, 65534, 65535]),
        TensorData::Uint32(vec![0, 1, u32::MAX - 1, u32::MAX]),
        TensorData::Uint64(vec![0, 1, u64::MAX - 1, u64::MAX]),
        TensorData::Int8(vec![i8::MIN, -1, 0, i8::MAX]),
        TensorData::Int16(vec![i16::MIN, -1, 0, i16::MAX]),
        TensorData::Int32(vec![i32::MIN, -1, 0, i32::MAX]),
        TensorData::Int64(vec![i64::MIN, -1, 0, i64::MAX]),
        TensorData::Fp16([-2.5f32, 0.0, 1.0, 65504.0].into_iter().map(half::f16::from_f32).collect()),
        TensorData::Fp32(vec![-1.5, 0.0, f32::MIN_POSITIVE, f32::MAX]),
        TensorData::Fp64(vec![-1.5, 0.0, f64::MIN_POSITIVE, f64::MAX]),
        TensorData::Bytes(vec![b"".to_vec(), b"a".to_vec(), "\u{e9}t\u{e9}".as_bytes().to_vec(), b"z z".to_vec()]),
    ];
    for d in &data {
        let spec = backend.inputs().iter().find(|s| s.name == format!("x_{}", d.dtype())).unwrap();
        assert_eq!(spec.dtype, d.dtype());
        assert_eq!(spec.shape, [-1, 2]);
    }
    let inputs = data.iter().map(|d| Tensor::new(format!("x_{}", d.dtype()), vec![2, 2], d.clone()).unwrap()).collect();
    let outputs = backend.infer(inputs, &[]).unwrap();
    assert_eq!(outputs.len(), data.len());
    for d in &data {
        let out = outputs.iter().find(|t| t.name == format!("y_{}", d.dtype())).unwrap();
        assert_eq!(out.shape, [2, 2]);
        assert_eq!(&out.data, d, "{}", d.dtype());
    }
}

#[test]
fn a_missing_model_file_is_a_load_error() {
    let err = OnnxBackend::load(&model("does-not-exist"), &config()).unwrap_err();
    assert!(matches!(&err, RuntimeError::Load(m) if m.contains("does-not-exist.onnx")), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simple_through_a_batching_replica() {
    let replica = Replica::start(
        "simple".into(),
        OnnxBackend::loader(model("simple"), config()),
        ReplicaConfig {
            max_batch_size: 8,
            max_queue_delay: Duration::from_millis(20),
            queue_capacity: 32,
            timeout: Duration::from_secs(10),
        },
    );
    replica.ready().await.unwrap();
    assert_eq!(replica.inputs().unwrap().len(), 2);
    let replica = std::sync::Arc::new(replica);
    let calls = (0..8).map(|k| {
        let replica = replica.clone();
        tokio::spawn(async move {
            let rows = 1 + k % 3;
            let request = InferRequest {
                inputs: vec![
                    int32("INPUT0", rows, move |i| (k * 1000 + i) as i32),
                    int32("INPUT1", rows, move |_| k as i32),
                ],
                outputs: vec!["OUTPUT0".into()],
            };
            let outputs = replica.infer(request).await.unwrap();
            assert_eq!(outputs.len(), 1);
            assert_eq!(outputs[0].shape, [rows as i64, 16]);
            let expected: Vec<i32> = (0..rows * 16).map(|i| (k * 1000 + i + k) as i32).collect();
            assert_eq!(outputs[0].data, TensorData::Int32(expected), "request {k}");
        })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.unwrap();
    }
    // Validation happens before queueing, with the backend's messages.
    let bad = InferRequest { inputs: vec![int32("INPUT0", 1, |_| 0)], outputs: vec![] };
    let err = replica.infer(bad).await.unwrap_err();
    assert_eq!(err.to_string(), "missing input 'INPUT1'");
}
