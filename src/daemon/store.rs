//! The daemon's durable records: `state.json` (what was decided, written atomically: temp file,
//! fsync, rename, fsync of the directory) and `audit.jsonl` (one decision a line, appended and
//! fsynced).
//!
//! `state.json` carries the risk core's snapshot plus `clean_stop`: false while the daemon runs,
//! true once it has stopped cleanly. A start that finds `false` knows the last stop was unclean.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::risk::engine::{Decision, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a state file this daemon wrote: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    #[serde(flatten)]
    pub snapshot: Snapshot,
    #[serde(default)]
    pub clean_stop: bool,
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    audit: File,
}

/// One audit line: `ts`, `event`, `strategy`, `group_id`, `reason`, `evidence`,
/// `actor`.
#[derive(Debug, Serialize)]
struct AuditLine<'a> {
    ts: String,
    #[serde(flatten)]
    decision: &'a Decision,
}

impl Store {
    /// Opens (creating) the state directory and the audit log.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let audit_path = dir.join("audit.jsonl");
        let audit = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&audit_path)
            .map_err(io(&audit_path))?;
        Ok(Store {
            dir: dir.to_owned(),
            audit,
        })
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The last state, or `None` on first start.
    pub fn load(&self) -> Result<Option<StateFile>, StoreError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// Writes the state atomically and durably.
    pub fn save(&self, state: &StateFile) -> Result<(), StoreError> {
        let path = self.state_path();
        let tmp = self.dir.join("state.json.tmp");
        let text = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&text).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }

    /// Appends decisions to the audit log and fsyncs it.
    pub fn audit(&mut self, decisions: &[Decision]) -> Result<(), StoreError> {
        if decisions.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("audit.jsonl");
        let mut buf = Vec::new();
        for d in decisions {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(d.ts_ms.max(0) as u64);
            let line = AuditLine {
                ts: humantime::format_rfc3339_millis(t).to_string(),
                decision: d,
            };
            serde_json::to_writer(&mut buf, &line).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            buf.push(b'\n');
        }
        // A failed append (a full disk) may leave part of a line: cut it off, so the retry
        // appends whole lines after whole lines.
        let before = self.audit.metadata().map(|m| m.len()).map_err(io(&path))?;
        let written = self
            .audit
            .write_all(&buf)
            .and_then(|()| self.audit.sync_data());
        if let Err(e) = written {
            let _ = self.audit.set_len(before);
            return Err(io(&path)(e));
        }
        Ok(())
    }
}
