//! Syslog line framing: the timestamp, host, program and pid in front of a log message.
//!
//! Two layouts are read: the classic BSD one (`Nov 22 11:06:30 web-1 sshd[812]: ...`, whose year
//! is taken from the clock) and the RFC 3339 one rsyslog writes with its high-precision template
//! (`2026-11-22T11:06:30.123456+00:00 web-1 sshd[812]: ...`). Anything else is not a syslog line.

use ringfence_event::Timestamp;

/// One framed syslog line, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogLine<'a> {
    pub timestamp: Timestamp,
    pub host: &'a str,
    /// The program name (`sshd`), without the pid.
    pub program: &'a str,
    pub pid: Option<u32>,
    pub message: &'a str,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Frame `line`. `now` supplies the year for BSD timestamps (a date more than a month ahead of
/// `now` is taken to be from last year, as at New Year).
pub fn parse(line: &str, now: Timestamp) -> Option<SyslogLine<'_>> {
    let (timestamp, rest) = parse_rfc3339_prefix(line).or_else(|| parse_bsd_prefix(line, now))?;
    let rest = rest.trim_start_matches(' ');
    let (host, rest) = rest.split_once(' ')?;
    let (tag, message) = rest
        .split_once(": ")
        .or_else(|| rest.strip_suffix(':').map(|t| (t, "")))?;
    if tag.is_empty() || tag.contains(' ') {
        return None;
    }
    let (program, pid) = match tag.split_once('[') {
        Some((program, pid)) => (program, pid.strip_suffix(']').and_then(|p| p.parse().ok())),
        None => (tag, None),
    };
    Some(SyslogLine {
        timestamp,
        host,
        program,
        pid,
        message,
    })
}

fn parse_rfc3339_prefix(line: &str) -> Option<(Timestamp, &str)> {
    let (first, rest) = line.split_once(' ')?;
    Some((Timestamp::parse_rfc3339(first)?, rest))
}

fn parse_bsd_prefix(line: &str, now: Timestamp) -> Option<(Timestamp, &str)> {
    // "Nov 22 11:06:30 " is 16 bytes; the day may be space-padded ("Nov  2").
    let head = line.get(..16)?;
    let rest = line.get(16..)?;
    let month = MONTHS.iter().position(|m| head.starts_with(m))? + 1;
    let day: u32 = head.get(4..6)?.trim_start().parse().ok()?;
    let clock = head.get(7..15)?;
    if head.as_bytes().get(15) != Some(&b' ') {
        return None;
    }
    let this_year = now_year(now);
    let stamp =
        |year: i64| Timestamp::parse_rfc3339(&format!("{year:04}-{month:02}-{day:02}T{clock}Z"));
    let ts = stamp(this_year)?;
    let month_ns = 31 * 86_400 * 1_000_000_000i64;
    if ts.as_nanos() > now.as_nanos().saturating_add(month_ns) {
        return stamp(this_year - 1).map(|t| (t, rest));
    }
    Some((ts, rest))
}

fn now_year(now: Timestamp) -> i64 {
    now.to_string()
        .get(..4)
        .and_then(|y| y.parse().ok())
        .unwrap_or(1970)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-22T12:00:00Z").unwrap_or_default()
    }

    #[test]
    fn frames_bsd_and_rfc3339_lines() {
        let l = parse(
            "Nov 22 11:06:30 web-1 sshd[812]: Failed password for root",
            now(),
        );
        assert_eq!(
            l,
            Some(SyslogLine {
                timestamp: Timestamp::parse_rfc3339("2026-11-22T11:06:30Z").unwrap_or_default(),
                host: "web-1",
                program: "sshd",
                pid: Some(812),
                message: "Failed password for root",
            })
        );
        let l = parse(
            "2026-11-22T11:06:30.5+00:00 web-1 sudo: alice : TTY=pts/0",
            now(),
        );
        assert_eq!(
            l.map(|l| (l.program, l.pid, l.message)),
            Some(("sudo", None, "alice : TTY=pts/0"))
        );
        let padded = parse("Nov  2 01:02:03 h cron[1]: x", now());
        assert_eq!(
            padded.map(|l| l.timestamp.to_string()),
            Some("2026-11-02T01:02:03.000000000Z".into())
        );
    }

    #[test]
    fn december_lines_read_in_january_are_last_year() {
        let jan = Timestamp::parse_rfc3339("2027-01-01T00:10:00Z").unwrap_or_default();
        let l = parse("Dec 31 23:59:59 h sshd[1]: x", jan);
        assert_eq!(
            l.map(|l| l.timestamp.to_string()),
            Some("2026-12-31T23:59:59.000000000Z".into())
        );
    }

    #[test]
    fn refuses_what_is_not_syslog() {
        for line in [
            "",
            "hello",
            "Nov 22 11:06:30",
            "Foo 22 11:06:30 h p: m",
            "Nov 22 11:06:30 host no colon here",
            "Nov 99 11:06:30 h p: m",
        ] {
            assert_eq!(parse(line, now()), None, "{line}");
        }
    }
}
