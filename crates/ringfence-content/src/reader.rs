//! The one bounds-checked reader every untrusted content byte goes through.
//!
//! In the style of rustls' `codec::Reader`: every read returns `Result`, a length prefix is
//! checked against the caller's limit *before* anything is sliced or allocated, nested
//! structures are read through sub-readers, and [`Reader::finish`] refuses trailing data.
//! Errors carry the absolute byte offset and what was being read, so a corrupt file is
//! reported as "entry 12 (rules/x.yml): data length at offset 4711: ..." rather than
//! "invalid bundle".

use std::fmt;

/// Why a read failed, with the absolute offset in the outer buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// Fewer bytes remained than the field needs.
    Truncated {
        what: &'static str,
        offset: usize,
        needed: u64,
        remaining: usize,
    },
    /// A length prefix is above the limit for that field.
    TooLong {
        what: &'static str,
        offset: usize,
        length: u64,
        limit: u64,
    },
    /// Bytes remained after the structure ended.
    TrailingData {
        what: &'static str,
        offset: usize,
        remaining: usize,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Truncated {
                what,
                offset,
                needed,
                remaining,
            } => write!(
                f,
                "truncated {what} at offset {offset}: needs {needed} bytes, {remaining} remain"
            ),
            ReadError::TooLong {
                what,
                offset,
                length,
                limit,
            } => write!(
                f,
                "{what} at offset {offset} declares {length} bytes, limit is {limit}"
            ),
            ReadError::TrailingData {
                what,
                offset,
                remaining,
            } => write!(
                f,
                "{remaining} bytes of trailing data after {what} at offset {offset}"
            ),
        }
    }
}

impl std::error::Error for ReadError {}

/// A cursor over untrusted bytes. Never panics, never reads past the end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the outermost buffer, so errors in sub-readers name absolute offsets.
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over all of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// Absolute offset of the next byte to be read.
    pub fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Takes exactly `n` bytes, or fails without consuming anything.
    pub fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], ReadError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let truncated = ReadError::Truncated {
            what,
            offset: self.offset(),
            needed: n,
            remaining: rest.len(),
        };
        let n = usize::try_from(n).map_err(|_| truncated.clone())?;
        let (head, _) = rest.split_at_checked(n).ok_or(truncated)?;
        self.pos += n;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ReadError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// A single byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, ReadError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, ReadError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, ReadError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, ReadError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A `u32` length prefix, checked against `limit` before the body is touched, then the body.
    pub fn bytes_u32(&mut self, limit: u64, what: &'static str) -> Result<&'a [u8], ReadError> {
        let offset = self.offset();
        let len = u64::from(self.u32(what)?);
        self.bounded(len, limit, offset, what)
    }

    /// A `u16` length prefix, checked against `limit`, then the body.
    pub fn bytes_u16(&mut self, limit: u64, what: &'static str) -> Result<&'a [u8], ReadError> {
        let offset = self.offset();
        let len = u64::from(self.u16(what)?);
        self.bounded(len, limit, offset, what)
    }

    /// A `u64` length prefix, checked against `limit`, then the body.
    pub fn bytes_u64(&mut self, limit: u64, what: &'static str) -> Result<&'a [u8], ReadError> {
        let offset = self.offset();
        let len = self.u64(what)?;
        self.bounded(len, limit, offset, what)
    }

    fn bounded(
        &mut self,
        len: u64,
        limit: u64,
        offset: usize,
        what: &'static str,
    ) -> Result<&'a [u8], ReadError> {
        if len > limit {
            return Err(ReadError::TooLong {
                what,
                offset,
                length: len,
                limit,
            });
        }
        self.take(len, what)
    }

    /// A sub-reader over the next `n` bytes; errors inside it name absolute offsets.
    pub fn sub(&mut self, n: u64, what: &'static str) -> Result<Reader<'a>, ReadError> {
        let base = self.offset();
        let buf = self.take(n, what)?;
        Ok(Reader { buf, pos: 0, base })
    }

    /// Succeeds only if every byte was read.
    pub fn finish(&self, what: &'static str) -> Result<(), ReadError> {
        match self.remaining() {
            0 => Ok(()),
            remaining => Err(ReadError::TrailingData {
                what,
                offset: self.offset(),
                remaining,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_refuses_short_reads() {
        let mut r = Reader::new(&[0, 1, 0, 0, 0, 2, 9]);
        assert_eq!(r.u16("a").unwrap(), 1);
        assert_eq!(r.u32("b").unwrap(), 2);
        let err = r.u16("c").unwrap_err();
        assert_eq!(
            err,
            ReadError::Truncated {
                what: "c",
                offset: 6,
                needed: 2,
                remaining: 1
            }
        );
        // A failed read consumes nothing.
        assert_eq!(r.u8("d").unwrap(), 9);
        r.finish("all").unwrap();
    }

    #[test]
    fn length_prefix_is_checked_before_the_body() {
        // Declares 4 GiB - 1 with only 2 bytes behind it: refused as too long, not truncated.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 1, 2]);
        let err = r.bytes_u32(1024, "rule").unwrap_err();
        assert!(matches!(
            err,
            ReadError::TooLong {
                length: 0xffff_ffff,
                limit: 1024,
                offset: 0,
                ..
            }
        ));
    }

    #[test]
    fn sub_reader_reports_absolute_offsets_and_trailing_data() {
        let data = [0, 0, 0, 3, 7, 8, 9, 1];
        let mut r = Reader::new(&data);
        let body = r.bytes_u32(10, "body").unwrap();
        assert_eq!(body, &[7, 8, 9]);
        let err = r.finish("frame").unwrap_err();
        assert_eq!(
            err,
            ReadError::TrailingData {
                what: "frame",
                offset: 7,
                remaining: 1
            }
        );
        let mut r = Reader::new(&data);
        r.u32("skip").unwrap();
        let mut sub = r.sub(2, "pair").unwrap();
        sub.u8("x").unwrap();
        assert_eq!(sub.offset(), 5);
        let err = sub.u16("y").unwrap_err();
        assert!(matches!(err, ReadError::Truncated { offset: 5, .. }));
    }

    #[test]
    fn huge_take_on_any_platform_is_truncated_not_panicking() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(r.take(u64::MAX, "x").is_err());
        assert_eq!(r.remaining(), 3);
    }
}
