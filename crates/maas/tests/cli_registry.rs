//! The registry CLI end to end: `maas models`, `maas push` and `maas pull` (the real binary)
//! against a real `maas serve`: skipping, reuse, publishing, and resuming both ways.

use std::path::Path;
use std::process::{Command, Output};

use maas_testkit::cli::{fails, json_of, ok};

use maas_testkit::{Server, ServerOptions, client, password_of, register};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_maas");

/// Runs `maas ARGS` with its own config dir, pointed at `server`.
fn maas(config_dir: &Path, server: &Server, args: &[&str]) -> Output {
    maas_testkit::cli::run(Path::new(BIN), config_dir, server, args)
}

/// A server with `alice` registered and logged in through the CLI in `cfg`.
async fn logged_in(cfg: &Path) -> Server {
    let s = Server::start(Path::new(BIN), ServerOptions::default()).unwrap();
    register(&s, "alice").await.unwrap();
    ok(&maas(cfg, &s, &["login", "alice", "--password", &password_of("alice")]));
    s
}

/// The session the CLI stored, as a `Cookie` header value.
fn session_cookie(cfg: &Path) -> String {
    let creds: Value = serde_json::from_slice(&std::fs::read(cfg.join("credentials.json")).unwrap()).unwrap();
    format!("maas_session={}", creds["session"].as_str().unwrap())
}

/// `sha256sum FILE`, an independent check of the hashes.
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

/// Deterministic bytes that do not compress to nothing.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A valid safetensors file with one F32 tensor `w` of shape [2].
fn tiny_safetensors() -> Vec<u8> {
    let mut header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.to_vec();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    file.extend_from_slice(&1.0f32.to_le_bytes());
    file.extend_from_slice(&2.0f32.to_le_bytes());
    file
}

fn actions(summary: &Value) -> Vec<(String, String)> {
    summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_owned(), f["action"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn models_create_list_show_delete() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let anon = dir.path().join("anon");
    let s = logged_in(&cfg).await;
    let readme = dir.path().join("README.md");
    std::fs::write(&readme, "# Tiny\n\nA *tiny* model.").unwrap();

    let created = json_of(&maas(
        &cfg,
        &s,
        &[
            "models",
            "create",
            "alice/tiny",
            "--task",
            "embeddings",
            "--public",
            "--description",
            "A tiny encoder",
            "--tag",
            "demo",
            "--tag",
            "onnx",
            "--license",
            "apache-2.0",
            "--readme",
            readme.to_str().unwrap(),
            "--output",
            "json",
        ],
    ));
    assert_eq!(created["owner"], "alice");
    assert_eq!(created["name"], "tiny");
    assert_eq!(created["visibility"], "public");
    assert_eq!(created["tags"], serde_json::json!(["demo", "onnx"]));
    assert!(ok(&maas(&cfg, &s, &["models", "create", "alice/secret", "--task", "tensor"])).contains("private"));
    let taken = fails(&maas(&cfg, &s, &["models", "create", "alice/tiny", "--task", "tensor"]));
    assert!(taken.contains("model_exists"), "{taken}");
    assert!(fails(&maas(&cfg, &s, &["models", "create", "tiny", "--task", "tensor"])).contains("TENANT/NAME"));

    let mine = json_of(&maas(&cfg, &s, &["models", "list", "--sort", "updated", "--output", "json"]));
    assert_eq!(mine["total"], 2);
    let public = json_of(&maas(&anon, &s, &["models", "list", "--output", "json"]));
    assert_eq!(public["total"], 1, "anonymous callers see public models only: {public}");
    assert_eq!(public["items"][0]["name"], "tiny");
    let found = json_of(&maas(&anon, &s, &["models", "list", "--q", "encoder", "--tag", "demo", "--output", "json"]));
    assert_eq!(found["total"], 1);
    let none = json_of(&maas(&cfg, &s, &["models", "list", "--task", "text-generation", "--output", "json"]));
    assert_eq!(none["total"], 0);
    let table = ok(&maas(&anon, &s, &["models", "list", "--owner", "alice", "--page", "1"]));
    assert!(table.contains("alice/tiny") && table.contains("embeddings") && !table.contains("secret"), "{table}");

    let shown = json_of(&maas(&anon, &s, &["models", "show", "alice/tiny", "--output", "json"]));
    assert_eq!(shown["license"], "apache-2.0");
    assert!(shown["readme"].as_str().unwrap().contains("A *tiny* model"));
    assert_eq!(shown["versions"], serde_json::json!([]));
    let hidden = fails(&maas(&anon, &s, &["models", "show", "alice/secret"]));
    assert!(hidden.contains("model_not_found"), "{hidden}");

    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("model.onnx"), b"not really onnx").unwrap();
    ok(&maas(&cfg, &s, &["push", files.to_str().unwrap(), "alice/tiny", "--version", "0.1"]));
    let shown = json_of(&maas(&cfg, &s, &["models", "show", "alice/tiny", "--output", "json"]));
    assert_eq!(shown["versions"][0]["version"], "0.1");
    assert_eq!(shown["versions"][0]["format"], "onnx", "inferred from the extension");
    assert_eq!(shown["versions"][0]["state"], "draft");
    let text = ok(&maas(&cfg, &s, &["models", "show", "alice/tiny"]));
    assert!(text.contains("alice/tiny") && text.contains("0.1") && text.contains("draft"), "{text}");

    let deleted = json_of(&maas(&cfg, &s, &["models", "delete", "alice/tiny", "--output", "json"]));
    assert_eq!(deleted["deleted"], "alice/tiny");
    assert!(fails(&maas(&cfg, &s, &["models", "show", "alice/tiny"])).contains("model_not_found"));
    let deleted_again = fails(&maas(&cfg, &s, &["models", "delete", "alice/tiny"]));
    assert!(deleted_again.contains("model_not_found"), "{deleted_again}");
}

#[tokio::test]
async fn push_skips_unchanged_reuses_stored_and_pull_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let s = logged_in(&cfg).await;
    ok(&maas(&cfg, &s, &["models", "create", "alice/enc", "--task", "embeddings"]));

    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("1_Pooling")).unwrap();
    std::fs::create_dir_all(src.join(".git")).unwrap();
    std::fs::write(src.join("weights.bin"), bytes(300_000, 1)).unwrap();
    std::fs::write(src.join("tokenizer.json"), br#"{"vocab": ["a", "b"]}"#).unwrap();
    std::fs::write(src.join("1_Pooling/config.json"), br#"{"pooling": "mean"}"#).unwrap();
    std::fs::write(src.join(".git/HEAD"), b"ref: refs/heads/main").unwrap();
    std::fs::write(src.join(".DS_Store"), b"junk").unwrap();
    let src_arg = src.to_str().unwrap();

    // Without a recognisable model file the format must be given.
    let needs_format = fails(&maas(&cfg, &s, &["push", src_arg, "alice/enc", "--version", "v1"]));
    assert!(needs_format.contains("--format"), "{needs_format}");

    let first = json_of(&maas(
        &cfg,
        &s,
        &["push", src_arg, "alice/enc", "--version", "v1", "--format", "external", "--output", "json"],
    ));
    assert_eq!(first["created"], true);
    assert_eq!(
        (first["uploaded"].as_u64(), first["skipped"].as_u64(), first["reused"].as_u64()),
        (Some(3), Some(0), Some(0))
    );
    let total: u64 = ["weights.bin", "tokenizer.json", "1_Pooling/config.json"]
        .iter()
        .map(|f| std::fs::metadata(src.join(f)).unwrap().len())
        .sum();
    assert_eq!(first["uploaded_bytes"], total);
    let paths: Vec<String> = actions(&first).into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["1_Pooling/config.json", "tokenizer.json", "weights.bin"], "hidden files are skipped");
    let listed = client()
        .get(s.at("/api/v1/models/alice/enc/versions/v1"))
        .header("cookie", session_cookie(&cfg))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let weights = listed["files"].as_array().unwrap().iter().find(|f| f["path"] == "weights.bin").unwrap();
    assert_eq!(weights["sha256"], sha256sum(&src.join("weights.bin")).as_str());

    // Again into the same draft: nothing is sent.
    let again = json_of(&maas(&cfg, &s, &["push", src_arg, "alice/enc", "--version", "v1", "--output", "json"]));
    assert_eq!(again["created"], false);
    assert_eq!(again["format"], "external", "the draft's format is kept");
    assert_eq!((again["uploaded"].as_u64(), again["skipped"].as_u64()), (Some(0), Some(3)));
    assert!(actions(&again).iter().all(|(_, a)| a == "skipped"));

    // One changed file is uploaded, the rest skipped (text output).
    std::fs::write(src.join("tokenizer.json"), br#"{"vocab": ["a", "b", "c"]}"#).unwrap();
    let text = ok(&maas(&cfg, &s, &["push", src_arg, "alice/enc", "--version", "v1"]));
    assert!(text.contains("uploaded 1 files") && text.contains("skipped 2") && text.contains("reused 0"), "{text}");

    // The same content as a new version: attached from storage, not uploaded again.
    let v2 = json_of(&maas(
        &cfg,
        &s,
        &["push", src_arg, "alice/enc", "--version", "v2", "--format", "external", "--output", "json"],
    ));
    assert_eq!((v2["uploaded"].as_u64(), v2["reused"].as_u64(), v2["skipped"].as_u64()), (Some(0), Some(3), Some(0)));
    assert!(actions(&v2).iter().all(|(_, a)| a == "reused"), "{v2}");

    // Pull (drafts are visible to writers) into a fresh directory: the same bytes.
    let dst = dir.path().join("dst");
    let pulled = json_of(&maas(&cfg, &s, &["pull", "alice/enc:v2", dst.to_str().unwrap(), "--output", "json"]));
    assert_eq!((pulled["downloaded"].as_u64(), pulled["skipped"].as_u64()), (Some(3), Some(0)));
    assert_eq!(pulled["version"], "v2");
    for f in ["weights.bin", "tokenizer.json", "1_Pooling/config.json"] {
        assert_eq!(std::fs::read(dst.join(f)).unwrap(), std::fs::read(src.join(f)).unwrap(), "{f}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dst)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no temp files left: {leftovers:?}");

    // Pulling again skips what is there; a damaged file is downloaded again.
    let again = json_of(&maas(&cfg, &s, &["pull", "alice/enc:v2", dst.to_str().unwrap(), "--output", "json"]));
    assert_eq!((again["downloaded"].as_u64(), again["skipped"].as_u64()), (Some(0), Some(3)));
    std::fs::write(dst.join("tokenizer.json"), b"damaged!").unwrap();
    let repaired = json_of(&maas(&cfg, &s, &["pull", "alice/enc:v2", dst.to_str().unwrap(), "--output", "json"]));
    assert_eq!((repaired["downloaded"].as_u64(), repaired["skipped"].as_u64()), (Some(1), Some(2)));
    assert_eq!(std::fs::read(dst.join("tokenizer.json")).unwrap(), std::fs::read(src.join("tokenizer.json")).unwrap());
    let text = ok(&maas(&cfg, &s, &["pull", "alice/enc:v2", dst.to_str().unwrap()]));
    assert!(text.contains("downloaded 0 files") && text.contains("skipped 3"), "{text}");

    // A draft is not visible to anonymous callers, and `main` needs a published version.
    let anon = dir.path().join("anon");
    let hidden = fails(&maas(&anon, &s, &["pull", "alice/enc:v2", dir.path().join("x").to_str().unwrap()]));
    assert!(hidden.contains("not found"), "{hidden}");
    let no_main = fails(&maas(&cfg, &s, &["pull", "alice/enc", dir.path().join("y").to_str().unwrap()]));
    assert!(no_main.contains("version_not_found"), "{no_main}");
}

#[tokio::test]
async fn push_publish_prints_the_signature_and_pull_gets_main() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let s = logged_in(&cfg).await;
    ok(&maas(&cfg, &s, &["models", "create", "alice/tiny", "--task", "tensor", "--public"]));
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("model.safetensors"), tiny_safetensors()).unwrap();
    std::fs::write(src.join("config.json"), br#"{"architectures": ["TinyModel"], "model_type": "tiny"}"#).unwrap();
    let src_arg = src.to_str().unwrap();

    let text = ok(&maas(&cfg, &s, &["push", src_arg, "alice/tiny", "--version", "1.0.0", "--publish"]));
    assert!(text.contains("uploaded 2 files"), "{text}");
    assert!(text.contains("Published alice/tiny:1.0.0"), "{text}");
    assert!(text.contains("safetensors (signature from model.safetensors)"), "{text}");
    assert!(text.contains("tensors: 1") && text.contains("parameters: 2"), "{text}");
    assert!(text.contains("architecture: TinyModel"), "{text}");

    // A published version cannot be pushed into.
    let frozen = fails(&maas(&cfg, &s, &["push", src_arg, "alice/tiny", "--version", "1.0.0"]));
    assert!(frozen.contains("published"), "{frozen}");

    // The JSON summary carries the signature.
    let json = json_of(&maas(
        &cfg,
        &s,
        &["push", src_arg, "alice/tiny", "--version", "1.0.1", "--publish", "--output", "json"],
    ));
    assert_eq!(json["published"], true);
    assert_eq!(json["format"], "safetensors");
    assert_eq!(json["reused"], 2);
    assert_eq!(json["signature"]["metadata"]["tensors"], 1);

    // Anyone may pull the public model; `main` is the newest published version.
    let anon = dir.path().join("anon");
    let dst = dir.path().join("dst");
    let pulled = json_of(&maas(&anon, &s, &["pull", "alice/tiny", dst.to_str().unwrap(), "--output", "json"]));
    assert_eq!(pulled["version"], "1.0.1");
    assert_eq!(pulled["downloaded"], 2);
    assert_eq!(std::fs::read(dst.join("model.safetensors")).unwrap(), tiny_safetensors());
    let text = ok(&maas(&anon, &s, &["pull", "alice/tiny:1.0.0", dst.to_str().unwrap()]));
    assert!(text.contains("Pulled alice/tiny:1.0.0") && text.contains("skipped 2"), "{text}");
}

#[tokio::test]
async fn push_resumes_a_partial_upload() {
    const SIZE: usize = 3 * 1024 * 1024;
    const HALF: usize = SIZE / 2;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let s = logged_in(&cfg).await;
    ok(&maas(&cfg, &s, &["models", "create", "alice/big", "--task", "tensor"]));
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = bytes(SIZE, 7);
    std::fs::write(src.join("weights.gguf"), &data).unwrap();
    let sha = sha256sum(&src.join("weights.gguf"));

    // Someone started this upload and was cut off after the first half.
    let cookie = session_cookie(&cfg);
    let created = client()
        .post(s.at("/api/v1/models/alice/big/versions"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({ "version": "v1", "format": "gguf" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let partial = client()
        .put(s.at("/api/v1/models/alice/big/versions/v1/files/weights.gguf"))
        .header("cookie", &cookie)
        .header("content-range", format!("bytes 0-{}/{SIZE}", HALF - 1))
        .header("x-content-sha256", &sha)
        .body(data[..HALF].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), 202);

    let pushed =
        json_of(&maas(&cfg, &s, &["push", src.to_str().unwrap(), "alice/big", "--version", "v1", "--output", "json"]));
    assert_eq!(pushed["created"], false);
    assert_eq!(pushed["uploaded"], 1);
    assert_eq!(pushed["resumed"], 1);
    assert_eq!(pushed["files"][0]["resumed_from"], HALF);
    assert_eq!(pushed["files"][0]["sha256"], sha.as_str());

    let status: Value = client()
        .get(s.at("/api/v1/models/alice/big/versions/v1/uploads/weights.gguf"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(status["file"]["sha256"], sha.as_str());
    assert_eq!(status["file"]["size"], SIZE);

    // Pull resumes a partial temp file with a Range request.
    let dst = dir.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(dst.join(".weights.gguf.maas-partial"), &data[..1000]).unwrap();
    let pulled = json_of(&maas(&cfg, &s, &["pull", "alice/big:v1", dst.to_str().unwrap(), "--output", "json"]));
    assert_eq!(pulled["resumed"], 1);
    assert_eq!(pulled["files"][0]["resumed_from"], 1000);
    assert_eq!(std::fs::read(dst.join("weights.gguf")).unwrap(), data);
    assert!(!dst.join(".weights.gguf.maas-partial").exists());

    // A stale temp file with other bytes fails verification and is downloaded afresh.
    std::fs::remove_file(dst.join("weights.gguf")).unwrap();
    std::fs::write(dst.join(".weights.gguf.maas-partial"), vec![0u8; 5000]).unwrap();
    let pulled = json_of(&maas(&cfg, &s, &["pull", "alice/big:v1", dst.to_str().unwrap(), "--output", "json"]));
    assert_eq!(pulled["downloaded"], 1);
    assert_eq!(sha256sum(&dst.join("weights.gguf")), sha);
}
