//! Durable create intents (`intents.json` in the state directory): no crash can leave two
//! groups where one belongs.
//!
//! A group create is a request whose answer can be lost, and the process can die between the
//! exchange creating a group and `state.json` naming it. So before each create the daemon
//! writes down what it is about to create (strategy, subaccount, exchange index, limit) and
//! which groups were already there; the intent is closed only once `state.json` holds the
//! result (or the exchange refused the create). Every open intent is settled by listing before
//! the next round of creates: a group that appeared in that subaccount with that exchange index
//! and limit, and that no record names, is the daemon's own orphan. One is adopted for the
//! strategy; any others are duplicates and are deleted.
//!
//! The file is small (one entry per create in flight) and rewritten whole, atomically: temp
//! file, fsync, rename, fsync of the directory, like `state.json`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::store::StoreError;
use crate::kalshi::GroupId;
use crate::risk::Contracts;

/// One create the daemon was about to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateIntent {
    /// Unique within the file.
    pub id: u64,
    pub strategy: String,
    pub subaccount: u8,
    pub exchange_index: u32,
    pub contracts_limit: Contracts,
    /// Every group id the daemon knew of when it wrote the intent (listed or recorded).
    pub known: BTreeSet<GroupId>,
    /// When it was written, epoch ms.
    pub at_ms: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IntentFile {
    intents: Vec<CreateIntent>,
}

/// The open intents, held in memory and mirrored to disk on every change.
#[derive(Debug)]
pub struct IntentLog {
    path: PathBuf,
    open: Mutex<Vec<CreateIntent>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl IntentLog {
    /// Reads `intents.json` in `dir` (none yet is an empty log).
    pub fn open(dir: &Path) -> Result<IntentLog, StoreError> {
        let path = dir.join("intents.json");
        let open = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
            Ok(bytes) => {
                serde_json::from_slice::<IntentFile>(&bytes)
                    .map_err(|e| StoreError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?
                    .intents
            }
        };
        Ok(IntentLog {
            path,
            open: Mutex::new(open),
        })
    }

    /// The open intents, oldest first.
    pub fn pending(&self) -> Vec<CreateIntent> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CreateIntent>> {
        // A panic while holding the lock cannot leave the list half-changed: every change is
        // one push or one retain.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an intent durably; returns once it is on disk. The id is assigned here.
    pub fn record(&self, mut intent: CreateIntent) -> Result<u64, StoreError> {
        let mut open = self.lock();
        intent.id = open.iter().map(|i| i.id + 1).max().unwrap_or(1);
        let id = intent.id;
        open.push(intent);
        if let Err(e) = self.write(&open) {
            open.pop();
            return Err(e);
        }
        Ok(id)
    }

    /// Closes intents (their outcome is recorded in `state.json`, or nothing was created).
    pub fn close(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut open = self.lock();
        let before = open.len();
        open.retain(|i| !ids.contains(&i.id));
        if open.len() == before {
            return Ok(());
        }
        self.write(&open)
    }

    fn write(&self, open: &[CreateIntent]) -> Result<(), StoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&IntentFile {
            intents: open.to_vec(),
        })
        .map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&text).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(strategy: &str) -> CreateIntent {
        CreateIntent {
            id: 0,
            strategy: strategy.into(),
            subaccount: 2,
            exchange_index: 1,
            contracts_limit: Contracts::from_whole(100),
            known: [GroupId::new("g-1")].into_iter().collect(),
            at_ms: 1_000,
        }
    }

    #[test]
    fn intents_survive_a_reopen_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let log = IntentLog::open(dir.path()).unwrap();
        let a = log.record(intent("a")).unwrap();
        let b = log.record(intent("b")).unwrap();
        assert_ne!(a, b);
        drop(log);
        let log = IntentLog::open(dir.path()).unwrap();
        let names: Vec<String> = log.pending().into_iter().map(|i| i.strategy).collect();
        assert_eq!(names, ["a", "b"]);
        log.close(&[a]).unwrap();
        let log = IntentLog::open(dir.path()).unwrap();
        assert_eq!(log.pending().len(), 1);
        assert_eq!(log.pending()[0].id, b);
        assert_eq!(log.pending()[0].known.len(), 1);
    }

    #[test]
    fn a_corrupt_intent_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("intents.json"), b"{not json").unwrap();
        let e = IntentLog::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("intents.json"), "{e}");
    }
}
