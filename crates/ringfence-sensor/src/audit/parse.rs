//! Parsers for what the audit netlink socket delivers: netlink framing, the text of each
//! record (`audit(1700000000.123:456): pid=1 exe="/bin/sh" ...`), and the assembly of the
//! records of one syscall (SYSCALL, EXECVE, CWD, ..., EOE) into one [`AuditExec`].
//!
//! Pure and safe, so they can be fuzzed (`fuzz_targets/audit_netlink.rs`): every length is
//! checked, values that are not valid hex or UTF-8 are kept lossily, and an incomplete group of
//! records is flushed when a newer serial arrives instead of waiting forever.

use std::collections::BTreeMap;

pub const AUDIT_SYSCALL: u16 = 1300;
pub const AUDIT_CWD: u16 = 1307;
pub const AUDIT_EXECVE: u16 = 1309;
pub const AUDIT_EOE: u16 = 1320;
const NLMSG_HDRLEN: usize = 16;

/// One netlink message: its type and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMessage<'a> {
    pub msg_type: u16,
    pub payload: &'a [u8],
}

/// Split a datagram into netlink messages. Stops at the first malformed header.
pub fn netlink_messages(buf: &[u8]) -> Vec<NlMessage<'_>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = buf
            .get(off..off + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_ne_bytes) as usize;
        let msg_type = buf
            .get(off + 4..off + 6)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u16::from_ne_bytes);
        // Audit's multicast messages often carry a length that excludes the header (the kernel
        // sets nlmsg_len to the payload size on some paths); accept both when they fit.
        let (start, end) = if len >= NLMSG_HDRLEN && off + len <= buf.len() {
            (off + NLMSG_HDRLEN, off + len)
        } else if off + NLMSG_HDRLEN + len <= buf.len() {
            (off + NLMSG_HDRLEN, off + NLMSG_HDRLEN + len)
        } else {
            break;
        };
        out.push(NlMessage {
            msg_type,
            payload: &buf[start..end],
        });
        let advance = (end - off + 3) & !3;
        if advance == 0 {
            break;
        }
        off += advance;
    }
    out
}

/// A record's header: `audit(SECONDS.MILLIS:SERIAL): ` and the rest of the text.
pub fn record_header(text: &str) -> Option<(i64, u64, &str)> {
    let rest = text.strip_prefix("audit(")?;
    let close = rest.find("):")?;
    let (stamp, serial) = rest[..close].split_once(':')?;
    let (secs, millis) = stamp.split_once('.')?;
    let secs: i64 = secs.parse().ok()?;
    let millis: i64 = millis.parse().ok()?;
    let serial: u64 = serial.parse().ok()?;
    let nanos = secs
        .checked_mul(1_000_000_000)?
        .checked_add(millis.checked_mul(1_000_000)?)?;
    Some((nanos, serial, rest[close + 2..].trim_start()))
}

/// `key=value` pairs of a record body; quoted values are unquoted, others kept raw.
pub fn fields(body: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_owned(), &q[end + 1..]),
                None => (q.to_owned(), ""),
            }
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        // Keys never hold spaces; anything before the last space is debris (e.g. `msg='`).
        let key = key.rsplit(' ').next().unwrap_or(key);
        out.push((key, value));
        rest = next.trim_start();
    }
    out
}

/// An unquoted audit value is hex when it encodes bytes with spaces or specials.
pub fn decode_value(raw: &str, was_quoted: bool) -> String {
    if was_quoted
        || raw.is_empty()
        || !raw.len().is_multiple_of(2)
        || !raw.bytes().all(|c| c.is_ascii_hexdigit())
    {
        return raw.to_owned();
    }
    let bytes: Option<Vec<u8>> = (0..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(raw.get(i..i + 2)?, 16).ok())
        .collect();
    match bytes {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => raw.to_owned(),
    }
}

/// Quoted-ness of each value, for [`decode_value`].
fn fields_with_quotes(body: &str) -> Vec<(String, String, bool)> {
    let quoted: Vec<bool> = {
        let mut v = Vec::new();
        let mut rest = body.trim();
        while let Some(eq) = rest.find('=') {
            let after = &rest[eq + 1..];
            if let Some(q) = after.strip_prefix('"') {
                v.push(true);
                rest = q.find('"').map_or("", |e| &q[e + 1..]);
            } else {
                v.push(false);
                rest = after.find(' ').map_or("", |e| &after[e..]);
            }
            rest = rest.trim_start();
        }
        v
    };
    fields(body)
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| (k.to_owned(), v, quoted.get(i).copied().unwrap_or(false)))
        .collect()
}

/// One execve as audit saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditExec {
    pub serial: u64,
    /// Wall clock, nanoseconds since the epoch (millisecond precision).
    pub time_ns: i64,
    pub pid: Option<u32>,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
    pub euid: Option<u32>,
    pub gid: Option<u32>,
    pub executable: Option<String>,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub success: Option<bool>,
    pub key: Option<String>,
}

#[derive(Debug, Default)]
struct Partial {
    time_ns: i64,
    exec: AuditExec,
    saw_syscall: bool,
    saw_execve: bool,
    argc: usize,
    args: BTreeMap<usize, String>,
    chunks: BTreeMap<(usize, usize), String>,
}

/// Groups records by serial and yields a complete [`AuditExec`] per execve.
#[derive(Debug, Default)]
pub struct Assembler {
    pending: BTreeMap<u64, Partial>,
    /// Groups given up on (no EOE before many newer serials).
    pub abandoned: u64,
}

const MAX_PENDING: usize = 256;

impl Assembler {
    /// Feed one netlink message; completed execs are pushed to `out`.
    pub fn push(&mut self, msg: NlMessage<'_>, out: &mut Vec<AuditExec>) {
        let text = String::from_utf8_lossy(msg.payload);
        let text = text.trim_end_matches('\0').trim_end();
        let Some((time_ns, serial, body)) = record_header(text) else {
            return;
        };
        if msg.msg_type == AUDIT_EOE {
            if let Some(p) = self.pending.remove(&serial) {
                finish(p, out);
            }
            return;
        }
        if !matches!(msg.msg_type, AUDIT_SYSCALL | AUDIT_EXECVE | AUDIT_CWD) {
            return;
        }
        let p = self.pending.entry(serial).or_default();
        p.time_ns = time_ns;
        p.exec.serial = serial;
        p.exec.time_ns = time_ns;
        for (k, v, quoted) in fields_with_quotes(body) {
            match (msg.msg_type, k.as_str()) {
                (AUDIT_SYSCALL, "pid") => p.exec.pid = v.parse().ok(),
                (AUDIT_SYSCALL, "ppid") => p.exec.ppid = v.parse().ok(),
                (AUDIT_SYSCALL, "uid") => p.exec.uid = v.parse().ok(),
                (AUDIT_SYSCALL, "euid") => p.exec.euid = v.parse().ok(),
                (AUDIT_SYSCALL, "gid") => p.exec.gid = v.parse().ok(),
                (AUDIT_SYSCALL, "success") => p.exec.success = Some(v == "yes"),
                (AUDIT_SYSCALL, "exe") => p.exec.executable = Some(decode_value(&v, quoted)),
                (AUDIT_SYSCALL, "key") if v != "(null)" => {
                    p.exec.key = Some(decode_value(&v, quoted));
                }
                (AUDIT_CWD, "cwd") => p.exec.cwd = Some(decode_value(&v, quoted)),
                (AUDIT_EXECVE, "argc") => {
                    p.argc = v.parse::<usize>().unwrap_or(0).min(4096);
                }
                (AUDIT_EXECVE, key) => {
                    // a0=..., a1_len=N, a1[0]=... (long arguments come in chunks).
                    let Some(idx) = key.strip_prefix('a') else {
                        continue;
                    };
                    if let Some((n, rest)) = idx.split_once('[') {
                        let (Ok(n), Ok(c)) = (
                            n.parse::<usize>(),
                            rest.trim_end_matches(']').parse::<usize>(),
                        ) else {
                            continue;
                        };
                        if p.chunks.len() < 65_536 {
                            p.chunks.insert((n, c), decode_value(&v, quoted));
                        }
                    } else if let Ok(n) = idx.parse::<usize>()
                        && n < 4096
                    {
                        p.args.insert(n, decode_value(&v, quoted));
                    }
                }
                _ => {}
            }
        }
        match msg.msg_type {
            AUDIT_SYSCALL => p.saw_syscall = true,
            AUDIT_EXECVE => p.saw_execve = true,
            _ => {}
        }
        // Bound memory: a group that never saw its EOE is flushed once far behind.
        while self.pending.len() > MAX_PENDING {
            if let Some((_, old)) = self.pending.pop_first() {
                self.abandoned += 1;
                finish(old, out);
            }
        }
    }
}

fn finish(mut p: Partial, out: &mut Vec<AuditExec>) {
    if !(p.saw_syscall && p.saw_execve) {
        return;
    }
    for ((n, _), chunk) in std::mem::take(&mut p.chunks) {
        p.args.entry(n).or_default().push_str(&chunk);
    }
    let argc = if p.argc == 0 { p.args.len() } else { p.argc };
    p.exec.args = (0..argc)
        .map(|i| p.args.remove(&i).unwrap_or_default())
        .collect();
    out.push(p.exec);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: u16, text: &str) -> Vec<u8> {
        let mut b = Vec::new();
        let len = u32::try_from(NLMSG_HDRLEN + text.len()).unwrap_or(0);
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&t.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(text.as_bytes());
        b
    }

    #[test]
    fn one_execve_assembles() {
        let records = [
            (
                AUDIT_SYSCALL,
                r#"audit(1700000000.123:77): arch=c000003e syscall=59 success=yes exit=0 a0=1 ppid=10 pid=11 auid=0 uid=1000 gid=1000 euid=0 comm="true" exe="/usr/bin/true" key="ringfence""#,
            ),
            (
                AUDIT_EXECVE,
                r#"audit(1700000000.123:77): argc=3 a0="/bin/true" a1="x y" a2=2F746D7020782079"#,
            ),
            (AUDIT_CWD, r#"audit(1700000000.123:77): cwd="/root""#),
            (AUDIT_EOE, "audit(1700000000.123:77): "),
        ];
        let mut a = Assembler::default();
        let mut out = Vec::new();
        for (t, text) in records {
            for m in netlink_messages(&msg(t, text)) {
                a.push(m, &mut out);
            }
        }
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.pid, Some(11));
        assert_eq!(e.ppid, Some(10));
        assert_eq!(e.uid, Some(1000));
        assert_eq!(e.euid, Some(0));
        assert_eq!(e.executable.as_deref(), Some("/usr/bin/true"));
        assert_eq!(e.args, vec!["/bin/true", "x y", "/tmp x y"]);
        assert_eq!(e.cwd.as_deref(), Some("/root"));
        assert_eq!(e.key.as_deref(), Some("ringfence"));
        assert_eq!(e.time_ns, 1_700_000_000_123_000_000);
    }

    #[test]
    fn long_arguments_in_chunks() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        for (t, text) in [
            (AUDIT_SYSCALL, "audit(1.000:5): pid=3 exe=\"/bin/x\""),
            (
                AUDIT_EXECVE,
                "audit(1.000:5): argc=2 a0=\"x\" a1_len=6 a1[0]=616263 a1[1]=646566",
            ),
            (AUDIT_EOE, "audit(1.000:5): "),
        ] {
            a.push(
                NlMessage {
                    msg_type: t,
                    payload: text.as_bytes(),
                },
                &mut out,
            );
        }
        assert_eq!(
            out.first().map(|e| e.args.clone()),
            Some(vec!["x".into(), "abcdef".into()])
        );
    }

    #[test]
    fn garbage_and_truncation_never_panic() {
        let good = msg(AUDIT_EXECVE, "audit(1.5:9): argc=1 a0=\"x\"");
        let mut a = Assembler::default();
        let mut out = Vec::new();
        for cut in 0..good.len() {
            for m in netlink_messages(&good[..cut]) {
                a.push(m, &mut out);
            }
        }
        for junk in [
            "audit(",
            "audit(1.2:x): ",
            "audit(99999999999999999999.1:1): a",
            "a=\"",
            "=",
            "a[=1",
            "audit(1.1:1): a1[99999999999]=00",
        ] {
            a.push(
                NlMessage {
                    msg_type: AUDIT_EXECVE,
                    payload: junk.as_bytes(),
                },
                &mut out,
            );
            let _ = fields(junk);
        }
    }

    #[test]
    fn pending_groups_are_bounded() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        for s in 0..1000u64 {
            let t = format!("audit(1.000:{s}): pid=1");
            a.push(
                NlMessage {
                    msg_type: AUDIT_SYSCALL,
                    payload: t.as_bytes(),
                },
                &mut out,
            );
        }
        assert!(a.pending.len() <= MAX_PENDING);
        assert!(a.abandoned > 0);
    }
}
