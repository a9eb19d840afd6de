//! Parser for the records `read(2)` returns from a fanotify group that reports file handles
//! (`FAN_REPORT_DFID_NAME`). Pure and safe: it only reads bytes, and every length in them is
//! checked against the buffer, so it can be fuzzed (`fuzz_targets/fanotify_records.rs`).
//!
//! Layout (see `fanotify(7)`): each event is a `fanotify_event_metadata` (24 bytes: length,
//! version, metadata length, mask, fd, pid) followed by info records, each starting with a
//! 4-byte header (type, padding, length). A FID record holds the filesystem id (8 bytes), a
//! `struct file_handle` (4-byte size, 4-byte type, bytes) and, for the `*DFID_NAME` types, a
//! NUL-terminated name.

use std::fmt;

/// `FANOTIFY_METADATA_VERSION`.
pub const METADATA_VERSION: u8 = 3;
const METADATA_LEN: usize = 24;

pub const INFO_FID: u8 = 1;
pub const INFO_DFID_NAME: u8 = 2;
pub const INFO_DFID: u8 = 3;
pub const INFO_OLD_DFID_NAME: u8 = 10;
pub const INFO_NEW_DFID_NAME: u8 = 12;

/// Why a buffer could not be parsed past some point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than a length field promised.
    Truncated { offset: usize },
    /// A metadata version this parser does not know.
    Version(u8),
    /// A length that is impossible (shorter than its own header).
    BadLength { offset: usize, len: usize },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated { offset } => write!(f, "record truncated at byte {offset}"),
            ParseError::Version(v) => write!(f, "unknown fanotify metadata version {v}"),
            ParseError::BadLength { offset, len } => {
                write!(f, "impossible length {len} at byte {offset}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// One file-handle record: a directory (or file) handle and, for name records, the entry name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FidInfo<'a> {
    pub info_type: u8,
    /// `__kernel_fsid_t`, both words in native order.
    pub fsid: [i32; 2],
    pub handle_type: i32,
    pub handle: &'a [u8],
    /// The entry name, without its NUL; `None` for plain FID records.
    pub name: Option<&'a [u8]>,
}

/// One event, borrowing the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent<'a> {
    pub mask: u64,
    pub fd: i32,
    pub pid: i32,
    pub infos: Vec<FidInfo<'a>>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parse every event in `buf` into `out`. Stops at the first malformed event (after it no
/// length can be trusted) and returns its error; events before it are kept in `out`.
pub fn parse_events<'a>(buf: &'a [u8], out: &mut Vec<RawEvent<'a>>) -> Result<(), ParseError> {
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        let truncated = ParseError::Truncated { offset: off };
        let event_len = u32_at(rest, 0).ok_or(truncated)? as usize;
        let vers = *rest.get(4).ok_or(truncated)?;
        if vers != METADATA_VERSION {
            return Err(ParseError::Version(vers));
        }
        let meta_len = usize::from(u16_at(rest, 6).ok_or(truncated)?);
        if meta_len < METADATA_LEN || event_len < meta_len {
            return Err(ParseError::BadLength {
                offset: off,
                len: event_len,
            });
        }
        let event = rest.get(..event_len).ok_or(truncated)?;
        let mask = u64_at(event, 8).ok_or(truncated)?;
        let fd = i32_at(event, 16).ok_or(truncated)?;
        let pid = i32_at(event, 20).ok_or(truncated)?;
        let mut infos = Vec::new();
        let mut at = meta_len;
        while at < event.len() {
            let info_off = off + at;
            let info_type = event[at];
            let len = usize::from(
                u16_at(event, at + 2).ok_or(ParseError::Truncated { offset: info_off })?,
            );
            if len < 4 {
                return Err(ParseError::BadLength {
                    offset: info_off,
                    len,
                });
            }
            let record = event
                .get(at..at + len)
                .ok_or(ParseError::Truncated { offset: info_off })?;
            if matches!(
                info_type,
                INFO_FID | INFO_DFID | INFO_DFID_NAME | INFO_OLD_DFID_NAME | INFO_NEW_DFID_NAME
            ) {
                infos.push(parse_fid(record, info_type, info_off)?);
            }
            at += len;
        }
        out.push(RawEvent {
            mask,
            fd,
            pid,
            infos,
        });
        off += event_len;
    }
    Ok(())
}

fn parse_fid(record: &[u8], info_type: u8, offset: usize) -> Result<FidInfo<'_>, ParseError> {
    let truncated = ParseError::Truncated { offset };
    let fsid = [
        i32_at(record, 4).ok_or(truncated)?,
        i32_at(record, 8).ok_or(truncated)?,
    ];
    let handle_bytes = u32_at(record, 12).ok_or(truncated)? as usize;
    let handle_type = i32_at(record, 16).ok_or(truncated)?;
    let handle = record
        .get(20..20usize.saturating_add(handle_bytes))
        .ok_or(truncated)?;
    let name = if matches!(
        info_type,
        INFO_DFID_NAME | INFO_OLD_DFID_NAME | INFO_NEW_DFID_NAME
    ) {
        let tail = &record[20 + handle_bytes..];
        let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
        Some(&tail[..end])
    } else {
        None
    };
    Ok(FidInfo {
        info_type,
        fsid,
        handle_type,
        handle,
        name,
    })
}

/// Build one event record the way the kernel does; for tests and the fuzz corpus.
pub fn encode_event(mask: u64, pid: i32, infos: &[FidInfo<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for &FidInfo {
        info_type,
        fsid,
        handle_type,
        handle,
        name,
    } in infos
    {
        let mut rec = vec![info_type, 0, 0, 0];
        rec.extend_from_slice(&fsid[0].to_ne_bytes());
        rec.extend_from_slice(&fsid[1].to_ne_bytes());
        rec.extend_from_slice(&u32::try_from(handle.len()).unwrap_or(0).to_ne_bytes());
        rec.extend_from_slice(&handle_type.to_ne_bytes());
        rec.extend_from_slice(handle);
        if let Some(name) = name {
            rec.extend_from_slice(name);
            rec.push(0);
        }
        while rec.len() % 4 != 0 {
            rec.push(0);
        }
        let len = u16::try_from(rec.len()).unwrap_or(u16::MAX);
        rec[2..4].copy_from_slice(&len.to_ne_bytes());
        body.extend_from_slice(&rec);
    }
    let total = u32::try_from(METADATA_LEN + body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_ne_bytes());
    out.push(METADATA_VERSION);
    out.push(0);
    out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
    out.extend_from_slice(&mask.to_ne_bytes());
    out.extend_from_slice(&(-1i32).to_ne_bytes());
    out.extend_from_slice(&pid.to_ne_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fid<'a>(info_type: u8, handle: &'a [u8], name: Option<&'a [u8]>) -> FidInfo<'a> {
        FidInfo {
            info_type,
            fsid: [1, 2],
            handle_type: 1,
            handle,
            name,
        }
    }

    #[test]
    fn round_trip_two_events() {
        let mut buf = encode_event(
            0x100,
            42,
            &[fid(
                INFO_DFID_NAME,
                &[9, 9, 9, 9, 9, 9, 9, 9],
                Some(b"new.txt"),
            )],
        );
        buf.extend(encode_event(
            0x1000_0000,
            7,
            &[
                fid(INFO_OLD_DFID_NAME, &[1; 8], Some(b"a")),
                fid(INFO_NEW_DFID_NAME, &[2; 8], Some(b"b")),
            ],
        ));
        let mut out = Vec::new();
        assert_eq!(parse_events(&buf, &mut out), Ok(()));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].mask, 0x100);
        assert_eq!(out[0].pid, 42);
        assert_eq!(out[0].infos[0].name, Some(&b"new.txt"[..]));
        assert_eq!(out[0].infos[0].handle, &[9; 8]);
        assert_eq!(out[1].infos.len(), 2);
        assert_eq!(out[1].infos[1].name, Some(&b"b"[..]));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let buf = encode_event(0x2, 1, &[fid(INFO_DFID_NAME, &[3; 12], Some(b"x"))]);
        for cut in 1..buf.len() {
            let mut out = Vec::new();
            assert!(parse_events(&buf[..cut], &mut out).is_err(), "cut {cut}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn lying_lengths_are_refused() {
        let mut buf = encode_event(0x2, 1, &[fid(INFO_DFID, &[3; 8], None)]);
        // handle_bytes claims more than the record holds.
        buf[24 + 12..24 + 16].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_events(&buf, &mut Vec::new()).is_err());
        let mut zero = encode_event(0x2, 1, &[]);
        zero[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert!(matches!(
            parse_events(&zero, &mut Vec::new()),
            Err(ParseError::BadLength { .. })
        ));
    }
}
