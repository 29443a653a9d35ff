//! Cluster mode: the other members' strategies, mirrored from what they publish, and guarded
//! here when their owner is lost.
//!
//! Rules a reader can check here:
//! - Every member counts a peer strategy's fills into a mirror of its windows from the moment
//!   it reads the peer's registration, so a mirror is full when it comes to matter. A mirror
//!   that is not guarded here decides nothing.
//! - A mirror is guarded here when the shell says so (its owner was lost and this member is
//!   the leader). Taking over: a trip a previous guard made is applied again; else the policy's
//!   `owner_lost` says whether its groups are triggered at once; else a limit already exceeded
//!   trips it. While guarded, a breach, or the exchange triggering one of its groups, trips it
//!   and triggers all its groups; a group reset outside while tripped is triggered again; the
//!   kill switch covers its groups.
//! - Nothing is ever created or reset for a mirror: its groups are its owner's.
//! - A trip made while guarding is handed to the owner (the shell keeps it in etcd). An owner
//!   that finds a handed trip for one of its strategies takes it, unless already tripped.

use std::collections::BTreeMap;

use super::{Command, DAEMON, DecisionKind, EXCHANGE, GroupChange, Output, RiskEngine, decision};
use crate::guard::{GuardState, StrategyGuard, Trip, TripReason};
use crate::ids::GroupId;
use crate::limits::{Evidence, Usage};
use crate::policy::{KillScope, LostAction};

pub use super::io::{HandedTrip, PeerStrategy};

/// A peer's strategy as mirrored here.
#[derive(Debug)]
pub struct Mirror {
    /// The member that owns it.
    pub member: String,
    /// Its policy, groups and windows; its standing counts only while guarded.
    pub guard: StrategyGuard,
    /// Guarded here: its owner is lost and this member took over.
    pub guarded: bool,
}

impl RiskEngine {
    /// The peers' strategies mirrored here, by name.
    pub fn mirrors(&self) -> &BTreeMap<String, Mirror> {
        &self.peers
    }

    pub(super) fn on_peers(&mut self, list: Vec<PeerStrategy>, now_ms: i64, out: &mut Vec<Output>) {
        let mut old = std::mem::take(&mut self.peers);
        let mut changes = Vec::new();
        for p in list {
            let name = p.policy.name.clone();
            // A strategy this member manages too is a conflict, reported by the shell; its
            // fills are counted here as this member's.
            if self.by_name.contains_key(&name) {
                continue;
            }
            let mut m = old.remove(&name).unwrap_or_else(|| Mirror {
                member: p.member.clone(),
                guard: StrategyGuard::new(p.policy.clone()),
                guarded: false,
            });
            if m.guard.policy != p.policy {
                m.guard.set_policy(p.policy);
            }
            if m.guard.groups != p.groups {
                m.guard.set_groups(p.groups);
            }
            m.member = p.member;
            if m.guarded != p.guarded {
                changes.push((name.clone(), p.guarded));
            }
            m.guarded = p.guarded;
            self.peers.insert(name, m);
        }
        for (name, m) in old.into_iter().filter(|(_, m)| m.guarded) {
            let mut d = decision(
                now_ms,
                DecisionKind::Handback,
                format!("no longer guarded here: {} publishes it no more", m.member),
                DAEMON,
            );
            d.strategy = Some(name);
            out.push(Output::Decision(d));
        }
        self.peer_places = self
            .peers
            .iter()
            .flat_map(|(name, m)| {
                m.guard
                    .groups
                    .iter()
                    .enumerate()
                    .map(move |(i, g)| (g.id.clone(), (name.clone(), i)))
            })
            .collect();
        for (name, guarded) in changes {
            if guarded {
                self.take_over(&name, now_ms, out);
            } else if let Some(m) = self.peers.get_mut(&name) {
                m.guard.hand_back();
                let mut d = decision(
                    now_ms,
                    DecisionKind::Handback,
                    format!(
                        "{} is back: it guards its strategy again (any trip made here goes back with it)",
                        m.member
                    ),
                    DAEMON,
                );
                d.strategy = Some(name);
                out.push(Output::Decision(d));
            }
        }
    }

    fn take_over(&mut self, name: &str, now_ms: i64, out: &mut Vec<Output>) {
        let Some(m) = self.peers.get_mut(name) else {
            return;
        };
        let mut d = decision(
            now_ms,
            DecisionKind::Takeover,
            format!(
                "{} was lost: this member guards the strategy from its published policy ({} groups)",
                m.member,
                m.guard.groups.len()
            ),
            DAEMON,
        );
        d.strategy = Some(name.to_owned());
        out.push(Output::Decision(d));
        if let Some(h) = self.handed.get(name) {
            // Tripped by an earlier guard: it stays tripped, and its groups are triggered again.
            let trip = h.trip.clone();
            m.guard.trip_with(trip);
            self.trigger_mirror(name, now_ms, DAEMON, "tripped by an earlier guard", out);
        } else if m.guard.policy.owner_lost == LostAction::Trigger {
            let detail = format!(
                "its owner {} was lost and its policy says to trigger at once",
                m.member
            );
            self.trip_mirror(
                name,
                TripReason::OwnerLost,
                DAEMON,
                detail,
                None,
                now_ms,
                out,
            );
        } else if let Some(e) = m.guard.breach(now_ms) {
            self.mirror_breached(name, e, now_ms, out);
        }
    }

    /// A fill in a peer's group: counted into its mirror, and acted on if guarded here.
    pub(super) fn on_peer_fill(
        &mut self,
        group: &GroupId,
        usage: Usage,
        ts_ms: i64,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let Some((name, gi)) = self.peer_places.get(group) else {
            return;
        };
        let Some(m) = self.peers.get_mut(name) else {
            return;
        };
        let outcome = m.guard.add_fill(*gi, ts_ms, usage, now_ms);
        if let (true, crate::guard::FillOutcome::Breached(e)) = (m.guarded, outcome) {
            let name = name.clone();
            self.mirror_breached(&name, e, now_ms, out);
        }
    }

    fn mirror_breached(&mut self, name: &str, e: Evidence, now_ms: i64, out: &mut Vec<Output>) {
        let detail = format!("limit {} exceeded", e.limit);
        self.trip_mirror(
            name,
            TripReason::Limit,
            DAEMON,
            detail,
            Some(e),
            now_ms,
            out,
        );
    }

    /// A group event on a group that is not ours: a guarded mirror's acts like our own.
    pub(super) fn on_peer_group_event(
        &mut self,
        id: &GroupId,
        change: GroupChange,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let Some((name, gi)) = self.peer_places.get(id).cloned() else {
            return;
        };
        let Some(m) = self.peers.get(&name).filter(|m| m.guarded) else {
            return;
        };
        let tripped = m.guard.state() == GuardState::Tripped;
        // The account scope holds it as a foreign group already.
        let holding = self.kill.is_engaged()
            && self.cfg.kill_hold
            && self.cfg.kill_scope == KillScope::Managed;
        let group = m.guard.groups.get(gi).cloned();
        match change {
            GroupChange::Triggered if !tripped && !self.kill.is_engaged() => {
                let detail = format!("the exchange triggered group {id}");
                self.trip_mirror(
                    &name,
                    TripReason::Exchange,
                    EXCHANGE,
                    detail,
                    None,
                    now_ms,
                    out,
                );
            }
            GroupChange::Reset | GroupChange::Created if tripped => {
                let mut d = decision(
                    now_ms,
                    DecisionKind::Retrigger,
                    format!(
                        "group {id} was reset outside the daemon while the strategy it guards is tripped"
                    ),
                    DAEMON,
                );
                d.strategy = Some(name.clone());
                d.group_id = Some(id.clone());
                out.push(Output::Decision(d));
                self.trigger_mirror(&name, now_ms, DAEMON, "re-trigger", out);
            }
            GroupChange::Reset | GroupChange::Created if holding => {
                let mut d = decision(
                    now_ms,
                    DecisionKind::Retrigger,
                    format!(
                        "group {id}, guarded for a lost member, became active while the kill switch is engaged"
                    ),
                    DAEMON,
                );
                d.strategy = Some(name);
                d.group_id = Some(id.clone());
                out.push(Output::Decision(d));
                if let Some(group) = group {
                    out.push(Output::Command(Command::Trigger { group }));
                }
            }
            _ => {}
        }
    }

    /// The trips guards made, as etcd holds them now.
    pub(super) fn on_handed_trips(
        &mut self,
        list: Vec<HandedTrip>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        self.handed = list
            .iter()
            .map(|h| (h.strategy.clone(), h.clone()))
            .collect();
        for h in list {
            if let Some(&i) = self.by_name.get(&h.strategy) {
                if self.strategies[i].state() == GuardState::Tripped {
                    continue; // its own trip stands
                }
                let mut d = decision(
                    now_ms,
                    DecisionKind::Handback,
                    format!(
                        "taken back from {}, which guarded it while {} was lost and tripped it",
                        h.by, h.owner
                    ),
                    &h.by,
                );
                d.strategy = Some(h.strategy.clone());
                out.push(Output::Decision(d));
                let trip = Trip {
                    actor: format!("{}@{}", h.trip.actor, h.by),
                    detail: format!("{} (while guarded by {})", h.trip.detail, h.by),
                    confirmed_ms: None,
                    ..h.trip
                };
                self.trip_record(i, trip, now_ms, out);
            } else if self
                .peers
                .get(&h.strategy)
                .is_some_and(|m| m.guarded && m.guard.state() != GuardState::Tripped)
            {
                if let Some(m) = self.peers.get_mut(&h.strategy) {
                    m.guard.trip_with(h.trip);
                }
                self.trigger_mirror(
                    &h.strategy,
                    now_ms,
                    DAEMON,
                    "tripped by an earlier guard",
                    out,
                );
            }
        }
    }

    /// Trips a guarded mirror (if not already tripped) and triggers all its groups.
    #[allow(clippy::too_many_arguments)]
    fn trip_mirror(
        &mut self,
        name: &str,
        reason: TripReason,
        actor: &str,
        detail: String,
        evidence: Option<Evidence>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let Some(m) = self.peers.get_mut(name) else {
            return;
        };
        let tripped = m.guard.trip_with(Trip {
            reason,
            at_ms: now_ms,
            actor: actor.to_owned(),
            detail: detail.clone(),
            evidence: evidence.clone(),
            confirmed_ms: None,
        });
        if !tripped {
            return;
        }
        *self
            .counters
            .trips
            .entry((name.to_owned(), reason))
            .or_insert(0) += 1;
        let mut d = decision(
            now_ms,
            DecisionKind::Trip,
            format!(
                "{}: {detail} (guarding it for {}, which was lost)",
                reason.as_str(),
                m.member
            ),
            actor,
        );
        d.strategy = Some(name.to_owned());
        d.evidence = evidence;
        out.push(Output::Decision(d));
        self.trigger_mirror(name, now_ms, actor, "trip", out);
    }

    /// Triggers every group of a mirror (a shadow-mode policy records them instead).
    fn trigger_mirror(
        &mut self,
        name: &str,
        now_ms: i64,
        actor: &str,
        why: &str,
        out: &mut Vec<Output>,
    ) {
        let Some(m) = self.peers.get_mut(name) else {
            return;
        };
        m.guard.triggers_sent();
        let (mode, groups) = (m.guard.policy.mode, m.guard.groups.clone());
        for g in groups {
            self.command(
                Some((name, mode)),
                Command::Trigger { group: g },
                now_ms,
                actor,
                why,
                out,
            );
        }
    }

    /// The groups of every mirror guarded here (the kill switch covers them).
    pub(super) fn guarded_groups(&self) -> Vec<crate::ids::GroupAddress> {
        self.peers
            .values()
            .filter(|m| m.guarded)
            .flat_map(|m| m.guard.groups.iter().cloned())
            .collect()
    }
}
