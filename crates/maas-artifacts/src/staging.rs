//! The staging area: uploads being received, one file per upload under the data dir.
//!
//! Bytes are written on a blocking thread fed through a small bounded channel (hashed on a
//! second thread, flushed to disk in the background by a third), so memory stays flat
//! whatever the upload size and the async executor never waits on disk.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};

use crate::{ArtifactError, Digest};

/// Chunks in flight between the request body and the writer thread (about 1 MiB at the
/// typical 64 KiB chunk size): the memory bound of one upload.
const CHANNEL_CHUNKS: usize = 16;

/// Bytes written between two background flushes to disk.
const FLUSH_EVERY: u64 = 64 << 20;

/// SHA-256 on its own thread, fed the chunks as they are written.
struct Hasher {
    tx: std::sync::mpsc::SyncSender<Bytes>,
    thread: std::thread::JoinHandle<Sha256>,
}

impl Hasher {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(CHANNEL_CHUNKS);
        let thread = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for chunk in rx {
                hasher.update(&chunk);
            }
            hasher
        });
        Self { tx, thread }
    }

    fn feed(&self, chunk: Bytes) {
        // A send fails only if the thread is gone; `finish` reports that.
        let _ = self.tx.send(chunk);
    }

    fn finish(self) -> Result<Sha256, std::io::Error> {
        drop(self.tx);
        self.thread.join().map_err(|_| std::io::Error::other("the hashing thread panicked"))
    }
}

/// Starts writing dirty pages to disk while the upload goes on (an `fdatasync` on a second
/// handle of the file), so the final sync has little left to do.
struct Flusher {
    tx: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Flusher {
    fn start(file: std::fs::File) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::spawn(move || {
            for () in rx {
                file.sync_data()?;
            }
            Ok(())
        });
        Self { tx, thread }
    }

    /// Asks for a flush unless one is already pending.
    fn nudge(&self) {
        let _ = self.tx.try_send(());
    }

    fn finish(self) -> std::io::Result<()> {
        drop(self.tx);
        self.thread.join().map_err(|_| std::io::Error::other("the flushing thread panicked"))?
    }
}

/// The local spool where uploads are assembled.
#[derive(Debug, Clone)]
pub struct Staging {
    dir: PathBuf,
}

/// A staged upload after an append: its file, length, and the digest when the whole file
/// was written in one pass from byte 0.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    len: u64,
    digest: Option<Digest>,
}

impl Staged {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The SHA-256 of the staged bytes: known already for single-pass uploads, otherwise
    /// computed by reading the file back (resumed uploads).
    pub async fn digest(&self) -> Result<Digest, ArtifactError> {
        if let Some(d) = &self.digest {
            return Ok(d.clone());
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(&path)?;
            let mut hasher = Sha256::new();
            std::io::copy(&mut file, &mut hasher)?;
            Ok(Digest::from_hasher(hasher))
        })
        .await
        .map_err(|e| ArtifactError::Io(std::io::Error::other(e)))?
    }
}

impl Staging {
    /// A staging area in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, upload_id: &str) -> PathBuf {
        self.dir.join(format!("{upload_id}.part"))
    }

    /// How many bytes of the upload are committed (0 if none).
    pub async fn committed(&self, upload_id: &str) -> Result<u64, ArtifactError> {
        match tokio::fs::metadata(self.path(upload_id)).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends `body` to the upload at `offset`, which must be the committed length. Writes
    /// are flushed to disk (`fsync`) before returning, so a committed offset survives a
    /// crash. Fails without writing past `max_len` total bytes.
    pub async fn append<S, E>(
        &self,
        upload_id: &str,
        offset: u64,
        body: S,
        max_len: u64,
    ) -> Result<Staged, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let path = self.path(upload_id);
        let committed = self.committed(upload_id).await?;
        if committed != offset {
            return Err(ArtifactError::OffsetMismatch { expected: committed, given: offset });
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let writer_path = path.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<(u64, Option<Sha256>), std::io::Error> {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(&writer_path)?;
            // Hashing and flushing to disk run beside the writes, so that a large upload is
            // hashed and mostly on disk by the time its last byte arrives.
            let hasher = (offset == 0).then(Hasher::start);
            let flusher = Flusher::start(file.try_clone()?);
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut written = 0u64;
            let mut unflushed = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                out.write_all(&chunk)?;
                written += chunk.len() as u64;
                unflushed += chunk.len() as u64;
                if unflushed >= FLUSH_EVERY {
                    out.flush()?;
                    flusher.nudge();
                    unflushed = 0;
                }
                if let Some(h) = &hasher {
                    h.feed(chunk);
                }
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            flusher.finish()?;
            file.sync_data()?;
            Ok((written, hasher.map(Hasher::finish).transpose()?))
        });

        let mut body = std::pin::pin!(body);
        let mut total = offset;
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    total += chunk.len() as u64;
                    if total > max_len {
                        failure = Some(ArtifactError::TooLarge { limit: max_len });
                        break;
                    }
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    failure = Some(ArtifactError::Body(e.to_string()));
                    break;
                }
            }
        }
        drop(tx);
        let (written, hasher) = writer.await.map_err(|e| ArtifactError::Io(std::io::Error::other(e)))??;
        if let Some(e) = failure {
            // What was written before the failure stays committed: the client resumes there.
            tracing::debug!(upload_id, committed = offset + written, error = %e, "upload interrupted");
            return Err(e);
        }
        Ok(Staged { path, len: offset + written, digest: hasher.map(Digest::from_hasher) })
    }

    /// Drops an upload's staged bytes.
    pub async fn discard(&self, upload_id: &str) -> Result<(), ArtifactError> {
        match tokio::fs::remove_file(self.path(upload_id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + use<> {
        let owned: Vec<Bytes> = data.chunks(1000).map(Bytes::copy_from_slice).collect();
        futures::stream::iter(owned.into_iter().map(Ok))
    }

    #[tokio::test]
    async fn single_pass_and_resumed_uploads_hash_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::new(dir.path()).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();

        let one = staging.append("one", 0, chunks(&data), u64::MAX).await.unwrap();
        assert_eq!(one.len(), 10_000);
        assert_eq!(one.digest().await.unwrap(), Digest::of(&data));

        staging.append("two", 0, chunks(&data[..4000]), u64::MAX).await.unwrap();
        assert_eq!(staging.committed("two").await.unwrap(), 4000);
        let wrong = staging.append("two", 3000, chunks(&data[3000..]), u64::MAX).await;
        assert!(matches!(wrong, Err(ArtifactError::OffsetMismatch { expected: 4000, given: 3000 })));
        let done = staging.append("two", 4000, chunks(&data[4000..]), u64::MAX).await.unwrap();
        assert_eq!(done.len(), 10_000);
        assert_eq!(done.digest().await.unwrap(), Digest::of(&data), "re-hashed from disk");

        staging.discard("two").await.unwrap();
        assert_eq!(staging.committed("two").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn size_limit_and_broken_bodies_keep_what_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::new(dir.path()).unwrap();
        let err = staging.append("big", 0, chunks(&[1u8; 5000]), 2500).await;
        assert!(matches!(err, Err(ArtifactError::TooLarge { limit: 2500 })));
        assert!(staging.committed("big").await.unwrap() <= 2500);

        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"hello")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let err = staging.append("cut", 0, broken, u64::MAX).await;
        assert!(matches!(err, Err(ArtifactError::Body(_))));
        assert_eq!(staging.committed("cut").await.unwrap(), 5, "bytes before the cut are kept for resuming");
    }
}
