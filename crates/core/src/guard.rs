//! One strategy's guard: its limits and windows, its state (active, tripped, unknown), and the
//! rules for leaving a trip.
//!
//! - **Active**: limits are watched; reaching a warn ratio marks the limit warned.
//! - **Tripped**: every group of the strategy has been (or is being) triggered, with the reason
//!   and the window's figures as evidence.
//! - **Unknown**: after an unclean stop the daemon cannot prove the groups' state. It is shown
//!   as such, never auto-reset, and settled by the exchange (a `triggered` event trips it; a
//!   `reset` or `created` event for every group proves it active) or by an operator. Unknown
//!   never means unguarded: its limits are watched and a breach trips it exactly as it would
//!   trip an Active strategy.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::ids::{GroupAddress, GroupId};
use super::limits::{Evidence, Level, LimitSpec, LimitState, Usage};
use super::policy::{ResetPolicy, StrategyPolicy};
use super::units::Contracts;
use super::window::Window;

/// The exchange's rolling window for order groups.
pub const EXCHANGE_WINDOW_MS: i64 = 15_000;
const DAY_MS: i64 = 24 * 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardState {
    Active,
    Tripped,
    Unknown,
}

impl GuardState {
    /// The name the admin API and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardState::Active => "active",
            GuardState::Tripped => "tripped",
            GuardState::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripReason {
    /// A daemon-side limit was exceeded.
    Limit,
    /// The exchange triggered a group on its own (its limit, or someone else's Trigger).
    Exchange,
    /// The stream went blind and the policy says to fail closed.
    Blind,
    /// An operator triggered the strategy.
    Manual,
    /// Cluster mode: the member owning the strategy was lost and its policy says to fail
    /// closed (tripped by the member that took over guarding it).
    OwnerLost,
}

impl TripReason {
    pub const ALL: [TripReason; 5] = [
        TripReason::Limit,
        TripReason::Exchange,
        TripReason::Blind,
        TripReason::Manual,
        TripReason::OwnerLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TripReason::Limit => "limit",
            TripReason::Exchange => "exchange",
            TripReason::Blind => "blind",
            TripReason::Manual => "manual",
            TripReason::OwnerLost => "owner_lost",
        }
    }

    /// Whether a cooldown may reset this trip on its own. An operator's trip waits for an
    /// operator.
    fn auto_resettable(self) -> bool {
        !matches!(self, TripReason::Manual)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trip {
    pub reason: TripReason,
    pub at_ms: i64,
    pub actor: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// When the exchange had acknowledged the Trigger of every group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_ms: Option<i64>,
}

/// What a fill did to a strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillOutcome {
    /// Nothing worth a record.
    Quiet,
    /// A limit is now exceeded (the first one's figures).
    Breached(Evidence),
    /// A warning was raised or cleared: ask [`StrategyGuard::warn_changes`].
    WarningsChanged,
}

/// A change in a limit's warning, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarnChange {
    Raised(Evidence),
    Cleared(String),
}

/// Where a strategy stands, with what only that standing has: one value, so its parts cannot
/// contradict each other. Changed only by [`StrategyGuard`]'s transitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Limits watched. `reset_from` is the trip a reset in flight replaced: it is restored if
    /// the reset fails (the groups may still be triggered).
    Active { reset_from: Option<Trip> },
    /// Every group triggered or being triggered. `unconfirmed`: groups whose Trigger the
    /// exchange has not yet acknowledged.
    Tripped {
        trip: Trip,
        unconfirmed: BTreeSet<GroupId>,
    },
    /// After an unclean stop or a failed rebuild: guarded like Active, never reset
    /// automatically. `unproven`: groups the exchange has not yet shown active.
    Unknown { unproven: BTreeSet<GroupId> },
}

#[derive(Debug, Clone)]
pub struct StrategyGuard {
    pub policy: StrategyPolicy,
    pub groups: Vec<GroupAddress>,
    standing: Standing,
    limits: Vec<LimitState>,
    warned: Vec<bool>,
    /// Per group: filled contracts over the exchange's 15 s window, mirroring its accounting.
    group_volume: Vec<Window<Contracts>>,
    /// Lowered group limits waiting for the window to drain below them.
    pub pending_limits: Vec<(GroupId, Contracts)>,
    /// Auto-resets in the last 24 hours.
    pub auto_resets: VecDeque<i64>,
    /// Fills and contracts accounted to this strategy since start.
    pub fills_total: u64,
    pub contracts_total: Contracts,
}

impl StrategyGuard {
    pub fn new(policy: StrategyPolicy) -> Self {
        let limits: Vec<LimitState> = policy.limits.iter().cloned().map(LimitState::new).collect();
        StrategyGuard {
            warned: vec![false; limits.len()],
            limits,
            policy,
            groups: Vec::new(),
            standing: Standing::Active { reset_from: None },
            group_volume: Vec::new(),
            pending_limits: Vec::new(),
            auto_resets: VecDeque::new(),
            fills_total: 0,
            contracts_total: Contracts::ZERO,
        }
    }

    pub fn standing(&self) -> &Standing {
        &self.standing
    }

    pub fn state(&self) -> GuardState {
        match self.standing {
            Standing::Active { .. } => GuardState::Active,
            Standing::Tripped { .. } => GuardState::Tripped,
            Standing::Unknown { .. } => GuardState::Unknown,
        }
    }

    /// The trip, while tripped.
    pub fn trip(&self) -> Option<&Trip> {
        match &self.standing {
            Standing::Tripped { trip, .. } => Some(trip),
            _ => None,
        }
    }

    fn all_groups(&self) -> BTreeSet<GroupId> {
        self.groups.iter().map(|g| g.id.clone()).collect()
    }

    /// Trips the strategy; false (and nothing changes) if it is already tripped. A reset in
    /// flight is forgotten: the new trip is the one to keep if that reset fails.
    pub fn trip_with(&mut self, trip: Trip) -> bool {
        if matches!(self.standing, Standing::Tripped { .. }) {
            return false;
        }
        self.standing = Standing::Tripped {
            trip,
            unconfirmed: BTreeSet::new(),
        };
        true
    }

    /// Every group's Trigger is on its way: each must be acknowledged again before the trip
    /// counts as confirmed.
    pub fn triggers_sent(&mut self) {
        let all = self.all_groups();
        if let Standing::Tripped { unconfirmed, .. } = &mut self.standing {
            *unconfirmed = all;
        }
    }

    /// The exchange acknowledged a group's Trigger. When that completes a trip not yet
    /// confirmed, the trip is stamped and returned (for the record).
    pub fn trigger_confirmed(&mut self, group: &GroupId, now_ms: i64) -> Option<&Trip> {
        let Standing::Tripped { trip, unconfirmed } = &mut self.standing else {
            return None;
        };
        if !unconfirmed.remove(group) || !unconfirmed.is_empty() || trip.confirmed_ms.is_some() {
            return None;
        }
        trip.confirmed_ms = Some(now_ms);
        Some(trip)
    }

    /// A reset of every group is on its way: the strategy is active, remembering the trip it
    /// replaced.
    pub fn reset_sent(&mut self) {
        let reset_from =
            match std::mem::replace(&mut self.standing, Standing::Active { reset_from: None }) {
                Standing::Tripped { trip, .. } => Some(trip),
                _ => None,
            };
        self.standing = Standing::Active { reset_from };
    }

    /// A group's reset failed: the trip it replaced is back (unless the strategy tripped again
    /// meanwhile, whose trip stands).
    pub fn reset_failed(&mut self) {
        if let Standing::Active { reset_from } = &mut self.standing
            && let Some(trip) = reset_from.take()
        {
            self.standing = Standing::Tripped {
                trip,
                unconfirmed: BTreeSet::new(),
            };
        }
    }

    /// A group's reset was confirmed: the replaced trip is no longer needed.
    pub fn reset_confirmed(&mut self) {
        if let Standing::Active { reset_from } = &mut self.standing {
            *reset_from = None;
        }
    }

    /// The daemon cannot prove the groups' state: an Active strategy becomes Unknown until
    /// every group is shown active. Returns whether it changed.
    pub fn become_unknown(&mut self) -> bool {
        if !matches!(self.standing, Standing::Active { .. }) {
            return false;
        }
        self.standing = Standing::Unknown {
            unproven: self.all_groups(),
        };
        true
    }

    /// The exchange showed a group active. Returns true when that proves an Unknown strategy
    /// active.
    pub fn proven_active(&mut self, group: &GroupId) -> bool {
        let Standing::Unknown { unproven } = &mut self.standing else {
            return false;
        };
        unproven.remove(group);
        if !unproven.is_empty() {
            return false;
        }
        self.standing = Standing::Active { reset_from: None };
        true
    }

    /// A peer's strategy this member guarded, handed back to its owner: the owner's standing is
    /// the one that counts now (the trip, if any, went with the hand-back). Windows are kept.
    pub fn hand_back(&mut self) {
        self.standing = Standing::Active { reset_from: None };
    }

    /// The first limit exceeded at `now_ms`, if any (for a strategy whose fills were counted
    /// while nothing acted on them).
    pub fn breach(&mut self, now_ms: i64) -> Option<Evidence> {
        let l = self
            .limits
            .iter_mut()
            .find_map(|l| (l.level(now_ms) == Level::Breached).then_some(l))?;
        Some(l.evidence(now_ms))
    }

    pub fn set_groups(&mut self, groups: Vec<GroupAddress>) {
        self.group_volume = groups
            .iter()
            .map(|_| Window::new(EXCHANGE_WINDOW_MS))
            .collect();
        self.groups = groups;
        // Groups an Unknown strategy no longer has need no proof.
        let ids = self.all_groups();
        if let Standing::Unknown { unproven } = &mut self.standing {
            unproven.retain(|g| ids.contains(g));
        }
    }

    /// Replaces the policy, keeping the windows of limits whose name and window are unchanged.
    pub fn set_policy(&mut self, policy: StrategyPolicy) {
        let mut old: Vec<LimitState> = std::mem::take(&mut self.limits);
        self.limits = policy
            .limits
            .iter()
            .map(|spec| {
                match old
                    .iter()
                    .position(|l| l.spec.name == spec.name && l.spec.window_ms == spec.window_ms)
                {
                    Some(i) => {
                        let mut kept = old.swap_remove(i);
                        kept.spec = spec.clone();
                        kept
                    }
                    None => LimitState::new(spec.clone()),
                }
            })
            .collect();
        self.warned = vec![false; self.limits.len()];
        self.policy = policy;
    }

    pub fn group_index(&self, id: &GroupId) -> Option<usize> {
        self.groups.iter().position(|g| &g.id == id)
    }

    /// Accounts a fill in every window and says what changed. Each limit is evaluated once.
    pub fn add_fill(&mut self, group: usize, ts_ms: i64, usage: Usage, now_ms: i64) -> FillOutcome {
        self.fills_total += 1;
        self.contracts_total += usage.contracts;
        if let Some(w) = self.group_volume.get_mut(group) {
            w.add(ts_ms, usage.contracts);
        }
        // Limits hold in every state but Tripped: an Unknown strategy is guarded exactly like
        // an Active one (only its automatic resets wait for it to be settled).
        let guarded = self.state() != GuardState::Tripped;
        let mut outcome = FillOutcome::Quiet;
        for (i, l) in self.limits.iter_mut().enumerate() {
            l.add(ts_ms, usage);
            if !guarded {
                continue;
            }
            match l.level(now_ms) {
                Level::Breached => {
                    if !matches!(outcome, FillOutcome::Breached(_)) {
                        outcome = FillOutcome::Breached(l.evidence(now_ms));
                    }
                }
                level => {
                    if (level == Level::Warned) != self.warned[i] && outcome == FillOutcome::Quiet {
                        outcome = FillOutcome::WarningsChanged;
                    }
                }
            }
        }
        outcome
    }

    /// Warnings raised or cleared since the last call.
    pub fn warn_changes(&mut self, now_ms: i64) -> Vec<WarnChange> {
        let mut out = Vec::new();
        let tripped = self.state() == GuardState::Tripped;
        for (i, l) in self.limits.iter_mut().enumerate() {
            let warned = !tripped && l.level(now_ms) != Level::Normal;
            if warned != self.warned[i] {
                self.warned[i] = warned;
                out.push(if warned {
                    WarnChange::Raised(l.evidence(now_ms))
                } else {
                    WarnChange::Cleared(l.spec.name.clone())
                });
            }
        }
        out
    }

    pub fn is_warned(&self) -> bool {
        self.warned.iter().any(|w| *w)
    }

    /// The group's volume in the exchange's 15 s window, as the daemon counted it.
    pub fn group_volume(&mut self, group: usize, now_ms: i64) -> Contracts {
        self.group_volume
            .get_mut(group)
            .map_or(Contracts::ZERO, |w| w.sum(now_ms))
    }

    /// The exchange cleared this group's window (a reset).
    pub fn clear_group_volume(&mut self, group: usize) {
        if let Some(w) = self.group_volume.get_mut(group) {
            w.clear();
        }
    }

    /// Every limit's figures, for status and metrics.
    pub fn usage(&mut self, now_ms: i64) -> Vec<(LimitSpec, Usage)> {
        self.limits
            .iter_mut()
            .map(|l| (l.spec.clone(), l.usage(now_ms)))
            .collect()
    }

    /// Each limit's usage at `now_ms`, in the policy's order, without copying anything:
    /// `f(strategy, limit, usage)`.
    pub fn each_usage(&mut self, now_ms: i64, mut f: impl FnMut(&str, &LimitSpec, Usage)) {
        let name = self.policy.name.as_str();
        for l in &mut self.limits {
            let usage = l.usage(now_ms);
            f(name, &l.spec, usage);
        }
    }

    fn drop_old_auto_resets(&mut self, now_ms: i64) {
        while self
            .auto_resets
            .front()
            .is_some_and(|&t| t + DAY_MS <= now_ms)
        {
            self.auto_resets.pop_front();
        }
    }

    /// Whether the cooldown rule resets the trip now (the caller has already ruled out a kill
    /// and a blind stream).
    pub fn auto_reset_due(&mut self, now_ms: i64) -> bool {
        let ResetPolicy::Cooldown {
            cooldown_ms,
            resume_ratio,
            max_auto_resets,
        } = self.policy.reset.clone()
        else {
            return false;
        };
        let Some(trip) = self.trip() else {
            return false;
        };
        if !trip.reason.auto_resettable() || now_ms - trip.at_ms < cooldown_ms {
            return false;
        }
        self.drop_old_auto_resets(now_ms);
        if self.auto_resets.len() >= max_auto_resets as usize {
            return false;
        }
        self.limits
            .iter_mut()
            .all(|l| l.drained_below(resume_ratio, now_ms))
    }
}
