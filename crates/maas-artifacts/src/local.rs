//! `LocalArtifacts`: blobs as files under the data dir (`sha256/ab/cd/<digest>`), the
//! embedded default. Ingesting renames the staged file into place: no copy.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::{ArtifactError, ArtifactStore, ByteStream, Digest, Staged};

#[derive(Debug, Clone)]
pub struct LocalArtifacts {
    root: PathBuf,
}

impl LocalArtifacts {
    /// Blobs under `root` (created if missing). Keep the staging area on the same
    /// filesystem so that ingesting is a rename.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.as_str();
        self.root.join("sha256").join(&hex[..2]).join(&hex[2..4]).join(hex)
    }

    async fn open(&self, digest: &Digest) -> Result<tokio::fs::File, ArtifactError> {
        tokio::fs::File::open(self.path(digest)).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ArtifactError::NotFound,
            _ => e.into(),
        })
    }
}

#[async_trait]
impl ArtifactStore for LocalArtifacts {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn contains(&self, digest: &Digest) -> Result<bool, ArtifactError> {
        Ok(tokio::fs::try_exists(self.path(digest)).await?)
    }

    async fn ingest(&self, staged: Staged, digest: &Digest) -> Result<(), ArtifactError> {
        let target = self.path(digest);
        if tokio::fs::try_exists(&target).await? {
            tokio::fs::remove_file(staged.path()).await?;
            return Ok(());
        }
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        match tokio::fs::rename(staged.path(), &target).await {
            Ok(()) => Ok(()),
            // Staging on another filesystem: copy, then drop the staged file.
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                let tmp = target.with_extension("tmp");
                tokio::fs::copy(staged.path(), &tmp).await?;
                tokio::fs::rename(&tmp, &target).await?;
                tokio::fs::remove_file(staged.path()).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream, ArtifactError> {
        let mut file = self.open(digest).await?;
        let len = file.metadata().await?.len();
        let range = range.unwrap_or(0..len);
        file.seek(SeekFrom::Start(range.start)).await?;
        let limited = file.take(range.end.saturating_sub(range.start));
        let stream = tokio_util::io::ReaderStream::with_capacity(limited, 256 * 1024);
        Ok(stream.map(|chunk| chunk.map_err(ArtifactError::from)).boxed())
    }

    async fn read_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes, ArtifactError> {
        let mut file = self.open(digest).await?;
        file.seek(SeekFrom::Start(range.start)).await?;
        let mut buf = Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
        file.take(range.end - range.start).read_to_end(&mut buf).await?;
        Ok(Bytes::from(buf))
    }

    async fn size(&self, digest: &Digest) -> Result<u64, ArtifactError> {
        Ok(self.open(digest).await?.metadata().await?.len())
    }

    async fn delete(&self, digest: &Digest) -> Result<(), ArtifactError> {
        match tokio::fs::remove_file(self.path(digest)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Staging;

    #[tokio::test]
    async fn contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalArtifacts::new(dir.path().join("blobs")).unwrap();
        let staging = Staging::new(dir.path().join("staging")).unwrap();
        crate::contract::round_trip(&store, &staging).await;
    }
}
