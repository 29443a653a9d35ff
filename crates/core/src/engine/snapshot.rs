//! What `state.json` holds, and how an engine is restored from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DAEMON, DecisionKind, Output, RiskEngine, decision};
use crate::guard::{GuardState, StrategyGuard, Trip, TripReason};
use crate::ids::{GroupAddress, GroupId};
use crate::kill::{KillLatch, KillRecord};
use crate::policy::RiskConfig;
use crate::units::Contracts;

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

impl RiskEngine {
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
    pub(super) fn revive(
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
                // A tripped record without its trip (a damaged file) stays tripped, and only an
                // operator resets it.
                let trip = record.trip.clone().unwrap_or_else(|| Trip {
                    reason: TripReason::Manual,
                    at_ms: now_ms,
                    actor: DAEMON.to_owned(),
                    detail: "tripped when the daemon last stopped; the record of why is missing"
                        .to_owned(),
                    evidence: None,
                    confirmed_ms: None,
                });
                guard.trip_with(trip);
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
                guard.become_unknown();
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
    pub(super) fn record_of(s: &StrategyGuard) -> StrategySnapshot {
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
            state: s.state(),
            trip: s.trip().cloned(),
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
}
