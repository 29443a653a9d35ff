//! The exchange's JSON shapes, with the exchange's field names (as Kalshi documents its REST and
//! WebSocket APIs, checked against the official `kalshi-typescript` 3.30 models).
//!
//! Optional and legacy fields are `Option` so that a field the exchange adds or drops does not
//! break parsing; unknown fields are ignored. Counts and prices stay strings here, as on the wire;
//! they become [`riskd_units::Contracts`] and [`riskd_units::Dollars`] where they are used.

use serde::{Deserialize, Serialize};

/// `POST /portfolio/order_groups/create` body. `subaccount` travels in the body here, and in the
/// query string on every other order-group call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateOrderGroupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subaccount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts_limit_fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_index: Option<i64>,
}

/// `201` answer to a create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateOrderGroupResponse {
    pub order_group_id: String,
    #[serde(default)]
    pub subaccount: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_index: Option<i64>,
}

/// One entry of `GET /portfolio/order_groups`. There is no state and no subaccount field: the
/// exchange does not say whether a group is triggered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderGroup {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts_limit_fp: Option<String>,
    pub is_auto_cancel_enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_index: Option<i64>,
    /// Legacy integer limit (removed from responses around March 2026).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts_limit: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GetOrderGroupsResponse {
    #[serde(default)]
    pub order_groups: Vec<OrderGroup>,
}

/// `GET /portfolio/order_groups/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetOrderGroupResponse {
    pub is_auto_cancel_enabled: bool,
    #[serde(default)]
    pub orders: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts_limit_fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_index: Option<i64>,
}

/// `PUT /portfolio/order_groups/{id}/limit` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateOrderGroupLimitRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts_limit_fp: Option<String>,
}

/// `POST /portfolio/events/orders` (order entry V2) body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateOrderV2Request {
    pub ticker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_order_id: Option<String>,
    /// `bid` buys YES, `ask` sells YES.
    pub side: String,
    /// Fixed-point count string, e.g. `"10"` or `"10.00"`.
    pub count: String,
    /// Fixed-point dollar price string, e.g. `"0.5600"`.
    pub price: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<i64>,
    /// `fill_or_kill` | `good_till_canceled` | `immediate_or_cancel`.
    pub time_in_force: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_only: Option<bool>,
    /// `taker_at_cross` | `maker`.
    pub self_trade_prevention_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_order_on_pause: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subaccount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_index: Option<i64>,
}

/// `201` answer to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateOrderV2Response {
    pub order_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_order_id: Option<String>,
    pub fill_count: String,
    pub remaining_count: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_fill_price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_fee_paid: Option<String>,
    pub ts_ms: i64,
}

/// An order as `GET /portfolio/orders/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub user_id: String,
    pub client_order_id: String,
    pub ticker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub outcome_side: String,
    pub book_side: String,
    #[serde(rename = "type")]
    pub order_type: String,
    /// `resting` | `canceled` | `executed`.
    pub status: String,
    pub yes_price_dollars: String,
    pub no_price_dollars: String,
    pub fill_count_fp: String,
    pub remaining_count_fp: String,
    pub initial_count_fp: String,
    pub taker_fill_cost_dollars: String,
    pub maker_fill_cost_dollars: String,
    pub taker_fees_dollars: String,
    pub maker_fees_dollars: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_trade_prevention_type: Option<String>,
    #[serde(default)]
    pub order_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_order_on_pause: Option<bool>,
    #[serde(default)]
    pub subaccount_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_index: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetOrderResponse {
    pub order: Order,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GetOrdersResponse {
    #[serde(default)]
    pub orders: Vec<Order>,
    #[serde(default)]
    pub cursor: String,
}

/// WebSocket `fill` payload (`msg`). No `order_group_id` and no `seq`: map `order_id` to a
/// group yourself, and dedupe on `trade_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillMsg {
    pub trade_id: String,
    pub order_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_order_id: Option<String>,
    pub market_ticker: String,
    #[serde(default)]
    pub exchange_index: i64,
    #[serde(default)]
    pub is_taker: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    pub yes_price_dollars: String,
    pub count_fp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_cost: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    pub ts_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_position_fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchased_side: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_side: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub book_side: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subaccount: Option<i64>,
}

/// One fill as `GET /portfolio/fills` shows it. Unlike the stream's, it carries no group id:
/// the order's group is looked up by `order_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestFill {
    #[serde(default)]
    pub fill_id: String,
    pub trade_id: String,
    pub order_id: String,
    pub ticker: String,
    /// `yes` | `no`: the side bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub count_fp: String,
    pub yes_price_dollars: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_price_dollars: Option<String>,
    #[serde(default)]
    pub is_taker: bool,
    /// RFC 3339, to the millisecond where the exchange gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subaccount: Option<i64>,
}

/// `GET /portfolio/fills`: a page, and the cursor of the next (empty on the last page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetFillsResponse {
    #[serde(default)]
    pub fills: Vec<RestFill>,
    #[serde(default)]
    pub cursor: String,
}

/// `GET /account/limits`: the account's tier and its two token buckets. Every field is
/// optional here: a bucket the answer leaves out, or gives in a shape not understood, is
/// treated as unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountLimits {
    #[serde(default)]
    pub usage_tier: Option<String>,
    #[serde(default)]
    pub read: Option<BucketLimits>,
    #[serde(default)]
    pub write: Option<BucketLimits>,
}

/// One bucket: tokens added a second and tokens held at most (a request costs 10 unless the
/// exchange lists another cost).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketLimits {
    #[serde(default)]
    pub refill_rate: Option<f64>,
    #[serde(default)]
    pub bucket_capacity: Option<f64>,
}

/// WebSocket `user_order` payload (channel `user_orders`). Carries `order_group_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserOrderMsg {
    pub order_id: String,
    #[serde(default)]
    pub user_id: String,
    pub ticker: String,
    /// `resting` | `canceled` | `executed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_yes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_side: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub book_side: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yes_price_dollars: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_count_fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_count_fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_count_fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taker_fill_cost_dollars: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maker_fill_cost_dollars: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taker_fees_dollars: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maker_fees_dollars: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ts_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_ts_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_trade_prevention_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subaccount_number: Option<i64>,
}

/// WebSocket `order_group_updates` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderGroupUpdateMsg {
    /// `created` | `triggered` | `reset` | `deleted` | `limit_updated`.
    pub event_type: String,
    pub order_group_id: String,
    /// Only on `created` and `limit_updated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts_limit_fp: Option<String>,
    /// Documented as required, but the exchange is known to leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_ms: Option<i64>,
}

/// The fields of the messages this client reads in bulk, and only those: every other field is
/// skipped unread (never allocated), so a fill costs a handful of small strings, not twenty.
/// Strings used only while converting are borrowed from the frame where they hold no escapes.
pub mod read {
    use serde::{Deserialize, Deserializer};
    use std::borrow::Cow;

    /// A string borrowed from the input when it holds no escapes, copied when it does.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Text<'a>(pub Cow<'a, str>);

    impl Text<'_> {
        pub fn as_str(&self) -> &str {
            &self.0
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Text<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Owned(v.to_owned())))
                }
                fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Owned(v)))
                }
            }
            d.deserialize_str(Visit)
        }
    }

    /// A WebSocket `fill` payload, as read.
    #[derive(Debug, Deserialize)]
    pub struct Fill<'a> {
        pub trade_id: String,
        pub order_id: String,
        pub market_ticker: String,
        #[serde(default)]
        pub exchange_index: i64,
        #[serde(borrow)]
        pub yes_price_dollars: Text<'a>,
        #[serde(borrow)]
        pub count_fp: Text<'a>,
        pub ts_ms: i64,
        #[serde(borrow, default)]
        pub purchased_side: Option<Text<'a>>,
        #[serde(borrow, default)]
        pub outcome_side: Option<Text<'a>>,
        #[serde(default)]
        pub subaccount: Option<i64>,
    }

    /// A WebSocket `user_order` payload, as read: what maps an order to its group.
    #[derive(Debug, Deserialize)]
    pub struct UserOrder {
        pub order_id: String,
        pub ticker: String,
        pub status: String,
        #[serde(default)]
        pub order_group_id: Option<String>,
        #[serde(default)]
        pub subaccount_number: Option<i64>,
    }

    /// A fill of `GET /portfolio/fills`, as read.
    #[derive(Debug, Deserialize)]
    pub struct ListedFill<'a> {
        #[serde(borrow)]
        pub trade_id: Text<'a>,
        #[serde(borrow)]
        pub order_id: Text<'a>,
        #[serde(borrow)]
        pub ticker: Text<'a>,
        #[serde(borrow, default)]
        pub side: Option<Text<'a>>,
        #[serde(borrow)]
        pub count_fp: Text<'a>,
        #[serde(borrow)]
        pub yes_price_dollars: Text<'a>,
        #[serde(borrow, default)]
        pub created_time: Option<Text<'a>>,
        #[serde(default)]
        pub ts: Option<i64>,
        #[serde(default)]
        pub subaccount: Option<i64>,
    }

    impl<'a> From<&'a super::RestFill> for ListedFill<'a> {
        fn from(f: &'a super::RestFill) -> ListedFill<'a> {
            let text = |s: &'a str| Text(Cow::Borrowed(s));
            ListedFill {
                trade_id: text(&f.trade_id),
                order_id: text(&f.order_id),
                ticker: text(&f.ticker),
                side: f.side.as_deref().map(text),
                count_fp: text(&f.count_fp),
                yes_price_dollars: text(&f.yes_price_dollars),
                created_time: f.created_time.as_deref().map(text),
                ts: f.ts,
                subaccount: f.subaccount,
            }
        }
    }

    /// A page of `GET /portfolio/fills`, as read.
    #[derive(Debug, Deserialize)]
    pub struct FillsPage<'a> {
        #[serde(borrow, default)]
        pub fills: Vec<ListedFill<'a>>,
        #[serde(default)]
        pub cursor: String,
    }
}

/// WebSocket error codes the exchange documents.
pub mod ws_error {
    pub const UNABLE_TO_PROCESS: u32 = 1;
    pub const PARAMS_REQUIRED: u32 = 2;
    pub const CHANNELS_REQUIRED: u32 = 3;
    pub const SIDS_REQUIRED: u32 = 4;
    pub const UNKNOWN_COMMAND: u32 = 5;
    pub const UNKNOWN_SID: u32 = 7;
    pub const UNKNOWN_CHANNEL: u32 = 8;
    pub const CHANNEL_ERROR: u32 = 10;
    pub const SUBSCRIPTION_BUFFER_OVERFLOW: u32 = 25;

    /// Codes that end a subscription: the client must subscribe again.
    pub fn is_terminal(code: u64) -> bool {
        code == CHANNEL_ERROR as u64 || code == SUBSCRIPTION_BUFFER_OVERFLOW as u64
    }
}
