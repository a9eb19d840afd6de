//! Following a growing log file across rotation and truncation, line by line.
//!
//! The tailer polls: each call reads whatever was appended since the last one. A new inode at
//! the path (logrotate's rename-and-create) or a file shorter than our offset (copytruncate)
//! starts reading the new file from its beginning. A line longer than [`MAX_LINE`] is cut there
//! and counted, never buffered without bound; a missing file is simply waited for.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Longest line handed on; the rest of a longer line is dropped and counted.
pub const MAX_LINE: usize = 64 * 1024;
/// Most bytes read in one poll, so one huge append cannot starve the other files.
const MAX_READ_PER_POLL: usize = 4 * 1024 * 1024;

/// Where to start in a file that already exists when tailing begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

/// Counters a tailer keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailStats {
    pub lines: u64,
    pub truncated_lines: u64,
    pub rotations: u64,
    pub read_errors: u64,
}

/// Follows one file.
#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
    pending: Vec<u8>,
    /// The current line has already overflowed and is being skipped to its newline.
    skipping: bool,
    start_at: StartAt,
    /// The file was missing at some poll: when it appears, all of it is new.
    appeared_late: bool,
    pub stats: TailStats,
}

impl Tailer {
    pub fn new(path: impl Into<PathBuf>, start_at: StartAt) -> Tailer {
        Tailer {
            path: path.into(),
            file: None,
            inode: 0,
            offset: 0,
            pending: Vec::new(),
            skipping: false,
            start_at,
            appeared_late: false,
            stats: TailStats::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read what was appended and hand each complete line to `on_line` (without its newline,
    /// invalid UTF-8 replaced). A missing file is not an error: it is waited for.
    pub fn poll(&mut self, mut on_line: impl FnMut(&str)) -> io::Result<()> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.appeared_late |= self.file.is_none();
                return Ok(());
            }
            Err(e) => {
                self.stats.read_errors += 1;
                return Err(e);
            }
        };
        let reopen = self.file.is_none() || meta.ino() != self.inode || meta.len() < self.offset;
        if reopen {
            let first_open = self.file.is_none() && self.inode == 0;
            if !first_open {
                // Drain what the old file still had after our offset before leaving it.
                self.read_available(&mut on_line)?;
                self.stats.rotations += 1;
            }
            let mut file = File::open(&self.path).inspect_err(|_| self.stats.read_errors += 1)?;
            let skip_existing = first_open && self.start_at == StartAt::End && !self.appeared_late;
            self.offset = if skip_existing { meta.len() } else { 0 };
            file.seek(SeekFrom::Start(self.offset))?;
            self.inode = meta.ino();
            self.file = Some(file);
            self.pending.clear();
            self.skipping = false;
        }
        self.read_available(&mut on_line)
    }

    fn read_available(&mut self, on_line: &mut impl FnMut(&str)) -> io::Result<()> {
        let mut buf = [0u8; 64 * 1024];
        let mut total = 0;
        while total < MAX_READ_PER_POLL {
            let Some(file) = self.file.as_mut() else {
                return Ok(());
            };
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stats.read_errors += 1;
                    return Err(e);
                }
            };
            total += n;
            self.offset += n as u64;
            for chunk in buf[..n].split_inclusive(|b| *b == b'\n') {
                let complete = chunk.last() == Some(&b'\n');
                let body = if complete {
                    &chunk[..chunk.len() - 1]
                } else {
                    chunk
                };
                if !self.skipping {
                    let room = MAX_LINE - self.pending.len();
                    self.pending
                        .extend_from_slice(&body[..body.len().min(room)]);
                    if body.len() > room {
                        self.skipping = true;
                        self.stats.truncated_lines += 1;
                        self.emit(on_line);
                    }
                }
                if complete {
                    if self.skipping {
                        self.skipping = false;
                    } else {
                        self.emit(on_line);
                    }
                }
            }
        }
        Ok(())
    }

    fn emit(&mut self, on_line: &mut impl FnMut(&str)) {
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        self.stats.lines += 1;
        on_line(line);
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(t: &mut Tailer) -> Vec<String> {
        let mut out = Vec::new();
        let r = t.poll(|l| out.push(l.to_owned()));
        assert!(r.is_ok(), "{r:?}");
        out
    }

    fn append(path: &Path, text: &str) {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        let written = f.and_then(|mut f| f.write_all(text.as_bytes()));
        assert!(written.is_ok());
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringfence-tail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(std::fs::create_dir_all(&dir).is_ok());
        dir
    }

    #[test]
    fn follows_appends_partial_lines_and_rotation() {
        let dir = temp_dir("rotate");
        let path = dir.join("auth.log");
        append(&path, "old line\n");
        let mut t = Tailer::new(&path, StartAt::End);
        assert!(lines(&mut t).is_empty(), "starts at the end");
        append(&path, "one\ntw");
        assert_eq!(lines(&mut t), ["one"]);
        append(&path, "o\r\n");
        assert_eq!(lines(&mut t), ["two"]);
        // logrotate: rename, then a new file at the path.
        append(&path, "last of old\n");
        assert!(std::fs::rename(&path, dir.join("auth.log.1")).is_ok());
        append(&path, "first of new\n");
        assert_eq!(lines(&mut t), ["last of old", "first of new"]);
        assert_eq!(t.stats.rotations, 1);
        // copytruncate: the file shrinks under us, then grows again.
        assert!(std::fs::write(&path, "").is_ok());
        assert!(lines(&mut t).is_empty());
        append(&path, "after truncate\n");
        assert_eq!(lines(&mut t), ["after truncate"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn overlong_lines_are_cut_and_counted() {
        let dir = temp_dir("long");
        let path = dir.join("access.log");
        let mut t = Tailer::new(&path, StartAt::Beginning);
        assert!(lines(&mut t).is_empty(), "a missing file is waited for");
        append(&path, &format!("{}\nshort\n", "x".repeat(MAX_LINE * 3)));
        let got = lines(&mut t);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(got[1], "short");
        assert_eq!(t.stats.truncated_lines, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
