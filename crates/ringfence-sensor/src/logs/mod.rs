//! Log sources: authentication and syslog files, and web server access logs.
//!
//! Both modes run these: they need no kernel support, only read access to the files. Each
//! configured file is followed by a [`tail::Tailer`]; auth and syslog lines go through
//! [`syslog`] framing and [`auth`] recognition, access log lines through [`access`]. A line that
//! does not parse is counted and skipped, never fatal.

pub mod access;
pub mod auth;
pub mod syslog;
pub mod tail;

use std::path::PathBuf;
use std::time::Duration;

use ringfence_event::{Event, SourceKind, Timestamp};
use serde::{Deserialize, Serialize};

use crate::source::{EventSender, Sent, Source, SourceError, StopSignal};
use tail::{StartAt, TailStats, Tailer};

/// What kind of lines a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Syslog framing; sshd, sudo and su messages become authentication events.
    Syslog,
    /// nginx / Apache combined access log.
    Access,
}

/// One file to follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    pub path: PathBuf,
    pub format: LogFormat,
}

/// Configuration of the log sources (`[logs]` in the agent config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    #[serde(default = "default_files")]
    pub files: Vec<LogFile>,
    /// Read files from their beginning instead of only what is appended after start.
    #[serde(default)]
    pub from_beginning: bool,
    /// How often files are polled for new lines, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_files() -> Vec<LogFile> {
    let syslog = |p: &str| LogFile {
        path: p.into(),
        format: LogFormat::Syslog,
    };
    let access = |p: &str| LogFile {
        path: p.into(),
        format: LogFormat::Access,
    };
    vec![
        syslog("/var/log/auth.log"),
        syslog("/var/log/secure"),
        access("/var/log/nginx/access.log"),
        access("/var/log/apache2/access.log"),
        access("/var/log/httpd/access_log"),
    ]
}

fn default_poll_ms() -> u64 {
    250
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            files: default_files(),
            from_beginning: false,
            poll_ms: default_poll_ms(),
        }
    }
}

/// Counters across all followed files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub tail: TailStats,
    pub unparsed_lines: u64,
    pub events: u64,
}

/// Follows every configured file and turns new lines into events.
#[derive(Debug)]
pub struct LogReader {
    files: Vec<(Tailer, LogFormat, String)>,
    unparsed: u64,
    events: u64,
}

impl LogReader {
    pub fn new(config: &LogsConfig) -> LogReader {
        let start = if config.from_beginning {
            StartAt::Beginning
        } else {
            StartAt::End
        };
        let files = config
            .files
            .iter()
            .map(|f| {
                (
                    Tailer::new(&f.path, start),
                    f.format,
                    f.path.display().to_string(),
                )
            })
            .collect();
        LogReader {
            files,
            unparsed: 0,
            events: 0,
        }
    }

    /// Read every file once and hand each new event to `emit`. Errors reading one file are
    /// counted in its stats and do not stop the others.
    pub fn poll(&mut self, mut emit: impl FnMut(Event)) {
        let now = Timestamp::now();
        for (tailer, format, path) in &mut self.files {
            let (unparsed, events) = (&mut self.unparsed, &mut self.events);
            let _ = tailer.poll(|line| match event_for_line(*format, line, path, now) {
                Some(e) => {
                    *events += 1;
                    emit(e);
                }
                None => *unparsed += 1,
            });
        }
    }

    pub fn stats(&self) -> LogStats {
        let mut tail = TailStats::default();
        for (t, _, _) in &self.files {
            tail.lines += t.stats.lines;
            tail.truncated_lines += t.stats.truncated_lines;
            tail.rotations += t.stats.rotations;
            tail.read_errors += t.stats.read_errors;
        }
        LogStats {
            tail,
            unparsed_lines: self.unparsed,
            events: self.events,
        }
    }
}

/// The log files as a [`Source`]: polls every file each `poll_ms` until stopped.
#[derive(Debug)]
pub struct LogSource {
    reader: LogReader,
    poll: Duration,
}

impl LogSource {
    pub fn new(config: &LogsConfig) -> LogSource {
        LogSource {
            reader: LogReader::new(config),
            poll: Duration::from_millis(config.poll_ms.clamp(10, 60_000)),
        }
    }
}

impl Source for LogSource {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn run(mut self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError> {
        let mut noted = 0;
        loop {
            let mut closed = false;
            self.reader
                .poll(|event| closed |= out.send(event) == Sent::Closed);
            let stats = self.reader.stats();
            let errors = stats.unparsed_lines + stats.tail.read_errors + stats.tail.truncated_lines;
            for _ in noted..errors {
                out.note_error();
            }
            noted = errors;
            if closed || stop.sleep(self.poll) {
                return Ok(());
            }
        }
    }
}

/// The event for one line of a file of `format`, or `None` when the line does not parse.
pub fn event_for_line(format: LogFormat, line: &str, path: &str, now: Timestamp) -> Option<Event> {
    match format {
        LogFormat::Syslog => {
            syslog::parse(line, now).map(|l| auth::event_for(&l, path, SourceKind::AuthLog))
        }
        LogFormat::Access => access::parse(line).ok().map(|l| l.into_event(path, line)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_event::EventKind;

    #[test]
    fn default_config_round_trips_through_toml() {
        let text = toml::to_string(&LogsConfig::default()).unwrap_or_default();
        assert_eq!(
            toml::from_str::<LogsConfig>(&text).ok(),
            Some(LogsConfig::default())
        );
        assert!(
            toml::from_str::<LogsConfig>("colour = 1").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn source_sends_events_until_stopped() {
        let dir = std::env::temp_dir().join(format!("ringfence-logsrc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(std::fs::create_dir_all(&dir).is_ok());
        let auth = dir.join("auth.log");
        let line = "Nov 22 11:06:30 h sshd[1]: Accepted publickey for ops from 192.0.2.1 port 2 ssh2\ngarbage\n";
        assert!(std::fs::write(&auth, line).is_ok());
        let config = LogsConfig {
            files: vec![LogFile {
                path: auth,
                format: LogFormat::Syslog,
            }],
            from_beginning: true,
            poll_ms: 10,
        };
        let (tx, rx) = crate::source::channel(16);
        let out = EventSender::new("logs", tx);
        let counters = out.counters();
        let stop = StopSignal::new();
        let source: Box<dyn Source> = Box::new(LogSource::new(&config));
        let stopper = stop.clone();
        let handle = std::thread::spawn(move || source.run(out, stopper));
        let first = rx.recv_timeout(Duration::from_secs(10)).ok();
        stop.stop();
        assert!(matches!(handle.join(), Ok(Ok(()))));
        assert_eq!(first.and_then(|e| e.kind), Some(EventKind::AuthSuccess));
        let c = counters.snapshot();
        assert_eq!((c.events_out, c.errors), (1, 1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reader_turns_lines_into_events() {
        let dir = std::env::temp_dir().join(format!("ringfence-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(std::fs::create_dir_all(&dir).is_ok());
        let auth = dir.join("auth.log");
        let web = dir.join("access.log");
        let config = LogsConfig {
            files: vec![
                LogFile {
                    path: auth.clone(),
                    format: LogFormat::Syslog,
                },
                LogFile {
                    path: web.clone(),
                    format: LogFormat::Access,
                },
            ],
            from_beginning: false,
            poll_ms: 10,
        };
        let mut reader = LogReader::new(&config);
        let mut got = Vec::new();
        reader.poll(|e| got.push(e));
        assert!(got.is_empty());
        let ok = std::fs::write(&auth, "Nov 22 11:06:30 h sshd[1]: Failed password for root from 192.0.2.1 port 2 ssh2\nnot syslog\n")
            .and_then(|()| std::fs::write(&web, "192.0.2.1 - - [22/Nov/2026:11:00:00 +0000] \"GET /?q=%3Cscript%3E HTTP/1.1\" 200 1 \"-\" \"x\"\n"));
        assert!(ok.is_ok());
        reader.poll(|e| got.push(e));
        let kinds: Vec<_> = got.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [Some(EventKind::AuthFailure), Some(EventKind::WebRequest)]
        );
        assert_eq!(
            got[1].web.as_ref().and_then(|w| w.url_query.as_deref()),
            Some("q=<script>")
        );
        assert_eq!(reader.stats().unparsed_lines, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
