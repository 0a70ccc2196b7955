//! `maas pull TENANT/NAME[:VERSION] DIR`: downloads every file of a version (default `main`,
//! the newest published one) into DIR. Each file streams to a hidden temp file next to its
//! target, is verified against the listed SHA-256 and renamed into place; files already
//! present with the right hash are skipped, and a partial temp file is resumed with `Range`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt as _;
use reqwest::Method;
use reqwest::header::RANGE;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::CliError;
use crate::client::{self, Client};
use crate::commands;
use crate::files;
use crate::models::ModelRef;
use crate::output::{Output, field};
use crate::progress::{Progress, human_bytes};

/// Retries of a failed file after the first attempt.
const RETRIES: u32 = 3;
/// Buffer between the response body and the temp file.
const WRITE_BUFFER: usize = 1 << 20;

#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    /// TENANT/NAME[:VERSION]; the version defaults to `main`, the newest published one.
    pub model: String,
    /// Directory to download into (created if missing).
    pub dir: PathBuf,
}

/// A file the version lists.
#[derive(Debug, Clone)]
struct RemoteFile {
    path: String,
    sha256: String,
    size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Downloaded,
    Skipped,
}

#[derive(Debug)]
struct FileReport {
    action: Action,
    resumed_from: Option<u64>,
}

pub async fn run(server: Option<&str>, out: Output, args: PullArgs) -> Result<(), CliError> {
    let r = ModelRef::parse(&args.model, true)?;
    let progress = Progress::new(out);
    let c = client::optional(server).await?;
    let asked = r.version.clone().unwrap_or_else(|| "main".to_owned());
    let version = c.json(c.request(Method::GET, &r.version_api(&asked))).await?;
    // `main` resolves to a concrete version; download from that one even if a newer one lands.
    let resolved = version["version"].as_str().unwrap_or(&asked).to_owned();
    let listed = version["files"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut remote = Vec::with_capacity(listed.len());
    for f in listed {
        let path = field(f, "path");
        files::safe_join(&args.dir, &path)?;
        let sha256 = field(f, "sha256");
        let size = f["size"].as_u64().ok_or_else(|| CliError::Usage(format!("{path}: the server lists no size")))?;
        remote.push(RemoteFile { path, sha256, size });
    }
    tokio::fs::create_dir_all(&args.dir).await.map_err(CliError::file(&args.dir))?;

    let mut reports = Vec::with_capacity(remote.len());
    for file in &remote {
        let target = files::safe_join(&args.dir, &file.path)?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(CliError::file(parent))?;
        }
        let url = format!("{}/files/{}", r.version_api(&resolved), client::file_path(&file.path));
        reports.push(pull_file(&c, &url, file, &target, progress).await?);
    }

    let count = |a: Action| reports.iter().filter(|rep| rep.action == a).count();
    let downloaded_bytes: u64 =
        remote.iter().zip(&reports).filter(|(_, rep)| rep.action == Action::Downloaded).map(|(f, _)| f.size).sum();
    let resumed = reports.iter().filter(|rep| rep.resumed_from.is_some()).count();
    let summary = json!({
        "model": r.full_name(),
        "version": resolved,
        "dir": args.dir.display().to_string(),
        "downloaded": count(Action::Downloaded),
        "downloaded_bytes": downloaded_bytes,
        "skipped": count(Action::Skipped),
        "resumed": resumed,
        "files": remote.iter().zip(&reports).map(|(f, rep)| json!({
            "path": f.path,
            "size": f.size,
            "sha256": f.sha256,
            "action": if rep.action == Action::Downloaded { "downloaded" } else { "skipped" },
            "resumed_from": rep.resumed_from,
        })).collect::<Vec<_>>(),
    });
    commands::show(out, &summary, || {
        let resumed = if resumed > 0 { format!(", {resumed} resumed") } else { String::new() };
        println!(
            "Pulled {}:{resolved} into {}: downloaded {} files ({}{resumed}), skipped {}",
            r.full_name(),
            args.dir.display(),
            count(Action::Downloaded),
            human_bytes(downloaded_bytes),
            count(Action::Skipped),
        );
    });
    Ok(())
}

/// The hidden temp file a download streams into: `.NAME.maas-partial` next to the target.
fn temp_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".{name}.maas-partial"))
}

async fn len_of(path: &Path) -> Result<Option<u64>, CliError> {
    match tokio::fs::metadata(path).await {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Err(CliError::Usage(format!("{}: exists and is not a file", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::file(path)(e)),
    }
}

async fn remove(path: &Path) -> Result<(), CliError> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CliError::file(path)(e)),
        _ => Ok(()),
    }
}

async fn pull_file(
    c: &Client,
    url: &str,
    file: &RemoteFile,
    target: &Path,
    progress: Progress,
) -> Result<FileReport, CliError> {
    if len_of(target).await? == Some(file.size) {
        let bar = progress.bytes("checking", &file.path, file.size);
        let (sha, _) = files::sha256_file(target, bar.clone()).await?;
        bar.finish_and_clear();
        if sha == file.sha256 {
            progress.note(&format!("skipped    {} (already there)", file.path));
            return Ok(FileReport { action: Action::Skipped, resumed_from: None });
        }
    }
    let temp = temp_path(target);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let offset = match len_of(&temp).await? {
            Some(len) if len < file.size => len,
            Some(_) => {
                remove(&temp).await?;
                0
            }
            None => 0,
        };
        let error = match download(c, url, file, &temp, offset, progress).await {
            Ok((sha, start)) if sha == file.sha256 => {
                tokio::fs::rename(&temp, target).await.map_err(CliError::file(target))?;
                return Ok(FileReport { action: Action::Downloaded, resumed_from: (start > 0).then_some(start) });
            }
            Ok((sha, start)) => {
                remove(&temp).await?;
                let mismatch =
                    CliError::ChecksumMismatch { path: file.path.clone(), expected: file.sha256.clone(), actual: sha };
                if start == 0 {
                    return Err(mismatch);
                }
                // The temp file held other bytes than this version's: start over.
                mismatch
            }
            Err(e @ CliError::Api { status: 416, .. }) => {
                remove(&temp).await?;
                e
            }
            Err(e) if e.is_transient() || matches!(e, CliError::Usage(_)) => {
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(4))).await;
                e
            }
            Err(e) => return Err(e),
        };
        if attempt > RETRIES {
            return Err(CliError::GaveUp { path: file.path.clone(), attempts: attempt, last: Box::new(error) });
        }
        progress.note(&format!("retrying {} after: {error}", file.path));
    }
}

/// One GET of the file into `temp`, from `offset` when the server honours the range. Returns
/// the SHA-256 of the whole temp file and the offset the download started at.
async fn download(
    c: &Client,
    url: &str,
    file: &RemoteFile,
    temp: &Path,
    offset: u64,
    progress: Progress,
) -> Result<(String, u64), CliError> {
    let mut req = c.request(Method::GET, url);
    if offset > 0 {
        req = req.header(RANGE, format!("bytes={offset}-"));
    }
    let response = c.send(req).await?;
    let start = if response.status() == reqwest::StatusCode::PARTIAL_CONTENT { offset } else { 0 };
    let mut hasher = Sha256::new();
    if start > 0 {
        let (h, read) = files::hash_prefix(temp, hasher, Some(start), indicatif::ProgressBar::hidden()).await?;
        if read != start {
            return Err(CliError::Usage(format!("{}: the partial download shrank", temp.display())));
        }
        hasher = h;
    }
    let mut options = tokio::fs::OpenOptions::new();
    options.create(true);
    if start > 0 {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    let handle = options.open(temp).await.map_err(CliError::file(temp))?;
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, handle);

    let verb = if start > 0 { "resuming" } else { "pulling" };
    let bar = progress.bytes(verb, &file.path, file.size);
    bar.set_position(start);
    let started = Instant::now();
    let mut written = start;
    let mut body = response.bytes_stream();
    let result: Result<(), CliError> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(CliError::file(temp))?;
            written += chunk.len() as u64;
            bar.inc(chunk.len() as u64);
        }
        out.flush().await.map_err(CliError::file(temp))?;
        out.get_ref().sync_data().await.map_err(CliError::file(temp))
    }
    .await;
    bar.finish_and_clear();
    result?;
    if written != file.size {
        return Err(CliError::Usage(format!("{}: received {written} of {} bytes", file.path, file.size)));
    }
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let rate = human_bytes(((written - start) as f64 / secs) as u64);
    let from = if start > 0 { format!(", resumed at {}", human_bytes(start)) } else { String::new() };
    progress.note(&format!("downloaded {} ({}{from}, {rate}/s)", file.path, human_bytes(file.size)));
    Ok((files::hex(hasher), start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_are_hidden_siblings() {
        assert_eq!(temp_path(Path::new("/x/sub/model.onnx")), Path::new("/x/sub/.model.onnx.maas-partial"));
    }
}
