//! The daemon's Prometheus metrics: prefix `kalshi_riskd_`, base units, counters
//! ending in `_total`, and every series present from the first scrape (label values known at
//! start are created at zero). `exchange_requests_total`'s `status` is a bounded class
//! (`2xx`, `4xx`, `429`, `5xx`, `error`) so it too is known at start.
//!
//! The daemon's loop owns the truth (the risk core); [`Metrics::refresh`] copies it on every
//! tick, so a scrape never waits on the loop: the per-strategy families into a compact board
//! written straight into the scrape's text ([`super::board`]), the rest into the registry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder as _, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::board::Board;
use crate::kalshi::stream::StreamCounters;
use crate::risk::engine::RiskEngine;

pub const STATUS_CLASSES: [&str; 5] = ["2xx", "4xx", "429", "5xx", "error"];

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The class of an HTTP status (or `error` for no answer).
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(429) => "429",
        Some(s) if (200..300).contains(&s) => "2xx",
        Some(s) if (400..500).contains(&s) => "4xx",
        Some(s) if s >= 500 => "5xx",
        _ => "error",
    }
}

/// The counts last added to the registry's counters.
#[derive(Default)]
struct Seen {
    unmapped: u64,
    peer_fills: u64,
    backfilled: u64,
    backfill_failures: u64,
    reconnects: u64,
    write_failures: [u64; 2],
    subscriptions_lost: [u64; 3],
    logons: u64,
    unknown: u64,
    garbage: u64,
}

pub struct Metrics {
    pub registry: Registry,
    /// The per-strategy families, as of the last refresh (the loop updates it in place
    /// unless a scrape holds it).
    board: Mutex<Arc<Board>>,
    /// The length of the last scrape's text.
    rendered: std::sync::atomic::AtomicUsize,
    kill_switch_engaged: IntGauge,
    unmapped_fills_total: IntCounter,
    fills_backfilled_total: IntCounter,
    backfill_failures_total: IntCounter,
    stream_connected: IntGauge,
    stream_reconnects_total: IntCounter,
    state_write_failures_total: IntCounterVec,
    trigger_confirmations_total: IntCounterVec,
    fix_session_configured: IntGauge,
    fix_session_up: IntGauge,
    state_write_failing: IntGauge,
    stream_subscribed: IntGaugeVec,
    stream_subscriptions_lost_total: IntCounterVec,
    stream_unknown_messages_total: IntCounter,
    stream_undecodable_messages_total: IntCounter,
    stream_last_message_timestamp_seconds: Gauge,
    fix_logons_total: IntCounter,
    exchange_clock_offset_seconds: Gauge,
    policy_reload_success: IntGauge,
    policy_reload_last_success_timestamp_seconds: Gauge,
    exchange_requests_total: IntCounterVec,
    exchange_request_duration_seconds: HistogramVec,
    trigger_latency_seconds: Histogram,
    policy_reloads_total: IntCounterVec,
    seen: Mutex<Seen>,
    /// Cluster mode's series, registered only in cluster mode ([`Metrics::enable_cluster`]).
    cluster: std::sync::OnceLock<ClusterMetrics>,
}

struct ClusterMetrics {
    etcd_up: IntGauge,
    latch_engaged: IntGauge,
    members: IntGauge,
    strategy_conflicts: IntGauge,
    peer_fills_total: IntCounter,
    leader: IntGauge,
    members_lost: IntGauge,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("kalshi_riskd")
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry.register(Box::new(m.clone()))?;
                m
            }};
        }
        let latency_buckets = prometheus::exponential_buckets(0.000_1, 2.0, 16)?;
        let m = Metrics {
            kill_switch_engaged: reg!(IntGauge::with_opts(opts(
                "kill_switch_engaged",
                "1 while the kill switch is engaged."
            ))?),
            unmapped_fills_total: reg!(IntCounter::with_opts(opts(
                "unmapped_fills_total",
                "Fills whose order belongs to no managed group."
            ))?),
            fills_backfilled_total: reg!(IntCounter::with_opts(opts(
                "fills_backfilled_total",
                "Fills the stream missed, counted from GET /portfolio/fills after a gap or at start."
            ))?),
            backfill_failures_total: reg!(IntCounter::with_opts(opts(
                "backfill_failures_total",
                "Backfills that could not read the exchange's fills (retried; at start the strategies are left unknown)."
            ))?),
            stream_connected: reg!(IntGauge::with_opts(opts(
                "stream_connected",
                "1 while the user stream is connected and subscribed."
            ))?),
            stream_reconnects_total: reg!(IntCounter::with_opts(opts(
                "stream_reconnects_total",
                "User stream reconnections."
            ))?),
            trigger_confirmations_total: reg!(IntCounterVec::new(
                opts(
                    "trigger_confirmations_total",
                    "Triggers the exchange confirmed, by the channel that confirmed them (fix, rest)."
                ),
                &["channel"]
            )?),
            fix_session_configured: reg!(IntGauge::with_opts(opts(
                "fix_session_configured",
                "1 when group actions are configured to go over FIX (exchange.control = \"fix\")."
            ))?),
            fix_session_up: reg!(IntGauge::with_opts(opts(
                "fix_session_up",
                "1 while the FIX session is logged on (0 without FIX, or while it is down)."
            ))?),
            state_write_failures_total: reg!(IntCounterVec::new(
                opts(
                    "state_write_failures_total",
                    "Failed attempts to write state.json or append to audit.jsonl; each is retried until it succeeds."
                ),
                &["file"]
            )?),
            state_write_failing: reg!(IntGauge::with_opts(opts(
                "state_write_failing",
                "1 while durable writes are failing and being retried."
            ))?),
            stream_subscribed: reg!(IntGaugeVec::new(
                opts(
                    "stream_subscribed",
                    "1 while the user stream holds a subscription to the channel."
                ),
                &["channel"]
            )?),
            stream_subscriptions_lost_total: reg!(IntCounterVec::new(
                opts(
                    "stream_subscriptions_lost_total",
                    "Subscriptions the exchange ended (errors 10 and 25), refused, or no longer listed; each is restored and reconciled."
                ),
                &["channel"]
            )?),
            stream_unknown_messages_total: reg!(IntCounter::with_opts(opts(
                "stream_unknown_messages_total",
                "User stream messages of an unknown type or group event_type, ignored."
            ))?),
            stream_undecodable_messages_total: reg!(IntCounter::with_opts(opts(
                "stream_undecodable_messages_total",
                "User stream frames that could not be decoded."
            ))?),
            stream_last_message_timestamp_seconds: reg!(Gauge::with_opts(opts(
                "stream_last_message_timestamp_seconds",
                "When the user stream last delivered a frame (Unix time; 0 before the first). An alert compares it with time(), so a daemon that stops updating it still alerts."
            ))?),
            exchange_clock_offset_seconds: reg!(Gauge::with_opts(opts(
                "exchange_clock_offset_seconds",
                "The exchange's clock minus this host's, from the Date of its REST answers (to within about half a second; 0 before the first answer). The exchange refuses signatures beyond a few seconds of skew."
            ))?),
            fix_logons_total: reg!(IntCounter::with_opts(opts(
                "fix_logons_total",
                "Successful FIX logons (each reconnect adds one)."
            ))?),
            policy_reload_success: reg!(IntGauge::with_opts(opts(
                "policy_reload_success",
                "1 when the last reload succeeded (or none was tried since the start), 0 when it was refused."
            ))?),
            policy_reload_last_success_timestamp_seconds: reg!(Gauge::with_opts(opts(
                "policy_reload_last_success_timestamp_seconds",
                "When the policies in force were loaded (Unix time): the start, or the last good reload."
            ))?),
            exchange_requests_total: reg!(IntCounterVec::new(
                opts(
                    "exchange_requests_total",
                    "REST requests to the exchange, by operation and status class."
                ),
                &["op", "status"]
            )?),
            exchange_request_duration_seconds: reg!(HistogramVec::new(
                HistogramOpts::new(
                    "exchange_request_duration_seconds",
                    "REST request duration, by operation."
                )
                .namespace("kalshi_riskd")
                .buckets(latency_buckets.clone()),
                &["op"]
            )?),
            trigger_latency_seconds: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "trigger_latency_seconds",
                    "From a trip decision to the exchange confirming every group's Trigger."
                )
                .namespace("kalshi_riskd")
                .buckets(latency_buckets)
            )?),
            policy_reloads_total: reg!(IntCounterVec::new(
                opts(
                    "policy_reloads_total",
                    "Reloads, by result (success, failure)."
                ),
                &["result"]
            )?),
            board: Mutex::new(Arc::new(Board::default())),
            rendered: std::sync::atomic::AtomicUsize::new(0),
            seen: Mutex::new(Seen::default()),
            cluster: std::sync::OnceLock::new(),
            registry: registry.clone(),
        };
        let build = reg!(IntGaugeVec::new(
            opts(
                "build_info",
                "Always 1; the version and the git revision built from are labels."
            ),
            &["version", "revision"]
        )?);
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("KALSHI_RISKD_REVISION")])
            .set(1);
        // The unit's ProcSubset=pid hides process_start_time_seconds: the daemon says it.
        let started = reg!(Gauge::with_opts(opts(
            "start_time_seconds",
            "When the daemon started (Unix time)."
        ))?);
        let now = unix_now();
        started.set(now);
        m.policy_reload_success.set(1);
        m.policy_reload_last_success_timestamp_seconds.set(now);
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        for op in crate::kalshi::Op::ALL.map(crate::kalshi::Op::as_str) {
            m.exchange_request_duration_seconds.with_label_values(&[op]);
            for s in STATUS_CLASSES {
                m.exchange_requests_total.with_label_values(&[op, s]);
            }
        }
        for r in ["success", "failure"] {
            m.policy_reloads_total.with_label_values(&[r]);
        }
        Ok(m)
    }

    /// One REST attempt.
    pub fn observe_request(&self, op: &str, status: Option<u16>, took: Duration) {
        self.exchange_requests_total
            .with_label_values(&[op, status_class(status)])
            .inc();
        self.exchange_request_duration_seconds
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
    }

    pub fn observe_trigger_latency(&self, took: Duration) {
        self.trigger_latency_seconds.observe(took.as_secs_f64());
    }

    pub fn reload(&self, ok: bool) {
        self.policy_reloads_total
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
        self.policy_reload_success.set(i64::from(ok));
        if ok {
            self.policy_reload_last_success_timestamp_seconds
                .set(unix_now());
        }
    }

    /// A Trigger was confirmed over `channel` (`fix` or `rest`).
    pub fn trigger_confirmed(&self, channel: &str) {
        self.trigger_confirmations_total
            .with_label_values(&[channel])
            .inc();
    }

    /// Registers cluster mode's series (once; they are absent alone on a host, where an alert
    /// on etcd would mean nothing).
    pub fn enable_cluster(&self) -> Result<(), MetricsError> {
        if self.cluster.get().is_some() {
            return Ok(());
        }
        let gauge = |name: &str, help: &str| -> Result<IntGauge, MetricsError> {
            let g = IntGauge::with_opts(opts(name, help))?;
            self.registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let m = ClusterMetrics {
            etcd_up: gauge(
                "cluster_etcd_up",
                "1 while the cluster's shared kill latch can be read in etcd; 0 while it cannot (resets and releases are refused).",
            )?,
            latch_engaged: gauge(
                "cluster_latch_engaged",
                "1 while the cluster's shared kill latch is engaged in etcd (as last read).",
            )?,
            members: gauge(
                "cluster_members",
                "Members registered in the cluster (this one included), as last read.",
            )?,
            members_lost: gauge(
                "cluster_members_lost",
                "Members gone without a clean stop and not back: the leader guards their strategies.",
            )?,
            leader: gauge(
                "cluster_leader",
                "1 while this member is the cluster's leader (it evaluates the account-level limit).",
            )?,
            strategy_conflicts: gauge(
                "cluster_strategy_conflicts",
                "This member's strategies that another member of the cluster claims too (a configuration error).",
            )?,
            peer_fills_total: {
                let c = IntCounter::with_opts(opts(
                    "cluster_peer_fills_total",
                    "Fills in another member's groups: counted by that member, not unmapped here.",
                ))?;
                self.registry.register(Box::new(c.clone()))?;
                c
            },
        };
        let _ = self.cluster.set(m);
        Ok(())
    }

    pub fn cluster_readable(&self, up: bool) {
        if let Some(c) = self.cluster.get() {
            c.etcd_up.set(i64::from(up));
        }
    }

    pub fn cluster_latch(&self, engaged: bool) {
        if let Some(c) = self.cluster.get() {
            c.latch_engaged.set(i64::from(engaged));
        }
    }

    pub fn cluster_members(&self, n: usize) {
        if let Some(c) = self.cluster.get() {
            c.members.set(n as i64);
        }
    }

    pub fn cluster_members_lost(&self, n: usize) {
        if let Some(c) = self.cluster.get() {
            c.members_lost.set(n as i64);
        }
    }

    pub fn cluster_leader(&self, leader: bool) {
        if let Some(c) = self.cluster.get() {
            c.leader.set(i64::from(leader));
        }
    }

    pub fn cluster_conflicts(&self, n: usize) {
        if let Some(c) = self.cluster.get() {
            c.strategy_conflicts.set(n as i64);
        }
    }

    /// The FIX session's state: `None` without FIX, else whether it is logged on and how many
    /// logons it has made.
    pub fn fix_session(&self, session: Option<(bool, u64)>) {
        let logged_on = session.map(|(up, _)| up);
        self.fix_session_configured
            .set(i64::from(logged_on.is_some()));
        self.fix_session_up.set(i64::from(logged_on == Some(true)));
        if let Some((_, logons)) = session {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            self.fix_logons_total
                .inc_by(logons.saturating_sub(seen.logons));
            seen.logons = logons;
        }
        for c in ["fix", "rest"] {
            self.trigger_confirmations_total.with_label_values(&[c]);
        }
    }

    /// The exchange's clock minus ours, in ms, once known.
    pub fn clock_offset(&self, ms: Option<i64>) {
        if let Some(ms) = ms {
            self.exchange_clock_offset_seconds.set(ms as f64 / 1000.0);
        }
    }

    /// Copies the durable writer's health into the registry.
    pub fn refresh_writes(&self, w: &crate::daemon::writer::WriteHealth) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (i, (file, n)) in [
            ("state.json", w.state_failures.load(Relaxed)),
            ("audit.jsonl", w.audit_failures.load(Relaxed)),
        ]
        .into_iter()
        .enumerate()
        {
            self.state_write_failures_total
                .with_label_values(&[file])
                .inc_by(n.saturating_sub(seen.write_failures[i]));
            seen.write_failures[i] = n;
        }
        self.state_write_failing.set(i64::from(w.is_failing()));
    }

    /// Copies the risk core's and the stream's state into the registry.
    pub fn refresh(&self, engine: &mut RiskEngine, stream: &StreamCounters, now_ms: i64) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        self.kill_switch_engaged
            .set(i64::from(engine.kill().is_some()));
        {
            let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
            // In place, unless a scrape is reading it (then a copy).
            Arc::make_mut(&mut board).update(engine, now_ms);
        }
        let c = engine.counters();
        self.unmapped_fills_total
            .inc_by(c.unmapped_fills.saturating_sub(seen.unmapped));
        seen.unmapped = c.unmapped_fills;
        if let Some(m) = self.cluster.get() {
            m.peer_fills_total
                .inc_by(c.peer_fills.saturating_sub(seen.peer_fills));
            seen.peer_fills = c.peer_fills;
        }
        self.fills_backfilled_total
            .inc_by(c.backfilled_fills.saturating_sub(seen.backfilled));
        seen.backfilled = c.backfilled_fills;
        self.backfill_failures_total
            .inc_by(c.backfill_failures.saturating_sub(seen.backfill_failures));
        seen.backfill_failures = c.backfill_failures;
        self.stream_connected
            .set(i64::from(stream.connected.load(Relaxed)));
        let reconnects = stream.reconnects.load(Relaxed);
        self.stream_reconnects_total
            .inc_by(reconnects.saturating_sub(seen.reconnects));
        seen.reconnects = reconnects;
        for (i, channel) in crate::kalshi::stream::CHANNELS.iter().enumerate() {
            self.stream_subscribed
                .with_label_values(&[*channel])
                .set(i64::from(stream.subscribed[i].load(Relaxed)));
            let lost = stream.subscriptions_lost[i].load(Relaxed);
            self.stream_subscriptions_lost_total
                .with_label_values(&[*channel])
                .inc_by(lost.saturating_sub(seen.subscriptions_lost[i]));
            seen.subscriptions_lost[i] = lost;
        }
        let unknown = stream.unknown.load(Relaxed);
        self.stream_unknown_messages_total
            .inc_by(unknown.saturating_sub(seen.unknown));
        seen.unknown = unknown;
        let garbage = stream.garbage.load(Relaxed);
        self.stream_undecodable_messages_total
            .inc_by(garbage.saturating_sub(seen.garbage));
        seen.garbage = garbage;
        let last = stream.last_frame_ms.load(Relaxed);
        self.stream_last_message_timestamp_seconds
            .set(last.max(0) as f64 / 1000.0);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let board = Arc::clone(&self.board.lock().unwrap_or_else(|e| e.into_inner()));
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        let mut text = String::from_utf8(buf).unwrap_or_default();
        // Sized once, from the last scrape's length (growing by doubling would hold twice it).
        text.reserve(self.rendered.load(std::sync::atomic::Ordering::Relaxed));
        board.render(&mut text);
        self.rendered
            .store(text.len(), std::sync::atomic::Ordering::Relaxed);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(policy: &str) -> RiskEngine {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(
            dir.path().join("k.toml"),
            "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k\"\n[policies]\ndir = \"policies\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("policies/s.toml"), policy).unwrap();
        let loaded = crate::config::load(&dir.path().join("k.toml"), Vec::new()).unwrap();
        RiskEngine::new(loaded.risk_config())
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Values that change only with a policy are set when the series are made; a reload that
    /// keeps every label but changes a value must still show the new value. (The group's
    /// limit is set the same way; its series needs a group, which the daemon tests have.)
    #[test]
    fn a_policy_value_changed_under_the_same_labels_is_shown() {
        let m = Metrics::new().unwrap();
        let stream = StreamCounters::default();
        let policy = |max: u32, group: u32| {
            format!(
                "[group]\ncontracts_limit = {group}\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = {max}\nwarn_ratio = 0.5\n"
            )
        };
        let mut e = engine(&policy(20, 100));
        m.refresh(&mut e, &stream, 1_000);
        m.refresh(&mut e, &stream, 1_250);
        let text = m.render();
        let limit = r#"kalshi_riskd_window_limit_contracts{limit="fast",strategy="s"}"#;
        let warn = r#"kalshi_riskd_window_warn_ratio{limit="fast",strategy="s"}"#;
        let used = r#"kalshi_riskd_window_contracts{limit="fast",strategy="s"}"#;
        assert_eq!(sample(&text, limit), Some(20.0), "{text}");
        assert_eq!(sample(&text, warn), Some(0.5), "{text}");
        assert_eq!(sample(&text, used), Some(0.0), "{text}");
        assert_eq!(
            sample(&text, r#"kalshi_riskd_fills_total{strategy="s"}"#),
            Some(0.0),
            "{text}"
        );

        let mut e = engine(&policy(30, 150));
        m.refresh(&mut e, &stream, 1_500);
        let text = m.render();
        assert_eq!(sample(&text, limit), Some(30.0), "{text}");
        assert_eq!(sample(&text, warn), Some(0.5), "{text}");
    }
}
