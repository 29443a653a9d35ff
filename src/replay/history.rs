//! A history of fills to replay, and which strategy each belongs to.
//!
//! Fills come in the exchange's REST shape (`GET /portfolio/fills`): one page (`{"fills":
//! [...]}`), an array of fills, or one fill or page per line, read with the same decoder the
//! daemon's backfills use. A fill may carry `order_group_id` (the REST shape has none; some
//! exports add it). Whatever the order of the input, fills are replayed in exchange-time order
//! (the exchange lists newest first); a `trade_id` seen twice is replayed once.
//!
//! A fill reaches a strategy the way the daemon maps it: by its order's group (from the fill,
//! or from the orders read with it) when the group is one of a strategy's in `state.json`. An
//! order read in no group is unmapped, as live. Only when the order is not known at all (a
//! file of fills alone) does its subaccount decide, when exactly one strategy trades there.
//! Anything else is unmapped: counted against the account limit as the daemon counts it, and
//! reported with the reason.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::kalshi::GroupId;
use crate::kalshi::wire::RestFill;
use crate::risk::{Contracts, Dollars};

/// One fill of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryFill {
    pub trade_id: String,
    pub order_id: String,
    pub ts_ms: i64,
    pub count: Contracts,
    /// The price paid per contract.
    pub price: Dollars,
    pub subaccount: Option<u8>,
    /// The order's group, when the input says.
    pub group: Option<GroupId>,
    /// Where the daemon counted it, when the input is its audit log.
    pub live: Option<Route>,
}

impl HistoryFill {
    /// From the exchange's REST shape; why not, when it cannot be read.
    pub fn from_rest(f: &RestFill, group: Option<GroupId>) -> Result<HistoryFill, String> {
        let fill = crate::kalshi::rest::rest_fill(f)?;
        Ok(HistoryFill {
            price: fill.price_paid(),
            trade_id: fill.trade_id,
            order_id: fill.order_id,
            ts_ms: fill.ts_ms,
            count: fill.count,
            subaccount: fill.subaccount,
            group,
            live: None,
        })
    }
}

/// A fill of the input that was not replayed, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// `FILE:LINE` (or `exchange`).
    pub at: String,
    pub trade_id: String,
    pub reason: String,
}

/// The history, in exchange-time order, and what reading it found.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub fills: Vec<HistoryFill>,
    /// Fills that could not be read (only with `skip_bad`; otherwise they are errors).
    pub skipped: Vec<Skipped>,
    /// Fills given more than once (same `trade_id`): replayed once.
    pub duplicates: u64,
    /// Fills that came after a later one in the input: replayed in time order all the same.
    pub out_of_order: u64,
}

impl History {
    /// Puts fills in time order (stable: equal times keep the input's order) and drops
    /// repeated trade ids, counting both.
    pub fn from_fills(fills: Vec<HistoryFill>, skipped: Vec<Skipped>) -> History {
        let out_of_order = fills.windows(2).filter(|w| w[1].ts_ms < w[0].ts_ms).count() as u64;
        let mut seen = HashSet::new();
        let before = fills.len();
        let mut fills: Vec<HistoryFill> = fills
            .into_iter()
            .filter(|f| seen.insert(f.trade_id.clone()))
            .collect();
        let duplicates = (before - fills.len()) as u64;
        fills.sort_by_key(|f| f.ts_ms);
        History {
            fills,
            skipped,
            duplicates,
            out_of_order,
        }
    }
}

/// Reads fills in the REST shape from `path` (see the module's doc). A line that is not JSON
/// is an error naming it; a fill that cannot be read is an error too, or, with `skip_bad`, a
/// skip the report lists.
pub fn read_rest_file(path: &Path, skip_bad: bool) -> Result<History, String> {
    let name = path.display().to_string();
    let mut fills = Vec::new();
    let mut skipped = Vec::new();
    for (line, i, item) in items(path, "fills")? {
        let trade_id = item["trade_id"].as_str().unwrap_or("?").to_owned();
        let group = item["order_group_id"]
            .as_str()
            .filter(|g| !g.is_empty())
            .map(GroupId::new);
        let read = serde_json::from_value::<RestFill>(item)
            .map_err(|e| e.to_string())
            .and_then(|f| HistoryFill::from_rest(&f, group));
        match read {
            Ok(f) => fills.push(f),
            Err(why) => {
                let at = format!("{name}:{line} (fill {})", i + 1);
                if !skip_bad {
                    return Err(format!(
                        "{at}, trade {trade_id}: {why} (--skip-bad replays the rest and lists it)"
                    ));
                }
                skipped.push(Skipped {
                    at,
                    trade_id,
                    reason: why,
                });
            }
        }
    }
    Ok(History::from_fills(fills, skipped))
}

/// Reads orders in the REST shape (`GET /portfolio/orders`: pages, arrays or one per line)
/// from `path`: each order's group, for the fills that do not say theirs.
pub fn read_orders_file(path: &Path) -> Result<HashMap<String, Option<GroupId>>, String> {
    let name = path.display().to_string();
    let mut out = HashMap::new();
    for (line, i, item) in items(path, "orders")? {
        let Some(order) = item["order_id"].as_str() else {
            return Err(format!("{name}:{line} (order {}): no order_id", i + 1));
        };
        let group = item["order_group_id"]
            .as_str()
            .filter(|g| !g.is_empty())
            .map(GroupId::new);
        out.insert(order.to_owned(), group);
    }
    Ok(out)
}

/// The objects of a file of pages (`{"KEY": [...]}`), arrays or single objects, one or more
/// per line: `(line, place in its page, object)`.
fn items(path: &Path, key: &str) -> Result<Vec<(usize, usize, Value)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.display().to_string();
    let mut out = Vec::new();
    let mut values = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
    loop {
        let start = values.byte_offset();
        let value = match values.next() {
            None => break,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Err(format!(
                    "{name}:{}: not JSON ({e}): expected {key} in the exchange's REST shape",
                    e.line()
                ));
            }
        };
        // The line where this value starts (after the whitespace before it).
        let rest = &text[start..];
        let at = start + rest.len() - rest.trim_start().len();
        let line = text[..at].matches('\n').count() + 1;
        let list = match value {
            Value::Array(a) => a,
            Value::Object(mut o) if o.contains_key(key) => match o.remove(key) {
                Some(Value::Array(a)) => a,
                _ => return Err(format!("{name}:{line}: \"{key}\" is not an array")),
            },
            v @ Value::Object(_) => vec![v],
            other => {
                return Err(format!(
                    "{name}:{line}: expected an object, an array or a page of {key}, found {}",
                    kind(&other)
                ));
            }
        };
        out.extend(list.into_iter().enumerate().map(|(i, v)| (line, i, v)));
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the fills the daemon recorded in its audit log (`state.audit_fills = true`): `fill`
/// lines, counted against the strategy they name, and `unmapped_fill` lines that carry their
/// fill. Other lines are decisions, not history, and are passed over. A line that is not JSON
/// or a fill record that cannot be read is an error naming it, or with `skip_bad` a listed
/// skip; a log without a single fill is an error that says why.
pub fn read_audit_files(paths: &[std::path::PathBuf], skip_bad: bool) -> Result<History, String> {
    use crate::risk::engine::{DecisionKind, FillRecord};
    let mut fills = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!("{name}: {e} (a compressed rotated log must be uncompressed first)")
        })?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = format!("{name}:{}", i + 1);
            let v: Value = serde_json::from_str(line).map_err(|e| {
                format!("{at}: not JSON ({e}): expected a line of the daemon's audit log")
            })?;
            let event: Option<DecisionKind> = serde_json::from_value(v["event"].clone()).ok();
            let live = match event {
                Some(DecisionKind::Fill) => match v["strategy"].as_str() {
                    Some(s) => Route::Strategy(s.to_owned()),
                    None => Route::Unmapped("a fill line without a strategy".into()),
                },
                // The line's reason names the fill and its order: the report counts them
                // together.
                Some(DecisionKind::UnmappedFill) if !v["fill"].is_null() => {
                    Route::Unmapped("unmapped by the daemon (its audit log says why)".into())
                }
                _ => continue,
            };
            let trade_id = v["fill"]["trade_id"].as_str().unwrap_or("?").to_owned();
            match serde_json::from_value::<FillRecord>(v["fill"].clone()) {
                Ok(f) => fills.push(HistoryFill {
                    trade_id: f.trade_id,
                    order_id: f.order_id,
                    ts_ms: f.ts_ms,
                    count: f.count,
                    price: f.price,
                    subaccount: None,
                    group: v["group_id"].as_str().map(GroupId::new),
                    live: Some(live),
                }),
                Err(e) if skip_bad => skipped.push(Skipped {
                    at,
                    trade_id,
                    reason: e.to_string(),
                }),
                Err(e) => {
                    return Err(format!(
                        "{at}, trade {trade_id}: {e} (--skip-bad replays the rest and lists it)"
                    ));
                }
            }
        }
    }
    if fills.is_empty() && skipped.is_empty() {
        return Err(format!(
            "{}: no fill recorded: the daemon writes its fills to audit.jsonl only with \
             state.audit_fills = true",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(History::from_fills(fills, skipped))
}

/// How fills reach strategies.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// The strategies replayed (a fill the audit log counted against another is unmapped).
    pub strategies: std::collections::BTreeSet<String>,
    /// Each strategy's groups (from `state.json`; a group of a strategy not among
    /// `strategies` makes its fills unmapped).
    pub groups: HashMap<GroupId, String>,
    /// Orders read with the fills, with their group (`None`: in no group).
    pub orders: HashMap<String, Option<GroupId>>,
    /// Strategies by subaccount.
    pub subaccounts: BTreeMap<u8, Vec<String>>,
}

/// Where a fill goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Strategy(String),
    /// Counted against the account limit only; the reason is reported.
    Unmapped(String),
}

impl Mapping {
    pub fn route(&self, f: &HistoryFill) -> Route {
        match &f.live {
            Some(Route::Strategy(s)) if self.strategies.contains(s) => {
                return Route::Strategy(s.clone());
            }
            Some(Route::Strategy(s)) => {
                return Route::Unmapped(format!(
                    "counted live against {s}, which is not among the policies replayed"
                ));
            }
            Some(unmapped) => return unmapped.clone(),
            None => {}
        }
        let group = match (&f.group, self.orders.get(&f.order_id)) {
            (Some(g), _) | (None, Some(Some(g))) => Some(g),
            // The order is known and in no group: unmapped, as the daemon has it.
            (None, Some(None)) => {
                return Route::Unmapped("its order is in no order group".into());
            }
            (None, None) => None,
        };
        if let Some(g) = group {
            return match self.groups.get(g) {
                Some(s) if self.strategies.contains(s) => Route::Strategy(s.clone()),
                // state.json names strategies that may not be among those replayed.
                Some(s) => Route::Unmapped(format!(
                    "in a group of {s}, which is not among the policies replayed"
                )),
                None => Route::Unmapped(format!("in group {g}, no strategy's")),
            };
        }
        // A fill that names no subaccount is the primary account's (0).
        let sub = f.subaccount.unwrap_or(0);
        match self.subaccounts.get(&sub).map(Vec::as_slice) {
            Some([one]) => Route::Strategy(one.clone()),
            Some(many) if !many.is_empty() => Route::Unmapped(format!(
                "subaccount {sub} has {} strategies ({}) and the fill's group is not known",
                many.len(),
                many.join(", ")
            )),
            _ => Route::Unmapped(format!("subaccount {sub}: no strategy trades there")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fills.json");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    fn fill(trade: &str, time: &str, count: &str) -> String {
        format!(
            r#"{{"trade_id":"{trade}","order_id":"o-{trade}","ticker":"KX","side":"yes","count_fp":"{count}","yes_price_dollars":"0.40","created_time":"{time}"}}"#
        )
    }

    #[test]
    fn pages_arrays_and_lines_are_read_in_time_order_and_repeats_once() {
        let a = fill("a", "2026-11-23T10:00:02Z", "1.00");
        let b = fill("b", "2026-11-23T10:00:01Z", "2.00");
        let c = fill("c", "2026-11-23T10:00:03Z", "3.00");
        let text = format!("{{\"fills\":[{a},{b}],\"cursor\":\"x\"}}\n[{c}]\n{a}\n");
        let (_d, p) = write(&text);
        let h = read_rest_file(&p, false).unwrap();
        let ids: Vec<&str> = h.fills.iter().map(|f| f.trade_id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
        assert_eq!((h.duplicates, h.out_of_order), (1, 2));
        // YES bought at $0.40: the price paid is $0.40.
        assert_eq!(h.fills[0].price, Dollars::parse("0.40").unwrap());
    }

    #[test]
    fn a_line_that_is_not_json_is_an_error_naming_it() {
        let a = fill("a", "2026-11-23T10:00:02Z", "1.00");
        let (_d, p) = write(&format!("{a}\n{{\"trade_id\": oops}}\n"));
        let e = read_rest_file(&p, false).unwrap_err();
        assert!(e.contains("fills.json:2: not JSON"), "{e}");
    }

    #[test]
    fn an_unreadable_fill_is_an_error_or_with_skip_bad_a_listed_skip() {
        let a = fill("a", "2026-11-23T10:00:02Z", "1.00");
        let bad = fill("b", "2026-11-23T10:00:03Z", "lots");
        let (_d, p) = write(&format!("{a}\n{bad}\n"));
        let e = read_rest_file(&p, false).unwrap_err();
        assert!(
            e.contains("fills.json:2 (fill 1), trade b: count_fp"),
            "{e}"
        );
        let h = read_rest_file(&p, true).unwrap();
        assert_eq!(h.fills.len(), 1);
        assert_eq!(h.skipped.len(), 1);
        assert!(
            h.skipped[0].reason.starts_with("count_fp"),
            "{:?}",
            h.skipped
        );
    }

    #[test]
    fn fills_map_by_group_then_by_a_subaccount_with_one_strategy() {
        let mut m = Mapping::default();
        m.groups.insert(GroupId::new("g1"), "alpha".into());
        m.groups.insert(GroupId::new("g2"), "retired".into());
        for s in ["alpha", "beta", "gamma"] {
            m.strategies.insert(s.into());
        }
        m.orders.insert("o-known".into(), Some(GroupId::new("g1")));
        m.orders.insert("o-loose".into(), None);
        m.subaccounts.insert(0, vec!["alpha".into(), "beta".into()]);
        m.subaccounts.insert(2, vec!["gamma".into()]);
        let f = |order: &str, sub: Option<u8>, group: Option<&str>| HistoryFill {
            trade_id: "t".into(),
            order_id: order.into(),
            ts_ms: 0,
            count: Contracts::from_whole(1),
            price: Dollars::ONE,
            subaccount: sub,
            group: group.map(GroupId::new),
            live: None,
        };
        let strategy = |s: &str| Route::Strategy(s.into());
        assert_eq!(m.route(&f("o-known", None, None)), strategy("alpha"));
        assert_eq!(m.route(&f("x", None, Some("g1"))), strategy("alpha"));
        assert_eq!(m.route(&f("x", Some(2), None)), strategy("gamma"));
        let unmapped = |r: Route| match r {
            Route::Unmapped(why) => why,
            Route::Strategy(s) => panic!("mapped to {s}"),
        };
        assert!(unmapped(m.route(&f("o-loose", Some(2), None))).contains("no order group"));
        assert!(unmapped(m.route(&f("x", None, Some("g9")))).contains("g9"));
        assert!(unmapped(m.route(&f("x", None, Some("g2")))).contains("retired, which is not"));
        assert!(unmapped(m.route(&f("x", None, None))).contains("alpha, beta"));
        assert!(unmapped(m.route(&f("x", Some(5), None))).contains("subaccount 5"));
    }
}
