//! Faults the simulator injects on demand, set by `sim` flags or `POST /_sim/faults`.

use serde::{Deserialize, Serialize};

/// The active fault set. `POST /_sim/faults` replaces it whole; omitted fields are off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share (0 to 1) of REST requests answered `500`.
    pub error_rate: f64,
    /// Only requests whose path starts with this get errors (all when absent).
    pub error_path: Option<String>,
    /// The request takes effect and then the answer is a `500`: the client cannot know whether
    /// it was applied (an "outcome unknown" create, for example).
    pub error_after_apply: bool,
    /// The next this-many authenticated REST requests get `429`.
    pub burst_429: u64,
    /// The next this-many requests matching `error_path` get `500` (then `error_rate` applies).
    pub error_burst: u64,
    /// Delay added before every REST answer, in milliseconds.
    pub latency_ms: u64,
    /// Only requests whose path starts with this are delayed (all when absent).
    pub latency_path: Option<String>,
    /// The delay comes after the request took effect, before its answer (a slow way back):
    /// a client that dies meanwhile never learns what it did.
    pub latency_after_apply: bool,
    /// Every WebSocket goes silent: no data, no pings, commands unread, sockets left open.
    /// Data published meanwhile is lost (`order_group_updates` `seq` still advances, so a
    /// reader sees the gap once the stream speaks again).
    pub ws_silent: bool,
    /// Every FIX session goes silent: no heartbeats, no answers, messages read and ignored
    /// (sequence numbers still checked), connections left open.
    pub fix_silent: bool,
    /// WebSocket `subscribe` commands naming these channels are answered with error 17 for
    /// them (after the `subscribed` replies of the others), as a refused subscribe would be:
    /// those channels stay unsubscribed.
    pub ws_refuse_subscribe: Vec<String>,
    /// `order_group_updates` in the loose shapes the exchange is known to send: `ts_ms` left
    /// out, and an event of an unknown `event_type` after each real one.
    pub ws_loose_group_events: bool,
    /// The `Date` header of REST answers reads this many milliseconds ahead (behind when
    /// negative): a skewed exchange clock, as a client measures it. Signatures are still
    /// checked against the simulator's own clock.
    pub clock_skew_ms: i64,
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate {} must be between 0 and 1",
                self.error_rate
            ));
        }
        Ok(())
    }

    fn matches(&self, path: &str) -> bool {
        self.error_path
            .as_deref()
            .is_none_or(|prefix| path.starts_with(prefix))
    }

    /// Whether this request gets an injected error; consumes one from `error_burst`.
    pub fn take_error(&mut self, path: &str) -> bool {
        if !self.matches(path) {
            return false;
        }
        if self.error_burst > 0 {
            self.error_burst -= 1;
            return true;
        }
        self.error_rate > 0.0 && fastrand::f64() < self.error_rate
    }
}
