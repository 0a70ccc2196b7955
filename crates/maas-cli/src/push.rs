//! `maas push DIR TENANT/NAME --version V`: uploads a directory (or one file) into a draft
//! version. Files the version already holds with the same SHA-256 are skipped, content the
//! tenant already stores is attached without sending it (`X-Maas-Reuse`), everything else is
//! streamed from disk with bounded memory. Interrupted uploads resume from the server's
//! committed offset (`GET …/uploads/{path}`, then `Content-Range`).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use futures::TryStreamExt as _;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_util::io::ReaderStream;

use crate::CliError;
use crate::client::{self, Client};
use crate::commands;
use crate::files;
use crate::models::ModelRef;
use crate::output::{Output, field};
use crate::progress::{Progress, human_bytes};

/// Bytes read from disk per chunk of an upload body.
const UPLOAD_CHUNK: usize = 256 * 1024;
/// Retries of a failed file after the first attempt.
const RETRIES: u32 = 3;

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// A directory (every file below it, hidden ones skipped) or a single file.
    pub source: PathBuf,
    /// TENANT/NAME
    pub model: String,
    /// The version to create, or a draft version to continue.
    #[arg(long)]
    pub version: String,
    /// The version's format (default: inferred from the file extensions).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Publish the version once every file is there, and print its signature.
    #[arg(long)]
    pub publish: bool,
}

/// Version formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Onnx,
    Safetensors,
    Gguf,
    External,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
            Format::Safetensors => "safetensors",
            Format::Gguf => "gguf",
            Format::External => "external",
        }
    }
}

/// A local file to push.
#[derive(Debug, Clone)]
struct LocalFile {
    /// Path inside the version, `/`-separated.
    path: String,
    local: PathBuf,
    size: u64,
    sha256: String,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Uploaded,
    Skipped,
    Reused,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Uploaded => "uploaded",
            Action::Skipped => "skipped",
            Action::Reused => "reused",
        }
    }
}

#[derive(Debug)]
struct FileReport {
    action: Action,
    /// The offset a resumed upload continued from.
    resumed_from: Option<u64>,
}

pub async fn run(server: Option<&str>, out: Output, args: PushArgs) -> Result<(), CliError> {
    let r = ModelRef::parse(&args.model, false)?;
    let progress = Progress::new(out);
    let source = args.source.clone();
    let found = tokio::task::spawn_blocking(move || collect(&source)).await??;
    if found.is_empty() {
        return Err(CliError::Usage(format!("{}: no files to push (hidden files are skipped)", args.source.display())));
    }
    let format = match args.format {
        Some(f) => Ok(f),
        None => infer_format(found.iter().map(|(path, _)| path.as_str())),
    };

    let c = client::authenticated(server).await?;
    let (created, format) = ensure_version(&c, &r, &args.version, format, args.format.is_some()).await?;

    let mut local = Vec::with_capacity(found.len());
    for (path, file) in found {
        let size = std::fs::metadata(&file).map_err(CliError::file(&file))?.len();
        let bar = progress.bytes("hashing", &path, size);
        let (sha256, size) = files::sha256_file(&file, bar.clone()).await?;
        bar.finish_and_clear();
        local.push(LocalFile { path, local: file, size, sha256 });
    }

    let version = c.json(c.request(Method::GET, &r.version_api(&args.version))).await?;
    let remote: HashMap<&str, &str> = version["files"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| Some((f["path"].as_str()?, f["sha256"].as_str()?)))
        .collect();

    let mut reports = Vec::with_capacity(local.len());
    for file in &local {
        let report = if remote.get(file.path.as_str()) == Some(&file.sha256.as_str()) {
            progress.note(&format!("skipped  {} (unchanged)", file.path));
            FileReport { action: Action::Skipped, resumed_from: None }
        } else {
            push_file(&c, &r, &args.version, file, progress).await?
        };
        reports.push(report);
    }

    let published = if args.publish {
        let path = format!("{}/publish", r.version_api(&args.version));
        Some(c.json(c.request(Method::POST, &path)).await?)
    } else {
        None
    };

    let count = |a: Action| reports.iter().filter(|rep| rep.action == a).count();
    let uploaded_bytes: u64 =
        local.iter().zip(&reports).filter(|(_, rep)| rep.action == Action::Uploaded).map(|(f, _)| f.size).sum();
    let resumed = reports.iter().filter(|rep| rep.resumed_from.is_some()).count();
    let summary = json!({
        "model": r.full_name(),
        "version": args.version,
        "format": format,
        "created": created,
        "uploaded": count(Action::Uploaded),
        "uploaded_bytes": uploaded_bytes,
        "skipped": count(Action::Skipped),
        "reused": count(Action::Reused),
        "resumed": resumed,
        "files": local.iter().zip(&reports).map(|(f, rep)| json!({
            "path": f.path,
            "size": f.size,
            "sha256": f.sha256,
            "action": rep.action.as_str(),
            "resumed_from": rep.resumed_from,
        })).collect::<Vec<_>>(),
        "published": published.is_some(),
        "signature": published.as_ref().map(|v| v["signature"].clone()),
    });
    commands::show(out, &summary, || {
        let resumed = if resumed > 0 { format!(", {resumed} resumed") } else { String::new() };
        println!(
            "Pushed {}:{} ({format}): uploaded {} files ({}{resumed}), skipped {}, reused {}",
            r.full_name(),
            args.version,
            count(Action::Uploaded),
            human_bytes(uploaded_bytes),
            count(Action::Skipped),
            count(Action::Reused),
        );
        if let Some(v) = &published {
            println!("Published {}:{}", r.full_name(), field(v, "version"));
            for line in signature_lines(&v["signature"]) {
                println!("  {line}");
            }
        }
    });
    Ok(())
}

/// The files to push as (path inside the version, local path), sorted by path.
fn collect(source: &Path) -> Result<Vec<(String, PathBuf)>, CliError> {
    let meta = std::fs::metadata(source).map_err(CliError::file(source))?;
    if meta.is_file() {
        let name = source
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| CliError::Usage(format!("{}: the file name must be UTF-8", source.display())))?;
        return Ok(vec![(name.to_owned(), source.to_owned())]);
    }
    let mut out = Vec::new();
    walk(source, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), CliError> {
    for entry in std::fs::read_dir(dir).map_err(CliError::file(dir))? {
        let entry = entry.map_err(CliError::file(dir))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(CliError::Usage(format!("{}: file names must be UTF-8", path.display())));
        };
        if name.starts_with('.') {
            continue;
        }
        let rel = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
        let kind = entry.file_type().map_err(CliError::file(&path))?;
        if kind.is_dir() {
            walk(&path, &rel, out)?;
        } else if kind.is_file() || (kind.is_symlink() && std::fs::metadata(&path).is_ok_and(|m| m.is_file())) {
            // Symlinks to files are pushed as files; symlinked directories are not followed.
            out.push((rel, path));
        }
    }
    Ok(())
}

/// The format the file extensions point to; an error when none or several do.
fn infer_format<'a>(paths: impl Iterator<Item = &'a str> + Clone) -> Result<Format, CliError> {
    let candidates = [(".onnx", Format::Onnx), (".safetensors", Format::Safetensors), (".gguf", Format::Gguf)];
    let present: Vec<Format> = candidates
        .iter()
        .filter(|(ext, _)| paths.clone().any(|p| p.to_ascii_lowercase().ends_with(ext)))
        .map(|(_, f)| *f)
        .collect();
    match present.as_slice() {
        [one] => Ok(*one),
        [] => Err(CliError::Usage(
            "cannot infer the format: no .onnx, .safetensors or .gguf file; pass --format".to_owned(),
        )),
        several => Err(CliError::Usage(format!(
            "cannot infer the format: the files are {}; pass --format",
            several.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" and ")
        ))),
    }
}

/// Creates the draft version, or continues an existing draft. Returns whether it was created
/// and the version's format. Without a usable `format` (none given and none inferred), only
/// an existing draft will do.
async fn ensure_version(
    c: &Client,
    r: &ModelRef,
    version: &str,
    format: Result<Format, CliError>,
    explicit: bool,
) -> Result<(bool, String), CliError> {
    let existing = match &format {
        Ok(format) => {
            let body = json!({ "version": version, "format": format.as_str() });
            match c.json(c.request(Method::POST, &format!("{}/versions", r.api())).json(&body)).await {
                Ok(_) => return Ok((true, format.as_str().to_owned())),
                Err(e) if e.code() == Some("version_exists") => {
                    c.json(c.request(Method::GET, &r.version_api(version))).await?
                }
                Err(e) => return Err(e),
            }
        }
        Err(_) => match c.json(c.request(Method::GET, &r.version_api(version))).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("version_not_found") => return Err(format.err().unwrap_or(e)),
            Err(e) => return Err(e),
        },
    };
    if existing["state"] != "draft" {
        return Err(CliError::VersionPublished(version.to_owned()));
    }
    let existing_format = field(&existing, "format");
    if let (true, Ok(format)) = (explicit, &format)
        && existing_format != format.as_str()
    {
        return Err(CliError::Usage(format!(
            "version '{version}' is a draft in {existing_format} format, not {}",
            format.as_str()
        )));
    }
    Ok((false, existing_format))
}

/// Uploads one file: reuse by hash if the tenant has the content, else stream it, resuming
/// and retrying as needed.
async fn push_file(
    c: &Client,
    r: &ModelRef,
    version: &str,
    file: &LocalFile,
    progress: Progress,
) -> Result<FileReport, CliError> {
    let encoded = client::file_path(&file.path);
    let url = format!("{}/files/{encoded}", r.version_api(version));
    let status_url = format!("{}/uploads/{encoded}", r.version_api(version));

    let reuse = c
        .request(Method::PUT, &url)
        .header("x-maas-reuse", "true")
        .header("x-content-sha256", &file.sha256)
        .header(CONTENT_LENGTH, 0);
    match c.json(reuse).await {
        Ok(_) => {
            progress.note(&format!("reused   {} ({}, already stored)", file.path, human_bytes(file.size)));
            return Ok(FileReport { action: Action::Reused, resumed_from: None });
        }
        Err(CliError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }

    let mut fresh = false;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let offset = if fresh { Ok(0) } else { resume_offset(c, &status_url, file.size).await };
        let result = match offset {
            Ok(offset) => upload(c, &url, file, offset, progress).await.map(|outcome| (offset, outcome)),
            Err(e) => Err(e),
        };
        let error = match result {
            Ok((offset, Uploaded::Complete(server))) => {
                let sha = field(&server, "sha256");
                if sha != file.sha256 {
                    return Err(CliError::Usage(format!(
                        "{}: the server stored SHA-256 {sha}, expected {}",
                        file.path, file.sha256
                    )));
                }
                return Ok(FileReport { action: Action::Uploaded, resumed_from: (offset > 0).then_some(offset) });
            }
            // Not everything arrived (the file shrank?): ask where it stands and go on.
            Ok((_, Uploaded::Partial(committed))) => {
                CliError::Usage(format!("the server committed {committed} of {} bytes", file.size))
            }
            Err(e) => e,
        };
        let retry = match error.code() {
            // The committed offset moved: ask again and continue from the server's offset.
            Some("upload_offset_mismatch") => true,
            // Resumed onto a stale partial upload of other bytes: start over from byte 0.
            Some("checksum_mismatch") if !fresh => {
                fresh = true;
                true
            }
            _ if matches!(error, CliError::Usage(_)) => true,
            _ if error.is_transient() => {
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(4))).await;
                true
            }
            _ => false,
        };
        if !retry {
            return Err(error);
        }
        if attempt > RETRIES {
            return Err(CliError::GaveUp { path: file.path.clone(), attempts: attempt, last: Box::new(error) });
        }
        progress.note(&format!("retrying {} after: {error}", file.path));
    }
}

/// Where to continue an upload: the server's committed offset when it holds an unfinished
/// upload of this file's size, else 0.
async fn resume_offset(c: &Client, status_url: &str, size: u64) -> Result<u64, CliError> {
    match c.json(c.request(Method::GET, status_url)).await {
        Ok(s) => {
            let committed = s["committed"].as_u64().unwrap_or(0);
            let same_size = s["total"].as_u64().is_none_or(|t| t == size);
            let partial = s["complete"] == json!(false);
            Ok(if partial && same_size && committed > 0 && committed < size { committed } else { 0 })
        }
        Err(CliError::Api { status: 404, .. }) => Ok(0),
        Err(e) => Err(e),
    }
}

enum Uploaded {
    Complete(Value),
    Partial(u64),
}

/// One PUT of the file from `offset` to its end, streamed from disk.
async fn upload(
    c: &Client,
    url: &str,
    file: &LocalFile,
    offset: u64,
    progress: Progress,
) -> Result<Uploaded, CliError> {
    let remaining = file.size - offset;
    let mut handle = tokio::fs::File::open(&file.local).await.map_err(CliError::file(&file.local))?;
    if offset > 0 {
        handle.seek(SeekFrom::Start(offset)).await.map_err(CliError::file(&file.local))?;
    }
    let verb = if offset > 0 { "resuming" } else { "uploading" };
    let bar = progress.bytes(verb, &file.path, file.size);
    bar.set_position(offset);
    let counter = bar.clone();
    let body = ReaderStream::with_capacity(handle.take(remaining), UPLOAD_CHUNK)
        .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
    let mut req = c
        .request(Method::PUT, url)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, remaining)
        .header("x-content-sha256", &file.sha256)
        .body(reqwest::Body::wrap_stream(body));
    if offset > 0 {
        req = req.header(CONTENT_RANGE, format!("bytes {offset}-{}/{}", file.size - 1, file.size));
    }
    let started = Instant::now();
    let result = c.send(req).await;
    bar.finish_and_clear();
    let response = result?;
    let accepted = response.status() == reqwest::StatusCode::ACCEPTED;
    let body: Value = response.json().await?;
    if accepted {
        return Ok(Uploaded::Partial(body["committed"].as_u64().unwrap_or(0)));
    }
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let rate = human_bytes((remaining as f64 / secs) as u64);
    let from = if offset > 0 { format!(", resumed at {}", human_bytes(offset)) } else { String::new() };
    progress.note(&format!("uploaded {} ({}{from}, {rate}/s)", file.path, human_bytes(file.size)));
    Ok(Uploaded::Complete(body))
}

/// A published version's signature as lines for people: inputs, outputs, format facts.
pub fn signature_lines(signature: &Value) -> Vec<String> {
    let tensors = |name: &str| {
        let list = signature[name].as_array().map(Vec::as_slice).unwrap_or_default();
        if list.is_empty() {
            return "(none)".to_owned();
        }
        list.iter()
            .map(|t| {
                let shape = t["shape"].as_array().map(Vec::as_slice).unwrap_or_default();
                let dims: Vec<String> = shape.iter().map(Value::to_string).collect();
                format!("{} {} [{}]", field(t, "name"), field(t, "dtype"), dims.join(","))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines =
        vec![format!("format:  {} (signature from {})", field(signature, "format"), field(signature, "file"))];
    if signature.get("declared").is_some() {
        lines.push(format!("declared: {}", signature["declared"]));
        return lines;
    }
    lines.push(format!("inputs:  {}", tensors("inputs")));
    lines.push(format!("outputs: {}", tensors("outputs")));
    if let Some(meta) = signature["metadata"].as_object() {
        for (key, value) in meta {
            let text = match value {
                // The whole config.json is in the JSON output; too long for a line.
                _ if key == "config" => continue,
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Object(_) | Value::Array(_) => {
                    let compact = value.to_string();
                    if compact.len() > 100 {
                        continue;
                    }
                    compact
                }
                other => other.to_string(),
            };
            lines.push(format!("{key}: {text}"));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_inferred_from_extensions() {
        let infer = |paths: &[&str]| infer_format(paths.iter().copied());
        assert_eq!(infer(&["model.onnx", "README.md"]).unwrap(), Format::Onnx);
        assert_eq!(infer(&["a/model-00001.safetensors", "config.json"]).unwrap(), Format::Safetensors);
        assert_eq!(infer(&["M.GGUF"]).unwrap(), Format::Gguf);
        assert!(infer(&["weights.bin"]).is_err());
        assert!(infer(&["model.onnx", "model.safetensors"]).is_err());
    }

    #[test]
    fn directories_are_walked_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        for f in ["a.txt", "sub/b.txt", "sub/deeper/c.txt", ".hidden", ".git/config", "sub/.x"] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        let found: Vec<String> = collect(dir.path()).unwrap().into_iter().map(|(p, _)| p).collect();
        assert_eq!(found, ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]);
        let single = collect(&dir.path().join("sub/b.txt")).unwrap();
        assert_eq!(single[0].0, "b.txt");
    }

    #[test]
    fn signatures_read_as_lines() {
        let sig = json!({
            "format": "onnx", "file": "model.onnx",
            "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 3]}],
            "outputs": [],
            "metadata": {"ir_version": 8, "producer": "pytorch", "config": null},
        });
        let lines = signature_lines(&sig);
        assert!(lines.contains(&"inputs:  x FP32 [-1,3]".to_owned()), "{lines:?}");
        assert!(lines.contains(&"outputs: (none)".to_owned()));
        assert!(lines.contains(&"ir_version: 8".to_owned()));
    }
}
