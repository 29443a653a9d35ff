//! The fill path's load, shared by `benches/fill_path.rs` (time) and
//! `examples/fill_instructions.rs` (instructions, under callgrind): three strategies with two
//! limits each (15 s and 1 h) and two groups, an account-level limit, 64 orders per strategy
//! already mapped to groups, UUID trade ids, and no limit breached.

use kalshi_riskd::risk::engine::{Fill, Input, RiskEngine};
use kalshi_riskd::risk::policy::{
    BlindAction, KillScope, Mode, ResetPolicy, RiskConfig, StrategyPolicy,
};
use kalshi_riskd::risk::{Contracts, Dollars, GroupAddress, GroupId, LimitSpec, Ratio};

pub const BATCH: usize = 100_000;

fn limit(name: &str, window_ms: i64, max: i64) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        window_ms,
        max_contracts: Some(Contracts::from_whole(max)),
        max_notional: Some(Dollars::parse("1000000").unwrap()),
        max_fills: Some(10_000_000),
        warn_ratio: Ratio::from_decimal(0.8).unwrap(),
    }
}

pub fn engine() -> RiskEngine {
    let names = ["alpha", "beta", "gamma"];
    let cfg = RiskConfig {
        strategies: names
            .iter()
            .map(|n| StrategyPolicy {
                name: (*n).into(),
                mode: Mode::Enforce,
                group_limit: Contracts::from_whole(1_000_000),
                limits: vec![
                    limit("fast", 15_000, 1_000_000),
                    limit("hourly", 3_600_000, 100_000_000),
                ],
                reset: ResetPolicy::Manual,
                blind: BlindAction::Alert,
                owner_lost: Default::default(),
            })
            .collect(),
        account_limit: Some(limit("account", 15_000, 10_000_000)),
        kill_scope: KillScope::Managed,
        kill_hold: true,
        blind_after_ms: 10_000,
        cluster: false,
        audit_fills: false,
    };
    let mut e = RiskEngine::new(cfg);
    let mut out = Vec::new();
    for n in names {
        let groups = (0..2)
            .map(|i| GroupAddress {
                id: GroupId::new(format!("g-{n}-{i}")),
                subaccount: 0,
                exchange_index: i,
            })
            .collect();
        e.handle(
            Input::GroupsAssigned {
                strategy: n.into(),
                groups,
            },
            0,
            &mut out,
        );
        for o in 0..64 {
            e.handle(
                Input::OrderGroup {
                    order_id: format!("{n}-order-{o}"),
                    group: Some(GroupId::new(format!("g-{n}-{}", o % 2))),
                },
                0,
                &mut out,
            );
        }
    }
    e
}

pub fn fills(start: u64, ms_per_fill: i64) -> Vec<(i64, Fill)> {
    let names = ["alpha", "beta", "gamma"];
    (0..BATCH as u64)
        .map(|i| {
            let n = start + i;
            let ts = 1_000 + n as i64 * ms_per_fill;
            (
                ts,
                Fill {
                    trade_id: format!(
                        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                        n >> 32,
                        (n >> 16) & 0xffff,
                        n & 0xfff,
                        (n >> 12) & 0xfff,
                        n
                    ),
                    order_id: format!("{}-order-{}", names[(n % 3) as usize], n % 64),
                    count: Contracts::from_whole(1 + (n % 5) as i64),
                    price: Dollars::parse("0.42").unwrap(),
                    ts_ms: ts,
                },
            )
        })
        .collect()
}
