//! The simulated exchange's order-group and matching engine.
//!
//! Synchronous and clock-free: every operation takes `now_ms` (the simulator's clock, which tests
//! may advance) and appends the stream events it causes to `events`, in the order the exchange
//! would publish them. The REST layer maps [`EngineError`] to the exchange's status codes and
//! error bodies.
//!
//! Rules, with the choices made where the exchange is silent:
//! - A group's volume is the sum of its filled contracts over a rolling 15 s window: a fill at
//!   `t` counts while `now < t + 15 s`, and has expired at exactly `t + 15 s`.
//! - The group triggers when that volume *exceeds* its limit (`volume > limit`, the overview's
//!   wording); [`TriggerBoundary::Reaches`] selects `volume >= limit` instead. The triggering
//!   fill is applied in full before the cancel, so volume can overshoot the limit, as on the
//!   exchange (cancellation follows the match).
//! - Triggering cancels every resting order of the group; later orders naming the group are
//!   rejected until Reset. Reset clears the triggered state and the window. Updating the limit
//!   below the current volume triggers at once. Delete cancels resting orders and removes the
//!   group. A manual Trigger of a group already triggered succeeds and publishes nothing new.
//! - Limits are whole contracts in 1..=1,000,000 (fractional limits are refused: the docs say
//!   only whole values are permitted today).
//! - The built-in counterparty takes the other side of every order at the order's price, up to
//!   the liquidity set for the ticker (unlimited unless a test sets it). Post-only orders rest.
//!   Resting orders fill when a test fills them through `/_sim/`. No fees are charged.

mod orders;

use std::collections::{HashMap, VecDeque};

use riskd_kalshi::wire::{
    FillMsg, GetOrderGroupResponse, OrderGroup, OrderGroupUpdateMsg, RestFill, UserOrderMsg,
};
use riskd_units::{Contracts, Dollars};

/// The exchange's rolling window for order groups.
pub const GROUP_WINDOW_MS: i64 = 15_000;
/// Limits accepted on create and update.
pub const MIN_LIMIT: i64 = 1;
pub const MAX_LIMIT: i64 = 1_000_000;
/// The exchange's cap on order groups per user.
pub const DEFAULT_MAX_GROUPS: usize = 100_000;
pub const MAX_SUBACCOUNT: i64 = 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TriggerBoundary {
    /// Trigger when volume > limit (default).
    #[default]
    Exceeds,
    /// Trigger when volume >= limit.
    Reaches,
}

/// One thing the exchange publishes on the user's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Fill(FillMsg),
    UserOrder(UserOrderMsg),
    GroupUpdate(OrderGroupUpdateMsg),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    InvalidParameters(String),
    #[error("order group not found")]
    GroupNotFound,
    #[error("order group limit of {0} reached; delete groups you no longer need")]
    TooManyGroups(usize),
    #[error("{0}")]
    InvalidOrder(String),
    #[error("order group {0} not found for this subaccount and exchange index")]
    OrderGroupNotFound(String),
    #[error("order group {0} is triggered; reset it before placing orders")]
    GroupTriggered(String),
    #[error("order not found")]
    OrderNotFound,
    #[error("order {0} is not resting")]
    NotResting(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BookSide {
    Bid,
    Ask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tif {
    FillOrKill,
    GoodTillCanceled,
    ImmediateOrCancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Resting,
    Canceled,
    Executed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Resting => "resting",
            Status::Canceled => "canceled",
            Status::Executed => "executed",
        }
    }
}

#[derive(Debug, Clone)]
struct Group {
    id: String,
    created: u64,
    subaccount: i64,
    exchange_index: i64,
    limit: Contracts,
    triggered: bool,
    window: VecDeque<(i64, Contracts)>,
    volume: Contracts,
    orders: Vec<String>,
}

impl Group {
    fn expire(&mut self, now_ms: i64) {
        while let Some(&(t, c)) = self.window.front() {
            if t + GROUP_WINDOW_MS <= now_ms {
                self.window.pop_front();
                self.volume -= c;
            } else {
                break;
            }
        }
    }

    fn over(&self, boundary: TriggerBoundary) -> bool {
        match boundary {
            TriggerBoundary::Exceeds => self.volume > self.limit,
            TriggerBoundary::Reaches => self.volume >= self.limit,
        }
    }

    fn wire(&self) -> OrderGroup {
        OrderGroup {
            id: self.id.clone(),
            contracts_limit_fp: Some(self.limit.to_string()),
            is_auto_cancel_enabled: true,
            exchange_index: Some(self.exchange_index),
            contracts_limit: None,
        }
    }
}

#[derive(Debug, Clone)]
struct OrderState {
    id: String,
    client_order_id: String,
    ticker: String,
    side: BookSide,
    price: Dollars,
    initial: Contracts,
    filled: Contracts,
    remaining: Contracts,
    status: Status,
    subaccount: i64,
    exchange_index: i64,
    group: Option<String>,
    stp: String,
    cancel_on_pause: bool,
    taker_cost: Dollars,
    maker_cost: Dollars,
    created_ms: i64,
    updated_ms: i64,
}

/// A group's internal state, for tests (`/_sim/groups`). The exchange itself never shows this.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupView {
    pub id: String,
    pub subaccount: i64,
    pub exchange_index: i64,
    pub contracts_limit_fp: String,
    pub triggered: bool,
    /// Filled contracts inside the rolling 15 s window at the simulator's current time.
    pub window_contracts_fp: String,
    pub orders: Vec<String>,
}

/// One fill as the exchange recorded it (see [`Engine::ledger`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LedgerFill {
    pub ts_ms: i64,
    pub trade_id: String,
    pub order_id: String,
    /// The order's group, if it was in one.
    pub group: Option<String>,
    pub subaccount: i64,
    pub count: Contracts,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub max_groups: usize,
    pub boundary: TriggerBoundary,
    pub user_id: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_groups: DEFAULT_MAX_GROUPS,
            boundary: TriggerBoundary::default(),
            user_id: "5f9c4a52-0000-4000-8000-00000000517d".to_owned(),
        }
    }
}

/// Parses a limit given as `contracts_limit` and/or `contracts_limit_fp` (they must agree).
pub fn parse_limit(int: Option<i64>, fp: Option<&str>) -> Result<Contracts, EngineError> {
    let bad = |m: String| EngineError::InvalidParameters(m);
    let from_fp = match fp {
        Some(text) => {
            Some(Contracts::parse(text).map_err(|e| bad(format!("contracts_limit_fp: {e}")))?)
        }
        None => None,
    };
    let limit = match (int, from_fp) {
        (None, None) => {
            return Err(bad(
                "contracts_limit or contracts_limit_fp is required".into()
            ));
        }
        (Some(i), None) => Contracts::from_whole(i.clamp(-10_000_000, 10_000_000)),
        (None, Some(c)) => c,
        (Some(i), Some(c)) => {
            if Contracts::from_whole(i.clamp(-10_000_000, 10_000_000)) != c {
                return Err(bad(format!(
                    "contracts_limit ({i}) and contracts_limit_fp ({c}) must match"
                )));
            }
            c
        }
    };
    if !limit.is_whole() {
        return Err(bad(format!(
            "contracts_limit_fp {limit}: only whole contracts are permitted"
        )));
    }
    let whole = limit.hundredths() / 100;
    if !(MIN_LIMIT..=MAX_LIMIT).contains(&whole) {
        return Err(bad(format!(
            "contracts_limit {whole} is out of range {MIN_LIMIT}..={MAX_LIMIT}"
        )));
    }
    Ok(limit)
}

fn check_subaccount(subaccount: i64) -> Result<i64, EngineError> {
    if (0..=MAX_SUBACCOUNT).contains(&subaccount) {
        Ok(subaccount)
    } else {
        Err(EngineError::InvalidParameters(format!(
            "subaccount {subaccount} is out of range 0..={MAX_SUBACCOUNT}"
        )))
    }
}

/// A random version-4 UUID, as the exchange uses for ids.
pub fn new_id() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Debug, Default)]
pub struct Engine {
    cfg: EngineConfig,
    groups: HashMap<String, Group>,
    created: u64,
    orders: HashMap<String, OrderState>,
    liquidity: HashMap<String, Contracts>,
    positions: HashMap<(i64, String), Contracts>,
    /// Every fill, oldest first, for `GET /portfolio/fills` (the exchange keeps them all; the
    /// simulator keeps the last [`FILL_HISTORY`]). Fills made while no client is connected are
    /// here too.
    fills: VecDeque<(i64, RestFill)>,
    /// Fills dropped from the front of `fills`: a fill's position in the whole history is this
    /// plus its index (what a fills cursor names).
    fills_dropped: u64,
    /// A fill was made at an earlier time than the one before it (the clock stepped back):
    /// `fills` can no longer be searched by time.
    fills_unordered: bool,
}

/// How many fills the simulator remembers.
pub const FILL_HISTORY: usize = 1_000_000;

/// What [`Engine::act`] does to a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAct {
    Delete,
    Reset,
    Trigger,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            ..Engine::default()
        }
    }

    pub fn user_id(&self) -> &str {
        &self.cfg.user_id
    }

    fn group_update(&self, event_type: &str, g: &Group, now_ms: i64, with_limit: bool) -> Event {
        Event::GroupUpdate(OrderGroupUpdateMsg {
            event_type: event_type.to_owned(),
            order_group_id: g.id.clone(),
            contracts_limit_fp: with_limit.then(|| g.limit.to_string()),
            ts_ms: Some(now_ms),
        })
    }

    /// Finds a group addressed by a mutator: the subaccount and exchange index must be the
    /// group's own, or the exchange answers 404.
    fn addressed(
        &mut self,
        id: &str,
        subaccount: i64,
        exchange_index: i64,
    ) -> Result<&mut Group, EngineError> {
        match self.groups.get_mut(id) {
            Some(g) if g.subaccount == subaccount && g.exchange_index == exchange_index => Ok(g),
            _ => Err(EngineError::GroupNotFound),
        }
    }

    pub fn create_group(
        &mut self,
        subaccount: i64,
        exchange_index: i64,
        limit: Contracts,
        now_ms: i64,
        events: &mut Vec<Event>,
    ) -> Result<String, EngineError> {
        let subaccount = check_subaccount(subaccount)?;
        if exchange_index < 0 {
            return Err(EngineError::InvalidParameters(format!(
                "exchange_index {exchange_index}: an order group is bound to one exchange instance (0 or more)"
            )));
        }
        if self.groups.len() >= self.cfg.max_groups {
            return Err(EngineError::TooManyGroups(self.cfg.max_groups));
        }
        self.created += 1;
        let g = Group {
            id: new_id(),
            created: self.created,
            subaccount,
            exchange_index,
            limit,
            triggered: false,
            window: VecDeque::new(),
            volume: Contracts::ZERO,
            orders: Vec::new(),
        };
        events.push(self.group_update("created", &g, now_ms, true));
        let id = g.id.clone();
        self.groups.insert(id.clone(), g);
        Ok(id)
    }

    /// `GET /portfolio/order_groups`: every group, or one subaccount's, oldest first.
    pub fn list_groups(&self, subaccount: Option<i64>) -> Vec<OrderGroup> {
        let mut gs: Vec<&Group> = self
            .groups
            .values()
            .filter(|g| subaccount.is_none_or(|s| g.subaccount == s))
            .collect();
        gs.sort_by_key(|g| g.created);
        gs.into_iter().map(Group::wire).collect()
    }

    pub fn get_group(
        &self,
        id: &str,
        subaccount: Option<i64>,
    ) -> Result<GetOrderGroupResponse, EngineError> {
        match self.groups.get(id) {
            Some(g) if subaccount.is_none_or(|s| s == g.subaccount) => Ok(GetOrderGroupResponse {
                is_auto_cancel_enabled: true,
                orders: g.orders.clone(),
                contracts_limit_fp: Some(g.limit.to_string()),
                exchange_index: Some(g.exchange_index),
            }),
            _ => Err(EngineError::GroupNotFound),
        }
    }

    /// Deletes, resets or triggers a group addressed by its subaccount and exchange index.
    /// Delete cancels its resting orders and removes it; reset clears its window and lets it
    /// accept orders again; trigger (of a group not yet triggered) cancels its resting orders
    /// and blocks new ones.
    pub fn act(
        &mut self,
        act: GroupAct,
        id: &str,
        subaccount: i64,
        exchange_index: i64,
        now_ms: i64,
        events: &mut Vec<Event>,
    ) -> Result<(), EngineError> {
        let g = self.addressed(id, subaccount, exchange_index)?;
        match act {
            GroupAct::Delete => {
                self.cancel_resting(id, now_ms, events);
                if let Some(g) = self.groups.remove(id) {
                    events.push(self.group_update("deleted", &g, now_ms, false));
                }
            }
            GroupAct::Reset => {
                g.triggered = false;
                g.window.clear();
                g.volume = Contracts::ZERO;
                let ev = self.group_update("reset", &self.groups[id], now_ms, false);
                events.push(ev);
            }
            GroupAct::Trigger if !g.triggered => self.trigger(id, now_ms, events),
            GroupAct::Trigger => {}
        }
        Ok(())
    }

    pub fn update_limit(
        &mut self,
        id: &str,
        subaccount: i64,
        exchange_index: i64,
        limit: Contracts,
        now_ms: i64,
        events: &mut Vec<Event>,
    ) -> Result<(), EngineError> {
        let boundary = self.cfg.boundary;
        let g = self.addressed(id, subaccount, exchange_index)?;
        g.limit = limit;
        g.expire(now_ms);
        let trip = !g.triggered && g.over(boundary);
        let ev = {
            let g = &self.groups[id];
            self.group_update("limit_updated", g, now_ms, true)
        };
        events.push(ev);
        if trip {
            self.trigger(id, now_ms, events);
        }
        Ok(())
    }

    /// Marks the group triggered and cancels its resting orders.
    fn trigger(&mut self, id: &str, now_ms: i64, events: &mut Vec<Event>) {
        self.cancel_resting(id, now_ms, events);
        if let Some(g) = self.groups.get_mut(id) {
            g.triggered = true;
        }
        if let Some(g) = self.groups.get(id) {
            events.push(self.group_update("triggered", g, now_ms, false));
        }
    }

    fn cancel_resting(&mut self, group_id: &str, now_ms: i64, events: &mut Vec<Event>) {
        let ids = match self.groups.get(group_id) {
            Some(g) => g.orders.clone(),
            None => return,
        };
        for oid in ids {
            self.cancel_order(&oid, now_ms, events);
        }
    }

    /// Internal state of every group, for tests.
    pub fn group_views(&mut self, now_ms: i64) -> Vec<GroupView> {
        let mut gs: Vec<&mut Group> = self.groups.values_mut().collect();
        gs.sort_by_key(|g| g.created);
        gs.into_iter()
            .map(|g| {
                g.expire(now_ms);
                GroupView {
                    id: g.id.clone(),
                    subaccount: g.subaccount,
                    exchange_index: g.exchange_index,
                    contracts_limit_fp: g.limit.to_string(),
                    triggered: g.triggered,
                    window_contracts_fp: g.volume.to_string(),
                    orders: g.orders.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskd_kalshi::wire::CreateOrderV2Request;

    fn order(group: &str, count: &str) -> CreateOrderV2Request {
        CreateOrderV2Request {
            ticker: "KXTEST-26NOV23".into(),
            side: "bid".into(),
            count: count.into(),
            price: "0.5000".into(),
            time_in_force: "good_till_canceled".into(),
            self_trade_prevention_type: "taker_at_cross".into(),
            order_group_id: Some(group.into()),
            ..Default::default()
        }
    }

    fn volume(e: &mut Engine, id: &str, now: i64) -> String {
        let v = e.group_views(now);
        v.into_iter()
            .find(|g| g.id == id)
            .unwrap()
            .window_contracts_fp
    }

    #[test]
    fn window_boundary_is_half_open_at_fifteen_seconds() {
        let mut e = Engine::new(EngineConfig::default());
        let mut ev = Vec::new();
        let g = e
            .create_group(0, 0, Contracts::from_whole(100), 0, &mut ev)
            .unwrap();
        e.place_order(&order(&g, "10"), 1_000, &mut ev).unwrap();
        assert_eq!(volume(&mut e, &g, 15_999), "10.00");
        assert_eq!(volume(&mut e, &g, 16_000), "0.00");
    }

    #[test]
    fn exceeds_boundary_trips_above_not_at_the_limit() {
        for (boundary, at_limit_trips) in [
            (TriggerBoundary::Exceeds, false),
            (TriggerBoundary::Reaches, true),
        ] {
            let mut e = Engine::new(EngineConfig {
                boundary,
                ..Default::default()
            });
            let mut ev = Vec::new();
            let g = e
                .create_group(0, 0, Contracts::from_whole(10), 0, &mut ev)
                .unwrap();
            e.place_order(&order(&g, "10"), 1, &mut ev).unwrap();
            assert_eq!(
                e.group_views(1)[0].triggered,
                at_limit_trips,
                "{boundary:?}"
            );
        }
    }

    #[test]
    fn a_stream_only_fill_changes_nothing_but_what_is_published() {
        let mut e = Engine::new(EngineConfig::default());
        let mut ev = Vec::new();
        let g = e
            .create_group(0, 0, Contracts::from_whole(5), 0, &mut ev)
            .unwrap();
        e.set_liquidity("KXTEST-26NOV23", Some(Contracts::ZERO));
        e.place_order(&order(&g, "6"), 1, &mut ev).unwrap();
        let id = match ev.last() {
            Some(Event::UserOrder(u)) if u.status == "resting" => u.order_id.clone(),
            other => panic!("a resting order, not {other:?}"),
        };
        let one = e
            .stream_only_fill(&id, Contracts::from_whole(1), 2)
            .unwrap();
        let two = e
            .stream_only_fill(&id, Contracts::from_whole(1), 3)
            .unwrap();
        assert_eq!(
            (one.order_id.as_str(), one.count_fp.as_str()),
            (id.as_str(), "1.00")
        );
        assert_ne!(one.trade_id, two.trade_id, "each its own trade");
        assert_eq!(two.ts_ms, 3);
        // The exchange's records are as they were: no fill listed, the group's window empty.
        assert!(e.ledger().is_empty());
        assert_eq!(volume(&mut e, &g, 3), "0.00");
        e.fill_resting(&id, Contracts::from_whole(1), 4, &mut ev)
            .unwrap();
        assert_eq!(e.ledger().len(), 1, "a real fill still is");
    }

    #[test]
    fn events_come_in_exchange_order() {
        let mut e = Engine::new(EngineConfig::default());
        let mut ev = Vec::new();
        let g = e
            .create_group(0, 0, Contracts::from_whole(5), 0, &mut ev)
            .unwrap();
        e.place_order(&order(&g, "6"), 1, &mut ev).unwrap();
        let kinds: Vec<String> = ev
            .iter()
            .map(|e| match e {
                Event::Fill(_) => "fill".into(),
                Event::UserOrder(u) => format!("order:{}", u.status),
                Event::GroupUpdate(u) => format!("group:{}", u.event_type),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "group:created",
                "order:resting",
                "fill",
                "order:executed",
                "group:triggered"
            ]
        );
    }
}
