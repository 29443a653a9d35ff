//! The risk engine: every decision the daemon makes, as a pure function of timestamped inputs.
//!
//! [`RiskEngine::handle`] takes one [`Input`] (a fill, an order's group, a group event, a
//! listing of the account's groups, the result of an exchange action, the stream's health, a
//! timer tick, an operator command) and appends [`Output`]s: [`Command`]s for the shell to carry
//! out on the exchange, and [`Decision`]s for the audit log, logs and metrics. Given the same
//! inputs it returns the same outputs. It never waits, reads a clock or does I/O.
//!
//! Rules a reader can check here:
//! - A fill is counted once per `trade_id` (ids are remembered for [`DEDUP_RETENTION_MS`]).
//! - A fill reaches a strategy through its order's group, learnt from `user_order` messages or,
//!   on a miss, from a [`Command::LookupOrder`]; fills wait for the answer and are then counted
//!   with their own timestamps. A fill whose order belongs to no managed group is *unmapped*:
//!   counted, recorded and alerted on, never guessed.
//! - Every fill, mapped or not, counts toward the account-level limit; exceeding it engages the
//!   kill switch.
//! - A strategy trips when one of its limits is exceeded, when the exchange triggers one of its
//!   groups, when the stream goes blind and its policy says `trigger`, or when an operator says
//!   so. Every trip triggers every group of the strategy.
//! - Resets never happen while the kill switch is engaged or the stream is blind; automatic ones
//!   follow the cooldown rule; an Unknown strategy is never reset automatically.
//! - The kill latch is released only by an operator's release.
//! - In shadow mode a strategy's exchange commands become `shadow` decisions instead.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

mod exchange;
mod fills;
mod io;
mod peers;
mod policies;
mod snapshot;
mod stream;
mod trips;

use fills::{Route, Seen};
pub use io::{
    Action, ClusterInput, Command, Decision, DecisionKind, Fill, FillRecord, GroupChange,
    HandedTrip, Input, OperatorCommand, Output, PeerStrategy, StreamHealth, decision,
};
pub use peers::Mirror;
pub use snapshot::{GroupSnapshot, Snapshot, StrategySnapshot};

use super::guard::{GuardState, StrategyGuard, TripReason};
use super::ids::{GroupAddress, GroupId};
use super::kill::{KillLatch, KillRecord};
use super::limits::{LimitState, Usage};
use super::policy::RiskConfig;
use super::units::Contracts;

/// How long a `trade_id` is remembered for deduplication. The exchange does not replay the
/// stream, so a duplicate can only come close behind the original.
pub const DEDUP_RETENTION_MS: i64 = 10 * 60_000;
/// How far before the last fill it saw a backfill starts reading, so that a fill delivered
/// out of order around a gap is not missed. Fills of that margin are remembered by their
/// exchange time as well, so the overlap is never counted twice however long the gap.
pub const BACKFILL_MARGIN_MS: i64 = 60_000;
/// How often the fills are swept while the stream looks healthy. The `fill` channel has no
/// sequence numbers: a fill the exchange never delivered leaves no trace on the stream, so the
/// daemon reads the recent fills back this often and counts any it never saw.
pub const SWEEP_EVERY_MS: i64 = 10_000;
/// How far before the newest fill the previous answered sweep had seen the next sweep starts
/// reading: room for a fill that the exchange lists a little after its time, or that the
/// stream delivered out of order (the exchange's reads have been seen lagging its writes by
/// about 0.4 s).
pub const SWEEP_OVERLAP_MS: i64 = 10_000;
/// The reason a sweep's backfill carries; a sweep that finds nothing new is not audited.
pub const SWEEP_REASON: &str = "periodic sweep (fills the stream never delivered)";

/// How long an order's group is remembered after its last message (a later fill looks it up
/// again).
pub const ORDER_RETENTION_MS: i64 = 3_600_000;

/// Running totals for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub fills: u64,
    /// Fills first counted from a backfill (missed by the stream).
    pub backfilled_fills: u64,
    pub backfill_failures: u64,
    pub duplicate_fills: u64,
    pub unmapped_fills: u64,
    /// Cluster mode: fills in another member's groups (counted there, not here).
    pub peer_fills: u64,
    pub filled_contracts: Contracts,
    pub trips: BTreeMap<(String, TripReason), u64>,
    pub resets: BTreeMap<(String, String), u64>,
}

#[derive(Debug)]
pub struct RiskEngine {
    cfg: RiskConfig,
    strategies: Vec<StrategyGuard>,
    by_name: HashMap<String, usize>,
    /// Our groups: id → (strategy, index in its groups).
    groups: HashMap<GroupId, (usize, usize)>,
    /// Groups on the account that are not ours (from listings).
    foreign: BTreeMap<GroupId, GroupAddress>,
    /// Orders' groups as the exchange told them, by order id.
    routes: HashMap<String, Route>,
    /// How many times `groups` changed: a route's cached place is valid while this stands.
    group_moves: u64,
    route_order: VecDeque<(i64, String)>,
    /// Fills waiting for their order's group.
    parked: HashMap<String, Vec<Fill>>,
    seen: Seen,
    /// Fills of the last [`BACKFILL_MARGIN_MS`] of exchange time, by `trade_id` key: in
    /// arrival order (to forget them) and as a set (to find them).
    tail: VecDeque<(i64, u128)>,
    tail_keys: HashSet<u128>,
    /// The newest exchange time of any fill counted.
    last_fill_ms: Option<i64>,
    /// The stream was down, blind or lossy since the last backfill was asked for.
    gap: bool,
    /// When the last periodic sweep was asked for (the first tick sets it).
    last_sweep_ms: Option<i64>,
    /// The newest fill's exchange time when the last answered sweep was asked for: that sweep
    /// read everything up to it, so the next starts [`SWEEP_OVERLAP_MS`] before it.
    sweep_mark: Option<i64>,
    /// The oldest sweep not yet answered: where it started reading, and the newest fill's
    /// exchange time when it was asked for.
    sweep_pending: Option<(i64, Option<i64>)>,
    account: Option<LimitState>,
    kill: KillLatch,
    /// Records of strategies whose policy was removed, by name (see [`StrategySnapshot::retired`]).
    retired: BTreeMap<String, StrategySnapshot>,
    /// Foreign groups already triggered under the current kill.
    kill_foreign_sent: BTreeSet<GroupId>,
    blind: bool,
    disconnected_since: Option<i64>,
    /// Cluster mode: whether the shared kill latch can be read (always true alone).
    latch_readable: bool,
    /// Cluster mode: the other members' groups, with who manages them.
    peer_groups: BTreeMap<GroupId, String>,
    /// Cluster mode: the peers' strategies that publish a policy, mirrored (see [`peers`]).
    peers: BTreeMap<String, Mirror>,
    /// Where each mirrored group sits: its strategy and its place among the strategy's groups.
    peer_places: HashMap<GroupId, (String, usize)>,
    /// Cluster mode: trips guards made, by strategy, until the owner takes them back.
    handed: BTreeMap<String, HandedTrip>,
    /// Whether a breach of the account limit engages the kill switch here (cluster mode: the
    /// leader's, or everyone's while etcd is out of reach; alone: always).
    account_active: bool,
    counters: Counters,
}

pub(super) const DAEMON: &str = "daemon";
pub(super) const EXCHANGE: &str = "exchange";

impl RiskEngine {
    pub fn new(cfg: RiskConfig) -> Self {
        let mut e = RiskEngine {
            strategies: Vec::new(),
            by_name: HashMap::default(),
            groups: HashMap::default(),
            foreign: BTreeMap::new(),
            routes: HashMap::default(),
            group_moves: 0,
            route_order: VecDeque::new(),
            parked: HashMap::default(),
            seen: Seen::default(),
            tail: VecDeque::new(),
            tail_keys: HashSet::default(),
            last_fill_ms: None,
            gap: false,
            account: cfg.account_limit.clone().map(LimitState::new),
            kill: KillLatch::default(),
            retired: BTreeMap::new(),
            kill_foreign_sent: BTreeSet::new(),
            blind: false,
            disconnected_since: None,
            last_sweep_ms: None,
            sweep_mark: None,
            sweep_pending: None,
            latch_readable: !cfg.cluster,
            peer_groups: BTreeMap::new(),
            peers: BTreeMap::new(),
            peer_places: HashMap::default(),
            handed: BTreeMap::new(),
            account_active: true,
            counters: Counters::default(),
            cfg,
        };
        for p in e.cfg.strategies.clone() {
            e.add_strategy(p);
        }
        e
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn kill(&self) -> Option<&KillRecord> {
        self.kill.record()
    }

    /// Cluster mode: whether the shared kill latch can be read (resets and releases need it).
    pub fn latch_readable(&self) -> bool {
        self.latch_readable
    }

    pub fn is_blind(&self) -> bool {
        self.blind
    }

    /// The newest exchange time of any fill counted, epoch ms.
    pub fn last_fill_ms(&self) -> Option<i64> {
        self.last_fill_ms
    }

    /// Fills waiting for their order's group.
    pub fn parked_fills(&self) -> usize {
        self.parked.values().map(Vec::len).sum()
    }

    pub fn strategies(&self) -> &[StrategyGuard] {
        &self.strategies
    }

    pub fn strategy_mut(&mut self, name: &str) -> Option<&mut StrategyGuard> {
        self.by_name.get(name).map(|&i| &mut self.strategies[i])
    }

    /// Every limit's window figures at `now_ms`, by strategy (for metrics and status).
    pub fn window_figures(
        &mut self,
        now_ms: i64,
    ) -> Vec<(String, super::limits::LimitSpec, Usage)> {
        let mut out = Vec::new();
        for s in &mut self.strategies {
            let name = s.policy.name.clone();
            for (spec, usage) in s.usage(now_ms) {
                out.push((name.clone(), spec, usage));
            }
        }
        out
    }

    /// [`RiskEngine::window_figures`] without copies: `f((strategy's place in
    /// [`RiskEngine::strategies`], limit's place in its policy), strategy, limit, usage)` for
    /// every limit (the metrics refresh, several times a second).
    pub fn each_window(
        &mut self,
        now_ms: i64,
        mut f: impl FnMut((usize, usize), &str, &super::limits::LimitSpec, Usage),
    ) {
        for (k, s) in self.strategies.iter_mut().enumerate() {
            let mut i = 0;
            s.each_usage(now_ms, |name, spec, usage| {
                f((k, i), name, spec, usage);
                i += 1;
            });
        }
    }

    /// Every group the daemon manages.
    pub fn managed_groups(&self) -> impl Iterator<Item = (&str, &GroupAddress)> {
        self.strategies
            .iter()
            .flat_map(|s| s.groups.iter().map(move |g| (s.policy.name.as_str(), g)))
    }

    /// Every managed group, those of the strategies whose tightest limit is the smallest
    /// first ([`crate::limits::LimitSpec::reach`]), in policy order among equals: where not
    /// every group can be kept armed, the ones likeliest to breach on the next fill are.
    pub fn groups_tightest_first(&self) -> Vec<&GroupAddress> {
        let mut ranked: Vec<(i64, &GroupAddress)> = self
            .strategies
            .iter()
            .flat_map(|s| {
                let reach = s
                    .policy
                    .limits
                    .iter()
                    .map(|l| l.reach())
                    .min()
                    .unwrap_or(i64::MAX);
                s.groups.iter().map(move |g| (reach, g))
            })
            .collect();
        ranked.sort_by_key(|(reach, _)| *reach);
        ranked.into_iter().map(|(_, g)| g).collect()
    }

    /// Handles one input at `now_ms`, appending what follows from it to `out`.
    pub fn handle(&mut self, input: Input, now_ms: i64, out: &mut Vec<Output>) {
        match input {
            Input::Fill(f) => self.on_fill(f, now_ms, out),
            Input::OrderGroup { order_id, group } => {
                self.on_order_group(order_id, group, now_ms, out)
            }
            Input::OrderLookup { order_id, group } => match group {
                Ok(g) => self.on_order_group(order_id, g, now_ms, out),
                Err(why) => {
                    for f in self.parked.remove(&order_id).unwrap_or_default() {
                        self.unmapped(
                            &f,
                            &format!("order {order_id}: lookup failed: {why}"),
                            now_ms,
                            out,
                        );
                    }
                }
            },
            Input::GroupEvent { group, change } => self.on_group_event(group, change, now_ms, out),
            Input::GroupsListed(all) => self.on_groups_listed(all, now_ms, out),
            Input::GroupsAssigned { strategy, groups } => {
                if let Some(&i) = self.by_name.get(&strategy) {
                    self.assign_groups(i, groups);
                    // A strategy that is tripped, or a kill in force, covers new groups at once.
                    if self.strategies[i].state() == GuardState::Tripped {
                        self.trigger_strategy(
                            i,
                            now_ms,
                            DAEMON,
                            "new group of a tripped strategy",
                            out,
                        );
                    }
                    if self.kill.is_engaged() {
                        self.trigger_kill_scope(now_ms, DAEMON, out);
                    }
                }
            }
            Input::ActionDone {
                group,
                action,
                result,
            } => self.on_action_done(group, action, result, now_ms, out),
            Input::Stream(h) => self.on_stream(h, now_ms, out),
            Input::Tick => self.on_tick(now_ms, out),
            Input::Operator { command, actor } => self.on_operator(command, &actor, now_ms, out),
            Input::Policies(policies) => self.on_policies(policies, now_ms, out),
            Input::Backfill {
                fills,
                since_ms,
                reason,
            } => self.on_backfill(fills, since_ms, &reason, now_ms, out),
            Input::BackfillFailed { reason, unknown } => {
                self.on_backfill_failed(&reason, unknown, now_ms, out)
            }
            Input::Cluster(c) => self.on_cluster(c, now_ms, out),
        }
    }
}
