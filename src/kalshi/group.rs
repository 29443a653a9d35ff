//! Typed order-group values, converted once from the exchange's strings.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::risk::Contracts;

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

impl GroupAddress {
    /// The query string mutators carry.
    pub(crate) fn query(&self) -> String {
        format!(
            "?subaccount={}&exchange_index={}",
            self.subaccount, self.exchange_index
        )
    }
}

/// One group as `GET /portfolio/order_groups` lists it (no state, no subaccount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub id: GroupId,
    /// `None` when the exchange left the limit out or sent one we could not read.
    pub contracts_limit: Option<Contracts>,
    pub exchange_index: u32,
}

/// One group as `GET /portfolio/order_groups/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetail {
    pub orders: Vec<String>,
    pub contracts_limit: Option<Contracts>,
    pub exchange_index: u32,
}

/// An order's group membership and status, from `GET /portfolio/orders/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderInfo {
    pub order_id: String,
    pub group_id: Option<GroupId>,
    pub status: String,
    pub ticker: String,
    pub subaccount: Option<u8>,
}
