//! Trips, Triggers, resets, the kill switch and operators' commands.

use super::{
    ClusterInput, Command, DAEMON, DecisionKind, OperatorCommand, Output, RiskEngine, decision,
};
use crate::guard::{GuardState, Trip, TripReason};
use crate::ids::GroupAddress;
use crate::kill::KillRecord;
use crate::limits::Evidence;
use crate::policy::{KillScope, Mode};

/// Why a reset or release is refused in cluster mode while etcd is out of reach.
const LATCH_UNREADABLE: &str = "the cluster's shared kill latch cannot be read (etcd is out of reach); resets and releases need it";

impl RiskEngine {
    /// Trips a strategy (if not already tripped) and triggers all its groups.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn trip(
        &mut self,
        strategy: usize,
        reason: TripReason,
        actor: &str,
        detail: String,
        evidence: Option<Evidence>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let trip = Trip {
            reason,
            at_ms: now_ms,
            actor: actor.to_owned(),
            detail,
            evidence,
            confirmed_ms: None,
        };
        self.trip_record(strategy, trip, now_ms, out);
    }

    /// Trips a strategy with a trip made now or earlier (one taken back from the member that
    /// guarded it), if not already tripped, and triggers all its groups.
    pub(super) fn trip_record(
        &mut self,
        strategy: usize,
        trip: Trip,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let s = &mut self.strategies[strategy];
        let (reason, actor) = (trip.reason, trip.actor.clone());
        let mut d = decision(
            now_ms,
            DecisionKind::Trip,
            format!("{}: {}", reason.as_str(), trip.detail),
            &actor,
        );
        d.evidence = trip.evidence.clone();
        if !s.trip_with(trip) {
            return;
        }
        let name = s.policy.name.clone();
        *self
            .counters
            .trips
            .entry((name.clone(), reason))
            .or_insert(0) += 1;
        d.strategy = Some(name);
        out.push(Output::Decision(d));
        self.record_warnings(strategy, now_ms, out);
        self.trigger_strategy(strategy, now_ms, &actor, "trip", out);
    }

    /// Sends (or, in shadow mode, records) a Trigger for every group of the strategy.
    pub(super) fn trigger_strategy(
        &mut self,
        strategy: usize,
        now_ms: i64,
        actor: &str,
        why: &str,
        out: &mut Vec<Output>,
    ) {
        let s = &mut self.strategies[strategy];
        s.triggers_sent();
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
    pub(super) fn command(
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

    pub(super) fn engage_kill(&mut self, record: KillRecord, now_ms: i64, out: &mut Vec<Output>) {
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
    pub(super) fn trigger_kill_scope(&mut self, now_ms: i64, actor: &str, out: &mut Vec<Output>) {
        let _ = (now_ms, actor);
        let ours: Vec<GroupAddress> = self.managed_groups().map(|(_, g)| g.clone()).collect();
        for g in ours {
            out.push(Output::Command(Command::Trigger { group: g }));
        }
        let account = self.cfg.kill_scope == KillScope::Account;
        // Cluster mode: the groups of a lost member's strategies guarded here (the account scope
        // reaches them as foreign groups already).
        for g in self.guarded_groups() {
            if !(account && self.foreign.contains_key(&g.id)) {
                out.push(Output::Command(Command::Trigger { group: g }));
            }
        }
        if account {
            for (id, g) in &self.foreign {
                self.kill_foreign_sent.insert(id.clone());
                out.push(Output::Command(Command::Trigger { group: g.clone() }));
            }
            // Groups created since the last listing are found by listing again.
            out.push(Output::Command(Command::Reconcile));
        }
    }

    /// Resets every group of a strategy and marks it active.
    pub(super) fn reset_strategy(
        &mut self,
        i: usize,
        kind: &str,
        actor: &str,
        why: &str,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let s = &mut self.strategies[i];
        s.reset_sent();
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

    /// Releases the kill latch.
    fn release_kill(&mut self, actor: &str, now_ms: i64, out: &mut Vec<Output>) {
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

    /// Cluster mode: the shared kill latch, as etcd holds it.
    pub(super) fn on_cluster(&mut self, input: ClusterInput, now_ms: i64, out: &mut Vec<Output>) {
        match input {
            ClusterInput::Readable(readable) => {
                if readable == self.latch_readable {
                    return;
                }
                self.latch_readable = readable;
                let (kind, reason) = if readable {
                    (
                        DecisionKind::LatchReadable,
                        "the cluster's shared kill latch is read again",
                    )
                } else {
                    (
                        DecisionKind::LatchUnreadable,
                        "the cluster's shared kill latch cannot be read: resets and releases are refused until it can",
                    )
                };
                out.push(Output::Decision(decision(now_ms, kind, reason, DAEMON)));
            }
            ClusterInput::Engaged(record) if !self.kill.is_engaged() => {
                self.engage_kill(record, now_ms, out)
            }
            ClusterInput::Engaged(_) | ClusterInput::Shared => {
                if self.kill.mark_shared() {
                    out.push(Output::Decision(decision(
                        now_ms,
                        DecisionKind::KillShared,
                        "etcd holds the engaged latch: every member of the cluster is engaged",
                        DAEMON,
                    )));
                }
            }
            ClusterInput::Released { actor } => {
                if self.kill.record().is_some_and(|k| k.shared) {
                    self.release_kill(&actor, now_ms, out);
                }
            }
            ClusterInput::PeerGroups(groups) => self.peer_groups = groups,
            ClusterInput::Peers(list) => self.on_peers(list, now_ms, out),
            ClusterInput::HandedTrips(list) => self.on_handed_trips(list, now_ms, out),
            ClusterInput::AccountLimit(active) => self.account_active = active,
        }
    }

    pub(super) fn on_operator(
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
                    shared: false,
                },
                now_ms,
                out,
            ),
            OperatorCommand::Release if !self.latch_readable => {
                out.push(Output::Decision(decision(
                    now_ms,
                    DecisionKind::ReleaseRefused,
                    format!("release refused: {LATCH_UNREADABLE}"),
                    actor,
                )));
            }
            OperatorCommand::Release => self.release_kill(actor, now_ms, out),
            OperatorCommand::Reset(target) => {
                let refusal = if self.kill.is_engaged() {
                    Some("the kill switch is engaged")
                } else if self.blind {
                    Some("the user stream is blind")
                } else if !self.latch_readable {
                    Some(LATCH_UNREADABLE)
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
                    if self.strategies[i].state() == GuardState::Tripped {
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
}
