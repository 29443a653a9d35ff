//! Orders and fills: order entry, the built-in counterparty, resting orders filled on request,
//! and the account's orders and fills read back.

use riskd_kalshi::wire::{
    CreateOrderV2Request, CreateOrderV2Response, FillMsg, Order, RestFill, UserOrderMsg,
};
use riskd_units::{Contracts, Dollars};

use super::{
    BookSide, Engine, EngineError, Event, FILL_HISTORY, LedgerFill, OrderState, Status, Tif,
    check_subaccount, new_id, rfc3339,
};

impl Engine {
    pub(super) fn cancel_order(&mut self, order_id: &str, now_ms: i64, events: &mut Vec<Event>) {
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
        let o = self.resting(order_id)?;
        if count <= Contracts::ZERO || count > o.remaining {
            return Err(EngineError::InvalidParameters(format!(
                "count {count}: must be positive and at most the remaining {}",
                o.remaining
            )));
        }
        self.execute_fill(order_id, count, false, now_ms, events);
        Ok(())
    }

    /// The group of the order `order_id`, if it has one.
    pub fn order_group(&self, order_id: &str) -> Option<&str> {
        self.orders.get(order_id)?.group.as_deref()
    }

    /// The order `order_id`, if it rests on the book.
    fn resting(&self, order_id: &str) -> Result<&OrderState, EngineError> {
        let o = self
            .orders
            .get(order_id)
            .ok_or(EngineError::OrderNotFound)?;
        if o.status != Status::Resting {
            return Err(EngineError::NotResting(order_id.to_owned()));
        }
        Ok(o)
    }

    pub(super) fn execute_fill(
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
        let fill = fill_msg(o, count, is_taker, now_ms, *pos);
        let group = o.group.clone();
        if self.fills.len() >= FILL_HISTORY {
            self.fills.pop_front();
            self.fills_dropped += 1;
        }
        if self.fills.back().is_some_and(|(last, _)| *last > now_ms) {
            self.fills_unordered = true;
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

    /// A fill of `count` contracts of the resting order `order_id` as the fill stream shows one,
    /// made nowhere else: the order, the position, the group's window and the fills list stay
    /// as they were.
    pub fn stream_only_fill(
        &self,
        order_id: &str,
        count: Contracts,
        now_ms: i64,
    ) -> Result<FillMsg, EngineError> {
        let o = self.resting(order_id)?;
        let pos = self
            .positions
            .get(&(o.subaccount, o.ticker.clone()))
            .copied()
            .unwrap_or(Contracts::ZERO);
        Ok(fill_msg(o, count, false, now_ms, pos))
    }

    pub(super) fn user_order_msg(&self, order_id: &str) -> Option<UserOrderMsg> {
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

    pub(super) fn order_wire(&self, o: &OrderState) -> Order {
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
    /// a ticker, an order. A page of up to `limit` of them from below the position `before`
    /// (all when `None`), and the position to go on from when more follow. Positions count
    /// fills from the first ever made, so a page's cursor still points to the same place when
    /// newer fills arrive in between; a page costs its own length and the fills it passes over,
    /// never the whole history.
    #[allow(clippy::too_many_arguments)]
    pub fn list_fills(
        &self,
        min_ts: Option<i64>,
        max_ts: Option<i64>,
        subaccount: Option<i64>,
        ticker: Option<&str>,
        order_id: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> (Vec<RestFill>, Option<u64>) {
        let dropped = self.fills_dropped;
        let mut hi = before.map_or(self.fills.len(), |b| {
            b.saturating_sub(dropped).min(self.fills.len() as u64) as usize
        });
        let mut lo = 0;
        if !self.fills_unordered {
            let second = |(ms, _): &(i64, RestFill)| ms.div_euclid(1000);
            if let Some(t) = min_ts {
                lo = self.fills.partition_point(|f| second(f) < t);
            }
            if let Some(t) = max_ts {
                hi = hi.min(self.fills.partition_point(|f| second(f) <= t));
            }
        }
        let mut matching = (lo..hi.max(lo)).rev().filter(|&i| {
            let (ms, f) = &self.fills[i];
            min_ts.is_none_or(|t| ms.div_euclid(1000) >= t)
                && max_ts.is_none_or(|t| ms.div_euclid(1000) <= t)
                && subaccount.is_none_or(|s| f.subaccount == Some(s))
                && ticker.is_none_or(|t| f.ticker == t)
                && order_id.is_none_or(|o| f.order_id == o)
        });
        let mut page = Vec::new();
        let mut last = 0;
        for i in matching.by_ref() {
            page.push(self.fills[i].1.clone());
            last = i;
            if page.len() == limit {
                break;
            }
        }
        let more = page.len() == limit && matching.next().is_some();
        (page, more.then(|| dropped + last as u64))
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
}

/// The fill stream's message for `count` contracts of `o` filled at `now_ms`, the position
/// standing at `pos` after it.
fn fill_msg(
    o: &OrderState,
    count: Contracts,
    is_taker: bool,
    now_ms: i64,
    pos: Contracts,
) -> FillMsg {
    let (outcome, yes) = match o.side {
        BookSide::Bid => ("yes", true),
        BookSide::Ask => ("no", false),
    };
    FillMsg {
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
    }
}
