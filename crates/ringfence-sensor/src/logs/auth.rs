//! Authentication events from sshd, sudo and su log messages.
//!
//! Recognised messages become `auth-success` / `auth-failure` events carrying the account, the
//! client address and the method; every other line of an auth or syslog file becomes a `log`
//! event, so Sigma keyword rules for `service: sshd` and the like still see it. Each line yields
//! exactly one event, so a rule over both kinds never fires twice for one line.

use std::borrow::Cow;
use std::net::IpAddr;

use ringfence_event::{Event, EventKind, Log, Network, Outcome, SourceKind};

use super::syslog::SyslogLine;

/// What an authentication message said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt<'a> {
    pub outcome: Outcome,
    pub user: Option<&'a str>,
    pub method: Option<&'a str>,
    pub source_ip: Option<IpAddr>,
    pub source_port: Option<u16>,
}

/// Recognise an authentication message of `program`.
pub fn recognise<'a>(program: &str, message: &'a str) -> Option<AuthAttempt<'a>> {
    match program {
        "sshd" | "sshd-session" => sshd(message),
        "sudo" => sudo(message),
        "su" => su(message),
        _ => None,
    }
}

fn sshd(m: &str) -> Option<AuthAttempt<'_>> {
    // "Failed password for [invalid user ]NAME from IP port N ssh2"
    // "Accepted publickey for NAME from IP port N ssh2: ED25519 SHA256:..."
    // "Invalid user NAME from IP port N"
    let (outcome, rest, method) = if let Some(rest) = m.strip_prefix("Failed ") {
        let (method, rest) = rest.split_once(" for ")?;
        (Outcome::Failure, rest, Some(method))
    } else if let Some(rest) = m.strip_prefix("Accepted ") {
        let (method, rest) = rest.split_once(" for ")?;
        (Outcome::Success, rest, Some(method))
    } else if let Some(rest) = m.strip_prefix("Invalid user ") {
        (Outcome::Failure, rest, None)
    } else {
        return None;
    };
    let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
    let (user, rest) = rest
        .rsplit_once(" from ")
        .map_or((rest, ""), |(u, r)| (u, r));
    let mut words = rest.split(' ');
    let source_ip = words.next().and_then(|w| w.parse().ok());
    let source_port = match (words.next(), words.next()) {
        (Some("port"), Some(p)) => p.trim_end_matches(':').parse().ok(),
        _ => None,
    };
    Some(AuthAttempt {
        outcome,
        user: Some(user).filter(|u| !u.is_empty()),
        method,
        source_ip,
        source_port,
    })
}

fn sudo(m: &str) -> Option<AuthAttempt<'_>> {
    // "alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls"
    // "alice : 3 incorrect password attempts ; TTY=pts/0 ; ..."
    let (user, rest) = m.split_once(" : ")?;
    let user = user.trim();
    if user.is_empty() || user.contains(' ') {
        return None;
    }
    let outcome =
        if rest.contains("incorrect password attempt") || rest.contains("user NOT in sudoers") {
            Outcome::Failure
        } else if rest.contains("COMMAND=") {
            Outcome::Success
        } else {
            return None;
        };
    Some(AuthAttempt {
        outcome,
        user: Some(user),
        method: Some("password"),
        source_ip: None,
        source_port: None,
    })
}

fn su(m: &str) -> Option<AuthAttempt<'_>> {
    // "(to root) alice on pts/0" / "FAILED SU (to root) alice on pts/0"
    let (outcome, rest) = match m.strip_prefix("FAILED SU ") {
        Some(rest) => (Outcome::Failure, rest),
        None => (Outcome::Success, m),
    };
    let rest = rest.strip_prefix("(to ")?;
    let (target, _) = rest.split_once(") ")?;
    Some(AuthAttempt {
        outcome,
        user: Some(target),
        method: Some("password"),
        source_ip: None,
        source_port: None,
    })
}

/// The one event a syslog line from `path` yields: an authentication event when recognised,
/// else a `log` event.
pub fn event_for(line: &SyslogLine<'_>, path: &str, source: SourceKind) -> Event {
    let attempt = recognise(line.program, line.message);
    let kind = match attempt.as_ref().map(|a| a.outcome) {
        Some(Outcome::Success) => EventKind::AuthSuccess,
        Some(_) => EventKind::AuthFailure,
        None => EventKind::LogLine,
    };
    let mut e = Event::new(kind, source, line.timestamp);
    e.service_name = Some(Cow::Owned(line.program.to_owned()));
    e.log = Some(Log {
        file_path: Some(path.to_owned()),
        message: line.message.to_owned(),
    });
    if let Some(a) = attempt {
        e.outcome = Some(a.outcome);
        e.user.name = a.user.map(str::to_owned);
        e.auth_method = a.method.map(str::to_owned);
        if a.source_ip.is_some() {
            e.network = Some(Network {
                source_ip: a.source_ip,
                source_port: a.source_port,
                ..Network::default()
            });
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_messages() {
        let a = recognise(
            "sshd",
            "Failed password for invalid user admin from 203.0.113.9 port 52814 ssh2",
        );
        assert_eq!(
            a,
            Some(AuthAttempt {
                outcome: Outcome::Failure,
                user: Some("admin"),
                method: Some("password"),
                source_ip: "203.0.113.9".parse().ok(),
                source_port: Some(52814),
            })
        );
        let a = recognise(
            "sshd",
            "Accepted publickey for deploy from 2001:db8::1 port 40000 ssh2: ED25519 SHA256:abc",
        );
        assert_eq!(
            a.as_ref().map(|a| (a.outcome, a.user, a.method)),
            Some((Outcome::Success, Some("deploy"), Some("publickey")))
        );
        assert_eq!(a.and_then(|a| a.source_ip), "2001:db8::1".parse().ok());
        let a = recognise("sshd", "Invalid user oracle from 198.51.100.7 port 1234");
        assert_eq!(
            a.map(|a| (a.outcome, a.user, a.method)),
            Some((Outcome::Failure, Some("oracle"), None))
        );
        assert_eq!(
            recognise("sshd", "Connection closed by 1.2.3.4 port 22 [preauth]"),
            None
        );
        assert_eq!(recognise("sshd", "Failed password"), None);
    }

    #[test]
    fn sudo_and_su_messages() {
        let ok = recognise(
            "sudo",
            "alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls",
        );
        assert_eq!(
            ok.map(|a| (a.outcome, a.user)),
            Some((Outcome::Success, Some("alice")))
        );
        let bad = recognise(
            "sudo",
            "bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/sh",
        );
        assert_eq!(bad.map(|a| a.outcome), Some(Outcome::Failure));
        let su_bad = recognise("su", "FAILED SU (to root) alice on pts/0");
        assert_eq!(
            su_bad.map(|a| (a.outcome, a.user)),
            Some((Outcome::Failure, Some("root")))
        );
        assert_eq!(
            recognise("su", "pam_unix(su:session): session opened"),
            None
        );
    }

    #[test]
    fn one_event_per_line() {
        let now = ringfence_event::Timestamp::from_secs(1_790_000_000);
        let line = super::super::syslog::parse(
            "Nov 22 11:06:30 h sshd[9]: Failed password for root from 10.0.0.1 port 22 ssh2",
            now,
        );
        let e = line.map(|l| event_for(&l, "/var/log/auth.log", SourceKind::AuthLog));
        let e = e.unwrap_or_default();
        assert_eq!(e.kind, Some(EventKind::AuthFailure));
        assert_eq!(e.user.name.as_deref(), Some("root"));
        assert_eq!(e.service_name.as_deref(), Some("sshd"));
        assert_eq!(e.network.and_then(|n| n.source_ip), "10.0.0.1".parse().ok());
        let other =
            super::super::syslog::parse("Nov 22 11:06:30 h cron[9]: (root) CMD (run-parts)", now);
        let e = other
            .map(|l| event_for(&l, "/var/log/syslog", SourceKind::AuthLog))
            .unwrap_or_default();
        assert_eq!(e.kind, Some(EventKind::LogLine));
        assert_eq!(
            e.log.map(|l| l.message),
            Some("(root) CMD (run-parts)".into())
        );
    }
}
