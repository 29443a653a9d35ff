//! The daemon's durable records: `state.json` (what was decided, written atomically: temp file,
//! fsync, rename, fsync of the directory) and `audit.jsonl` (one decision a line, appended and
//! fsynced).
//!
//! `state.json` carries the risk core's snapshot plus `clean_stop`: false while the daemon runs,
//! true once it has stopped cleanly. A start that finds `false` knows the last stop was unclean.
//!
//! `audit.jsonl` may be rotated under the daemon (logrotate's `create`: renamed, a new file put
//! in its place, or just moved away): before each append the daemon checks that the path still
//! names the file it holds open, and otherwise opens the path again, so every line after a
//! rotation goes to the new file and none is lost. A line appended in the instant between that
//! check and a rename lands at the end of the rotated file, still whole.

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

fn open_audit(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))
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
        let audit = open_audit(&audit_path)?;
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

    /// Opens `path` again if it no longer names the audit file held open (rotated away).
    fn follow_rotation(&mut self, path: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt as _;
        let held = self.audit.metadata().map_err(io(path))?;
        let same = std::fs::metadata(path)
            .is_ok_and(|now| now.dev() == held.dev() && now.ino() == held.ino());
        if !same {
            self.audit = open_audit(path)?;
            tracing::info!(path = %path.display(), "audit log rotated: appending to a new file");
        }
        Ok(())
    }

    /// Appends decisions to the audit log and fsyncs it.
    pub fn audit(&mut self, decisions: &[Decision]) -> Result<(), StoreError> {
        if decisions.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("audit.jsonl");
        self.follow_rotation(&path)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::engine::{DecisionKind, decision};

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["reason"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn a_rotated_audit_log_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let d = |reason: &str| decision(1, DecisionKind::KillEngaged, reason, "test");
        let audit = dir.path().join("audit.jsonl");
        store.audit(&[d("one")]).unwrap();
        // logrotate's `create`: renamed away, a new empty file in its place.
        std::fs::rename(&audit, dir.path().join("audit.jsonl.1")).unwrap();
        File::create(&audit).unwrap();
        store.audit(&[d("two")]).unwrap();
        // Moved away with nothing in its place.
        std::fs::rename(&audit, dir.path().join("audit.jsonl.2")).unwrap();
        store.audit(&[d("three"), d("four")]).unwrap();
        assert_eq!(lines(&dir.path().join("audit.jsonl.1")), ["one"]);
        assert_eq!(lines(&dir.path().join("audit.jsonl.2")), ["two"]);
        assert_eq!(lines(&audit), ["three", "four"]);
    }
}
