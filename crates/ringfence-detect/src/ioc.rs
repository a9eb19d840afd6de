//! Indicator-of-compromise sets: SHA-256 hashes of executables, IP addresses and CIDR ranges,
//! and domains. Lookups are O(1): hash sets for hashes, addresses and domains (a domain also
//! matches its subdomains, one lookup per label), and one hash table per prefix length for
//! ranges (longest prefix first).
//!
//! The text format, one indicator per line, `#` starts a comment:
//! ```text
//! sha256:<64 hex>    or a bare 64-hex string
//! ip:203.0.113.7     or a bare address
//! cidr:10.0.0.0/8    or a bare range
//! domain:evil.example or a bare name
//! ```
//! An optional second column (after whitespace) is a label carried into findings.
//!
//! A line `# ringfence: deny-exec` marks the set's hashes as executables the agent's exec guard
//! refuses to run, where the operator allowed content to do so
//! (`[protection] deny_exec_from_content`); the other indicators only match.

use std::collections::HashMap;
use std::net::IpAddr;

use ringfence_event::{Event, Field, Value};

/// A parse problem, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IocError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for IocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The longest indicator line accepted.
const MAX_LINE: usize = 4096;

/// What an IOC match found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IocHit {
    /// `sha256`, `ip`, `cidr` or `domain`.
    pub kind: &'static str,
    pub indicator: String,
    /// The event field it matched.
    pub field: &'static str,
    pub label: Option<String>,
}

/// A loaded set.
#[derive(Debug, Default)]
pub struct IocSet {
    hashes: HashMap<[u8; 32], u32>,
    ips: HashMap<IpAddr, u32>,
    /// (is_v6, prefix length) → masked network → label index; longest prefixes first.
    ranges: Vec<(bool, u8, HashMap<u128, u32>)>,
    domains: HashMap<Box<str>, u32>,
    labels: Vec<Option<Box<str>>>,
    /// Set name (the file it came from).
    pub name: String,
    /// The set carries the `# ringfence: deny-exec` directive.
    pub deny_exec: bool,
}

/// The directive that makes a set's hashes a deny list.
pub const DENY_EXEC_DIRECTIVE: &str = "# ringfence: deny-exec";

fn mask(addr: u128, bits: u8, width: u8) -> u128 {
    if bits == 0 {
        return 0;
    }
    let shift = u32::from(width - bits);
    let m = if width == 128 {
        u128::MAX << shift
    } else {
        (u128::from(u32::MAX) << shift) & u128::from(u32::MAX)
    };
    addr & m
}

fn bits(ip: IpAddr) -> (bool, u128, u8) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (true, u128::from(v6), 128),
    }
}

/// 64 hex digits, either case, as bytes.
fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

impl IocSet {
    /// Parses a set; every bad line is reported, good lines still load.
    pub fn parse(name: &str, text: &str) -> (IocSet, Vec<IocError>) {
        let mut set = IocSet {
            name: name.to_owned(),
            ..IocSet::default()
        };
        let mut errors = Vec::new();
        let mut ranges: HashMap<(bool, u8), HashMap<u128, u32>> = HashMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            if raw.len() > MAX_LINE {
                errors.push(IocError {
                    line: line_no,
                    message: format!("line of {} bytes is too long", raw.len()),
                });
                continue;
            }
            if raw.trim() == DENY_EXEC_DIRECTIVE {
                set.deny_exec = true;
                continue;
            }
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut cols = line.split_whitespace();
            let Some(first) = cols.next() else { continue };
            let label: Option<Box<str>> = cols.next().map(|second| {
                let mut label = second.to_owned();
                for word in cols {
                    label.push(' ');
                    label.push_str(word);
                }
                label.into()
            });
            let (kind, value) = match first.split_once(':') {
                Some((k @ ("sha256" | "ip" | "cidr" | "domain"), v)) => (Some(k), v),
                _ => (None, first),
            };
            let label_idx = u32::try_from(set.labels.len()).unwrap_or(u32::MAX);
            let bad = |what: &str| IocError {
                line: line_no,
                message: format!("`{first}` is not a valid {what}"),
            };
            match kind {
                Some("sha256") | None if let Some(h) = hex32(value) => {
                    set.hashes.insert(h, label_idx);
                }
                Some("sha256") => {
                    errors.push(bad("SHA-256 (64 hex digits)"));
                    continue;
                }
                Some("ip" | "cidr") | None if let Ok(ip) = value.parse::<IpAddr>() => {
                    set.ips.insert(ip, label_idx);
                }
                Some("ip" | "cidr") | None if value.contains('/') => {
                    match value.parse::<ipnet::IpNet>() {
                        Ok(net) => {
                            let (v6, addr, width) = bits(net.network());
                            let len = net.prefix_len();
                            ranges
                                .entry((v6, len))
                                .or_default()
                                .insert(mask(addr, len, width), label_idx);
                        }
                        Err(_) => {
                            errors.push(bad("CIDR range"));
                            continue;
                        }
                    }
                }
                Some("ip" | "cidr") => {
                    errors.push(bad("IP address"));
                    continue;
                }
                Some("domain") | None => {
                    let d = value.trim_end_matches('.').to_ascii_lowercase();
                    let valid = !d.is_empty()
                        && d.len() <= 253
                        && d.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
                        })
                        && d.contains('.');
                    if !valid {
                        errors.push(bad("domain, address, range or hash"));
                        continue;
                    }
                    set.domains.insert(d.into(), label_idx);
                }
                Some(_) => continue,
            }
            set.labels.push(label);
        }
        let mut ranges: Vec<(bool, u8, HashMap<u128, u32>)> = ranges
            .into_iter()
            .map(|((v6, len), m)| (v6, len, m))
            .collect();
        ranges.sort_by_key(|r| std::cmp::Reverse(r.1));
        set.ranges = ranges;
        (set, errors)
    }

    /// The SHA-256 indicators.
    pub fn sha256s(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.hashes.keys()
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
            + self.ips.len()
            + self.domains.len()
            + self.ranges.iter().map(|r| r.2.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn label(&self, i: u32) -> Option<String> {
        self.labels
            .get(i as usize)
            .and_then(|l| l.as_deref())
            .map(str::to_owned)
    }

    /// The indicator an address matches, if any.
    pub fn match_ip(&self, ip: IpAddr) -> Option<(&'static str, String, Option<String>)> {
        if let Some(&l) = self.ips.get(&ip) {
            return Some(("ip", ip.to_string(), self.label(l)));
        }
        let (v6, addr, width) = bits(ip);
        for (rv6, len, table) in &self.ranges {
            if *rv6 != v6 {
                continue;
            }
            if let Some(&l) = table.get(&mask(addr, *len, width)) {
                return Some((
                    "cidr",
                    format!("{}/{len}", masked_ip(mask(addr, *len, width), v6)),
                    self.label(l),
                ));
            }
        }
        None
    }

    /// The indicator a domain (or one of its parents) matches, if any.
    pub fn match_domain(&self, domain: &str) -> Option<(String, Option<String>)> {
        let lower = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = lower.as_str();
        for _ in 0..128 {
            if rest.len() <= 253
                && let Some(&l) = self.domains.get(rest)
            {
                return Some((rest.to_owned(), self.label(l)));
            }
            match rest.split_once('.') {
                Some((_, parent)) if parent.contains('.') => rest = parent,
                _ => break,
            }
        }
        None
    }

    /// The indicator a hex SHA-256 matches, if any.
    pub fn match_sha256(&self, hex: &str) -> Option<Option<String>> {
        let h = hex32(hex)?;
        self.hashes.get(&h).map(|&l| self.label(l))
    }

    /// Every indicator `e` matches.
    pub fn matches(&self, e: &Event) -> Vec<IocHit> {
        let mut hits = Vec::new();
        if self.is_empty() {
            return hits;
        }
        for field in [Field::DestinationIp, Field::SourceIp] {
            if let Some(Value::Ip(ip)) = field.get(e)
                && let Some((kind, indicator, label)) = self.match_ip(ip)
            {
                hits.push(IocHit {
                    kind,
                    indicator,
                    field: field.name(),
                    label,
                });
            }
        }
        // A domain matches where it is looked up (before any connection) and where it is
        // connected to.
        for field in [Field::DnsQuestionName, Field::DestinationDomain] {
            if let Some(Value::Str(d)) = field.get(e)
                && let Some((indicator, label)) = self.match_domain(d)
            {
                hits.push(IocHit {
                    kind: "domain",
                    indicator,
                    field: field_name(field),
                    label,
                });
            }
        }
        if let Some(Value::Str(h)) = Field::FileSha256.get(e)
            && let Some(label) = self.match_sha256(h)
        {
            hits.push(IocHit {
                kind: "sha256",
                indicator: h.to_ascii_lowercase(),
                field: field_name(Field::FileSha256),
                label,
            });
        }
        hits
    }
}

fn field_name(f: Field) -> &'static str {
    f.name()
}

fn masked_ip(addr: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(addr.into())
    } else {
        IpAddr::V4(u32::try_from(addr).unwrap_or(0).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deny_exec_directive_marks_a_set_and_plain_comments_do_not() {
        let hash = "ab".repeat(32);
        let (set, errs) = IocSet::parse("d", &format!("{DENY_EXEC_DIRECTIVE}\n{hash} dropper\n"));
        assert!(errs.is_empty() && set.deny_exec);
        assert_eq!(set.sha256s().count(), 1);
        let (plain, _) = IocSet::parse("p", &format!("# ringfence deny-exec\n{hash}\n"));
        assert!(!plain.deny_exec);
    }

    #[test]
    fn parse_and_match() {
        let text = "# c2\n203.0.113.7 c2-server\ncidr:10.0.0.0/8\nevil.example\nsha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\nnot valid!\n";
        let (set, errs) = IocSet::parse("t", text);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 6);
        assert_eq!(set.len(), 4);
        assert_eq!(
            set.match_ip("203.0.113.7".parse().unwrap()).map(|x| x.2),
            Some(Some("c2-server".into()))
        );
        assert!(set.match_ip("10.200.1.1".parse().unwrap()).is_some());
        assert!(set.match_ip("11.0.0.1".parse().unwrap()).is_none());
        assert!(set.match_domain("a.b.EVIL.example").is_some());
        assert!(set.match_domain("example").is_none());
        assert!(
            set.match_sha256("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
                .is_some()
        );
    }

    #[test]
    fn a_domain_matches_on_the_lookup_before_any_connection() {
        let (set, _) = IocSet::parse("t", "pool.evil.example miner\n");
        let mut e = Event::new(
            ringfence_event::EventKind::Dns,
            ringfence_event::SourceKind::Dns,
            ringfence_event::Timestamp(1),
        );
        e.dns = Some(Box::new(ringfence_event::Dns {
            message_type: "query".into(),
            question_name: "eu.pool.evil.example".into(),
            question_type: "A".into(),
            ..Default::default()
        }));
        let hits = set.matches(&e);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].field, "dns.question.name");
        assert_eq!(hits[0].kind, "domain");
    }
}
