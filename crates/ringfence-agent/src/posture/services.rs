//! Services listening beyond loopback with no authentication, asked in their own protocols.
//!
//! The listening TCP sockets come from /proc/net/tcp and tcp6, their processes from the
//! sockets' inodes under /proc/PID/fd. For each server listening on an address beyond
//! loopback (a wildcard or a real interface), by its process name:
//! - Redis (`redis-server`): `PING` answered `+PONG` without `AUTH` (no requirepass); protected
//!   mode on lowers it to medium, since Redis then refuses remote clients itself;
//! - memcached: `stats` answered (no SASL);
//! - MySQL/MariaDB (`mysqld`, `mariadbd`): a login as root with an empty password accepted;
//! - PostgreSQL (`postgres`): `trust` lines in its pg_hba.conf (found from the server's `-D` or
//!   `config_file=` argument); a `host` trust line for addresses beyond loopback is critical,
//!   and the server is asked (a startup as `postgres`) whether it lets that user in without a
//!   password over loopback.
//!
//! Connections go to loopback when the server listens on a wildcard address, else to its own
//! address; each has a 2 s timeout and reads at most 64 KiB.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::{Level, PostureFinding};

const TIMEOUT: Duration = Duration::from_secs(2);
const MAX_REPLY: usize = 64 << 10;
const MAX_SOCKETS: usize = 65_536;
const MAX_FD_LINKS: usize = 1_000_000;

/// One listening TCP socket, with the process holding it when found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub address: SocketAddr,
    pub inode: u64,
    pub pid: Option<u32>,
    /// The process's name (`comm`).
    pub process: Option<String>,
}

impl Listener {
    /// Listens on an address other than loopback (wildcards included).
    pub fn beyond_loopback(&self) -> bool {
        !self.address.ip().is_loopback()
    }

    /// Where to connect to reach it from this host.
    pub fn local_target(&self) -> SocketAddr {
        let ip = match self.address.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.address.port())
    }
}

/// Parse one /proc/net/tcp or tcp6 table: the listening sockets (state 0A).
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<(SocketAddr, u64)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1).take(MAX_SOCKETS) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let Some((addr, port)) = f[1].split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        let Ok(inode) = f[9].parse::<u64>() else {
            continue;
        };
        let ip = if v6 {
            if addr.len() != 32 {
                continue;
            }
            let mut bytes = [0u8; 16];
            let mut ok = true;
            for w in 0..4 {
                match addr
                    .get(w * 8..w * 8 + 8)
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                {
                    Some(word) => bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes()),
                    None => ok = false,
                }
            }
            if !ok {
                continue;
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        } else {
            let Ok(word) = u32::from_str_radix(addr, 16) else {
                continue;
            };
            IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes()))
        };
        out.push((SocketAddr::new(ip, port), inode));
    }
    out
}

/// Socket inode → pid, from /proc/PID/fd.
fn socket_owners(proc: &Path) -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    let mut links = 0usize;
    let Ok(rd) = std::fs::read_dir(proc) else {
        return owners;
    };
    for entry in rd.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            links += 1;
            if links > MAX_FD_LINKS {
                return owners;
            }
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|i| i.parse::<u64>().ok())
            {
                owners.entry(inode).or_insert(pid);
            }
        }
    }
    owners
}

/// Every listening TCP socket with its process.
pub fn listeners(proc: &Path) -> Vec<Listener> {
    let mut sockets = Vec::new();
    for (file, v6) in [("net/tcp", false), ("net/tcp6", true)] {
        if let Ok(text) = super::shadow::read_bounded(&proc.join(file)) {
            sockets.extend(parse_proc_net_tcp(&text, v6));
        }
    }
    let owners = socket_owners(proc);
    sockets
        .into_iter()
        .map(|(address, inode)| {
            let pid = owners.get(&inode).copied();
            let process = pid.and_then(|p| {
                std::fs::read_to_string(proc.join(p.to_string()).join("comm"))
                    .ok()
                    .map(|s| s.trim().to_owned())
            });
            Listener {
                address,
                inode,
                pid,
                process,
            }
        })
        .collect()
}

/// Findings, and what could not be asked.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<PostureFinding>,
    pub incomplete: Vec<String>,
}

/// Ask every known server listening beyond loopback whether it lets anyone in.
pub fn check(proc: &Path) -> Outcome {
    let mut out = Outcome::default();
    // One check per (process, port): a server on 0.0.0.0 and :: is one server.
    let mut seen: BTreeSet<(u32, u16)> = BTreeSet::new();
    let mut postgres_checked: BTreeSet<PathBuf> = BTreeSet::new();
    for l in listeners(proc)
        .into_iter()
        .filter(Listener::beyond_loopback)
    {
        let (Some(pid), Some(name)) = (l.pid, l.process.as_deref()) else {
            continue;
        };
        if !seen.insert((pid, l.address.port())) {
            continue;
        }
        let target = l.local_target();
        let result = match name {
            "redis-server" => redis(&l, target).map(|f| f.into_iter().collect()),
            "memcached" => memcached(&l, target).map(|f| f.into_iter().collect()),
            "mysqld" | "mariadbd" => mysql_root(&l, target).map(|f| f.into_iter().collect()),
            "postgres" | "postmaster" => {
                let Some(hba) = postgres_hba_path(proc, pid) else {
                    out.incomplete.push(format!(
                        "postgres (pid {pid}) on {}: cannot find its pg_hba.conf",
                        l.address
                    ));
                    continue;
                };
                if !postgres_checked.insert(hba.clone()) {
                    continue;
                }
                postgres(&l, target, &hba)
            }
            _ => continue,
        };
        match result {
            Ok(f) => out.findings.extend(f),
            Err(e) => out
                .incomplete
                .push(format!("{name} (pid {pid}) on {}: {e}", l.address)),
        }
    }
    out
}

fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&target, TIMEOUT).map_err(|e| format!("{target}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("{target}: {e}"))?;
    Ok(s)
}

/// Read until `done` says the reply is complete, the peer closes, or the bound is reached.
fn read_reply(s: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < MAX_REPLY && !done(&buf) {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                if buf.is_empty() {
                    return Err(e.to_string());
                }
                break;
            }
        }
    }
    Ok(buf)
}

fn exposed(
    service: &str,
    l: &Listener,
    level: Level,
    message: String,
    evidence: &str,
) -> PostureFinding {
    PostureFinding {
        rule_id: "ringfence-posture-service-no-auth",
        title: "Network service without authentication",
        level,
        subject: format!("{service} {}", l.address),
        message,
        details: json!({
            "service": service,
            "listen": l.address.to_string(),
            "pid": l.pid,
            "process": l.process,
            "evidence": evidence,
        }),
    }
}

fn redis(l: &Listener, target: SocketAddr) -> Result<Option<PostureFinding>, String> {
    let mut s = connect(target)?;
    s.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let reply = read_reply(&mut s, |b| b.ends_with(b"\r\n"))?;
    if !reply.starts_with(b"+PONG") {
        // -NOAUTH: requirepass set (or an ACL default user with a password).
        return Ok(None);
    }
    s.write_all(b"CONFIG GET protected-mode\r\n")
        .map_err(|e| e.to_string())?;
    // `*2\r\n$14\r\nprotected-mode\r\n$3\r\nyes\r\n`, or an error line when CONFIG is renamed.
    let mode = read_reply(&mut s, |b| {
        b.windows(2).filter(|w| *w == b"\r\n").count() >= 5
            || (b.starts_with(b"-") && b.ends_with(b"\r\n"))
    })
    .unwrap_or_default();
    let protected = mode.windows(7).any(|w| w == b"\r\nyes\r\n");
    let (level, tail) = if protected {
        (
            Level::Medium,
            "; protected mode still refuses remote clients, until someone turns it off",
        )
    } else {
        (Level::Critical, "")
    };
    Ok(Some(exposed(
        "redis",
        l,
        level,
        format!(
            "Redis on {} answers PING without AUTH (no requirepass){tail}",
            l.address
        ),
        "PING -> +PONG",
    )))
}

fn memcached(l: &Listener, target: SocketAddr) -> Result<Option<PostureFinding>, String> {
    let mut s = connect(target)?;
    s.write_all(b"stats\r\n").map_err(|e| e.to_string())?;
    let reply = read_reply(&mut s, |b| {
        b.ends_with(b"END\r\n") || b.starts_with(b"ERROR")
    })?;
    if !reply.starts_with(b"STAT ") {
        return Ok(None);
    }
    Ok(Some(exposed(
        "memcached",
        l,
        Level::High,
        format!(
            "memcached on {} answers `stats` without authentication: anyone who reaches it \
             reads and writes the cache",
            l.address
        ),
        "stats -> STAT ...",
    )))
}

/// One MySQL packet: (sequence id, payload).
fn mysql_packet(s: &mut TcpStream) -> Result<(u8, Vec<u8>), String> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    if len > MAX_REPLY {
        return Err(format!("packet of {len} bytes, more than {MAX_REPLY}"));
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).map_err(|e| e.to_string())?;
    Ok((head[3], payload))
}

fn mysql_send(s: &mut TcpStream, seq: u8, payload: &[u8]) -> Result<(), String> {
    let len = payload.len();
    let mut p = Vec::with_capacity(len + 4);
    p.extend_from_slice(&[
        (len & 0xff) as u8,
        ((len >> 8) & 0xff) as u8,
        ((len >> 16) & 0xff) as u8,
        seq,
    ]);
    p.extend_from_slice(payload);
    s.write_all(&p).map_err(|e| e.to_string())
}

fn mysql_root(l: &Listener, target: SocketAddr) -> Result<Option<PostureFinding>, String> {
    const CLIENT_LONG_PASSWORD: u32 = 1;
    const CLIENT_PROTOCOL_41: u32 = 0x200;
    const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
    const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
    let mut s = connect(target)?;
    let (seq, greeting) = mysql_packet(&mut s)?;
    match greeting.first() {
        Some(10) => {}
        Some(0xff) => {
            // The server refuses this client (host blocked, too many connections).
            return Err(format!(
                "the server refused the connection: {}",
                String::from_utf8_lossy(greeting.get(3..).unwrap_or_default())
            ));
        }
        _ => return Err("not a MySQL protocol 10 greeting".into()),
    }
    let caps =
        CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
    let mut resp = Vec::new();
    resp.extend_from_slice(&caps.to_le_bytes());
    resp.extend_from_slice(&(1u32 << 24).to_le_bytes());
    resp.push(33); // utf8
    resp.extend_from_slice(&[0u8; 23]);
    resp.extend_from_slice(b"root\0");
    resp.push(0); // empty auth response: the empty password
    resp.extend_from_slice(b"mysql_native_password\0");
    let mut seq = seq.wrapping_add(1);
    mysql_send(&mut s, seq, &resp)?;
    for _ in 0..4 {
        let (n, reply) = mysql_packet(&mut s)?;
        match reply.first() {
            Some(0x00) => {
                return Ok(Some(exposed(
                    "mysql",
                    l,
                    Level::Critical,
                    format!(
                        "MySQL/MariaDB on {} lets root log in over TCP with an empty password",
                        l.address
                    ),
                    "login root with an empty password -> OK",
                )));
            }
            Some(0xfe) => {
                // Auth switch: answer the other method with the empty password too.
                seq = n.wrapping_add(1);
                mysql_send(&mut s, seq, &[])?;
            }
            Some(0x01) => {
                // More auth data (caching_sha2 fast path): an empty password needs none.
                continue;
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// The pg_hba.conf of the postgres process `pid`: its `hba_file=`, else next to its
/// `config_file=`, else in its `-D` data directory.
fn postgres_hba_path(proc: &Path, pid: u32) -> Option<PathBuf> {
    let cmdline = std::fs::read(proc.join(pid.to_string()).join("cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut data: Option<PathBuf> = None;
    let mut config: Option<PathBuf> = None;
    let mut hba: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-D" {
            data = it.next().map(PathBuf::from);
        } else if a == "-c"
            && let Some(kv) = it.next()
        {
            if let Some(v) = kv.strip_prefix("config_file=") {
                config = Some(PathBuf::from(v));
            } else if let Some(v) = kv.strip_prefix("hba_file=") {
                hba = Some(PathBuf::from(v));
            }
        }
    }
    if let Some(h) = hba {
        return Some(h);
    }
    if let Some(c) = config {
        // A hba_file setting in postgresql.conf wins over the file beside it.
        if let Ok(text) = super::shadow::read_bounded(&c) {
            for line in text.lines() {
                let line = line.trim();
                if let Some(v) = line.strip_prefix("hba_file") {
                    let v = v.trim_start_matches([' ', '=', '\t']).trim();
                    let v = v.split('#').next().unwrap_or("").trim().trim_matches('\'');
                    if !v.is_empty() {
                        return Some(PathBuf::from(v));
                    }
                }
            }
        }
        return c.parent().map(|d| d.join("pg_hba.conf"));
    }
    // The data dir relative to the server's working directory.
    data.map(|d| {
        if d.is_absolute() {
            d.join("pg_hba.conf")
        } else {
            std::fs::read_link(proc.join(pid.to_string()).join("cwd"))
                .map(|cwd| cwd.join(&d).join("pg_hba.conf"))
                .unwrap_or_else(|_| d.join("pg_hba.conf"))
        }
    })
}

/// One `trust` line of pg_hba.conf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustLine {
    pub line: usize,
    pub kind: String,
    pub database: String,
    pub user: String,
    /// `None` for `local` lines (the Unix socket).
    pub address: Option<String>,
}

impl TrustLine {
    /// The line admits clients from beyond loopback.
    pub fn beyond_loopback(&self) -> bool {
        match &self.address {
            None => false,
            Some(a) => {
                let ip = a.split('/').next().unwrap_or("");
                !(a == "localhost"
                    || a == "samehost"
                    || ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
            }
        }
    }
}

/// The `trust` lines of a pg_hba.conf.
pub fn parse_hba_trust(text: &str) -> Vec<TrustLine> {
    let mut out = Vec::new();
    for (i, line) in text.lines().take(100_000).enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let f: Vec<&str> = line.split_whitespace().collect();
        let (kind, method_at) = match f.first() {
            Some(&"local") => ("local", 3),
            Some(k @ (&"host" | &"hostssl" | &"hostnossl" | &"hostgssenc" | &"hostnogssenc")) => {
                // `host db user ADDRESS MASK method` or `host db user CIDR method`.
                let method_at = if f.get(4).is_some_and(|m| m.parse::<IpAddr>().is_ok()) {
                    5
                } else {
                    4
                };
                (*k, method_at)
            }
            _ => continue,
        };
        if f.get(method_at) != Some(&"trust") {
            continue;
        }
        out.push(TrustLine {
            line: i + 1,
            kind: kind.to_owned(),
            database: f.get(1).copied().unwrap_or("").to_owned(),
            user: f.get(2).copied().unwrap_or("").to_owned(),
            address: (kind != "local").then(|| f.get(3).copied().unwrap_or("").to_owned()),
        });
    }
    out
}

/// Whether the server lets `postgres` in without a password (AuthenticationOk straight after
/// the startup message).
fn postgres_login_without_password(target: SocketAddr) -> Result<bool, String> {
    let mut s = connect(target)?;
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    for (k, v) in [("user", "postgres"), ("database", "postgres")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let len = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    let mut msg = len.to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    s.write_all(&msg).map_err(|e| e.to_string())?;
    let mut head = [0u8; 9];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    Ok(head[0] == b'R' && head[5..9] == [0, 0, 0, 0])
}

fn postgres(l: &Listener, target: SocketAddr, hba: &Path) -> Result<Vec<PostureFinding>, String> {
    let text = super::shadow::read_bounded(hba)?;
    let trust = parse_hba_trust(&text);
    if trust.is_empty() {
        return Ok(Vec::new());
    }
    let login = postgres_login_without_password(target);
    let evidence = match &login {
        Ok(true) => {
            "startup as postgres over loopback -> AuthenticationOk (no password)".to_owned()
        }
        Ok(false) => "startup as postgres over loopback -> a password was asked".to_owned(),
        Err(e) => format!("startup as postgres over loopback failed: {e}"),
    };
    let mut by_reach: BTreeMap<bool, Vec<&TrustLine>> = BTreeMap::new();
    for t in &trust {
        by_reach.entry(t.beyond_loopback()).or_default().push(t);
    }
    let mut out = Vec::new();
    for (remote, lines) in by_reach {
        let (level, reach) = if remote {
            (Level::Critical, "from beyond loopback")
        } else {
            (Level::Low, "from this host (any local user)")
        };
        let where_: Vec<String> = lines
            .iter()
            .map(|t| format!("{}:{}", hba.display(), t.line))
            .collect();
        let mut f = exposed(
            "postgresql",
            l,
            level,
            format!(
                "PostgreSQL on {} trusts connections {reach} without a password ({})",
                l.address,
                where_.join(", ")
            ),
            &evidence,
        );
        f.details["pg_hba"] = json!(lines);
        f.details["file"] = json!(hba.display().to_string());
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_listeners_are_decoded() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n\
   1: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n\
   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 888 1\n";
        let l = parse_proc_net_tcp(v4, false);
        assert_eq!(
            l,
            [
                ("127.0.0.1:8080".parse().unwrap(), 12345),
                ("0.0.0.0:6379".parse().unwrap(), 777)
            ]
        );
        let v6 = "header\n   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1\n";
        assert_eq!(
            parse_proc_net_tcp(v6, true),
            [("[::1]:22".parse().unwrap(), 999)]
        );
    }

    #[test]
    fn hba_trust_lines_and_their_reach() {
        let text = "# comment\nlocal all postgres peer\nlocal all all trust\n\
                    host all all 127.0.0.1/32 trust\nhost all all ::1/128 md5\n\
                    host all all 0.0.0.0/0 trust\nhostssl db bob 10.0.0.0 255.0.0.0 trust\n";
        let t = parse_hba_trust(text);
        let got: Vec<(usize, bool)> = t.iter().map(|t| (t.line, t.beyond_loopback())).collect();
        assert_eq!(got, [(3, false), (4, false), (6, true), (7, true)]);
    }
}
