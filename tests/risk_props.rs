//! Properties of the risk engine over arbitrary sequences of inputs:
//! - every trip yields a Trigger for every group of the strategy (in enforce mode);
//! - the kill latch is released by nothing but an operator's release;
//! - no reset is ever sent while the kill switch is engaged or the stream is blind;
//! - the engine never panics, whatever arrives in whatever order.

mod risk_support;

use kalshi_riskd::risk::engine::{
    Action, Command, DecisionKind, GroupChange, Input, OperatorCommand, Output, StreamHealth,
};
use kalshi_riskd::risk::policy::{BlindAction, KillScope};
use kalshi_riskd::risk::{Contracts, Dollars, GroupAddress, GroupId};
use proptest::prelude::*;
use risk_support::*;

const STRATEGIES: [&str; 3] = ["a", "b", "c"];

fn harness(account_limit: bool) -> Harness {
    let mut a = policy(
        "a",
        vec![limit("fast", 15_000, 50), limit("slow", 120_000, 120)],
    );
    a.reset = cooldown(5_000, 0.5, 3);
    a.blind = BlindAction::Trigger;
    let mut b = policy("b", vec![limit("fast", 15_000, 30)]);
    b.reset = cooldown(2_000, 0.9, 10);
    let c = policy("c", vec![limit("fast", 15_000, 80)]);
    let mut cfg = config(vec![a, b, c]);
    cfg.kill_scope = KillScope::Account;
    if account_limit {
        cfg.account_limit = Some(limit("account", 30_000, 200));
    }
    cfg.blind_after_ms = 4_000;
    Harness::new(cfg, 2)
}

/// One step: how far the clock moves, and what arrives.
#[derive(Debug, Clone)]
enum Step {
    Fill {
        strategy: usize,
        hundredths: i64,
        known_order: bool,
        dup: bool,
    },
    Lookup {
        strategy: Option<usize>,
        fail: bool,
    },
    Group {
        strategy: usize,
        group: u32,
        change: u8,
    },
    Foreign {
        change: u8,
    },
    Listed,
    Done {
        strategy: usize,
        group: u32,
        action: u8,
        ok: bool,
    },
    Stream(u8),
    Tick,
    Kill,
    Release,
    Reset(Option<usize>),
    Trigger(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..3usize, 1..3_000i64, prop::bool::weighted(0.8), prop::bool::weighted(0.05))
            .prop_map(|(strategy, hundredths, known_order, dup)| Step::Fill { strategy, hundredths, known_order, dup }),
        1 => (prop::option::of(0..3usize), prop::bool::ANY).prop_map(|(strategy, fail)| Step::Lookup { strategy, fail }),
        2 => (0..3usize, 0..2u32, 0..5u8).prop_map(|(strategy, group, change)| Step::Group { strategy, group, change }),
        1 => (0..5u8).prop_map(|change| Step::Foreign { change }),
        1 => Just(Step::Listed),
        2 => (0..3usize, 0..2u32, 0..3u8, prop::bool::ANY).prop_map(|(strategy, group, action, ok)| Step::Done { strategy, group, action, ok }),
        2 => (0..4u8).prop_map(Step::Stream),
        4 => Just(Step::Tick),
        1 => Just(Step::Kill),
        1 => Just(Step::Release),
        1 => prop::option::of(0..3usize).prop_map(Step::Reset),
        1 => (0..3usize).prop_map(Step::Trigger),
    ]
}

fn change(n: u8) -> GroupChange {
    match n {
        0 => GroupChange::Created,
        1 => GroupChange::Triggered,
        2 => GroupChange::Reset,
        3 => GroupChange::Deleted,
        _ => GroupChange::LimitUpdated(Some(Contracts::from_whole(123))),
    }
}

struct Run {
    h: Harness,
    last_order: Vec<Option<String>>,
    pending_lookup: Vec<String>,
    last_fill: Option<kalshi_riskd::risk::engine::Fill>,
}

impl Run {
    fn input(&mut self, s: &Step) -> Input {
        let foreign = GroupAddress {
            id: GroupId::new("foreign-1"),
            subaccount: 9,
            exchange_index: 0,
        };
        match s.clone() {
            Step::Fill {
                strategy,
                hundredths,
                known_order,
                dup,
            } => {
                if dup && let Some(f) = self.last_fill.clone() {
                    return Input::Fill(f);
                }
                let name = STRATEGIES[strategy];
                let order = format!("o-{}-{}", name, self.h.next_trade);
                if known_order {
                    let mut out = Vec::new();
                    self.h.engine.handle(
                        Input::OrderGroup {
                            order_id: order.clone(),
                            group: Some(group(name, 0).id),
                        },
                        self.h.now,
                        &mut out,
                    );
                } else {
                    self.pending_lookup.push(order.clone());
                }
                self.last_order[strategy] = Some(order.clone());
                let f = self
                    .h
                    .make_fill(&order, Contracts::from_hundredths(hundredths), "0.37");
                self.last_fill = Some(f.clone());
                Input::Fill(f)
            }
            Step::Lookup { strategy, fail } => {
                let order_id = self.pending_lookup.pop().unwrap_or_else(|| "nobody".into());
                let group = if fail {
                    Err("HTTP 500".into())
                } else {
                    Ok(strategy.map(|s| group(STRATEGIES[s], 1).id))
                };
                Input::OrderLookup { order_id, group }
            }
            Step::Group {
                strategy,
                group: g,
                change: c,
            } => Input::GroupEvent {
                group: group(STRATEGIES[strategy], g).id,
                change: change(c),
            },
            Step::Foreign { change: c } => Input::GroupEvent {
                group: foreign.id,
                change: change(c),
            },
            Step::Listed => {
                let mut all: Vec<GroupAddress> = STRATEGIES
                    .iter()
                    .flat_map(|s| [group(s, 0), group(s, 1)])
                    .collect();
                all.push(foreign);
                Input::GroupsListed(all)
            }
            Step::Done {
                strategy,
                group: g,
                action,
                ok,
            } => Input::ActionDone {
                group: group(STRATEGIES[strategy], g),
                action: [Action::Trigger, Action::Reset, Action::UpdateLimit][action as usize],
                result: if ok { Ok(()) } else { Err("HTTP 503".into()) },
            },
            Step::Stream(n) => Input::Stream(match n {
                0 => StreamHealth::Connected,
                1 => StreamHealth::Disconnected,
                2 => StreamHealth::Blind,
                _ => StreamHealth::Lossy("seq gap".into()),
            }),
            Step::Tick => Input::Tick,
            Step::Kill => Input::Operator {
                command: OperatorCommand::Kill,
                actor: "signal".into(),
            },
            Step::Release => Input::Operator {
                command: OperatorCommand::Release,
                actor: "uid:0".into(),
            },
            Step::Reset(s) => Input::Operator {
                command: OperatorCommand::Reset(s.map(|i| STRATEGIES[i].to_owned())),
                actor: "uid:0".into(),
            },
            Step::Trigger(s) => Input::Operator {
                command: OperatorCommand::Trigger(STRATEGIES[s].to_owned()),
                actor: "uid:0".into(),
            },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_engines_promises_hold_for_any_sequence(
        account_limit in prop::bool::ANY,
        steps in prop::collection::vec((0i64..3_000, step()), 1..250),
    ) {
        let mut run = Run { h: harness(account_limit), last_order: vec![None; 3], pending_lookup: Vec::new(), last_fill: None };
        for (advance, s) in &steps {
            run.h.advance(*advance);
            let input = run.input(s);
            let is_release = matches!(&input, Input::Operator { command: OperatorCommand::Release, .. });
            let killed_before = run.h.engine.kill().is_some();
            let blind_before = run.h.engine.is_blind();
            let mut out = Vec::new();
            run.h.engine.handle(input.clone(), run.h.now, &mut out);

            // The latch is released only by a release.
            if killed_before && run.h.engine.kill().is_none() {
                prop_assert!(is_release, "released by {input:?}");
            }
            // No reset while killed or blind (before the input, or made so by it).
            let sent_reset = out.iter().any(|o| matches!(o, Output::Command(Command::Reset { .. })));
            if sent_reset {
                prop_assert!(!killed_before && !blind_before, "reset while killed={killed_before} blind={blind_before}: {input:?}");
                prop_assert!(run.h.engine.kill().is_none() && !run.h.engine.is_blind());
            }
            // Every trip triggers every group of its strategy, in the same breath.
            for o in &out {
                if let Output::Decision(d) = o && d.event == DecisionKind::Trip {
                    let name = d.strategy.clone().unwrap();
                    for g in [group(&name, 0), group(&name, 1)] {
                        prop_assert!(
                            out.iter().any(|o| matches!(o, Output::Command(Command::Trigger { group }) if *group == g)),
                            "trip of {name} without a Trigger for {}: {input:?}", g.id
                        );
                    }
                }
            }
        }
        // The snapshot always round-trips.
        let snap = run.h.engine.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        prop_assert_eq!(serde_json::from_str::<kalshi_riskd::risk::engine::Snapshot>(&json).unwrap(), snap);
        let _ = Dollars::ZERO;
    }
}

/// Guards the properties above against vacuity: random runs do reach trips, resets, kills,
/// releases, blindness and unmapped fills.
#[test]
fn random_runs_reach_every_kind_of_decision() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    let mut resets = 0;
    for _ in 0..200 {
        let steps = prop::collection::vec((0i64..3_000, step()), 50..250)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut run = Run {
            h: harness(true),
            last_order: vec![None; 3],
            pending_lookup: Vec::new(),
            last_fill: None,
        };
        for (advance, s) in &steps {
            run.h.advance(*advance);
            let input = run.input(s);
            let mut out = Vec::new();
            run.h.engine.handle(input, run.h.now, &mut out);
            for o in out {
                match o {
                    Output::Decision(d) => {
                        seen.insert(format!("{:?}", d.event));
                    }
                    Output::Command(Command::Reset { .. }) => resets += 1,
                    _ => {}
                }
            }
        }
    }
    for kind in [
        "Trip",
        "KillEngaged",
        "KillReleased",
        "Reset",
        "ResetRefused",
        "Blind",
        "UnmappedFill",
        "Retrigger",
        "TripConfirmed",
    ] {
        assert!(seen.contains(kind), "{kind} never happened; saw {seen:?}");
    }
    assert!(resets > 0);
}

/// A fill of one contract in strategy `a`'s group 0, at exchange time `ts`.
/// A tick; each sweep it asks for is answered, when `answered()` says so, with the fills of
/// `made` from its start that the exchange lists by now (those at least `lag` ms old).
fn tick_answering_sweeps(
    h: &mut Harness,
    made: &[kalshi_riskd::risk::engine::Fill],
    lag: i64,
    mut answered: impl FnMut() -> bool,
) {
    for o in h.send(Input::Tick) {
        if let Output::Command(Command::Sweep { since_ms }) = o {
            if !answered() {
                continue;
            }
            let listed: Vec<_> = made
                .iter()
                .filter(|f| f.ts_ms >= since_ms && f.ts_ms <= h.now - lag)
                .cloned()
                .collect();
            h.send(Input::Backfill {
                fills: listed,
                since_ms,
                reason: kalshi_riskd::risk::engine::SWEEP_REASON.into(),
            });
        }
    }
}

fn fill_at(h: &mut Harness, n: usize, ts: i64) -> kalshi_riskd::risk::engine::Fill {
    let mut f = h.make_fill("o-a", Contracts::from_whole(1), "0.50");
    f.trade_id = format!("t-{n}");
    f.ts_ms = ts;
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The stream runs in spells, up and down. Fills while it is up are streamed; fills while
    /// it is down are lost to it and read back by the backfill that follows (from shortly
    /// before the last fill counted, as the engine asks), which re-reads some fills already
    /// counted. However long the spells, every fill is counted exactly once.
    #[test]
    fn overlapping_backfills_never_count_a_fill_twice(
        // Per spell: (up?, fills as milliseconds since the previous one, then a pause).
        spells in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(0i64..20_000, 0..12), 0i64..3_600_000),
            1..12,
        ),
    ) {
        use kalshi_riskd::risk::engine::{BACKFILL_MARGIN_MS, Command};
        let mut cfg = config(vec![policy("a", vec![limit("day", 86_400_000, 1_000_000)])]);
        cfg.kill_scope = KillScope::Managed;
        let mut h = Harness::new(cfg, 1);
        h.send(Input::OrderGroup { order_id: "o-a".into(), group: Some(group("a", 0).id) });
        let mut made = Vec::new();
        for (up, gaps, pause) in &spells {
            if !up {
                h.send(Input::Stream(StreamHealth::Disconnected));
            }
            for dt in gaps {
                h.advance(*dt);
                let now = h.now;
                let f = fill_at(&mut h, made.len(), now);
                made.push(f.clone());
                if *up {
                    h.send(Input::Fill(f));
                }
            }
            h.advance(*pause);
            if !up {
                // The stream is back: the engine asks for a backfill; the exchange answers
                // with every fill from that time on.
                let out = h.send(Input::Stream(StreamHealth::Connected));
                let since = out.iter().find_map(|o| match o {
                    Output::Command(Command::Backfill { since_ms }) => Some(*since_ms),
                    _ => None,
                });
                let since = since.expect("a backfill is asked for after a gap");
                if let Some(last) = h.engine.last_fill_ms() {
                    prop_assert_eq!(since, last - BACKFILL_MARGIN_MS);
                }
                let listed: Vec<_> = made.iter().filter(|f| f.ts_ms >= since).cloned().collect();
                h.send(Input::Backfill { fills: listed, since_ms: since, reason: "gap".into() });
            }
        }
        prop_assert_eq!(h.engine.counters().fills, made.len() as u64);
        prop_assert_eq!(
            h.engine.strategies()[0].contracts_total,
            Contracts::from_whole(made.len() as i64)
        );
    }

    /// The stream stays up but silently drops some fills (the `fill` channel has no sequence
    /// numbers to show it). Ticks bring the periodic sweep; the exchange answers each with
    /// every fill from the time it asks. However the drops fall, every fill is counted exactly
    /// once, and none waits longer than a sweep period and a tick to be counted.
    #[test]
    fn the_sweep_counts_every_silently_dropped_fill_once(
        // Per fill: milliseconds since the previous one, and whether the stream delivers it.
        fills in proptest::collection::vec((0i64..7_000, any::<bool>()), 1..60),
    ) {
        use kalshi_riskd::risk::engine::SWEEP_EVERY_MS;
        let mut cfg = config(vec![policy("a", vec![limit("day", 86_400_000, 1_000_000)])]);
        cfg.kill_scope = KillScope::Managed;
        let mut h = Harness::new(cfg, 1);
        h.send(Input::OrderGroup { order_id: "o-a".into(), group: Some(group("a", 0).id) });
        h.send(Input::Stream(StreamHealth::Connected));
        h.send(Input::Tick);
        let mut made: Vec<kalshi_riskd::risk::engine::Fill> = Vec::new();
        let mut dropped_at: Vec<i64> = Vec::new();
        let tick = 500;
        let step = |h: &mut Harness, made: &[kalshi_riskd::risk::engine::Fill]| {
            tick_answering_sweeps(h, made, 0, || true)
        };
        for (n, (dt, delivered)) in fills.iter().enumerate() {
            // Time passes in ticks, as in the daemon.
            let mut left = *dt;
            while left > 0 {
                let d = left.min(tick);
                h.advance(d);
                left -= d;
                step(&mut h, &made);
                let late = dropped_at.iter().filter(|t| **t <= h.now - SWEEP_EVERY_MS - tick);
                let due = made.len() - dropped_at.len() + late.count();
                let counted = h.engine.counters().fills as usize;
                prop_assert!(counted >= due, "{counted} counted, {due} due by {}", h.now);
                prop_assert!(counted <= made.len(), "a fill counted twice");
            }
            let now = h.now;
            let f = fill_at(&mut h, n, now);
            made.push(f.clone());
            if *delivered {
                h.send(Input::Fill(f));
            } else {
                dropped_at.push(now);
            }
        }
        // One sweep period and a tick later, everything is counted.
        for _ in 0..=(SWEEP_EVERY_MS / tick) {
            h.advance(tick);
            step(&mut h, &made);
        }
        prop_assert_eq!(h.engine.counters().fills, made.len() as u64);
        prop_assert_eq!(
            h.engine.strategies()[0].contracts_total,
            Contracts::from_whole(made.len() as i64)
        );
    }

    /// As above, with the exchange listing each fill a while after its time (up to 3 s) and
    /// with sweeps whose read fails (never answered). Every fill is counted exactly once, by
    /// the time the sweeps answer again.
    #[test]
    fn sweeps_that_fail_and_fills_listed_late_still_count_every_fill_once(
        fills in proptest::collection::vec((0i64..7_000, any::<bool>()), 1..60),
        answers in proptest::collection::vec(any::<bool>(), 1..8),
        lag in 0i64..3_000,
    ) {
        use kalshi_riskd::risk::engine::SWEEP_EVERY_MS;
        let mut cfg = config(vec![policy("a", vec![limit("day", 86_400_000, 1_000_000)])]);
        cfg.kill_scope = KillScope::Managed;
        let mut h = Harness::new(cfg, 1);
        h.send(Input::OrderGroup { order_id: "o-a".into(), group: Some(group("a", 0).id) });
        h.send(Input::Stream(StreamHealth::Connected));
        h.send(Input::Tick);
        let mut made: Vec<kalshi_riskd::risk::engine::Fill> = Vec::new();
        let mut sweeps = 0usize;
        let tick = 500;
        let step = |h: &mut Harness, made: &[kalshi_riskd::risk::engine::Fill], sweeps: &mut usize, always: bool| {
            tick_answering_sweeps(h, made, lag, || {
                *sweeps += 1;
                always || answers[*sweeps % answers.len()]
            })
        };
        for (n, (dt, delivered)) in fills.iter().enumerate() {
            let mut left = *dt;
            while left > 0 {
                let d = left.min(tick);
                h.advance(d);
                left -= d;
                step(&mut h, &made, &mut sweeps, false);
                prop_assert!(h.engine.counters().fills as usize <= made.len(), "a fill counted twice");
            }
            let now = h.now;
            let f = fill_at(&mut h, n, now);
            made.push(f.clone());
            if *delivered {
                h.send(Input::Fill(f));
            }
        }
        // Two sweep periods later, with every sweep answered, everything is counted.
        for _ in 0..=(2 * SWEEP_EVERY_MS / tick) {
            h.advance(tick);
            step(&mut h, &made, &mut sweeps, true);
        }
        prop_assert_eq!(h.engine.counters().fills, made.len() as u64);
    }
}
