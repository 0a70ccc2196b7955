//! Publish-time validation: each file is checked for the version's format and the signature
//! is read from the files themselves, through a seekable reader over the artifact store
//! (range reads with read-ahead), on a blocking thread.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use maas_artifacts::{ArtifactStore, Digest};
use maas_core::registry::{ModelFile, ModelFormat};
use maas_formats::{FormatError, Signature};
use serde_json::json;

use crate::RegistryError;

/// Bytes fetched per range read.
const READ_AHEAD: u64 = 1 << 20;
/// Largest `config.json` read whole.
const MAX_CONFIG_BYTES: i64 = 4 << 20;

/// A blob as `Read + Seek`, for the format readers. Runs on a blocking thread and fetches
/// ranges from the (async) artifact store.
struct BlobReader {
    runtime: tokio::runtime::Handle,
    store: Arc<dyn ArtifactStore>,
    digest: Digest,
    size: u64,
    pos: u64,
    buf: Bytes,
    buf_start: u64,
}

impl BlobReader {
    fn new(runtime: tokio::runtime::Handle, store: Arc<dyn ArtifactStore>, file: &ModelFile) -> std::io::Result<Self> {
        let digest = Digest::parse(&file.sha256).map_err(std::io::Error::other)?;
        let size = u64::try_from(file.size).unwrap_or(0);
        Ok(Self { runtime, store, digest, size, pos: 0, buf: Bytes::new(), buf_start: 0 })
    }
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || out.is_empty() {
            return Ok(0);
        }
        let in_buf = self.pos >= self.buf_start && self.pos < self.buf_start + self.buf.len() as u64;
        if !in_buf {
            let end = (self.pos + READ_AHEAD.max(out.len() as u64)).min(self.size);
            let (store, digest, start) = (self.store.clone(), self.digest.clone(), self.pos);
            self.buf = self
                .runtime
                .block_on(async move { store.read_range(&digest, start..end).await })
                .map_err(std::io::Error::other)?;
            self.buf_start = self.pos;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let offset = usize::try_from(self.pos - self.buf_start).unwrap_or(usize::MAX);
        let n = out.len().min(self.buf.len() - offset);
        out[..n].copy_from_slice(&self.buf[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}

fn with_extension<'a>(files: &'a [ModelFile], ext: &str) -> Vec<&'a ModelFile> {
    files.iter().filter(|f| f.path.to_ascii_lowercase().ends_with(ext)).collect()
}

/// The file the signature comes from: `preferred` if present, else the only candidate.
fn main_file<'a>(candidates: &[&'a ModelFile], preferred: &str, ext: &str) -> Result<&'a ModelFile, RegistryError> {
    match candidates {
        [] => Err(RegistryError::CannotPublish(format!("the version has no {ext} file"))),
        [only] => Ok(only),
        many => {
            many.iter().find(|f| f.path == preferred).copied().ok_or_else(|| {
                RegistryError::CannotPublish(format!("several {ext} files and none is named {preferred}"))
            })
        }
    }
}

fn signature_json(format: ModelFormat, main: Option<&str>, signature: Signature) -> serde_json::Value {
    json!({
        "format": format,
        "file": main,
        "inputs": signature.inputs,
        "outputs": signature.outputs,
        "metadata": signature.metadata,
    })
}

/// Validates the version's files for `format` and returns its signature as JSON.
pub(crate) async fn read(
    store: Arc<dyn ArtifactStore>,
    format: ModelFormat,
    metadata: &serde_json::Value,
    files: &[ModelFile],
) -> Result<serde_json::Value, RegistryError> {
    if format == ModelFormat::External {
        let declared = metadata.get("signature").cloned().unwrap_or_else(|| json!({}));
        return Ok(json!({ "format": format, "file": null, "declared": declared }));
    }
    let runtime = tokio::runtime::Handle::current();
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || {
        let open = |f: &ModelFile| BlobReader::new(runtime.clone(), store.clone(), f);
        let check = |f: &ModelFile, r: Result<Signature, FormatError>| {
            r.map_err(|source| RegistryError::InvalidFile { path: f.path.clone(), source })
        };
        let io = |f: &ModelFile, e: std::io::Error| RegistryError::InvalidFile {
            path: f.path.clone(),
            source: FormatError::from(e),
        };
        match format {
            ModelFormat::Onnx => {
                let candidates = with_extension(&files, ".onnx");
                let main = main_file(&candidates, "model.onnx", ".onnx")?;
                let mut signature = None;
                for f in &candidates {
                    let s = check(f, maas_formats::read_onnx(open(f).map_err(|e| io(f, e))?))?;
                    if f.path == main.path {
                        signature = Some(s);
                    }
                }
                Ok(signature_json(format, Some(&main.path), signature.unwrap_or_default()))
            }
            ModelFormat::Safetensors => {
                let candidates = with_extension(&files, ".safetensors");
                if candidates.is_empty() {
                    return Err(RegistryError::CannotPublish("the version has no .safetensors file".into()));
                }
                let mut headers = Vec::new();
                for f in &candidates {
                    let header = maas_formats::read_safetensors_header(open(f).map_err(|e| io(f, e))?)
                        .map_err(|source| RegistryError::InvalidFile { path: f.path.clone(), source })?;
                    headers.push(header);
                }
                let config = match files.iter().find(|f| f.path == "config.json") {
                    Some(f) if f.size > MAX_CONFIG_BYTES => {
                        return Err(RegistryError::CannotPublish("config.json is larger than 4 MiB".into()));
                    }
                    Some(f) => {
                        let mut bytes = Vec::new();
                        open(f).and_then(|mut r| r.read_to_end(&mut bytes)).map_err(|e| io(f, e))?;
                        Some(bytes)
                    }
                    None => None,
                };
                let signature = maas_formats::safetensors_signature(&headers, config.as_deref()).map_err(|source| {
                    let path = if config.is_some() { "config.json" } else { candidates[0].path.as_str() };
                    RegistryError::InvalidFile { path: path.to_owned(), source }
                })?;
                Ok(signature_json(format, Some(&candidates[0].path), signature))
            }
            ModelFormat::Gguf => {
                let candidates = with_extension(&files, ".gguf");
                let main = main_file(&candidates, "model.gguf", ".gguf")?;
                let mut signature = None;
                for f in &candidates {
                    let s = check(f, maas_formats::read_gguf(open(f).map_err(|e| io(f, e))?))?;
                    if f.path == main.path {
                        signature = Some(s);
                    }
                }
                Ok(signature_json(format, Some(&main.path), signature.unwrap_or_default()))
            }
            // Returned before the blocking section: an external version has no files to read.
            ModelFormat::External => Err(RegistryError::CannotPublish("external versions have no files".into())),
        }
    })
    .await?
}
