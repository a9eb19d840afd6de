//! DNS lookups as events, in both modes and on every kernel: DNS-over-UDP packets captured in
//! user space, and the process that asked found by its local port.
//!
//! An `AF_PACKET` socket on every interface (loopback too) with a classic BPF filter passes
//! only UDP datagrams from or to the DNS port, in both directions, so the agent sees the stub
//! resolver's queries to `127.0.0.53` as well as a resolver's upstream ones. Each query and
//! each answer becomes one `dns` event (`dns.type` query or answer). The asker is the owner of
//! the query's source port ([`owner`]); its answer is matched to the query by port and message
//! id, so the answer names the asker even when the socket is closed by the time it is read.
//!
//! Not seen: DNS over TCP, over TLS or HTTPS (encrypted), and lookups answered from a local
//! cache without a packet (nscd, an application's own cache). The pipeline keeps the answers
//! ([`DomainCache`]) so a later connect by the same process to an answered address carries
//! `destination.domain`.
#![allow(
    unsafe_code,
    reason = "AF_PACKET socket/setsockopt/poll/recvmsg FFI for the capture socket"
)]

pub mod owner;
pub mod parse;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use std::borrow::Cow;

use ringfence_event::{Dns, Event, EventKind, Network, Process, SourceKind, Timestamp};

use crate::source::{EventSender, Sent, Source, SourceError, StopSignal};

const NAME: &str = "dns";

/// The classic BPF program passing UDP datagrams with `port` at either end: IPv4 (first
/// fragment only, any header length) and IPv6 (UDP as the first next header). Offsets are
/// from the network header, as an `AF_PACKET`/`SOCK_DGRAM` socket sees packets.
pub fn filter(port: u16) -> Vec<libc::sock_filter> {
    const LD_B_ABS: u16 = 0x30;
    const LD_H_ABS: u16 = 0x28;
    const LD_H_IND: u16 = 0x48;
    const LDX_B_MSH: u16 = 0xb1;
    const RSH_K: u16 = 0x74;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let p = u32::from(port);
    // Indexes: 19 accepts, 20 rejects; jumps are relative to the next instruction.
    vec![
        op(LD_B_ABS, 0, 0, 0),        // 0: A = first byte
        op(RSH_K, 0, 0, 4),           // 1: A = IP version
        op(JEQ_K, 0, 9, 4),           // 2: v4 → 3, else → 12
        op(LD_B_ABS, 0, 0, 9),        // 3: protocol
        op(JEQ_K, 0, 15, 17),         // 4: UDP → 5, else reject
        op(LD_H_ABS, 0, 0, 6),        // 5: flags and fragment offset
        op(JSET_K, 13, 0, 0x1fff),    // 6: a later fragment → reject
        op(LDX_B_MSH, 0, 0, 0),       // 7: X = header length
        op(LD_H_IND, 0, 0, 0),        // 8: source port
        op(JEQ_K, 9, 0, p),           // 9: → accept
        op(LD_H_IND, 0, 0, 2),        // 10: destination port
        op(JEQ_K, 7, 8, p),           // 11: → accept, else reject
        op(JEQ_K, 0, 7, 6),           // 12: v6 → 13, else reject
        op(LD_B_ABS, 0, 0, 6),        // 13: next header
        op(JEQ_K, 0, 5, 17),          // 14: UDP → 15, else reject
        op(LD_H_ABS, 0, 0, 40),       // 15: source port
        op(JEQ_K, 2, 0, p),           // 16: → accept
        op(LD_H_ABS, 0, 0, 42),       // 17: destination port
        op(JEQ_K, 0, 1, p),           // 18: → accept, else reject
        op(RET_K, 0, 0, 0x0004_0000), // 19: accept the whole packet
        op(RET_K, 0, 0, 0),           // 20: reject
    ]
}

/// The port DNS is captured on by default, and the one a connect to a resolver is told by.
pub const DNS_PORT: u16 = 53;

/// Options for [`DnsSource`].
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// The UDP port DNS is captured on (53).
    pub port: u16,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions { port: DNS_PORT }
    }
}

/// The capture socket, opened and filtered.
pub struct DnsSource {
    fd: OwnedFd,
}

const ETH_P_ALL: u16 = 0x0003;
const ARPHRD_LOOPBACK: u16 = 772;
const PACKET_OUTGOING: u8 = 4;
impl DnsSource {
    /// Open the `AF_PACKET` socket (needs `CAP_NET_RAW`) and attach the filter.
    pub fn open(options: &DnsOptions) -> Result<DnsSource, SourceError> {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            return Err(SourceError::last_os_error(NAME, "socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        crate::sys::attach_socket_filter(fd.as_raw_fd(), &mut filter(options.port))
            .map_err(|e| SourceError::syscall(NAME, "setsockopt(SO_ATTACH_FILTER)", e))?;
        // Each packet carries the time the kernel saw it, in the same recvmsg(2) that reads
        // it (`SCM_TIMESTAMPNS`). Without it a packet is timed when it is read.
        let on: libc::c_int = 1;
        // SAFETY: setsockopt(2) reads one int from a valid pointer.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::warn!(
                source = NAME,
                error = %io::Error::last_os_error(),
                "no kernel receive timestamps (SO_TIMESTAMPNS): packets are timed when read, \
                 which can name the wrong asker when the agent reads late"
            );
        }
        Ok(DnsSource { fd })
    }

    /// One packet (from its network header), where it went, and when the kernel saw it (wall
    /// clock; `None` when the kernel gave no time), or `None` after `timeout_ms` without one.
    /// The connect that names a packet's asker is ordered against the kernel's time, not
    /// against when the packet was read: a busy agent reads it late, after the next resolver's
    /// connect.
    fn recv(&self, buf: &mut [u8], timeout_ms: i32) -> io::Result<Option<Captured>> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if rc == 0 {
            return Ok(None);
        }
        // SAFETY: sockaddr_ll is plain data; zeroes are a valid value.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one timestamp message (16 bytes of header, 16 of timespec), 8-aligned.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; zeroes are a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut from).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: every pointer in `msg` is valid and writable for the length given with it.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let direction = match (
            from.sll_hatype == ARPHRD_LOOPBACK,
            from.sll_pkttype == PACKET_OUTGOING,
        ) {
            // The loopback device hands every packet to packet sockets twice: going out and
            // coming in. The incoming copy is kept.
            (true, true) => Direction::LoopbackCopy,
            (true, false) => Direction::Loopback,
            (false, true) => Direction::Out,
            (false, false) => Direction::In,
        };
        Ok(Some(Captured {
            len: usize::try_from(n).unwrap_or(0),
            direction,
            kernel_time: kernel_time(&msg),
        }))
    }
}

/// One packet read: its length in the buffer, where it went, and when the kernel saw it.
struct Captured {
    len: usize,
    direction: Direction,
    kernel_time: Option<Timestamp>,
}

/// The kernel's receive time from the `SCM_TIMESTAMPNS` message of a `recvmsg` result.
fn kernel_time(msg: &libc::msghdr) -> Option<Timestamp> {
    let want = std::mem::size_of::<libc::timespec>();
    // SAFETY: `msg` was filled by recvmsg(2); the CMSG_* macros walk only within its
    // msg_control buffer and msg_controllen, and return null past the end.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR lies inside the buffer.
        let header = unsafe { &*cmsg };
        // SAFETY: CMSG_LEN is arithmetic on its argument.
        let full = unsafe { libc::CMSG_LEN(want as u32) } as usize;
        if header.cmsg_level == libc::SOL_SOCKET
            && header.cmsg_type == libc::SCM_TIMESTAMPNS
            && header.cmsg_len >= full
        {
            // SAFETY: the message holds a whole timespec (checked above), read unaligned.
            let ts: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            if ts.tv_sec <= 0 {
                return None;
            }
            let ns = ts
                .tv_sec
                .checked_mul(1_000_000_000)?
                .checked_add(ts.tv_nsec)?;
            return Some(Timestamp(ns));
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    None
}

/// Where a captured packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    In,
    Out,
    Loopback,
    /// The loopback's outgoing copy of a packet also seen coming in.
    LoopbackCopy,
}

impl Direction {
    /// Whether the asker of a message going this way is on this host: a query it sends, an
    /// answer it receives. A host serving DNS asks for nothing when it answers others, and
    /// a remote client's port must not be looked up among local sockets.
    fn asker_is_local(self, is_response: bool) -> bool {
        match self {
            Direction::Loopback | Direction::LoopbackCopy => true,
            Direction::Out => !is_response,
            Direction::In => is_response,
        }
    }
}

/// Queries waiting for their answer: (asker's address, port, message id) → asker's pid.
/// Bounded; entries older than [`PENDING_TTL`] are dropped when it fills.
#[derive(Debug, Default)]
struct Pending {
    map: HashMap<(IpAddr, u16, u16), (Option<u32>, Instant)>,
}

const PENDING_MAX: usize = 4096;
const PENDING_TTL: Duration = Duration::from_secs(30);

impl Pending {
    fn insert(&mut self, key: (IpAddr, u16, u16), pid: Option<u32>) {
        if self.map.len() >= PENDING_MAX {
            self.map.retain(|_, (_, t)| t.elapsed() < PENDING_TTL);
            if self.map.len() >= PENDING_MAX {
                self.map.clear();
            }
        }
        self.map.insert(key, (pid, Instant::now()));
    }

    fn take(&mut self, key: &(IpAddr, u16, u16)) -> Option<Option<u32>> {
        self.map.remove(key).map(|(pid, _)| pid)
    }
}

/// The event for one DNS message; `pid` is the asker's, where known. `source` is the asker's
/// end, `destination` the server's, for an answer as for its query.
pub fn to_event(
    msg: &parse::DnsMessage,
    pid: Option<u32>,
    at: Timestamp,
    source: (IpAddr, u16),
    destination: (IpAddr, u16),
) -> Event {
    let mut e = Event::new(EventKind::Dns, SourceKind::Dns, at);
    e.network = Some(Network {
        transport: Some(Cow::Borrowed("udp")),
        source_ip: Some(source.0),
        source_port: Some(source.1),
        destination_ip: Some(destination.0),
        destination_port: Some(destination.1),
        ..Network::default()
    });
    e.dns = Some(Box::new(Dns {
        message_type: if msg.is_response { "answer" } else { "query" }.into(),
        question_name: msg.name.clone(),
        question_type: parse::qtype_name(msg.qtype),
        response_code: msg.is_response.then(|| parse::rcode_name(msg.rcode)),
        resolved_ip: msg.addresses.iter().map(ToString::to_string).collect(),
    }));
    if let Some(pid) = pid {
        e.process = Some(Process {
            pid,
            ..Process::default()
        });
    }
    e
}

impl Source for DnsSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError> {
        let mut buf = vec![0u8; 65_536];
        let mut owners = owner::Owners::new();
        let mut pending = Pending::default();
        while !stop.is_stopped() {
            let got = match self.recv(&mut buf, 200) {
                Ok(Some(got)) => got,
                Ok(None) => continue,
                Err(e) => return Err(SourceError::syscall(NAME, "recvmsg", e)),
            };
            if got.direction == Direction::LoopbackCopy {
                continue;
            }
            // The kernel's time for the packet orders it against connects; without it, the
            // time it was read, before any /proc work.
            let at = got.kernel_time.unwrap_or_else(Timestamp::now);
            let Some(packet) = parse::parse_packet(buf.get(..got.len).unwrap_or_default()) else {
                out.note_error();
                continue;
            };
            let msg = &packet.message;
            let (asker, server) = if msg.is_response {
                (packet.destination, packet.source)
            } else {
                (packet.source, packet.destination)
            };
            let pid = if !got.direction.asker_is_local(msg.is_response) {
                None
            } else if msg.is_response {
                let (addr, port) = packet.destination;
                match pending.take(&(addr, port, msg.id)) {
                    Some(pid) => pid,
                    // An answer without its query (it came before the agent): ask now.
                    None => owners.owner(addr, port),
                }
            } else {
                let (addr, port) = packet.source;
                let pid = owners.owner(addr, port);
                pending.insert((addr, port, msg.id), pid);
                pid
            };
            if out.send(to_event(msg, pid, at, asker, server)) == Sent::Closed {
                break;
            }
        }
        Ok(())
    }
}

/// What each process looked up: (pid, address) → the name it asked for, from answers, so a
/// connect to that address by that process names its destination. Bounded: when full, the
/// older half is forgotten.
#[derive(Debug, Default)]
pub struct DomainCache {
    map: HashMap<(u32, IpAddr), (String, u64)>,
    clock: u64,
}

impl DomainCache {
    pub const MAX: usize = 8192;

    /// Remember the answer `event` carries (any other event is ignored).
    pub fn learn(&mut self, event: &Event) {
        let (Some(dns), Some(pid)) = (event.dns.as_deref(), event.process.as_ref().map(|p| p.pid))
        else {
            return;
        };
        for ip in &dns.resolved_ip {
            let Ok(ip) = ip.parse::<IpAddr>() else {
                continue;
            };
            if self.map.len() >= Self::MAX {
                let cut = self.clock.saturating_sub(Self::MAX as u64 / 2);
                self.map.retain(|_, (_, t)| *t > cut);
                if self.map.len() >= Self::MAX {
                    self.map.clear();
                }
            }
            self.clock += 1;
            self.map
                .insert((pid, ip), (dns.question_name.clone(), self.clock));
        }
    }

    /// Fill `destination.domain` of a connect whose process looked its address up.
    pub fn fill(&self, event: &mut Event) {
        if event.kind != Some(EventKind::NetworkConnect) {
            return;
        }
        let Some(pid) = event.process.as_ref().map(|p| p.pid) else {
            return;
        };
        let Some(net) = event.network.as_mut() else {
            return;
        };
        if net.destination_domain.is_some() {
            return;
        }
        if let Some(ip) = net.destination_ip
            && let Some((name, _)) = self.map.get(&(pid, ip))
        {
            net.destination_domain = Some(name.clone());
        }
    }
}

/// DNS events whose asker the capture could not find (it closed its socket first: `dig`
/// answers and exits within a millisecond), held until a connect to the same DNS server names
/// it: resolvers `connect()` their UDP socket, and eBPF mode and audit see that. The connect
/// may reach the pipeline a little after the packet, so events wait up to [`AskerWait::WAIT`].
#[derive(Debug, Default)]
pub struct AskerWait {
    /// Recent connects to a DNS port: server address → (pid, when), newest last.
    connects: HashMap<IpAddr, Vec<(u32, Timestamp)>>,
    held: Vec<(Instant, Event)>,
    /// Askers found, by (asker's port, question): an answer takes its query's asker.
    found: HashMap<(u16, String), u32>,
    /// Processes that connected to a DNS server lately (they are resolving), and when.
    resolving: HashMap<u32, Instant>,
    /// Their other connects, waiting for the answer to reach the pipeline first, so that
    /// `destination.domain` can be filled: the capture may be a little behind the kernel.
    held_connects: Vec<(Instant, Event)>,
    /// The time of the newest connect to a DNS port seen: connects come in their kernel's
    /// order, so every connect before this time has been seen.
    connects_seen_until: i64,
}

impl AskerWait {
    /// How long a DNS event without its asker waits for the connect that names it. The connect
    /// releases it at once when it is surely the asker's (see [`AskerWait::on_connect`]), so
    /// this is paid only when no connect comes, or when the one that came could be an older
    /// lookup's. Seen in CI with 100 ms: the pipeline was further behind the kernel than that.
    /// Shorter than [`AskerWait::CONNECT_HOLD`].
    pub const WAIT: Duration = Duration::from_millis(500);
    /// A connect this close before a packet is its asker's: a resolver sends its query right
    /// after it connects (a little over the audit records' millisecond).
    pub const SAME_LOOKUP_NS: i64 = 2_000_000;
    /// How long a connect by a process that is resolving waits for its answer. The answer
    /// releases it at once, so this is paid only when no answer is captured. Longer than
    /// [`AskerWait::WAIT`]: the capture's thread shares one CPU with the agent's others and
    /// can be behind the kernel's connects by more than 100 ms on a loaded host (seen in CI:
    /// the connect passed unnamed, its answer came after).
    pub const CONNECT_HOLD: Duration = Duration::from_secs(1);
    /// Connects further than this from the packet's time name no asker.
    pub const WINDOW_NS: i64 = 2_000_000_000;
    const MAX_SERVERS: usize = 256;
    const MAX_PER_SERVER: usize = 16;
    const MAX_HELD: usize = 1024;

    /// Note a connect to port `dns_port`; the held events it names the asker of go to `ready`.
    pub fn on_connect(&mut self, event: &Event, dns_port: u16, ready: &mut Vec<Event>) {
        let (Some(net), Some(pid)) = (
            event.network.as_ref(),
            event.process.as_ref().map(|p| p.pid),
        ) else {
            return;
        };
        let (Some(ip), Some(port)) = (net.destination_ip, net.destination_port) else {
            return;
        };
        if port != dns_port || event.kind != Some(EventKind::NetworkConnect) {
            return;
        }
        if self.connects.len() >= Self::MAX_SERVERS && !self.connects.contains_key(&ip) {
            self.connects.clear();
        }
        let list = self.connects.entry(ip).or_default();
        if list.len() >= Self::MAX_PER_SERVER {
            list.remove(0);
        }
        list.push((pid, event.timestamp));
        self.connects_seen_until = self.connects_seen_until.max(event.timestamp.0);
        if self.resolving.len() >= Self::MAX_HELD {
            self.resolving.clear();
        }
        self.resolving.insert(pid, Instant::now());
        let mut i = 0;
        while i < self.held.len() {
            if let Some(pid) = self.sure_asker(&self.held[i].1) {
                let (_, mut e) = self.held.remove(i);
                self.remember(&e, pid);
                set_pid(&mut e, pid);
                self.emit_dns(e, ready);
            } else {
                i += 1;
            }
        }
    }

    /// Pass an attributed DNS event on; after an answer, its asker's held connects follow.
    fn emit_dns(&mut self, e: Event, ready: &mut Vec<Event>) {
        let answer = e.dns.as_deref().is_some_and(|d| d.message_type == "answer");
        let pid = e.process.as_ref().map(|p| p.pid);
        ready.push(e);
        if let (true, Some(pid)) = (answer, pid) {
            // Answered: its next connects need not wait.
            self.resolving.remove(&pid);
            let mut i = 0;
            while i < self.held_connects.len() {
                if self.held_connects[i].1.process.as_ref().map(|p| p.pid) == Some(pid) {
                    ready.push(self.held_connects.remove(i).1);
                } else {
                    i += 1;
                }
            }
        }
    }

    /// The asker of an unattributed DNS event: its query's, or the process that connected to
    /// the server last before the packet (within [`AskerWait::WINDOW_NS`]).
    fn asker(&self, e: &Event) -> Option<u32> {
        self.asker_with_time(e).map(|(pid, _)| pid)
    }

    /// [`AskerWait::asker`], and when its connect was (`None` for a query's asker).
    fn asker_with_time(&self, e: &Event) -> Option<(u32, Option<i64>)> {
        let key = Self::key(e)?;
        if let Some(pid) = self.found.get(&key) {
            return Some((*pid, None));
        }
        let server = e.network.as_ref()?.destination_ip?;
        let at = e.timestamp.0;
        self.connects
            .get(&server)?
            .iter()
            .rev()
            .find(|(_, t)| t.0 <= at && at - t.0 <= Self::WINDOW_NS)
            .map(|(pid, t)| (*pid, Some(t.0)))
    }

    /// [`AskerWait::asker`], only when no connect still to come could name another: the
    /// connects seen have passed the packet's time, or the one found is right before it. The
    /// last connect seen before a packet is not enough while the pipeline is behind: it may be
    /// the previous lookup's, with this one's connect still on its way.
    fn sure_asker(&self, e: &Event) -> Option<u32> {
        let (pid, connected) = self.asker_with_time(e)?;
        let at = e.timestamp.0;
        let sure = match connected {
            None => true,
            Some(t) => self.connects_seen_until > at || at - t <= Self::SAME_LOOKUP_NS,
        };
        sure.then_some(pid)
    }

    fn key(e: &Event) -> Option<(u16, String)> {
        let port = e.network.as_ref()?.source_port?;
        Some((port, e.dns.as_deref()?.question_name.clone()))
    }

    fn remember(&mut self, e: &Event, pid: u32) {
        if let Some(key) = Self::key(e) {
            if self.found.len() >= Self::MAX_HELD {
                self.found.clear();
            }
            self.found.insert(key, pid);
        }
    }

    /// Pass `event` on (into `ready`) or hold it: a DNS event without a process waits for its
    /// connect. Anything else passes.
    pub fn admit(&mut self, mut event: Event, now: Instant, ready: &mut Vec<Event>) {
        if event.kind == Some(EventKind::NetworkConnect) {
            let pid = event.process.as_ref().map_or(0, |p| p.pid);
            let resolving = self
                .resolving
                .get(&pid)
                .is_some_and(|t| t.elapsed() < Self::CONNECT_HOLD);
            let to_dns = event.network.as_ref().and_then(|n| n.destination_port) == Some(DNS_PORT);
            if resolving && !to_dns && self.held_connects.len() < Self::MAX_HELD {
                self.held_connects.push((now + Self::CONNECT_HOLD, event));
            } else {
                ready.push(event);
            }
            return;
        }
        if event.kind != Some(EventKind::Dns) {
            ready.push(event);
            return;
        }
        if let Some(pid) = event.process.as_ref().map(|p| p.pid) {
            self.remember(&event, pid);
            self.emit_dns(event, ready);
            return;
        }
        // Only a sure asker now: the connect that names it may still be on its way (the
        // kernel's events come in batches), and an older one would name the wrong process.
        if let Some(pid) = self.sure_asker(&event) {
            set_pid(&mut event, pid);
            self.emit_dns(event, ready);
            return;
        }
        if self.held.len() >= Self::MAX_HELD {
            ready.push(event);
            return;
        }
        self.held.push((now + Self::WAIT, event));
    }

    /// Release held events past their wait (all of them when `all`), with the asker the
    /// connects seen by then name, if any.
    pub fn release(&mut self, now: Instant, all: bool, ready: &mut Vec<Event>) {
        let mut i = 0;
        while i < self.held.len() {
            if all || self.held[i].0 <= now {
                let (_, mut e) = self.held.remove(i);
                // The best that is known by now, if anything.
                if let Some(pid) = self.asker(&e) {
                    self.remember(&e, pid);
                    set_pid(&mut e, pid);
                }
                self.emit_dns(e, ready);
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while i < self.held_connects.len() {
            if all || self.held_connects[i].0 <= now {
                ready.push(self.held_connects.remove(i).1);
            } else {
                i += 1;
            }
        }
    }

    /// When the next held event is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held
            .iter()
            .chain(&self.held_connects)
            .map(|(t, _)| *t)
            .min()
    }
}

fn set_pid(e: &mut Event, pid: u32) {
    e.process = Some(Process {
        pid,
        ..Process::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_event::{Field, Value};

    #[test]
    fn only_local_askers_are_looked_up() {
        assert!(Direction::Out.asker_is_local(false));
        assert!(Direction::In.asker_is_local(true));
        assert!(
            !Direction::In.asker_is_local(false),
            "a query to this host's DNS server"
        );
        assert!(
            !Direction::Out.asker_is_local(true),
            "this host's server answering"
        );
        assert!(Direction::Loopback.asker_is_local(false));
    }

    #[test]
    fn the_filter_has_its_jumps_inside_the_program() {
        let f = filter(53);
        for (i, ins) in f.iter().enumerate() {
            if ins.code == 0x15 || ins.code == 0x45 {
                assert!(i + 1 + usize::from(ins.jt) < f.len(), "{i}");
                assert!(i + 1 + usize::from(ins.jf) < f.len(), "{i}");
            }
        }
        assert_eq!(f[19].k, 0x0004_0000);
        assert_eq!(f[20].k, 0);
    }

    #[test]
    fn answers_teach_connects_their_domain() {
        let msg = parse::parse_message(&parse::tests::message(
            7,
            true,
            "pool.example.org",
            &[[192, 0, 2, 7]],
        ))
        .unwrap();
        let lo = IpAddr::from([127, 0, 0, 1]);
        let answer = to_event(&msg, Some(42), Timestamp(1), (lo, 40000), (lo, 53));
        assert_eq!(
            Field::DnsResolvedIp.get(&answer),
            Some(Value::StrList(&["192.0.2.7".to_owned()]))
        );
        let mut cache = DomainCache::default();
        cache.learn(&answer);
        let connect = |pid| {
            let mut e = Event::new(EventKind::NetworkConnect, SourceKind::Ebpf, Timestamp(2));
            e.process = Some(Process {
                pid,
                ..Process::default()
            });
            e.network = Some(Network {
                destination_ip: "192.0.2.7".parse().ok(),
                ..Network::default()
            });
            e
        };
        let mut same = connect(42);
        cache.fill(&mut same);
        assert_eq!(
            Field::DestinationDomain.get(&same),
            Some(Value::Str("pool.example.org"))
        );
        let mut other = connect(43);
        cache.fill(&mut other);
        assert_eq!(Field::DestinationDomain.get(&other), None);
    }

    #[test]
    fn a_late_connect_names_the_asker_of_a_held_lookup() {
        let msg =
            parse::parse_message(&parse::tests::message(7, false, "a.example.org", &[])).unwrap();
        let lo = IpAddr::from([127, 0, 0, 1]);
        let server = IpAddr::from([127, 0, 0, 53]);
        let query = to_event(
            &msg,
            None,
            Timestamp(5_000_000_000),
            (lo, 40000),
            (server, 53),
        );
        let mut wait = AskerWait::default();
        let mut ready = Vec::new();
        let now = Instant::now();
        wait.admit(query.clone(), now, &mut ready);
        assert!(ready.is_empty());
        let mut connect = Event::new(
            EventKind::NetworkConnect,
            SourceKind::Ebpf,
            Timestamp(4_999_000_000),
        );
        connect.process = Some(Process {
            pid: 77,
            ..Process::default()
        });
        connect.network = Some(Network {
            destination_ip: Some(server),
            destination_port: Some(53),
            ..Network::default()
        });
        wait.on_connect(&connect, 53, &mut ready);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].process.as_ref().map(|p| p.pid), Some(77));
        // Another server's lookup is released without an asker once its wait is over.
        let other = to_event(&msg, None, Timestamp(5_000_000_000), (lo, 40001), (lo, 53));
        wait.admit(other, now, &mut ready);
        assert_eq!(ready.len(), 1);
        wait.release(now + AskerWait::WAIT, false, &mut ready);
        assert_eq!(ready.len(), 2);
        assert!(ready[1].process.is_none());
    }

    /// The pipeline behind the kernel (seen in CI): two lookups by two processes are held, and
    /// the first one's connect arrives before the second's. It must not name the second's
    /// asker, though it is the last connect to that server before the second packet.
    #[test]
    fn a_previous_lookups_connect_does_not_name_a_held_lookup() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let server = IpAddr::from([127, 0, 0, 53]);
        let ms = 1_000_000;
        let query = |name: &str, port, at| {
            let msg = parse::parse_message(&parse::tests::message(7, false, name, &[])).unwrap();
            to_event(&msg, None, Timestamp(at), (lo, port), (server, 53))
        };
        let connect = |pid, at| {
            let mut e = Event::new(EventKind::NetworkConnect, SourceKind::Audit, Timestamp(at));
            e.process = Some(Process {
                pid,
                ..Process::default()
            });
            e.network = Some(Network {
                destination_ip: Some(server),
                destination_port: Some(53),
                ..Network::default()
            });
            e
        };
        let pid_of = |e: &Event| e.process.as_ref().map(|p| p.pid);
        let mut wait = AskerWait::default();
        let mut ready = Vec::new();
        let now = Instant::now();
        // First lookup: connect at 1000 ms, query 0.1 ms later; second: connect at 1012 ms.
        wait.admit(
            query("one.example.org", 40001, 1000 * ms + ms / 10),
            now,
            &mut ready,
        );
        wait.admit(
            query("two.example.org", 40002, 1012 * ms + ms / 10),
            now,
            &mut ready,
        );
        assert!(ready.is_empty());
        wait.on_connect(&connect(101, 1000 * ms), 53, &mut ready);
        assert_eq!(ready.len(), 1, "only the first lookup is surely named");
        assert_eq!(pid_of(&ready[0]), Some(101));
        wait.on_connect(&connect(102, 1012 * ms), 53, &mut ready);
        assert_eq!(ready.len(), 2);
        assert_eq!(pid_of(&ready[1]), Some(102), "{:?}", ready[1].dns);
        // A connect longer before its packet than a lookup takes waits for the end of the
        // wait (a nearer one could still come), and is then the best known.
        wait.admit(
            query("three.example.org", 40003, 2000 * ms),
            now,
            &mut ready,
        );
        wait.on_connect(&connect(103, 1950 * ms), 53, &mut ready);
        assert_eq!(ready.len(), 2);
        wait.release(now + AskerWait::WAIT, false, &mut ready);
        assert_eq!(ready.len(), 3);
        assert_eq!(pid_of(&ready[2]), Some(103));
        // Connects already past a packet's time name it at once.
        wait.on_connect(&connect(104, 2980 * ms), 53, &mut ready);
        wait.on_connect(&connect(105, 3000 * ms), 53, &mut ready);
        wait.admit(query("four.example.org", 40004, 2990 * ms), now, &mut ready);
        assert_eq!(ready.len(), 4);
        assert_eq!(pid_of(&ready[3]), Some(104));
    }

    #[test]
    fn a_connect_waits_for_its_lookups_late_answer_and_the_next_one_does_not() {
        let answer_msg = parse::parse_message(&parse::tests::message(
            9,
            true,
            "web.example.org",
            &[[192, 0, 2, 9]],
        ))
        .unwrap();
        let lo = IpAddr::from([127, 0, 0, 1]);
        let server = IpAddr::from([127, 0, 0, 53]);
        let connect = |port| {
            let mut e = Event::new(EventKind::NetworkConnect, SourceKind::Ebpf, Timestamp(1));
            e.process = Some(Process {
                pid: 88,
                ..Process::default()
            });
            e.network = Some(Network {
                destination_ip: Some(if port == 53 {
                    server
                } else {
                    "192.0.2.9".parse().unwrap()
                }),
                destination_port: Some(port),
                ..Network::default()
            });
            e
        };
        let mut wait = AskerWait::default();
        let mut ready = Vec::new();
        let now = Instant::now();
        // The resolver's UDP connect, then the connect to the answer's address: it waits.
        let to_dns = connect(53);
        wait.on_connect(&to_dns, 53, &mut ready);
        wait.admit(to_dns, now, &mut ready);
        wait.admit(connect(443), now, &mut ready);
        assert_eq!(ready.len(), 1);
        // Still waiting after the lookup wait: the capture can be further behind than that.
        wait.release(now + AskerWait::WAIT, false, &mut ready);
        assert_eq!(ready.len(), 1);
        // The answer comes, and the connect follows it, so it can be named.
        let answer = to_event(
            &answer_msg,
            Some(88),
            Timestamp(2),
            (lo, 40000),
            (server, 53),
        );
        wait.admit(answer, now, &mut ready);
        assert_eq!(ready.len(), 3);
        assert_eq!(ready[1].kind, Some(EventKind::Dns));
        assert_eq!(ready[2].kind, Some(EventKind::NetworkConnect));
        // Answered: the process's next connect passes at once.
        wait.admit(connect(443), now, &mut ready);
        assert_eq!(ready.len(), 4);
        // Without an answer a held connect goes at the end of its hold.
        let mut quiet = AskerWait::default();
        let mut out = Vec::new();
        quiet.on_connect(&connect(53), 53, &mut out);
        quiet.admit(connect(443), now, &mut out);
        assert!(out.is_empty());
        quiet.release(now + AskerWait::CONNECT_HOLD, false, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn captures_a_lookup_on_loopback_with_its_asker() {
        // A real packet socket and a real UDP exchange on 127.0.0.1 (no server needed: the
        // query is a datagram to port 53 whether or not anything answers).
        let Ok(src) = DnsSource::open(&DnsOptions::default()) else {
            eprintln!("skipped: no CAP_NET_RAW for an AF_PACKET socket");
            return;
        };
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let query = parse::tests::message(0x4242, false, "lookup.ringfence.test", &[]);
        let sent_after = Timestamp::now();
        client.send_to(&query, "127.0.0.1:53").unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut owners = owner::Owners::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let Ok(Some(got)) = src.recv(&mut buf, 200) else {
                continue;
            };
            let Some(p) = parse::parse_packet(&buf[..got.len]) else {
                continue;
            };
            if got.direction == Direction::LoopbackCopy || p.message.id != 0x4242 {
                continue;
            }
            assert_eq!(p.message.name, "lookup.ringfence.test");
            // The kernel's time for the packet: after the send began, before it was read.
            let seen = got
                .kernel_time
                .expect("the kernel's timestamp of the packet");
            assert!(sent_after <= seen && seen <= Timestamp::now(), "{seen:?}");
            assert_eq!(
                owners.owner(p.source.0, p.source.1),
                Some(std::process::id())
            );
            return;
        }
        panic!("the query was not captured");
    }
}
