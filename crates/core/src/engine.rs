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
use serde::{Deserialize, Serialize};

use super::guard::{FillOutcome, GuardState, StrategyGuard, Trip, TripReason, WarnChange};
use super::ids::{GroupAddress, GroupId};
use super::kill::{KillLatch, KillRecord};
use super::limits::{Evidence, Level, LimitState, Usage};
use super::policy::{BlindAction, KillScope, Mode, RiskConfig, StrategyPolicy};
use super::units::{Contracts, Dollars};

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
/// The reason a sweep's backfill carries; a sweep that finds nothing new is not audited.
pub const SWEEP_REASON: &str = "periodic sweep (fills the stream never delivered)";

/// How long an order's group is remembered after its last message (a later fill looks it up
/// again).
pub const ORDER_RETENTION_MS: i64 = 3_600_000;

/// One fill, as the risk core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub trade_id: String,
    pub order_id: String,
    pub count: Contracts,
    /// The price paid per contract: the YES price for YES, one dollar less it for NO (the
    /// larger of the two when the side is not known).
    pub price: Dollars,
    /// Matching-engine time, epoch ms.
    pub ts_ms: i64,
}

/// What happened on the exchange to a group (`order_group_updates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupChange {
    Created,
    Triggered,
    Reset,
    Deleted,
    LimitUpdated(Option<Contracts>),
}

/// The stream's health, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamHealth {
    Connected,
    Disconnected,
    Blind,
    /// Events may have been missed (a `seq` gap or an overflow).
    Lossy(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Trigger,
    Reset,
    UpdateLimit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorCommand {
    Kill,
    Release,
    /// Reset one strategy's groups, or every strategy's (`None`).
    Reset(Option<String>),
    Trigger(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Fill(Fill),
    /// An order's group (`user_order`), `None` when it has none.
    OrderGroup {
        order_id: String,
        group: Option<GroupId>,
    },
    /// The answer to a [`Command::LookupOrder`]: `Err` when the lookup failed.
    OrderLookup {
        order_id: String,
        group: Result<Option<GroupId>, String>,
    },
    GroupEvent {
        group: GroupId,
        change: GroupChange,
    },
    /// Every group on the account, with its address (from listing each subaccount).
    GroupsListed(Vec<GroupAddress>),
    /// The shell created or adopted a strategy's groups.
    GroupsAssigned {
        strategy: String,
        groups: Vec<GroupAddress>,
    },
    /// The outcome of a command the shell carried out.
    ActionDone {
        group: GroupAddress,
        action: Action,
        result: Result<(), String>,
    },
    Stream(StreamHealth),
    Tick,
    Operator {
        command: OperatorCommand,
        actor: String,
    },
    /// New policies (a reload): existing strategies are updated, new ones added, missing ones
    /// dropped (their retirement is the shell's).
    Policies(Vec<StrategyPolicy>),
    /// Fills read back from the exchange (`GET /portfolio/fills`) from `since_ms` on, after a
    /// gap in the stream or at start (`reason` says which). They go the same way as streamed
    /// fills, counted at their exchange time; one already counted is skipped.
    Backfill {
        fills: Vec<Fill>,
        since_ms: i64,
        reason: String,
    },
    /// A backfill could not be completed (`reason`): the windows may be missing fills. With
    /// `unknown` (the start-up rebuild), every active strategy becomes Unknown (still guarded,
    /// never auto-reset) until settled.
    BackfillFailed {
        reason: String,
        unknown: bool,
    },
}

/// What the shell must do on the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Trigger {
        group: GroupAddress,
    },
    Reset {
        group: GroupAddress,
    },
    UpdateLimit {
        group: GroupAddress,
        limit: Contracts,
    },
    /// Find an order's group (`GET /portfolio/orders/{id}`) and answer with
    /// [`Input::OrderLookup`].
    LookupOrder {
        order_id: String,
    },
    /// List the account's groups (and answer with [`Input::GroupsListed`]).
    Reconcile,
    /// Read the account's fills from `since_ms` on (and answer with [`Input::Backfill`]).
    Backfill {
        since_ms: i64,
    },
    /// The periodic sweep: read the fills from `since_ms` on, unless a backfill is already
    /// reading them (answer with [`Input::Backfill`] and [`SWEEP_REASON`]); a failed one is
    /// not retried, the next comes soon.
    Sweep {
        since_ms: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Trip,
    TripConfirmed,
    Warn,
    WarnCleared,
    Reset,
    ResetRefused,
    ResetFailed,
    Retrigger,
    Settled,
    KillEngaged,
    KillReleased,
    UnmappedFill,
    Blind,
    StreamRestored,
    StreamLossy,
    LimitDeferred,
    GroupChangedOutside,
    ActionFailed,
    /// A command a shadow-mode strategy would have sent.
    Shadow,
    /// The shell applied new policies (SIGHUP or the admin API).
    Reload,
    /// A reload was refused; nothing changed.
    ReloadFailed,
    /// A strategy whose policy was removed was retired.
    Retired,
    /// Fills were read back from the exchange after a gap or at start.
    Backfill,
    /// Fills could not be read back: windows may be short of them.
    BackfillFailed,
    /// A group the daemon created but had not recorded (a lost answer, or a stop between the
    /// create and the record) was found by listing and adopted.
    OrphanAdopted,
    /// A duplicate group from the daemon's own creates was deleted (or the delete failed, as
    /// the reason says).
    OrphanDeleted,
}

/// One decision, with enough to audit it (a line of `audit.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub ts_ms: i64,
    pub event: DecisionKind,
    /// Every field is always present (`null` when empty), as the audit contract lists them.
    pub strategy: Option<String>,
    pub group_id: Option<GroupId>,
    pub reason: String,
    pub evidence: Option<Evidence>,
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Command(Command),
    Decision(Decision),
}

/// The persisted state (`state.json`): what was decided, so a restart restores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub kill: Option<KillRecord>,
    pub strategies: BTreeMap<String, StrategySnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategySnapshot {
    pub groups: Vec<GroupSnapshot>,
    pub state: GuardState,
    pub trip: Option<Trip>,
    #[serde(default)]
    pub auto_resets: Vec<i64>,
    /// The strategy's policy was removed. Its record (state, trip, groups) is kept so that a
    /// strategy that comes back comes back as it left: only a reset clears a trip.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    pub id: GroupId,
    pub subaccount: u8,
    pub exchange_index: u32,
    pub contracts_limit: Contracts,
}

/// Running totals for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub fills: u64,
    /// Fills first counted from a backfill (missed by the stream).
    pub backfilled_fills: u64,
    pub backfill_failures: u64,
    pub duplicate_fills: u64,
    pub unmapped_fills: u64,
    pub filled_contracts: Contracts,
    pub trips: BTreeMap<(String, TripReason), u64>,
    pub resets: BTreeMap<(String, String), u64>,
}

/// Where an order's fills go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Strategy {
        strategy: usize,
        group: usize,
    },
    /// In no group, or in one the daemon does not manage.
    NotManaged(Option<GroupId>),
}

/// Why an order's fills are unmapped, for the record.
fn unmanaged_reason(order_id: &str, group: &Option<GroupId>) -> String {
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
struct Seen {
    current: HashSet<u128>,
    previous: HashSet<u128>,
    current_since: Option<i64>,
}

/// A `trade_id` as a 128-bit key: the UUID's own bits, or a hash of anything else.
fn trade_key(id: &str) -> u128 {
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
    fn insert_key(&mut self, key: u128, now_ms: i64) -> bool {
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

#[derive(Debug)]
pub struct RiskEngine {
    cfg: RiskConfig,
    strategies: Vec<StrategyGuard>,
    by_name: HashMap<String, usize>,
    /// Our groups: id → (strategy, index in its groups).
    groups: HashMap<GroupId, (usize, usize)>,
    /// Groups on the account that are not ours (from listings).
    foreign: BTreeMap<GroupId, GroupAddress>,
    routes: HashMap<String, (Route, i64)>,
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
    account: Option<LimitState>,
    kill: KillLatch,
    /// Records of strategies whose policy was removed, by name (see [`StrategySnapshot::retired`]).
    retired: BTreeMap<String, StrategySnapshot>,
    /// Foreign groups already triggered under the current kill.
    kill_foreign_sent: BTreeSet<GroupId>,
    blind: bool,
    disconnected_since: Option<i64>,
    counters: Counters,
}

/// A decision with no strategy, group or evidence (also for the shell's own records).
pub fn decision(
    now_ms: i64,
    event: DecisionKind,
    reason: impl Into<String>,
    actor: &str,
) -> Decision {
    Decision {
        ts_ms: now_ms,
        event,
        strategy: None,
        group_id: None,
        reason: reason.into(),
        evidence: None,
        actor: actor.to_owned(),
    }
}

const DAEMON: &str = "daemon";
const EXCHANGE: &str = "exchange";

impl RiskEngine {
    pub fn new(cfg: RiskConfig) -> Self {
        let mut e = RiskEngine {
            strategies: Vec::new(),
            by_name: HashMap::default(),
            groups: HashMap::default(),
            foreign: BTreeMap::new(),
            routes: HashMap::default(),
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
            counters: Counters::default(),
            cfg,
        };
        for p in e.cfg.strategies.clone() {
            e.add_strategy(p);
        }
        e
    }

    /// Rebuilds the engine from a snapshot and re-applies what it decided: persisted trips and
    /// the kill latch trigger their groups again. After an unclean stop (`clean == false`), a
    /// strategy last seen active cannot be proven so and becomes Unknown.
    pub fn restore(
        cfg: RiskConfig,
        snap: &Snapshot,
        clean: bool,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Self {
        let mut e = RiskEngine::new(cfg);
        for (name, s) in &snap.strategies {
            match e.by_name.get(name) {
                Some(&i) => e.revive(i, s, clean, now_ms, out),
                None => {
                    // Not configured now: remembered as retired, as it was.
                    let mut record = s.clone();
                    record.retired = true;
                    if !clean && record.state == GuardState::Active {
                        record.state = GuardState::Unknown;
                    }
                    e.retired.insert(name.clone(), record);
                }
            }
        }
        if let Some(k) = &snap.kill {
            e.kill = KillLatch::restored(Some(k.clone()));
            out.push(Output::Decision(decision(
                now_ms,
                DecisionKind::Retrigger,
                format!(
                    "re-applying the persisted kill latch (engaged at {} by {}: {})",
                    k.at_ms, k.actor, k.reason
                ),
                DAEMON,
            )));
            e.trigger_kill_scope(now_ms, DAEMON, out);
        }
        e
    }

    /// Gives strategy `i` the state a record says it had: a trip is re-applied (its groups
    /// triggered again) and, after an unclean stop (`clean == false`), a strategy last seen
    /// active becomes Unknown.
    fn revive(
        &mut self,
        i: usize,
        record: &StrategySnapshot,
        clean: bool,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let name = self.strategies[i].policy.name.clone();
        let groups = record
            .groups
            .iter()
            .map(|g| GroupAddress {
                id: g.id.clone(),
                subaccount: g.subaccount,
                exchange_index: g.exchange_index,
            })
            .collect();
        self.assign_groups(i, groups);
        let guard = &mut self.strategies[i];
        guard.auto_resets = record.auto_resets.iter().copied().collect();
        match (record.state, clean) {
            (GuardState::Tripped, _) => {
                guard.state = GuardState::Tripped;
                guard.trip = record.trip.clone();
                let mut d = decision(
                    now_ms,
                    DecisionKind::Retrigger,
                    "re-applying a persisted trip",
                    DAEMON,
                );
                d.strategy = Some(name);
                out.push(Output::Decision(d));
                self.trigger_strategy(i, now_ms, DAEMON, "re-applying a persisted trip", out);
            }
            (GuardState::Unknown, _) | (GuardState::Active, false) => {
                guard.state = GuardState::Unknown;
                guard.unproven = guard.groups.iter().map(|g| g.id.clone()).collect();
                let mut d = decision(
                    now_ms,
                    DecisionKind::Settled,
                    "state unknown after an unclean stop; never auto-reset until the exchange or an operator settles it",
                    DAEMON,
                );
                d.strategy = Some(name);
                out.push(Output::Decision(d));
            }
            (GuardState::Active, true) => {}
        }
    }

    /// What a strategy is, as a record (for `state.json` and for retirement).
    fn record_of(s: &StrategyGuard) -> StrategySnapshot {
        StrategySnapshot {
            groups: s
                .groups
                .iter()
                .map(|g| GroupSnapshot {
                    id: g.id.clone(),
                    subaccount: g.subaccount,
                    exchange_index: g.exchange_index,
                    contracts_limit: s.policy.group_limit,
                })
                .collect(),
            state: s.state,
            trip: s.trip.clone(),
            auto_resets: s.auto_resets.iter().copied().collect(),
            retired: false,
        }
    }

    /// Records of retired strategies, by name.
    pub fn retired(&self) -> &BTreeMap<String, StrategySnapshot> {
        &self.retired
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            kill: self.kill.record().cloned(),
            strategies: self
                .strategies
                .iter()
                .map(|s| (s.policy.name.clone(), Self::record_of(s)))
                .chain(self.retired.iter().map(|(n, r)| (n.clone(), r.clone())))
                .collect(),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn kill(&self) -> Option<&KillRecord> {
        self.kill.record()
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

    /// Every group the daemon manages.
    pub fn managed_groups(&self) -> impl Iterator<Item = (&str, &GroupAddress)> {
        self.strategies
            .iter()
            .flat_map(|s| s.groups.iter().map(move |g| (s.policy.name.as_str(), g)))
    }

    fn add_strategy(&mut self, p: StrategyPolicy) {
        let name = p.name.clone();
        for r in TripReason::ALL {
            self.counters.trips.entry((name.clone(), r)).or_insert(0);
        }
        for r in ["manual", "auto"] {
            self.counters
                .resets
                .entry((name.clone(), r.to_owned()))
                .or_insert(0);
        }
        self.by_name.insert(name, self.strategies.len());
        self.strategies.push(StrategyGuard::new(p));
    }

    fn assign_groups(&mut self, strategy: usize, groups: Vec<GroupAddress>) {
        for g in &self.strategies[strategy].groups {
            self.groups.remove(&g.id);
        }
        for (i, g) in groups.iter().enumerate() {
            self.groups.insert(g.id.clone(), (strategy, i));
            self.foreign.remove(&g.id);
        }
        self.strategies[strategy].set_groups(groups);
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
                    // Groups an Unknown strategy no longer has need no proof; new ones were
                    // just created or adopted by the shell.
                    let s = &mut self.strategies[i];
                    let ids: BTreeSet<GroupId> = s.groups.iter().map(|g| g.id.clone()).collect();
                    s.unproven.retain(|g| ids.contains(g));
                    // A strategy that is tripped, or a kill in force, covers new groups at once.
                    if self.strategies[i].state == GuardState::Tripped {
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
        }
    }

    fn on_backfill(
        &mut self,
        fills: Vec<Fill>,
        since_ms: i64,
        reason: &str,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
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

    fn on_backfill_failed(
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
            if s.state == GuardState::Active {
                s.state = GuardState::Unknown;
                s.unproven = s.groups.iter().map(|g| g.id.clone()).collect();
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

    fn on_fill(&mut self, f: Fill, now_ms: i64, out: &mut Vec<Output>) {
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
            if !self.kill.is_engaged() && account.level(now_ms) == Level::Breached {
                let evidence = account.evidence(now_ms);
                self.engage_kill(
                    KillRecord {
                        at_ms: now_ms,
                        actor: DAEMON.to_owned(),
                        reason: format!("account limit {} exceeded", evidence.limit),
                        evidence: Some(evidence),
                    },
                    now_ms,
                    out,
                );
            }
        }
        match self.routes.get(&f.order_id).map(|(r, _)| r.clone()) {
            Some(Route::Strategy { strategy, group }) => {
                self.apply(strategy, group, &f, usage, now_ms, out)
            }
            Some(Route::NotManaged(group)) => {
                let why = unmanaged_reason(&f.order_id, &group);
                self.unmapped(&f, &why, now_ms, out);
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

    fn apply(
        &mut self,
        strategy: usize,
        group: usize,
        f: &Fill,
        usage: Usage,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let s = &mut self.strategies[strategy];
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

    fn record_warnings(&mut self, strategy: usize, now_ms: i64, out: &mut Vec<Output>) {
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

    fn unmapped(&mut self, f: &Fill, why: &str, now_ms: i64, out: &mut Vec<Output>) {
        self.counters.unmapped_fills += 1;
        out.push(Output::Decision(decision(
            now_ms,
            DecisionKind::UnmappedFill,
            format!("fill {} ({} contracts): {why}", f.trade_id, f.count),
            DAEMON,
        )));
    }

    fn remember_route(&mut self, order_id: String, route: Route, now_ms: i64) {
        while let Some((t, id)) = self.route_order.front() {
            if t + ORDER_RETENTION_MS > now_ms {
                break;
            }
            // Forget only if not refreshed since.
            if self
                .routes
                .get(id)
                .is_some_and(|(_, seen)| seen + ORDER_RETENTION_MS <= now_ms)
            {
                self.routes.remove(id);
            }
            self.route_order.pop_front();
        }
        if self
            .routes
            .insert(order_id.clone(), (route, now_ms))
            .is_none()
        {
            self.route_order.push_back((now_ms, order_id));
        }
    }

    fn on_order_group(
        &mut self,
        order_id: String,
        group: Option<GroupId>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let route = match group.as_ref().and_then(|g| self.groups.get(g)) {
            Some(&(strategy, group)) => Route::Strategy { strategy, group },
            None => Route::NotManaged(group.clone()),
        };
        self.remember_route(order_id.clone(), route.clone(), now_ms);
        for f in self.parked.remove(&order_id).unwrap_or_default() {
            let usage = Usage {
                contracts: f.count,
                notional: f.price.times(f.count),
                fills: 1,
            };
            match route {
                Route::Strategy { strategy, group } => {
                    self.apply(strategy, group, &f, usage, now_ms, out)
                }
                Route::NotManaged(_) => {
                    let why = unmanaged_reason(&order_id, &group);
                    self.unmapped(&f, &why, now_ms, out);
                }
            }
        }
    }

    /// Trips a strategy (if not already tripped) and triggers all its groups.
    #[allow(clippy::too_many_arguments)]
    fn trip(
        &mut self,
        strategy: usize,
        reason: TripReason,
        actor: &str,
        detail: String,
        evidence: Option<Evidence>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let s = &mut self.strategies[strategy];
        if s.state == GuardState::Tripped {
            return;
        }
        s.state = GuardState::Tripped;
        s.unproven.clear();
        s.trip = Some(Trip {
            reason,
            at_ms: now_ms,
            actor: actor.to_owned(),
            detail: detail.clone(),
            evidence: evidence.clone(),
            confirmed_ms: None,
        });
        let name = s.policy.name.clone();
        *self
            .counters
            .trips
            .entry((name.clone(), reason))
            .or_insert(0) += 1;
        let mut d = decision(
            now_ms,
            DecisionKind::Trip,
            format!("{}: {detail}", reason.as_str()),
            actor,
        );
        d.strategy = Some(name);
        d.evidence = evidence;
        out.push(Output::Decision(d));
        self.record_warnings(strategy, now_ms, out);
        self.trigger_strategy(strategy, now_ms, actor, "trip", out);
    }

    /// Sends (or, in shadow mode, records) a Trigger for every group of the strategy.
    fn trigger_strategy(
        &mut self,
        strategy: usize,
        now_ms: i64,
        actor: &str,
        why: &str,
        out: &mut Vec<Output>,
    ) {
        let s = &mut self.strategies[strategy];
        s.unconfirmed = s.groups.iter().map(|g| g.id.clone()).collect();
        let (name, mode, groups) = (s.policy.name.clone(), s.policy.mode, s.groups.clone());
        for g in groups {
            self.command(
                Some((&name, mode)),
                Command::Trigger { group: g },
                now_ms,
                actor,
                why,
                out,
            );
        }
    }

    /// Emits a command, or a shadow decision for a shadow-mode strategy.
    fn command(
        &mut self,
        owner: Option<(&str, Mode)>,
        c: Command,
        now_ms: i64,
        actor: &str,
        why: &str,
        out: &mut Vec<Output>,
    ) {
        match owner {
            Some((name, Mode::Shadow)) => {
                let (verb, group) = match &c {
                    Command::Trigger { group } => ("trigger", Some(group)),
                    Command::Reset { group } => ("reset", Some(group)),
                    Command::UpdateLimit { group, .. } => ("update the limit of", Some(group)),
                    Command::LookupOrder { .. }
                    | Command::Reconcile
                    | Command::Backfill { .. }
                    | Command::Sweep { .. } => ("run", None),
                };
                let mut d = decision(
                    now_ms,
                    DecisionKind::Shadow,
                    format!("shadow mode: would {verb} the group ({why})"),
                    actor,
                );
                d.strategy = Some(name.to_owned());
                d.group_id = group.map(|g| g.id.clone());
                out.push(Output::Decision(d));
            }
            _ => out.push(Output::Command(c)),
        }
    }

    fn engage_kill(&mut self, record: KillRecord, now_ms: i64, out: &mut Vec<Output>) {
        let (actor, reason, evidence) = (
            record.actor.clone(),
            record.reason.clone(),
            record.evidence.clone(),
        );
        let first = self.kill.engage(record);
        if first {
            self.kill_foreign_sent.clear();
        }
        let mut d = decision(
            now_ms,
            DecisionKind::KillEngaged,
            if first {
                reason
            } else {
                format!("{reason} (already engaged: triggering again)")
            },
            &actor,
        );
        d.evidence = evidence;
        out.push(Output::Decision(d));
        self.trigger_kill_scope(now_ms, &actor, out);
    }

    /// Triggers every group in the kill switch's scope. The kill switch is the operator's:
    /// it covers shadow-mode strategies' groups too.
    fn trigger_kill_scope(&mut self, now_ms: i64, actor: &str, out: &mut Vec<Output>) {
        let _ = (now_ms, actor);
        let ours: Vec<GroupAddress> = self.managed_groups().map(|(_, g)| g.clone()).collect();
        for g in ours {
            out.push(Output::Command(Command::Trigger { group: g }));
        }
        if self.cfg.kill_scope == KillScope::Account {
            for (id, g) in &self.foreign {
                self.kill_foreign_sent.insert(id.clone());
                out.push(Output::Command(Command::Trigger { group: g.clone() }));
            }
            // Groups created since the last listing are found by listing again.
            out.push(Output::Command(Command::Reconcile));
        }
    }

    fn on_group_event(
        &mut self,
        id: GroupId,
        change: GroupChange,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let Some(&(si, gi)) = self.groups.get(&id) else {
            return self.on_foreign_event(id, change, now_ms, out);
        };
        let killed = self.kill.is_engaged();
        let s = &mut self.strategies[si];
        let name = s.policy.name.clone();
        let group = s.groups[gi].clone();
        match change {
            GroupChange::Triggered => {
                if killed {
                    return; // expected: our kill
                }
                match s.state {
                    GuardState::Tripped => {}
                    GuardState::Active | GuardState::Unknown => {
                        let volume = s.group_volume(gi, now_ms);
                        let detail = format!(
                            "the exchange triggered group {id} (daemon counted {volume} contracts in its 15 s window)"
                        );
                        self.trip(
                            si,
                            TripReason::Exchange,
                            EXCHANGE,
                            detail,
                            None,
                            now_ms,
                            out,
                        );
                    }
                }
            }
            GroupChange::Reset | GroupChange::Created => {
                if change == GroupChange::Reset {
                    s.clear_group_volume(gi);
                }
                if killed && self.cfg.kill_hold {
                    let mut d = decision(
                        now_ms,
                        DecisionKind::Retrigger,
                        format!("group {id} became active while the kill switch is engaged"),
                        DAEMON,
                    );
                    d.strategy = Some(name);
                    d.group_id = Some(id);
                    out.push(Output::Decision(d));
                    out.push(Output::Command(Command::Trigger { group }));
                    return;
                }
                match s.state {
                    GuardState::Tripped => {
                        let mode = s.policy.mode;
                        let mut d = decision(
                            now_ms,
                            DecisionKind::Retrigger,
                            format!(
                                "group {id} was reset outside the daemon while the strategy is tripped"
                            ),
                            DAEMON,
                        );
                        d.strategy = Some(name.clone());
                        d.group_id = Some(id);
                        out.push(Output::Decision(d));
                        self.command(
                            Some((&name, mode)),
                            Command::Trigger { group },
                            now_ms,
                            DAEMON,
                            "re-trigger",
                            out,
                        );
                    }
                    GuardState::Unknown => {
                        s.unproven.remove(&id);
                        if s.unproven.is_empty() {
                            s.state = GuardState::Active;
                            s.trip = None;
                            let mut d = decision(
                                now_ms,
                                DecisionKind::Settled,
                                "the exchange showed every group active",
                                EXCHANGE,
                            );
                            d.strategy = Some(name);
                            out.push(Output::Decision(d));
                        }
                    }
                    GuardState::Active => {}
                }
            }
            GroupChange::Deleted => {
                let mut d = decision(
                    now_ms,
                    DecisionKind::GroupChangedOutside,
                    format!("group {id} was deleted outside the daemon"),
                    EXCHANGE,
                );
                d.strategy = Some(name);
                d.group_id = Some(id);
                out.push(Output::Decision(d));
                out.push(Output::Command(Command::Reconcile));
            }
            GroupChange::LimitUpdated(limit) => {
                let expected = s
                    .pending_limits
                    .iter()
                    .find(|(g, _)| *g == id)
                    .map_or(s.policy.group_limit, |(_, l)| *l);
                if limit.is_some_and(|l| l != expected && l != s.policy.group_limit) {
                    let mut d = decision(
                        now_ms,
                        DecisionKind::GroupChangedOutside,
                        format!(
                            "group {id} limit changed outside the daemon to {}",
                            limit.map(|l| l.to_string()).unwrap_or_default()
                        ),
                        EXCHANGE,
                    );
                    d.strategy = Some(name);
                    d.group_id = Some(id);
                    out.push(Output::Decision(d));
                }
            }
        }
    }

    fn on_foreign_event(
        &mut self,
        id: GroupId,
        change: GroupChange,
        _now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let holding = self.kill.is_engaged()
            && self.cfg.kill_hold
            && self.cfg.kill_scope == KillScope::Account;
        match change {
            GroupChange::Deleted => {
                self.foreign.remove(&id);
            }
            GroupChange::Reset | GroupChange::Created if holding => match self.foreign.get(&id) {
                Some(g) => out.push(Output::Command(Command::Trigger { group: g.clone() })),
                // Its subaccount is unknown until listed.
                None => out.push(Output::Command(Command::Reconcile)),
            },
            _ => {}
        }
    }

    fn on_groups_listed(&mut self, all: Vec<GroupAddress>, _now_ms: i64, out: &mut Vec<Output>) {
        self.foreign = all
            .into_iter()
            .filter(|g| !self.groups.contains_key(&g.id))
            .map(|g| (g.id.clone(), g))
            .collect();
        if self.kill.is_engaged() && self.cfg.kill_scope == KillScope::Account {
            for (id, g) in &self.foreign {
                if self.kill_foreign_sent.insert(id.clone()) {
                    out.push(Output::Command(Command::Trigger { group: g.clone() }));
                }
            }
        }
    }

    fn on_action_done(
        &mut self,
        group: GroupAddress,
        action: Action,
        result: Result<(), String>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let owner = self.groups.get(&group.id).copied();
        match (action, result) {
            (Action::Trigger, Ok(())) => {
                let Some((si, _)) = owner else { return };
                let s = &mut self.strategies[si];
                if !s.unconfirmed.remove(&group.id) || !s.unconfirmed.is_empty() {
                    return;
                }
                if let Some(trip) = &mut s.trip
                    && trip.confirmed_ms.is_none()
                    && s.state == GuardState::Tripped
                {
                    trip.confirmed_ms = Some(now_ms);
                    let mut d = decision(
                        now_ms,
                        DecisionKind::TripConfirmed,
                        format!(
                            "every group triggered {} ms after the decision",
                            now_ms - trip.at_ms
                        ),
                        EXCHANGE,
                    );
                    d.strategy = Some(s.policy.name.clone());
                    out.push(Output::Decision(d));
                }
            }
            (Action::Reset, Err(why)) => {
                let mut d = decision(
                    now_ms,
                    DecisionKind::ResetFailed,
                    format!("reset of group {} failed: {why}", group.id),
                    DAEMON,
                );
                if let Some((si, _)) = owner {
                    let s = &mut self.strategies[si];
                    d.strategy = Some(s.policy.name.clone());
                    // The group may still be triggered: the strategy is tripped again.
                    if let Some(prev) = s.reset_from.take() {
                        s.state = GuardState::Tripped;
                        s.trip = Some(prev);
                    }
                }
                d.group_id = Some(group.id);
                out.push(Output::Decision(d));
            }
            (Action::Reset, Ok(())) => {
                if let Some((si, _)) = owner {
                    self.strategies[si].reset_from = None;
                }
            }
            (action, Err(why)) => {
                let mut d = decision(
                    now_ms,
                    DecisionKind::ActionFailed,
                    format!("{action:?} of group {} failed: {why}", group.id),
                    DAEMON,
                );
                d.strategy = owner.map(|(si, _)| self.strategies[si].policy.name.clone());
                d.group_id = Some(group.id);
                out.push(Output::Decision(d));
            }
            (Action::UpdateLimit, Ok(())) => {}
        }
    }

    fn go_blind(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        if self.blind {
            return;
        }
        self.blind = true;
        out.push(Output::Decision(decision(
            now_ms,
            DecisionKind::Blind,
            "the user stream is blind",
            DAEMON,
        )));
        for i in 0..self.strategies.len() {
            let s = &self.strategies[i];
            // Unknown is guarded like Active: the blind action applies to both.
            if s.policy.blind == BlindAction::Trigger && s.state != GuardState::Tripped {
                self.trip(
                    i,
                    TripReason::Blind,
                    DAEMON,
                    "the user stream is blind".into(),
                    None,
                    now_ms,
                    out,
                );
            }
        }
    }

    fn on_stream(&mut self, h: StreamHealth, now_ms: i64, out: &mut Vec<Output>) {
        match h {
            StreamHealth::Connected => {
                self.disconnected_since = None;
                if std::mem::take(&mut self.gap) {
                    self.ask_backfill(out);
                }
                if self.blind {
                    self.blind = false;
                    out.push(Output::Decision(decision(
                        now_ms,
                        DecisionKind::StreamRestored,
                        "the user stream is back; reconciling",
                        DAEMON,
                    )));
                }
                out.push(Output::Command(Command::Reconcile));
            }
            StreamHealth::Disconnected => {
                self.disconnected_since.get_or_insert(now_ms);
                self.gap = true;
            }
            StreamHealth::Blind => {
                self.gap = true;
                self.go_blind(now_ms, out)
            }
            StreamHealth::Lossy(why) => {
                out.push(Output::Decision(decision(
                    now_ms,
                    DecisionKind::StreamLossy,
                    format!("stream events may have been missed: {why}"),
                    DAEMON,
                )));
                out.push(Output::Command(Command::Reconcile));
                self.ask_backfill(out);
                // And again once the stream is whole (a lost subscription is being restored).
                self.gap = true;
            }
        }
    }

    /// Asks for the fills since shortly before the last one counted (the shell reads them and
    /// answers with [`Input::Backfill`]). Before any fill, the shell's start-up rebuild covers
    /// the windows; `since_ms` 0 then means "since that rebuild".
    fn ask_backfill(&mut self, out: &mut Vec<Output>) {
        let since_ms = self
            .last_fill_ms
            .map_or(0, |l| (l - BACKFILL_MARGIN_MS).max(0));
        out.push(Output::Command(Command::Backfill { since_ms }));
    }

    /// Asks for the periodic sweep while the stream is up (a gap has its own backfill). It
    /// reads from shortly before the last fill counted, but never from further back than three
    /// periods before the last sweep (room for 30 s of skew between the daemon's clock and the
    /// exchange's), so its cost follows the fill rate, not the uptime.
    fn sweep_if_due(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        let Some(last) = self.last_sweep_ms else {
            self.last_sweep_ms = Some(now_ms);
            return;
        };
        if now_ms - last < SWEEP_EVERY_MS || self.disconnected_since.is_some() || self.blind {
            return;
        }
        self.last_sweep_ms = Some(now_ms);
        let floor = last - 3 * SWEEP_EVERY_MS;
        let since_ms = self
            .last_fill_ms
            .map_or(floor, |l| (l - BACKFILL_MARGIN_MS).max(floor))
            .max(0);
        out.push(Output::Command(Command::Sweep { since_ms }));
    }

    fn on_tick(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        if let Some(since) = self.disconnected_since
            && now_ms - since >= self.cfg.blind_after_ms
        {
            self.go_blind(now_ms, out);
        }
        self.sweep_if_due(now_ms, out);
        for i in 0..self.strategies.len() {
            self.record_warnings(i, now_ms, out);
            let may_reset = !self.kill.is_engaged() && !self.blind;
            if may_reset && self.strategies[i].auto_reset_due(now_ms) {
                self.strategies[i].auto_resets.push_back(now_ms);
                self.reset_strategy(
                    i,
                    "auto",
                    DAEMON,
                    "cooldown passed and every window drained",
                    now_ms,
                    out,
                );
            }
            // Lowered limits whose group has drained below them.
            let s = &mut self.strategies[i];
            let pending = std::mem::take(&mut s.pending_limits);
            let mut ready = Vec::new();
            for (gid, limit) in pending {
                let Some(gi) = s.group_index(&gid) else {
                    continue;
                };
                if s.group_volume(gi, now_ms) < limit {
                    ready.push((s.groups[gi].clone(), limit));
                } else {
                    s.pending_limits.push((gid, limit));
                }
            }
            let (name, mode) = (s.policy.name.clone(), s.policy.mode);
            for (group, limit) in ready {
                self.command(
                    Some((&name, mode)),
                    Command::UpdateLimit { group, limit },
                    now_ms,
                    DAEMON,
                    "deferred limit",
                    out,
                );
            }
        }
    }

    /// Resets every group of a strategy and marks it active.
    fn reset_strategy(
        &mut self,
        i: usize,
        kind: &str,
        actor: &str,
        why: &str,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let s = &mut self.strategies[i];
        s.reset_from = s.trip.take();
        s.state = GuardState::Active;
        s.unproven.clear();
        s.unconfirmed.clear();
        let (name, mode, groups) = (s.policy.name.clone(), s.policy.mode, s.groups.clone());
        *self
            .counters
            .resets
            .entry((name.clone(), kind.to_owned()))
            .or_insert(0) += 1;
        let mut d = decision(
            now_ms,
            DecisionKind::Reset,
            format!("{kind} reset: {why}"),
            actor,
        );
        d.strategy = Some(name.clone());
        out.push(Output::Decision(d));
        for g in groups {
            self.command(
                Some((&name, mode)),
                Command::Reset { group: g },
                now_ms,
                actor,
                "reset",
                out,
            );
        }
    }

    fn on_operator(
        &mut self,
        command: OperatorCommand,
        actor: &str,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        match command {
            OperatorCommand::Kill => self.engage_kill(
                KillRecord {
                    at_ms: now_ms,
                    actor: actor.to_owned(),
                    reason: "kill switch".to_owned(),
                    evidence: None,
                },
                now_ms,
                out,
            ),
            OperatorCommand::Release => {
                let reason = match self.kill.release() {
                    Some(k) => format!(
                        "kill switch released (engaged at {} by {}: {})",
                        k.at_ms, k.actor, k.reason
                    ),
                    None => "release asked, but the kill switch was not engaged".to_owned(),
                };
                self.kill_foreign_sent.clear();
                out.push(Output::Decision(decision(
                    now_ms,
                    DecisionKind::KillReleased,
                    reason,
                    actor,
                )));
            }
            OperatorCommand::Reset(target) => {
                let refusal = if self.kill.is_engaged() {
                    Some("the kill switch is engaged")
                } else if self.blind {
                    Some("the user stream is blind")
                } else {
                    None
                };
                let targets: Vec<usize> = match &target {
                    None => (0..self.strategies.len()).collect(),
                    Some(name) => match self.by_name.get(name) {
                        Some(&i) => vec![i],
                        None => {
                            out.push(Output::Decision(decision(
                                now_ms,
                                DecisionKind::ResetRefused,
                                format!("no strategy named {name:?}"),
                                actor,
                            )));
                            return;
                        }
                    },
                };
                for i in targets {
                    if let Some(why) = refusal {
                        let mut d = decision(
                            now_ms,
                            DecisionKind::ResetRefused,
                            format!("reset refused: {why}"),
                            actor,
                        );
                        d.strategy = Some(self.strategies[i].policy.name.clone());
                        out.push(Output::Decision(d));
                    } else {
                        self.reset_strategy(i, "manual", actor, "operator", now_ms, out);
                    }
                }
            }
            OperatorCommand::Trigger(name) => match self.by_name.get(&name) {
                Some(&i) => {
                    if self.strategies[i].state == GuardState::Tripped {
                        // Already tripped: trigger again, as asked.
                        self.trigger_strategy(i, now_ms, actor, "operator trigger", out);
                    } else {
                        self.trip(
                            i,
                            TripReason::Manual,
                            actor,
                            "operator trigger".into(),
                            None,
                            now_ms,
                            out,
                        );
                    }
                }
                None => out.push(Output::Decision(decision(
                    now_ms,
                    DecisionKind::ActionFailed,
                    format!("no strategy named {name:?}"),
                    actor,
                ))),
            },
        }
    }

    fn on_policies(&mut self, policies: Vec<StrategyPolicy>, now_ms: i64, out: &mut Vec<Output>) {
        let wanted: BTreeSet<String> = policies.iter().map(|p| p.name.clone()).collect();
        // Strategies no longer configured are retired (the shell retires their groups); their
        // record is kept, so one that comes back comes back as it left.
        let (keep, gone): (Vec<StrategyGuard>, Vec<StrategyGuard>) =
            std::mem::take(&mut self.strategies)
                .into_iter()
                .partition(|s| wanted.contains(&s.policy.name));
        for s in gone {
            let mut record = Self::record_of(&s);
            record.retired = true;
            self.retired.insert(s.policy.name.clone(), record);
        }
        self.strategies = keep;
        self.by_name = self
            .strategies
            .iter()
            .enumerate()
            .map(|(i, s)| (s.policy.name.clone(), i))
            .collect();
        self.groups = self
            .strategies
            .iter()
            .enumerate()
            .flat_map(|(si, s)| {
                s.groups
                    .iter()
                    .enumerate()
                    .map(move |(gi, g)| (g.id.clone(), (si, gi)))
            })
            .collect();
        self.routes.clear(); // strategy indexes moved: learn routes again
        for p in policies {
            match self.by_name.get(&p.name).copied() {
                None => {
                    let name = p.name.clone();
                    self.add_strategy(p);
                    if let Some(mut record) = self.retired.remove(&name) {
                        record.retired = false;
                        let i = self.strategies.len() - 1;
                        self.revive(i, &record, true, now_ms, out);
                    }
                }
                Some(i) => {
                    let old_limit = self.strategies[i].policy.group_limit;
                    self.strategies[i].set_policy(p);
                    let s = &mut self.strategies[i];
                    let new_limit = s.policy.group_limit;
                    if new_limit == old_limit {
                        continue;
                    }
                    let (name, mode) = (s.policy.name.clone(), s.policy.mode);
                    s.pending_limits.clear();
                    let mut updates = Vec::new();
                    for gi in 0..s.groups.len() {
                        let group = s.groups[gi].clone();
                        let volume = s.group_volume(gi, now_ms);
                        if new_limit < volume {
                            // Sending it now would trigger the group.
                            s.pending_limits.push((group.id.clone(), new_limit));
                            let mut d = decision(
                                now_ms,
                                DecisionKind::LimitDeferred,
                                format!(
                                    "new limit {new_limit} is below the group's current volume {volume}; applied once the window drains"
                                ),
                                DAEMON,
                            );
                            d.strategy = Some(name.clone());
                            d.group_id = Some(group.id.clone());
                            out.push(Output::Decision(d));
                        } else {
                            updates.push(group);
                        }
                    }
                    for group in updates {
                        self.command(
                            Some((&name, mode)),
                            Command::UpdateLimit {
                                group,
                                limit: new_limit,
                            },
                            now_ms,
                            DAEMON,
                            "new limit",
                            out,
                        );
                    }
                }
            }
        }
    }
}
