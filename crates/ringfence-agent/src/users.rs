//! User names for uids, from /etc/passwd, so rules can say `User: root` (`user.name`).
//!
//! The file is parsed once and re-read when its modification time changes (checked at most
//! every few seconds, so a busy pipeline does not stat it per event). A malformed line is
//! skipped; a missing file just means no names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// How often the file's modification time is checked.
const RECHECK: Duration = Duration::from_secs(5);

/// A uid → name table that follows /etc/passwd.
#[derive(Debug)]
pub struct UserNames {
    path: PathBuf,
    names: HashMap<u32, String>,
    loaded_mtime: Option<SystemTime>,
    checked_at: Option<Instant>,
}

impl UserNames {
    pub fn new(path: impl Into<PathBuf>) -> UserNames {
        UserNames {
            path: path.into(),
            names: HashMap::new(),
            loaded_mtime: None,
            checked_at: None,
        }
    }

    /// The name of `uid`, if the passwd file has one.
    pub fn name(&mut self, uid: u32) -> Option<&str> {
        self.refresh();
        self.names.get(&uid).map(String::as_str)
    }

    fn refresh(&mut self) {
        let now = Instant::now();
        if self
            .checked_at
            .is_some_and(|t| now.duration_since(t) < RECHECK)
        {
            return;
        }
        self.checked_at = Some(now);
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime.is_some() && mtime == self.loaded_mtime {
            return;
        }
        self.loaded_mtime = mtime;
        self.names = std::fs::read_to_string(&self.path)
            .map(|t| parse_passwd(&t))
            .unwrap_or_default();
    }
}

/// `name:x:uid:gid:...` lines to a uid → name map; the first name for a uid wins.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if let Ok(uid) = uid.parse() {
            names.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_skips_junk() {
        let names = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\ntoor:x:0:0::/:/bin/sh\nbad:x:notanumber:0::/:/bin/sh\n",
        );
        assert_eq!(names.get(&0).map(String::as_str), Some("root"));
        assert_eq!(names.get(&33).map(String::as_str), Some("www-data"));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn follows_the_file() {
        let path = std::env::temp_dir().join(format!("ringfence-passwd-{}", std::process::id()));
        assert!(std::fs::write(&path, "alice:x:1000:1000::/home/alice:/bin/sh\n").is_ok());
        let mut users = UserNames::new(&path);
        assert_eq!(users.name(1000), Some("alice"));
        assert_eq!(users.name(1001), None);
        let _ = std::fs::remove_file(&path);
        assert_eq!(UserNames::new("/nonexistent/passwd").name(0), None);
    }
}
