//! Cluster mode: the daemons of one Kalshi account, one per trading host, share one kill latch
//! through etcd.
//!
//! Keys, under `/kalshi-riskd/<cluster name>/`:
//! - `latch`: the shared kill latch ([`SharedLatch`], JSON). Never leased: it outlives every
//!   member, and only an operator's release clears it.
//! - `members/<member>`: each member's registration ([`Registration`]), under the member's
//!   lease, so it goes when the member stops renewing.
//! - `registry/<member>`: the same registration, never leased; a member that stops cleanly
//!   removes both. A member in the registry but not among the members was lost (a crash, a
//!   host down, a member cut off from etcd for longer than its lease): the leader guards its
//!   strategies until it returns ([`peers`]). The registry outlives every member, so a leader
//!   that starts later, or takes over from a lost leader, knows whom to guard.
//! - `trips/<strategy>`: a trip the member guarding a lost member's strategy made
//!   ([`HandedTrip`]), never leased; the strategy's owner takes it back when it returns, and
//!   removes it once its own state holds it.
//!
//! The rules (the loop applies them with [`sync`], on every change of either side):
//! - The local latch is written first and etcd second, so etcd never delays a Trigger.
//! - Engaged anywhere is engaged everywhere: a member that reads an engaged shared latch engages
//!   its own, which triggers its groups in scope and refuses its resets.
//! - A local engagement is *shared* once etcd has held an engaged latch since it was made. A
//!   release read from etcd releases only a shared engagement; one made while etcd was out of
//!   reach is published when etcd answers again: an engagement anywhere wins over a release
//!   that did not see it.
//! - A release is written to etcd before the local latch is released, so it needs etcd: while
//!   the latch cannot be read, releases are refused, and so is every reset, manual or automatic.
//!
//! The etcd task (`etcd`, with the `cluster` feature) only talks to etcd; what to do with what
//! it reads is the loop's ([`sync`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::risk::engine::{HandedTrip, PeerStrategy};
use crate::risk::kill::KillRecord;
use crate::risk::policy::StrategyPolicy;
use crate::risk::{GroupAddress, GroupId, LimitSpec};

#[cfg(feature = "cluster")]
pub mod etcd;

/// The shared latch as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SharedLatch {
    /// Engaged by `member` (the first to publish; others may have engaged at the same time).
    Engaged { member: String, record: KillRecord },
    /// Released by an operator (`actor`) on `member`.
    Released {
        member: String,
        actor: String,
        at_ms: i64,
    },
}

/// What a member publishes about itself under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub member: String,
    pub strategies: Vec<RegisteredStrategy>,
    pub started_ms: i64,
    /// The member's `[account]` limit: every member must carry the same one, since the leader's
    /// is the one that acts ([`account_mismatches`]).
    #[serde(default)]
    pub account_limit: Option<LimitSpec>,
}

/// One strategy a member manages: its groups (with where they live) and its policy, so any
/// member can read what guards it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredStrategy {
    pub name: String,
    pub groups: Vec<GroupAddress>,
    #[serde(default)]
    pub policy: Option<StrategyPolicy>,
}

/// The members whose `[account]` limit differs from this member's: the leader's limit is the
/// one that acts, so a difference means the limit changes with the leader.
pub fn account_mismatches(me: &str, members: &[Registration]) -> Vec<String> {
    let Some(mine) = members.iter().find(|r| r.member == me) else {
        return Vec::new();
    };
    members
        .iter()
        .filter(|r| r.member != me && r.account_limit != mine.account_limit)
        .map(|r| r.member.clone())
        .collect()
}

/// A strategy that another member also claims: a configuration error, reported by both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conflict {
    pub strategy: String,
    pub member: String,
}

/// The other members' groups, with who manages them: a fill in one of them is that member's to
/// count, not an unmapped fill here.
pub fn peer_groups(me: &str, members: &[Registration]) -> BTreeMap<GroupId, String> {
    members
        .iter()
        .filter(|r| r.member != me)
        .flat_map(|r| {
            r.strategies
                .iter()
                .flat_map(|s| s.groups.iter().map(|g| (g.id.clone(), r.member.clone())))
        })
        .collect()
}

/// Every peer strategy that publishes a policy, for the core to mirror: those of `lost`
/// members are guarded here when this member is the `leader`.
pub fn peers(
    me: &str,
    members: &[Registration],
    lost: &[Registration],
    leader: Option<&str>,
) -> Vec<PeerStrategy> {
    let guarding = leader == Some(me);
    let live = members.iter().map(|r| (r, false));
    let gone = lost.iter().map(|r| (r, guarding));
    live.chain(gone)
        .filter(|(r, _)| r.member != me)
        .flat_map(|(r, guarded)| {
            r.strategies.iter().filter_map(move |s| {
                Some(PeerStrategy {
                    member: r.member.clone(),
                    policy: s.policy.clone()?,
                    groups: s.groups.clone(),
                    guarded,
                })
            })
        })
        .collect()
}

/// This member's strategies that another member claims too.
pub fn conflicts(me: &str, members: &[Registration]) -> Vec<Conflict> {
    let Some(mine) = members.iter().find(|r| r.member == me) else {
        return Vec::new();
    };
    let mut found: Vec<Conflict> = members
        .iter()
        .filter(|r| r.member != me)
        .flat_map(|r| {
            r.strategies
                .iter()
                .filter(|s| mine.strategies.iter().any(|m| m.name == s.name))
                .map(|s| Conflict {
                    strategy: s.name.clone(),
                    member: r.member.clone(),
                })
        })
        .collect();
    found.sort();
    found
}

/// From the loop to the etcd task.
#[derive(Debug)]
pub enum ClusterCommand {
    /// Publish this local engagement (not yet shared) as the shared latch, unless the latch
    /// changed since it was last read (then it is read again and the loop decides again).
    Publish(KillRecord),
    /// An operator's release: write it, then report [`ClusterEvent::ReleaseWritten`].
    Release { token: u64, actor: String },
    /// The member's strategies or groups changed (a reload).
    Register(Vec<RegisteredStrategy>),
    /// Keep a trip made while guarding a lost member's strategy, for its owner.
    PublishTrip(HandedTrip),
    /// The owner's state holds the handed trip of `strategy` made at `at_ms`: remove it (unless
    /// a newer one replaced it).
    ClearTrip { strategy: String, at_ms: i64 },
}

/// From the etcd task to the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// The latch could be read (after a fresh read, which comes first as [`ClusterEvent::Latch`])
    /// or can no longer be (`false`: etcd out of reach, the lease lost, a watch ended).
    Readable(bool),
    /// The shared latch as etcd now holds it (`None`: never engaged in this cluster).
    Latch(Option<SharedLatch>),
    /// The members registered now (this one included), and the leader: the member registered
    /// longest (the smallest creation revision of its key, the recipe of etcd's own elections),
    /// which evaluates the account-level limit for the cluster.
    Members {
        members: Vec<Registration>,
        leader: Option<String>,
        /// Members lost: in the registry, not registered (their lease expired without a clean
        /// stop), with what they last registered.
        lost: Vec<Registration>,
    },
    /// The trips handed to owners, as etcd holds them now.
    HandedTrips(Vec<HandedTrip>),
    /// The release `token` is written.
    ReleaseWritten { token: u64 },
    /// The release `token` could not be written.
    ReleaseFailed { token: u64, error: String },
}

/// What the loop must do to bring the local latch and the shared one together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Engage the local latch from a peer's engagement (already shared).
    Engage(KillRecord),
    /// The local engagement is now held by etcd.
    MarkShared,
    /// An operator released the shared latch: release the local one (`actor` names who, where).
    Release {
        actor: String,
    },
    /// Publish the local engagement.
    Publish(KillRecord),
}

/// The rules of the module's documentation, as a pure function of the two latches.
pub fn sync(local: Option<&KillRecord>, shared: Option<&SharedLatch>) -> Step {
    match (local, shared) {
        (None, Some(SharedLatch::Engaged { member, record })) => Step::Engage(KillRecord {
            actor: format!("{}@{member}", record.actor),
            shared: true,
            ..record.clone()
        }),
        (None, _) => Step::Nothing,
        (Some(k), Some(SharedLatch::Engaged { .. })) => {
            if k.shared {
                Step::Nothing
            } else {
                Step::MarkShared
            }
        }
        (Some(k), Some(SharedLatch::Released { member, actor, .. })) if k.shared => Step::Release {
            actor: format!("{actor}@{member}"),
        },
        // Released without having seen this engagement, or never engaged: this one wins.
        (Some(k), _) => Step::Publish(k.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_latch(value: &[u8]) -> Option<SharedLatch> {
        serde_json::from_slice(value).ok()
    }

    fn record(actor: &str, shared: bool) -> KillRecord {
        KillRecord {
            at_ms: 1_000,
            actor: actor.into(),
            reason: "kill switch".into(),
            evidence: None,
            shared,
        }
    }

    fn released() -> SharedLatch {
        SharedLatch::Released {
            member: "b".into(),
            actor: "uid:1000".into(),
            at_ms: 2_000,
        }
    }

    fn engaged(actor: &str) -> SharedLatch {
        SharedLatch::Engaged {
            member: "b".into(),
            record: record(actor, false),
        }
    }

    #[test]
    fn a_peer_engagement_engages_the_local_latch_as_shared() {
        assert_eq!(
            sync(None, Some(&engaged("signal"))),
            Step::Engage(record("signal@b", true))
        );
    }

    #[test]
    fn nothing_to_do_when_neither_is_engaged() {
        assert_eq!(sync(None, None), Step::Nothing);
        assert_eq!(sync(None, Some(&released())), Step::Nothing);
    }

    #[test]
    fn a_local_engagement_is_published_then_marked_shared() {
        let local = record("signal", false);
        assert_eq!(sync(Some(&local), None), Step::Publish(local.clone()));
        assert_eq!(
            sync(Some(&local), Some(&engaged("signal"))),
            Step::MarkShared
        );
        let shared = record("signal", true);
        assert_eq!(sync(Some(&shared), Some(&engaged("x"))), Step::Nothing);
    }

    #[test]
    fn a_release_releases_only_an_engagement_etcd_has_held() {
        assert_eq!(
            sync(Some(&record("signal", true)), Some(&released())),
            Step::Release {
                actor: "uid:1000@b".into()
            }
        );
        // Engaged while etcd was out of reach: the release did not see it, so it wins.
        let unseen = record("signal", false);
        assert_eq!(
            sync(Some(&unseen), Some(&released())),
            Step::Publish(unseen.clone())
        );
    }

    fn reg(member: &str, strategies: &[(&str, &[&str])]) -> Registration {
        Registration {
            member: member.into(),
            strategies: strategies
                .iter()
                .map(|(name, groups)| RegisteredStrategy {
                    name: (*name).into(),
                    groups: groups
                        .iter()
                        .map(|g| GroupAddress {
                            id: GroupId::new(*g),
                            subaccount: 0,
                            exchange_index: 0,
                        })
                        .collect(),
                    policy: None,
                })
                .collect(),
            started_ms: 0,
            account_limit: None,
        }
    }

    #[test]
    fn a_peers_groups_are_its_own_and_a_strategy_claimed_twice_is_a_conflict() {
        let members = [
            reg("a", &[("alpha", &["g1"]), ("shared", &["g2"])]),
            reg("b", &[("beta", &["g3", "g4"]), ("shared", &["g5"])]),
        ];
        let peers = peer_groups("a", &members);
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&GroupId::new("g4")], "b");
        assert!(!peers.contains_key(&GroupId::new("g1")));
        let want = vec![Conflict {
            strategy: "shared".into(),
            member: "b".into(),
        }];
        assert_eq!(conflicts("a", &members), want);
        assert_eq!(conflicts("b", &members)[0].member, "a", "reported by both");
        assert!(
            conflicts("c", &members).is_empty(),
            "not registered: nothing to compare"
        );
    }

    #[test]
    fn the_leader_guards_the_strategies_of_lost_members_only() {
        let mut live = reg("b", &[("beta", &["g1"])]);
        let mut lost = reg("c", &[("gamma", &["g2"]), ("unpublished", &["g3"])]);
        let policy = |name: &str| StrategyPolicy {
            name: name.into(),
            mode: crate::risk::policy::Mode::Enforce,
            group_limit: crate::risk::Contracts::from_whole(10),
            limits: Vec::new(),
            reset: crate::risk::policy::ResetPolicy::Manual,
            blind: crate::risk::policy::BlindAction::Alert,
            owner_lost: Default::default(),
        };
        live.strategies[0].policy = Some(policy("beta"));
        lost.strategies[0].policy = Some(policy("gamma"));
        let (members, lost) = ([reg("a", &[]), live], [lost]);
        let guarded = |me: &str, leader: &str| -> Vec<(String, bool)> {
            peers(me, &members, &lost, Some(leader))
                .into_iter()
                .map(|p| (p.policy.name, p.guarded))
                .collect()
        };
        assert_eq!(
            guarded("a", "a"),
            [("beta".to_owned(), false), ("gamma".to_owned(), true)],
            "a strategy with no published policy can only be attributed, not guarded"
        );
        assert_eq!(
            guarded("b", "a"),
            [("gamma".to_owned(), false)],
            "mirrored by every member, guarded by the leader alone"
        );
    }

    #[test]
    fn every_member_must_carry_the_same_account_limit() {
        let limit = LimitSpec {
            name: "account".into(),
            window_ms: 15_000,
            max_contracts: Some(crate::risk::Contracts::from_whole(10)),
            max_notional: None,
            max_fills: None,
            warn_ratio: crate::risk::Ratio::from_ppm(800_000),
        };
        let mut members = [reg("a", &[]), reg("b", &[]), reg("c", &[])];
        members[0].account_limit = Some(limit.clone());
        members[1].account_limit = Some(limit);
        assert_eq!(account_mismatches("a", &members), ["c"]);
        assert_eq!(account_mismatches("c", &members), ["a", "b"]);
    }

    #[test]
    fn a_latch_key_deleted_by_hand_is_not_a_release() {
        let shared = record("signal", true);
        assert_eq!(sync(Some(&shared), None), Step::Publish(shared.clone()));
    }

    #[test]
    fn the_shared_latch_reads_back_what_it_wrote() {
        for l in [engaged("signal"), released()] {
            let text = serde_json::to_string(&l).unwrap();
            assert_eq!(parse_latch(text.as_bytes()), Some(l));
        }
        assert_eq!(parse_latch(b"not json"), None);
    }
}
