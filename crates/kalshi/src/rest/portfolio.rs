//! Reading the account back: an order's group, fills and orders, a page at a time.

use super::{Bill, RestClient};
use crate::error::ExchangeError;
use crate::group::{GroupId, OrderInfo};
use crate::op::Op;
use crate::wire;
use riskd_units::Contracts;

pub(super) fn order_info(o: wire::Order) -> OrderInfo {
    OrderInfo {
        order_id: o.order_id,
        group_id: o.order_group_id.filter(|g| !g.is_empty()).map(GroupId::new),
        status: o.status,
        ticker: o.ticker,
        subaccount: o.subaccount_number.and_then(|s| u8::try_from(s).ok()),
    }
}

/// A listed fill (`GET /portfolio/fills`) in the stream's terms, bounded as the stream decoder
/// bounds it; why not, when it cannot be read.
pub fn rest_fill(f: &wire::RestFill) -> Result<crate::ws::Fill, String> {
    listed_fill(wire::read::ListedFill::from(f))
}

fn listed_fill(f: wire::read::ListedFill<'_>) -> Result<crate::ws::Fill, String> {
    use riskd_units::Dollars;
    let count = Contracts::parse(f.count_fp.as_str()).map_err(|e| format!("count_fp: {e}"))?;
    let yes_price = Dollars::parse(f.yes_price_dollars.as_str())
        .map_err(|e| format!("yes_price_dollars: {e}"))?;
    if count > crate::ws::MAX_FILL_COUNT || yes_price > Dollars::ONE || f.trade_id.0.is_empty() {
        return Err(format!(
            "implausible: {count} contracts at {yes_price}, trade id {:?}",
            f.trade_id.as_str()
        ));
    }
    let ts_ms = f
        .created_time
        .as_ref()
        .and_then(|t| humantime::parse_rfc3339_weak(t.as_str()).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .or(f.ts.map(|s| s.saturating_mul(1000)))
        .ok_or("no created_time or ts")?;
    Ok(crate::ws::Fill {
        trade_id: f.trade_id.0.into_owned(),
        order_id: f.order_id.0.into_owned(),
        ticker: f.ticker.0.into_owned(),
        count,
        yes_price,
        ts_ms,
        subaccount: f.subaccount.and_then(|s| u8::try_from(s).ok()),
        exchange_index: 0,
        bought_yes: f.side.as_ref().and_then(|s| match s.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        }),
    })
}

/// The path of a page of `GET /portfolio/fills`.
fn fills_path(min_ts: i64, subaccount: Option<u8>, cursor: &str) -> String {
    let mut path = format!("/portfolio/fills?limit=1000&min_ts={}", min_ts.max(0));
    if let Some(s) = subaccount {
        path.push_str(&format!("&subaccount={s}"));
    }
    if !cursor.is_empty() {
        path.push_str(&format!("&cursor={cursor}"));
    }
    path
}

impl RestClient {
    /// An order's group and status (read budget).
    pub async fn get_order(&self, order_id: &str) -> Result<OrderInfo, ExchangeError> {
        let path = format!("/portfolio/orders/{order_id}");
        let r: wire::GetOrderResponse = self
            .get_json(Op::GetOrder.as_str(), &path, Bill::Read)
            .await?;
        Ok(order_info(r.order))
    }

    /// The account's fills from `min_ts` (Unix seconds) on, oldest first, read from
    /// `GET /portfolio/fills` a page of 1,000 at a time following cursors (read budget). With
    /// `subaccount`, that subaccount's only. A fill that cannot be read or is implausible (as
    /// the stream decoder judges it) is left out and logged. Times come from `created_time`
    /// (to the millisecond) or, failing that, `ts` (to the second).
    pub async fn list_fills(
        &self,
        min_ts: i64,
        subaccount: Option<u8>,
    ) -> Result<Vec<crate::ws::Fill>, ExchangeError> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let body = self
                .get_bytes(
                    Op::ListFills.as_str(),
                    &fills_path(min_ts, subaccount, &cursor),
                    Bill::Read,
                )
                .await?;
            let r: wire::read::FillsPage = Self::decode(Op::ListFills.as_str(), &body)?;
            for f in r.fills {
                let trade_id = f.trade_id.clone();
                match listed_fill(f) {
                    Ok(fill) => out.push(fill),
                    Err(why) => {
                        tracing::warn!(trade_id = %trade_id.as_str(), reason = %why, "a listed fill could not be read; left out")
                    }
                }
            }
            if r.cursor.is_empty() || r.cursor == cursor {
                break;
            }
            cursor = r.cursor;
        }
        // Pages come newest first: turned around, fills of the same millisecond keep the
        // exchange's order through the (stable) sort.
        out.reverse();
        out.sort_by_key(|f| f.ts_ms);
        Ok(out)
    }

    /// One page of the account's fills from `min_ts` (Unix seconds) on, as the exchange gives
    /// it (up to 1,000, newest first), and the next page's cursor (empty after the last); with
    /// `subaccount`, that subaccount's only (read budget).
    pub async fn fills_page(
        &self,
        min_ts: i64,
        subaccount: Option<u8>,
        cursor: &str,
    ) -> Result<wire::GetFillsResponse, ExchangeError> {
        let path = fills_path(min_ts, subaccount, cursor);
        self.get_json(Op::ListFills.as_str(), &path, Bill::Read)
            .await
    }

    /// One page of orders, newest first (read budget): the orders and the next page's cursor
    /// (empty after the last).
    pub async fn orders_page(
        &self,
        cursor: &str,
    ) -> Result<(Vec<OrderInfo>, String), ExchangeError> {
        let mut path = "/portfolio/orders?limit=1000".to_owned();
        if !cursor.is_empty() {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let r: wire::GetOrdersResponse = self
            .get_json(Op::ListOrders.as_str(), &path, Bill::Read)
            .await?;
        Ok((r.orders.into_iter().map(order_info).collect(), r.cursor))
    }

    /// Orders, newest first, optionally only those with `status` (read budget). Follows the
    /// exchange's cursors to the last page (an empty cursor), a page of 1,000 at a time.
    pub async fn list_orders(&self, status: Option<&str>) -> Result<Vec<OrderInfo>, ExchangeError> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let mut path = "/portfolio/orders?limit=1000".to_owned();
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            if !cursor.is_empty() {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let r: wire::GetOrdersResponse = self
                .get_json(Op::ListOrders.as_str(), &path, Bill::Read)
                .await?;
            out.extend(r.orders.into_iter().map(order_info));
            if r.cursor.is_empty() || r.cursor == cursor {
                return Ok(out);
            }
            cursor = r.cursor;
        }
    }
}
