//! What the history says about each limit, whatever it is set to: every busy window's figures
//! (the window ending at each fill), their peak and percentiles, and the limits they suggest.
//!
//! A limit trips when a window *exceeds* its maximum, so the smallest maximum that would not
//! have tripped on the history is the peak itself. A maximum at the p-th percentile of busy
//! windows would have been exceeded by at most (100 - p) % of them: a known false-trip rate.

use serde::Serialize;

use crate::risk::LimitSpec;

use super::history::HistoryFill;

/// The percentiles reported unless others are asked for.
pub const DEFAULT_PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

/// One measure a limit sets (contracts, notional or fills).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasureStats {
    /// `contracts`, `notional` (dollars) or `fills`.
    pub measure: &'static str,
    /// The policy's maximum.
    pub max: f64,
    /// The busiest window: the smallest maximum that would never have tripped.
    pub peak: f64,
    /// `(p, value)`: a maximum at `value` would have been exceeded by at most (100 - p) % of
    /// busy windows.
    pub percentiles: Vec<(f64, f64)>,
}

/// One limit over the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitStats {
    /// The strategy, or `account` for the account limit.
    pub strategy: String,
    pub limit: String,
    pub window_ms: i64,
    /// Busy windows: one ending at each fill.
    pub windows: usize,
    /// The largest share of the limit any window used (1 = at the limit, above 1 = a trip).
    pub peak_utilisation: f64,
    pub utilisation_percentiles: Vec<(f64, f64)>,
    /// Windows over the limit as set: fills at which it was exceeded.
    pub windows_over: usize,
    pub measures: Vec<MeasureStats>,
}

/// The statistics of `spec` over `fills` (in time order).
pub fn limit_stats(
    strategy: &str,
    spec: &LimitSpec,
    fills: &[&HistoryFill],
    percentiles: &[f64],
) -> LimitStats {
    let sums = sliding_sums(spec.window_ms, fills);
    let mut measures = Vec::new();
    let mut ratios = vec![0.0f64; sums.len()];
    let mut measure = |name: &'static str, max: Option<f64>, pick: &dyn Fn(&Sums) -> f64| {
        let Some(max) = max else { return };
        let mut values: Vec<f64> = sums.iter().map(pick).collect();
        for (r, v) in ratios.iter_mut().zip(&values) {
            *r = r.max(v / max.max(f64::MIN_POSITIVE));
        }
        values.sort_by(f64::total_cmp);
        measures.push(MeasureStats {
            measure: name,
            max,
            peak: values.last().copied().unwrap_or(0.0),
            percentiles: percentiles
                .iter()
                .map(|&p| (p, percentile(&values, p)))
                .collect(),
        });
    };
    measure(
        "contracts",
        spec.max_contracts.map(|m| m.hundredths() as f64 / 100.0),
        &|s| s.contracts as f64 / 100.0,
    );
    measure(
        "notional",
        spec.max_notional.map(|m| m.micros() as f64 / 1e6),
        &|s| s.notional as f64 / 1e6,
    );
    measure("fills", spec.max_fills.map(|m| m as f64), &|s| {
        s.fills as f64
    });
    let windows_over = ratios.iter().filter(|r| **r > 1.0).count();
    ratios.sort_by(f64::total_cmp);
    LimitStats {
        strategy: strategy.to_owned(),
        limit: spec.name.clone(),
        window_ms: spec.window_ms,
        windows: sums.len(),
        peak_utilisation: ratios.last().copied().unwrap_or(0.0),
        utilisation_percentiles: percentiles
            .iter()
            .map(|&p| (p, percentile(&ratios, p)))
            .collect(),
        windows_over,
        measures,
    }
}

/// A window's totals: hundredths of a contract, micro-dollars, fills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sums {
    contracts: i64,
    notional: i64,
    fills: i64,
}

/// The totals of the window ending at each fill (the fill included; a fill counts while
/// `now < its time + window`, the daemon's rule).
fn sliding_sums(window_ms: i64, fills: &[&HistoryFill]) -> Vec<Sums> {
    let mut out = Vec::with_capacity(fills.len());
    let mut sum = Sums::default();
    let mut first = 0;
    for (i, f) in fills.iter().enumerate() {
        sum.contracts += f.count.hundredths();
        sum.notional += f.price.times(f.count).micros();
        sum.fills += 1;
        while first < i && fills[first].ts_ms + window_ms <= f.ts_ms {
            let old = fills[first];
            sum.contracts -= old.count.hundredths();
            sum.notional -= old.price.times(old.count).micros();
            sum.fills -= 1;
            first += 1;
        }
        out.push(sum);
    }
    out
}

/// The nearest-rank percentile `p` (0 to 100) of sorted `values`; 0 when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::{Contracts, Dollars, Ratio};

    fn fill(ts_ms: i64, count: i64) -> HistoryFill {
        HistoryFill {
            trade_id: format!("t{ts_ms}"),
            order_id: "o".into(),
            ts_ms,
            count: Contracts::from_whole(count),
            price: Dollars::parse("0.50").unwrap(),
            subaccount: None,
            group: None,
            live: None,
        }
    }

    fn spec(window_ms: i64, max: i64) -> LimitSpec {
        LimitSpec {
            name: "fast".into(),
            window_ms,
            max_contracts: Some(Contracts::from_whole(max)),
            max_notional: None,
            max_fills: None,
            warn_ratio: Ratio::from_decimal(0.8).unwrap(),
        }
    }

    #[test]
    fn a_fill_leaves_the_window_exactly_one_window_after_its_time() {
        let fills = [fill(0, 10), fill(14_999, 5), fill(15_000, 1)];
        let refs: Vec<&HistoryFill> = fills.iter().collect();
        let s = limit_stats("s", &spec(15_000, 14), &refs, &[50.0, 100.0]);
        // Windows: 10, 15, then 6 (the first fill has left at 15 000).
        assert_eq!(s.measures[0].peak, 15.0);
        assert_eq!(s.windows_over, 1);
        assert_eq!(s.measures[0].percentiles, vec![(50.0, 10.0), (100.0, 15.0)]);
        assert!((s.peak_utilisation - 15.0 / 14.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 99.9), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
