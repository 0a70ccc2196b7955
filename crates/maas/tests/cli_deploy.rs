//! The deployment CLI end to end: `maas deploy`, `maas deployments` and `maas predict` (the
//! real binary) against a real `maas serve` running ONNX Runtime: waiting for readiness,
//! `.npy` and JSON inputs, the server's v2 errors, API keys, changing versions, deleting.

use std::path::Path;
use std::process::Output;

use maas_testkit::cli::{fails, json_of, ok};

use maas_testkit::{Server, ServerOptions, password_of, register};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_maas");

/// Runs `maas ARGS` with its own config dir, pointed at `server`.
fn maas(config_dir: &Path, server: &Server, args: &[&str]) -> Output {
    maas_testkit::cli::run(Path::new(BIN), config_dir, server, args)
}

fn onnx_dir() -> std::path::PathBuf {
    std::env::var("MAAS_TEST_ONNX_DIR").expect("MAAS_TEST_ONNX_DIR is not set: use scripts/test.sh").into()
}

/// A NumPy `.npy` file (format 1.0, C order) of little-endian `descr` elements.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    assert_eq!(out.len() % 64, 0);
    out.extend_from_slice(data);
    out
}

fn ints(output: &Value, name: &str) -> Vec<i64> {
    let outputs = output["outputs"].as_array().expect("outputs");
    let o = outputs.iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("no {name} in {output}"));
    o["data"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

#[tokio::test]
async fn deploy_predict_update_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, keyed) = (dir.path().join("cfg"), dir.path().join("keyed"));
    let s = Server::start(Path::new(BIN), ServerOptions::default()).unwrap();
    register(&s, "bob").await.unwrap();
    ok(&maas(&cfg, &s, &["login", "bob", "--password", &password_of("bob")]));

    // A published ONNX version: INPUT0, INPUT1 (INT32 [-1, 16]) → OUTPUT0 = sum, OUTPUT1 = difference.
    ok(&maas(&cfg, &s, &["models", "create", "bob/simple", "--task", "tensor"]));
    let model_dir = dir.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    std::fs::copy(onnx_dir().join("simple.onnx"), model_dir.join("model.onnx")).unwrap();
    let model = model_dir.to_str().unwrap();
    ok(&maas(&cfg, &s, &["push", model, "bob/simple", "--version", "1", "--format", "onnx", "--publish"]));

    // Deploy and wait: the final status is ready, with the settings given.
    let deploy = ["deploy", "bob/simple", "--model", "bob/simple", "--version", "1", "--max-batch-size", "4"];
    let status = json_of(&maas(&cfg, &s, &[&deploy[..], &["--wait", "--output", "json"]].concat()));
    assert_eq!(
        (&status["state"], &status["endpoint"], &status["version"]),
        (&json!("ready"), &json!("bob/simple"), &json!("1"))
    );
    assert_eq!(status["spec"]["batching"]["max_batch_size"], 4);
    assert_eq!(status["replica_status"][0]["state"], "ready", "{status}");
    let taken = fails(&maas(&cfg, &s, &deploy));
    assert!(taken.contains("deployment_exists"), "{taken}");
    let missing = fails(&maas(&cfg, &s, &["deploy", "bob/other", "--model", "bob/simple", "--version", "9"]));
    assert!(missing.contains("version_not_found"), "{missing}");
    let bad =
        fails(&maas(&cfg, &s, &["deploy", "bob/x", "--model", "bob/simple", "--version", "1", "--replicas", "99"]));
    assert!(bad.contains("replicas must be 1 to 16") && bad.contains("invalid_request"), "{bad}");

    // Text mode shows replica states while waiting (stderr) and the status (stdout).
    let text =
        maas(&cfg, &s, &["deploy", "bob/two", "--model", "bob/simple", "--version", "1", "--replicas", "2", "--wait"]);
    let stdout = ok(&text);
    assert!(stdout.contains("Deployment bob/two: ready") && stdout.contains("REPLICA"), "{stdout}");
    assert!(String::from_utf8_lossy(&text.stderr).contains("bob/two: "), "{text:?}");

    let list = json_of(&maas(&cfg, &s, &["deployments", "list", "--tenant", "bob", "--output", "json"]));
    let mut names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["simple", "two"]);
    let table = ok(&maas(&cfg, &s, &["deployments", "list", "--tenant", "bob"]));
    assert!(table.contains("NAME") && table.lines().any(|l| l.starts_with("two ") && l.ends_with("2/2")), "{table}");
    let shown = json_of(&maas(&cfg, &s, &["deployments", "show", "bob/simple", "--output", "json"]));
    assert_eq!(
        (&shown["state"], &shown["model"], &shown["replicas"]),
        (&json!("ready"), &json!("bob/simple"), &json!(1))
    );
    let shown = ok(&maas(&cfg, &s, &["deployments", "show", "bob/simple"]));
    assert!(shown.contains("bob/simple version 1") && shown.contains("1/1 ready"), "{shown}");
    ok(&maas(&cfg, &s, &["deployments", "delete", "bob/two"]));

    // Predict: an .npy file written here, and a nested JSON array (datatype from the metadata).
    let a: Vec<i32> = (0..16).collect();
    let a_npy = dir.path().join("a.npy");
    std::fs::write(&a_npy, npy("<i4", &[1, 16], &a.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())).unwrap();
    let input0 = format!("INPUT0=@{}", a_npy.display());
    let input1 = format!("INPUT1={}", json!([vec![2; 16]]));
    let predict = ["predict", "bob/simple", "--input", &input0, "--input", &input1];
    let out = json_of(&maas(&cfg, &s, &[&predict[..], &["--output", "json"]].concat()));
    assert_eq!((&out["model_name"], &out["model_version"]), (&json!("bob/simple"), &json!("1")), "{out}");
    let (sum, diff) = (ints(&out, "OUTPUT0"), ints(&out, "OUTPUT1"));
    assert_eq!(sum, (2..18).collect::<Vec<_>>());
    assert_eq!((sum.iter().sum::<i64>(), diff.iter().sum::<i64>()), (152, 88));
    let text = ok(&maas(&cfg, &s, &predict));
    assert!(text.contains("bob/simple (version 1)"), "{text}");
    let row = text.lines().find(|l| l.starts_with("OUTPUT0")).unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("INT32") && row.contains("[1, 16]") && row.contains("[2, 3, 4, 5,") && row.ends_with("17]"),
        "{row}"
    );

    // A tensor object from a JSON file, one output asked for.
    let b_json = dir.path().join("b.json");
    std::fs::write(&b_json, json!({ "shape": [1, 16], "datatype": "INT32", "data": vec![1; 16] }).to_string()).unwrap();
    let input1_file = format!("INPUT1=@{}", b_json.display());
    let args = ["predict", "bob/simple", "--input", &input0, "--input", &input1_file, "--output-name", "OUTPUT1"];
    let out = json_of(&maas(&cfg, &s, &[&args[..], &["--output", "json"]].concat()));
    assert_eq!(out["outputs"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(ints(&out, "OUTPUT1").iter().sum::<i64>(), 120 - 16);

    // The server's v2 errors reach stderr, with their code.
    let f_npy = dir.path().join("f.npy");
    std::fs::write(&f_npy, npy("<f4", &[1, 16], &[0u8; 64])).unwrap();
    let wrong = format!("INPUT0=@{}", f_npy.display());
    let err = fails(&maas(&cfg, &s, &["predict", "bob/simple", "--input", &wrong, "--input", &input1]));
    assert!(err.contains("expected INT32, got FP32") && err.contains("invalid_request"), "{err}");
    let err = fails(&maas(&cfg, &s, &["predict", "bob/simple", "--input", &input0]));
    assert!(err.contains("INPUT1") && err.contains("HTTP 400"), "missing input: {err}");
    let err = fails(&maas(&cfg, &s, &["predict", "bob/simple", "--input", "NOPE=[[1]]"]));
    assert!(err.contains("no such input") && err.contains("INPUT0, INPUT1"), "{err}");
    let err = fails(&maas(&cfg, &s, &["predict", "bob/simple", "--input", "INPUT0=[[1, 2], [3]]"]));
    assert!(err.contains("rectangular"), "{err}");
    let fortran = dir.path().join("fortran.npy");
    let mut bytes = npy("<i4", &[1, 16], &[0u8; 64]);
    let at = bytes.windows(5).position(|w| w == b"False").unwrap();
    bytes.splice(at..at + 5, *b"True ");
    std::fs::write(&fortran, bytes).unwrap();
    let err = fails(&maas(&cfg, &s, &["predict", "bob/simple", "--input", &format!("INPUT0=@{}", fortran.display())]));
    assert!(err.contains("Fortran order"), "{err}");

    // An API key with the infer scope works; one without it is refused by the server.
    let key =
        json_of(&maas(&cfg, &s, &["keys", "create", "bob", "--name", "k", "--scopes", "infer", "--output", "json"]));
    ok(&maas(&keyed, &s, &["login", "--api-key", key["key"].as_str().unwrap()]));
    let out = json_of(&maas(&keyed, &s, &[&predict[..], &["--output", "json"]].concat()));
    assert_eq!(ints(&out, "OUTPUT0").iter().sum::<i64>(), 152);
    let read =
        json_of(&maas(&cfg, &s, &["keys", "create", "bob", "--name", "r", "--scopes", "read", "--output", "json"]));
    let read_only = dir.path().join("read");
    ok(&maas(&read_only, &s, &["login", "--api-key", read["key"].as_str().unwrap()]));
    let err = fails(&maas(&read_only, &s, &predict));
    assert!(err.contains("HTTP 403"), "{err}");

    // A second published version: update moves the deployment onto it; settings merge.
    ok(&maas(&cfg, &s, &["push", model, "bob/simple", "--version", "2", "--format", "onnx", "--publish"]));
    let args = ["deployments", "update", "bob/simple", "--version", "2", "--wait", "--output", "json"];
    let status = json_of(&maas(&cfg, &s, &args));
    assert_eq!((&status["state"], &status["version"]), (&json!("ready"), &json!("2")), "{status}");
    assert_eq!(status["spec"]["batching"]["max_batch_size"], 4, "the spec is kept: {status}");
    let out = json_of(&maas(&cfg, &s, &[&predict[..], &["--output", "json"]].concat()));
    assert_eq!(out["model_version"], "2");
    let args = ["deployments", "update", "bob/simple", "--timeout-ms", "1234", "--wait", "--output", "json"];
    let status = json_of(&maas(&cfg, &s, &args));
    assert_eq!((&status["version"], &status["spec"]["timeout_ms"]), (&json!("2"), &json!(1234)), "{status}");
    assert_eq!(status["spec"]["batching"]["max_batch_size"], 4, "{status}");
    assert!(fails(&maas(&cfg, &s, &["deployments", "update", "bob/simple"])).contains("nothing to change"));
    let err = fails(&maas(&cfg, &s, &["deployments", "update", "bob/simple", "--version", "7"]));
    assert!(err.contains("version_not_found"), "{err}");

    // Deleted: inference and status are both "not found".
    let deleted = json_of(&maas(&cfg, &s, &["deployments", "delete", "bob/simple", "--output", "json"]));
    assert_eq!(deleted, json!({ "deleted": "bob/simple" }));
    let err = fails(&maas(&cfg, &s, &predict));
    assert!(err.contains("deployment_not_found") && err.contains("HTTP 404"), "{err}");
    let err = fails(&maas(&cfg, &s, &["deployments", "show", "bob/simple"]));
    assert!(err.contains("deployment_not_found"), "{err}");
    let list = json_of(&maas(&cfg, &s, &["deployments", "list", "--tenant", "bob", "--output", "json"]));
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn a_failed_deployment_exits_non_zero_with_the_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    // Replicas cannot load ONNX Runtime on this server, so every one of them fails.
    let options = ServerOptions::default().env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so");
    let s = Server::start(Path::new(BIN), options).unwrap();
    register(&s, "bob").await.unwrap();
    ok(&maas(&cfg, &s, &["login", "bob", "--password", &password_of("bob")]));
    ok(&maas(&cfg, &s, &["models", "create", "bob/simple", "--task", "tensor"]));
    let file = dir.path().join("model.onnx");
    std::fs::copy(onnx_dir().join("simple.onnx"), &file).unwrap();
    let file = file.to_str().unwrap();
    ok(&maas(&cfg, &s, &["push", file, "bob/simple", "--version", "1", "--format", "onnx", "--publish"]));

    let out = maas(&cfg, &s, &["deploy", "bob/simple", "--model", "bob/simple", "--version", "1", "--wait"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = fails(&out);
    assert!(stdout.contains("Deployment bob/simple: failed") && stdout.contains("REASON"), "{stdout}");
    assert!(
        stderr.contains("deployment bob/simple failed: replica 0: ") && stderr.contains("ONNX Runtime"),
        "{stderr}"
    );
    let status = json_of(&maas(&cfg, &s, &["deployments", "show", "bob/simple", "--output", "json"]));
    assert_eq!((&status["state"], &status["replica_status"][0]["state"]), (&json!("failed"), &json!("failed")));
}
