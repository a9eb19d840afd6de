//! The content bundle: one deterministic file holding a content version, the field-schema
//! version it was validated against, the rule files, IOC sets, metadata and content tests.
//!
//! The encoding is canonical: entries are sorted by (kind, path) and the reader refuses
//! anything else, so one [`Bundle`] has exactly one byte form and `decode(encode(b)) == b`
//! and `encode(decode(x)) == x`. No clock is read; any timestamp is metadata the caller
//! passes in. Every size is limited ([`Limits`]) and checked on the declared length, before
//! any allocation, both when building from a directory and when reading bytes.
//!
//! ```text
//! magic "RFBUNDLE" | format u16 = 1 | content_version u64 | schema_version u32
//! | schema_fingerprint (u16 len + utf-8) | entry_count u32
//! | entry_count × ( kind u8 | path (u16 len + utf-8) | data (u32 len + bytes) )
//!   kind: 1 metadata, 2 rule, 3 IOC set, 4 content test, 5 exceptions overlay
//! | sha256 of all preceding bytes (32)
//! ```
//! All integers are big-endian.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::reader::{ReadError, Reader};

/// Metadata key whose value (the reason) makes content with no rule and no IOC acceptable:
/// without it such a bundle is refused at build and at load, since it would detect nothing.
pub const ALLOW_EMPTY: &str = "allow-empty";
/// Metadata key whose value (the reason) lets the bundle replace content with more than
/// twice its rules; without it the agent's probation refuses such a drop.
pub const ALLOW_RULE_DROP: &str = "allow-rule-drop";

const MAGIC: &[u8; 8] = b"RFBUNDLE";
const FORMAT_VERSION: u16 = 1;
const MAX_FINGERPRINT_BYTES: u64 = 256;
const MAX_DIR_DEPTH: usize = 16;

/// Hard size limits, enforced while building and while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single entry (rule file, IOC set, test file, metadata value).
    pub max_file_bytes: u64,
    /// Largest whole bundle file.
    pub max_total_bytes: u64,
    /// Most entries of all kinds together.
    pub max_entries: u32,
    /// Longest entry path, in bytes.
    pub max_path_bytes: u16,
}

impl Default for Limits {
    /// 4 MiB per file, 64 MiB per bundle, 50 000 entries, 512-byte paths: room for the whole
    /// SigmaHQ corpus with tests several times over, far below what could hurt an agent.
    fn default() -> Self {
        Limits {
            max_file_bytes: 4 * 1024 * 1024,
            max_total_bytes: 64 * 1024 * 1024,
            max_entries: 50_000,
            max_path_bytes: 512,
        }
    }
}

/// The field schema a bundle was validated against, as given by the caller
/// (`ringfence-event` owns the schema; this crate only records and compares it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaId {
    pub version: u32,
    pub fingerprint: String,
}

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// `key → value` metadata; the value is UTF-8.
    Metadata,
    /// A Sigma rule file (YAML).
    Rule,
    /// An IOC set.
    Ioc,
    /// A content test file.
    Test,
    /// An exceptions overlay (`exceptions/*.toml`, Falco-style `[[exceptions]]` tables): matches
    /// of a rule on some hosts, where listed fields match, are silenced. The validator checks
    /// each names a rule of the same bundle and fields of the sensor field schema.
    Exceptions,
    /// A YARA rule file (`yara/*.yar`) or its samples (`yara/*.tests`), see [`crate::yara`].
    /// Declaration order is the encoding order: keep it the code order (5 is taken).
    Yara,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::Metadata => 1,
            EntryKind::Rule => 2,
            EntryKind::Ioc => 3,
            EntryKind::Test => 4,
            EntryKind::Exceptions => 5,
            EntryKind::Yara => 6,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => EntryKind::Metadata,
            2 => EntryKind::Rule,
            3 => EntryKind::Ioc,
            4 => EntryKind::Test,
            5 => EntryKind::Exceptions,
            6 => EntryKind::Yara,
            _ => return None,
        })
    }

    /// The lower-case name used in messages and directory layouts.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Metadata => "metadata",
            EntryKind::Rule => "rule",
            EntryKind::Ioc => "ioc",
            EntryKind::Test => "test",
            EntryKind::Exceptions => "exceptions",
            EntryKind::Yara => "yara",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a bundle was refused, naming the entry, path or offset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("{context}: {source}")]
    Read {
        context: String,
        #[source]
        source: ReadError,
    },
    #[error("not a ringfence bundle: magic is {found:02x?}, expected \"RFBUNDLE\"")]
    BadMagic { found: Vec<u8> },
    #[error("bundle format {found} is not supported (this agent reads format {FORMAT_VERSION})")]
    UnsupportedFormat { found: u16 },
    #[error("bundle declares {count} entries, limit is {limit}")]
    TooManyEntries { count: u64, limit: u32 },
    #[error("{what} is {size} bytes, limit is {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("entry {index} at offset {offset}: unknown entry kind {code}")]
    UnknownKind { index: u32, offset: usize, code: u8 },
    #[error("{what}: invalid path {path:?}: {reason}")]
    InvalidPath {
        what: String,
        path: String,
        reason: &'static str,
    },
    #[error("duplicate {kind} entry {path:?}")]
    Duplicate { kind: EntryKind, path: String },
    #[error("entry {index} ({kind} {path:?}) is out of order: it sorts before {previous:?}")]
    OutOfOrder {
        index: u32,
        kind: EntryKind,
        path: String,
        previous: String,
    },
    #[error("{what} is not valid UTF-8")]
    NotUtf8 { what: String },
    #[error("bundle checksum mismatch: stored {stored}, computed {computed}")]
    Checksum { stored: String, computed: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: symbolic links are not followed in content directories")]
    Symlink { path: PathBuf },
    #[error("{path}: directory nesting deeper than {MAX_DIR_DEPTH}")]
    TooDeep { path: PathBuf },
}

fn read_err(context: impl Into<String>) -> impl FnOnce(ReadError) -> BundleError {
    let context = context.into();
    move |source| BundleError::Read { context, source }
}

/// A bundle whose limits, paths and ordering have been checked: build one with
/// [`BundleBuilder`] or [`Bundle::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    content_version: u64,
    schema: SchemaId,
    entries: BTreeMap<(EntryKind, String), Vec<u8>>,
}

impl Bundle {
    /// The monotonically increasing content version.
    pub fn content_version(&self) -> u64 {
        self.content_version
    }

    /// The field schema the bundle was validated against at build time.
    pub fn schema(&self) -> &SchemaId {
        &self.schema
    }

    /// Entries of one kind, sorted by path.
    pub fn entries(&self, kind: EntryKind) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries
            .range((kind, String::new())..)
            .take_while(move |((k, _), _)| *k == kind)
            .map(|((_, path), data)| (path.as_str(), data.as_slice()))
    }

    /// Every entry, of every kind, in encoding order: what a copy of the bundle carries over
    /// (a rollback or an overlay rebuilt from it), so a kind added later is never dropped.
    pub fn all_entries(&self) -> impl Iterator<Item = (EntryKind, &str, &[u8])> {
        self.entries
            .iter()
            .map(|((kind, path), data)| (*kind, path.as_str(), data.as_slice()))
    }

    /// Sigma rule files, `path → bytes`, sorted.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries(EntryKind::Rule)
    }

    /// IOC sets, `path → bytes`, sorted.
    pub fn iocs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries(EntryKind::Ioc)
    }

    /// Content test files, `path → bytes`, sorted.
    pub fn tests(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries(EntryKind::Test)
    }

    /// Exceptions overlays, `path → bytes`, sorted.
    pub fn exceptions(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries(EntryKind::Exceptions)
    }

    /// YARA rule files and their sample files, `path → bytes`, sorted.
    pub fn yara(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries(EntryKind::Yara)
    }

    /// Metadata, `key → value`, sorted. Values were checked to be UTF-8.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries(EntryKind::Metadata)
            .map(|(k, v)| (k, std::str::from_utf8(v).unwrap_or_default()))
    }

    /// The signed reason this bundle may hold no rule and no IOC ([`ALLOW_EMPTY`]), if any.
    pub fn allowed_empty(&self) -> Option<&str> {
        self.metadata_value(ALLOW_EMPTY)
    }

    /// The signed reason this bundle may drop most of the active rules ([`ALLOW_RULE_DROP`]).
    pub fn allowed_rule_drop(&self) -> Option<&str> {
        self.metadata_value(ALLOW_RULE_DROP)
    }

    /// A metadata value; an empty value counts as absent.
    fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .filter(|v| !v.trim().is_empty())
    }

    /// One entry, if present.
    pub fn get(&self, kind: EntryKind, path: &str) -> Option<&[u8]> {
        self.entries
            .get(&(kind, path.to_owned()))
            .map(Vec::as_slice)
    }

    /// Number of entries of all kinds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the bundle has no entries at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The canonical encoding: the same bundle always gives the same bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.content_version.to_be_bytes());
        out.extend_from_slice(&self.schema.version.to_be_bytes());
        put_u16_bytes(&mut out, self.schema.fingerprint.as_bytes());
        // Lengths fit: the builder and the decoder refuse counts and sizes above the limits,
        // which are themselves below the prefix widths (checked in `Limits` use below).
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for ((kind, path), data) in &self.entries {
            out.push(kind.code());
            put_u16_bytes(&mut out, path.as_bytes());
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Reads a bundle from untrusted bytes, refusing anything over `limits`, out of order,
    /// duplicated, truncated, followed by trailing data or with a wrong checksum.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Bundle, BundleError> {
        let limits = limits.clamped();
        if bytes.len() as u64 > limits.max_total_bytes {
            return Err(BundleError::TooLarge {
                what: "bundle".into(),
                size: bytes.len() as u64,
                limit: limits.max_total_bytes,
            });
        }
        let mut r = Reader::new(bytes);
        let magic = r.take(8, "magic").map_err(read_err("bundle header"))?;
        if magic != MAGIC {
            return Err(BundleError::BadMagic {
                found: magic.to_vec(),
            });
        }
        let format = r.u16("format version").map_err(read_err("bundle header"))?;
        if format != FORMAT_VERSION {
            return Err(BundleError::UnsupportedFormat { found: format });
        }
        let content_version = r
            .u64("content version")
            .map_err(read_err("bundle header"))?;
        let schema_version = r.u32("schema version").map_err(read_err("bundle header"))?;
        let fingerprint = r
            .bytes_u16(MAX_FINGERPRINT_BYTES, "schema fingerprint")
            .map_err(read_err("bundle header"))?;
        let fingerprint = utf8(fingerprint, "schema fingerprint")?;
        let count = r.u32("entry count").map_err(read_err("bundle header"))?;
        if count > limits.max_entries {
            return Err(BundleError::TooManyEntries {
                count: count.into(),
                limit: limits.max_entries,
            });
        }
        let mut entries = BTreeMap::new();
        let mut previous: Option<(EntryKind, String)> = None;
        for index in 0..count {
            let offset = r.offset();
            let ctx = format!("entry {index}");
            let code = r.u8("entry kind").map_err(read_err(ctx.clone()))?;
            let kind = EntryKind::from_code(code).ok_or(BundleError::UnknownKind {
                index,
                offset,
                code,
            })?;
            let path = r
                .bytes_u16(limits.max_path_bytes.into(), "entry path")
                .map_err(read_err(ctx.clone()))?;
            let path = utf8(path, &format!("{ctx} path"))?;
            let ctx = format!("entry {index} ({kind} {path:?})");
            check_path(kind, &path).map_err(|reason| BundleError::InvalidPath {
                what: ctx.clone(),
                path: path.clone(),
                reason,
            })?;
            let data = r
                .bytes_u32(limits.max_file_bytes, "entry data")
                .map_err(read_err(ctx.clone()))?;
            if kind == EntryKind::Metadata {
                utf8(data, &format!("{ctx} value"))?;
            }
            let key = (kind, path);
            if let Some(prev) = &previous {
                if *prev == key {
                    return Err(BundleError::Duplicate { kind, path: key.1 });
                }
                if *prev > key {
                    return Err(BundleError::OutOfOrder {
                        index,
                        kind,
                        path: key.1,
                        previous: prev.1.clone(),
                    });
                }
            }
            previous = Some(key.clone());
            entries.insert(key, data.to_vec());
        }
        let body_len = r.offset();
        let stored = r.take(32, "checksum").map_err(read_err("bundle trailer"))?;
        r.finish("bundle checksum")
            .map_err(read_err("bundle trailer"))?;
        let computed = Sha256::digest(bytes.get(..body_len).unwrap_or_default());
        if stored != computed.as_slice() {
            return Err(BundleError::Checksum {
                stored: hex::encode(stored),
                computed: hex::encode(computed),
            });
        }
        Ok(Bundle {
            content_version,
            schema: SchemaId {
                version: schema_version,
                fingerprint,
            },
            entries,
        })
    }

    /// Reads a bundle file, refusing it on its size before reading it.
    pub fn read_file(path: &Path, limits: &Limits) -> Result<Bundle, BundleError> {
        let bytes = read_limited(path, limits.max_total_bytes, "bundle file")?;
        Bundle::decode(&bytes, limits)
    }
}

impl Limits {
    /// The limits actually applied: never above what the length prefixes can carry.
    fn clamped(&self) -> Limits {
        Limits {
            max_file_bytes: self.max_file_bytes.min(u32::MAX.into()),
            ..*self
        }
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, BundleError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| BundleError::NotUtf8 {
        what: what.to_owned(),
    })
}

fn put_u16_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Checks a relative `/`-separated path: no empty, `.` or `..` component, no leading `/`,
/// no backslash or control character. Metadata keys are one component.
fn check_path(kind: EntryKind, path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err("contains a control character or backslash");
    }
    if kind == EntryKind::Metadata && path.contains('/') {
        return Err("metadata keys cannot contain '/'");
    }
    for part in path.split('/') {
        match part {
            "" => return Err("empty component (leading, trailing or double '/')"),
            "." | ".." => return Err("'.' and '..' components are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

/// Reads at most `limit` bytes of a file, refusing it from its metadata first and again if it
/// grew while being read. Never allocates more than `limit + 1` bytes.
pub(crate) fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let too_large = |size| BundleError::TooLarge {
        what: format!("{what} {}", path.display()),
        size,
        limit,
    };
    if size > limit {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Builds a [`Bundle`], enforcing the same limits as the reader as each entry is added.
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    limits: Limits,
    bundle: Bundle,
    /// Running encoded size, to refuse a bundle over `max_total_bytes` before encoding it.
    size: u64,
}

/// Files a directory walk did not put in the bundle, so the caller can report them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirReport {
    pub skipped: Vec<PathBuf>,
}

impl BundleBuilder {
    /// An empty bundle for `content_version`, validated against `schema`.
    pub fn new(content_version: u64, schema: SchemaId, limits: Limits) -> Self {
        let size = 8 + 2 + 8 + 4 + 2 + schema.fingerprint.len() as u64 + 4 + 32;
        BundleBuilder {
            limits: limits.clamped(),
            bundle: Bundle {
                content_version,
                schema,
                entries: BTreeMap::new(),
            },
            size,
        }
    }

    /// Adds one entry; refuses a duplicate, an invalid path or anything over the limits.
    pub fn add(
        &mut self,
        kind: EntryKind,
        path: &str,
        data: Vec<u8>,
    ) -> Result<&mut Self, BundleError> {
        let limits = self.limits;
        let what = format!("{kind} {path:?}");
        self.check_fingerprint()?;
        check_path(kind, path).map_err(|reason| BundleError::InvalidPath {
            what: what.clone(),
            path: path.to_owned(),
            reason,
        })?;
        if path.len() > usize::from(limits.max_path_bytes) {
            return Err(BundleError::TooLarge {
                what: format!("path of {what}"),
                size: path.len() as u64,
                limit: limits.max_path_bytes.into(),
            });
        }
        if data.len() as u64 > limits.max_file_bytes {
            return Err(BundleError::TooLarge {
                what,
                size: data.len() as u64,
                limit: limits.max_file_bytes,
            });
        }
        if kind == EntryKind::Metadata {
            std::str::from_utf8(&data).map_err(|_| BundleError::NotUtf8 { what: what.clone() })?;
        }
        if self.bundle.entries.len() as u64 >= u64::from(limits.max_entries) {
            return Err(BundleError::TooManyEntries {
                count: self.bundle.entries.len() as u64 + 1,
                limit: limits.max_entries,
            });
        }
        let size = self.size + 1 + 2 + path.len() as u64 + 4 + data.len() as u64;
        if size > limits.max_total_bytes {
            return Err(BundleError::TooLarge {
                what: format!("bundle (at {what})"),
                size,
                limit: limits.max_total_bytes,
            });
        }
        let key = (kind, path.to_owned());
        if self.bundle.entries.contains_key(&key) {
            return Err(BundleError::Duplicate { kind, path: key.1 });
        }
        self.bundle.entries.insert(key, data);
        self.size = size;
        Ok(self)
    }

    /// Adds a metadata `key = value` (for example a build label or an explicit timestamp).
    pub fn metadata(&mut self, key: &str, value: &str) -> Result<&mut Self, BundleError> {
        self.add(EntryKind::Metadata, key, value.as_bytes().to_vec())
    }

    /// Adds a content directory: `rules/**/*.{yml,yaml}` as rules, `iocs/**` as IOC sets,
    /// `tests/**` as content tests, `yara/**/*.{yar,tests}` as YARA rules and samples, each keyed by its path relative to `dir`
    /// (`rules/process_creation/x.yml`). Dotfiles, other top-level files and non-YAML files
    /// under `rules/` are skipped and listed in the report; symbolic links are refused. Each
    /// file is refused on its size before it is read.
    pub fn add_dir(&mut self, dir: &Path) -> Result<DirReport, BundleError> {
        let mut report = DirReport::default();
        let mut top = list_dir(dir)?;
        top.sort();
        for (name, path) in top {
            let kind = match name.as_str() {
                "rules" => EntryKind::Rule,
                "iocs" => EntryKind::Ioc,
                "tests" => EntryKind::Test,
                "exceptions" => EntryKind::Exceptions,
                "yara" => EntryKind::Yara,
                _ => {
                    report.skipped.push(path);
                    continue;
                }
            };
            let meta = fs::symlink_metadata(&path).map_err(|source| BundleError::Io {
                path: path.clone(),
                source,
            })?;
            if !meta.is_dir() {
                report.skipped.push(path);
                continue;
            }
            self.add_tree(kind, &path, &name, 1, &mut report)?;
        }
        Ok(report)
    }

    fn add_tree(
        &mut self,
        kind: EntryKind,
        dir: &Path,
        rel: &str,
        depth: usize,
        report: &mut DirReport,
    ) -> Result<(), BundleError> {
        if depth > MAX_DIR_DEPTH {
            return Err(BundleError::TooDeep {
                path: dir.to_owned(),
            });
        }
        let mut children = list_dir(dir)?;
        children.sort();
        for (name, path) in children {
            if name.starts_with('.') {
                report.skipped.push(path);
                continue;
            }
            let meta = fs::symlink_metadata(&path).map_err(|source| BundleError::Io {
                path: path.clone(),
                source,
            })?;
            let child_rel = format!("{rel}/{name}");
            if meta.file_type().is_symlink() {
                return Err(BundleError::Symlink { path });
            } else if meta.is_dir() {
                self.add_tree(kind, &path, &child_rel, depth + 1, report)?;
            } else if meta.is_file() {
                let yaml = name.ends_with(".yml") || name.ends_with(".yaml");
                let yara = name.ends_with(".yar") || name.ends_with(".tests");
                if (kind == EntryKind::Rule && !yaml)
                    || (kind == EntryKind::Exceptions && !name.ends_with(".toml"))
                    || (kind == EntryKind::Yara && !yara)
                {
                    report.skipped.push(path);
                    continue;
                }
                if meta.len() > self.limits.max_file_bytes {
                    return Err(BundleError::TooLarge {
                        what: format!("{kind} file {}", path.display()),
                        size: meta.len(),
                        limit: self.limits.max_file_bytes,
                    });
                }
                let what = format!("{kind} file");
                let data = read_limited(&path, self.limits.max_file_bytes, &what)?;
                self.add(kind, &child_rel, data)?;
            } else {
                report.skipped.push(path);
            }
        }
        Ok(())
    }

    /// The finished bundle; refuses a schema fingerprint the format cannot carry.
    pub fn build(self) -> Result<Bundle, BundleError> {
        self.check_fingerprint()?;
        Ok(self.bundle)
    }

    fn check_fingerprint(&self) -> Result<(), BundleError> {
        let len = self.bundle.schema.fingerprint.len() as u64;
        if len > MAX_FINGERPRINT_BYTES {
            return Err(BundleError::TooLarge {
                what: "schema fingerprint".into(),
                size: len,
                limit: MAX_FINGERPRINT_BYTES,
            });
        }
        Ok(())
    }
}

/// `(file name, path)` of a directory's children; names must be UTF-8.
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, BundleError> {
    let io = |source| BundleError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| BundleError::NotUtf8 {
                what: format!("file name {}", path.display()),
            })?;
        out.push((name, path));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> SchemaId {
        SchemaId {
            version: 3,
            fingerprint: "sha256:abcd".into(),
        }
    }

    fn sample() -> Bundle {
        let mut b = BundleBuilder::new(7, schema(), Limits::default());
        b.add(EntryKind::Rule, "rules/b.yml", b"title: b\n".to_vec())
            .unwrap();
        b.add(EntryKind::Rule, "rules/a.yml", b"title: a\n".to_vec())
            .unwrap();
        b.add(EntryKind::Ioc, "iocs/ips.txt", b"203.0.113.7\n".to_vec())
            .unwrap();
        b.add(EntryKind::Test, "tests/a.yml", b"rule: a\n".to_vec())
            .unwrap();
        b.metadata("built_at", "2026-01-01T00:00:00Z").unwrap();
        b.build().unwrap()
    }

    #[test]
    fn round_trip_is_byte_identical_and_sorted() {
        let bundle = sample();
        let bytes = bundle.encode();
        let back = Bundle::decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(back, bundle);
        assert_eq!(back.encode(), bytes);
        let rules: Vec<_> = back.rules().map(|(p, _)| p).collect();
        assert_eq!(rules, ["rules/a.yml", "rules/b.yml"]);
        assert_eq!(back.iocs().count(), 1);
        assert_eq!(back.tests().count(), 1);
        assert_eq!(
            back.metadata().collect::<Vec<_>>(),
            [("built_at", "2026-01-01T00:00:00Z")]
        );
        assert_eq!(back.content_version(), 7);
        assert_eq!(back.schema(), &schema());
    }

    #[test]
    fn insertion_order_does_not_change_the_bytes() {
        let mut b = BundleBuilder::new(7, schema(), Limits::default());
        b.metadata("built_at", "2026-01-01T00:00:00Z").unwrap();
        b.add(EntryKind::Test, "tests/a.yml", b"rule: a\n".to_vec())
            .unwrap();
        b.add(EntryKind::Ioc, "iocs/ips.txt", b"203.0.113.7\n".to_vec())
            .unwrap();
        b.add(EntryKind::Rule, "rules/a.yml", b"title: a\n".to_vec())
            .unwrap();
        b.add(EntryKind::Rule, "rules/b.yml", b"title: b\n".to_vec())
            .unwrap();
        assert_eq!(b.build().unwrap().encode(), sample().encode());
    }

    #[test]
    fn every_truncation_is_refused_with_an_offset() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            let err = Bundle::decode(&bytes[..len], &Limits::default()).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, BundleError::Read { .. }),
                "cut at {len}: {msg}"
            );
            assert!(msg.contains("offset"), "cut at {len}: {msg}");
        }
        // A cut inside the second entry names that entry.
        let cut = 8 + 2 + 8 + 4 + 2 + 11 + 4 + 1 + 2 + 8 + 4 + 20 + 5;
        let msg = Bundle::decode(&bytes[..cut], &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("entry 1"), "{msg}");
    }

    #[test]
    fn trailing_data_and_bit_flips_are_refused() {
        let mut bytes = sample().encode();
        bytes.push(0);
        let err = Bundle::decode(&bytes, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("trailing data"), "{err}");
        bytes.pop();
        let last_data = bytes.len() - 40;
        bytes[last_data] ^= 1;
        let err = Bundle::decode(&bytes, &Limits::default()).unwrap_err();
        assert!(matches!(err, BundleError::Checksum { .. }), "{err}");
    }

    #[test]
    fn duplicate_entries_are_refused_by_builder_and_reader() {
        let mut b = BundleBuilder::new(1, schema(), Limits::default());
        b.add(EntryKind::Rule, "rules/a.yml", b"a".to_vec())
            .unwrap();
        let err = b
            .add(EntryKind::Rule, "rules/a.yml", b"b".to_vec())
            .unwrap_err();
        assert!(matches!(err, BundleError::Duplicate { ref path, .. } if path == "rules/a.yml"));
        // Hand-encode two identical entries: the reader names the duplicate.
        let bytes = raw_bundle(&[(2, "rules/a.yml", b"a"), (2, "rules/a.yml", b"b")]);
        let err = Bundle::decode(&bytes, &Limits::default()).unwrap_err();
        assert_eq!(err.to_string(), "duplicate rule entry \"rules/a.yml\"");
        let bytes = raw_bundle(&[(2, "rules/b.yml", b"a"), (2, "rules/a.yml", b"b")]);
        let err = Bundle::decode(&bytes, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, BundleError::OutOfOrder { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn bad_paths_and_unknown_kinds_are_refused() {
        for path in [
            "",
            "/etc/passwd",
            "rules/../x",
            "rules//x",
            "rules\\x",
            "a/./b",
        ] {
            let mut b = BundleBuilder::new(1, schema(), Limits::default());
            let err = b.add(EntryKind::Rule, path, vec![]).unwrap_err();
            assert!(
                matches!(err, BundleError::InvalidPath { .. }),
                "{path}: {err}"
            );
        }
        let bytes = raw_bundle(&[(9, "x", b"")]);
        let err = Bundle::decode(&bytes, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, BundleError::UnknownKind { code: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn an_exceptions_overlay_is_kind_5_and_sorts_after_tests() {
        let mut b = BundleBuilder::new(8, schema(), Limits::default());
        b.add(
            EntryKind::Exceptions,
            "exceptions/console.toml",
            b"[[exceptions]]\nrule = \"a\"\n".to_vec(),
        )
        .unwrap();
        b.add(EntryKind::Test, "tests/a.yml", b"rule: a\n".to_vec())
            .unwrap();
        let bundle = b.build().unwrap();
        let bytes = bundle.encode();
        let back = Bundle::decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(back, bundle);
        assert_eq!(back.encode(), bytes);
        assert_eq!(
            back.exceptions().map(|(p, _)| p).collect::<Vec<_>>(),
            ["exceptions/console.toml"]
        );
        // Hand-encoded: code 5 reads as an overlay, and an overlay before a test is out of order.
        let raw = raw_bundle(&[(4, "tests/a.yml", b"x"), (5, "exceptions/a.toml", b"y")]);
        let read = Bundle::decode(&raw, &Limits::default()).unwrap();
        assert_eq!(read.exceptions().count(), 1);
        let raw = raw_bundle(&[(5, "exceptions/a.toml", b"y"), (4, "tests/a.yml", b"x")]);
        let err = Bundle::decode(&raw, &Limits::default()).unwrap_err();
        assert!(matches!(err, BundleError::OutOfOrder { .. }), "{err}");
        // A directory's exceptions/*.toml join as overlays; other files there are skipped.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("exceptions")).unwrap();
        fs::write(dir.path().join("exceptions/web.toml"), "[[exceptions]]\n").unwrap();
        fs::write(dir.path().join("exceptions/notes.md"), "x").unwrap();
        let mut b = BundleBuilder::new(1, schema(), Limits::default());
        let report = b.add_dir(dir.path()).unwrap();
        let built = b.build().unwrap();
        assert!(
            built
                .get(EntryKind::Exceptions, "exceptions/web.toml")
                .is_some()
        );
        assert!(report.skipped.iter().any(|p| p.ends_with("notes.md")));
    }

    #[test]
    fn a_100_mb_entry_is_refused_from_its_length_prefix() {
        // The header claims a 100 MB rule, but only the prefix is present: the limit is
        // checked on the declared length, before any slice or allocation.
        let mut bytes = raw_bundle(&[]);
        bytes.truncate(bytes.len() - 32);
        let count_at = bytes.len() - 4;
        bytes[count_at..].copy_from_slice(&1u32.to_be_bytes());
        bytes.push(2);
        bytes.extend_from_slice(&(11u16).to_be_bytes());
        bytes.extend_from_slice(b"rules/x.yml");
        bytes.extend_from_slice(&(100u32 * 1024 * 1024).to_be_bytes());
        let err = Bundle::decode(&bytes, &Limits::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                BundleError::Read {
                    source: ReadError::TooLong {
                        length: 104_857_600,
                        ..
                    },
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains("rules/x.yml"), "{msg}");
    }

    #[test]
    fn a_100_mb_rule_file_in_a_directory_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("rules/big")).unwrap();
        fs::write(dir.path().join("rules/ok.yml"), "title: ok\n").unwrap();
        // Sparse: 100 MB of length, no data written and none read.
        let big = fs::File::create(dir.path().join("rules/big/huge.yml")).unwrap();
        big.set_len(100 * 1024 * 1024).unwrap();
        let mut b = BundleBuilder::new(1, schema(), Limits::default());
        let err = b.add_dir(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                BundleError::TooLarge {
                    size: 104_857_600,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains("huge.yml"), "{msg}");
        // Same for a bundle file of that size.
        let err = Bundle::read_file(&dir.path().join("rules/big/huge.yml"), &Limits::default())
            .unwrap_err();
        assert!(matches!(err, BundleError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn directory_build_is_deterministic_and_skips_what_it_does_not_own() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("rules/proc")).unwrap();
        fs::create_dir_all(p.join("tests/proc")).unwrap();
        fs::create_dir_all(p.join("iocs")).unwrap();
        fs::write(p.join("README.md"), "pack").unwrap();
        fs::write(p.join("rules/proc/a.yml"), "title: a").unwrap();
        fs::write(p.join("rules/proc/notes.txt"), "x").unwrap();
        fs::write(p.join("rules/proc/.a.yml.swp"), "x").unwrap();
        fs::write(p.join("tests/proc/a.yml"), "rule: a").unwrap();
        fs::write(p.join("iocs/hashes.txt"), "00").unwrap();
        let build = || {
            let mut b = BundleBuilder::new(2, schema(), Limits::default());
            let report = b.add_dir(p).unwrap();
            (b.build().unwrap(), report)
        };
        let (one, report) = build();
        let (two, _) = build();
        assert_eq!(one.encode(), two.encode());
        assert_eq!(one.len(), 3);
        assert!(one.get(EntryKind::Rule, "rules/proc/a.yml").is_some());
        assert!(one.get(EntryKind::Test, "tests/proc/a.yml").is_some());
        assert!(one.get(EntryKind::Ioc, "iocs/hashes.txt").is_some());
        assert_eq!(report.skipped.len(), 3);

        std::os::unix::fs::symlink("/etc/passwd", p.join("rules/link.yml")).unwrap();
        let mut b = BundleBuilder::new(2, schema(), Limits::default());
        let err = b.add_dir(p).unwrap_err();
        assert!(matches!(err, BundleError::Symlink { .. }), "{err}");
    }

    #[test]
    fn entry_count_and_total_limits_hold() {
        let limits = Limits {
            max_entries: 2,
            ..Limits::default()
        };
        let mut b = BundleBuilder::new(1, schema(), limits);
        b.add(EntryKind::Rule, "rules/a.yml", vec![]).unwrap();
        b.add(EntryKind::Rule, "rules/b.yml", vec![]).unwrap();
        let err = b.add(EntryKind::Rule, "rules/c.yml", vec![]).unwrap_err();
        assert!(matches!(err, BundleError::TooManyEntries { .. }), "{err}");
        let bytes = raw_bundle(&[(2, "a", b""), (2, "b", b""), (2, "c", b"")]);
        let err = Bundle::decode(&bytes, &limits).unwrap_err();
        assert!(matches!(
            err,
            BundleError::TooManyEntries { count: 3, limit: 2 }
        ));

        let limits = Limits {
            max_total_bytes: 200,
            ..Limits::default()
        };
        let mut b = BundleBuilder::new(1, schema(), limits);
        let err = b
            .add(EntryKind::Rule, "rules/a.yml", vec![0; 190])
            .unwrap_err();
        assert!(matches!(err, BundleError::TooLarge { .. }), "{err}");
        let big = raw_bundle(&[(2, "a", &[0; 300])]);
        let err = Bundle::decode(&big, &limits).unwrap_err();
        assert!(matches!(err, BundleError::TooLarge { size, .. } if size == big.len() as u64));
    }

    #[test]
    fn a_fingerprint_the_format_cannot_carry_is_refused() {
        let long = SchemaId {
            version: 1,
            fingerprint: "f".repeat(300),
        };
        let err = BundleBuilder::new(1, long, Limits::default())
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "schema fingerprint is 300 bytes, limit is 256"
        );
    }

    /// Encodes entries as given, without the builder's checks, with a valid checksum.
    fn raw_bundle(entries: &[(u8, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&1u64.to_be_bytes());
        out.extend_from_slice(&3u32.to_be_bytes());
        put_u16_bytes(&mut out, b"sha256:abcd");
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (code, path, data) in entries {
            out.push(*code);
            put_u16_bytes(&mut out, path.as_bytes());
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }
}
