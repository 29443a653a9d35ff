//! The loop's side of cluster mode: what the etcd task reports, the rules of
//! [`crate::cluster::sync`] applied to the risk core, and operators' releases, which are
//! written to etcd before the local latch lets go.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::sync::mpsc;

use super::event_loop::{AdminReply, Shell};
use crate::admin::api::{ClusterStatus, GuardedStrategy, Released};
use crate::admin::{AdminAnswer, AdminError};
use crate::cluster::{
    ClusterCommand, ClusterEvent, Conflict, RegisteredStrategy, Registration, SharedLatch, Step,
};
use crate::risk::engine::{ClusterInput, HandedTrip, Input, OperatorCommand, RiskEngine};

/// The etcd task's handle and what it last reported.
pub(super) struct ClusterLink {
    pub name: String,
    pub member: String,
    pub commands: mpsc::UnboundedSender<ClusterCommand>,
    pub readable: bool,
    pub shared: Option<SharedLatch>,
    pub members: Vec<Registration>,
    /// This member's strategies that another member claims too.
    pub conflicts: Vec<Conflict>,
    /// Members whose `[account]` limit differs from this one's.
    pub account_mismatches: Vec<String>,
    /// What this member last registered.
    pub registered: Vec<RegisteredStrategy>,
    /// The cluster's leader (evaluates the account-level limit), as last read.
    pub leader: Option<String>,
    /// Whether this member evaluates the account-level limit now (as last told to the core).
    pub account_active: bool,
    /// Members lost (in the registry, not registered) and not back, with their strategies:
    /// the leader guards them.
    pub lost: BTreeMap<String, Vec<String>>,
    /// Trips handed to owners, as etcd holds them.
    pub handed: Vec<HandedTrip>,
    /// Trips made here while guarding, asked to be kept in etcd (by strategy and time); cleared
    /// when etcd is out of reach, so they are asked again.
    pub published: BTreeSet<(String, i64)>,
    /// A publish was asked for and etcd's latch has not been read since.
    pub publishing: bool,
    /// Operators' releases being written, by token: the caller and who they are.
    pub releases: HashMap<u64, (AdminReply, String)>,
    pub next_token: u64,
}

impl ClusterLink {
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(super) fn new(
        name: String,
        member: String,
        commands: mpsc::UnboundedSender<ClusterCommand>,
        registered: Vec<RegisteredStrategy>,
    ) -> Self {
        ClusterLink {
            name,
            member,
            commands,
            readable: false,
            shared: None,
            members: Vec::new(),
            conflicts: Vec::new(),
            account_mismatches: Vec::new(),
            registered,
            leader: None,
            account_active: true,
            lost: BTreeMap::new(),
            handed: Vec::new(),
            published: BTreeSet::new(),
            publishing: false,
            releases: HashMap::new(),
            next_token: 0,
        }
    }

    pub(super) fn status(&self, engine: &RiskEngine) -> ClusterStatus {
        ClusterStatus {
            name: self.name.clone(),
            member: self.member.clone(),
            readable: self.readable,
            members: self.members.iter().map(|m| m.member.clone()).collect(),
            strategies: self
                .members
                .iter()
                .map(|m| {
                    let names = m.strategies.iter().map(|s| s.name.clone()).collect();
                    (m.member.clone(), names)
                })
                .collect(),
            shared_latch: self.shared.clone(),
            conflicts: self.conflicts.clone(),
            leader: self.leader.clone(),
            lost: self.lost.clone(),
            guarding: engine
                .mirrors()
                .iter()
                .filter(|(_, m)| m.guarded)
                .map(|(name, m)| GuardedStrategy {
                    strategy: name.clone(),
                    owner: m.member.clone(),
                    state: m.guard.state(),
                    trip: m.guard.trip().cloned(),
                })
                .collect(),
            handed_trips: self.handed.clone(),
            account_mismatches: self.account_mismatches.clone(),
        }
    }
}

/// What this member registers: its strategies and their groups.
pub(super) fn registered(engine: &RiskEngine) -> Vec<RegisteredStrategy> {
    engine
        .strategies()
        .iter()
        .map(|s| RegisteredStrategy {
            name: s.policy.name.clone(),
            groups: s.groups.clone(),
            policy: Some(s.policy.clone()),
        })
        .collect()
}

/// Why a release is refused while the shared latch cannot be read.
const UNREADABLE: &str = "the cluster's shared kill latch cannot be read (etcd is out of reach): a release must reach every member, so it needs etcd";

impl Shell {
    /// One report of the etcd task.
    pub(super) fn on_cluster(&mut self, ev: ClusterEvent) {
        let Some(link) = self.cluster.as_mut() else {
            return;
        };
        match ev {
            ClusterEvent::Readable(readable) => {
                link.readable = readable;
                if !readable {
                    link.publishing = false;
                    link.published.clear();
                }
                self.metrics.cluster_readable(readable);
                self.handle(Input::Cluster(ClusterInput::Readable(readable)));
                self.cluster_account_limit();
            }
            ClusterEvent::Latch(latch) => {
                self.metrics
                    .cluster_latch(matches!(latch, Some(SharedLatch::Engaged { .. })));
                link.shared = latch;
                link.publishing = false;
            }
            ClusterEvent::Members {
                members,
                leader,
                lost,
            } => {
                link.leader = leader;
                let lost: Vec<_> = lost
                    .into_iter()
                    .filter(|r| r.member != link.member)
                    .collect();
                let now_lost: BTreeMap<String, Vec<String>> = lost
                    .iter()
                    .map(|r| {
                        let names = r.strategies.iter().map(|s| s.name.clone()).collect();
                        (r.member.clone(), names)
                    })
                    .collect();
                let guard = link.leader.as_deref().unwrap_or("none");
                for (m, strategies) in now_lost.iter().filter(|(m, _)| !link.lost.contains_key(*m))
                {
                    tracing::error!(member = %m, strategies = ?strategies, leader = guard, "cluster: a member was lost (its lease expired without a clean stop): the leader guards its strategies from their published policies until it returns");
                }
                for m in link.lost.keys().filter(|m| !now_lost.contains_key(*m)) {
                    if members.iter().any(|n| &n.member == m) {
                        tracing::warn!(member = %m, "cluster: a lost member is back and guards its strategies again");
                    } else {
                        tracing::warn!(member = %m, "cluster: a lost member was removed from the registry: nobody guards its strategies now");
                    }
                }
                link.lost = now_lost;
                self.metrics.cluster_members_lost(link.lost.len());
                self.metrics.cluster_members(members.len());
                let conflicts = crate::cluster::conflicts(&link.member, &members);
                for c in conflicts.iter().filter(|c| !link.conflicts.contains(c)) {
                    tracing::error!(strategy = %c.strategy, member = %c.member, "cluster: this strategy is claimed by another member too; a strategy belongs to one member (a configuration error: remove its policy from one of them)");
                }
                self.metrics.cluster_conflicts(conflicts.len());
                link.conflicts = conflicts;
                let mismatches = crate::cluster::account_mismatches(&link.member, &members);
                for m in mismatches
                    .iter()
                    .filter(|m| !link.account_mismatches.contains(m))
                {
                    tracing::error!(member = %m, "cluster: this member's [account] limit differs from ours; every member must carry the same one (the leader's acts)");
                }
                link.account_mismatches = mismatches;
                let everyone: Vec<Registration> = members.iter().chain(&lost).cloned().collect();
                let groups = crate::cluster::peer_groups(&link.member, &everyone);
                let peers =
                    crate::cluster::peers(&link.member, &members, &lost, link.leader.as_deref());
                link.members = members;
                self.handle(Input::Cluster(ClusterInput::PeerGroups(groups)));
                self.handle(Input::Cluster(ClusterInput::Peers(peers)));
                self.cluster_account_limit();
                self.cluster_publish_trips();
                return;
            }
            ClusterEvent::HandedTrips(trips) => {
                link.handed = trips.clone();
                // This member's own strategies among them are taken back (tripped here), and
                // removed from etcd once that is durable.
                let clears: Vec<ClusterCommand> = trips
                    .iter()
                    .filter(|h| {
                        self.engine
                            .strategies()
                            .iter()
                            .any(|s| s.policy.name == h.strategy)
                    })
                    .map(|h| ClusterCommand::ClearTrip {
                        strategy: h.strategy.clone(),
                        at_ms: h.trip.at_ms,
                    })
                    .collect();
                let commands = link.commands.clone();
                self.handle(Input::Cluster(ClusterInput::HandedTrips(trips)));
                if !clears.is_empty() {
                    // Only once this member's state holds the trips: else a crash could lose them.
                    self.after_durable(move |durable| {
                        for c in clears.into_iter().filter(|_| durable) {
                            let _ = commands.send(c);
                        }
                    });
                }
                return;
            }
            ClusterEvent::ReleaseWritten { token } => {
                if let Some((reply, actor)) = link.releases.remove(&token) {
                    let released = self.engine.kill().is_some();
                    self.handle(Input::Operator {
                        command: OperatorCommand::Release,
                        actor,
                    });
                    let kill = self.engine.kill().cloned();
                    self.answer_when_durable(
                        vec![reply],
                        Ok(AdminAnswer::Released(Released { released, kill })),
                    );
                }
            }
            ClusterEvent::ReleaseFailed { token, error } => {
                if let Some((reply, _)) = link.releases.remove(&token) {
                    let _ = reply.send(Err(AdminError::Refused(format!(
                        "release refused: the shared kill latch could not be written ({error})"
                    ))));
                }
                return;
            }
        }
        self.cluster_sync();
    }

    /// Brings the local latch and the shared one together, after a change of either.
    pub(super) fn cluster_sync(&mut self) {
        let Some(link) = self.cluster.as_mut() else {
            return;
        };
        if !link.readable {
            return;
        }
        let input = match crate::cluster::sync(self.engine.kill(), link.shared.as_ref()) {
            Step::Nothing => return,
            Step::Publish(record) => {
                if !link.publishing {
                    link.publishing = true;
                    let _ = link.commands.send(ClusterCommand::Publish(record));
                }
                return;
            }
            Step::Engage(record) => ClusterInput::Engaged(record),
            Step::MarkShared => ClusterInput::Shared,
            Step::Release { actor } => ClusterInput::Released { actor },
        };
        self.handle(Input::Cluster(input));
    }

    /// Who evaluates the account-level limit: the leader, or every member while the shared
    /// latch cannot be read.
    fn cluster_account_limit(&mut self) {
        let Some(link) = self.cluster.as_mut() else {
            return;
        };
        let leader = link.leader.as_deref() == Some(link.member.as_str());
        self.metrics.cluster_leader(leader);
        let active = !link.readable || leader;
        if active != link.account_active {
            link.account_active = active;
            if self.loaded.daemon.account_limit.is_some() {
                tracing::info!(
                    active,
                    leader = link.leader.as_deref().unwrap_or(""),
                    "cluster: the account-level limit is evaluated {}",
                    if active { "here" } else { "by the leader" }
                );
            }
            self.handle(Input::Cluster(ClusterInput::AccountLimit(active)));
        }
    }

    /// Asks etcd to keep every trip made here while guarding a lost member's strategy that it
    /// does not hold yet, for the owner to take back.
    pub(super) fn cluster_publish_trips(&mut self) {
        let Some(link) = self.cluster.as_mut() else {
            return;
        };
        if !link.readable {
            return;
        }
        for (name, m) in self.engine.mirrors().iter().filter(|(_, m)| m.guarded) {
            let Some(trip) = m.guard.trip() else { continue };
            let held = link
                .handed
                .iter()
                .any(|h| &h.strategy == name && h.trip.at_ms == trip.at_ms);
            if held || !link.published.insert((name.clone(), trip.at_ms)) {
                continue;
            }
            let _ = link.commands.send(ClusterCommand::PublishTrip(HandedTrip {
                strategy: name.clone(),
                by: link.member.clone(),
                owner: m.member.clone(),
                trip: trip.clone(),
            }));
        }
    }

    /// Registers this member's strategies and groups again when they changed (a reload, a
    /// group created later); cheap when nothing did.
    pub(super) fn cluster_register(&mut self) {
        let Some(link) = self.cluster.as_mut() else {
            return;
        };
        let now = registered(&self.engine);
        if now != link.registered {
            link.registered = now.clone();
            let _ = link.commands.send(ClusterCommand::Register(now));
        }
    }

    /// An operator's release in cluster mode: written to etcd first, answered once the local
    /// latch has followed. `None` when this is not cluster mode or nothing is engaged here (the
    /// caller releases as alone).
    pub(super) fn cluster_release(
        &mut self,
        reply: AdminReply,
        actor: String,
    ) -> Option<AdminReply> {
        let engaged = self.engine.kill().is_some();
        let Some(link) = self.cluster.as_mut().filter(|_| engaged) else {
            return Some(reply);
        };
        if !link.readable {
            let _ = reply.send(Err(AdminError::Refused(format!(
                "release refused: {UNREADABLE}"
            ))));
            return None;
        }
        let token = link.next_token;
        link.next_token += 1;
        if link
            .commands
            .send(ClusterCommand::Release {
                token,
                actor: actor.clone(),
            })
            .is_err()
        {
            let _ = reply.send(Err(AdminError::Refused(format!(
                "release refused: {UNREADABLE}"
            ))));
            return None;
        }
        link.releases.insert(token, (reply, actor));
        None
    }
}
