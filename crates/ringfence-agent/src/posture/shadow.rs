//! Local accounts: a bounded parser of /etc/shadow and /etc/passwd, and the weak-password check.
//!
//! Each account with a yescrypt (`$y$`), sha512crypt (`$6$`), sha256crypt (`$5$`) or md5crypt
//! (`$1$`) hash is tried against the user name and the `common_passwords` most common entries
//! of a shipped list ([`COMMON_PASSWORDS`], John the Ripper's password.lst, public domain). An
//! empty password field is a finding of its own, and so is a second account with UID 0.
//! Hashes whose cost is beyond [`MAX_SHA_ROUNDS`] or [`MAX_YESCRYPT_BYTES`] are not tried (and
//! counted), so a crafted line cannot hold the check. Every verification is charged to the
//! [`CpuBudget`]: accounts left when it runs out are counted as unchecked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::json;
use sha_crypt::{PasswordVerifier, ShaCrypt};
use yescrypt::Yescrypt;

use super::{CpuBudget, Level, PostureFinding};

/// The shipped list (comments start with `#`), most common first.
pub const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");
/// Entries in [`COMMON_PASSWORDS`].
pub const COMMON_PASSWORDS_MAX: usize = 500;

/// Bounds on what is read.
pub const MAX_FILE_BYTES: u64 = 8 << 20;
pub const MAX_LINE_BYTES: usize = 4096;
pub const MAX_ENTRIES: usize = 100_000;
/// sha-crypt `rounds=` beyond this are not tried (the default is 5,000).
pub const MAX_SHA_ROUNDS: u32 = 1_000_000;
/// yescrypt hashes needing more memory than this are not tried (Debian's default is 16 MiB).
pub const MAX_YESCRYPT_BYTES: u64 = 256 << 20;

/// The hash scheme of a shadow password field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HashKind {
    /// Empty field: no password at all.
    Empty,
    /// `!` or `*` first: password login refused.
    Locked,
    Yescrypt,
    Sha512crypt,
    Sha256crypt,
    Md5crypt,
    /// Any other scheme (bcrypt, DES, ...): not checked.
    Other,
}

impl HashKind {
    pub fn of(field: &str) -> HashKind {
        if field.is_empty() {
            HashKind::Empty
        } else if field.starts_with('!') || field.starts_with('*') {
            HashKind::Locked
        } else if field.starts_with("$y$") {
            HashKind::Yescrypt
        } else if field.starts_with("$6$") {
            HashKind::Sha512crypt
        } else if field.starts_with("$5$") {
            HashKind::Sha256crypt
        } else if field.starts_with("$1$") {
            HashKind::Md5crypt
        } else {
            HashKind::Other
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            HashKind::Empty => "empty",
            HashKind::Locked => "locked",
            HashKind::Yescrypt => "yescrypt",
            HashKind::Sha512crypt => "sha512crypt",
            HashKind::Sha256crypt => "sha256crypt",
            HashKind::Md5crypt => "md5crypt",
            HashKind::Other => "other",
        }
    }
}

/// One line of /etc/shadow (the fields the check needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowEntry {
    pub line: usize,
    pub user: String,
    pub hash: String,
}

/// One line of /etc/passwd (the fields the checks need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub line: usize,
    pub user: String,
    /// The password field: `x` when the hash is in shadow.
    pub password: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// What parsing found, with the lines it refused (`line N: why`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub entries: Vec<T>,
    pub problems: Vec<String>,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            entries: Vec::new(),
            problems: Vec::new(),
        }
    }
}

fn lines_bounded(text: &str) -> impl Iterator<Item = (usize, Result<&str, String>)> {
    text.lines().take(MAX_ENTRIES).enumerate().map(|(i, l)| {
        let n = i + 1;
        if l.len() > MAX_LINE_BYTES {
            (
                n,
                Err(format!(
                    "line {n}: {} bytes, longer than {MAX_LINE_BYTES}",
                    l.len()
                )),
            )
        } else {
            (n, Ok(l))
        }
    })
}

/// Parse /etc/shadow text: `user:hash:...` (nine fields; only the first two are read).
pub fn parse_shadow(text: &str) -> Parsed<ShadowEntry> {
    let mut out = Parsed::default();
    for (n, line) in lines_bounded(text) {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                out.problems.push(e);
                continue;
            }
        };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(user), Some(hash)) = (fields.next(), fields.next()) else {
            out.problems.push(format!(
                "line {n}: no password field (expected user:hash:...)"
            ));
            continue;
        };
        if user.is_empty() {
            out.problems.push(format!("line {n}: empty user name"));
            continue;
        }
        out.entries.push(ShadowEntry {
            line: n,
            user: user.to_owned(),
            hash: hash.to_owned(),
        });
    }
    out
}

/// Parse /etc/passwd text: `user:password:uid:gid:gecos:home:shell`.
pub fn parse_passwd(text: &str) -> Parsed<PasswdEntry> {
    let mut out = Parsed::default();
    for (n, line) in lines_bounded(text) {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                out.problems.push(e);
                continue;
            }
        };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.splitn(8, ':').collect();
        if f.len() != 7 {
            out.problems.push(format!(
                "line {n}: {} fields, expected 7 (user:password:uid:gid:gecos:home:shell)",
                f.len()
            ));
            continue;
        }
        let (Ok(uid), Ok(gid)) = (f[2].parse::<u32>(), f[3].parse::<u32>()) else {
            out.problems.push(format!(
                "line {n}: uid `{}` or gid `{}` is not a number",
                f[2], f[3]
            ));
            continue;
        };
        out.entries.push(PasswdEntry {
            line: n,
            user: f[0].to_owned(),
            password: f[1].to_owned(),
            uid,
            gid,
            home: f[5].to_owned(),
            shell: f[6].to_owned(),
        });
    }
    out
}

/// Read a file of at most [`MAX_FILE_BYTES`], naming it in the error.
pub fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(text)
}

/// Home directories of the accounts in `passwd` (for `~` in watched paths).
pub fn home_dirs(passwd: &Path) -> Vec<PathBuf> {
    let Ok(text) = read_bounded(passwd) else {
        return Vec::new();
    };
    let mut homes: Vec<PathBuf> = parse_passwd(&text)
        .entries
        .into_iter()
        .filter(|e| e.home.starts_with('/') && e.home != "/" && e.home != "/nonexistent")
        .map(|e| PathBuf::from(e.home))
        .collect();
    homes.sort();
    homes.dedup();
    homes
}

/// The first `n` entries of the shipped list.
pub fn common_passwords(n: usize) -> Vec<&'static str> {
    COMMON_PASSWORDS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .take(n)
        .collect()
}

/// Whether the cost parameters of `hash` are within bounds (see the module doc).
fn affordable(kind: HashKind, hash: &str) -> bool {
    match kind {
        HashKind::Sha512crypt | HashKind::Sha256crypt => {
            let rounds = hash
                .get(3..)
                .and_then(|rest| rest.strip_prefix("rounds="))
                .and_then(|r| r.split('$').next())
                .map(str::parse::<u32>);
            match rounds {
                None => true,
                Some(Ok(r)) => r <= MAX_SHA_ROUNDS,
                Some(Err(_)) => false,
            }
        }
        HashKind::Yescrypt => {
            let Some(params) = hash.get(3..).and_then(|rest| rest.split('$').next()) else {
                return false;
            };
            match params.parse::<yescrypt::Params>() {
                Ok(p) => {
                    let bytes = 128u64
                        .saturating_mul(p.n())
                        .saturating_mul(u64::from(p.r()))
                        .saturating_mul(u64::from(p.p().max(1)));
                    bytes <= MAX_YESCRYPT_BYTES
                }
                Err(_) => false,
            }
        }
        HashKind::Md5crypt => true,
        _ => false,
    }
}

/// Whether `password` hashes to `hash` (false for schemes not checked and malformed hashes).
pub fn verify(kind: HashKind, password: &[u8], hash: &str) -> bool {
    match kind {
        HashKind::Yescrypt => Yescrypt::default().verify_password(password, hash).is_ok(),
        HashKind::Sha512crypt | HashKind::Sha256crypt => {
            ShaCrypt::default().verify_password(password, hash).is_ok()
        }
        HashKind::Md5crypt => md5_crypt_verify(password, hash),
        _ => false,
    }
}

const CRYPT_B64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// md5crypt (`$1$salt$hash`), as glibc's crypt(3) computes it.
pub fn md5_crypt(password: &[u8], salt: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(b"$1$");
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update([password.first().copied().unwrap_or(0)]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    let mut out = String::with_capacity(22);
    let mut put = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(char::from(CRYPT_B64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(
            (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]),
            4,
        );
    }
    put(u32::from(fin[11]), 2);
    format!("$1${}${out}", String::from_utf8_lossy(salt))
}

fn md5_crypt_verify(password: &[u8], hash: &str) -> bool {
    let Some(rest) = hash.strip_prefix("$1$") else {
        return false;
    };
    let Some((salt, _)) = rest.split_once('$') else {
        return false;
    };
    md5_crypt(password, salt.as_bytes()) == hash
}

/// What the check reads.
#[derive(Debug, Clone)]
pub struct Options {
    pub shadow: PathBuf,
    pub passwd: PathBuf,
    pub common_passwords: usize,
}

/// Time spent per hash scheme.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindStats {
    pub accounts: u64,
    pub candidates_tried: u64,
    /// Wall time of all its verifications.
    pub millis: u64,
}

impl KindStats {
    /// Average time for one account tried against every candidate.
    pub fn millis_per_account(&self) -> u64 {
        self.millis.checked_div(self.accounts).unwrap_or(0)
    }
}

/// What the check did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub accounts: u64,
    pub checked: u64,
    /// Accounts left when the budget ran out.
    pub unchecked: u64,
    /// Hashes whose cost parameters were beyond the bounds.
    pub too_costly: u64,
    pub per_kind: BTreeMap<&'static str, KindStats>,
    pub problems: Vec<String>,
}

/// Findings and figures of one check.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<PostureFinding>,
    pub stats: Stats,
}

/// Run the weak-password, empty-password and UID 0 checks.
pub fn check(opts: &Options, budget: &CpuBudget) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    let passwd_text = read_bounded(&opts.passwd)?;
    let passwd = parse_passwd(&passwd_text);
    out.stats.problems.extend(
        passwd
            .problems
            .iter()
            .map(|p| format!("{}: {p}", opts.passwd.display())),
    );
    for e in passwd
        .entries
        .iter()
        .filter(|e| e.uid == 0 && e.user != "root")
    {
        out.findings.push(PostureFinding {
            rule_id: "ringfence-posture-uid0-duplicate",
            title: "Second account with UID 0",
            level: Level::Critical,
            subject: format!("user {}", e.user),
            message: format!(
                "account {} has UID 0: it is root under another name ({}:{})",
                e.user,
                opts.passwd.display(),
                e.line
            ),
            details: json!({"user": e.user, "uid": 0, "file": opts.passwd.display().to_string(), "line": e.line}),
        });
    }
    for e in passwd.entries.iter().filter(|e| e.password.is_empty()) {
        out.findings
            .push(empty_password(&e.user, &opts.passwd, e.line));
    }
    let shadow_text = read_bounded(&opts.shadow)?;
    let shadow = parse_shadow(&shadow_text);
    out.stats.problems.extend(
        shadow
            .problems
            .iter()
            .map(|p| format!("{}: {p}", opts.shadow.display())),
    );
    let candidates = common_passwords(opts.common_passwords);
    let mut accounts: Vec<(&ShadowEntry, HashKind)> = Vec::new();
    for e in &shadow.entries {
        out.stats.accounts += 1;
        match HashKind::of(&e.hash) {
            HashKind::Empty => out
                .findings
                .push(empty_password(&e.user, &opts.shadow, e.line)),
            kind @ (HashKind::Yescrypt
            | HashKind::Sha512crypt
            | HashKind::Sha256crypt
            | HashKind::Md5crypt) => {
                if affordable(kind, &e.hash) {
                    accounts.push((e, kind));
                } else {
                    out.stats.too_costly += 1;
                }
            }
            HashKind::Locked | HashKind::Other => {}
        }
    }
    let total = accounts.len() as u64;
    'accounts: for (e, kind) in accounts {
        let started = Instant::now();
        let mut tried = 0u64;
        let mut found: Option<(&str, usize)> = None;
        let user_first = std::iter::once((e.user.as_str(), 0usize))
            .chain(candidates.iter().enumerate().map(|(i, c)| (*c, i + 1)));
        for (candidate, rank) in user_first {
            if !budget.charge() {
                out.stats.unchecked = total - out.stats.checked;
                record(&mut out.stats, kind, 0, tried, started.elapsed());
                break 'accounts;
            }
            tried += 1;
            if verify(kind, candidate.as_bytes(), &e.hash) {
                found = Some((candidate, rank));
                break;
            }
        }
        out.stats.checked += 1;
        record(&mut out.stats, kind, 1, tried, started.elapsed());
        if let Some((_, rank)) = found {
            let which = if rank == 0 {
                "is the user name".to_owned()
            } else {
                format!("is number {rank} on the common-password list")
            };
            out.findings.push(PostureFinding {
                rule_id: "ringfence-posture-weak-password",
                title: "Account with a weak password",
                level: if e.user == "root" {
                    Level::Critical
                } else {
                    Level::High
                },
                subject: format!("user {}", e.user),
                message: format!("the password of {} ({}) {which}", e.user, kind.as_str()),
                // The password itself is not written anywhere.
                details: json!({
                    "user": e.user,
                    "hash_type": kind.as_str(),
                    "list_rank": rank,
                    "file": opts.shadow.display().to_string(),
                    "line": e.line,
                }),
            });
        }
    }
    Ok(out)
}

fn record(stats: &mut Stats, kind: HashKind, accounts: u64, tried: u64, took: Duration) {
    let k = stats.per_kind.entry(kind.as_str()).or_default();
    k.accounts += accounts;
    k.candidates_tried = k.candidates_tried.saturating_add(tried);
    k.millis = k
        .millis
        .saturating_add(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
}

fn empty_password(user: &str, file: &Path, line: usize) -> PostureFinding {
    PostureFinding {
        rule_id: "ringfence-posture-empty-password",
        title: "Account with an empty password",
        level: Level::Critical,
        subject: format!("user {user}"),
        message: format!(
            "account {user} has an empty password field ({}:{line}): it may log in with no \
             password",
            file.display()
        ),
        details: json!({"user": user, "file": file.display().to_string(), "line": line}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_list_has_the_entries_it_claims() {
        let all = common_passwords(usize::MAX);
        assert_eq!(all.len(), COMMON_PASSWORDS_MAX);
        assert_eq!(all[0], "123456");
        assert!(all.contains(&"password"));
    }

    #[test]
    fn shadow_lines_are_parsed_and_bad_ones_named() {
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        let text = format!("root:$6$abc$def:19000:0:99999:7:::\n\nbroken\n:nohash\n{long}\n");
        let p = parse_shadow(&text);
        assert_eq!(p.entries.len(), 1);
        assert_eq!(p.entries[0].user, "root");
        assert_eq!(HashKind::of(&p.entries[0].hash), HashKind::Sha512crypt);
        assert_eq!(p.problems.len(), 3, "{:?}", p.problems);
        assert!(p.problems[0].starts_with("line 3:"), "{:?}", p.problems);
    }

    #[test]
    fn md5crypt_matches_glibc() {
        // `openssl passwd -1 -salt saltsalt password`
        assert_eq!(
            md5_crypt(b"password", b"saltsalt"),
            "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"
        );
    }

    #[test]
    fn hash_kinds_are_told_apart() {
        assert_eq!(HashKind::of(""), HashKind::Empty);
        assert_eq!(HashKind::of("!$6$x$y"), HashKind::Locked);
        assert_eq!(HashKind::of("*"), HashKind::Locked);
        assert_eq!(HashKind::of("$y$j9T$a$b"), HashKind::Yescrypt);
        assert_eq!(HashKind::of("$2b$10$abc"), HashKind::Other);
    }

    #[test]
    fn costly_hashes_are_not_tried() {
        assert!(!affordable(
            HashKind::Sha512crypt,
            "$6$rounds=999999999$salt$hash"
        ));
        assert!(affordable(
            HashKind::Sha512crypt,
            "$6$rounds=5000$salt$hash"
        ));
        assert!(affordable(HashKind::Sha512crypt, "$6$salt$hash"));
        assert!(!affordable(HashKind::Yescrypt, "$y$$salt$hash"));
    }
}
