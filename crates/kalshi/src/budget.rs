//! The client-side request budget: a token bucket that keeps the daemon under the account's rate
//! limit, with a share held in reserve that only Trigger may use.
//!
//! The exchange's own buckets are the hard limit (a 429 costs a retry and time); this one makes
//! sure the daemon never gets there on its own, and that a Trigger never waits behind routine
//! calls: ordinary calls stop at the reserve, and while any Trigger waits for a token, ordinary
//! calls wait behind it.
//!
//! The bucket should hold what the exchange's does, no more (requests beyond it are refused
//! with 429) and no less (a kill would wait for tokens the exchange would have given): it starts
//! at one second of budget, the least the exchange gives, and takes the exchange's own size
//! once the account's limits are read ([`Budget::set_burst`]). A 429 proves the exchange's
//! bucket is empty whatever this one holds, so it empties this one too ([`Budget::drained`]):
//! the next request waits one interval instead of being refused again. Time is tokio's, so
//! tests run it on a paused clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The least pause after a 429 before the next request on the same budget.
pub const DRAINED_PAUSE: Duration = Duration::from_millis(10);

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Trigger: may use the reserve, and goes ahead of everything else.
    Trigger,
    /// Everything else: stops at the reserve.
    Normal,
}

#[derive(Debug)]
struct State {
    rate: f64,
    capacity: f64,
    reserve_share: f64,
    reserve: f64,
    tokens: f64,
    last: Instant,
    triggers_waiting: u32,
}

impl State {
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last = now;
    }
}

/// A request budget in requests per second. `None` inside means unlimited.
#[derive(Debug)]
pub struct Budget {
    state: Option<Mutex<State>>,
}

/// Counts a waiting Trigger until its acquire finishes or is dropped.
struct TriggerWaiting<'a>(&'a Mutex<State>);

impl Drop for TriggerWaiting<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.triggers_waiting = s.triggers_waiting.saturating_sub(1);
    }
}

impl Budget {
    /// `per_second` requests a second, with `reserve_share` (0 to 1) of the capacity kept for
    /// Trigger.
    pub fn new(per_second: f64, reserve_share: f64) -> Budget {
        let capacity = per_second.max(1.0);
        let reserve_share = reserve_share.clamp(0.0, 1.0);
        Budget {
            state: Some(Mutex::new(State {
                rate: per_second.max(0.001),
                capacity,
                reserve_share,
                reserve: capacity * reserve_share,
                tokens: capacity,
                last: Instant::now(),
                triggers_waiting: 0,
            })),
        }
    }

    pub fn unlimited() -> Budget {
        Budget { state: None }
    }

    /// Requests a second; `None` when unlimited.
    pub fn rate(&self) -> Option<f64> {
        let state = self.state.as_ref()?;
        Some(state.lock().unwrap_or_else(|e| e.into_inner()).rate)
    }

    /// Makes the bucket hold `seconds` of budget (at least one request), as the exchange's
    /// does; the reserve keeps its share. Tokens already held are kept up to the new size.
    pub fn set_burst(&self, seconds: f64) {
        let Some(state) = &self.state else { return };
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.refill(Instant::now());
        s.capacity = (s.rate * seconds).max(1.0);
        s.reserve = s.capacity * s.reserve_share;
        s.tokens = s.tokens.min(s.capacity);
    }

    /// The bucket's size in seconds of budget; `None` when unlimited.
    pub fn burst(&self) -> Option<f64> {
        let state = self.state.as_ref()?;
        let s = state.lock().unwrap_or_else(|e| e.into_inner());
        Some(s.capacity / s.rate)
    }

    /// The exchange refused a request for its rate (429): its bucket is empty, so this one is
    /// emptied too, and the next request waits for a token the exchange will have: one
    /// interval, and at least [`DRAINED_PAUSE`] (a rate set far above the account's would
    /// otherwise be refused as fast as it is sent).
    pub fn drained(&self) {
        let Some(state) = &self.state else { return };
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.refill(Instant::now());
        let floor = (1.0 - s.rate * DRAINED_PAUSE.as_secs_f64()).min(0.0);
        s.tokens = s.tokens.min(floor);
    }

    /// Waits until this request may go.
    pub async fn acquire(&self, priority: Priority) {
        let Some(state) = &self.state else { return };
        let mut waiting: Option<TriggerWaiting<'_>> = None;
        loop {
            let wait = {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.refill(Instant::now());
                let floor = match priority {
                    Priority::Trigger => 0.0,
                    // A waiting Trigger (other than this caller) holds back every ordinary call.
                    Priority::Normal if s.triggers_waiting > 0 => f64::INFINITY,
                    Priority::Normal => s.reserve,
                };
                if s.tokens >= floor + 1.0 {
                    s.tokens -= 1.0;
                    return;
                }
                if priority == Priority::Trigger && waiting.is_none() {
                    s.triggers_waiting += 1;
                    waiting = Some(TriggerWaiting(state));
                }
                let need = if floor.is_finite() {
                    floor + 1.0 - s.tokens
                } else {
                    1.0
                };
                Duration::from_secs_f64((need / s.rate).max(0.000_5))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn count_within(b: &Arc<Budget>, p: Priority, window: Duration) -> usize {
        let start = Instant::now();
        let mut n = 0;
        loop {
            b.acquire(p).await;
            if start.elapsed() > window {
                return n;
            }
            n += 1;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ordinary_calls_stay_under_the_rate_and_above_the_reserve() {
        let b = Arc::new(Budget::new(10.0, 0.5));
        // A full bucket of 10 with 5 reserved: 5 at once, then 10 a second.
        let burst = count_within(&b, Priority::Normal, Duration::ZERO).await;
        assert_eq!(burst, 5);
        let b = Arc::new(Budget::new(10.0, 0.5));
        let in_ten_s = count_within(&b, Priority::Normal, Duration::from_secs(10)).await;
        assert!((100..=106).contains(&in_ten_s), "{in_ten_s}");
    }

    #[tokio::test(start_paused = true)]
    async fn trigger_uses_the_reserve_at_once() {
        let b = Budget::new(10.0, 0.5);
        for _ in 0..5 {
            b.acquire(Priority::Normal).await;
        }
        let t0 = Instant::now();
        for _ in 0..5 {
            b.acquire(Priority::Trigger).await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO, "the reserve is the Trigger's");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_trigger_goes_before_waiting_ordinary_calls() {
        let b = Arc::new(Budget::new(10.0, 0.0));
        for _ in 0..10 {
            b.acquire(Priority::Normal).await; // empty the bucket
        }
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                b.acquire(Priority::Normal).await;
                order.lock().unwrap().push(format!("normal{i}"));
            }));
        }
        tokio::task::yield_now().await;
        let (b2, order2) = (b.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            b2.acquire(Priority::Trigger).await;
            order2.lock().unwrap().push("trigger".to_owned());
        }));
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order[0], "trigger", "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_trigger_does_not_block_ordinary_calls_forever() {
        let b = Arc::new(Budget::new(1.0, 0.0));
        b.acquire(Priority::Normal).await;
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.acquire(Priority::Trigger).await }
        });
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        let t0 = Instant::now();
        b.acquire(Priority::Normal).await;
        assert!(t0.elapsed() <= Duration::from_secs(2), "{:?}", t0.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_two_seconds_lets_a_kill_go_as_fast_as_the_exchange_allows() {
        // Advanced: 30 writes a second, two seconds of burst at the exchange. 100 Triggers go
        // 60 at once, then 30 a second: the last at (100 - 60) / 30 = 1.33 s.
        let b = Arc::new(Budget::new(30.0, 0.5));
        assert_eq!(b.burst(), Some(1.0));
        tokio::time::advance(Duration::from_secs(5)).await;
        b.set_burst(2.0);
        tokio::time::advance(Duration::from_secs(5)).await;
        let t0 = Instant::now();
        for _ in 0..100 {
            b.acquire(Priority::Trigger).await;
        }
        let took = t0.elapsed().as_secs_f64();
        assert!((1.33..1.36).contains(&took), "{took}");
        // The reserve keeps its share of the larger bucket.
        let b = Arc::new(Budget::new(30.0, 0.5));
        b.set_burst(2.0);
        tokio::time::advance(Duration::from_secs(5)).await;
        let ordinary = count_within(&b, Priority::Normal, Duration::ZERO).await;
        assert_eq!(ordinary, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_empties_the_bucket() {
        let b = Budget::new(10.0, 0.0);
        b.acquire(Priority::Trigger).await;
        b.drained();
        let t0 = Instant::now();
        b.acquire(Priority::Trigger).await;
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_millis(110),
            "one interval at 10 a second: {waited:?}"
        );
        // A rate far above the account's still pauses after a 429.
        let b = Budget::new(5000.0, 0.0);
        b.drained();
        let t0 = Instant::now();
        b.acquire(Priority::Trigger).await;
        let waited = t0.elapsed();
        assert!(
            waited >= DRAINED_PAUSE && waited < DRAINED_PAUSE * 2,
            "{waited:?}"
        );
        Budget::unlimited().drained();
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let b = Budget::unlimited();
        let t0 = Instant::now();
        for _ in 0..10_000 {
            b.acquire(Priority::Normal).await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }
}
