//! A harness for driving the pure risk engine with explicit time.
#![allow(dead_code)]

use kalshi_riskd::risk::engine::{
    Command, Decision, DecisionKind, Fill, Input, Output, RiskEngine,
};
use kalshi_riskd::risk::policy::{
    BlindAction, KillScope, Mode, ResetPolicy, RiskConfig, StrategyPolicy,
};
use kalshi_riskd::risk::{Contracts, Dollars, GroupAddress, GroupId, LimitSpec, Ratio};

pub fn c(n: i64) -> Contracts {
    Contracts::from_whole(n)
}

pub fn limit(name: &str, window_ms: i64, max_contracts: i64) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        window_ms,
        max_contracts: Some(c(max_contracts)),
        max_notional: None,
        max_fills: None,
        warn_ratio: Ratio::from_decimal(0.8).unwrap(),
    }
}

pub fn policy(name: &str, limits: Vec<LimitSpec>) -> StrategyPolicy {
    StrategyPolicy {
        name: name.into(),
        mode: Mode::Enforce,
        group_limit: c(500),
        limits,
        reset: ResetPolicy::Manual,
        blind: BlindAction::Alert,
        owner_lost: Default::default(),
    }
}

pub fn cooldown(cooldown_ms: i64, resume: f64, max: u32) -> ResetPolicy {
    ResetPolicy::Cooldown {
        cooldown_ms,
        resume_ratio: Ratio::from_decimal(resume).unwrap(),
        max_auto_resets: max,
    }
}

pub fn config(strategies: Vec<StrategyPolicy>) -> RiskConfig {
    RiskConfig {
        strategies,
        account_limit: None,
        kill_scope: KillScope::Managed,
        kill_hold: true,
        blind_after_ms: 10_000,
        cluster: false,
        audit_fills: false,
    }
}

/// Group `n` of a strategy: `g-NAME-N`, subaccount 0, exchange index `n`.
pub fn group(strategy: &str, n: u32) -> GroupAddress {
    GroupAddress {
        id: GroupId::new(format!("g-{strategy}-{n}")),
        subaccount: 0,
        exchange_index: n,
    }
}

pub struct Harness {
    pub engine: RiskEngine,
    pub now: i64,
    pub next_trade: u64,
    /// Cluster mode: a peer's strategy and its groups, for tests that mirror one.
    pub peer: Option<(StrategyPolicy, Vec<GroupAddress>)>,
}

impl Harness {
    /// Each strategy gets `groups` groups, assigned at time 0.
    pub fn new(cfg: RiskConfig, groups: u32) -> Harness {
        let names: Vec<String> = cfg.strategies.iter().map(|s| s.name.clone()).collect();
        let mut h = Harness {
            engine: RiskEngine::new(cfg),
            now: 1_000_000,
            next_trade: 0,
            peer: None,
        };
        for name in names {
            let gs = (0..groups).map(|n| group(&name, n)).collect();
            h.send(Input::GroupsAssigned {
                strategy: name,
                groups: gs,
            });
        }
        h
    }

    pub fn send(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.engine.handle(input, self.now, &mut out);
        out
    }

    pub fn at(&mut self, now: i64) -> &mut Self {
        assert!(now >= self.now, "time only moves forward");
        self.now = now;
        self
    }

    pub fn advance(&mut self, ms: i64) -> &mut Self {
        self.now += ms;
        self
    }

    /// A fill of `count` contracts at $0.50 in the strategy's group 0, mapped first.
    pub fn fill(&mut self, strategy: &str, count: Contracts) -> Vec<Output> {
        self.fill_priced(strategy, count, "0.50")
    }

    pub fn fill_priced(&mut self, strategy: &str, count: Contracts, price: &str) -> Vec<Output> {
        self.next_trade += 1;
        let order_id = format!("o-{strategy}-{}", self.next_trade);
        let mut out = self.send(Input::OrderGroup {
            order_id: order_id.clone(),
            group: Some(group(strategy, 0).id),
        });
        let fill = self.make_fill(&order_id, count, price);
        out.extend(self.send(Input::Fill(fill)));
        out
    }

    pub fn make_fill(&mut self, order_id: &str, count: Contracts, price: &str) -> Fill {
        self.next_trade += 1;
        Fill {
            trade_id: format!("t-{}", self.next_trade),
            order_id: order_id.into(),
            count,
            price: Dollars::parse(price).unwrap(),
            ts_ms: self.now,
        }
    }
}

pub fn commands(out: &[Output]) -> Vec<Command> {
    out.iter()
        .filter_map(|o| match o {
            Output::Command(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

pub fn triggered(out: &[Output]) -> Vec<String> {
    let mut v: Vec<String> = commands(out)
        .into_iter()
        .filter_map(|c| match c {
            Command::Trigger { group } => Some(group.id.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

pub fn resets(out: &[Output]) -> Vec<String> {
    commands(out)
        .into_iter()
        .filter_map(|c| match c {
            Command::Reset { group } => Some(group.id.to_string()),
            _ => None,
        })
        .collect()
}

pub fn decisions(out: &[Output], kind: DecisionKind) -> Vec<Decision> {
    out.iter()
        .filter_map(|o| match o {
            Output::Decision(d) if d.event == kind => Some(d.clone()),
            _ => None,
        })
        .collect()
}
