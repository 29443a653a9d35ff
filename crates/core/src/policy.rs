//! What the risk core is told to enforce: pure data, built from the policy files by the config
//! module and validated there.

use serde::{Deserialize, Serialize};

use super::limits::{LimitSpec, Ratio};
use super::units::Contracts;

/// `enforce` calls the exchange; `shadow` decides, records and reports, and never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Enforce,
    Shadow,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetPolicy {
    /// Only an operator resets.
    Manual,
    /// Reset automatically once `cooldown_ms` has passed since the trip and every window has
    /// drained below `resume_ratio` of each of its maxima, at most `max_auto_resets` times in
    /// any rolling 24 hours; after that, manual only.
    Cooldown {
        cooldown_ms: i64,
        resume_ratio: Ratio,
        max_auto_resets: u32,
    },
}

/// What a blind stream does to a strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlindAction {
    Alert,
    Trigger,
}

/// Cluster mode: what the member guarding a lost member's strategy does when it takes over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LostAction {
    /// Trigger its groups at once (fail closed): whatever traded through them is gone with its
    /// host, or cut off from its guard.
    #[default]
    Trigger,
    /// Count its fills and trigger on a breach, as its owner would.
    Guard,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyPolicy {
    pub name: String,
    pub mode: Mode,
    /// The exchange-side limit of each of the strategy's groups.
    pub group_limit: Contracts,
    pub limits: Vec<LimitSpec>,
    pub reset: ResetPolicy,
    pub blind: BlindAction,
    /// Cluster mode: what the guarding member does when this strategy's owner is lost.
    #[serde(default)]
    pub owner_lost: LostAction,
}

/// Which groups the kill switch triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillScope {
    /// Every group on the account, including groups the daemon did not create.
    Account,
    /// Only the daemon's own groups.
    Managed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskConfig {
    pub strategies: Vec<StrategyPolicy>,
    /// Across all strategies (and fills that map to none); a breach engages the kill switch.
    pub account_limit: Option<LimitSpec>,
    pub kill_scope: KillScope,
    /// While the kill switch is engaged, re-trigger any group that becomes active again.
    pub kill_hold: bool,
    /// Disconnected this long counts as blind.
    pub blind_after_ms: i64,
    /// Cluster mode: the kill latch is shared through etcd, and nothing is reset or released
    /// until the shared latch has been read ([`crate::engine::ClusterInput::Readable`]).
    pub cluster: bool,
    /// Record every counted fill as a decision (`fill`, or on `unmapped_fill`): the history
    /// `replay` can read back from the audit log.
    pub audit_fills: bool,
}
