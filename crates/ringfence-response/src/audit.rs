//! The response audit log: one JSON line per decision, refused or done.
//!
//! Writing the audit record must never stop a response, and a response must never go
//! unrecorded silently: a failed append is counted and reported on stderr.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use ringfence_event::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Action, Cause};

/// What became of an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Done { detail: String },
    DryRun,
    Refused { reason: String },
    Failed { error: String },
}

/// One audited decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    #[serde(flatten)]
    pub action: Action,
    pub cause: Cause,
    pub outcome: Status,
}

impl AuditRecord {
    pub fn new(action: Action, cause: Cause, outcome: Status) -> AuditRecord {
        AuditRecord {
            timestamp: Timestamp::now().to_string(),
            action,
            cause,
            outcome,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.outcome, Status::Done { .. })
    }
}

/// Appends records to a JSONL file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    pub failed_writes: u64,
}

impl AuditLog {
    pub fn new(path: &Path) -> AuditLog {
        AuditLog {
            path: path.to_owned(),
            failed_writes: 0,
        }
    }

    pub fn append(&mut self, record: &AuditRecord) {
        let line = match serde_json::to_string(record) {
            Ok(l) => l + "\n",
            Err(e) => format!("{{\"error\":\"unserializable audit record: {e}\"}}\n"),
        };
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            self.failed_writes += 1;
            eprintln!(
                "ringfence: cannot append to response audit log {}: {e}",
                self.path.display()
            );
        }
    }
}
