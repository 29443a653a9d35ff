//! Strategies coming, changing and going (start and reload).

use std::collections::BTreeSet;

use super::{Command, DAEMON, DecisionKind, Output, RiskEngine, decision};
use crate::guard::{StrategyGuard, TripReason};
use crate::ids::GroupAddress;
use crate::policy::StrategyPolicy;

impl RiskEngine {
    pub(super) fn add_strategy(&mut self, p: StrategyPolicy) {
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

    pub(super) fn assign_groups(&mut self, strategy: usize, groups: Vec<GroupAddress>) {
        self.group_moves += 1;
        for g in &self.strategies[strategy].groups {
            self.groups.remove(&g.id);
        }
        for (i, g) in groups.iter().enumerate() {
            self.groups.insert(g.id.clone(), (strategy, i));
            self.foreign.remove(&g.id);
        }
        self.strategies[strategy].set_groups(groups);
    }

    pub(super) fn on_policies(
        &mut self,
        policies: Vec<StrategyPolicy>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
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
        self.group_moves += 1;
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
