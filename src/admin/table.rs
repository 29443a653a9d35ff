//! The `status` table, as `kalshi-riskd status` and the demo print it.

use std::fmt::Write as _;
use std::time::Duration;

use super::api::{LimitUse, Status, StrategyStatus};
use crate::risk::guard::GuardState;
use crate::risk::policy::Mode;

/// The kill switch, the stream, failing writes if any, then one row per strategy.
pub fn status_table(status: &Status) -> String {
    let mut out = String::new();
    match &status.kill {
        Some(k) => {
            let at = std::time::UNIX_EPOCH + Duration::from_millis(k.at_ms.max(0) as u64);
            let _ = writeln!(
                out,
                "KILL SWITCH ENGAGED by {} ({}) at {}",
                k.actor,
                k.reason,
                humantime::format_rfc3339_seconds(at)
            );
        }
        None => out.push_str("kill switch: released\n"),
    }
    let stream = if status.blind { "BLIND" } else { "ok" };
    let _ = writeln!(out, "stream: {stream}");
    if let Some(c) = &status.cluster {
        let latch = match &c.shared_latch {
            Some(crate::cluster::SharedLatch::Engaged { member, record }) => {
                format!("engaged by {}@{member} ({})", record.actor, record.reason)
            }
            Some(crate::cluster::SharedLatch::Released { member, actor, .. }) => {
                format!("released by {actor}@{member}")
            }
            None => "never engaged".to_owned(),
        };
        let etcd = if c.readable {
            "etcd ok"
        } else {
            "ETCD UNREACHABLE: resets and releases refused"
        };
        let _ = writeln!(
            out,
            "cluster {} as {}: {etcd}; members {} (leader {}); shared latch {latch}",
            c.name,
            c.member,
            c.members.join(", "),
            c.leader.as_deref().unwrap_or("none")
        );
        for (member, strategies) in &c.strategies {
            let _ = writeln!(
                out,
                "  member {member} guards: {}",
                if strategies.is_empty() {
                    "-".to_owned()
                } else {
                    strategies.join(", ")
                }
            );
        }
        for (member, strategies) in &c.lost {
            let _ = writeln!(
                out,
                "CLUSTER MEMBER LOST: {member} ({}): guarded by the leader ({}) until it returns",
                strategies.join(", "),
                c.leader.as_deref().unwrap_or("none")
            );
        }
        for g in &c.guarding {
            let trip = g.trip.as_ref().map_or(String::new(), |t| {
                format!(" ({}: {})", t.reason.as_str(), t.detail)
            });
            let _ = writeln!(
                out,
                "  guarding {} for lost member {}: {}{trip}",
                g.strategy,
                g.owner,
                g.state.as_str()
            );
        }
        for h in &c.handed_trips {
            let _ = writeln!(
                out,
                "  trip of {} (owner {}) kept for its owner: {} by {}",
                h.strategy,
                h.owner,
                h.trip.reason.as_str(),
                h.by
            );
        }
        for m in &c.account_mismatches {
            let _ = writeln!(
                out,
                "CLUSTER CONFIG MISMATCH: member {m} has a different [account] limit (the leader's acts)"
            );
        }
        for x in &c.conflicts {
            let _ = writeln!(
                out,
                "CLUSTER CONFLICT: strategy {} is also claimed by member {}",
                x.strategy, x.member
            );
        }
    }
    if status.durable.failing {
        let _ = writeln!(
            out,
            "durable writes: FAILING, retrying ({})",
            status.durable.last_error.as_deref().unwrap_or("?")
        );
    }
    let _ = writeln!(
        out,
        "{:<20} {:<8} {:<8} {:<8} {:<46} LAST TRIP",
        "STRATEGY", "MODE", "STATE", "GROUPS", "WINDOWS (used / limit)"
    );
    for s in &status.strategies {
        let limits: Vec<String> = s.limits.iter().map(limit_cell).collect();
        let trip = match &s.trip {
            Some(t) => format!("{}: {}", t.reason.as_str(), t.detail),
            None => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<8} {:<8} {:<46} {}",
            s.name,
            match s.mode {
                Mode::Enforce => "enforce",
                Mode::Shadow => "shadow",
            },
            state_cell(s),
            s.groups.len(),
            if limits.is_empty() {
                "-".to_owned()
            } else {
                limits.join("; ")
            },
            trip
        );
    }
    out
}

fn state_cell(s: &StrategyStatus) -> &'static str {
    match (s.state, s.warned) {
        (GuardState::Active, true) => "WARNED",
        (GuardState::Active, false) => "active",
        (GuardState::Tripped, _) => "TRIPPED",
        (GuardState::Unknown, _) => "UNKNOWN",
    }
}

/// `name used/max ...` for each maximum the limit has; dollars to the cent.
fn limit_cell(l: &LimitUse) -> String {
    let mut parts = Vec::new();
    if let Some(max) = l.max_contracts {
        parts.push(format!("{}/{}", l.contracts, max));
    }
    if let Some(max) = l.max_notional_dollars {
        parts.push(format!(
            "${}/${}",
            l.notional_dollars.to_string_with(2),
            max.to_string_with(2)
        ));
    }
    if let Some(max) = l.max_fills {
        parts.push(format!("{} fills/{max}", l.fills));
    }
    format!("{} {}", l.name, parts.join(" "))
}
