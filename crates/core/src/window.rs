//! A rolling window over any duration, with amortised O(1) add and expiry.
//!
//! Boundary rule, the exchange's for its 15 s group window: an amount added at `t` counts while
//! `now < t + length` and has expired at exactly `t + length`.
//!
//! Entries are kept in arrival order. An amount stamped earlier than the newest entry (a fill
//! delivered late, or a lookup that resolved after later fills) is filed at the newest entry's
//! time: it then stays in the window a little longer than its own stamp says, never shorter,
//! which errs toward tripping. This keeps add and expiry O(1).

use std::collections::VecDeque;
use std::ops::{AddAssign, SubAssign};

/// Anything a window can sum.
pub trait Amount: Copy + Default + AddAssign + SubAssign + PartialEq + std::fmt::Debug {}
impl<T: Copy + Default + AddAssign + SubAssign + PartialEq + std::fmt::Debug> Amount for T {}

#[derive(Debug, Clone)]
pub struct Window<A: Amount> {
    length_ms: i64,
    entries: VecDeque<(i64, A)>,
    sum: A,
}

impl<A: Amount> Window<A> {
    pub fn new(length_ms: i64) -> Self {
        Window {
            length_ms: length_ms.max(1),
            entries: VecDeque::new(),
            sum: A::default(),
        }
    }

    pub fn length_ms(&self) -> i64 {
        self.length_ms
    }

    /// Adds `amount` stamped `ts_ms` (filed no earlier than the newest entry).
    pub fn add(&mut self, ts_ms: i64, amount: A) {
        let ts = match self.entries.back() {
            Some(&(last, _)) if last > ts_ms => last,
            _ => ts_ms,
        };
        match self.entries.back_mut() {
            // Same millisecond: merge, so bursts do not grow the queue.
            Some((last, a)) if *last == ts => *a += amount,
            _ => self.entries.push_back((ts, amount)),
        }
        self.sum += amount;
    }

    /// Drops what has expired by `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        while let Some(&(t, a)) = self.entries.front() {
            if t.saturating_add(self.length_ms) <= now_ms {
                self.entries.pop_front();
                self.sum -= a;
            } else {
                break;
            }
        }
    }

    /// The sum inside the window at `now_ms`.
    pub fn sum(&mut self, now_ms: i64) -> A {
        self.expire(now_ms);
        self.sum
    }

    /// The sum as of the last expiry (no clock needed).
    pub fn current(&self) -> A {
        self.sum
    }

    /// When the oldest entry leaves the window (None when empty).
    pub fn next_expiry_ms(&self) -> Option<i64> {
        self.entries
            .front()
            .map(|&(t, _)| t.saturating_add(self.length_ms))
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.sum = A::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_amount_counts_until_exactly_the_window_length() {
        let mut w: Window<i64> = Window::new(15_000);
        w.add(1_000, 10);
        assert_eq!(w.sum(15_999), 10);
        assert_eq!(w.sum(16_000), 0);
    }

    #[test]
    fn late_amounts_are_filed_at_the_newest_time() {
        let mut w: Window<i64> = Window::new(100);
        w.add(50, 1);
        w.add(10, 2); // late: filed at 50, so it lasts until 150, not 110
        assert_eq!(w.sum(120), 3);
        assert_eq!(w.sum(150), 0);
    }

    /// The specification, literally: effective stamp = the running maximum of stamps.
    fn brute_force(adds: &[(i64, i64)], length: i64, now: i64) -> i64 {
        let mut newest = i64::MIN;
        let mut total = 0;
        for &(t, a) in adds {
            newest = newest.max(t);
            if now < newest.saturating_add(length) {
                total += a;
            }
        }
        total
    }

    proptest! {
        #[test]
        fn window_sum_equals_a_brute_force_sum(
            length in 1i64..5_000,
            steps in prop::collection::vec((0i64..3_000, -200i64..1_000, 0i64..100_000, prop::bool::ANY), 0..200),
        ) {
            // Each step: advance the clock, add an amount stamped near it (possibly late), and
            // sometimes read the sum. The clock only moves forward, as the daemon's does.
            let mut w: Window<i64> = Window::new(length);
            let mut now = 0i64;
            let mut adds = Vec::new();
            for (advance, skew, amount, read) in steps {
                now += advance;
                let ts = (now - skew).max(0);
                w.add(ts, amount);
                adds.push((ts, amount));
                if read {
                    prop_assert_eq!(w.sum(now), brute_force(&adds, length, now));
                }
            }
            // Everything has expired one window after the newest stamp (stamps may run a
            // little ahead of the clock).
            let newest = adds.iter().map(|&(t, _)| t).max().unwrap_or(now).max(now);
            let later = newest + length;
            prop_assert_eq!(w.sum(later), brute_force(&adds, length, later));
            prop_assert_eq!(w.sum(later), 0);
        }
    }
}
