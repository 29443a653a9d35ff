//! Identities of exchange objects the risk core reasons about (plain data).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An order group's id, as the exchange assigned it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(String);

impl GroupId {
    pub fn new(id: impl Into<String>) -> Self {
        GroupId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything needed to address a group on the exchange: mutators must name the group's own
/// subaccount and exchange index, or the exchange answers 404.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupAddress {
    pub id: GroupId,
    pub subaccount: u8,
    pub exchange_index: u32,
}
