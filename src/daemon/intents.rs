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
//! Intents are written a batch at a time (every create a start or reload is about to make, in
//! one write); the intents of one batch share their set of known groups, which the file holds
//! once. The file is rewritten whole, atomically: temp file, fsync, rename, fsync of the
//! directory, like `state.json`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::store::StoreError;
use crate::kalshi::GroupId;
use crate::risk::Contracts;

/// One create the daemon was about to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateIntent {
    /// Unique within the file.
    pub id: u64,
    pub strategy: String,
    pub subaccount: u8,
    pub exchange_index: u32,
    pub contracts_limit: Contracts,
    /// Every group id the daemon knew of when it wrote the intent (listed or recorded);
    /// shared by the intents of one batch.
    pub known: Arc<BTreeSet<GroupId>>,
    /// When it was written, epoch ms.
    pub at_ms: i64,
}

/// `intents.json`. Intents written together share one `known` set, stored once in `known_sets`
/// and named by index (a file written before sets were shared has each set inline).
#[derive(Debug, Default, Serialize, Deserialize)]
struct IntentFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    known_sets: Vec<BTreeSet<GroupId>>,
    intents: Vec<StoredIntent>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredIntent {
    id: u64,
    strategy: String,
    subaccount: u8,
    exchange_index: u32,
    contracts_limit: Contracts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    known_set: Option<usize>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    known: BTreeSet<GroupId>,
    at_ms: i64,
}

impl IntentFile {
    fn from_open(open: &[CreateIntent]) -> IntentFile {
        let mut file = IntentFile::default();
        let mut last: Option<&Arc<BTreeSet<GroupId>>> = None;
        for i in open {
            // Intents of one batch are adjacent and share their set: compare with the last.
            if last.is_none_or(|l| !Arc::ptr_eq(l, &i.known) && **l != *i.known) {
                file.known_sets.push(BTreeSet::clone(&i.known));
                last = Some(&i.known);
            }
            file.intents.push(StoredIntent {
                id: i.id,
                strategy: i.strategy.clone(),
                subaccount: i.subaccount,
                exchange_index: i.exchange_index,
                contracts_limit: i.contracts_limit,
                known_set: Some(file.known_sets.len() - 1),
                known: BTreeSet::new(),
                at_ms: i.at_ms,
            });
        }
        file
    }

    fn into_open(self) -> Result<Vec<CreateIntent>, String> {
        let IntentFile {
            known_sets,
            intents,
        } = self;
        let known_sets: Vec<Arc<BTreeSet<GroupId>>> =
            known_sets.into_iter().map(Arc::new).collect();
        intents
            .into_iter()
            .map(|i| {
                let known = match i.known_set {
                    None => Arc::new(i.known),
                    Some(n) => known_sets.get(n).cloned().ok_or_else(|| {
                        format!(
                            "intent {} names known set {n}, which is not in the file",
                            i.id
                        )
                    })?,
                };
                Ok(CreateIntent {
                    id: i.id,
                    strategy: i.strategy,
                    subaccount: i.subaccount,
                    exchange_index: i.exchange_index,
                    contracts_limit: i.contracts_limit,
                    known,
                    at_ms: i.at_ms,
                })
            })
            .collect()
    }
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
            Ok(bytes) => serde_json::from_slice::<IntentFile>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(IntentFile::into_open)
                .map_err(|reason| StoreError::Corrupt {
                    path: path.clone(),
                    reason,
                })?,
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
    pub fn record(&self, intent: CreateIntent) -> Result<u64, StoreError> {
        let ids = self.record_all(vec![intent])?;
        Ok(ids[0])
    }

    /// Records a batch of intents in one durable write; returns their ids (assigned here), in
    /// order, once they are on disk.
    pub fn record_all(&self, batch: Vec<CreateIntent>) -> Result<Vec<u64>, StoreError> {
        let mut open = self.lock();
        let before = open.len();
        let first = open.iter().map(|i| i.id + 1).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(batch.len());
        for (id, mut intent) in (first..).zip(batch) {
            intent.id = id;
            ids.push(id);
            open.push(intent);
        }
        if let Err(e) = self.write(&open) {
            open.truncate(before);
            return Err(e);
        }
        Ok(ids)
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
        let text = serde_json::to_vec_pretty(&IntentFile::from_open(open)).map_err(|e| {
            StoreError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            }
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
            known: Arc::new([GroupId::new("g-1")].into_iter().collect()),
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
    fn a_batch_shares_its_known_set_and_older_files_with_inline_sets_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = IntentLog::open(dir.path()).unwrap();
        let shared = Arc::new([GroupId::new("g-1"), GroupId::new("g-2")].into());
        let batch: Vec<CreateIntent> = (0..3)
            .map(|_| CreateIntent {
                known: Arc::clone(&shared),
                ..intent("a")
            })
            .collect();
        assert_eq!(log.record_all(batch).unwrap(), [1, 2, 3]);
        let text = std::fs::read_to_string(dir.path().join("intents.json")).unwrap();
        assert_eq!(text.matches("g-2").count(), 1, "{text}");
        let reopened = IntentLog::open(dir.path()).unwrap().pending();
        assert_eq!(reopened.len(), 3);
        assert!(reopened.iter().all(|i| i.known == shared));

        std::fs::write(
            dir.path().join("intents.json"),
            r#"{"intents":[{"id":7,"strategy":"old","subaccount":0,"exchange_index":0,
                "contracts_limit":"100","known":["g-9"],"at_ms":5}]}"#,
        )
        .unwrap();
        let old = IntentLog::open(dir.path()).unwrap().pending();
        assert_eq!(old[0].id, 7);
        assert!(old[0].known.contains(&GroupId::new("g-9")));
    }

    #[test]
    fn a_corrupt_intent_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("intents.json"), b"{not json").unwrap();
        let e = IntentLog::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("intents.json"), "{e}");
    }
}
