//! A checked reader over `Read + Seek`: it knows the file's length, checks every read and
//! skip against it (a short file becomes [`FormatError::Truncated`]), and seeks over what is
//! not needed instead of reading it.

use std::fmt;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use crate::FormatError;

/// Small: most reads are a few bytes followed by a long skip.
const BUFFER: usize = 8 * 1024;

pub(crate) struct Source<R> {
    inner: BufReader<R>,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Source<R> {
    /// Measures the file and rewinds it: positions are counted from its first byte.
    pub(crate) fn open(mut reader: R) -> Result<Self, FormatError> {
        let len = reader.seek(SeekFrom::End(0))?;
        reader.seek(SeekFrom::Start(0))?;
        Ok(Self { inner: BufReader::with_capacity(BUFFER, reader), pos: 0, len })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn truncated(&self, needed: u64, what: fmt::Arguments<'_>) -> FormatError {
        FormatError::Truncated { what: what.to_string(), needed, available: self.len }
    }

    /// Fails unless `n` more bytes follow the current position.
    pub(crate) fn ensure(&self, n: u64, what: fmt::Arguments<'_>) -> Result<(), FormatError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            end => Err(self.truncated(end.unwrap_or(u64::MAX), what)),
        }
    }

    pub(crate) fn read_exact(&mut self, buf: &mut [u8], what: fmt::Arguments<'_>) -> Result<(), FormatError> {
        let n = buf.len() as u64;
        self.ensure(n, what)?;
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += n;
                Ok(())
            }
            // The file shrank while being read.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.truncated(self.pos + n, what)),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn read_array<const N: usize>(&mut self, what: fmt::Arguments<'_>) -> Result<[u8; N], FormatError> {
        let mut buf = [0; N];
        self.read_exact(&mut buf, what)?;
        Ok(buf)
    }

    pub(crate) fn read_u8(&mut self, what: fmt::Arguments<'_>) -> Result<u8, FormatError> {
        Ok(self.read_array::<1>(what)?[0])
    }

    pub(crate) fn read_u32(&mut self, what: fmt::Arguments<'_>) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.read_array(what)?))
    }

    pub(crate) fn read_u64(&mut self, what: fmt::Arguments<'_>) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.read_array(what)?))
    }

    /// Reads `n` bytes into memory, refusing more than `limit`.
    pub(crate) fn read_vec(&mut self, n: u64, limit: u64, what: fmt::Arguments<'_>) -> Result<Vec<u8>, FormatError> {
        self.ensure(n, what)?;
        if n > limit {
            return Err(FormatError::TooLarge { what: what.to_string(), len: n, limit });
        }
        // `n <= limit`, a few MiB: it fits in usize.
        let mut buf = vec![0; n as usize];
        self.read_exact(&mut buf, what)?;
        Ok(buf)
    }

    /// Moves `n` bytes forward without reading them (within the buffer when it can).
    pub(crate) fn skip(&mut self, n: u64, what: fmt::Arguments<'_>) -> Result<(), FormatError> {
        self.ensure(n, what)?;
        self.inner.seek_relative(offset(n)?)?;
        self.pos += n;
        Ok(())
    }

    /// Moves to an absolute position inside the file, forwards or backwards.
    pub(crate) fn seek_to(&mut self, target: u64, what: fmt::Arguments<'_>) -> Result<(), FormatError> {
        if target > self.len {
            return Err(self.truncated(target, what));
        }
        let delta = if target >= self.pos { offset(target - self.pos)? } else { -offset(self.pos - target)? };
        self.inner.seek_relative(delta)?;
        self.pos = target;
        Ok(())
    }
}

fn offset(n: u64) -> Result<i64, FormatError> {
    i64::try_from(n).map_err(|_| FormatError::Io(io::Error::other(format!("cannot seek {n} bytes"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reads_skips_and_refuses_to_run_past_the_end() {
        let mut src = Source::open(Cursor::new((0u8..20).collect::<Vec<_>>())).unwrap();
        assert_eq!(src.len(), 20);
        assert_eq!(src.read_u8(format_args!("a byte")).unwrap(), 0);
        src.skip(3, format_args!("padding")).unwrap();
        assert_eq!(src.read_u32(format_args!("a u32")).unwrap(), u32::from_le_bytes([4, 5, 6, 7]));
        let err = src.read_vec(13, 100, format_args!("the tail")).unwrap_err();
        assert_eq!(err.to_string(), "truncated: the file ends inside the tail (needs 21 bytes, has 20)");
        let err = src.read_vec(12, 4, format_args!("the tail")).unwrap_err();
        assert_eq!(err.to_string(), "the tail is 12 bytes, over the limit of 4 bytes");
        src.seek_to(2, format_args!("back")).unwrap();
        assert_eq!(src.read_u8(format_args!("a byte")).unwrap(), 2);
        assert!(src.skip(u64::MAX, format_args!("everything")).is_err());
        assert!(src.seek_to(21, format_args!("beyond")).is_err());
    }
}
