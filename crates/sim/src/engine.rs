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

use std::collections::{HashMap, VecDeque};

use riskd_kalshi::wire::{
    CreateOrderV2Request, CreateOrderV2Response, FillMsg, GetOrderGroupResponse, Order, OrderGroup,
    OrderGroupUpdateMsg, RestFill, UserOrderMsg,
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

    fn cancel_order(&mut self, order_id: &str, now_ms: i64, events: &mut Vec<Event>) {
        if let Some(o) = self.orders.get_mut(order_id)
            && o.status == Status::Resting
        {
            o.status = Status::Canceled;
            o.remaining = Contracts::ZERO;
            o.updated_ms = now_ms;
            let msg = self.user_order_msg(order_id);
            events.extend(msg.map(Event::UserOrder));
        }
    }

    /// Sets the counterparty's liquidity for a ticker; `None` is unlimited.
    pub fn set_liquidity(&mut self, ticker: &str, contracts: Option<Contracts>) {
        match contracts {
            Some(c) => {
                self.liquidity.insert(ticker.to_owned(), c);
            }
            None => {
                self.liquidity.remove(ticker);
            }
        }
    }

    /// `POST /portfolio/events/orders`.
    pub fn place_order(
        &mut self,
        req: &CreateOrderV2Request,
        now_ms: i64,
        events: &mut Vec<Event>,
    ) -> Result<CreateOrderV2Response, EngineError> {
        let invalid = |m: String| EngineError::InvalidOrder(m);
        if req.ticker.is_empty() {
            return Err(invalid("ticker is required".into()));
        }
        let side = match req.side.as_str() {
            "bid" => BookSide::Bid,
            "ask" => BookSide::Ask,
            other => {
                return Err(invalid(format!(
                    "side {other:?}: expected \"bid\" or \"ask\""
                )));
            }
        };
        let count = Contracts::parse(&req.count).map_err(|e| invalid(format!("count: {e}")))?;
        if count <= Contracts::ZERO {
            return Err(invalid("count must be positive".into()));
        }
        let price = Dollars::parse(&req.price).map_err(|e| invalid(format!("price: {e}")))?;
        if price <= Dollars::ZERO || price >= Dollars::ONE {
            return Err(invalid(format!(
                "price {}: must be between 0 and 1 dollar, exclusive",
                req.price
            )));
        }
        let tif = match req.time_in_force.as_str() {
            "fill_or_kill" => Tif::FillOrKill,
            "good_till_canceled" => Tif::GoodTillCanceled,
            "immediate_or_cancel" => Tif::ImmediateOrCancel,
            other => return Err(invalid(format!("time_in_force {other:?} is not supported"))),
        };
        if !matches!(
            req.self_trade_prevention_type.as_str(),
            "taker_at_cross" | "maker"
        ) {
            return Err(invalid(format!(
                "self_trade_prevention_type {:?}: expected \"taker_at_cross\" or \"maker\"",
                req.self_trade_prevention_type
            )));
        }
        let subaccount = check_subaccount(req.subaccount.unwrap_or(0))?;
        let mut exchange_index = match req.exchange_index {
            None | Some(-1) => None,
            Some(i) if i >= 0 => Some(i),
            Some(i) => return Err(invalid(format!("exchange_index {i} is not valid"))),
        };
        if let Some(gid) = &req.order_group_id {
            let g = match self.groups.get(gid) {
                Some(g)
                    if g.subaccount == subaccount
                        && exchange_index.is_none_or(|i| i == g.exchange_index) =>
                {
                    g
                }
                _ => return Err(EngineError::OrderGroupNotFound(gid.clone())),
            };
            if g.triggered {
                return Err(EngineError::GroupTriggered(gid.clone()));
            }
            // Auto-routing puts the order on the group's instance.
            exchange_index = Some(g.exchange_index);
        }
        let id = new_id();
        let order = OrderState {
            id: id.clone(),
            client_order_id: req.client_order_id.clone().unwrap_or_default(),
            ticker: req.ticker.clone(),
            side,
            price,
            initial: count,
            filled: Contracts::ZERO,
            remaining: count,
            status: Status::Resting,
            subaccount,
            exchange_index: exchange_index.unwrap_or(0),
            group: req.order_group_id.clone(),
            stp: req.self_trade_prevention_type.clone(),
            cancel_on_pause: req.cancel_order_on_pause.unwrap_or(false),
            taker_cost: Dollars::ZERO,
            maker_cost: Dollars::ZERO,
            created_ms: now_ms,
            updated_ms: now_ms,
        };
        self.orders.insert(id.clone(), order);
        if let Some(gid) = &req.order_group_id
            && let Some(g) = self.groups.get_mut(gid)
        {
            g.orders.push(id.clone());
        }
        events.extend(self.user_order_msg(&id).map(Event::UserOrder));

        let available = self.liquidity.get(&req.ticker).copied();
        let fillable = if req.post_only.unwrap_or(false) {
            Contracts::ZERO
        } else {
            available.map_or(count, |a| a.min(count).max(Contracts::ZERO))
        };
        let fill_now = match tif {
            Tif::FillOrKill if fillable < count => Contracts::ZERO,
            _ => fillable,
        };
        if fill_now > Contracts::ZERO {
            if let Some(a) = available {
                self.liquidity.insert(req.ticker.clone(), a - fill_now);
            }
            self.execute_fill(&id, fill_now, true, now_ms, events);
        }
        if tif != Tif::GoodTillCanceled {
            self.cancel_order(&id, now_ms, events);
        }
        let o = &self.orders[&id];
        Ok(CreateOrderV2Response {
            order_id: id.clone(),
            client_order_id: req.client_order_id.clone(),
            fill_count: o.filled.to_string(),
            remaining_count: o.remaining.to_string(),
            average_fill_price: (o.filled > Contracts::ZERO).then(|| o.price.to_string_with(4)),
            average_fee_paid: (o.filled > Contracts::ZERO).then(|| "0.0000".to_owned()),
            ts_ms: now_ms,
        })
    }

    /// Fills `count` of a resting order as maker, as if a counterparty had traded with it.
    pub fn fill_resting(
        &mut self,
        order_id: &str,
        count: Contracts,
        now_ms: i64,
        events: &mut Vec<Event>,
    ) -> Result<(), EngineError> {
        let o = self
            .orders
            .get(order_id)
            .ok_or(EngineError::OrderNotFound)?;
        if o.status != Status::Resting {
            return Err(EngineError::NotResting(order_id.to_owned()));
        }
        if count <= Contracts::ZERO || count > o.remaining {
            return Err(EngineError::InvalidParameters(format!(
                "count {count}: must be positive and at most the remaining {}",
                o.remaining
            )));
        }
        self.execute_fill(order_id, count, false, now_ms, events);
        Ok(())
    }

    fn execute_fill(
        &mut self,
        order_id: &str,
        count: Contracts,
        is_taker: bool,
        now_ms: i64,
        events: &mut Vec<Event>,
    ) {
        let Some(o) = self.orders.get_mut(order_id) else {
            return;
        };
        o.filled += count;
        o.remaining -= count;
        let cost = o.price.times(count);
        if is_taker {
            o.taker_cost = o.taker_cost + cost;
        } else {
            o.maker_cost = o.maker_cost + cost;
        }
        o.updated_ms = now_ms;
        if o.remaining == Contracts::ZERO {
            o.status = Status::Executed;
        }
        let (outcome, yes) = match o.side {
            BookSide::Bid => ("yes", true),
            BookSide::Ask => ("no", false),
        };
        let pos = self
            .positions
            .entry((o.subaccount, o.ticker.clone()))
            .or_default();
        if yes {
            *pos += count;
        } else {
            *pos -= count;
        }
        let fill = FillMsg {
            trade_id: new_id(),
            order_id: o.id.clone(),
            client_order_id: Some(o.client_order_id.clone()),
            market_ticker: o.ticker.clone(),
            exchange_index: o.exchange_index,
            is_taker,
            side: Some(outcome.to_owned()),
            yes_price_dollars: o.price.to_string_with(4),
            count_fp: count.to_string(),
            fee_cost: Some("0.000000".to_owned()),
            action: Some("buy".to_owned()),
            ts: Some(now_ms / 1000),
            ts_ms: now_ms,
            post_position_fp: Some(pos.to_string()),
            purchased_side: Some(outcome.to_owned()),
            outcome_side: Some(outcome.to_owned()),
            book_side: Some(if yes { "bid" } else { "ask" }.to_owned()),
            subaccount: Some(o.subaccount),
        };
        let group = o.group.clone();
        if self.fills.len() >= FILL_HISTORY {
            self.fills.pop_front();
        }
        let no_price = Dollars::ONE - o.price;
        self.fills.push_back((
            now_ms,
            RestFill {
                fill_id: new_id(),
                trade_id: fill.trade_id.clone(),
                order_id: fill.order_id.clone(),
                ticker: fill.market_ticker.clone(),
                side: Some(outcome.to_owned()),
                action: Some("buy".to_owned()),
                count_fp: fill.count_fp.clone(),
                yes_price_dollars: fill.yes_price_dollars.clone(),
                no_price_dollars: Some(no_price.to_string_with(4)),
                is_taker,
                created_time: Some(rfc3339(now_ms)),
                ts: Some(now_ms / 1000),
                subaccount: Some(o.subaccount),
            },
        ));
        events.push(Event::Fill(fill));
        events.extend(self.user_order_msg(order_id).map(Event::UserOrder));
        let Some(gid) = group else { return };
        let boundary = self.cfg.boundary;
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        g.expire(now_ms);
        g.window.push_back((now_ms, count));
        g.volume += count;
        if !g.triggered && g.over(boundary) {
            self.trigger(&gid, now_ms, events);
        }
    }

    fn user_order_msg(&self, order_id: &str) -> Option<UserOrderMsg> {
        let o = self.orders.get(order_id)?;
        let (outcome, yes) = match o.side {
            BookSide::Bid => ("yes", true),
            BookSide::Ask => ("no", false),
        };
        Some(UserOrderMsg {
            order_id: o.id.clone(),
            user_id: self.cfg.user_id.clone(),
            ticker: o.ticker.clone(),
            status: o.status.as_str().to_owned(),
            side: Some(outcome.to_owned()),
            is_yes: Some(yes),
            outcome_side: Some(outcome.to_owned()),
            book_side: Some(if yes { "bid" } else { "ask" }.to_owned()),
            yes_price_dollars: Some(o.price.to_string_with(4)),
            fill_count_fp: Some(o.filled.to_string()),
            remaining_count_fp: Some(o.remaining.to_string()),
            initial_count_fp: Some(o.initial.to_string()),
            taker_fill_cost_dollars: Some(o.taker_cost.to_string_with(4)),
            maker_fill_cost_dollars: Some(o.maker_cost.to_string_with(4)),
            taker_fees_dollars: Some("0.0000".to_owned()),
            maker_fees_dollars: Some("0.0000".to_owned()),
            client_order_id: Some(o.client_order_id.clone()),
            created_ts_ms: Some(o.created_ms),
            last_updated_ts_ms: Some(o.updated_ms),
            order_group_id: o.group.clone(),
            self_trade_prevention_type: Some(o.stp.clone()),
            subaccount_number: Some(o.subaccount),
        })
    }

    fn order_wire(&self, o: &OrderState) -> Order {
        let (outcome, yes) = match o.side {
            BookSide::Bid => ("yes", true),
            BookSide::Ask => ("no", false),
        };
        Order {
            order_id: o.id.clone(),
            user_id: self.cfg.user_id.clone(),
            client_order_id: o.client_order_id.clone(),
            ticker: o.ticker.clone(),
            side: Some(outcome.to_owned()),
            action: Some("buy".to_owned()),
            outcome_side: outcome.to_owned(),
            book_side: if yes { "bid" } else { "ask" }.to_owned(),
            order_type: "limit".to_owned(),
            status: o.status.as_str().to_owned(),
            yes_price_dollars: o.price.to_string_with(4),
            no_price_dollars: (Dollars::ONE - o.price).to_string_with(4),
            fill_count_fp: o.filled.to_string(),
            remaining_count_fp: o.remaining.to_string(),
            initial_count_fp: o.initial.to_string(),
            taker_fill_cost_dollars: o.taker_cost.to_string_with(4),
            maker_fill_cost_dollars: o.maker_cost.to_string_with(4),
            taker_fees_dollars: "0.0000".to_owned(),
            maker_fees_dollars: "0.0000".to_owned(),
            created_time: Some(rfc3339(o.created_ms)),
            last_update_time: Some(rfc3339(o.updated_ms)),
            self_trade_prevention_type: Some(o.stp.clone()),
            order_group_id: o.group.clone(),
            cancel_order_on_pause: Some(o.cancel_on_pause),
            subaccount_number: Some(o.subaccount),
            exchange_index: Some(o.exchange_index),
        }
    }

    pub fn get_order(&self, order_id: &str) -> Result<Order, EngineError> {
        self.orders
            .get(order_id)
            .map(|o| self.order_wire(o))
            .ok_or(EngineError::OrderNotFound)
    }

    /// `GET /portfolio/orders`, newest first, optionally by status, ticker and subaccount.
    /// Orders newest first, filtered; the page `from..from + limit`, and whether more follow.
    pub fn list_orders(
        &self,
        status: Option<&str>,
        ticker: Option<&str>,
        subaccount: Option<i64>,
        from: usize,
        limit: usize,
    ) -> (Vec<Order>, bool) {
        let mut os: Vec<&OrderState> = self
            .orders
            .values()
            .filter(|o| status.is_none_or(|s| o.status.as_str() == s))
            .filter(|o| ticker.is_none_or(|t| o.ticker == t))
            .filter(|o| subaccount.is_none_or(|s| o.subaccount == s))
            .collect();
        os.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        let more = os.len() > from.saturating_add(limit);
        let page = os
            .into_iter()
            .skip(from)
            .take(limit)
            .map(|o| self.order_wire(o))
            .collect();
        (page, more)
    }

    /// Fills newest first, filtered as `GET /portfolio/fills` filters them: `min_ts` and
    /// `max_ts` in Unix seconds (inclusive, on the second the fill happened in), a subaccount,
    /// a ticker, an order.
    /// The page `from..from + limit` of them, and whether more follow.
    #[allow(clippy::too_many_arguments)]
    pub fn list_fills(
        &self,
        min_ts: Option<i64>,
        max_ts: Option<i64>,
        subaccount: Option<i64>,
        ticker: Option<&str>,
        order_id: Option<&str>,
        from: usize,
        limit: usize,
    ) -> (Vec<RestFill>, bool) {
        let mut matching = self
            .fills
            .iter()
            .rev()
            .filter(|(ms, _)| min_ts.is_none_or(|t| ms / 1000 >= t))
            .filter(|(ms, _)| max_ts.is_none_or(|t| ms / 1000 <= t))
            .filter(|(_, f)| subaccount.is_none_or(|s| f.subaccount == Some(s)))
            .filter(|(_, f)| ticker.is_none_or(|t| f.ticker == t))
            .filter(|(_, f)| order_id.is_none_or(|o| f.order_id == o))
            .skip(from);
        let page = matching
            .by_ref()
            .take(limit)
            .map(|(_, f)| f.clone())
            .collect();
        (page, matching.next().is_some())
    }

    /// Every fill remembered, oldest first, with the group its order was in: the exchange's
    /// truth, for harnesses that check a client's counts against it.
    pub fn ledger(&self) -> Vec<LedgerFill> {
        self.fills
            .iter()
            .map(|(ts_ms, f)| LedgerFill {
                ts_ms: *ts_ms,
                trade_id: f.trade_id.clone(),
                order_id: f.order_id.clone(),
                group: self.orders.get(&f.order_id).and_then(|o| o.group.clone()),
                subaccount: f.subaccount.unwrap_or(0),
                count: Contracts::parse(&f.count_fp).unwrap_or(Contracts::ZERO),
            })
            .collect()
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
