//! Policy replay: what the daemon would have done on a history of fills, through the same risk
//! core, and what the history says about each limit.
//!
//! - [`history`]: reading fills and mapping each to a strategy, as the daemon maps them.
//! - [`run`]: the risk core driven over the history at the fills' own times.
//! - [`stats`]: every busy window's figures per limit, their peak and percentiles, suggested
//!   maxima.
//! - [`plot`]: each strategy's window use against its limits over time, as SVG and PNG.
//!
//! [`Report`] gathers them; `kalshi-riskd replay` prints it and writes it next to the plots.

pub mod history;
pub mod plot;
pub mod run;
pub mod stats;

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::risk::engine::DecisionKind;

use history::{History, HistoryFill, Route};
use run::{Outcome, Setup, figures};
use stats::LimitStats;

/// Everything a replay found.
pub struct Report {
    pub fills: usize,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// What reading the history found (its fills are not kept).
    pub read: Read,
    pub outcome: Outcome,
    pub limits: Vec<LimitStats>,
}

/// What reading the history found.
pub struct Read {
    pub skipped: Vec<history::Skipped>,
    pub duplicates: u64,
    pub out_of_order: u64,
}

/// Replays `history` under `setup` and computes every limit's statistics.
pub fn replay(setup: &Setup, history: &History, percentiles: &[f64]) -> Report {
    let outcome = run::replay(setup, history);
    let mut by_strategy: HashMap<String, Vec<&HistoryFill>> = HashMap::new();
    for f in &history.fills {
        if let Route::Strategy(s) = setup.mapping.route(f) {
            by_strategy.entry(s).or_default().push(f);
        }
    }
    let mut limits = Vec::new();
    for s in &setup.risk.strategies {
        let fills = by_strategy.get(&s.name).map(Vec::as_slice).unwrap_or(&[]);
        for spec in &s.limits {
            limits.push(stats::limit_stats(&s.name, spec, fills, percentiles));
        }
    }
    if let Some(spec) = &setup.risk.account_limit {
        let all: Vec<&HistoryFill> = history.fills.iter().collect();
        limits.push(stats::limit_stats("account", spec, &all, percentiles));
    }
    Report {
        fills: history.fills.len(),
        from_ms: history.fills.first().map(|f| f.ts_ms),
        to_ms: history.fills.last().map(|f| f.ts_ms),
        read: Read {
            skipped: history.skipped.clone(),
            duplicates: history.duplicates,
            out_of_order: history.out_of_order,
        },
        outcome,
        limits,
    }
}

/// Epoch milliseconds as RFC 3339 UTC, to the millisecond.
pub fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn event_name(k: DecisionKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A figure to two decimals at most, without trailing zeros: `20`, `99.9`, `4.62`.
fn fmt_num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Report {
    /// The decisions of one kind.
    pub fn count(&self, kind: DecisionKind) -> usize {
        self.outcome
            .decisions
            .iter()
            .filter(|d| d.event == kind)
            .count()
    }

    /// The report as JSON (`report.json`).
    pub fn to_json(&self) -> Value {
        let h = &self.read;
        json!({
            "fills": self.fills,
            "from": self.from_ms.map(time),
            "to": self.to_ms.map(time),
            "read": {
                "duplicates": h.duplicates,
                "out_of_order": h.out_of_order,
                "skipped": h.skipped,
            },
            "fills_by_strategy": self.outcome.fills,
            "unmapped": self.outcome.unmapped,
            "exchange_triggers": self.outcome.exchange_triggers,
            "tripped_at_end": self.outcome.tripped_at_end,
            "decisions": self.outcome.decisions.iter().map(|d| json!({
                "ts": time(d.ts_ms),
                "ts_ms": d.ts_ms,
                "event": event_name(d.event),
                "strategy": d.strategy,
                "reason": d.reason,
                "evidence": d.evidence,
                "actor": d.actor,
            })).collect::<Vec<_>>(),
            "limits": self.limits,
        })
    }

    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let h = &self.read;
        let span = match (self.from_ms, self.to_ms) {
            (Some(a), Some(b)) => format!(", {} to {}", time(a), time(b)),
            _ => String::new(),
        };
        let _ = writeln!(o, "Replayed {} fills{span}.", self.fills);
        if h.duplicates > 0 {
            let _ = writeln!(
                o,
                "  {} fills given more than once (same trade id): replayed once.",
                h.duplicates
            );
        }
        if h.out_of_order > 0 {
            let _ = writeln!(
                o,
                "  {} fills came after a later one in the input: replayed in time order.",
                h.out_of_order
            );
        }
        if !h.skipped.is_empty() {
            let _ = writeln!(o, "  {} fills skipped (unreadable):", h.skipped.len());
            for s in h.skipped.iter().take(10) {
                let _ = writeln!(o, "    {}: trade {}: {}", s.at, s.trade_id, s.reason);
            }
            if h.skipped.len() > 10 {
                let _ = writeln!(o, "    ... and {} more (report.json)", h.skipped.len() - 10);
            }
        }
        for (why, n) in &self.outcome.unmapped {
            let _ = writeln!(
                o,
                "  {n} fills unmapped ({why}): counted against the account limit only."
            );
        }

        let section = |o: &mut String, title: &str, kinds: &[DecisionKind]| {
            let rows: Vec<_> = self
                .outcome
                .decisions
                .iter()
                .filter(|d| kinds.contains(&d.event))
                .collect();
            let _ = writeln!(o, "\n{title}: {}", rows.len());
            for d in rows.iter().take(50) {
                let what = match &d.evidence {
                    Some(e) => format!("{} {}", e.limit, figures(e)),
                    None => d.reason.clone(),
                };
                let _ = writeln!(
                    o,
                    "  {}  {:<12} {:<20} {what}",
                    time(d.ts_ms),
                    event_name(d.event),
                    d.strategy.as_deref().unwrap_or("(account)"),
                );
            }
            if rows.len() > 50 {
                let _ = writeln!(o, "  ... and {} more (report.json)", rows.len() - 50);
            }
        };
        section(
            &mut o,
            "Trips",
            &[DecisionKind::Trip, DecisionKind::KillEngaged],
        );
        section(
            &mut o,
            "Warn crossings",
            &[DecisionKind::Warn, DecisionKind::WarnCleared],
        );
        section(&mut o, "Resets", &[DecisionKind::Reset]);
        if self.outcome.exchange_triggers > 0 {
            let _ = writeln!(
                o,
                "  (the exchange's own group limit triggered {} times)",
                self.outcome.exchange_triggers
            );
        }
        if !self.outcome.tripped_at_end.is_empty() {
            let _ = writeln!(
                o,
                "  still tripped at the end: {}",
                self.outcome.tripped_at_end.join(", ")
            );
        }

        let _ = writeln!(
            o,
            "\nLimits: each busy window (one ending at each fill); a maximum at PEAK would never \
             have tripped, one at pN would have been exceeded by at most (100-N) % of busy windows."
        );
        let pcts: Vec<f64> = self
            .limits
            .first()
            .map(|l| l.utilisation_percentiles.iter().map(|(p, _)| *p).collect())
            .unwrap_or_default();
        let mut head = format!(
            "  {:<16} {:<10} {:>7} {:>8} {:>9} {:>11} {:>11}",
            "STRATEGY", "LIMIT", "WINDOW", "WINDOWS", "OVER", "MEASURE", "MAX"
        );
        for p in &pcts {
            let _ = write!(head, " {:>10}", format!("p{}", fmt_num(*p)));
        }
        let _ = write!(head, " {:>10} {:>9}", "PEAK", "PEAK USE");
        let _ = writeln!(o, "{head}");
        for l in &self.limits {
            for m in &l.measures {
                let mut row = format!(
                    "  {:<16} {:<10} {:>7} {:>8} {:>9} {:>11} {:>11}",
                    l.strategy,
                    l.limit,
                    humantime::format_duration(std::time::Duration::from_millis(
                        l.window_ms.max(0) as u64
                    ))
                    .to_string(),
                    l.windows,
                    l.windows_over,
                    m.measure,
                    fmt_num(m.max)
                );
                for (_, v) in &m.percentiles {
                    let _ = write!(row, " {:>10}", fmt_num(*v));
                }
                let _ = write!(
                    row,
                    " {:>10} {:>8.0}%",
                    fmt_num(m.peak),
                    l.peak_utilisation * 100.0
                );
                let _ = writeln!(o, "{row}");
            }
        }
        let _ = writeln!(
            o,
            "\nSuggested maxima on this history (per limit and measure): never tripped at PEAK; \
             at pN, over in at most (100-N) % of busy windows."
        );
        for l in &self.limits {
            for m in &l.measures {
                let at: Vec<String> = m
                    .percentiles
                    .iter()
                    .map(|(p, v)| format!("{} at p{}", fmt_num(*v), fmt_num(*p)))
                    .collect();
                let _ = writeln!(
                    o,
                    "  {} {} {}: {} never trips (now {}); {}",
                    l.strategy,
                    l.limit,
                    m.measure,
                    fmt_num(m.peak),
                    fmt_num(m.max),
                    at.join(", ")
                );
            }
        }
        o
    }
}
