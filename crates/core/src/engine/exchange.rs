//! What the exchange says about groups: its events, its listings and the outcomes of our
//! actions.

use super::{
    Action, Command, DAEMON, DecisionKind, EXCHANGE, GroupChange, Output, RiskEngine, decision,
};
use crate::guard::{GuardState, TripReason};
use crate::ids::{GroupAddress, GroupId};
use crate::policy::KillScope;

impl RiskEngine {
    pub(super) fn on_group_event(
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
                match s.state() {
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
                match s.state() {
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
                        if s.proven_active(&id) {
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

    pub(super) fn on_foreign_event(
        &mut self,
        id: GroupId,
        change: GroupChange,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        self.on_peer_group_event(&id, change, now_ms, out);
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

    pub(super) fn on_groups_listed(
        &mut self,
        all: Vec<GroupAddress>,
        _now_ms: i64,
        out: &mut Vec<Output>,
    ) {
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

    pub(super) fn on_action_done(
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
                if let Some(trip) = s.trigger_confirmed(&group.id, now_ms) {
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
                    s.reset_failed();
                }
                d.group_id = Some(group.id);
                out.push(Output::Decision(d));
            }
            (Action::Reset, Ok(())) => {
                if let Some((si, _)) = owner {
                    self.strategies[si].reset_confirmed();
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
}
