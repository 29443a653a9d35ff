//! Fills: deduplication, routing an order's fills to its strategy and group, counting them
//! against the windows, and backfills of fills the stream missed.

use rustc_hash::FxHashSet as HashSet;

use super::{
    BACKFILL_MARGIN_MS, Command, DAEMON, DEDUP_RETENTION_MS, DecisionKind, Fill,
    ORDER_RETENTION_MS, Output, RiskEngine, SWEEP_REASON, decision,
};
use crate::guard::{FillOutcome, TripReason, WarnChange};
use crate::ids::GroupId;
use crate::kill::KillRecord;
use crate::limits::{Level, Usage};

/// An order's route: its group as the exchange told it (`None`: in no group), so a reload that
/// moves strategies re-points nothing; and, as a cache, where that group sat among the
/// strategies' groups when last looked up (valid while [`RiskEngine`]'s `group_moves` is still
/// `placed_at`).
#[derive(Debug)]
pub(super) struct Route {
    group: Option<GroupId>,
    seen_ms: i64,
    place: Option<(usize, usize)>,
    placed_at: u64,
}

/// Why an order's fills are unmapped, for the record.
pub(super) fn unmanaged_reason(order_id: &str, group: &Option<GroupId>) -> String {
    match group {
        Some(g) => format!("order {order_id} is in group {g}, which the daemon does not manage"),
        None => format!("order {order_id} is in no order group"),
    }
}

/// Deduplication of `trade_id`s, bounded by time: two generations of ids, each covering half
/// the retention. A lookup checks both; an insert goes to the newest; when the newest is half
/// a retention old, the oldest is dropped whole, with no per-id expiry work. An id is
/// remembered for at least half of [`DEDUP_RETENTION_MS`] after it was counted (one counted just
/// before a rotation lives one more generation), usually longer; generations turn only as
/// fills arrive. A backfill's overlap does not rely on this: the fills of its re-read margin
/// are also remembered by exchange time (`tail`).
#[derive(Debug, Default)]
pub(super) struct Seen {
    current: HashSet<u128>,
    previous: HashSet<u128>,
    current_since: Option<i64>,
}

/// A `trade_id` as a 128-bit key: the UUID's own bits, or a hash of anything else.
pub(super) fn trade_key(id: &str) -> u128 {
    let mut v: u128 = 0;
    let mut digits = 0usize;
    for b in id.bytes() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            b'-' => continue,
            _ => {
                digits = usize::MAX;
                break;
            }
        };
        digits += 1;
        if digits > 32 {
            break;
        }
        v = (v << 4) | d as u128;
    }
    if digits == 32 {
        return v;
    }
    use std::hash::{BuildHasher, Hasher};
    // Not a UUID: two independent 64-bit hashes with fixed keys, stable across runs, with
    // the top bit set (a UUID key could only meet one by chance).
    let h = |seed: u64| {
        let mut s =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .build_hasher();
        s.write_u64(seed);
        s.write(id.as_bytes());
        s.finish()
    };
    (((h(0x9e37_79b9) as u128) << 64) | h(0x85eb_ca6b) as u128) | (1 << 127)
}

impl Seen {
    /// True when the key (see [`trade_key`]) is new.
    #[inline]
    pub(super) fn insert_key(&mut self, key: u128, now_ms: i64) -> bool {
        let since = *self.current_since.get_or_insert(now_ms);
        if now_ms - since >= DEDUP_RETENTION_MS / 2 {
            // Size the new generation like the last one, so it does not rehash as it fills.
            let fresh = HashSet::with_capacity_and_hasher(self.current.len(), Default::default());
            self.previous = std::mem::replace(&mut self.current, fresh);
            self.current_since = Some(now_ms);
        }
        !self.previous.contains(&key) && self.current.insert(key)
    }
}

impl RiskEngine {
    pub(super) fn on_backfill(
        &mut self,
        fills: Vec<Fill>,
        since_ms: i64,
        reason: &str,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        if reason == SWEEP_REASON {
            self.sweep_answered();
        }
        let (listed, before) = (fills.len(), self.counters.fills);
        let parked_before = self.parked.values().map(Vec::len).sum::<usize>();
        let trips_before = out
            .iter()
            .filter(|o| matches!(o, Output::Decision(d) if d.event == DecisionKind::Trip))
            .count();
        for f in fills {
            let key = trade_key(&f.trade_id);
            if self.tail_keys.contains(&key) {
                self.counters.duplicate_fills += 1;
                continue;
            }
            self.on_fill(f, now_ms, out);
        }
        let new = self.counters.fills - before;
        self.counters.backfilled_fills += new;
        let trips = out
            .iter()
            .filter(|o| matches!(o, Output::Decision(d) if d.event == DecisionKind::Trip))
            .count()
            - trips_before;
        let parked = self
            .parked
            .values()
            .map(Vec::len)
            .sum::<usize>()
            .saturating_sub(parked_before);
        if reason == SWEEP_REASON && new == 0 && parked == 0 {
            return;
        }
        out.push(Output::Decision(decision(
            now_ms,
            DecisionKind::Backfill,
            format!(
                "{reason}: {listed} fills since {since_ms} read back, {new} not seen before ({parked} waiting for their order's group, counted when it is known), {trips} trip(s) at once"
            ),
            DAEMON,
        )));
    }

    pub(super) fn on_backfill_failed(
        &mut self,
        reason: &str,
        unknown: bool,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        self.counters.backfill_failures += 1;
        out.push(Output::Decision(decision(
            now_ms,
            DecisionKind::BackfillFailed,
            format!("fills could not be read back: {reason}; windows may be short"),
            DAEMON,
        )));
        if !unknown {
            return;
        }
        for s in &mut self.strategies {
            if s.become_unknown() {
                let mut d = decision(
                    now_ms,
                    DecisionKind::Settled,
                    "state unknown: its windows may be short of fills the exchange could not give back; still guarded, never auto-reset until settled",
                    DAEMON,
                );
                d.strategy = Some(s.policy.name.clone());
                out.push(Output::Decision(d));
            }
        }
    }

    pub(super) fn on_fill(&mut self, f: Fill, now_ms: i64, out: &mut Vec<Output>) {
        let key = trade_key(&f.trade_id);
        if !self.seen.insert_key(key, now_ms) {
            self.counters.duplicate_fills += 1;
            return;
        }
        // The margin a backfill re-reads is remembered by exchange time too.
        let newest = self.last_fill_ms.map_or(f.ts_ms, |l| l.max(f.ts_ms));
        self.last_fill_ms = Some(newest);
        self.tail.push_back((f.ts_ms, key));
        self.tail_keys.insert(key);
        while let Some(&(ts, old)) = self.tail.front() {
            if ts >= newest - BACKFILL_MARGIN_MS {
                break;
            }
            self.tail.pop_front();
            self.tail_keys.remove(&old);
        }
        self.counters.fills += 1;
        self.counters.filled_contracts += f.count;
        let usage = Usage {
            contracts: f.count,
            notional: f.price.times(f.count),
            fills: 1,
        };
        if let Some(account) = &mut self.account {
            account.add(f.ts_ms, usage);
            if self.account_active
                && !self.kill.is_engaged()
                && account.level(now_ms) == Level::Breached
            {
                let evidence = account.evidence(now_ms);
                self.engage_kill(
                    KillRecord {
                        at_ms: now_ms,
                        actor: DAEMON.to_owned(),
                        reason: format!("account limit {} exceeded", evidence.limit),
                        evidence: Some(evidence),
                        shared: false,
                    },
                    now_ms,
                    out,
                );
            }
        }
        let moves = self.group_moves;
        let route = self.routes.get_mut(&f.order_id).map(|r| {
            if r.placed_at != moves {
                r.place = r.group.as_ref().and_then(|g| self.groups.get(g)).copied();
                r.placed_at = moves;
            }
            r.place
                .ok_or_else(|| unmanaged_reason(&f.order_id, &r.group))
        });
        match route {
            Some(Ok((strategy, group))) => self.apply(strategy, group, &f, usage, now_ms, out),
            Some(Err(why)) => {
                let group = self.routes.get(&f.order_id).and_then(|r| r.group.clone());
                self.not_ours(&f, group.as_ref(), &why, now_ms, out)
            }
            None => {
                let parked = self.parked.entry(f.order_id.clone()).or_default();
                if parked.is_empty() {
                    out.push(Output::Command(Command::LookupOrder {
                        order_id: f.order_id.clone(),
                    }));
                }
                parked.push(f);
            }
        }
    }

    pub(super) fn apply(
        &mut self,
        strategy: usize,
        group: usize,
        f: &Fill,
        usage: Usage,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let s = &mut self.strategies[strategy];
        if self.cfg.audit_fills {
            let mut d = decision(
                now_ms,
                DecisionKind::Fill,
                format!("fill {} ({} contracts) counted", f.trade_id, f.count),
                DAEMON,
            );
            d.strategy = Some(s.policy.name.clone());
            d.group_id = s.groups.get(group).map(|g| g.id.clone());
            d.fill = Some(Box::new(f.into()));
            out.push(Output::Decision(d));
        }
        match s.add_fill(group, f.ts_ms, usage, now_ms) {
            FillOutcome::Quiet => {}
            FillOutcome::Breached(evidence) => {
                let detail = format!("limit {} exceeded", evidence.limit);
                self.trip(
                    strategy,
                    TripReason::Limit,
                    DAEMON,
                    detail,
                    Some(evidence),
                    now_ms,
                    out,
                );
            }
            FillOutcome::WarningsChanged => self.record_warnings(strategy, now_ms, out),
        }
    }

    pub(super) fn record_warnings(&mut self, strategy: usize, now_ms: i64, out: &mut Vec<Output>) {
        let s = &mut self.strategies[strategy];
        for change in s.warn_changes(now_ms) {
            let mut d = match change {
                WarnChange::Raised(e) => {
                    let mut d = decision(
                        now_ms,
                        DecisionKind::Warn,
                        format!("limit {} above its warn ratio", e.limit),
                        DAEMON,
                    );
                    d.evidence = Some(e);
                    d
                }
                WarnChange::Cleared(name) => decision(
                    now_ms,
                    DecisionKind::WarnCleared,
                    format!("limit {name} back below its warn ratio"),
                    DAEMON,
                ),
            };
            d.strategy = Some(s.policy.name.clone());
            out.push(Output::Decision(d));
        }
    }

    pub(super) fn unmapped(&mut self, f: &Fill, why: &str, now_ms: i64, out: &mut Vec<Output>) {
        self.counters.unmapped_fills += 1;
        let mut d = decision(
            now_ms,
            DecisionKind::UnmappedFill,
            format!("fill {} ({} contracts): {why}", f.trade_id, f.count),
            DAEMON,
        );
        if self.cfg.audit_fills {
            d.fill = Some(Box::new(f.into()));
        }
        out.push(Output::Decision(d));
    }

    /// Remembers an order's group (`None`: in no group).
    pub(super) fn remember_route(&mut self, order_id: String, group: Option<GroupId>, now_ms: i64) {
        while let Some((t, id)) = self.route_order.front() {
            if t + ORDER_RETENTION_MS > now_ms {
                break;
            }
            // Forget only if not refreshed since.
            if self
                .routes
                .get(id)
                .is_some_and(|r| r.seen_ms + ORDER_RETENTION_MS <= now_ms)
            {
                self.routes.remove(id);
            }
            self.route_order.pop_front();
        }
        if self
            .routes
            .insert(
                order_id.clone(),
                Route {
                    group,
                    seen_ms: now_ms,
                    place: None,
                    placed_at: u64::MAX,
                },
            )
            .is_none()
        {
            self.route_order.push_back((now_ms, order_id));
        }
    }

    pub(super) fn on_order_group(
        &mut self,
        order_id: String,
        group: Option<GroupId>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let place = group.as_ref().and_then(|g| self.groups.get(g)).copied();
        let why = unmanaged_reason(&order_id, &group);
        self.remember_route(order_id.clone(), group.clone(), now_ms);
        for f in self.parked.remove(&order_id).unwrap_or_default() {
            let usage = Usage {
                contracts: f.count,
                notional: f.price.times(f.count),
                fills: 1,
            };
            match place {
                Some((strategy, g)) => self.apply(strategy, g, &f, usage, now_ms, out),
                None => self.not_ours(&f, group.as_ref(), &why, now_ms, out),
            }
        }
    }

    /// A fill in a group this daemon does not manage: another member's (cluster mode), counted
    /// there; else unmapped.
    fn not_ours(
        &mut self,
        f: &Fill,
        group: Option<&GroupId>,
        why: &str,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        if let Some(g) = group.filter(|g| self.peer_groups.contains_key(*g)) {
            self.counters.peer_fills += 1;
            let usage = Usage {
                contracts: f.count,
                notional: f.price.times(f.count),
                fills: 1,
            };
            self.on_peer_fill(g, usage, f.ts_ms, now_ms, out);
        } else {
            self.unmapped(f, why, now_ms, out);
        }
    }
}
