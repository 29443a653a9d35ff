//! The exchange operations the daemon makes, each with the one name that metrics, logs and
//! errors use for it, whichever channel (REST or FIX) carries it.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    CreateOrderGroup,
    ListOrderGroups,
    GetOrderGroup,
    DeleteOrderGroup,
    ResetOrderGroup,
    TriggerOrderGroup,
    UpdateOrderGroupLimit,
    GetOrder,
    ListOrders,
    ListFills,
    GetAccountLimits,
}

impl Op {
    pub const ALL: [Op; 11] = [
        Op::CreateOrderGroup,
        Op::ListOrderGroups,
        Op::GetOrderGroup,
        Op::DeleteOrderGroup,
        Op::ResetOrderGroup,
        Op::TriggerOrderGroup,
        Op::UpdateOrderGroupLimit,
        Op::GetOrder,
        Op::ListOrders,
        Op::ListFills,
        Op::GetAccountLimits,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Op::CreateOrderGroup => "create_order_group",
            Op::ListOrderGroups => "list_order_groups",
            Op::GetOrderGroup => "get_order_group",
            Op::DeleteOrderGroup => "delete_order_group",
            Op::ResetOrderGroup => "reset_order_group",
            Op::TriggerOrderGroup => "trigger_order_group",
            Op::UpdateOrderGroupLimit => "update_order_group_limit",
            Op::GetOrder => "get_order",
            Op::ListOrders => "list_orders",
            Op::ListFills => "list_fills",
            Op::GetAccountLimits => "get_account_limits",
        }
    }
}
