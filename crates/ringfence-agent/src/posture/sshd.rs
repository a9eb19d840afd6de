//! sshd's effective configuration, and what in it exposes the host.
//!
//! The configuration is what `sshd -T -f FILE` prints when sshd is installed and accepts it
//! (that is sshd's own reading, Includes and defaults resolved); otherwise the files are read
//! here: `Include` followed (one level of `*` in the last component), the first value of a
//! keyword wins as in sshd, `Match` blocks ignored, sshd's defaults filled in. Flagged:
//! `PermitRootLogin yes` with password authentication, password authentication on an address
//! beyond loopback, and `PermitEmptyPasswords yes`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Level, PostureFinding};

/// Bounds on what is read.
const MAX_OUTPUT_BYTES: u64 = 1 << 20;
const MAX_FILES: usize = 64;
const SSHD_T_TIMEOUT: Duration = Duration::from_secs(10);

/// Keyword (lower case) → values, each keyword's first occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshdConfig {
    pub values: BTreeMap<String, Vec<String>>,
    /// `sshd -T` or `files`.
    pub source: &'static str,
}

impl SshdConfig {
    fn first(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Parse `sshd -T` output: `keyword value...` per line, keywords lower case; keywords that
    /// repeat (listenaddress) keep every value.
    pub fn from_sshd_t(text: &str) -> SshdConfig {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines().take(10_000) {
            let mut parts = line.trim().splitn(2, char::is_whitespace);
            let (Some(k), Some(v)) = (parts.next(), parts.next()) else {
                continue;
            };
            values
                .entry(k.to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_owned());
        }
        SshdConfig {
            values,
            source: "sshd -T",
        }
    }

    /// Read the configuration files, starting at `path`.
    pub fn from_files(path: &Path) -> Result<SshdConfig, String> {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut files = 0usize;
        read_file(path, &mut values, &mut files, 0)?;
        let mut cfg = SshdConfig {
            values,
            source: "files",
        };
        for (k, v) in [
            ("permitrootlogin", "prohibit-password"),
            ("passwordauthentication", "yes"),
            ("permitemptypasswords", "no"),
            ("port", "22"),
        ] {
            cfg.values.entry(k.into()).or_insert_with(|| vec![v.into()]);
        }
        if !cfg.values.contains_key("listenaddress") {
            let port = cfg.first("port").unwrap_or("22").to_owned();
            cfg.values.insert(
                "listenaddress".into(),
                vec![format!("0.0.0.0:{port}"), format!("[::]:{port}")],
            );
        }
        Ok(cfg)
    }

    /// The addresses sshd listens on, without the port.
    pub fn listen_hosts(&self) -> Vec<String> {
        self.values
            .get("listenaddress")
            .map(|v| {
                v.iter()
                    .map(|a| {
                        let a = a.split_whitespace().next().unwrap_or("");
                        if let Some(rest) = a.strip_prefix('[') {
                            rest.split(']').next().unwrap_or("").to_owned()
                        } else if a.matches(':').count() == 1 {
                            a.split(':').next().unwrap_or("").to_owned()
                        } else {
                            a.to_owned()
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn read_file(
    path: &Path,
    values: &mut BTreeMap<String, Vec<String>>,
    files: &mut usize,
    depth: usize,
) -> Result<(), String> {
    *files += 1;
    if *files > MAX_FILES || depth > 8 {
        return Err(format!(
            "{}: more than {MAX_FILES} files or 8 levels of Include",
            path.display()
        ));
    }
    let text = super::shadow::read_bounded(path)?;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(2, |c: char| c.is_whitespace() || c == '=');
        let key = parts.next().unwrap_or("").to_ascii_lowercase();
        let value = parts
            .next()
            .unwrap_or("")
            .trim_start_matches(|c: char| c.is_whitespace() || c == '=')
            .trim();
        if key == "match" {
            // Everything after is conditional; the global settings end here.
            break;
        }
        if key == "include" {
            for pattern in value.split_whitespace() {
                let pattern = if pattern.starts_with('/') {
                    PathBuf::from(pattern)
                } else {
                    Path::new("/etc/ssh").join(pattern)
                };
                for inc in expand_glob(&pattern) {
                    read_file(&inc, values, files, depth + 1)?;
                }
            }
            continue;
        }
        if key == "listenaddress" {
            values.entry(key).or_default().push(value.to_owned());
        } else {
            values
                .entry(key)
                .or_insert_with(|| vec![value.to_ascii_lowercase()]);
        }
    }
    Ok(())
}

/// `dir/prefix*suffix` → matching files, sorted; a pattern without `*` → itself if it exists.
fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return if pattern.exists() {
            vec![pattern.to_owned()]
        } else {
            Vec::new()
        };
    };
    let dir = pattern.parent().unwrap_or(Path::new("/"));
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy())
                        .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
                })
                .take(MAX_FILES)
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The sshd binary, when installed.
fn sshd_binary() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// `sshd -T -f config`: sshd's own reading. An error when sshd refuses (missing host keys,
/// privilege separation directory) or takes longer than 10 s.
pub fn sshd_t(sshd: &Path, config: &Path) -> Result<SshdConfig, String> {
    let mut child = Command::new(sshd)
        .arg("-T")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", sshd.display()))?;
    let mut out = String::new();
    let mut err = String::new();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut e = String::new();
        if let Some(s) = stderr {
            let _ = s.take(64 << 10).read_to_string(&mut e);
        }
        e
    });
    if let Some(s) = stdout {
        let _ = s.take(MAX_OUTPUT_BYTES).read_to_string(&mut out);
    }
    let deadline = Instant::now() + SSHD_T_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} -T took longer than 10 s", sshd.display()));
            }
        }
    };
    if let Ok(e) = reader.join() {
        err = e;
    }
    if !status.success() {
        return Err(format!(
            "{} -T -f {}: {status}: {}",
            sshd.display(),
            config.display(),
            err.trim()
        ));
    }
    Ok(SshdConfig::from_sshd_t(&out))
}

/// Whether `host` (an address as sshd prints it) is a loopback address.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What in `cfg` exposes the host.
pub fn findings(cfg: &SshdConfig) -> Vec<PostureFinding> {
    let mut out = Vec::new();
    let password = cfg.first("passwordauthentication") == Some("yes");
    let root = cfg.first("permitrootlogin");
    let details = |key: &str| {
        json!({
            "source": cfg.source,
            "setting": key,
            "value": cfg.first(key),
            "password_authentication": cfg.first("passwordauthentication"),
            "listen": cfg.values.get("listenaddress"),
        })
    };
    if root == Some("yes") && password {
        out.push(PostureFinding {
            rule_id: "ringfence-posture-ssh-root-password",
            title: "sshd lets root log in with a password",
            level: Level::High,
            subject: "sshd".into(),
            message: "sshd has PermitRootLogin yes with PasswordAuthentication yes: root can be \
                      guessed at over the network"
                .into(),
            details: details("permitrootlogin"),
        });
    }
    if cfg.first("permitemptypasswords") == Some("yes") {
        out.push(PostureFinding {
            rule_id: "ringfence-posture-ssh-empty-passwords",
            title: "sshd permits empty passwords",
            level: Level::Critical,
            subject: "sshd".into(),
            message: "sshd has PermitEmptyPasswords yes: an account without a password logs in \
                      with none"
                .into(),
            details: details("permitemptypasswords"),
        });
    }
    let exposed: Vec<String> = cfg
        .listen_hosts()
        .into_iter()
        .filter(|h| !is_loopback(h))
        .collect();
    if password && !exposed.is_empty() {
        out.push(PostureFinding {
            rule_id: "ringfence-posture-ssh-password-exposed",
            title: "sshd takes passwords beyond loopback",
            level: Level::Medium,
            subject: "sshd".into(),
            message: format!(
                "sshd accepts password authentication on {}: passwords can be guessed at from \
                 the network (keys only is safer)",
                exposed.join(", ")
            ),
            details: details("passwordauthentication"),
        });
    }
    out
}

/// The check: sshd's configuration at `config` (its own reading when it can), when sshd is
/// installed or the file exists; nothing to say otherwise.
pub fn check(config: &Path) -> Result<Vec<PostureFinding>, String> {
    let cfg = match sshd_binary() {
        Some(sshd) if config.exists() => match sshd_t(&sshd, config) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "posture: sshd -T refused; reading the files instead");
                SshdConfig::from_files(config)?
            }
        },
        _ if config.exists() => SshdConfig::from_files(config)?,
        _ => return Ok(Vec::new()),
    };
    Ok(findings(&cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(f: &[PostureFinding]) -> Vec<&str> {
        f.iter().map(|f| f.rule_id).collect()
    }

    #[test]
    fn files_are_read_with_includes_first_value_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sshd_config.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("10-root.conf"), "PermitRootLogin yes\n").unwrap();
        std::fs::write(d.join("notme.txt"), "PermitRootLogin no\n").unwrap();
        let main = dir.path().join("sshd_config");
        std::fs::write(
            &main,
            format!(
                "Include {}/*.conf\nPermitRootLogin no\nPermitEmptyPasswords=yes\nMatch User bob\n  PasswordAuthentication no\n",
                d.display()
            ),
        )
        .unwrap();
        let cfg = SshdConfig::from_files(&main).unwrap();
        assert_eq!(cfg.first("permitrootlogin"), Some("yes"));
        assert_eq!(cfg.first("passwordauthentication"), Some("yes"));
        let f = findings(&cfg);
        assert_eq!(
            ids(&f),
            [
                "ringfence-posture-ssh-root-password",
                "ringfence-posture-ssh-empty-passwords",
                "ringfence-posture-ssh-password-exposed"
            ]
        );
    }

    #[test]
    fn a_loopback_only_sshd_with_keys_is_quiet() {
        let cfg = SshdConfig::from_sshd_t(
            "port 22\npermitrootlogin prohibit-password\npasswordauthentication yes\n\
             permitemptypasswords no\nlistenaddress 127.0.0.1:22\nlistenaddress [::1]:22\n",
        );
        assert_eq!(cfg.listen_hosts(), ["127.0.0.1", "::1"]);
        assert!(findings(&cfg).is_empty());
    }
}
