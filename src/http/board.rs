//! The per-strategy families (windows, states, fill, trip and reset counts, group limits),
//! written straight into the scrape's text from a compact board the loop keeps up to date.
//!
//! Held as series of the `prometheus` registry, these were 23 series a strategy, each with its
//! own label strings and locks: at 1,000 strategies about 10 MB resident, and every scrape
//! gathered them into another 8 MB of intermediate objects before writing 1.5 MB of text. The
//! board keeps what the text needs (names once, numbers), the loop updates it in place, and a
//! scrape takes a reference to it (an `Arc`, so the loop never waits for a scrape: a refresh
//! that meets a scrape in progress updates a copy).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::risk::engine::RiskEngine;
use crate::risk::guard::{GuardState, TripReason};

const STRATEGY_STATES: [&str; 4] = ["active", "warned", "tripped", "unknown"];

/// What the scrape shows of the strategies, as of the loop's last refresh.
#[derive(Clone, Default)]
pub struct Board {
    /// A hash of the strategies' labels (strategies, limits, groups) and of the values that
    /// change only with a policy: the rows are made again only when it changes.
    shape: Option<u64>,
    /// The strategies in force, in the engine's order (which holds while the shape does).
    rows: Vec<Row>,
    /// Fills and contracts counted for each strategy, by name: kept across reloads, as
    /// counters must be (a strategy that goes keeps its series; one that comes back adds on).
    counted: BTreeMap<Arc<str>, Counted>,
    /// The engine's trip and reset counts, copied when their number or sum moves (they only
    /// grow, so the same number of them with the same sum means none moved).
    trips: Vec<(Arc<str>, TripReason, u64)>,
    resets: Vec<(Arc<str>, Arc<str>, u64)>,
    trips_print: (usize, u64),
    resets_print: (usize, u64),
}

#[derive(Clone)]
struct Row {
    name: Arc<str>,
    state: &'static str,
    group_limit: f64,
    groups: Vec<u32>,
    limits: Vec<LimitRow>,
    /// The engine's fill count and contracts (hundredths) when last read: only what is new
    /// is added to the counters.
    fills_seen: u64,
    contracts_seen: i64,
}

#[derive(Clone)]
struct LimitRow {
    name: Arc<str>,
    max: Option<f64>,
    warn: f64,
    contracts: f64,
    ratio: f64,
}

#[derive(Clone, Copy, Default)]
struct Counted {
    fills: u64,
    contracts: f64,
}

impl Board {
    /// Copies the risk core's per-strategy state into the board.
    pub fn update(&mut self, engine: &mut RiskEngine, now_ms: i64) {
        let shape = {
            use std::hash::{Hash as _, Hasher as _};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for s in engine.strategies() {
                (&s.policy.name, s.policy.group_limit).hash(&mut h);
                for l in &s.policy.limits {
                    (&l.name, l.max_contracts, l.warn_ratio.ppm()).hash(&mut h);
                }
                for g in &s.groups {
                    g.exchange_index.hash(&mut h);
                }
            }
            h.finish()
        };
        if self.shape != Some(shape) {
            self.shape = Some(shape);
            self.remake_rows(engine);
        }
        let rows = &mut self.rows;
        engine.each_window(now_ms, |(k, i), _, spec, usage| {
            let Some(l) = rows.get_mut(k).and_then(|r| r.limits.get_mut(i)) else {
                return;
            };
            let ratios = [
                spec.max_contracts
                    .map(|m| usage.contracts.hundredths() as f64 / m.hundredths().max(1) as f64),
                spec.max_notional
                    .map(|m| usage.notional.micros() as f64 / m.micros().max(1) as f64),
                spec.max_fills.map(|m| usage.fills as f64 / m.max(1) as f64),
            ];
            l.ratio = ratios.into_iter().flatten().fold(0.0, f64::max);
            l.contracts = usage.contracts.hundredths() as f64 / 100.0;
        });
        for (s, row) in engine.strategies().iter().zip(self.rows.iter_mut()) {
            row.state = match s.state() {
                GuardState::Active if s.is_warned() => "warned",
                GuardState::Active => "active",
                GuardState::Tripped => "tripped",
                GuardState::Unknown => "unknown",
            };
            let (fills, contracts) = (s.fills_total, s.contracts_total.hundredths());
            if (fills, contracts) != (row.fills_seen, row.contracts_seen) {
                // A guard made anew (a strategy back after a reload retired it) counts from 0.
                let (from_fills, from_contracts) = if fills < row.fills_seen {
                    (0, 0)
                } else {
                    (row.fills_seen, row.contracts_seen)
                };
                let c = self.counted.entry(row.name.clone()).or_default();
                c.fills += fills - from_fills;
                c.contracts += (contracts - from_contracts).max(0) as f64 / 100.0;
                (row.fills_seen, row.contracts_seen) = (fills, contracts);
            }
        }
        let c = engine.counters();
        let trips_print = (c.trips.len(), c.trips.values().sum::<u64>());
        if self.trips_print != trips_print {
            self.trips_print = trips_print;
            self.trips = c
                .trips
                .iter()
                .map(|((s, r), n)| (self.name(s), *r, *n))
                .collect();
        }
        let resets_print = (c.resets.len(), c.resets.values().sum::<u64>());
        if self.resets_print != resets_print {
            self.resets_print = resets_print;
            self.resets = c
                .resets
                .iter()
                .map(|((s, r), n)| (self.name(s), Arc::from(r.as_str()), *n))
                .collect();
        }
    }

    /// The shared copy of a strategy's name, when the board has one.
    fn name(&self, name: &str) -> Arc<str> {
        self.counted
            .get_key_value(name)
            .map_or_else(|| Arc::from(name), |(k, _)| k.clone())
    }

    /// The rows made again from the strategies in force (a start or a reload), keeping what
    /// each strategy had counted.
    fn remake_rows(&mut self, engine: &RiskEngine) {
        let mut old: BTreeMap<Arc<str>, Row> = std::mem::take(&mut self.rows)
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        for s in engine.strategies() {
            let name = self.name(&s.policy.name);
            // Every strategy's counters are there from the start, at zero.
            self.counted.entry(name.clone()).or_default();
            let (fills_seen, contracts_seen) = old
                .remove(&name)
                .map_or((0, 0), |r| (r.fills_seen, r.contracts_seen));
            self.rows.push(Row {
                state: "active",
                group_limit: s.policy.group_limit.hundredths() as f64 / 100.0,
                groups: s.groups.iter().map(|g| g.exchange_index).collect(),
                limits: s
                    .policy
                    .limits
                    .iter()
                    .map(|l| LimitRow {
                        name: Arc::from(l.name.as_str()),
                        max: l.max_contracts.map(|m| m.hundredths() as f64 / 100.0),
                        warn: f64::from(l.warn_ratio.ppm()) / 1e6,
                        contracts: 0.0,
                        ratio: 0.0,
                    })
                    .collect(),
                name,
                fills_seen,
                contracts_seen,
            });
        }
    }

    /// Writes the per-strategy families in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let limits = || {
            self.rows
                .iter()
                .flat_map(|r| r.limits.iter().map(move |l| (&r.name, l)))
        };
        let mut f = Family::new(out);
        f.head(
            "window_contracts",
            "gauge",
            "Contracts filled inside the limit's rolling window.",
        );
        for (s, l) in limits() {
            f.sample(&[("limit", &l.name), ("strategy", s)], l.contracts);
        }
        f.head(
            "window_limit_contracts",
            "gauge",
            "The limit's maximum contracts over its window.",
        );
        for (s, l) in limits() {
            if let Some(max) = l.max {
                f.sample(&[("limit", &l.name), ("strategy", s)], max);
            }
        }
        f.head(
            "window_warn_ratio",
            "gauge",
            "The limit's warn ratio from its policy: the warn alert compares the utilisation with it.",
        );
        for (s, l) in limits() {
            f.sample(&[("limit", &l.name), ("strategy", s)], l.warn);
        }
        f.head(
            "window_utilization_ratio",
            "gauge",
            "The most used of the limit's measures, as a share of its maximum.",
        );
        for (s, l) in limits() {
            f.sample(&[("limit", &l.name), ("strategy", s)], l.ratio);
        }
        f.head(
            "group_contracts_limit",
            "gauge",
            "The exchange-side contracts limit of each managed order group.",
        );
        for r in &self.rows {
            for g in &r.groups {
                f.sample_index(&r.name, *g, r.group_limit);
            }
        }
        f.head(
            "strategy_tripped",
            "gauge",
            "1 when the strategy is tripped (its groups triggered), else 0.",
        );
        for r in &self.rows {
            f.sample(
                &[("strategy", &r.name)],
                f64::from(u8::from(r.state == "tripped")),
            );
        }
        f.head(
            "strategy_state",
            "gauge",
            "1 for the strategy's state (active, warned, tripped, unknown), 0 for the others.",
        );
        for r in &self.rows {
            for st in STRATEGY_STATES {
                let on = f64::from(u8::from(r.state == st));
                f.sample(&[("state", st), ("strategy", &r.name)], on);
            }
        }
        f.head("fills_total", "counter", "Fills accounted to the strategy.");
        for (s, c) in &self.counted {
            f.sample(&[("strategy", s)], c.fills as f64);
        }
        f.head(
            "filled_contracts_total",
            "counter",
            "Contracts filled by the strategy.",
        );
        for (s, c) in &self.counted {
            f.sample(&[("strategy", s)], c.contracts);
        }
        f.head(
            "trips_total",
            "counter",
            "Trips, by reason (limit, exchange, blind, manual).",
        );
        for (s, r, n) in &self.trips {
            f.sample(&[("reason", r.as_str()), ("strategy", s)], *n as f64);
        }
        f.head(
            "resets_total",
            "counter",
            "Resets, by reason (manual, auto).",
        );
        for (s, r, n) in &self.resets {
            f.sample(&[("reason", r), ("strategy", s)], *n as f64);
        }
    }
}

/// Writes one family at a time; a family's `# HELP` and `# TYPE` lines are written with its
/// first sample, so a family without samples is left out (as the registry does).
struct Family<'a> {
    out: &'a mut String,
    head: Option<(&'static str, &'static str, &'static str)>,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String) -> Self {
        Family {
            out,
            head: None,
            name: "",
        }
    }

    fn head(&mut self, name: &'static str, kind: &'static str, help: &'static str) {
        self.head = Some((name, kind, help));
        self.name = name;
    }

    fn start_sample(&mut self) {
        if let Some((name, kind, help)) = self.head.take() {
            // The help texts are ours: no backslash or line break to escape.
            let _ = write!(
                self.out,
                "# HELP kalshi_riskd_{name} {help}\n# TYPE kalshi_riskd_{name} {kind}\n"
            );
        }
        self.out.push_str("kalshi_riskd_");
        self.out.push_str(self.name);
    }

    /// One sample; `labels` in the order of their names.
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.start_sample();
        let mut sep = '{';
        for (k, v) in labels {
            self.out.push(sep);
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_into(self.out, v);
            self.out.push('"');
            sep = ',';
        }
        self.out.push('}');
        self.value(value);
    }

    /// A group's sample: labels `exchange_index` and `strategy`.
    fn sample_index(&mut self, strategy: &str, index: u32, value: f64) {
        self.start_sample();
        let _ = write!(self.out, "{{exchange_index=\"{index}\",strategy=\"");
        escape_into(self.out, strategy);
        self.out.push_str("\"}");
        self.value(value);
    }

    fn value(&mut self, v: f64) {
        if v.is_nan() {
            self.out.push_str(" NaN\n");
        } else if v.is_infinite() {
            self.out
                .push_str(if v > 0.0 { " +Inf\n" } else { " -Inf\n" });
        } else {
            let _ = writeln!(self.out, " {v}");
        }
    }
}

/// A label value in the text format: backslash, double quote and line feed escaped.
fn escape_into(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}
