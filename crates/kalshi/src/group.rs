//! Typed order-group values, converted once from the exchange's strings.

use riskd_units::Contracts;
pub use riskd_units::ids::{GroupAddress, GroupId};

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
