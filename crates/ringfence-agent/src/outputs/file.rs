//! The local outputs: standard output (ECS lines, or one readable line per finding with
//! `--format text`) and `jsonl:PATH` (append, rotate by size).
//!
//! A closed stdout pipe ends that output quietly.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Output, text};

/// Standard output, buffered; flushed by the pipeline at least once a second.
#[derive(Debug)]
pub struct Stdout {
    out: BufWriter<io::Stdout>,
    closed: bool,
    /// One readable line per finding, and no events (`--format text`).
    text: bool,
}

impl Stdout {
    pub fn new() -> Stdout {
        Stdout {
            out: BufWriter::with_capacity(64 * 1024, io::stdout()),
            closed: false,
            text: false,
        }
    }

    /// Findings only, each as one readable line ([`text::line`]).
    pub fn text() -> Stdout {
        Stdout {
            text: true,
            ..Stdout::new()
        }
    }
}

impl Default for Stdout {
    fn default() -> Self {
        Stdout::new()
    }
}

impl Output for Stdout {
    fn name(&self) -> String {
        "stdout".into()
    }

    fn wants_events(&self) -> bool {
        !self.text
    }

    fn write_finding(&mut self, finding: &serde_json::Value, line: &str) -> io::Result<()> {
        if self.text {
            self.write_line(&text::line(finding))
        } else {
            self.write_line(line)
        }
    }

    fn write_line(&mut self, line: &str) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.out.flush();
        self.note(r)
    }
}

impl Stdout {
    fn note(&mut self, r: io::Result<()>) -> io::Result<()> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

/// A JSON-lines file, appended to and rotated to `PATH.1` … `PATH.keep` at `rotate_bytes`.
#[derive(Debug)]
pub struct Jsonl {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    rotate_bytes: u64,
    keep: u32,
}

impl Jsonl {
    pub fn open(path: &Path, rotate_bytes: u64, keep: u32) -> io::Result<Jsonl> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Jsonl {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(64 * 1024, file),
            size,
            rotate_bytes,
            keep,
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        p.into()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            let f = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&self.path)?;
            drop(f);
        } else {
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::with_capacity(64 * 1024, file);
        self.size = 0;
        Ok(())
    }
}

impl Output for Jsonl {
    fn name(&self) -> String {
        format!("jsonl:{}", self.path.display())
    }

    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.rotate_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_appends_and_rotates() {
        let dir = std::env::temp_dir().join(format!("ringfence-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/events.jsonl");
        let mut out = match Jsonl::open(&path, 4096, 2) {
            Ok(o) => o,
            Err(e) => panic!("open: {e}"),
        };
        let line = "x".repeat(999);
        for _ in 0..10 {
            assert!(out.write_line(&line).is_ok());
        }
        assert!(out.flush().is_ok());
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 4096);
        assert!(size(&out.rotated(1)) > 0);
        assert!(size(&out.rotated(2)) > 0);
        assert!(!out.rotated(3).exists(), "keep = 2");
        drop(out);
        // Re-opening appends.
        let before = size(&path);
        let mut again = match Jsonl::open(&path, 1 << 20, 2) {
            Ok(o) => o,
            Err(e) => panic!("reopen: {e}"),
        };
        assert!(again.write_line("{}").is_ok() && again.flush().is_ok());
        assert_eq!(size(&path), before + 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
