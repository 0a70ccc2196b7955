//! File uploads into a draft version: streamed to the staging area with bounded memory,
//! hashed on the way, resumable from the committed offset (`Content-Range`), verified
//! against `X-Content-Sha256`, then ingested into the artifact store under their digest.

use bytes::Bytes;
use futures::Stream;
use maas_artifacts::{ArtifactError, Digest};
use maas_auth::Caller;
use maas_core::UploadId;
use maas_core::registry::ModelFile;
use maas_store::Upload;
use serde::Serialize;
use serde_json::json;

use crate::access::ModelAccess;
use crate::{Registry, RegistryError, validate};

/// What the client said about the bytes it sends.
#[derive(Debug, Clone, Default)]
pub struct UploadRequest {
    pub path: String,
    /// `Content-Range: bytes START-END/TOTAL` (or `/*` when the total is not known yet).
    pub content_range: Option<String>,
    pub content_length: Option<u64>,
    /// `X-Content-Sha256`: the digest of the whole file.
    pub sha256: Option<String>,
    /// Attach content the tenant already stores (by `sha256`) without sending it again.
    pub reuse: bool,
}

/// The state of an upload after a request.
#[derive(Debug, Clone)]
pub enum UploadOutcome {
    /// The file is complete, verified and part of the version.
    Complete(ModelFile),
    /// Bytes are committed; more are expected.
    Partial { committed: u64, total: Option<u64> },
}

/// Where an upload stands (`GET …/uploads/{path}`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UploadStatus {
    pub path: String,
    /// Bytes received and durably stored; resume from here.
    pub committed: u64,
    pub total: Option<u64>,
    pub complete: bool,
    pub file: Option<ModelFile>,
}

/// `bytes START-END/TOTAL` → (start, end inclusive, total).
fn parse_content_range(header: &str) -> Result<(u64, u64, Option<u64>), RegistryError> {
    let bad = || RegistryError::BadContentRange(format!("'{header}' is not 'bytes START-END/TOTAL'"));
    let rest = header.trim().strip_prefix("bytes ").ok_or_else(bad)?;
    let (span, total) = rest.split_once('/').ok_or_else(bad)?;
    let (start, end) = span.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().map_err(|_| bad())?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return Err(bad());
    }
    Ok((start, end, total))
}

/// Marks an upload as receiving; released on drop.
struct InFlight<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<UploadId>>,
    id: UploadId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

impl Registry {
    fn claim(&self, id: UploadId, path: &str) -> Result<InFlight<'_>, RegistryError> {
        let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(id) {
            return Err(RegistryError::UploadInProgress(path.to_owned()));
        }
        Ok(InFlight { set: &self.in_flight, id })
    }

    async fn check_storage_quota(&self, access: &ModelAccess, incoming: u64) -> Result<(), RegistryError> {
        let quota = self.effective_quota(access.store()).await?;
        if let Some(max) = quota.max_storage_bytes {
            let used = access.store().storage_bytes().await?;
            let after = used.saturating_add(i64::try_from(incoming).unwrap_or(i64::MAX));
            if after > max {
                return Err(RegistryError::Quota(format!(
                    "max_storage_bytes: the tenant may store {max} bytes, uses {used}, and this file needs {incoming} more"
                )));
            }
        }
        Ok(())
    }

    /// Receives (part of) a file of a draft version.
    pub async fn upload<S, E>(
        &self,
        caller: &Caller,
        access: &ModelAccess,
        version: &str,
        req: UploadRequest,
        body: S,
    ) -> Result<UploadOutcome, RegistryError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        validate::file_path(&req.path)?;
        let draft = self.draft(access, version).await?;
        let announced = req.sha256.as_deref().map(Digest::parse).transpose()?;
        if req.reuse {
            let digest =
                announced.ok_or_else(|| RegistryError::InvalidRequest("reuse needs X-Content-Sha256".into()))?;
            return self.reuse(caller, access, draft.id, &req.path, &digest).await;
        }
        let range = req.content_range.as_deref().map(parse_content_range).transpose()?;
        let store = access.store();

        let existing = store.upload(draft.id, &req.path).await?;
        let upload = match (&range, existing) {
            // A resumed upload continues an existing one.
            (Some((start, _, _)), Some(up)) if *start > 0 => up,
            (Some((start, _, _)), None) if *start > 0 => {
                return Err(RegistryError::OffsetMismatch { path: req.path.clone(), committed: 0 });
            }
            // Anything starting at 0 is a fresh upload.
            (_, previous) => {
                if let Some(previous) = previous {
                    let _claim = self.claim(previous.id, &req.path)?;
                    self.staging.discard(&previous.id.to_string()).await?;
                    store.finish_upload(previous.id).await?;
                }
                let total = range.and_then(|r| r.2).or(req.content_length);
                let up = Upload {
                    id: UploadId::new(),
                    version_id: draft.id,
                    path: req.path.clone(),
                    total: total.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
                    sha256: announced.as_ref().map(|d| d.to_string()),
                };
                store.start_upload(&up).await?;
                up
            }
        };
        let _claim = self.claim(upload.id, &req.path)?;
        let total = range.and_then(|r| r.2).or_else(|| upload.total.and_then(|t| u64::try_from(t).ok()));
        let start = range.map_or(0, |r| r.0);
        self.check_storage_quota(access, total.unwrap_or(0).saturating_sub(start)).await?;

        let max_len = match range {
            Some((_, end, _)) => end + 1,
            None => total.unwrap_or(self.config.max_file_bytes),
        }
        .min(self.config.max_file_bytes);
        let staged = match self.staging.append(&upload.id.to_string(), start, body, max_len).await {
            Ok(s) => s,
            Err(ArtifactError::OffsetMismatch { expected, .. }) => {
                return Err(RegistryError::OffsetMismatch { path: req.path, committed: expected });
            }
            Err(e) => return Err(e.into()),
        };
        let committed = staged.len();
        let complete = match (range, total) {
            (Some(_), Some(t)) | (None, Some(t)) => committed == t,
            (None, None) => true,
            (Some(_), None) => false,
        };
        if !complete {
            return Ok(UploadOutcome::Partial { committed, total });
        }

        let digest = staged.digest().await?;
        let expected = announced.or(upload.sha256.as_deref().map(Digest::parse).transpose()?);
        if let Some(expected) = expected.filter(|e| *e != digest) {
            self.staging.discard(&upload.id.to_string()).await?;
            store.finish_upload(upload.id).await?;
            return Err(RegistryError::ChecksumMismatch { expected: expected.to_string(), actual: digest.to_string() });
        }
        if total.is_none() {
            // Size unknown until the end: the quota check happens now.
            if let Err(e) = self.check_storage_quota(access, committed).await {
                self.staging.discard(&upload.id.to_string()).await?;
                store.finish_upload(upload.id).await?;
                return Err(e);
            }
        }
        self.artifacts.ingest(staged, &digest).await?;
        let size = i64::try_from(committed).unwrap_or(i64::MAX);
        let file = store.put_file(draft.id, &req.path, digest.as_str(), size).await?;
        store.finish_upload(upload.id).await?;
        let target = format!("{}:{}/{}", access.model.full_name(), version, req.path);
        self.audit(caller, store, "file.upload", &target, json!({ "sha256": file.sha256, "size": file.size })).await?;
        Ok(UploadOutcome::Complete(file))
    }

    /// Adds a file whose content the tenant already stores, without receiving it again.
    async fn reuse(
        &self,
        caller: &Caller,
        access: &ModelAccess,
        version: maas_core::VersionId,
        path: &str,
        digest: &Digest,
    ) -> Result<UploadOutcome, RegistryError> {
        let store = access.store();
        let size = store.blob_size(digest.as_str()).await?;
        let size = match size {
            Some(size) if self.artifacts.contains(digest).await? => size,
            _ => return Err(RegistryError::FileNotFound(format!("content {digest} (upload the bytes instead)"))),
        };
        self.check_storage_quota(access, u64::try_from(size).unwrap_or(0)).await?;
        let file = store.put_file(version, path, digest.as_str(), size).await?;
        let target = format!("{}:{}", access.model.full_name(), path);
        self.audit(caller, store, "file.reuse", &target, json!({ "sha256": file.sha256, "size": file.size })).await?;
        Ok(UploadOutcome::Complete(file))
    }

    /// Where the upload of `path` stands: committed bytes of an unfinished upload, or the
    /// finished file.
    pub async fn upload_status(
        &self,
        access: &ModelAccess,
        version: &str,
        path: &str,
    ) -> Result<UploadStatus, RegistryError> {
        validate::file_path(path)?;
        let (v, files) = self.version(access, version).await?;
        let file = files.into_iter().find(|f| f.path == path);
        match access.store().upload(v.id, path).await? {
            Some(up) => Ok(UploadStatus {
                path: path.to_owned(),
                committed: self.staging.committed(&up.id.to_string()).await?,
                total: up.total.and_then(|t| u64::try_from(t).ok()),
                complete: false,
                file,
            }),
            None => match file {
                Some(f) => Ok(UploadStatus {
                    path: path.to_owned(),
                    committed: u64::try_from(f.size).unwrap_or(0),
                    total: u64::try_from(f.size).ok(),
                    complete: true,
                    file: Some(f),
                }),
                None => Err(RegistryError::FileNotFound(path.to_owned())),
            },
        }
    }

    /// Removes a file from a draft version.
    pub async fn delete_file(
        &self,
        caller: &Caller,
        access: &ModelAccess,
        version: &str,
        path: &str,
    ) -> Result<(), RegistryError> {
        let draft = self.draft(access, version).await?;
        access.store().delete_file(draft.id, path).await.map_err(|e| match e {
            maas_store::StoreError::NotFound(_) => RegistryError::FileNotFound(path.to_owned()),
            e => e.into(),
        })?;
        let target = format!("{}:{}/{}", access.model.full_name(), version, path);
        self.audit(caller, access.store(), "file.delete", &target, json!({})).await
    }
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-99/1000").unwrap(), (0, 99, Some(1000)));
        assert_eq!(parse_content_range("bytes 100-199/*").unwrap(), (100, 199, None));
        for bad in ["0-99/1000", "bytes 99-0/1000", "bytes 0-1000/1000", "bytes a-b/c", "bytes 0-9"] {
            assert!(parse_content_range(bad).is_err(), "{bad}");
        }
    }
}
