//! What the exchange's stream says, as risk-core inputs.

use crate::kalshi::stream::{Health, StreamEvent};
use crate::risk::Dollars;
use crate::risk::engine::{Fill, GroupChange, Input, StreamHealth};

/// The price paid per contract: the YES price for YES, one dollar less it for NO, the larger
/// when the side is not known.
fn price_paid(f: &crate::kalshi::ws::Fill) -> Dollars {
    let no = Dollars::ONE - f.yes_price;
    match f.bought_yes {
        Some(true) => f.yes_price,
        Some(false) => no,
        None => f.yes_price.max(no),
    }
}

pub(super) fn to_input(ev: StreamEvent) -> Option<Input> {
    use crate::kalshi::ws::GroupEventKind as K;
    Some(match ev {
        StreamEvent::Fill(f) => Input::Fill(Fill {
            price: price_paid(&f),
            trade_id: f.trade_id,
            order_id: f.order_id,
            count: f.count,
            ts_ms: f.ts_ms,
        }),
        StreamEvent::Order(o) => Input::OrderGroup {
            order_id: o.order_id,
            group: o.group_id,
        },
        StreamEvent::Group(g) => Input::GroupEvent {
            group: g.group_id,
            change: match g.kind {
                K::Created => GroupChange::Created,
                K::Triggered => GroupChange::Triggered,
                K::Reset => GroupChange::Reset,
                K::Deleted => GroupChange::Deleted,
                K::LimitUpdated => GroupChange::LimitUpdated(g.limit),
            },
        },
        StreamEvent::Health(h) => Input::Stream(match h {
            Health::Connected => StreamHealth::Connected,
            Health::Disconnected { .. } => StreamHealth::Disconnected,
            Health::Blind { .. } => StreamHealth::Blind,
            Health::SeqGap { expected, got } => StreamHealth::Lossy(format!(
                "order_group_updates seq {got} after {}",
                expected - 1
            )),
            Health::Overflow { dropped } => {
                StreamHealth::Lossy(format!("{dropped} stream events dropped"))
            }
            Health::ServerError { .. } => return None,
            Health::SubscriptionLost { channel, reason } => {
                StreamHealth::Lossy(format!("the subscription to {channel} was lost: {reason}"))
            }
            Health::Lossy { reason } => StreamHealth::Lossy(reason),
        }),
    })
}
