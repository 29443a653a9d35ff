//! The kill latch. Engaged by a signal, an operator or the account-level limit; released only
//! by an explicit release. Engaging triggers every group in scope; with `hold`, a group that
//! turns active again while engaged is triggered again.

use serde::{Deserialize, Serialize};

use super::limits::Evidence;

/// Why and by whom the latch was engaged (persisted in `state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRecord {
    pub at_ms: i64,
    pub actor: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillLatch {
    engaged: Option<KillRecord>,
}

impl KillLatch {
    pub fn restored(record: Option<KillRecord>) -> Self {
        KillLatch { engaged: record }
    }

    pub fn is_engaged(&self) -> bool {
        self.engaged.is_some()
    }

    pub fn record(&self) -> Option<&KillRecord> {
        self.engaged.as_ref()
    }

    /// Engages the latch; an already engaged latch keeps its first record. Returns true when
    /// this call engaged it.
    pub fn engage(&mut self, record: KillRecord) -> bool {
        if self.engaged.is_some() {
            return false;
        }
        self.engaged = Some(record);
        true
    }

    /// The only way out. Returns the record that was released.
    pub fn release(&mut self) -> Option<KillRecord> {
        self.engaged.take()
    }
}
