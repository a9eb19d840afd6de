//! The systemd notification protocol, for the supervisor under `Type=notify`: one datagram
//! per message (`READY=1`, `WATCHDOG=1`, `STATUS=...`) to the socket named in
//! `$NOTIFY_SOCKET`, written with std's `UnixDatagram` (no libsystemd). A path starting with
//! `@` is a socket in the abstract namespace.
//!
//! Only the supervisor talks to systemd (`NotifyAccess=main`); it removes the variables from
//! its worker's environment, so a worker can never report the service ready or alive.

use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The variables systemd sets for the service's main process.
pub const NOTIFY_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The longest watchdog period taken from `WATCHDOG_USEC` (a day): a bigger one is a typo.
const MAX_WATCHDOG: Duration = Duration::from_secs(86_400);

/// Where to send notifications, and the watchdog period systemd asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdNotify {
    socket: OsString,
    /// `WatchdogSec=` of the unit, when it is set for this process.
    pub watchdog: Option<Duration>,
}

impl SdNotify {
    /// From the environment systemd gives the main process; `None` when not under
    /// `Type=notify` (no `NOTIFY_SOCKET`).
    pub fn from_env() -> Option<SdNotify> {
        let socket = std::env::var_os("NOTIFY_SOCKET")?;
        // WATCHDOG_PID, when set, names the process the watchdog is meant for.
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .filter(|_| ours)
            .and_then(|v| parse_watchdog_usec(&v));
        SdNotify::new(socket, watchdog)
    }

    /// A notifier for `socket` (a path, or `@name` in the abstract namespace).
    pub fn new(socket: OsString, watchdog: Option<Duration>) -> Option<SdNotify> {
        if socket.is_empty() {
            return None;
        }
        Some(SdNotify { socket, watchdog })
    }

    /// Send one message (`KEY=VALUE` lines).
    pub fn send(&self, message: &str) -> std::io::Result<()> {
        let bytes = self.socket.as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(std::path::Path::new(&self.socket))?,
        };
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(message.as_bytes(), &addr)?;
        Ok(())
    }
}

/// `WATCHDOG_USEC`: microseconds, more than 0 and at most a day.
fn parse_watchdog_usec(v: &str) -> Option<Duration> {
    let usec: u64 = v.trim().parse().ok()?;
    let d = Duration::from_micros(usec);
    (usec > 0 && d <= MAX_WATCHDOG).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = SdNotify::new(path.into_os_string(), None).unwrap();
        n.send("READY=1\nSTATUS=worker running").unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=worker running");
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("ringfence-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = SdNotify::new(format!("@{name}").into(), None).unwrap();
        n.send("WATCHDOG=1").unwrap();
        let mut buf = [0u8; 16];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn watchdog_periods_are_bounded() {
        assert_eq!(
            parse_watchdog_usec("30000000"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_watchdog_usec("0"), None);
        assert_eq!(parse_watchdog_usec("-5"), None);
        assert_eq!(parse_watchdog_usec("99999999999999"), None);
        assert!(SdNotify::new(OsString::new(), None).is_none());
    }
}
