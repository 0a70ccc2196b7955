//! Deployments through the real binary: create (202, then ready), status, validation,
//! changing the version, deleting, and coming back after a restart.

use std::path::Path;
use std::time::Duration;

use maas_testkit::{Server, ServerOptions, call, client, code, user};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_maas");

fn onnx(name: &str) -> Vec<u8> {
    let dir = std::env::var("MAAS_TEST_ONNX_DIR").expect("MAAS_TEST_ONNX_DIR is not set: use scripts/test.sh");
    std::fs::read(Path::new(&dir).join(name)).unwrap()
}

/// Publishes `file` as version `version` of `bob/simple` (creating the model once).
async fn publish(s: &Server, bob: &Client, version: &str, format: &str, file: &str, data: Vec<u8>) {
    call(
        bob.post(s.at("/api/v1/models"))
            .json(&json!({ "tenant": "bob", "name": "simple", "task": "tensor", "visibility": "private" })),
    )
    .await;
    let (status, body) = call(
        bob.post(s.at("/api/v1/models/bob/simple/versions")).json(&json!({ "version": version, "format": format })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = s.at(&format!("/api/v1/models/bob/simple/versions/{version}/files/{file}"));
    assert_eq!(call(bob.put(url).body(data)).await.0, StatusCode::CREATED);
    let (status, body) = call(bob.post(s.at(&format!("/api/v1/models/bob/simple/versions/{version}/publish")))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn wait_ready(s: &Server, c: &Client, name: &str) -> Value {
    for _ in 0..200 {
        let (_, status) = call(c.get(s.at(&format!("/api/v1/deployments/{name}")))).await;
        if status["ready"] == true || status["state"] == "failed" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} did not become ready");
}

async fn infer(s: &Server, key: &str, name: &str) -> (StatusCode, Value) {
    let row: Vec<i32> = (0..16).collect();
    call(client().post(s.at(&format!("/v2/models/{name}/infer"))).bearer_auth(key).json(&json!({
        "inputs": [
            { "name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": row },
            { "name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": vec![2; 16] },
        ]
    })))
    .await
}

#[tokio::test]
async fn deploy_change_delete_and_restore() {
    let data_dir = tempfile::tempdir().unwrap();
    let options = ServerOptions::default().data_dir(data_dir.path());
    let s = Server::start(Path::new(BIN), options.clone()).unwrap();
    let _root = user(&s, "root").await.unwrap();
    let bob = user(&s, "bob").await.unwrap();
    publish(&s, &bob, "1", "onnx", "model.onnx", onnx("simple.onnx")).await;

    // Validation happens before anything runs.
    let create = |body: Value| bob.post(s.at("/api/v1/deployments")).json(&body);
    let base = json!({ "tenant": "bob", "name": "simple", "model": "bob/simple", "version": "1" });
    for (patch, expected) in [
        (json!({ "replicas": 0 }), "invalid_request"),
        (json!({ "replicas": 99 }), "invalid_request"),
        (json!({ "batching": { "max_batch_size": 0 } }), "invalid_request"),
        (json!({ "timeout_ms": 0 }), "invalid_request"),
        (json!({ "version": "9" }), "version_not_found"),
        (json!({ "model": "bob/nothing" }), "model_not_found"),
        (json!({ "surprise": true }), "invalid_request"),
    ] {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        let (status, got) = call(create(body.clone())).await;
        assert_eq!(code(&got), expected, "{body}: {status} {got}");
    }

    let mut body = base.clone();
    body["replicas"] = json!(2);
    body["batching"] = json!({ "max_batch_size": 4, "max_queue_delay_us": 1000 });
    let (status, created) = call(create(body.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!((&created["endpoint"], &created["version"]), (&json!("bob/simple"), &json!("1")));
    let (status, dup) = call(create(body)).await;
    assert_eq!((status, code(&dup)), (StatusCode::CONFLICT, "deployment_exists"));
    let ready = wait_ready(&s, &bob, "bob/simple").await;
    assert_eq!(ready["state"], "ready", "{ready}");
    assert_eq!(ready["replica_status"].as_array().unwrap().len(), 2);
    let (_, listed) = call(bob.get(s.at("/api/v1/deployments?tenant=bob"))).await;
    assert_eq!(listed["items"][0]["name"], "simple");

    let (_, key) =
        call(bob.post(s.at("/api/v1/tenants/bob/keys")).json(&json!({ "name": "k", "scopes": ["infer"] }))).await;
    let key = key["key"].as_str().unwrap().to_owned();
    let (status, out) = infer(&s, &key, "bob/simple").await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["outputs"][0]["data"][15], 17);

    // A new version: the deployment restarts on it.
    let mut doubled = onnx("simple.onnx");
    doubled.extend_from_slice(&[]);
    publish(&s, &bob, "2", "onnx", "model.onnx", doubled).await;
    let (status, changed) =
        call(bob.patch(s.at("/api/v1/deployments/bob/simple")).json(&json!({ "version": "2", "replicas": 1 }))).await;
    assert_eq!((status, &changed["version"]), (StatusCode::ACCEPTED, &json!("2")), "{changed}");
    let ready = wait_ready(&s, &bob, "bob/simple").await;
    assert_eq!((&ready["version"], ready["replica_status"].as_array().unwrap().len()), (&json!("2"), 1));
    let (status, out) = infer(&s, &key, "bob/simple").await;
    assert_eq!((status, &out["model_version"]), (StatusCode::OK, &json!("2")));

    // An external version needs `external` settings saying where its engine runs.
    publish(&s, &bob, "3", "external", "notes.txt", b"elsewhere".to_vec()).await;
    let (status, body) = call(bob.patch(s.at("/api/v1/deployments/bob/simple")).json(&json!({ "version": "3" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");

    // Deployments come back after a restart.
    s.stop();
    let s = Server::start(Path::new(BIN), options.clone()).unwrap();
    let bob = maas_testkit::browser();
    bob.post(s.at("/api/v1/auth/login"))
        .json(&json!({ "username": "bob", "password": maas_testkit::password_of("bob") }))
        .send()
        .await
        .unwrap();
    let ready = wait_ready(&s, &bob, "bob/simple").await;
    assert_eq!((&ready["state"], &ready["version"]), (&json!("ready"), &json!("2")));
    assert_eq!(infer(&s, &key, "bob/simple").await.0, StatusCode::OK);

    let (status, _) = call(bob.delete(s.at("/api/v1/deployments/bob/simple"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = infer(&s, &key, "bob/simple").await;
    assert_eq!((status, &body["code"]), (StatusCode::NOT_FOUND, &json!("deployment_not_found")), "{body}");
    let (status, body) = call(bob.get(s.at("/api/v1/deployments/bob/simple"))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "deployment_not_found"));
}

#[tokio::test]
async fn a_broken_model_file_fails_visibly() {
    let s = Server::start(Path::new(BIN), ServerOptions::default()).unwrap();
    let bob = user(&s, "bob").await.unwrap();
    // Publish checks the graph's inputs and outputs, not that the runtime can execute it:
    // an operator that does not exist passes publishing and fails at load time.
    let mut model = onnx("simple.onnx");
    let at = model.windows(3).position(|w| w == b"Add").expect("the Add node");
    model[at..at + 3].copy_from_slice(b"Zzz");
    publish(&s, &bob, "1", "onnx", "model.onnx", model).await;
    let (status, _) = call(bob.post(s.at("/api/v1/deployments")).json(&json!({
        "tenant": "bob", "name": "broken", "model": "bob/simple", "version": "1" })))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let status = wait_ready(&s, &bob, "bob/broken").await;
    assert_eq!(status["state"], "failed", "{status}");
    let reason = status["replica_status"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("Zzz"), "the reason names the problem: {reason}");
    let (_, key) =
        call(bob.post(s.at("/api/v1/tenants/bob/keys")).json(&json!({ "name": "k", "scopes": ["infer"] }))).await;
    let (status, body) = infer(&s, key["key"].as_str().unwrap(), "bob/broken").await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("model_not_ready")),
        "v2 error shape: {body}"
    );
    assert!(body["error"].is_string(), "{body}");

    // Triton's repository index shows it unavailable, with the reason, and leaves it out of the ready ones.
    let key = key["key"].as_str().unwrap();
    let index = |body: &'static str| call(client().post(s.at("/v2/repository/index")).bearer_auth(key).body(body));
    let (status, body) = index("").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body[0]["name"], &body[0]["version"], &body[0]["state"]),
        (&json!("bob/broken"), &json!("1"), &json!("UNAVAILABLE"))
    );
    assert!(body[0]["reason"].as_str().unwrap().contains("Zzz"), "{body}");
    let (status, body) = index(r#"{"ready": true}"#).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
}
