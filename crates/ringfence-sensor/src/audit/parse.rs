//! Parsers for what the audit netlink socket delivers: netlink framing, the text of each
//! record (`audit(1700000000.123:456): pid=1 exe="/bin/sh" ...`), and the assembly of the
//! records of one syscall (SYSCALL, EXECVE, CWD, SOCKADDR, ..., EOE) into one [`AuditRecord`]:
//! an execve ([`AuditExec`]) or a socket call with an IPv4/IPv6 address ([`AuditNet`]).
//!
//! Pure and safe, so they can be fuzzed (`fuzz_targets/audit_netlink.rs`): every length is
//! checked, values that are not valid hex or UTF-8 are kept lossily, and an incomplete group of
//! records is flushed when a newer serial arrives instead of waiting forever.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const AUDIT_SYSCALL: u16 = 1300;
pub const AUDIT_SOCKADDR: u16 = 1306;
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

/// One socket call (connect, bind, accept) with an IPv4 or IPv6 address, as audit saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditNet {
    pub serial: u64,
    /// Wall clock, nanoseconds since the epoch (millisecond precision).
    pub time_ns: i64,
    /// `arch=` (an `AUDIT_ARCH_*` value): syscall numbers only mean something with it.
    pub arch: Option<u32>,
    /// The syscall number (`syscall=`), for the record's `arch`.
    pub syscall: Option<u32>,
    /// The syscall's return value (`exit=`): `-115` is a non-blocking connect in progress.
    pub exit: Option<i64>,
    pub success: Option<bool>,
    pub pid: Option<u32>,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
    pub euid: Option<u32>,
    pub gid: Option<u32>,
    pub executable: Option<String>,
    pub key: Option<String>,
    /// The address from the SOCKADDR record (IPv4-mapped IPv6 addresses as IPv4).
    pub addr: SocketAddr,
}

/// What one group of records becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditRecord {
    Exec(AuditExec),
    Net(AuditNet),
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// `sizeof(struct sockaddr_storage)`, in hex digits: the kernel never logs more.
const MAX_SADDR_HEX: usize = 2 * 128;

/// The address of a SOCKADDR record's `saddr=` (hex of the `struct sockaddr` the call passed):
/// `Some` for AF_INET and AF_INET6, `None` for every other family (AF_UNIX, netlink, ...), odd
/// or non-hex text, and structures too short for their family.
pub fn parse_sockaddr(hex: &str) -> Option<SocketAddr> {
    if hex.len() > MAX_SADDR_HEX || !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    // sa_family_t is in host order (the record comes from this host's kernel); the port and
    // the address are in network order.
    let family = u16::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    match family {
        AF_INET => {
            let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        AF_INET6 => {
            let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let ip = IpAddr::V6(Ipv6Addr::from(ip)).to_canonical();
            Some(SocketAddr::new(ip, port))
        }
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Partial {
    time_ns: i64,
    exec: AuditExec,
    saw_syscall: bool,
    saw_execve: bool,
    arch: Option<u32>,
    syscall: Option<u32>,
    exit: Option<i64>,
    addr: Option<SocketAddr>,
    argc: usize,
    args: BTreeMap<usize, String>,
    chunks: BTreeMap<(usize, usize), String>,
}

/// Groups records by serial and yields one [`AuditRecord`] per execve or socket call.
#[derive(Debug, Default)]
pub struct Assembler {
    pending: BTreeMap<u64, Partial>,
    /// Groups given up on (no EOE before many newer serials).
    pub abandoned: u64,
}

const MAX_PENDING: usize = 256;

impl Assembler {
    /// Feed one netlink message; completed groups are pushed to `out`.
    pub fn push(&mut self, msg: NlMessage<'_>, out: &mut Vec<AuditRecord>) {
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
        if !matches!(
            msg.msg_type,
            AUDIT_SYSCALL | AUDIT_EXECVE | AUDIT_CWD | AUDIT_SOCKADDR
        ) {
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
                (AUDIT_SYSCALL, "arch") => p.arch = u32::from_str_radix(&v, 16).ok(),
                (AUDIT_SYSCALL, "syscall") => p.syscall = v.parse().ok(),
                (AUDIT_SYSCALL, "exit") => p.exit = v.parse().ok(),
                (AUDIT_SOCKADDR, "saddr") if !quoted => p.addr = parse_sockaddr(&v),
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

fn finish(mut p: Partial, out: &mut Vec<AuditRecord>) {
    if !p.saw_syscall {
        return;
    }
    if !p.saw_execve {
        // A socket call: only reported with an IPv4/IPv6 address.
        if let Some(addr) = p.addr {
            let x = p.exec;
            out.push(AuditRecord::Net(AuditNet {
                serial: x.serial,
                time_ns: x.time_ns,
                arch: p.arch,
                syscall: p.syscall,
                exit: p.exit,
                success: x.success,
                pid: x.pid,
                ppid: x.ppid,
                uid: x.uid,
                euid: x.euid,
                gid: x.gid,
                executable: x.executable,
                key: x.key,
                addr,
            }));
        }
        return;
    }
    for ((n, _), chunk) in std::mem::take(&mut p.chunks) {
        p.args.entry(n).or_default().push_str(&chunk);
    }
    let argc = if p.argc == 0 { p.args.len() } else { p.argc };
    p.exec.args = (0..argc)
        .map(|i| p.args.remove(&i).unwrap_or_default())
        .collect();
    out.push(AuditRecord::Exec(p.exec));
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
        let AuditRecord::Exec(e) = &out[0] else {
            panic!("not an exec: {out:?}");
        };
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

    fn assemble(records: &[(u16, &str)]) -> Vec<AuditRecord> {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        for (t, text) in records {
            for m in netlink_messages(&msg(*t, text)) {
                a.push(m, &mut out);
            }
        }
        out
    }

    // The records of a non-blocking `connect` (EINPROGRESS) to 127.0.0.1:8080, as the kernel
    // sends them for the `ringfence` connect rule.
    const CONNECT_V4: &[(u16, &str)] = &[
        (
            AUDIT_SYSCALL,
            r#"audit(1763817600.412:9001): arch=c000003e syscall=42 success=no exit=-115 a0=5 a1=7ffc6f1c2a40 a2=10 a3=0 items=0 ppid=812 pid=4242 auid=4294967295 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=4294967295 comm="curl" exe="/usr/bin/curl" key="ringfence""#,
        ),
        (
            AUDIT_SOCKADDR,
            "audit(1763817600.412:9001): saddr=02001F907F0000010000000000000000",
        ),
        (
            1327,
            "audit(1763817600.412:9001): proctitle=6375726C00687474703A2F2F3132372E302E302E313A38303830",
        ),
        (AUDIT_EOE, "audit(1763817600.412:9001): "),
    ];

    // Recorded on this kernel (6.18, x86_64) during the agent's connect integration test; the
    // AF_NETLINK SOCKADDR that arrived alongside (another serial, no SYSCALL) is kept too.
    const RECORDED: &[(u16, &str)] = &[
        (
            AUDIT_SOCKADDR,
            "audit(1795353698.471:92692): saddr=100000000000000000000000",
        ),
        (
            AUDIT_SYSCALL,
            r#"audit(1795353698.999:92694): arch=c000003e syscall=42 success=yes exit=0 a0=7 a1=7fda1e1a7b44 a2=10 a3=1 items=0 ppid=13860 pid=13865 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="tcp_connect_to_" exe="/work/main/target-dl/debug/deps/driverless-1bc1355b8fad621f" key="ringfence""#,
        ),
        (
            AUDIT_SOCKADDR,
            "audit(1795353698.999:92694): saddr=0200A6837F0000010000000000000000",
        ),
        (AUDIT_EOE, "audit(1795353698.999:92694): "),
        (AUDIT_EOE, "audit(1795353698.471:92692): "),
    ];

    #[test]
    fn recorded_connect_from_this_kernel() {
        let out = assemble(RECORDED);
        assert_eq!(out.len(), 1, "{out:?}");
        let AuditRecord::Net(n) = &out[0] else {
            panic!("{out:?}");
        };
        assert_eq!(n.addr.to_string(), "127.0.0.1:42627");
        assert_eq!((n.pid, n.ppid, n.uid), (Some(13865), Some(13860), Some(0)));
        assert_eq!(
            (n.syscall, n.exit, n.success),
            (Some(42), Some(0), Some(true))
        );
        assert!(
            n.executable
                .as_deref()
                .is_some_and(|e| e.contains("driverless-"))
        );
    }

    #[test]
    fn connect_ipv4_assembles_with_address_and_process() {
        let out = assemble(CONNECT_V4);
        assert_eq!(out.len(), 1, "{out:?}");
        let AuditRecord::Net(n) = &out[0] else {
            panic!("not a socket call: {out:?}");
        };
        assert_eq!(n.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(n.arch, Some(0xC000_003E));
        assert_eq!(n.syscall, Some(42));
        assert_eq!(n.exit, Some(-115));
        assert_eq!(n.success, Some(false));
        assert_eq!(n.pid, Some(4242));
        assert_eq!(n.ppid, Some(812));
        assert_eq!(n.uid, Some(1000));
        assert_eq!(n.executable.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(n.key.as_deref(), Some("ringfence"));
        assert_eq!(n.time_ns, 1_763_817_600_412_000_000);
    }

    #[test]
    fn connect_ipv6_and_mapped_ipv4() {
        let v6 = [
            (
                AUDIT_SYSCALL,
                r#"audit(1.000:3): arch=c000003e syscall=42 success=yes exit=0 a0=3 ppid=1 pid=2 uid=0 euid=0 gid=0 exe="/usr/bin/ssh" key="ringfence""#,
            ),
            (
                AUDIT_SOCKADDR,
                "audit(1.000:3): saddr=0A000016000000000000000000000000000000000000000100000000",
            ),
            (AUDIT_EOE, "audit(1.000:3): "),
        ];
        let out = assemble(&v6);
        let Some(AuditRecord::Net(n)) = out.first() else {
            panic!("{out:?}");
        };
        assert_eq!(n.addr.to_string(), "[::1]:22");
        // ::ffff:10.1.2.3 is an IPv4 connection on the wire.
        assert_eq!(
            parse_sockaddr("0A0001BB0000000000000000000000000000FFFF0A01020300000000")
                .map(|a| a.to_string()),
            Some("10.1.2.3:443".to_owned())
        );
    }

    #[test]
    fn unix_netlink_and_short_addresses_are_skipped() {
        // AF_UNIX "/run/nscd/socket", AF_NETLINK, truncated AF_INET/AF_INET6, odd or non-hex.
        for saddr in [
            "01002F72756E2F6E7363642F736F636B657400",
            "100000000000000000000000",
            "02001F907F00",
            "0A0001BB000000000000000000000000",
            "02001F907F000001F",
            "zz001F907F000001",
            "",
        ] {
            assert_eq!(parse_sockaddr(saddr), None, "{saddr}");
            let text = format!("audit(1.000:4): saddr={saddr}");
            let out = assemble(&[
                (
                    AUDIT_SYSCALL,
                    "audit(1.000:4): arch=c000003e syscall=42 success=yes exit=0 pid=9",
                ),
                (AUDIT_SOCKADDR, &text),
                (AUDIT_EOE, "audit(1.000:4): "),
            ]);
            assert!(out.is_empty(), "{saddr}: {out:?}");
        }
        let long = "02".repeat(200);
        assert_eq!(parse_sockaddr(&long), None);
    }

    #[test]
    fn a_syscall_without_sockaddr_or_execve_yields_nothing() {
        let out = assemble(&[
            (
                AUDIT_SYSCALL,
                "audit(1.000:8): arch=c000003e syscall=42 success=yes exit=0 pid=9",
            ),
            (AUDIT_EOE, "audit(1.000:8): "),
        ]);
        assert!(out.is_empty());
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
            out.first().map(|r| match r {
                AuditRecord::Exec(e) => e.args.clone(),
                AuditRecord::Net(_) => Vec::new(),
            }),
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
