//! Web access log lines (the nginx and Apache "combined" format) as `web-request` events.
//!
//! `url.original` keeps the request target exactly as logged; `url.path` and `url.query` are
//! percent-decoded (and `+` is a space in the query), so rules for SQL injection, XSS or path
//! traversal match what the application saw, not its encoding. Quoted fields accept both the
//! Apache (`\"`) and nginx (`\x22`) escapes.

use std::fmt;
use std::net::IpAddr;

use ringfence_event::{Event, EventKind, Log, Network, SourceKind, Timestamp, Web};

/// Why a line is not a combined-format access log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogError {
    pub column: usize,
    pub reason: &'static str,
}

impl fmt::Display for AccessLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column + 1, self.reason)
    }
}

impl std::error::Error for AccessLogError {}

/// One parsed access log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    pub client: IpAddr,
    pub user: Option<String>,
    pub timestamp: Timestamp,
    pub request: String,
    pub status: Option<i64>,
    pub bytes: Option<i64>,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, reason: &'static str) -> AccessLogError {
        AccessLogError {
            column: self.pos,
            reason,
        }
    }

    fn skip_spaces(&mut self) {
        while self.s.as_bytes().get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    fn word(&mut self, what: &'static str) -> Result<&'a str, AccessLogError> {
        self.skip_spaces();
        let rest = self.s.get(self.pos..).ok_or_else(|| self.err(what))?;
        let end = rest.find(' ').unwrap_or(rest.len());
        if end == 0 {
            return Err(self.err(what));
        }
        self.pos += end;
        Ok(&rest[..end])
    }

    fn bracketed(&mut self) -> Result<&'a str, AccessLogError> {
        self.skip_spaces();
        let rest = self
            .s
            .get(self.pos..)
            .ok_or_else(|| self.err("expected [time]"))?;
        let inner = rest
            .strip_prefix('[')
            .ok_or_else(|| self.err("expected [time]"))?;
        let end = inner
            .find(']')
            .ok_or_else(|| self.err("unterminated [time]"))?;
        self.pos += end + 2;
        Ok(&inner[..end])
    }

    fn quoted(&mut self, what: &'static str) -> Result<String, AccessLogError> {
        self.skip_spaces();
        let bytes = self.s.as_bytes();
        if bytes.get(self.pos) != Some(&b'"') {
            return Err(self.err(what));
        }
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self
            .s
            .get(self.pos..)
            .ok_or_else(|| self.err(what))?
            .char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'x')) => {
                        let hex: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                        match u8::from_str_radix(&hex, 16) {
                            Ok(b) if b.is_ascii() => out.push(char::from(b)),
                            _ => {
                                out.push_str("\\x");
                                out.push_str(&hex);
                            }
                        }
                    }
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(self.err("unterminated quoted field"))
    }
}

fn dash_none(s: &str) -> Option<String> {
    (s != "-").then(|| s.to_owned())
}

/// Parse one combined-format line.
pub fn parse(line: &str) -> Result<AccessLine, AccessLogError> {
    let mut c = Cursor {
        s: line.trim_end_matches(['\r', '\n']),
        pos: 0,
    };
    let client_text = c.word("expected the client address")?;
    let client = client_text.parse().map_err(|_| AccessLogError {
        column: 0,
        reason: "client is not an IP address",
    })?;
    let _ident = c.word("expected the ident field")?;
    let user = dash_none(c.word("expected the user field")?);
    c.skip_spaces();
    let time_at = c.pos;
    let timestamp = parse_clf_time(c.bracketed()?).ok_or(AccessLogError {
        column: time_at + 1,
        reason: "time is not dd/Mon/yyyy:HH:MM:SS +zzzz",
    })?;
    let request = c.quoted("expected the quoted request")?;
    let status = c
        .word("expected the status")
        .ok()
        .and_then(|s| s.parse().ok());
    let bytes = c
        .word("expected the size")
        .ok()
        .and_then(|s| s.parse().ok());
    let referrer = c.quoted("referrer").ok().and_then(|r| dash_none(&r));
    let user_agent = c.quoted("user agent").ok().and_then(|r| dash_none(&r));
    Ok(AccessLine {
        client,
        user,
        timestamp,
        request,
        status,
        bytes,
        referrer,
        user_agent,
    })
}

/// `10/Oct/2000:13:55:36 -0700` to a timestamp.
fn parse_clf_time(s: &str) -> Option<Timestamp> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (date_time, zone) = s.split_once(' ')?;
    let mut parts = date_time.splitn(3, '/');
    let day = parts.next()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? + 1;
    let (year, clock) = parts.next()?.split_once(':')?;
    if zone.len() != 5 || !zone.is_char_boundary(3) {
        return None;
    }
    let (zh, zm) = zone.split_at(3);
    Timestamp::parse_rfc3339(&format!("{year}-{month:02}-{day:0>2}T{clock}{zh}:{zm}"))
}

/// Percent-decode `s`; in a query, `+` is a space. Invalid escapes are kept as written.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl AccessLine {
    /// The `web-request` event for this line, read from `path`.
    pub fn into_event(self, path: &str, raw: &str) -> Event {
        let mut e = Event::new(EventKind::WebRequest, SourceKind::AccessLog, self.timestamp);
        let mut words = self.request.splitn(3, ' ');
        let (method, target) = match (words.next(), words.next()) {
            (Some(m), Some(t)) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
                (Some(m.to_owned()), t.to_owned())
            }
            _ => (None, self.request.clone()),
        };
        let (path_part, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target.as_str(), None),
        };
        e.web = Some(Box::new(Web {
            url_path: Some(percent_decode(path_part, false)),
            url_query: query.map(|q| percent_decode(q, true)),
            url_original: target.clone(),
            method,
            status_code: self.status,
            response_bytes: self.bytes,
            referrer: self.referrer,
            user_agent: self.user_agent,
        }));
        e.network = Some(Network {
            source_ip: Some(self.client),
            ..Network::default()
        });
        e.user.name = self.user;
        e.log = Some(Log {
            file_path: Some(path.to_owned()),
            message: raw.to_owned(),
        });
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /item.php?id=1%27%20OR%20%271%27=%271&x=a+b HTTP/1.1" 200 2326 "http://example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;

    #[test]
    fn parses_combined_format() {
        let l = parse(LINE).map_err(|e| e.to_string());
        let l = l.as_ref().ok();
        assert_eq!(l.map(|l| l.client.to_string()), Some("203.0.113.9".into()));
        assert_eq!(l.and_then(|l| l.user.clone()), Some("frank".into()));
        assert_eq!(
            l.map(|l| l.timestamp.to_string()),
            Some("2000-10-10T20:55:36.000000000Z".into())
        );
        assert_eq!(l.and_then(|l| l.status), Some(200));
        assert_eq!(
            l.and_then(|l| l.user_agent.clone()),
            Some("Mozilla/4.08 [en] (Win98; I ;Nav)".into())
        );
    }

    #[test]
    fn event_decodes_path_and_query() {
        let e = parse(LINE)
            .map(|l| l.into_event("/var/log/nginx/access.log", LINE))
            .unwrap_or_default();
        let web = e.web.unwrap_or_default();
        assert_eq!(web.method.as_deref(), Some("GET"));
        assert_eq!(web.url_path.as_deref(), Some("/item.php"));
        assert_eq!(web.url_query.as_deref(), Some("id=1' OR '1'='1&x=a b"));
        assert!(web.url_original.contains("%27"));
    }

    #[test]
    fn escapes_and_odd_requests() {
        let nginx =
            r#"::1 - - [22/Nov/2026:11:00:00 +0000] "GET /a\x22b HTTP/1.1" 404 0 "-" "curl/8""#;
        let l = parse(nginx).ok();
        assert_eq!(
            l.as_ref().map(|l| l.request.as_str()),
            Some("GET /a\"b HTTP/1.1")
        );
        assert_eq!(l.as_ref().and_then(|l| l.referrer.clone()), None);
        let junk = r#"10.0.0.1 - - [22/Nov/2026:11:00:00 +0000] "\x16\x03\x01" 400 157 "-" "-""#;
        let e = parse(junk)
            .map(|l| l.into_event("p", junk))
            .unwrap_or_default();
        assert_eq!(e.web.map(|w| w.method), Some(None));
    }

    #[test]
    fn refusals_name_the_column() {
        assert_eq!(parse("").err().map(|e| e.column), Some(0));
        assert_eq!(
            parse("nothost - - [x] \"GET / HTTP/1.1\" 200 1")
                .err()
                .map(|e| e.reason),
            Some("client is not an IP address")
        );
        let bad_time = parse("1.2.3.4 - - [10/Foo/2000:13:55:36 -0700] \"GET /\" 200 1").err();
        assert_eq!(bad_time.map(|e| e.column), Some(13));
        assert!(parse("1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /").is_err());
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(
            percent_decode("%2e%2e%2fetc%2Fpasswd", false),
            "../etc/passwd"
        );
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz+", true), "%zz ");
    }
}
