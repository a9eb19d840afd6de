//! DNS over UDP from raw packets: the IPv4 or IPv6 header, the UDP header, and the DNS message
//! (RFC 1035): the first question, the response code and the A and AAAA answers.
//!
//! Every byte is untrusted (anyone on the network can send a DNS answer), so every read is
//! bounds-checked, names are at most 255 bytes, compression pointers may only point backwards
//! and at most [`MAX_JUMPS`] are followed, and at most [`MAX_ANSWERS`] records are read.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One UDP datagram's addresses and its DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPacket {
    pub source: Endpoint,
    pub destination: Endpoint,
    pub message: DnsMessage,
}

/// What Ringfence keeps of a DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    /// QR bit: an answer, not a query.
    pub is_response: bool,
    pub rcode: u8,
    /// The first question's name: lower case, without the trailing dot (`.` for the root).
    pub name: String,
    pub qtype: u16,
    /// A and AAAA records of the answer section, in order.
    pub addresses: Vec<IpAddr>,
}

/// At most this many answer records are read.
pub const MAX_ANSWERS: usize = 64;
/// At most this many compression pointers are followed in one name.
pub const MAX_JUMPS: usize = 16;
const MAX_NAME: usize = 255;

/// One end of a UDP datagram.
pub type Endpoint = (IpAddr, u16);

/// The UDP payload of an IP packet (starting at the IP header), with its source and destination.
/// `None` for anything but a whole, unfragmented UDP datagram.
pub fn udp_payload(packet: &[u8]) -> Option<(Endpoint, Endpoint, &[u8])> {
    let version = packet.first()? >> 4;
    let (src, dst, udp) = match version {
        4 => {
            let ihl = usize::from(packet.first()? & 0x0f) * 4;
            if ihl < 20 || *packet.get(9)? != 17 {
                return None;
            }
            let frag = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]);
            // More fragments, or not the first: not a whole datagram.
            if frag & 0x3fff != 0 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
            let packet = packet.get(..total.min(packet.len()))?;
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            (
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                packet.get(ihl..)?,
            )
        }
        6 => {
            // Only UDP directly after the fixed header; extension headers are not followed.
            if *packet.get(6)? != 17 {
                return None;
            }
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                packet.get(40..)?,
            )
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if len < 8 {
        return None;
    }
    let payload = udp.get(8..len.min(udp.len()))?;
    Some(((src, sport), (dst, dport), payload))
}

/// A DNS-over-UDP packet (starting at the IP header), or `None` when it is not one.
pub fn parse_packet(packet: &[u8]) -> Option<DnsPacket> {
    let (source, destination, payload) = udp_payload(packet)?;
    Some(DnsPacket {
        source,
        destination,
        message: parse_message(payload)?,
    })
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at.checked_add(1)?)?,
    ]))
}

/// The name at `at`, and the offset just after it in the record (not after any pointer target).
fn read_name(msg: &[u8], mut at: usize, out: &mut String) -> Option<usize> {
    let mut end = None;
    let mut jumps = 0;
    let mut lowest = at;
    loop {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Some(end.unwrap_or(at + 1));
                }
                let label = msg.get(at + 1..at + 1 + usize::from(len))?;
                if out.len() + label.len() + 1 > MAX_NAME {
                    return None;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    // Names are ASCII on the wire; anything else is escaped, never trusted.
                    if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                        out.push(char::from(b.to_ascii_lowercase()));
                    } else {
                        out.push_str(&format!("\\{b:03}"));
                    }
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let target = usize::from(u16_at(msg, at)? & 0x3fff);
                jumps += 1;
                // Only backwards, below everything read so far: no loops.
                if jumps > MAX_JUMPS || target >= lowest {
                    return None;
                }
                end.get_or_insert(at + 2);
                lowest = target;
                at = target;
            }
            _ => return None,
        }
    }
}

/// A DNS message (the UDP payload), or `None` when it does not parse or asks no question.
pub fn parse_message(msg: &[u8]) -> Option<DnsMessage> {
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    let qdcount = u16_at(msg, 4)?;
    let ancount = u16_at(msg, 6)?;
    if qdcount == 0 {
        return None;
    }
    let mut name = String::new();
    let mut at = read_name(msg, 12, &mut name)?;
    let qtype = u16_at(msg, at)?;
    at += 4;
    if name.is_empty() {
        name.push('.');
    }
    // Further questions (no resolver sends them) are skipped.
    for _ in 1..qdcount.min(8) {
        at = read_name(msg, at, &mut String::new())? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..usize::from(ancount).min(MAX_ANSWERS) {
        let Some(next) = read_name(msg, at, &mut String::new()) else {
            break;
        };
        let (Some(rtype), Some(rdlen)) = (u16_at(msg, next), u16_at(msg, next + 8)) else {
            break;
        };
        let data_at = next + 10;
        let Some(data) = msg.get(data_at..data_at + usize::from(rdlen)) else {
            break;
        };
        match (rtype, data.len()) {
            (1, 4) => addresses.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (28, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(data);
                addresses.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            _ => {}
        }
        at = data_at + usize::from(rdlen);
    }
    Some(DnsMessage {
        id,
        is_response: flags & 0x8000 != 0,
        rcode: (flags & 0x000f) as u8,
        name,
        qtype,
        addresses,
    })
}

/// ECS `dns.question.type`: the mnemonic, or the number.
pub fn qtype_name(t: u16) -> Cow<'static, str> {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return Cow::Owned(t.to_string()),
    };
    Cow::Borrowed(name)
}

/// ECS `dns.response_code`.
pub fn rcode_name(rcode: u8) -> Cow<'static, str> {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => return Cow::Owned(rcode.to_string()),
    };
    Cow::Borrowed(name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A DNS message: header, one question, and the given A answers (name by pointer).
    pub(crate) fn message(id: u16, response: bool, name: &str, answers: &[[u8; 4]]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&(if response { 0x8180u16 } else { 0x0100 }).to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&[0, 1, 0, 1]);
        for a in answers {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            m.extend_from_slice(a);
        }
        m
    }

    pub(crate) fn ipv4_udp(
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let total = (20 + 8 + payload.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn a_query_and_its_answer() {
        let q = message(0x1234, false, "Pool.Example.org", &[]);
        let pkt = ipv4_udp([127, 0, 0, 1], 40000, [127, 0, 0, 53], 53, &q);
        let parsed = parse_packet(&pkt).unwrap();
        assert_eq!(parsed.source, ("127.0.0.1".parse().unwrap(), 40000));
        assert_eq!(parsed.destination.1, 53);
        let m = parsed.message;
        assert_eq!((m.id, m.is_response, m.qtype), (0x1234, false, 1));
        assert_eq!(m.name, "pool.example.org");
        let a = message(
            0x1234,
            true,
            "pool.example.org",
            &[[192, 0, 2, 7], [192, 0, 2, 8]],
        );
        let m = parse_message(&a).unwrap();
        assert!(m.is_response);
        assert_eq!(rcode_name(m.rcode), "NOERROR");
        assert_eq!(
            m.addresses,
            vec![
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "192.0.2.8".parse().unwrap()
            ]
        );
        assert_eq!(qtype_name(28), "AAAA");
        assert_eq!(qtype_name(4242), "4242");
    }

    #[test]
    fn hostile_messages_are_refused_or_cut() {
        // A pointer to itself, a pointer forwards, a label past the end, no question.
        let mut looped = message(1, true, "a.b", &[]);
        looped.truncate(12);
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_message(&looped), None);
        let mut forward = message(1, true, "a.b", &[]);
        forward.truncate(12);
        forward.extend_from_slice(&[0xc0, 40]);
        assert_eq!(parse_message(&forward), None);
        assert_eq!(
            parse_message(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a']),
            None
        );
        assert_eq!(parse_message(&[0u8; 12]), None);
        // A long name is refused, an odd byte escaped.
        let long = vec!["a".repeat(63); 5].join(".");
        assert_eq!(parse_message(&message(1, false, &long, &[])), None);
        let odd = parse_message(&message(1, false, "a b.org", &[])).unwrap();
        assert_eq!(odd.name, "a\\032b.org");
        // An answer count past the records present keeps what was read.
        let mut short = message(1, true, "x.org", &[[10, 0, 0, 1]]);
        short[7] = 200;
        assert_eq!(parse_message(&short).unwrap().addresses.len(), 1);
        // Not UDP, fragments, a cut header.
        let pkt = ipv4_udp(
            [1, 1, 1, 1],
            53,
            [2, 2, 2, 2],
            999,
            &message(1, true, "x.org", &[]),
        );
        let mut tcp = pkt.clone();
        tcp[9] = 6;
        assert_eq!(parse_packet(&tcp), None);
        let mut frag = pkt.clone();
        frag[6] = 0x20;
        assert_eq!(parse_packet(&frag), None);
        assert_eq!(parse_packet(&pkt[..25]), None);
        assert!(parse_packet(&pkt).is_some());
    }
}
