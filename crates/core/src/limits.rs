//! Daemon-side limits: contracts, notional dollars and fill count, each over its
//! own rolling window, with a warn ratio.
//!
//! A limit is **breached** when a measure *exceeds* its maximum (`value > max`), mirroring the
//! exchange's own trigger rule, and **warned** when a measure reaches `warn_ratio × max`. Ratios
//! are integers in parts per million, so no floating point enters a decision.

use serde::{Deserialize, Serialize};

use super::units::{Contracts, Dollars};
use super::window::Window;

/// A ratio in parts per million (0.8 is 800,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ratio(u32);

impl Ratio {
    pub const ONE: Ratio = Ratio(1_000_000);

    pub const fn from_ppm(ppm: u32) -> Ratio {
        Ratio(ppm)
    }

    /// From a decimal ratio such as 0.8, rounded to the nearest part per million. For config
    /// parsing only; decisions use the integer.
    pub fn from_decimal(r: f64) -> Option<Ratio> {
        (r.is_finite() && (0.0..=1.0).contains(&r)).then(|| Ratio((r * 1e6).round() as u32))
    }

    pub const fn ppm(self) -> u32 {
        self.0
    }

    /// `value >= self × max`, exactly.
    fn reached(self, value: i64, max: i64) -> bool {
        (value as i128) * 1_000_000 >= (max as i128) * self.0 as i128
    }

    /// `value < self × max`, exactly.
    pub fn below(self, value: i64, max: i64) -> bool {
        !self.reached(value, max)
    }
}

/// What one fill adds to a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub contracts: Contracts,
    pub notional: Dollars,
    pub fills: i64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.contracts += o.contracts;
        self.notional = self.notional + o.notional;
        self.fills += o.fills;
    }
}

impl std::ops::SubAssign for Usage {
    fn sub_assign(&mut self, o: Usage) {
        self.contracts -= o.contracts;
        self.notional = self.notional - o.notional;
        self.fills -= o.fills;
    }
}

/// One limit as the policy states it. At least one maximum is set (the config checks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSpec {
    pub name: String,
    pub window_ms: i64,
    pub max_contracts: Option<Contracts>,
    pub max_notional: Option<Dollars>,
    pub max_fills: Option<i64>,
    pub warn_ratio: Ratio,
}

impl LimitSpec {
    /// The fewest contracts that could breach this limit from an empty window, in hundredths
    /// of a contract (a fill is at least 0.01 contract and costs at most $1 a contract): how
    /// close the limit is to firing, to rank strategies by.
    pub fn reach(&self) -> i64 {
        let contracts = self.max_contracts.map(Contracts::hundredths);
        let notional = self.max_notional.map(|d| d.micros() / 10_000);
        [contracts, notional, self.max_fills]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(i64::MAX)
    }
}

/// The figures a trip or warning is based on: the window's content and the limit's maxima.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub limit: String,
    pub window_ms: i64,
    pub contracts: Contracts,
    pub notional: Dollars,
    pub fills: i64,
    pub max_contracts: Option<Contracts>,
    pub max_notional: Option<Dollars>,
    pub max_fills: Option<i64>,
}

/// Where a limit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Normal,
    Warned,
    Breached,
}

/// A limit and its window.
#[derive(Debug, Clone)]
pub struct LimitState {
    pub spec: LimitSpec,
    window: Window<Usage>,
}

impl LimitState {
    pub fn new(spec: LimitSpec) -> Self {
        LimitState {
            window: Window::new(spec.window_ms),
            spec,
        }
    }

    pub fn add(&mut self, ts_ms: i64, usage: Usage) {
        self.window.add(ts_ms, usage);
    }

    pub fn usage(&mut self, now_ms: i64) -> Usage {
        self.window.sum(now_ms)
    }

    /// The `(value, max)` pairs of the measures this limit sets.
    fn measures(&self, u: Usage) -> impl Iterator<Item = (i64, i64)> {
        let s = &self.spec;
        [
            s.max_contracts
                .map(|m| (u.contracts.hundredths(), m.hundredths())),
            s.max_notional.map(|m| (u.notional.micros(), m.micros())),
            s.max_fills.map(|m| (u.fills, m)),
        ]
        .into_iter()
        .flatten()
    }

    pub fn level(&mut self, now_ms: i64) -> Level {
        let u = self.usage(now_ms);
        let mut level = Level::Normal;
        for (v, m) in self.measures(u) {
            if v > m {
                return Level::Breached;
            }
            if self.spec.warn_ratio.reached(v, m) {
                level = Level::Warned;
            }
        }
        level
    }

    /// Whether every measure is below `ratio × max` (a drained window, for auto-reset).
    pub fn drained_below(&mut self, ratio: Ratio, now_ms: i64) -> bool {
        let u = self.usage(now_ms);
        self.measures(u).all(|(v, m)| ratio.below(v, m))
    }

    pub fn evidence(&mut self, now_ms: i64) -> Evidence {
        let u = self.usage(now_ms);
        Evidence {
            limit: self.spec.name.clone(),
            window_ms: self.spec.window_ms,
            contracts: u.contracts,
            notional: u.notional,
            fills: u.fills,
            max_contracts: self.spec.max_contracts,
            max_notional: self.spec.max_notional,
            max_fills: self.spec.max_fills,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LimitSpec {
        LimitSpec {
            name: "fast".into(),
            window_ms: 15_000,
            max_contracts: Some(Contracts::from_whole(100)),
            max_notional: Some(Dollars::parse("40").unwrap()),
            max_fills: Some(10),
            warn_ratio: Ratio::from_decimal(0.8).unwrap(),
        }
    }

    fn usage(c: i64, price: &str) -> Usage {
        let contracts = Contracts::from_whole(c);
        Usage {
            contracts,
            notional: Dollars::parse(price).unwrap().times(contracts),
            fills: 1,
        }
    }

    #[test]
    fn each_measure_warns_at_the_ratio_and_breaches_above_the_max() {
        // (contracts, price, expected level)
        let cases = [
            (79, "0.10", Level::Normal),
            (80, "0.10", Level::Warned),  // contracts reach 0.8 × 100
            (100, "0.10", Level::Warned), // at the max is not over it
            (101, "0.10", Level::Breached),
            (10, "3.20", Level::Warned),   // notional $32 = 0.8 × $40
            (10, "4.00", Level::Warned),   // $40: at the max
            (10, "4.01", Level::Breached), // $40.10
        ];
        for (c, p, want) in cases {
            let mut l = LimitState::new(spec());
            l.add(0, usage(c, p));
            assert_eq!(l.level(0), want, "{c} @ {p}");
        }
        let mut l = LimitState::new(spec());
        for i in 0..11 {
            l.add(i, usage(1, "0.01"));
            let want = match i {
                0..=6 => Level::Normal,
                7..=9 => Level::Warned,
                _ => Level::Breached,
            };
            assert_eq!(l.level(i), want, "fill {}", i + 1);
        }
    }

    #[test]
    fn drained_and_evidence() {
        let mut l = LimitState::new(spec());
        l.add(0, usage(60, "0.10"));
        let half = Ratio::from_decimal(0.5).unwrap();
        assert!(!l.drained_below(half, 0));
        assert!(l.drained_below(half, 15_000));
        l.add(20_000, usage(49, "0.10"));
        assert!(l.drained_below(half, 20_000));
        let e = l.evidence(20_000);
        assert_eq!(
            (e.contracts, e.fills, e.limit.as_str()),
            (Contracts::from_whole(49), 1, "fast")
        );
    }

    #[test]
    fn ratios_are_exact() {
        let r = Ratio::from_decimal(0.8).unwrap();
        assert_eq!(r.ppm(), 800_000);
        assert!(r.below(79_999, 100_000) && !r.below(80_000, 100_000));
        assert_eq!(Ratio::from_decimal(1.5), None);
        assert_eq!(Ratio::from_decimal(f64::NAN), None);
    }
}
