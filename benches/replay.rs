//! Policy replay: a day of a busy account, 100,000 fills over 20 strategies (5,000 each,
//! about one every 17 s per strategy, in bursts that warn, trip and reset themselves), through
//! the risk core with every limit traced and every busy window's statistics. Goal: well under
//! a second. `cargo bench --bench replay`.

use std::collections::{BTreeMap, HashMap};

use criterion::{Criterion, criterion_group, criterion_main};
use kalshi_riskd::replay::history::{History, HistoryFill, Mapping};
use kalshi_riskd::replay::run::{Setup, with_made_up_groups};
use kalshi_riskd::risk::policy::{
    BlindAction, KillScope, LostAction, Mode, ResetPolicy, RiskConfig, StrategyPolicy,
};
use kalshi_riskd::risk::{Contracts, Dollars, GroupId, LimitSpec, Ratio};

const STRATEGIES: usize = 20;
const FILLS: usize = 100_000;
const DAY_MS: i64 = 86_400_000;

fn policy(name: &str) -> StrategyPolicy {
    let limit = |n: &str, window_ms, max: i64| LimitSpec {
        name: n.into(),
        window_ms,
        max_contracts: Some(Contracts::from_whole(max)),
        max_notional: Some(Dollars::parse("500").unwrap()),
        max_fills: None,
        warn_ratio: Ratio::from_decimal(0.8).unwrap(),
    };
    StrategyPolicy {
        name: name.into(),
        mode: Mode::Enforce,
        group_limit: Contracts::from_whole(1_000),
        limits: vec![limit("fast", 15_000, 60), limit("hour", 3_600_000, 2_000)],
        reset: ResetPolicy::Cooldown {
            cooldown_ms: 60_000,
            resume_ratio: Ratio::from_decimal(0.5).unwrap(),
            max_auto_resets: 1_000,
        },
        blind: BlindAction::Alert,
        owner_lost: LostAction::default(),
    }
}

fn setup() -> (Setup, History) {
    let names: Vec<String> = (0..STRATEGIES).map(|i| format!("s{i:02}")).collect();
    let risk = RiskConfig {
        strategies: names.iter().map(|n| policy(n)).collect(),
        account_limit: None,
        kill_scope: KillScope::Managed,
        kill_hold: false,
        blind_after_ms: 10_000,
        cluster: false,
        audit_fills: false,
    };
    let groups = with_made_up_groups(&risk, &HashMap::new(), &BTreeMap::new());
    let mut mapping = Mapping::default();
    for (name, gs) in &groups {
        mapping.groups.insert(gs[0].id.clone(), name.clone());
        mapping.strategies.insert(name.clone());
    }
    // Deterministic bursts: most fills small, every 40th of a strategy's a burst of ten.
    let mut fills = Vec::with_capacity(FILLS);
    let mut x: u64 = 42;
    for i in 0..FILLS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let s = i % STRATEGIES;
        let burst = (i / STRATEGIES) % 40 < 10;
        let ts_ms = if burst {
            (i as i64 / STRATEGIES as i64) * (DAY_MS / (FILLS / STRATEGIES) as i64) / 4
        } else {
            (i as i64) * DAY_MS / FILLS as i64
        };
        fills.push(HistoryFill {
            trade_id: format!("t{i}"),
            order_id: format!("o{i}"),
            ts_ms: 1_790_000_000_000 + ts_ms,
            count: Contracts::from_whole(1 + (x % 9) as i64),
            price: Dollars::from_micros(10_000 * (1 + (x % 98) as i64)),
            subaccount: Some(0),
            group: Some(GroupId::new(format!("replay-{}", names[s]))),
            live: None,
        });
    }
    (
        Setup {
            risk,
            groups,
            mapping,
        },
        History::from_fills(fills, Vec::new()),
    )
}

fn bench(c: &mut Criterion) {
    let (setup, history) = setup();
    let report = kalshi_riskd::replay::replay(&setup, &history, &[50.0, 99.0]);
    eprintln!(
        "replay of {} fills: {} trips, {} resets, {} warn crossings",
        report.fills,
        report.count(kalshi_riskd::risk::engine::DecisionKind::Trip),
        report.count(kalshi_riskd::risk::engine::DecisionKind::Reset),
        report.count(kalshi_riskd::risk::engine::DecisionKind::Warn),
    );
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.bench_function("100k_fills_20_strategies", |b| {
        b.iter(|| kalshi_riskd::replay::replay(&setup, &history, &[50.0, 90.0, 99.0, 99.9]))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
