//! Which process owns a local UDP port: the socket from `/proc/net/udp` and `/proc/net/udp6`
//! (address and port to inode), and the process from `/proc/*/fd` (inode to pid).
//!
//! The fd search is the costly part: newest processes first, stopping at the first match,
//! bounded ([`Owners::MAX_FDS`] links read), and after a miss rate-limited
//! ([`Owners::MIN_SCAN_GAP`]); owners found are cached.
//! An owner not found within those bounds is reported as unknown, never guessed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// One row of `/proc/net/udp{,6}`: the local address and port, and the socket's inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSocket {
    pub local: IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// `0100007F` (IPv4) or 32 hex digits (IPv6): the kernel prints each 32-bit word of the
/// network-order address as a host-order number.
fn parse_hex_addr(s: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(s.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match s.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The rows of a `/proc/net/udp` or `/proc/net/udp6` text; malformed rows are skipped.
pub fn parse_proc_net_udp(text: &str) -> Vec<UdpSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let local = f.nth(1)?;
            let inode = f.nth(7)?.parse().ok()?;
            let (addr, port) = local.split_once(':')?;
            Some(UdpSocket {
                local: parse_hex_addr(addr)?,
                port: u16::from_str_radix(port, 16).ok()?,
                inode,
            })
        })
        .collect()
}

/// The socket bound to `addr:port`: an exact address first, then a wildcard (`0.0.0.0`, `::`,
/// and `::ffff:a.b.c.d` for an IPv4 packet on a dual-stack socket).
pub fn socket_for(sockets: &[UdpSocket], addr: IpAddr, port: u16) -> Option<u64> {
    let same = |s: &&UdpSocket| {
        s.port == port
            && (s.local == addr
                || match (s.local, addr) {
                    (IpAddr::V6(v6), IpAddr::V4(v4)) => v6.to_ipv4_mapped() == Some(v4),
                    _ => false,
                })
    };
    let wildcard = |s: &&UdpSocket| s.port == port && s.local.is_unspecified();
    let found = sockets
        .iter()
        .find(same)
        .or_else(|| sockets.iter().find(wildcard));
    found.map(|s| s.inode)
}

/// Socket inode to owning process, from searches of `/proc/*/fd`.
///
/// A resolver such as `dig` may exit a millisecond after its answer, so the search starts with
/// the newest processes (highest pids first) and stops at the first match. A search that finds
/// nothing (a remote asker, a process already gone) costs a whole pass, so after one the next
/// waits [`Owners::MIN_SCAN_GAP`].
#[derive(Debug)]
pub struct Owners {
    by_inode: HashMap<u64, u32>,
    last_miss: Option<Instant>,
    /// Searches that stopped at [`Owners::MAX_FDS`].
    pub truncated_scans: u64,
}

impl Owners {
    pub const MAX_FDS: usize = 200_000;
    pub const MAX_INODES: usize = 4096;
    pub const MIN_SCAN_GAP: Duration = Duration::from_millis(20);

    pub fn new() -> Owners {
        Owners {
            by_inode: HashMap::new(),
            last_miss: None,
            truncated_scans: 0,
        }
    }

    /// The process owning the UDP socket bound to `addr:port` on this host, if one does.
    pub fn owner(&mut self, addr: IpAddr, port: u16) -> Option<u32> {
        let mut sockets = Vec::new();
        for file in ["/proc/net/udp", "/proc/net/udp6"] {
            if let Ok(text) = std::fs::read_to_string(file) {
                sockets.extend(parse_proc_net_udp(&text));
            }
        }
        let inode = socket_for(&sockets, addr, port)?;
        if let Some(&pid) = self.by_inode.get(&inode) {
            // The inode may have been closed and reused since; the links say.
            if holds(pid, inode) {
                return Some(pid);
            }
            self.by_inode.remove(&inode);
        }
        if self
            .last_miss
            .is_some_and(|t| t.elapsed() < Self::MIN_SCAN_GAP)
        {
            return None;
        }
        let found = self.search(inode);
        match found {
            Some(pid) => {
                if self.by_inode.len() >= Self::MAX_INODES {
                    self.by_inode.clear();
                }
                self.by_inode.insert(inode, pid);
            }
            None => self.last_miss = Some(Instant::now()),
        }
        found
    }

    /// The first process, newest first, with a descriptor on socket `inode`.
    fn search(&mut self, inode: u64) -> Option<u32> {
        let mut pids = crate::proc_info::pids();
        pids.sort_unstable_by(|a, b| b.cmp(a));
        let mut links = 0usize;
        for pid in pids {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                links += 1;
                if links > Self::MAX_FDS {
                    self.truncated_scans += 1;
                    return None;
                }
                if is_socket(&fd.path(), inode) {
                    return Some(pid);
                }
            }
        }
        None
    }
}

/// Whether `pid` has a descriptor on socket `inode`.
fn holds(pid: u32, inode: u64) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .is_ok_and(|mut fds| fds.any(|fd| fd.ok().is_some_and(|fd| is_socket(&fd.path(), inode))))
}

impl Default for Owners {
    fn default() -> Self {
        Owners::new()
    }
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn is_socket(fd: &std::path::Path, inode: u64) -> bool {
    std::fs::read_link(fd).is_ok_and(|t| socket_inode(&t.to_string_lossy()) == Some(inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_rows() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
   1: 0100007F:9C40 3500007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0\n\
   2: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 0000000000000000 0\n\
 junk\n";
        let rows = parse_proc_net_udp(text);
        assert_eq!(rows.len(), 2);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(rows[0].local, lo);
        }
        assert_eq!(rows[0].port, 0x9c40);
        assert_eq!(socket_for(&rows, lo, 0x9c40), Some(4242));
        assert_eq!(
            socket_for(&rows, "10.0.0.1".parse().unwrap(), 0x44),
            Some(77)
        );
        assert_eq!(socket_for(&rows, lo, 1), None);
        let v6 = parse_proc_net_udp(
            "h\n 0: 0000000000000000FFFF00000100007F:0035 00000000000000000000000000000000:0000 07 0:0 0:0 0 0 0 9 2 0 0\n",
        );
        if cfg!(target_endian = "little") {
            assert_eq!(socket_for(&v6, lo, 53), Some(9));
        }
    }

    #[test]
    fn finds_the_owner_of_a_real_socket() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let mut owners = Owners::new();
        assert_eq!(
            owners.owner("127.0.0.1".parse().unwrap(), port),
            Some(std::process::id())
        );
        // Cached, and checked against the process's fds.
        assert_eq!(
            owners.owner("127.0.0.1".parse().unwrap(), port),
            Some(std::process::id())
        );
        drop(sock);
        assert_eq!(owners.owner("127.0.0.1".parse().unwrap(), port), None);
    }
}
