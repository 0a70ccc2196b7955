//! Local files for push and pull: streaming SHA-256 on a blocking thread, and the check that a
//! path from the server is a safe relative path inside the target directory.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use sha2::{Digest as _, Sha256};

use crate::CliError;

/// Read size when hashing.
const HASH_CHUNK: usize = 1 << 20;

/// Lower-case hex of a finished hasher.
pub fn hex(hasher: Sha256) -> String {
    format!("{:x}", hasher.finalize())
}

/// Feeds the first `len` bytes of `path` into `hasher` (the whole file when `len` is `None`),
/// on a blocking thread, advancing `bar`. Returns the hasher and the number of bytes read.
pub async fn hash_prefix(
    path: &Path,
    mut hasher: Sha256,
    len: Option<u64>,
    bar: ProgressBar,
) -> Result<(Sha256, u64), CliError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&owned).map_err(CliError::file(&owned))?;
        let mut reader = file.take(len.unwrap_or(u64::MAX));
        let mut buf = vec![0u8; HASH_CHUNK];
        let mut read = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CliError::file(&owned)(e)),
            };
            hasher.update(&buf[..n]);
            read += n as u64;
            bar.inc(n as u64);
        }
        Ok((hasher, read))
    })
    .await?
}

/// The hex SHA-256 and size of a whole file.
pub async fn sha256_file(path: &Path, bar: ProgressBar) -> Result<(String, u64), CliError> {
    let (hasher, size) = hash_prefix(path, Sha256::new(), None, bar).await?;
    Ok((hex(hasher), size))
}

/// `dir` joined with a server-provided `/`-separated path, refused unless every segment is a
/// plain name (no `..`, `.`, empty segments, absolute paths, drive letters or backslashes).
pub fn safe_join(dir: &Path, path: &str) -> Result<PathBuf, CliError> {
    let unsafe_path = || CliError::UnsafePath(path.to_owned());
    if path.is_empty() || path.starts_with('/') || path.contains(['\\', ':', '\0']) {
        return Err(unsafe_path());
    }
    let mut out = dir.to_path_buf();
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(unsafe_path());
        }
        out.push(segment);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_joined() {
        let dir = Path::new("/tmp/out");
        assert_eq!(safe_join(dir, "a/b.txt").unwrap(), Path::new("/tmp/out/a/b.txt"));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\\..\\b", "c:x", "a/.."] {
            assert!(safe_join(dir, bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn hashes_files_and_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let (hash, size) = sha256_file(&path, ProgressBar::hidden()).await.unwrap();
        assert_eq!(hash, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(size, 3);
        let (hasher, read) = hash_prefix(&path, Sha256::new(), Some(2), ProgressBar::hidden()).await.unwrap();
        assert_eq!(read, 2);
        assert_eq!(hex(hasher), format!("{:x}", Sha256::digest(b"ab")));
    }
}
