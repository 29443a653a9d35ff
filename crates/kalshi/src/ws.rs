//! Decoding the user WebSocket's text frames into typed messages.
//!
//! [`decode`] is pure and total: any input yields a [`Decoded`] or a [`DecodeError`], never a
//! panic (it is the fuzz target `ws_decode`). Unknown fields are ignored and legacy ones are
//! optional; counts and prices are converted to [`Contracts`] and [`Dollars`] here, and a value
//! that does not parse makes the whole message an error rather than a guess.

use serde_json::Value;
use serde_json::value::RawValue;

use super::group::GroupId;
use super::wire::OrderGroupUpdateMsg;
use super::wire::read;
use riskd_units::{Contracts, Dollars};

/// The largest fill the decoder accepts: ten million contracts, far above any order the
/// exchange takes, and small enough that sums of fills cannot overflow.
pub const MAX_FILL_COUNT: Contracts = Contracts::from_whole(10_000_000);

/// One fill, deduplicated downstream on `trade_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub trade_id: String,
    pub order_id: String,
    pub ticker: String,
    pub count: Contracts,
    pub yes_price: Dollars,
    /// Matching-engine time, epoch ms.
    pub ts_ms: i64,
    pub subaccount: Option<u8>,
    pub exchange_index: u32,
    /// `Some(true)` when YES was bought (`outcome_side` "yes"), `Some(false)` for NO.
    pub bought_yes: Option<bool>,
}

impl Fill {
    /// The price paid per contract: the YES price for YES, one dollar less it for NO, the
    /// larger when the side is not known.
    pub fn price_paid(&self) -> Dollars {
        let no = Dollars::ONE - self.yes_price;
        match self.bought_yes {
            Some(true) => self.yes_price,
            Some(false) => no,
            None => self.yes_price.max(no),
        }
    }
}

/// An order's state, which maps it to its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderUpdate {
    pub order_id: String,
    pub group_id: Option<GroupId>,
    pub status: String,
    pub ticker: String,
    pub subaccount: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupEventKind {
    Created,
    Triggered,
    Reset,
    Deleted,
    LimitUpdated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEvent {
    pub kind: GroupEventKind,
    pub group_id: GroupId,
    /// On `created` and `limit_updated`.
    pub limit: Option<Contracts>,
    /// Matching-engine time; the exchange sometimes leaves it out.
    pub ts_ms: Option<i64>,
}

/// One server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Fill {
        sid: u64,
        fill: Fill,
    },
    Order {
        sid: u64,
        order: OrderUpdate,
    },
    Group {
        sid: u64,
        seq: u64,
        event: GroupEvent,
    },
    /// An `order_group_updates` event of a type this client does not know: its `seq` still
    /// counts, and it is reported, never fatal.
    GroupOther {
        sid: u64,
        seq: u64,
        event_type: String,
    },
    Subscribed {
        id: u64,
        sid: u64,
        channel: String,
    },
    Unsubscribed {
        id: u64,
        sid: u64,
    },
    /// A command reply (`ok`) other than a subscription list.
    Ok {
        id: u64,
    },
    /// The answer to `list_subscriptions`: `(channel, sid)` of each subscription the server
    /// holds for this connection.
    Subscriptions {
        id: u64,
        list: Vec<(String, u64)>,
    },
    /// The server reports an error (`code`, `msg`), about the subscription `sid` when it says
    /// so. Codes 10 and 25 end that subscription (25: data was lost).
    Error {
        id: u64,
        sid: Option<u64>,
        code: u64,
        msg: String,
    },
    /// A message type this client does not use.
    Other {
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("message has no \"type\"")]
    NoType,
    #[error("{kind} message: {field}: {reason}")]
    Field {
        kind: &'static str,
        field: &'static str,
        reason: String,
    },
}

fn field(kind: &'static str, field: &'static str, reason: impl ToString) -> DecodeError {
    DecodeError::Field {
        kind,
        field,
        reason: reason.to_string(),
    }
}

fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn small<T: TryFrom<i64>>(v: Option<i64>) -> Option<T> {
    v.and_then(|x| T::try_from(x).ok())
}

/// A message's envelope, its fields left as they came: the payload is decoded once, straight
/// from the frame's text into its type (never through a `Value`), and an envelope field of an
/// unexpected type reads as absent.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    seq: Option<&'a RawValue>,
    #[serde(borrow, default)]
    msg: Option<&'a RawValue>,
}

fn raw_u64(v: Option<&RawValue>) -> Option<u64> {
    serde_json::from_str(v?.get()).ok()
}

/// The payload as a `T`, for `kind` messages.
fn payload<'a, T: serde::Deserialize<'a>>(
    msg: Option<&'a RawValue>,
    kind: &'static str,
) -> Result<T, DecodeError> {
    serde_json::from_str(msg.map_or("null", RawValue::get)).map_err(|e| field(kind, "msg", e))
}

pub fn decode(text: &str) -> Result<Decoded, DecodeError> {
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            DecodeError::NotJson(format!("not an object with the usual fields: {e}"))
        } else {
            DecodeError::NotJson(e.to_string())
        }
    })?;
    let kind: std::borrow::Cow<'_, str> = env
        .kind
        .and_then(|k| serde_json::from_str(k.get()).ok())
        .ok_or(DecodeError::NoType)?;
    let id = raw_u64(env.id).unwrap_or(0);
    let sid = raw_u64(env.sid).unwrap_or(0);
    let msg_value = || -> Value {
        env.msg
            .and_then(|m| serde_json::from_str(m.get()).ok())
            .unwrap_or(Value::Null)
    };
    Ok(match kind.as_ref() {
        "fill" => {
            let m: read::Fill = payload(env.msg, "fill")?;
            let count =
                Contracts::parse(m.count_fp.as_str()).map_err(|e| field("fill", "count_fp", e))?;
            let yes_price = Dollars::parse(m.yes_price_dollars.as_str())
                .map_err(|e| field("fill", "yes_price_dollars", e))?;
            if m.trade_id.is_empty() {
                return Err(field("fill", "trade_id", "empty"));
            }
            // Bounds keep every later sum far from overflow, whatever the network sends.
            if count > MAX_FILL_COUNT {
                return Err(field(
                    "fill",
                    "count_fp",
                    format!("{count} contracts is not a plausible fill"),
                ));
            }
            if yes_price > Dollars::ONE {
                return Err(field(
                    "fill",
                    "yes_price_dollars",
                    format!("{yes_price} is above one dollar"),
                ));
            }
            Decoded::Fill {
                sid,
                fill: Fill {
                    trade_id: m.trade_id,
                    order_id: m.order_id,
                    ticker: m.market_ticker,
                    count,
                    yes_price,
                    ts_ms: m.ts_ms,
                    subaccount: small(m.subaccount),
                    exchange_index: small(Some(m.exchange_index)).unwrap_or(0),
                    bought_yes: m
                        .outcome_side
                        .as_ref()
                        .or(m.purchased_side.as_ref())
                        .and_then(|s| match s.as_str() {
                            "yes" => Some(true),
                            "no" => Some(false),
                            _ => None,
                        }),
                },
            }
        }
        "user_order" => {
            let m: read::UserOrder = payload(env.msg, "user_order")?;
            Decoded::Order {
                sid,
                order: OrderUpdate {
                    order_id: m.order_id,
                    group_id: m.order_group_id.filter(|g| !g.is_empty()).map(GroupId::new),
                    status: m.status,
                    ticker: m.ticker,
                    subaccount: small(m.subaccount_number),
                },
            }
        }
        "order_group_updates" => {
            let seq =
                raw_u64(env.seq).ok_or_else(|| field("order_group_updates", "seq", "missing"))?;
            let m: OrderGroupUpdateMsg = payload(env.msg, "order_group_updates")?;
            let kind = match m.event_type.as_str() {
                "created" => GroupEventKind::Created,
                "triggered" => GroupEventKind::Triggered,
                "reset" => GroupEventKind::Reset,
                "deleted" => GroupEventKind::Deleted,
                "limit_updated" => GroupEventKind::LimitUpdated,
                other => {
                    return Ok(Decoded::GroupOther {
                        sid,
                        seq,
                        event_type: other.chars().take(64).collect(),
                    });
                }
            };
            let limit = m
                .contracts_limit_fp
                .as_deref()
                .map(Contracts::parse)
                .transpose()
                .map_err(|e| field("order_group_updates", "contracts_limit_fp", e))?;
            Decoded::Group {
                sid,
                seq,
                event: GroupEvent {
                    kind,
                    group_id: GroupId::new(m.order_group_id),
                    limit,
                    ts_ms: m.ts_ms,
                },
            }
        }
        "subscribed" => {
            let msg = msg_value();
            Decoded::Subscribed {
                id,
                sid: u64_of(&msg, "sid").unwrap_or(0),
                channel: msg
                    .get("channel")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }
        }
        "unsubscribed" => Decoded::Unsubscribed { id, sid },
        "ok" => match msg_value().as_array() {
            Some(items) => Decoded::Subscriptions {
                id,
                list: items
                    .iter()
                    .filter_map(|i| {
                        Some((
                            i.get("channel")?.as_str()?.to_owned(),
                            i.get("sid")?.as_u64()?,
                        ))
                    })
                    .collect(),
            },
            None => Decoded::Ok { id },
        },
        "error" => {
            let msg = msg_value();
            Decoded::Error {
                id,
                sid: raw_u64(env.sid),
                code: u64_of(&msg, "code").unwrap_or(0),
                msg: msg
                    .get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }
        }
        other => Decoded::Other {
            kind: other.chars().take(64).collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_fill_with_legacy_and_unknown_fields() {
        let text = r#"{"type":"fill","sid":13,"sending_ts_ms":1,"msg":{"trade_id":"t1","order_id":"o1",
            "market_ticker":"KX","exchange_index":2,"is_taker":true,"side":"yes","yes_price_dollars":"0.7500",
            "count_fp":"278.00","count":278,"yes_price":75,"fee_cost":"0.01","action":"buy","ts":1,"ts_ms":1000,
            "post_position_fp":"500.00","purchased_side":"yes","outcome_side":"yes","book_side":"bid",
            "subaccount":3,"brand_new_field":{"x":1}}}"#;
        let Decoded::Fill { sid, fill } = decode(text).unwrap() else {
            panic!()
        };
        assert_eq!(sid, 13);
        assert_eq!(fill.count, Contracts::from_whole(278));
        assert_eq!(fill.yes_price, Dollars::from_micros(750_000));
        assert_eq!(
            (fill.subaccount, fill.exchange_index, fill.bought_yes),
            (Some(3), 2, Some(true))
        );
    }

    #[test]
    fn strings_with_escapes_decode_as_their_plain_twins() {
        // Fields read in place fall back to a copy when the JSON escapes a character: the fill
        // and the order update still decode, to the same values.
        let fill = r#"{"type":"fill","sid":1,"msg":{"trade_id":"t\u0031","order_id":"o1","market_ticker":"KX",
            "yes_price_dollars":"0.75\u0030\u0030","count_fp":"\u0032.00","ts_ms":1,"outcome_side":"n\u006f"}}"#;
        let Decoded::Fill { fill, .. } = decode(fill).unwrap() else {
            panic!()
        };
        assert_eq!(fill.trade_id, "t1");
        assert_eq!(fill.count, Contracts::from_whole(2));
        assert_eq!(fill.yes_price, Dollars::from_micros(750_000));
        assert_eq!(fill.bought_yes, Some(false));
        let order = r#"{"type":"user_order","sid":2,"msg":{"order_id":"o\"1","ticker":"KX","status":"resting",
            "order_group_id":"g\u0031","subaccount_number":4,"fill_count_fp":{"not":"a string"}}}"#;
        let Decoded::Order { order, .. } = decode(order).unwrap() else {
            panic!()
        };
        assert_eq!(order.order_id, "o\"1");
        assert_eq!(order.group_id, Some(GroupId::new("g1")));
        assert_eq!(order.subaccount, Some(4));
    }

    #[test]
    fn decodes_group_updates_and_replies() {
        let g = decode(r#"{"type":"order_group_updates","sid":21,"seq":7,"msg":{"event_type":"limit_updated","order_group_id":"og","contracts_limit_fp":"150.00","ts_ms":5}}"#).unwrap();
        assert_eq!(
            g,
            Decoded::Group {
                sid: 21,
                seq: 7,
                event: GroupEvent {
                    kind: GroupEventKind::LimitUpdated,
                    group_id: GroupId::new("og"),
                    limit: Some(Contracts::from_whole(150)),
                    ts_ms: Some(5)
                }
            }
        );
        assert_eq!(
            decode(r#"{"id":1,"type":"subscribed","msg":{"channel":"fill","sid":3}}"#).unwrap(),
            Decoded::Subscribed {
                id: 1,
                sid: 3,
                channel: "fill".into()
            }
        );
        assert_eq!(
            decode(r#"{"id":9,"type":"error","msg":{"code":25,"msg":"overflow"}}"#).unwrap(),
            Decoded::Error {
                id: 9,
                sid: None,
                code: 25,
                msg: "overflow".into()
            }
        );
        assert_eq!(
            decode(r#"{"id":0,"type":"error","sid":3,"msg":{"code":10,"msg":"Channel error"}}"#)
                .unwrap(),
            Decoded::Error {
                id: 0,
                sid: Some(3),
                code: 10,
                msg: "Channel error".into()
            }
        );
        assert_eq!(
            decode(r#"{"id":4,"type":"ok","msg":[{"channel":"fill","sid":3}]}"#).unwrap(),
            Decoded::Subscriptions {
                id: 4,
                list: vec![("fill".into(), 3)]
            }
        );
        assert!(matches!(
            decode(r#"{"type":"ticker","msg":{}}"#),
            Ok(Decoded::Other { .. })
        ));
    }

    #[test]
    fn refuses_what_it_cannot_trust() {
        for bad in [
            "",
            "[]",
            "nul",
            "{}",
            r#"{"type":"fill","msg":{"trade_id":"t","order_id":"o","market_ticker":"K","yes_price_dollars":"0.5","count_fp":"-3","ts_ms":1}}"#,
            r#"{"type":"fill","msg":{"trade_id":"t","order_id":"o","market_ticker":"K","yes_price_dollars":"x","count_fp":"3","ts_ms":1}}"#,
            r#"{"type":"order_group_updates","sid":1,"msg":{"event_type":"created","order_group_id":"g","ts_ms":1}}"#,
            r#"{"type":"fill","msg":{"trade_id":"t","order_id":"o","market_ticker":"K","yes_price_dollars":"0.5","count_fp":"90000000000000000.00","ts_ms":1}}"#,
            r#"{"type":"fill","msg":{"trade_id":"t","order_id":"o","market_ticker":"K","yes_price_dollars":"7.5","count_fp":"3","ts_ms":1}}"#,
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn takes_group_events_in_the_loose_shapes_the_exchange_sends() {
        // No ts_ms: still a triggered event.
        let g = decode(r#"{"type":"order_group_updates","sid":1,"seq":2,"msg":{"event_type":"triggered","order_group_id":"g"}}"#).unwrap();
        assert!(matches!(
            g,
            Decoded::Group {
                seq: 2,
                event: GroupEvent {
                    kind: GroupEventKind::Triggered,
                    ts_ms: None,
                    ..
                },
                ..
            }
        ));
        // An unknown event type is reported as such, with its seq, not refused.
        assert_eq!(
            decode(r#"{"type":"order_group_updates","sid":1,"seq":3,"msg":{"event_type":"exploded","order_group_id":"g","ts_ms":1}}"#).unwrap(),
            Decoded::GroupOther { sid: 1, seq: 3, event_type: "exploded".into() }
        );
    }
}
