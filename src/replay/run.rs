//! Drives the risk core over a history as the daemon would have run it live.
//!
//! Each fill is handed to the same [`RiskEngine`] the daemon runs, at its exchange time, after
//! its order's group. The exchange is modelled as a perfect one: every Trigger and reset is
//! acknowledged at once, every read answers with nothing new (the history already holds every
//! fill), and a group whose 15-second volume passes its `contracts_limit` is triggered by the
//! exchange itself, as the real one does.
//!
//! Time moves on the daemon's 250 ms tick grid, but only the ticks that can decide anything
//! are run. Passing time changes a decision only for a strategy that is warned (its warning
//! clears when its windows drain) or tripped with a cooldown (it resets itself once the
//! cooldown has passed and its windows have drained). For such a strategy the replay looks at
//! the first tick after each of its fills leaves each of its windows, after its trip's
//! cooldown, and a day after each automatic reset (when that reset stops counting against the
//! day's allowance), and runs the engine's tick there when the strategy is still warned or
//! its reset is due. Between those ticks none of its windows, cooldowns or counts changes, so
//! the ticks left out would have decided nothing. The replay runs on until every window and
//! cooldown has run its course after the last fill.
//!
//! The history is what was traded under whatever guarded it then: a replay that trips earlier
//! cannot know what the strategy would have done after, so later fills still count, as they
//! were made.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::kalshi::{GroupAddress, GroupId};
use crate::risk::engine::{
    Action, Decision, DecisionKind, Fill, GroupChange, Input, Output, RiskEngine, SWEEP_REASON,
    StreamHealth,
};
use crate::risk::guard::{EXCHANGE_WINDOW_MS, GuardState};
use crate::risk::policy::{ResetPolicy, RiskConfig};
use crate::risk::window::Window;
use crate::risk::{Contracts, Evidence, LimitSpec};

use super::history::{History, Mapping, Route};

/// The daemon's tick.
pub const TICK_MS: i64 = 250;
/// How long an automatic reset counts against `max_auto_resets`.
const AUTO_RESET_MEMORY_MS: i64 = 86_400_000;

/// The first tick at or after `ms`.
fn tick_after(ms: i64) -> i64 {
    ms.div_euclid(TICK_MS) * TICK_MS
        + if ms.rem_euclid(TICK_MS) == 0 {
            0
        } else {
            TICK_MS
        }
}

/// One limit's window use, sampled around every fill of its strategy.
#[derive(Debug, Clone)]
pub struct LimitTrace {
    pub strategy: String,
    pub spec: LimitSpec,
    /// `(time, utilisation)`: just before and just after each fill (1 = the limit).
    pub points: Vec<(i64, f64)>,
}

/// What the replay decided, in order, and the traces of every limit.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Trips, warn crossings and clearings, resets, kill engagements (the account limit) and
    /// the exchange's own triggers, as the audit log would have recorded them.
    pub decisions: Vec<Decision>,
    pub traces: Vec<LimitTrace>,
    /// Fills replayed, by strategy.
    pub fills: BTreeMap<String, u64>,
    /// Unmapped fills by reason (counted against the account limit only).
    pub unmapped: BTreeMap<String, u64>,
    /// Groups the modelled exchange triggered on its own (its `contracts_limit` in 15 s).
    pub exchange_triggers: u64,
    /// Strategies still tripped when the replay ended.
    pub tripped_at_end: Vec<String>,
}

/// The strategies to replay and their groups.
pub struct Setup {
    pub risk: RiskConfig,
    /// Each strategy's groups: its own from `state.json`, or one made up for the replay.
    pub groups: BTreeMap<String, Vec<GroupAddress>>,
    pub mapping: Mapping,
}

struct Timing {
    windows: Vec<i64>,
    cooldown: Option<i64>,
    recent: VecDeque<i64>,
}

struct ExchangeGroup {
    limit: Contracts,
    volume: Window<Contracts>,
    triggered: bool,
}

struct Driver {
    engine: RiskEngine,
    now: i64,
    /// The ticks that may decide something for these strategies (by place), not yet run.
    checks: BTreeMap<i64, BTreeSet<usize>>,
    every_tick: bool,
    /// By strategy's place: its windows' lengths, its cooldown (when it resets itself) and the
    /// times of its fills still in its longest window.
    timing: Vec<Timing>,
    last_fill: i64,
    /// How long after the last fill anything can still change on the tick grid.
    horizon: i64,
    out: Vec<Output>,
    outcome: Outcome,
    exchange: HashMap<GroupId, ExchangeGroup>,
    listed: Vec<GroupAddress>,
    /// By strategy: its place among the engine's strategies and its first trace.
    places: HashMap<String, (usize, usize)>,
}

/// Replays `history` under `setup`.
pub fn replay(setup: &Setup, history: &History) -> Outcome {
    replay_ticking(setup, history, false)
}

/// [`replay`]; with `every_tick`, the engine's tick runs at every point of the grid from the
/// first fill to the end (the daemon's way, for tests: the same decisions, much slower).
fn replay_ticking(setup: &Setup, history: &History, every_tick: bool) -> Outcome {
    let risk = &setup.risk;
    let longest_window = risk
        .strategies
        .iter()
        .flat_map(|s| s.limits.iter().map(|l| l.window_ms))
        .chain(risk.account_limit.iter().map(|l| l.window_ms))
        .fold(EXCHANGE_WINDOW_MS, i64::max);
    let longest_cooldown = risk
        .strategies
        .iter()
        .map(|s| match s.reset {
            ResetPolicy::Cooldown { cooldown_ms, .. } => cooldown_ms,
            ResetPolicy::Manual => 0,
        })
        .max()
        .unwrap_or(0);
    let start = history.fills.first().map_or(0, |f| f.ts_ms);
    let timing = risk
        .strategies
        .iter()
        .map(|s| {
            let mut windows: Vec<i64> = s.limits.iter().map(|l| l.window_ms).collect();
            windows.sort_unstable();
            windows.dedup();
            Timing {
                windows,
                cooldown: match s.reset {
                    ResetPolicy::Cooldown { cooldown_ms, .. } => Some(cooldown_ms),
                    ResetPolicy::Manual => None,
                },
                recent: VecDeque::new(),
            }
        })
        .collect();
    let mut d = Driver {
        engine: RiskEngine::new(risk.clone()),
        now: start,
        checks: BTreeMap::new(),
        every_tick,
        timing,
        last_fill: start,
        horizon: longest_window + longest_cooldown + TICK_MS,
        out: Vec::new(),
        outcome: Outcome::default(),
        exchange: HashMap::new(),
        listed: Vec::new(),
        places: HashMap::new(),
    };
    for (k, s) in risk.strategies.iter().enumerate() {
        d.places.insert(s.name.clone(), (k, d.outcome.traces.len()));
        for spec in &s.limits {
            d.outcome.traces.push(LimitTrace {
                strategy: s.name.clone(),
                spec: spec.clone(),
                points: Vec::new(),
            });
        }
        let groups = setup.groups.get(&s.name).cloned().unwrap_or_default();
        for g in &groups {
            d.exchange.insert(
                g.id.clone(),
                ExchangeGroup {
                    limit: s.group_limit,
                    volume: Window::new(EXCHANGE_WINDOW_MS),
                    triggered: false,
                },
            );
            d.listed.push(g.clone());
        }
        d.pump(Input::GroupsAssigned {
            strategy: s.name.clone(),
            groups,
        });
    }
    d.pump(Input::Stream(StreamHealth::Connected));

    for f in &history.fills {
        d.advance_to(f.ts_ms);
        d.now = d.now.max(f.ts_ms);
        let route = setup.mapping.route(f);
        let (strategy, group) = match &route {
            Route::Strategy(s) => {
                let group = f
                    .group
                    .clone()
                    .or_else(|| setup.mapping.orders.get(&f.order_id).cloned().flatten())
                    .filter(|g| d.exchange.contains_key(g))
                    .or_else(|| {
                        setup
                            .groups
                            .get(s)
                            .and_then(|g| g.first())
                            .map(|g| g.id.clone())
                    });
                (Some(s.as_str()), group)
            }
            Route::Unmapped(why) => {
                *d.outcome.unmapped.entry(why.clone()).or_insert(0) += 1;
                (None, None)
            }
        };
        if let Some(s) = strategy {
            *d.outcome.fills.entry(s.to_owned()).or_insert(0) += 1;
            d.sample(s);
        }
        d.pump(Input::OrderGroup {
            order_id: f.order_id.clone(),
            group: group.clone(),
        });
        d.pump(Input::Fill(Fill {
            trade_id: f.trade_id.clone(),
            order_id: f.order_id.clone(),
            count: f.count,
            price: f.price,
            ts_ms: f.ts_ms,
        }));
        if let Some(g) = group {
            d.exchange_volume(&g, f.ts_ms, f.count);
        }
        if let Some(s) = strategy {
            d.sample(s);
            d.fill_timing(s, f.ts_ms);
        }
        d.last_fill = f.ts_ms;
    }
    let end = d.last_fill + d.horizon;
    d.advance_to(end);
    d.outcome.tripped_at_end = d
        .engine
        .strategies()
        .iter()
        .filter(|s| s.state() == GuardState::Tripped)
        .map(|s| s.policy.name.clone())
        .collect();
    d.outcome
}

impl Driver {
    /// Hands `input` to the engine at `now`, answering its commands as a perfect exchange
    /// would, until nothing more follows.
    fn pump(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            self.engine.handle(input, self.now, &mut self.out);
            for o in std::mem::take(&mut self.out) {
                match o {
                    Output::Decision(d) => self.record(d),
                    Output::Command(c) => {
                        if let Some(answer) = self.answer(c) {
                            queue.push_back(answer);
                        }
                    }
                }
            }
        }
    }

    fn answer(&mut self, c: crate::risk::engine::Command) -> Option<Input> {
        use crate::risk::engine::Command as C;
        Some(match c {
            C::Trigger { group } => self.acted(group, Action::Trigger, |g| g.triggered = true),
            C::Reset { group } => self.acted(group, Action::Reset, |g| g.triggered = false),
            C::UpdateLimit { group, limit } => {
                self.acted(group, Action::UpdateLimit, |g| g.limit = limit)
            }
            // Every fill's group is given before the fill: a lookup finds none.
            C::LookupOrder { order_id } => Input::OrderLookup {
                order_id,
                group: Ok(None),
            },
            C::Reconcile => Input::GroupsListed(self.listed.clone()),
            C::Backfill { since_ms } => Input::Backfill {
                fills: Vec::new(),
                since_ms,
                reason: "replay".into(),
            },
            C::Sweep { since_ms } => Input::Backfill {
                fills: Vec::new(),
                since_ms,
                reason: SWEEP_REASON.into(),
            },
        })
    }

    /// The exchange carries out `action` on `group` (`apply` to its model of the group) and
    /// acknowledges it.
    fn acted(
        &mut self,
        group: GroupAddress,
        action: Action,
        apply: impl FnOnce(&mut ExchangeGroup),
    ) -> Input {
        if let Some(g) = self.exchange.get_mut(&group.id) {
            apply(g);
        }
        Input::ActionDone {
            group,
            action,
            result: Ok(()),
        }
    }

    fn record(&mut self, d: Decision) {
        let place = d
            .strategy
            .as_ref()
            .and_then(|s| self.places.get(s))
            .map(|p| p.0);
        if let Some(k) = place {
            let cooldown = self.timing[k].cooldown;
            match (d.event, cooldown) {
                (DecisionKind::Trip, Some(c)) => {
                    self.check(tick_after(d.ts_ms + c), k);
                    self.check_expiries(k);
                }
                (DecisionKind::Reset, Some(_)) => {
                    self.check(tick_after(d.ts_ms + AUTO_RESET_MEMORY_MS), k);
                }
                (DecisionKind::Warn, _) => self.check_expiries(k),
                _ => {}
            }
        }
        match d.event {
            DecisionKind::Trip
            | DecisionKind::Warn
            | DecisionKind::WarnCleared
            | DecisionKind::Reset
            | DecisionKind::KillEngaged => self.outcome.decisions.push(d),
            _ => {}
        }
    }

    /// The exchange's own limit: a group whose contracts in 15 s pass its `contracts_limit`
    /// is triggered, and the stream says so.
    fn exchange_volume(&mut self, group: &GroupId, ts_ms: i64, count: Contracts) {
        let Some(g) = self.exchange.get_mut(group) else {
            return;
        };
        g.volume.add(ts_ms, count);
        if g.triggered || g.volume.sum(self.now) <= g.limit {
            return;
        }
        g.triggered = true;
        self.outcome.exchange_triggers += 1;
        self.pump(Input::GroupEvent {
            group: group.clone(),
            change: GroupChange::Triggered,
        });
    }

    fn check(&mut self, at: i64, k: usize) {
        self.checks.entry(at).or_default().insert(k);
    }

    /// Strategy `k` is waiting on time: a look at the first tick after each of its fills
    /// leaves each of its windows.
    fn check_expiries(&mut self, k: usize) {
        let now = self.now;
        let t = &self.timing[k];
        let due: Vec<i64> = t
            .recent
            .iter()
            .flat_map(|f| t.windows.iter().map(move |w| f + w))
            .filter(|&at| at > now)
            .map(tick_after)
            .collect();
        for at in due {
            self.check(at, k);
        }
    }

    /// A fill of `strategy` at `ts_ms`: remembered while in its longest window, and looked
    /// at when it leaves each window if the strategy waits on time.
    fn fill_timing(&mut self, strategy: &str, ts_ms: i64) {
        let Some(&(k, _)) = self.places.get(strategy) else {
            return;
        };
        let waits = self.waits_on_time(k);
        let t = &mut self.timing[k];
        let longest = t.windows.last().copied().unwrap_or(0);
        while t.recent.front().is_some_and(|&f| f + longest <= ts_ms) {
            t.recent.pop_front();
        }
        t.recent.push_back(ts_ms);
        if waits {
            let at: Vec<i64> = t.windows.iter().map(|w| tick_after(ts_ms + w)).collect();
            for a in at {
                self.check(a, k);
            }
        }
    }

    /// Whether passing time alone can change a decision for strategy `k`.
    fn waits_on_time(&self, k: usize) -> bool {
        self.engine.strategies().get(k).is_some_and(|s| {
            s.is_warned()
                || (s.state() == GuardState::Tripped
                    && matches!(s.policy.reset, ResetPolicy::Cooldown { .. }))
        })
    }

    /// Runs the engine's tick at each look due by `t` where a strategy looked at is still
    /// warned, or its automatic reset is due.
    fn advance_to(&mut self, t: i64) {
        if self.every_tick {
            let mut at = tick_after(self.now + 1);
            while at <= t {
                self.now = at;
                self.pump(Input::Tick);
                at += TICK_MS;
            }
            return;
        }
        while let Some(entry) = self.checks.first_entry() {
            if *entry.key() > t {
                return;
            }
            let (at, strategies) = entry.remove_entry();
            if at < self.now {
                continue;
            }
            let decides = strategies.iter().any(|&k| {
                let Some(name) = self
                    .engine
                    .strategies()
                    .get(k)
                    .map(|s| s.policy.name.clone())
                else {
                    return false;
                };
                self.engine.strategy_mut(&name).is_some_and(|s| {
                    s.is_warned() || (s.state() == GuardState::Tripped && s.auto_reset_due(at))
                })
            });
            if decides {
                self.now = at;
                self.pump(Input::Tick);
            }
        }
    }

    /// One point on each of the strategy's limit traces, at `now`.
    fn sample(&mut self, strategy: &str) {
        let Some(&(_, first)) = self.places.get(strategy) else {
            return;
        };
        let now = self.now;
        let traces = &mut self.outcome.traces;
        if let Some(s) = self.engine.strategy_mut(strategy) {
            let mut i = first;
            s.each_usage(now, |_, spec, usage| {
                if let Some(t) = traces.get_mut(i) {
                    t.points.push((now, utilisation(spec, usage)));
                }
                i += 1;
            });
        }
    }
}

/// A window's use of its limit: the largest of its measures' shares of their maxima.
pub fn utilisation(spec: &LimitSpec, usage: crate::risk::limits::Usage) -> f64 {
    [
        spec.max_contracts
            .map(|m| usage.contracts.hundredths() as f64 / m.hundredths().max(1) as f64),
        spec.max_notional
            .map(|m| usage.notional.micros() as f64 / m.micros().max(1) as f64),
        spec.max_fills.map(|m| usage.fills as f64 / m.max(1) as f64),
    ]
    .into_iter()
    .flatten()
    .fold(0.0, f64::max)
}

/// The limit an evidence names, with its figures, for reports: `21.00/20.00 contracts`.
pub fn figures(e: &Evidence) -> String {
    let mut parts = Vec::new();
    if let Some(m) = e.max_contracts {
        parts.push(format!("{}/{} contracts", e.contracts, m));
    }
    if let Some(m) = e.max_notional {
        parts.push(format!("${}/${} notional", e.notional, m));
    }
    if let Some(m) = e.max_fills {
        parts.push(format!("{}/{} fills", e.fills, m));
    }
    parts.join(", ")
}

/// `known` (each strategy's groups from `state.json`), with one made-up group for each
/// strategy that has none there, in its policy's subaccount.
pub fn with_made_up_groups(
    risk: &RiskConfig,
    subaccounts: &HashMap<String, u8>,
    known: &BTreeMap<String, Vec<GroupAddress>>,
) -> BTreeMap<String, Vec<GroupAddress>> {
    let mut out = known.clone();
    for s in &risk.strategies {
        let groups = out.entry(s.name.clone()).or_default();
        if groups.is_empty() {
            groups.push(GroupAddress {
                id: GroupId::new(format!("replay-{}", s.name)),
                subaccount: subaccounts.get(&s.name).copied().unwrap_or(0),
                exchange_index: 0,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::history::HistoryFill;
    use crate::risk::policy::{BlindAction, KillScope, LostAction, Mode, StrategyPolicy};
    use crate::risk::{Dollars, Ratio};
    use proptest::prelude::*;

    fn policy(name: &str, window_ms: i64, max: i64, cooldown_ms: i64) -> StrategyPolicy {
        StrategyPolicy {
            name: name.into(),
            mode: Mode::Enforce,
            group_limit: Contracts::from_whole(60),
            limits: vec![
                LimitSpec {
                    name: "a".into(),
                    window_ms,
                    max_contracts: Some(Contracts::from_whole(max)),
                    max_notional: None,
                    max_fills: None,
                    warn_ratio: Ratio::from_decimal(0.7).unwrap(),
                },
                LimitSpec {
                    name: "b".into(),
                    window_ms: window_ms * 3,
                    max_contracts: None,
                    max_notional: None,
                    max_fills: Some(12),
                    warn_ratio: Ratio::from_decimal(0.5).unwrap(),
                },
            ],
            reset: ResetPolicy::Cooldown {
                cooldown_ms,
                resume_ratio: Ratio::from_decimal(0.5).unwrap(),
                max_auto_resets: 3,
            },
            blind: BlindAction::Alert,
            owner_lost: LostAction::default(),
        }
    }

    /// A replay of `strategies` (each with its made-up group, mapped by it) and `account`.
    fn setup_of(strategies: Vec<StrategyPolicy>, account: Option<LimitSpec>) -> Setup {
        let risk = RiskConfig {
            strategies,
            account_limit: account,
            kill_scope: KillScope::Managed,
            kill_hold: false,
            blind_after_ms: 10_000,
            cluster: false,
            audit_fills: false,
        };
        let groups = with_made_up_groups(&risk, &HashMap::new(), &BTreeMap::new());
        let mut mapping = Mapping::default();
        for (name, g) in &groups {
            mapping.strategies.insert(name.clone());
            mapping.groups.insert(g[0].id.clone(), name.clone());
        }
        Setup {
            risk,
            groups,
            mapping,
        }
    }

    /// The account limit counts every fill, mapped or not; its breach engages the kill switch,
    /// which the report shows among the trips.
    #[test]
    fn the_account_limit_engages_the_kill_switch_on_every_fill_mapped_or_not() {
        let mut x = policy("x", 60_000, 1_000, 0);
        x.limits.truncate(1);
        let account = LimitSpec {
            name: "account".into(),
            window_ms: 10_000,
            max_contracts: Some(Contracts::from_whole(10)),
            max_notional: None,
            max_fills: None,
            warn_ratio: Ratio::from_decimal(0.8).unwrap(),
        };
        let setup = setup_of(vec![x], Some(account));
        let fill = |i: i64, group: Option<&str>| HistoryFill {
            trade_id: format!("t{i}"),
            order_id: format!("o{i}"),
            ts_ms: 1_000_000 + i * 1_000,
            count: Contracts::from_whole(4),
            price: Dollars::parse("0.50").unwrap(),
            subaccount: Some(7),
            group: group.map(GroupId::new),
            live: None,
        };
        // Two in x's group, one unmapped (subaccount 7 has no strategy): 12 > 10.
        let history = History::from_fills(
            vec![
                fill(0, Some("replay-x")),
                fill(1, None),
                fill(2, Some("replay-x")),
            ],
            Vec::new(),
        );
        let out = replay(&setup, &history);
        let kills: Vec<&Decision> = out
            .decisions
            .iter()
            .filter(|d| d.event == DecisionKind::KillEngaged)
            .collect();
        assert_eq!(kills.len(), 1, "{:#?}", out.decisions);
        assert_eq!(kills[0].ts_ms, 1_002_000);
        assert_eq!(
            kills[0].evidence.as_ref().map(|e| e.contracts),
            Some(Contracts::from_whole(12))
        );
        assert_eq!(out.unmapped.values().sum::<u64>(), 1);
        assert_eq!(out.fills["x"], 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Running only the ticks that can decide something makes exactly the decisions that
        /// ticking every 250 ms makes.
        #[test]
        fn the_ticks_left_out_decide_nothing(
            fills in proptest::collection::vec((0usize..2, 0i64..4_000, 1i64..9), 1..80),
            window_s in 1i64..6,
            cooldown_ms in 0i64..5_000,
        ) {
            let setup = setup_of(
                vec![
                    policy("x", window_s * 1_000, 12, cooldown_ms),
                    policy("y", window_s * 700, 9, cooldown_ms / 2),
                ],
                None,
            );
            let mut ts = 1_000_000;
            let history = History::from_fills(
                fills
                    .iter()
                    .enumerate()
                    .map(|(i, &(s, gap, count))| {
                        ts += gap;
                        HistoryFill {
                            trade_id: format!("t{i}"),
                            order_id: format!("o{i}"),
                            ts_ms: ts,
                            count: Contracts::from_whole(count),
                            price: Dollars::parse("0.50").unwrap(),
                            subaccount: None,
                            group: Some(GroupId::new(format!("replay-{}", ["x", "y"][s]))),
                            live: None,
                        }
                    })
                    .collect(),
                Vec::new(),
            );
            let fast = replay_ticking(&setup, &history, false);
            let slow = replay_ticking(&setup, &history, true);
            prop_assert_eq!(&fast.decisions, &slow.decisions);
            prop_assert_eq!(fast.tripped_at_end, slow.tripped_at_end);
        }
    }
}
