//! The admin API's vocabulary: what a caller asks, what the daemon answers, and which HTTP
//! status each refusal carries. The server, the CLI and the demo all speak these types, so the
//! two ends cannot drift apart; the JSON they make is the documented wire format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kalshi::GroupAddress;
use crate::risk::guard::{GuardState, Trip};
use crate::risk::kill::KillRecord;
use crate::risk::policy::Mode;
use crate::risk::{Contracts, Dollars};

/// What a caller asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    Status,
    Groups,
    Kill,
    Release,
    Reload,
    Trigger(String),
    Reset(String),
    /// Replaces the log filter (`RUST_LOG` syntax).
    LogFilter(String),
}

impl AdminRequest {
    /// The HTTP method and path that carry this request (the routes are built from the same
    /// names).
    pub fn route(&self) -> (&'static str, String) {
        match self {
            AdminRequest::Status => ("GET", "/v1/status".into()),
            AdminRequest::Groups => ("GET", "/v1/groups".into()),
            AdminRequest::Kill => ("POST", "/v1/kill".into()),
            AdminRequest::Release => ("POST", "/v1/release".into()),
            AdminRequest::Reload => ("POST", "/v1/reload".into()),
            AdminRequest::Trigger(name) => ("POST", format!("/v1/strategies/{name}/trigger")),
            AdminRequest::Reset(name) => ("POST", format!("/v1/strategies/{name}/reset")),
            AdminRequest::LogFilter(filter) => ("PUT", format!("/v1/log/{filter}")),
        }
    }

    /// Whether the request changes the risk state (and is answered only once its record is
    /// durable).
    pub fn is_mutation(&self) -> bool {
        !matches!(
            self,
            AdminRequest::Status | AdminRequest::Groups | AdminRequest::LogFilter(_)
        )
    }
}

/// `GET /v1/status`: what the daemon knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The kill latch's record while it is engaged.
    pub kill: Option<KillRecord>,
    /// Whether the fill stream is down or silent.
    pub blind: bool,
    pub durable: Durable,
    pub control: Control,
    pub strategies: Vec<StrategyStatus>,
    /// Cluster mode only: this member, etcd, and the shared kill latch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
}

/// Cluster mode, as one member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub name: String,
    pub member: String,
    /// Whether the shared kill latch can be read (etcd reachable, this member registered).
    pub readable: bool,
    /// The members registered, by name (as last read).
    pub members: Vec<String>,
    /// Who guards what: each member's strategies, as registered.
    #[serde(default)]
    pub strategies: std::collections::BTreeMap<String, Vec<String>>,
    /// The shared latch as last read (`null`: never engaged in this cluster).
    pub shared_latch: Option<crate::cluster::SharedLatch>,
    /// This member's strategies that another member claims too (a configuration error).
    #[serde(default)]
    pub conflicts: Vec<crate::cluster::Conflict>,
    /// The member that evaluates the account-level limit (as last read).
    #[serde(default)]
    pub leader: Option<String>,
    /// Members lost (gone without a clean stop) and not back, with their strategies: the
    /// leader guards them.
    #[serde(default)]
    pub lost: std::collections::BTreeMap<String, Vec<String>>,
    /// The lost members' strategies this member guards (as the leader), with where they stand.
    #[serde(default)]
    pub guarding: Vec<GuardedStrategy>,
    /// Trips made while guarding a lost member's strategy, kept until its owner takes them back.
    #[serde(default)]
    pub handed_trips: Vec<crate::risk::engine::HandedTrip>,
    /// Members whose `[account]` limit differs from this member's (a configuration error).
    #[serde(default)]
    pub account_mismatches: Vec<String>,
}

/// A lost member's strategy guarded here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardedStrategy {
    pub strategy: String,
    pub owner: String,
    pub state: crate::risk::guard::GuardState,
    pub trip: Option<crate::risk::guard::Trip>,
}

impl Status {
    /// Whether anything needs an operator: the kill switch engaged, or a strategy tripped or
    /// unknown.
    pub fn needs_attention(&self) -> bool {
        self.kill.is_some()
            || self
                .strategies
                .iter()
                .any(|s| matches!(s.state, GuardState::Tripped | GuardState::Unknown))
            || self
                .cluster
                .as_ref()
                .is_some_and(|c| c.guarding.iter().any(|g| g.state == GuardState::Tripped))
    }

    pub fn strategy(&self, name: &str) -> Option<&StrategyStatus> {
        self.strategies.iter().find(|s| s.name == name)
    }
}

/// Whether `state.json` and `audit.jsonl` writes succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durable {
    pub failing: bool,
    pub last_error: Option<String>,
}

/// Which channel group actions go over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum Control {
    Rest,
    Fix {
        fix_addr: String,
        logged_on: bool,
        logons: u64,
    },
}

/// One strategy in [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyStatus {
    pub name: String,
    pub mode: Mode,
    pub state: GuardState,
    /// A limit has reached its warn ratio.
    pub warned: bool,
    /// The last trip, while tripped.
    pub trip: Option<Trip>,
    pub groups: Vec<GroupAddress>,
    pub group_contracts_limit: Contracts,
    pub limits: Vec<LimitUse>,
}

/// One limit's window: what it holds now and its maxima.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitUse {
    pub name: String,
    pub window_ms: i64,
    pub contracts: Contracts,
    pub max_contracts: Option<Contracts>,
    pub notional_dollars: Dollars,
    pub max_notional_dollars: Option<Dollars>,
    pub fills: i64,
    pub max_fills: Option<i64>,
}

/// `GET /v1/groups`: each strategy's groups, for strategies to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups {
    pub strategies: BTreeMap<String, Vec<GroupAddress>>,
}

/// `POST /v1/kill`: the latch's record (the first engagement's, if it was already engaged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Killed {
    pub kill: Option<KillRecord>,
}

/// `POST /v1/release`: whether the latch was engaged, and its state now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub released: bool,
    pub kill: Option<KillRecord>,
}

/// `POST /v1/strategies/{name}/trigger` and `/reset`: the strategy's state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyChanged {
    pub strategy: String,
    pub state: GuardState,
}

/// `POST /v1/reload`: what the reload changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    pub reloaded: String,
}

/// `PUT /v1/log/{filter}`: the log filter now in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFilterSet {
    pub log_filter: String,
}

/// The body of every refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// A successful answer, one per request kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AdminAnswer {
    Status(Box<Status>),
    Groups(Groups),
    Killed(Killed),
    Released(Released),
    Strategy(StrategyChanged),
    Reloaded(Reloaded),
    LogFilter(LogFilterSet),
}

/// Why the daemon refused a request. [`AdminError::status`] is the one place a refusal
/// becomes an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("no strategy named {0:?}")]
    NoSuchStrategy(String),
    #[error("no such admin endpoint; see GET /v1/status")]
    NoSuchEndpoint,
    /// The risk core refused (a reset while the kill switch is engaged or the stream is blind).
    #[error("{0}")]
    Refused(String),
    /// A reload found errors; nothing changed.
    #[error("{0}")]
    ReloadFailed(String),
    /// Not a log filter; the old one stays.
    #[error("{0}")]
    BadLogFilter(String),
    #[error("the daemon is stopping")]
    Stopping,
}

impl AdminError {
    pub fn status(&self) -> u16 {
        match self {
            AdminError::NoSuchStrategy(_) | AdminError::NoSuchEndpoint => 404,
            AdminError::Refused(_) => 409,
            AdminError::ReloadFailed(_) | AdminError::BadLogFilter(_) => 422,
            AdminError::Stopping => 503,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.to_string(),
        }
    }
}

/// The daemon's answer to one request.
pub type AdminResult = Result<AdminAnswer, AdminError>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The wire format is the contract with clients written elsewhere: a status as the daemon
    /// writes it reads back as the same value, with the documented field names.
    #[test]
    fn a_status_keeps_its_wire_format_both_ways() {
        let wire = json!({
            "kill": {"at_ms": 5, "actor": "signal", "reason": "SIGUSR1"},
            "blind": false,
            "durable": {"failing": false, "last_error": null},
            "control": {"channel": "fix", "fix_addr": "127.0.0.1:8228", "logged_on": true, "logons": 2},
            "strategies": [{
                "name": "mm", "mode": "enforce", "state": "tripped", "warned": false,
                "trip": {"reason": "limit", "at_ms": 7, "actor": "daemon", "detail": "fast"},
                "groups": [{"id": "og-1", "subaccount": 0, "exchange_index": 0}],
                "group_contracts_limit": "500.00",
                "limits": [{"name": "fast", "window_ms": 15000, "contracts": "12.00",
                            "max_contracts": "40.00", "notional_dollars": "6.000000",
                            "max_notional_dollars": null, "fills": 3, "max_fills": null}]
            }]
        });
        let status: Status = serde_json::from_value(wire.clone()).expect("parses");
        assert!(status.needs_attention());
        assert_eq!(serde_json::to_value(&status).expect("serialises"), wire);
        let rest = serde_json::to_value(Control::Rest).expect("serialises");
        assert_eq!(rest, json!({"channel": "rest"}));
    }

    #[test]
    fn each_refusal_has_one_status_code() {
        let cases = [
            (AdminError::NoSuchStrategy("x".into()), 404),
            (AdminError::NoSuchEndpoint, 404),
            (AdminError::Refused("kill switch engaged".into()), 409),
            (AdminError::ReloadFailed("bad policy".into()), 422),
            (AdminError::Stopping, 503),
        ];
        for (e, code) in cases {
            assert_eq!(e.status(), code, "{e:?}");
            assert_eq!(e.body().error, e.to_string());
        }
    }
}
