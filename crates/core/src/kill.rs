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
    /// Cluster mode: etcd has held an engaged shared latch since this engagement was made, so
    /// an operator's release written there covers it. An engagement made while etcd was out of
    /// reach is not shared: it is published when etcd answers again, over any release.
    #[serde(default, skip_serializing_if = "is_false")]
    pub shared: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
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

    /// Marks the engagement as held by the cluster. Returns true when this call changed it.
    pub fn mark_shared(&mut self) -> bool {
        match &mut self.engaged {
            Some(k) if !k.shared => {
                k.shared = true;
                true
            }
            _ => false,
        }
    }

    /// The only way out. Returns the record that was released.
    pub fn release(&mut self) -> Option<KillRecord> {
        self.engaged.take()
    }
}
