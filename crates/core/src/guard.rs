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
}

impl TripReason {
    pub const ALL: [TripReason; 4] = [
        TripReason::Limit,
        TripReason::Exchange,
        TripReason::Blind,
        TripReason::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TripReason::Limit => "limit",
            TripReason::Exchange => "exchange",
            TripReason::Blind => "blind",
            TripReason::Manual => "manual",
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

#[derive(Debug, Clone)]
pub struct StrategyGuard {
    pub policy: StrategyPolicy,
    pub groups: Vec<GroupAddress>,
    pub state: GuardState,
    pub trip: Option<Trip>,
    limits: Vec<LimitState>,
    warned: Vec<bool>,
    /// Per group: filled contracts over the exchange's 15 s window, mirroring its accounting.
    group_volume: Vec<Window<Contracts>>,
    /// Lowered group limits waiting for the window to drain below them.
    pub pending_limits: Vec<(GroupId, Contracts)>,
    /// Auto-resets in the last 24 hours.
    pub auto_resets: VecDeque<i64>,
    /// Groups whose state an Unknown strategy has not yet proven.
    pub unproven: BTreeSet<GroupId>,
    /// Groups whose Trigger the exchange has not yet acknowledged.
    pub unconfirmed: BTreeSet<GroupId>,
    /// The trip a reset in flight replaced, restored if the reset fails.
    pub reset_from: Option<Trip>,
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
            state: GuardState::Active,
            trip: None,
            group_volume: Vec::new(),
            pending_limits: Vec::new(),
            auto_resets: VecDeque::new(),
            unproven: BTreeSet::new(),
            unconfirmed: BTreeSet::new(),
            reset_from: None,
            fills_total: 0,
            contracts_total: Contracts::ZERO,
        }
    }

    pub fn set_groups(&mut self, groups: Vec<GroupAddress>) {
        self.group_volume = groups
            .iter()
            .map(|_| Window::new(EXCHANGE_WINDOW_MS))
            .collect();
        self.groups = groups;
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
        let guarded = self.state != GuardState::Tripped;
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
        for (i, l) in self.limits.iter_mut().enumerate() {
            let warned = self.state != GuardState::Tripped && l.level(now_ms) != Level::Normal;
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
        let Some(trip) = &self.trip else { return false };
        if self.state != GuardState::Tripped
            || !trip.reason.auto_resettable()
            || now_ms - trip.at_ms < cooldown_ms
        {
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
