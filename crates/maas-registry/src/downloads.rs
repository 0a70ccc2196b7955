//! File downloads: whole or a single byte range, counted per model.

use std::ops::Range;

use maas_artifacts::{ByteStream, Digest};
use maas_core::registry::ModelFile;

use crate::access::ModelAccess;
use crate::{Registry, RegistryError};

/// A file ready to send.
pub struct Download {
    pub file: ModelFile,
    /// The bytes being sent, when a range was asked for.
    pub range: Option<Range<u64>>,
    pub stream: ByteStream,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("file", &self.file).field("range", &self.range).finish_non_exhaustive()
    }
}

/// Parses a single-range `Range` header against a file of `size` bytes. `None` means "send
/// everything" (no header, several ranges, or a syntax this server does not honour, which
/// RFC 9110 allows ignoring); a range past the end is an error (416).
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<Range<u64>>, RegistryError> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else { return Ok(None) };
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => match suffix.parse::<u64>() {
            Ok(n) if n > 0 => size.saturating_sub(n)..size,
            _ => return Ok(None),
        },
        (start, "") => match start.parse::<u64>() {
            Ok(s) => s..size,
            Err(_) => return Ok(None),
        },
        (start, end) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) if e >= s => s..(e + 1).min(size),
            _ => return Ok(None),
        },
    };
    if range.start >= size {
        return Err(RegistryError::RangeNotSatisfiable { size });
    }
    Ok(Some(range))
}

impl Registry {
    /// Opens `path` of `version` for reading. `count` adds one download to the model when
    /// the read starts at byte 0 (so resumed and parallel range reads count once).
    pub async fn download(
        &self,
        access: &ModelAccess,
        version: &str,
        path: &str,
        range: Option<&str>,
        count: bool,
    ) -> Result<Download, RegistryError> {
        let (_, files) = self.version(access, version).await?;
        let file =
            files.into_iter().find(|f| f.path == path).ok_or_else(|| RegistryError::FileNotFound(path.to_owned()))?;
        let size = u64::try_from(file.size).unwrap_or(0);
        let range = parse_range(range, size)?;
        let digest = Digest::parse(&file.sha256)?;
        let stream = self.artifacts.get(&digest, range.clone()).await?;
        if count && range.as_ref().is_none_or(|r| r.start == 0) {
            access.store().add_downloads(access.model.id, 1).await?;
        }
        Ok(Download { file, range, stream })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-9"), 100).unwrap(), Some(0..10));
        assert_eq!(parse_range(Some("bytes=90-"), 100).unwrap(), Some(90..100));
        assert_eq!(parse_range(Some("bytes=-5"), 100).unwrap(), Some(95..100));
        assert_eq!(parse_range(Some("bytes=50-500"), 100).unwrap(), Some(50..100));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100).unwrap(), None);
        assert_eq!(parse_range(Some("items=0-1"), 100).unwrap(), None);
        assert!(parse_range(Some("bytes=100-"), 100).is_err());
    }
}
