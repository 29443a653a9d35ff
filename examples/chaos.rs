//! Seeded chaos: the real `kalshi-riskd` binary against the simulator, with faults at once and
//! overlapping, `kill -9`s at random moments, and oracles that never use the daemon's own code.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example chaos -- --minutes 5 --seed 42
//! ```
//!
//! The run alternates calm spells and storms. A storm sets one to three overlapping faults (5xx
//! on a fifth of requests, some applied before the error; 429 bursts; 200 ms or 3 s of latency;
//! WebSocket drops, silences, terminal subscription errors and garbage frames; FIX drops) and may
//! crash the daemon, reload it (well or badly), engage the kill switch or breach a strategy's
//! limit. Small fills flow all the time. The harness computes every window from the exchange's
//! own fill ledger and checks, throughout:
//! - every certain breach has every group of its strategy triggered within 2 s of the first
//!   moment the harness was not impairing the daemon (no fault, daemon ready, stream subscribed);
//! - after each storm, the daemon's long window holds exactly the fills the exchange made;
//! - every kill triggers every group, and the latch survives every crash;
//! - within 2 s of each storm, the daemon's view of every group (limit, triggered) equals the
//!   simulator's, and there is exactly one group per (strategy, subaccount, exchange index);
//! - no trip is cleared without an audited reset, `state.json` always parses, no log panics.
//!
//! It prints a report and exits 1 on any violation. The same seed gives the same schedule (the
//! daemon's own timing still varies from run to run).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use kalshi_riskd::kalshi::Signer;
use kalshi_riskd::kalshi::auth::{generate_key, now_ms, public_key_der_from_pem};
use kalshi_riskd::sim::{Faults, KeyRegistry, SimConfig, SimState, Simulator, Tier};
use serde_json::{Value, json};
use tokio::sync::RwLock;
use tokio::time::{Instant, sleep};

const KEY_ID: &str = "c4a05e1e-0000-4000-8000-00000000c4a0";
const TICKER: &str = "KXCHAOS-26NOV30-T1";
/// The fast limit every strategy has: contracts over its window.
const FAST_WINDOW_MS: i64 = 20_000;
const FAST_MAX: f64 = 40.0;
/// A breach: one order bigger than the fast limit.
const BREACH: u32 = 45;
/// How far the daemon's window may differ from the harness's (fills carry whole seconds on
/// the stream): a breach is certain only inside the window shortened by this much.
const EDGE_MS: i64 = 1_500;
/// The bound every oracle holds the daemon to, from the first unimpaired moment.
const BOUND_MS: i64 = 2_000;
/// How long the daemon's counts may take to match the ledger once the flows are held: its
/// periodic sweep (every 10 s) and a margin.
const COUNT_PATIENCE_MS: i64 = 14_000;
/// How long a start may take before it counts as never ready.
const START_PATIENCE: Duration = Duration::from_secs(90);

#[derive(Parser, Debug)]
#[command(about = "Seeded chaos run of kalshi-riskd against the simulator")]
struct Args {
    /// Length of the fault schedule.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 20)]
    strategies: usize,
    /// `rest` or `fix` (default: from the seed, half the seeds each).
    #[arg(long)]
    control: Option<String>,
    /// Share of storms that end with a `kill -9` of the daemon.
    #[arg(long, default_value_t = 0.3)]
    crash_share: f64,
    /// Stop scheduling once this many `kill -9`s have been made (none: no limit).
    #[arg(long)]
    crashes: Option<usize>,
    /// The daemon binary (default: `kalshi-riskd` beside this example's target directory).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Keep the run's directory (config, state, logs) even when it passes.
    #[arg(long)]
    keep: bool,
}

// ---------------------------------------------------------------------------------------------
// The schedule: generated up front from the seed.

#[derive(Debug, Clone)]
enum Fault {
    Errors { after_apply: bool },
    Burst429(u64),
    Latency(u64),
    WsDrop,
    WsSilent,
    EndSubscription { channel: &'static str, code: u32 },
    Garbage,
    FixDrop,
}

#[derive(Debug, Clone)]
enum Act {
    /// Start a fault at `at` (ms into the storm) for `for_ms`.
    Fault {
        fault: Fault,
        for_ms: u64,
    },
    Breach(usize),
    Crash {
        twice: bool,
    },
    /// Rewrite a strategy's policy (broken or not), or add a new strategy (its groups are
    /// created by the reload), then SIGHUP.
    Reload {
        broken: bool,
        adds: bool,
        strategy: usize,
    },
    Kill {
        by_signal: bool,
    },
}

#[derive(Debug, Clone)]
struct Storm {
    calm_ms: u64,
    /// A breach during the calm spell, this far in.
    calm_breach: Option<(u64, usize)>,
    storm_ms: u64,
    acts: Vec<(u64, Act)>,
}

fn schedule(seed: u64, minutes: f64, strategies: usize, fix: bool, crash_share: f64) -> Vec<Storm> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let total = (minutes * 60_000.0) as u64;
    let mut out = Vec::new();
    let mut t = 0;
    while t < total {
        let calm_ms = rng.u64(7_000..11_000);
        let storm_ms = rng.u64(4_000..12_000);
        let calm_breach = rng
            .bool()
            .then(|| (rng.u64(2_500..calm_ms - 3_000), rng.usize(..strategies)));
        let mut acts = Vec::new();
        for _ in 0..rng.usize(1..=3) {
            let at = rng.u64(0..storm_ms / 2);
            let for_ms = rng.u64(1_000..(storm_ms - at).max(1_001));
            let fault = match rng.u8(0..if fix { 9 } else { 8 }) {
                0 => Fault::Errors {
                    after_apply: rng.bool(),
                },
                1 => Fault::Burst429(rng.u64(5..30)),
                2 => Fault::Latency(200),
                3 => Fault::Latency(3_000),
                4 => Fault::WsDrop,
                5 => Fault::WsSilent,
                6 => Fault::EndSubscription {
                    channel: if rng.bool() {
                        "fill"
                    } else {
                        "order_group_updates"
                    },
                    code: if rng.bool() { 10 } else { 25 },
                },
                7 => Fault::Garbage,
                _ => Fault::FixDrop,
            };
            acts.push((at, Act::Fault { fault, for_ms }));
        }
        for _ in 0..rng.usize(0..=2) {
            acts.push((
                rng.u64(0..storm_ms - 500),
                Act::Breach(rng.usize(..strategies)),
            ));
        }
        if rng.f64() < 0.25 {
            acts.push((
                rng.u64(0..storm_ms - 500),
                Act::Reload {
                    broken: rng.bool(),
                    adds: rng.bool(),
                    strategy: rng.usize(..strategies),
                },
            ));
        }
        if rng.f64() < 0.15 {
            acts.push((
                rng.u64(0..storm_ms - 500),
                Act::Kill {
                    by_signal: rng.bool(),
                },
            ));
        }
        if rng.f64() < crash_share {
            acts.push((rng.u64(0..storm_ms - 500), Act::Crash { twice: rng.bool() }));
        }
        acts.sort_by_key(|(at, _)| *at);
        out.push(Storm {
            calm_ms,
            calm_breach,
            storm_ms,
            acts,
        });
        t += calm_ms + storm_ms;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What the harness saw, with timestamps (epoch ms, the simulator's clock).

#[derive(Default)]
struct Seen {
    /// Intervals during which the harness impaired the daemon (a fault set, the daemon not
    /// ready); `i64::MAX` while open.
    impaired: Vec<(i64, i64)>,
    open: usize,
    /// Connections that would deliver a fill now, at each change.
    subscribers: Vec<(i64, u64)>,
    /// Each group's triggered flag, at each change.
    triggered: HashMap<String, Vec<(i64, bool)>>,
    /// Each strategy's groups, as the daemon reported them (all ever seen).
    groups: BTreeMap<String, BTreeSet<String>>,
    /// Big orders placed: (time, strategy).
    violations: Vec<String>,
    notes: Vec<String>,
    counts: BTreeMap<&'static str, u64>,
    /// Kill switch engaged at (time), still to be checked.
    kills: Vec<i64>,
    /// Lags measured, by oracle.
    lags: BTreeMap<&'static str, Vec<i64>>,
}

impl Seen {
    fn impair(&mut self, t: i64) {
        if self.open == 0 {
            self.impaired.push((t, i64::MAX));
        }
        self.open += 1;
    }
    fn unimpair(&mut self, t: i64) {
        self.open = self.open.saturating_sub(1);
        if self.open == 0
            && let Some(last) = self.impaired.last_mut()
        {
            last.1 = t;
        }
    }
    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_insert(0) += 1;
    }
    fn violation(&mut self, v: String) {
        eprintln!("VIOLATION {} {v}", stamp(now_ms()));
        self.violations.push(v);
    }
    fn lag(&mut self, what: &'static str, ms: i64) {
        self.lags.entry(what).or_default().push(ms);
    }

    /// Good (unimpaired) intervals from `t` on: no fault, daemon ready, a fill subscriber.
    fn good_from(&self, t: i64, end: i64) -> Vec<(i64, i64)> {
        let mut bad: Vec<(i64, i64)> = self.impaired.clone();
        let mut zero_since = None;
        for &(at, n) in &self.subscribers {
            match (n, zero_since) {
                (0, None) => zero_since = Some(at),
                (1.., Some(s)) => {
                    bad.push((s, at));
                    zero_since = None;
                }
                _ => {}
            }
        }
        if let Some(s) = zero_since {
            bad.push((s, i64::MAX));
        }
        bad.sort();
        let mut good = Vec::new();
        let mut cursor = t;
        for (a, b) in bad {
            if b <= cursor {
                continue;
            }
            if a > cursor {
                good.push((cursor, a.min(end)));
            }
            cursor = cursor.max(b);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            good.push((cursor, end));
        }
        good.retain(|(a, b)| b > a);
        good
    }

    fn triggered_at(&self, group: &str, t: i64) -> bool {
        self.triggered.get(group).is_some_and(|changes| {
            changes
                .iter()
                .take_while(|(at, _)| *at <= t)
                .last()
                .is_some_and(|(_, on)| *on)
        })
    }

    /// The first moment at or after `t` when every one of `groups` was triggered.
    fn all_triggered_from(&self, groups: &BTreeSet<String>, t: i64) -> Option<i64> {
        let mut times: Vec<i64> = vec![t];
        for g in groups {
            if let Some(c) = self.triggered.get(g) {
                times.extend(c.iter().map(|(at, _)| *at).filter(|at| *at > t));
            }
        }
        times.sort();
        times
            .into_iter()
            .find(|&at| groups.iter().all(|g| self.triggered_at(g, at)))
    }
}

fn stamp(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

type Shared = Arc<Mutex<Seen>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The daemon as a child process.

struct Daemon {
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    notify: Option<UnixDatagram>,
    starts: usize,
}

impl Daemon {
    fn config(&self) -> PathBuf {
        self.dir.join("kalshi-riskd.toml")
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let sock = self.dir.join("notify.sock");
        let _ = std::fs::remove_file(&sock);
        let notify = UnixDatagram::bind(&sock)?;
        notify.set_read_timeout(Some(Duration::from_millis(200)))?;
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("daemon.{}.log", self.starts)))?;
        let child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(self.config())
            .env("NOTIFY_SOCKET", &sock)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.notify = Some(notify);
        Ok(())
    }

    /// Waits for READY=1; false if the process died or `patience` ran out.
    fn wait_ready(&mut self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                return false;
            }
            let Some(n) = self.notify.as_ref() else {
                return false;
            };
            if let Ok(len) = n.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..len])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                return true;
            }
        }
        false
    }

    fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// A CLI command: exit code and stdout.
    fn cli(&self, args: &[&str]) -> (Option<i32>, String) {
        match Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(self.config())
            .args(["--timeout", "5s"])
            .output()
        {
            Ok(o) => (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            ),
            Err(e) => (None, e.to_string()),
        }
    }

    fn status(&self) -> Option<Value> {
        let (code, out) = self.cli(&["status", "--json"]);
        match code {
            Some(0) | Some(6) => serde_json::from_str(&out).ok(),
            _ => None,
        }
    }

    /// Stops it with SIGTERM; its exit code.
    fn stop(&mut self) -> Option<i32> {
        self.signal("-TERM");
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                self.child = None;
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.crash();
        None
    }
}

fn policy(i: usize, limit: u32) -> String {
    let indexes = if i.is_multiple_of(3) { "[0, 1]" } else { "[0]" };
    let blind = if i.is_multiple_of(5) {
        "trigger"
    } else {
        "alert"
    };
    format!(
        "subaccount = {}\nexchange_indexes = {indexes}\n\n[group]\ncontracts_limit = {limit}\n\n\
         [[limit]]\nname = \"fast\"\nwindow = \"20s\"\nmax_contracts = {FAST_MAX}\n\n\
         [[limit]]\nname = \"total\"\nwindow = \"2h\"\nmax_contracts = 100000000\n\n\
         [blind]\naction = \"{blind}\"\n",
        i % 4
    )
}

fn name(i: usize) -> String {
    format!("s{i:02}")
}

// ---------------------------------------------------------------------------------------------

struct World {
    sim: Arc<SimState>,
    base: String,
    http: reqwest::Client,
    signer: Signer,
    seen: Shared,
    /// Orders hold it shared; checks that need the exchange still take it exclusively.
    quiet: RwLock<()>,
    /// Current REST and stream faults, combined into the simulator's fault set.
    faults: Mutex<Vec<(u64, Fault)>>,
    fault_ids: std::sync::atomic::AtomicU64,
    /// Strategy files written: the first `--strategies`, then those reloads added.
    strategies: std::sync::atomic::AtomicUsize,
}

impl World {
    async fn order(&self, strategy: usize, count: u32, pick: usize) -> bool {
        let (group, sub) = {
            let s = lock(&self.seen);
            let Some(gs) = s.groups.get(&name(strategy)) else {
                return false;
            };
            let gs: Vec<&String> = gs.iter().collect();
            if gs.is_empty() {
                return false;
            }
            (gs[pick % gs.len()].clone(), strategy % 4)
        };
        let path = "/trade-api/v2/portfolio/events/orders";
        let body = json!({
            "ticker": TICKER, "side": "bid", "count": count.to_string(), "price": "0.4200",
            "time_in_force": "good_till_canceled", "self_trade_prevention_type": "taker_at_cross",
            "client_order_id": kalshi_riskd::sim::engine::new_id(), "subaccount": sub,
            "order_group_id": group,
        });
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        for (k, v) in self.signer.sign_now("POST", path).pairs() {
            req = req.header(k, v);
        }
        matches!(req.send().await, Ok(r) if r.status().is_success())
    }

    /// The simulator's fault set from the faults now on.
    fn apply_faults(&self) {
        let on = self
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut f = Faults::default();
        for (_, fault) in on {
            match fault {
                Fault::Errors { after_apply } => {
                    f.error_rate = 0.2;
                    f.error_after_apply |= after_apply;
                }
                Fault::Burst429(n) => f.burst_429 = f.burst_429.max(n),
                Fault::Latency(ms) => f.latency_ms = f.latency_ms.max(ms),
                Fault::WsSilent => f.ws_silent = true,
                _ => {}
            }
        }
        self.sim.set_faults(f);
    }

    async fn control(&self, path: &str, body: Value) {
        let _ = self
            .http
            .post(format!("{}/_sim{path}", self.base))
            .json(&body)
            .send()
            .await;
    }

    async fn start_fault(self: &Arc<Self>, fault: Fault, for_ms: u64) {
        lock(&self.seen).count(match fault {
            Fault::Errors { .. } => "fault: 5xx",
            Fault::Burst429(_) => "fault: 429 burst",
            Fault::Latency(200) => "fault: 200 ms latency",
            Fault::Latency(_) => "fault: 3 s latency",
            Fault::WsDrop => "fault: websocket drop",
            Fault::WsSilent => "fault: silent stream",
            Fault::EndSubscription { .. } => "fault: subscription ended (10/25)",
            Fault::Garbage => "fault: garbage frames",
            Fault::FixDrop => "fault: FIX drop",
        });
        lock(&self.seen).impair(now_ms());
        match &fault {
            Fault::WsDrop => self.sim.drop_websockets(),
            Fault::FixDrop => {
                self.sim.drop_fix_sessions();
            }
            Fault::Garbage => {
                self.control(
                    "/ws/inject",
                    json!({"text": "{\"type\":\"fill\",\"msg\":[1,2"}),
                )
                .await;
                self.control("/ws/inject", json!({"binary_base64": "AAECAwQ="}))
                    .await;
                self.control("/ws/inject", json!({"text": "not json at all"}))
                    .await;
            }
            Fault::EndSubscription { channel, code } => {
                self.control(
                    "/ws/end_subscription",
                    json!({"channel": channel, "code": code}),
                )
                .await;
            }
            _ => {}
        }
        let id = self
            .fault_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, fault.clone()));
        self.apply_faults();
        // Drops repeat every couple of seconds while the fault lasts.
        let me = self.clone();
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_millis(for_ms);
            if matches!(fault, Fault::WsDrop) {
                while Instant::now() + Duration::from_secs(2) < until {
                    sleep(Duration::from_secs(2)).await;
                    me.sim.drop_websockets();
                }
            }
            tokio::time::sleep_until(until).await;
            me.faults
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(i, _)| *i != id);
            me.apply_faults();
            lock(&me.seen).unimpair(now_ms());
        });
    }

    fn all_faults_off(&self) -> bool {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// Polls the simulator: each group's triggered flag and the fill subscribers, at each change.
async fn observe(w: Arc<World>) {
    let mut last: HashMap<String, bool> = HashMap::new();
    let mut last_subs = None;
    loop {
        let t = now_ms();
        let groups = w.sim.groups();
        let subs = w.sim.fill_subscribers();
        {
            let mut s = lock(&w.seen);
            for g in groups {
                if last.get(&g.id) != Some(&g.triggered) {
                    last.insert(g.id.clone(), g.triggered);
                    s.triggered.entry(g.id).or_default().push((t, g.triggered));
                }
            }
            if last_subs != Some(subs) {
                last_subs = Some(subs);
                s.subscribers.push((t, subs));
            }
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Small fills all the time: 1 or 2 contracts into a random group of each strategy, every 0.5
/// to 2.5 s (well under the fast limit).
async fn flow(w: Arc<World>, strategy: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    loop {
        sleep(Duration::from_millis(rng.u64(500..2_500))).await;
        let _held = w.quiet.read().await;
        if w.order(strategy, rng.u32(1..=2), rng.usize(..)).await {
            lock(&w.seen).count("small orders filled");
        }
    }
}

async fn breach(w: &Arc<World>, strategy: usize) {
    lock(&w.seen).count("breach orders placed");
    let w = w.clone();
    tokio::spawn(async move {
        let _held = w.quiet.read().await;
        if w.order(strategy, BREACH, fastrand::usize(..)).await {
            lock(&w.seen).count("breach orders filled");
        }
    });
}

/// Refreshes the strategy → groups map from the daemon's status.
fn learn_groups(seen: &Shared, status: &Value) {
    let mut s = lock(seen);
    for st in status["strategies"].as_array().into_iter().flatten() {
        let Some(n) = st["name"].as_str() else {
            continue;
        };
        let e = s.groups.entry(n.to_owned()).or_default();
        for g in st["groups"].as_array().into_iter().flatten() {
            if let Some(id) = g["id"].as_str() {
                e.insert(id.to_owned());
            }
        }
    }
}

/// Restarts the daemon after a crash (sometimes crashing it again during that start) and waits
/// for READY; the harness's policy files are made whole first (an operator fixes a bad file
/// before restarting).
async fn restart(w: &Arc<World>, d: &Arc<Mutex<Daemon>>, twice: bool, rng: &mut fastrand::Rng) {
    restore_policies(w, d);
    let d2 = d.clone();
    let extra = twice.then(|| rng.u64(0..600));
    let ready = tokio::task::spawn_blocking(move || {
        let mut d = d2.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ms) = extra {
            if d.spawn().is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(ms));
            d.crash();
        }
        d.spawn().is_ok() && d.wait_ready(START_PATIENCE)
    })
    .await
    .unwrap_or(false);
    if !ready {
        lock(&w.seen).violation(format!(
            "the daemon did not become ready within {START_PATIENCE:?} after a restart"
        ));
    }
}

fn restore_policies(w: &World, d: &Arc<Mutex<Daemon>>) {
    let dir = d.lock().unwrap_or_else(|e| e.into_inner()).dir.clone();
    for i in 0..w.strategies.load(std::sync::atomic::Ordering::Relaxed) {
        let p = dir.join("policies").join(format!("{}.toml", name(i)));
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if text.contains("window = \"nope\"") {
            let _ = std::fs::write(&p, policy(i, 1000));
        }
    }
}

/// The daemon's `status --json`, off the async threads; `None` while it does not answer.
async fn status_of(d: &Arc<Mutex<Daemon>>) -> Option<Value> {
    let d = d.clone();
    tokio::task::spawn_blocking(move || d.lock().unwrap_or_else(|e| e.into_inner()).status())
        .await
        .ok()
        .flatten()
}

/// Polls the daemon's status until `check` passes or `deadline` (epoch ms): the moment it
/// passed, or the last difference seen.
async fn until_agrees(
    w: &Arc<World>,
    d: &Arc<Mutex<Daemon>>,
    deadline: i64,
    check: impl Fn(&World, &Value) -> Result<(), String>,
) -> Result<i64, String> {
    let mut last_diff = "no status from the daemon".to_owned();
    while now_ms() < deadline {
        if let Some(status) = status_of(d).await {
            learn_groups(&w.seen, &status);
            match check(w, &status) {
                Ok(()) => return Ok(now_ms()),
                Err(diff) => last_diff = diff,
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
    Err(last_diff)
}

/// The checks after a storm: state truth, one group per slot, the long window against the
/// ledger, trips only cleared by audited resets, state.json parses.
async fn settle_checks(w: &Arc<World>, d: &Arc<Mutex<Daemon>>, calm_from: i64) {
    // State truth: poll until the daemon's view equals the simulator's.
    match until_agrees(w, d, calm_from + 6_000, |w, s| compare(s, &w.sim.groups())).await {
        Ok(at) => {
            let lag = at - calm_from;
            lock(&w.seen).lag("state truth after a storm", lag);
            if lag > BOUND_MS {
                lock(&w.seen).violation(format!(
                    "state truth took {lag} ms after the storm ended at {} (bound {BOUND_MS} ms)",
                    stamp(calm_from)
                ));
            }
        }
        Err(diff) => lock(&w.seen).violation(format!(
            "state truth: the daemon's view still differs from the exchange's 6 s after the storm ended at {}: {diff}",
            stamp(calm_from)
        )),
    }

    // Counts: hold the flows, let the last fills land, then compare the long window. A fill the
    // stream dropped without a trace waits for the daemon's periodic sweep.
    let started = now_ms();
    let _hold = w.quiet.write().await;
    let counts = until_agrees(w, d, now_ms() + COUNT_PATIENCE_MS, |w, s| {
        compare_counts(s, &w.sim.ledger(), &lock(&w.seen).groups)
    })
    .await;
    match counts {
        Ok(at) => lock(&w.seen).lag("counts agree (flows held)", at - started),
        Err(diff) => lock(&w.seen).violation(format!(
            "fills counted: the daemon's long windows differ from the exchange's ledger {} s after the flows were held: {diff}",
            COUNT_PATIENCE_MS / 1000
        )),
    }
    lock(&w.seen).count("settle checks");
    let dir = d.lock().unwrap_or_else(|e| e.into_inner()).dir.clone();
    match std::fs::read(dir.join("state/state.json")) {
        Ok(b) if serde_json::from_slice::<Value>(&b).is_ok() => {}
        Ok(_) => lock(&w.seen).violation("state.json does not parse".into()),
        Err(e) => lock(&w.seen).violation(format!("state.json: {e}")),
    }
}

/// The daemon's view of the groups against the simulator's: `Err` names the first difference.
fn compare(status: &Value, sim: &[kalshi_riskd::sim::engine::GroupView]) -> Result<(), String> {
    let by_id: HashMap<&str, &kalshi_riskd::sim::engine::GroupView> =
        sim.iter().map(|g| (g.id.as_str(), g)).collect();
    let killed = !status["kill"].is_null();
    let mut claimed = BTreeSet::new();
    for st in status["strategies"].as_array().into_iter().flatten() {
        let name = st["name"].as_str().unwrap_or("?");
        let state = st["state"].as_str().unwrap_or("?");
        let limit = st["group_contracts_limit"].as_f64().or_else(|| {
            st["group_contracts_limit"]
                .as_str()
                .and_then(|s| s.parse().ok())
        });
        for g in st["groups"].as_array().into_iter().flatten() {
            let id = g["id"].as_str().unwrap_or("?");
            if !claimed.insert(id.to_owned()) {
                return Err(format!("group {id} is claimed twice"));
            }
            let Some(sg) = by_id.get(id) else {
                return Err(format!("{name}: group {id} is not on the exchange"));
            };
            let sim_limit: f64 = sg.contracts_limit_fp.parse().unwrap_or(-1.0);
            let daemon_limit = g["contracts_limit"]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .or(limit);
            if daemon_limit != Some(sim_limit) {
                return Err(format!(
                    "{name}: group {id} limit {daemon_limit:?} in the daemon, {sim_limit} on the exchange"
                ));
            }
            if state == "unknown" {
                continue;
            }
            let expect = state == "tripped" || killed;
            if sg.triggered != expect {
                return Err(format!(
                    "{name} ({state}{}): group {id} triggered={} on the exchange",
                    if killed { ", killed" } else { "" },
                    sg.triggered
                ));
            }
        }
    }
    let on_exchange: BTreeSet<String> = sim.iter().map(|g| g.id.clone()).collect();
    let stray: Vec<&String> = on_exchange.difference(&claimed).collect();
    if !stray.is_empty() {
        return Err(format!(
            "{} group(s) on the exchange no strategy claims (a duplicate?): {stray:?}",
            stray.len()
        ));
    }
    Ok(())
}

fn compare_counts(
    status: &Value,
    ledger: &[kalshi_riskd::sim::engine::LedgerFill],
    groups: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(), String> {
    let now = now_ms();
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (s, gs) in groups {
        for g in gs {
            owner.insert(g, s);
        }
    }
    let mut truth: BTreeMap<&str, f64> = BTreeMap::new();
    for f in ledger {
        if now - f.ts_ms >= 2 * 3_600_000 {
            continue;
        }
        if let Some(s) = f.group.as_deref().and_then(|g| owner.get(g)) {
            *truth.entry(s).or_insert(0.0) += f.count.to_string().parse::<f64>().unwrap_or(0.0);
        }
    }
    let mut diffs = Vec::new();
    for st in status["strategies"].as_array().into_iter().flatten() {
        let name = st["name"].as_str().unwrap_or("?");
        let counted = st["limits"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == "total")
            .and_then(|l| l["contracts"].as_str())
            .and_then(|c| c.parse::<f64>().ok())
            .unwrap_or(-1.0);
        let made = truth.get(name).copied().unwrap_or(0.0);
        if (counted - made).abs() > 1e-6 {
            diffs.push(format!("{name}: daemon {counted}, exchange {made}"));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

/// Operator resets of every tripped or unknown strategy (refusals are expected while killed).
async fn operator_resets(w: &Arc<World>, d: &Arc<Mutex<Daemon>>) {
    let d2 = d.clone();
    let n = tokio::task::spawn_blocking(move || {
        let d = d2.lock().unwrap_or_else(|e| e.into_inner());
        let Some(status) = d.status() else {
            return 0;
        };
        let mut n = 0;
        for st in status["strategies"].as_array().into_iter().flatten() {
            if st["state"] != "active"
                && let Some(name) = st["name"].as_str()
                && d.cli(&["reset", name]).0 == Some(0)
            {
                n += 1;
            }
        }
        n
    })
    .await
    .unwrap_or(0);
    for _ in 0..n {
        lock(&w.seen).count("operator resets");
    }
}

/// Trips cleared only by audited resets: every `trip` of a strategy is followed, before the
/// next time the strategy is seen active, by a `reset` or `settled` line. Checked on the whole
/// audit at the end against the status snapshots taken during the run.
fn audit_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("state/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Every strategy's state, sampled through the run, for the trip-clearing oracle.
async fn sample_states(d: Arc<Mutex<Daemon>>, w: Arc<World>) {
    let mut last: HashMap<String, (String, i64)> = HashMap::new();
    loop {
        sleep(Duration::from_millis(500)).await;
        let d2 = d.clone();
        let got = tokio::task::spawn_blocking(move || {
            let d = d2.lock().unwrap_or_else(|e| e.into_inner());
            d.child.as_ref()?;
            let s = d.status()?;
            Some((s, audit_lines(&d.dir)))
        })
        .await
        .ok()
        .flatten();
        let Some((status, audit)) = got else {
            continue;
        };
        learn_groups(&w.seen, &status);
        for st in status["strategies"].as_array().into_iter().flatten() {
            let (Some(name), Some(state)) = (st["name"].as_str(), st["state"].as_str()) else {
                continue;
            };
            let at = st["trip"]["at_ms"].as_i64().unwrap_or(0);
            if let Some((before, trip_at)) = last.get(name)
                && before == "tripped"
                && state == "active"
            {
                let reset = audit.iter().any(|v| {
                    v["strategy"] == name
                        && (v["event"] == "reset" || v["event"] == "settled")
                        && v["ts_ms"].as_i64().unwrap_or(0) >= *trip_at
                });
                if !reset {
                    lock(&w.seen).violation(format!(
                        "{name}: tripped at {} and then active with no audited reset",
                        stamp(*trip_at)
                    ));
                }
            }
            let trip_at = if state == "tripped" {
                at
            } else {
                last.get(name).map_or(0, |l| l.1)
            };
            last.insert(name.to_owned(), (state.to_owned(), trip_at));
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn percentile(v: &mut [i64], p: f64) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Judges every certain breach in the ledger: its strategy's groups all triggered within
/// [`BOUND_MS`] of the first unimpaired moment after the fill.
fn judge_breaches(seen: &mut Seen, ledger: &[kalshi_riskd::sim::engine::LedgerFill], end: i64) {
    let mut owner: HashMap<String, String> = HashMap::new();
    for (s, gs) in &seen.groups {
        for g in gs {
            owner.insert(g.clone(), s.clone());
        }
    }
    let mut by_strategy: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for f in ledger {
        if let Some(s) = f.group.as_ref().and_then(|g| owner.get(g)) {
            by_strategy
                .entry(s.clone())
                .or_default()
                .push((f.ts_ms, f.count.to_string().parse::<f64>().unwrap_or(0.0)));
        }
    }
    let (mut judged, mut unjudged, mut misses) = (0u64, 0u64, Vec::new());
    let mut lat = Vec::new();
    for (s, fills) in &by_strategy {
        let groups = seen.groups.get(s).cloned().unwrap_or_default();
        for (i, &(t, _)) in fills.iter().enumerate() {
            let sum: f64 = fills[..=i]
                .iter()
                .filter(|(at, _)| *at > t - (FAST_WINDOW_MS - EDGE_MS))
                .map(|(_, c)| c)
                .sum();
            if sum <= FAST_MAX {
                continue;
            }
            let trig = seen.all_triggered_from(&groups, t);
            let good = seen.good_from(t, end);
            let Some(&(first_good, _)) = good.first() else {
                unjudged += 1;
                continue;
            };
            let long = good.iter().find(|(a, b)| b - a >= BOUND_MS);
            match (trig, long) {
                (Some(at), _) if at <= first_good => {
                    judged += 1;
                    lat.push(0);
                }
                (Some(at), Some(&(a, _))) if at <= a + BOUND_MS => {
                    judged += 1;
                    lat.push(at - first_good);
                }
                (_, None) => unjudged += 1,
                (at, Some(&(a, _))) => {
                    judged += 1;
                    misses.push(format!(
                        "{s}: breach at {} ({sum} contracts in the window), unimpaired from {}, every group triggered {}",
                        stamp(t),
                        stamp(a),
                        at.map_or("never".to_owned(), |x| format!("at {} ({} ms late)", stamp(x), x - a - BOUND_MS))
                    ));
                }
            }
        }
    }
    seen.counts.insert("certain breaches judged", judged);
    seen.counts
        .insert("certain breaches unjudged (run ended)", unjudged);
    seen.lags.insert(
        "breach to every group triggered (from first unimpaired moment)",
        lat,
    );
    for m in misses {
        seen.violation(format!("breach missed: {m}"));
    }
}

fn judge_kills(seen: &mut Seen, end: i64) {
    let all: BTreeSet<String> = seen.groups.values().flatten().cloned().collect();
    let kills = seen.kills.clone();
    for t in kills {
        // The groups that existed when the kill was engaged (a reload may add some later).
        let existing: BTreeSet<String> = all
            .iter()
            .filter(|g| {
                seen.triggered
                    .get(*g)
                    .and_then(|c| c.first())
                    .is_some_and(|(first, _)| *first <= t)
            })
            .cloned()
            .collect();
        let trig = seen.all_triggered_from(&existing, t);
        let good = seen.good_from(t, end);
        let first = good.first().map_or(t, |g| g.0);
        match (trig, good.iter().find(|(a, b)| b - a >= BOUND_MS)) {
            (Some(at), _) if at <= first => seen.lag("kill to every group triggered", 0),
            (Some(at), Some(&(a, _))) if at <= a + BOUND_MS => {
                seen.lag("kill to every group triggered", at - first)
            }
            (_, None) => seen.count("kills unjudged (run ended)"),
            (at, Some(&(a, _))) => {
                let deadline = a + BOUND_MS;
                let late: Vec<String> = existing
                    .iter()
                    .filter(|g| !seen.triggered_at(g, deadline))
                    .map(|g| {
                        let owner = seen
                            .groups
                            .iter()
                            .find(|(_, gs)| gs.contains(g))
                            .map_or("?", |(s, _)| s.as_str());
                        format!("{g} ({owner})")
                    })
                    .collect();
                seen.violation(format!(
                    "kill at {}: every group triggered {} (unimpaired from {}); not triggered by then: {}",
                    stamp(t),
                    at.map_or("never".into(), stamp),
                    stamp(a),
                    late.join(", ")
                ))
            }
        }
    }
}

fn default_bin() -> PathBuf {
    // target/<profile>/examples/chaos → target/<profile>/kalshi-riskd
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("kalshi-riskd")))
        .unwrap_or_else(|| PathBuf::from("kalshi-riskd"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let bin = args.bin.clone().unwrap_or_else(default_bin);
    if !bin.is_file() {
        eprintln!(
            "chaos: no daemon binary at {} (build it first: cargo build --release, or pass --bin)",
            bin.display()
        );
        return std::process::ExitCode::from(2);
    }
    let fix = match args.control.as_deref() {
        Some("fix") => true,
        Some("rest") => false,
        None => args.seed % 2 == 1,
        Some(other) => {
            eprintln!("chaos: --control {other}: expected rest or fix");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args, bin, fix).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args, bin: PathBuf, fix: bool) -> anyhow::Result<bool> {
    let plan = schedule(
        args.seed,
        args.minutes,
        args.strategies,
        fix,
        args.crash_share,
    );
    let key = generate_key()?;
    let mut keys = KeyRegistry::default();
    keys.register(
        KEY_ID,
        &public_key_der_from_pem(key.public_pem.as_bytes(), "chaos key")?,
    )
    .map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(
        SimConfig {
            tier: Tier::Unlimited,
            keys,
            ..SimConfig::default()
        },
        listener,
    )
    .await?;
    let fix_addr = if fix {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Some(sim.start_fix(l, None)?)
    } else {
        None
    };

    let tmp = tempfile::Builder::new().prefix("chaos-").tempdir()?;
    let dir = tmp.path().to_owned();
    std::fs::create_dir(dir.join("policies"))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(dir.join("key.pem"), &key.private_pem)?;
        std::fs::set_permissions(dir.join("key.pem"), std::fs::Permissions::from_mode(0o600))?;
    }
    let control = fix_addr.map_or(String::new(), |a| {
        format!("control = \"fix\"\nfix_addr = \"tcp://{a}\"\n")
    });
    std::fs::write(
        dir.join("kalshi-riskd.toml"),
        format!(
            "[exchange]\nenvironment = \"sim\"\nrest_url = \"{}\"\nws_url = \"{}\"\napi_key_id = \"{KEY_ID}\"\n\
             private_key_path = \"key.pem\"\nwrite_budget_per_s = 100\n{control}\n\
             [policies]\ndir = \"policies\"\n\n[state]\ndir = \"state\"\n\n\
             [http]\nlisten = \"127.0.0.1:0\"\nadmin_socket = \"admin.sock\"\n\n\
             [stream]\nblind_after = \"2s\"\n\n[log]\nformat = \"json\"\n",
            sim.rest_url(),
            sim.ws_url()
        ),
    )?;
    for i in 0..args.strategies {
        std::fs::write(
            dir.join("policies").join(format!("{}.toml", name(i))),
            policy(i, 1000),
        )?;
    }
    println!(
        "chaos: seed {} · {} min · {} strategies · control {} · daemon {} · dir {}",
        args.seed,
        args.minutes,
        args.strategies,
        if fix { "fix" } else { "rest" },
        bin.display(),
        dir.display()
    );

    let seen: Shared = Arc::new(Mutex::new(Seen::default()));
    let w = Arc::new(World {
        sim: sim.state().clone(),
        base: sim.rest_url().trim_end_matches("/trade-api/v2").to_owned(),
        http: reqwest::Client::new(),
        signer: Signer::from_pem(KEY_ID, key.private_pem.as_bytes(), "chaos key")?,
        seen: seen.clone(),
        quiet: RwLock::new(()),
        faults: Mutex::new(Vec::new()),
        fault_ids: Default::default(),
        strategies: args.strategies.into(),
    });
    let d = Arc::new(Mutex::new(Daemon {
        bin,
        dir: dir.clone(),
        child: None,
        notify: None,
        starts: 0,
    }));
    {
        let d2 = d.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let mut d = d2.lock().unwrap_or_else(|e| e.into_inner());
            d.spawn().is_ok() && d.wait_ready(START_PATIENCE)
        })
        .await?;
        anyhow::ensure!(ok, "the daemon did not start; see {}", dir.display());
    }
    let status = d
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .status()
        .ok_or_else(|| anyhow::anyhow!("no status from the daemon"))?;
    learn_groups(&seen, &status);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(observe(w.clone()));
    tasks.spawn(sample_states(d.clone(), w.clone()));
    for i in 0..args.strategies {
        tasks.spawn(flow(w.clone(), i, args.seed ^ (i as u64 + 1)));
    }

    let mut rng = fastrand::Rng::with_seed(args.seed.wrapping_mul(31));
    let mut killed = false;
    let mut crashes = 0usize;
    let began = Instant::now();
    for (n, storm) in plan.iter().enumerate() {
        // Calm: settle, resets, a breach perhaps.
        let calm_from = now_ms();
        let calm_start = Instant::now();
        let calm_end = calm_start + Duration::from_millis(storm.calm_ms);
        if n > 0 {
            settle_checks(&w, &d, calm_from).await;
        }
        if killed {
            // The latch held through everything since; release it.
            let d2 = d.clone();
            let (latched, released) = tokio::task::spawn_blocking(move || {
                let d = d2.lock().unwrap_or_else(|e| e.into_inner());
                let latched = d.status().is_some_and(|s| !s["kill"].is_null());
                let released = d.cli(&["release"]).0 == Some(0);
                // Groups stay triggered after a release until each strategy is reset.
                let _ = d.cli(&["reset", "--all"]);
                (latched, released)
            })
            .await?;
            if !latched {
                lock(&seen).violation("the kill latch was lost".into());
            }
            if released {
                killed = false;
                lock(&seen).count("kills released");
            }
        }
        operator_resets(&w, &d).await;
        if let Some((at, s)) = storm.calm_breach {
            tokio::time::sleep_until(calm_start + Duration::from_millis(at)).await;
            breach(&w, s).await;
        }
        tokio::time::sleep_until(calm_end).await;

        // Storm.
        let storm_start = Instant::now();
        let acts: Vec<String> = storm
            .acts
            .iter()
            .map(|(at, act)| format!("+{at}ms {act:?}"))
            .collect();
        println!(
            "  storm {:>3} at {}: {}",
            n + 1,
            stamp(now_ms()),
            acts.join(", ")
        );
        lock(&seen).impair(now_ms());
        for (at, act) in &storm.acts {
            tokio::time::sleep_until(storm_start + Duration::from_millis(*at)).await;
            match act {
                Act::Fault { fault, for_ms } => w.start_fault(fault.clone(), *for_ms).await,
                Act::Breach(s) => breach(&w, *s).await,
                Act::Reload {
                    broken,
                    adds,
                    strategy,
                } => {
                    let strategy = if *adds && !*broken {
                        lock(&seen).count("reloads adding a strategy (group creates)");
                        w.strategies
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    } else {
                        *strategy
                    };
                    let p = dir
                        .join("policies")
                        .join(format!("{}.toml", name(strategy)));
                    let text = if *broken {
                        lock(&seen).count("reloads (broken)");
                        format!(
                            "{}[[limit]]\nname = \"bad\"\nwindow = \"nope\"\n",
                            policy(strategy, 1000)
                        )
                    } else {
                        lock(&seen).count("reloads (valid)");
                        policy(strategy, if rng.bool() { 1000 } else { 1001 })
                    };
                    let _ = std::fs::write(&p, text);
                    d.lock().unwrap_or_else(|e| e.into_inner()).signal("-HUP");
                }
                Act::Kill { by_signal } => {
                    lock(&seen).count("kills engaged");
                    let t = now_ms();
                    {
                        let d = d.lock().unwrap_or_else(|e| e.into_inner());
                        if *by_signal {
                            d.signal("-USR1");
                        } else {
                            let _ = d.cli(&["kill"]);
                        }
                    }
                    lock(&seen).kills.push(t);
                    killed = true;
                }
                Act::Crash { twice } => {
                    if args.crashes.is_some_and(|max| crashes >= max) {
                        continue;
                    }
                    crashes += 1 + usize::from(*twice);
                    lock(&seen).count("kill -9 at a random moment of a storm");
                    if *twice {
                        lock(&seen).count("kill -9 again during the restart");
                    }
                    d.lock().unwrap_or_else(|e| e.into_inner()).crash();
                    restart(&w, &d, *twice, &mut rng).await;
                    if killed {
                        let latched = status_of(&d).await.is_some_and(|s| !s["kill"].is_null());
                        if !latched {
                            lock(&seen)
                                .violation("the kill latch did not survive a kill -9".into());
                        }
                    }
                }
            }
        }
        tokio::time::sleep_until(storm_start + Duration::from_millis(storm.storm_ms)).await;
        // The storm's own faults end on their own clocks; wait for the last.
        while !w.all_faults_off() {
            sleep(Duration::from_millis(50)).await;
        }
        restore_policies(&w, &d);
        d.lock().unwrap_or_else(|e| e.into_inner()).signal("-HUP");
        lock(&seen).unimpair(now_ms());
        println!(
            "  storm {:>3}/{} done at {:>5.0} s ({} violations so far)",
            n + 1,
            plan.len(),
            began.elapsed().as_secs_f64(),
            lock(&seen).violations.len()
        );
    }
    // Last settle, then judge.
    let calm_from = now_ms();
    sleep(Duration::from_millis(500)).await;
    settle_checks(&w, &d, calm_from).await;
    sleep(Duration::from_millis(3_000)).await;
    tasks.abort_all();
    let end = now_ms();
    let code = d.lock().unwrap_or_else(|e| e.into_inner()).stop();
    let ledger = w.sim.ledger();
    let mut report = String::new();
    {
        let mut s = lock(&seen);
        judge_breaches(&mut s, &ledger, end);
        judge_kills(&mut s, end);
        if code != Some(0) {
            s.violation(format!("the daemon's stop exited {code:?}, not 0"));
        }
        for i in 1..=d.lock().unwrap_or_else(|e| e.into_inner()).starts {
            let log =
                std::fs::read_to_string(dir.join(format!("daemon.{i}.log"))).unwrap_or_default();
            if log.contains("panicked") {
                s.violation(format!("daemon.{i}.log holds a panic"));
            }
        }
        let on_exchange = w.sim.groups().len();
        let slots: usize = (0..w.strategies.load(std::sync::atomic::Ordering::Relaxed))
            .map(|i| if i.is_multiple_of(3) { 2 } else { 1 })
            .sum();
        if on_exchange != slots {
            s.violation(format!(
                "{on_exchange} groups on the exchange for {slots} (strategy, subaccount, exchange index) slots"
            ));
        }
        s.counts
            .insert("fills on the exchange", ledger.len() as u64);
        s.counts.insert(
            "daemon starts",
            d.lock().unwrap_or_else(|e| e.into_inner()).starts as u64,
        );
        use std::fmt::Write as _;
        let _ = writeln!(
            report,
            "\nchaos report: seed {} · {:.1} min of schedule ({} storms) · control {} · {:.0} s in all",
            args.seed,
            args.minutes,
            plan.len(),
            if fix { "fix" } else { "rest" },
            began.elapsed().as_secs_f64()
        );
        for (k, v) in &s.counts {
            let _ = writeln!(report, "  {k:<52} {v}");
        }
        let lags = std::mem::take(&mut s.lags);
        for (k, mut v) in lags {
            let n = v.len();
            let (p50, p99, max) = (
                percentile(&mut v, 0.5),
                percentile(&mut v, 0.99),
                percentile(&mut v, 1.0),
            );
            let _ = writeln!(
                report,
                "  {k:<52} n={n} p50={p50} ms p99={p99} ms max={max} ms"
            );
        }
        for n in &s.notes {
            let _ = writeln!(report, "  note: {n}");
        }
        let _ = writeln!(report, "  violations: {}", s.violations.len());
        for v in &s.violations {
            let _ = writeln!(report, "    - {v}");
        }
    }
    print!("{report}");
    let ok = lock(&seen).violations.is_empty();
    sim.shutdown().await;
    if ok && !args.keep {
        drop(tmp);
    } else {
        let kept = tmp.keep();
        println!("  run directory kept: {}", kept.display());
    }
    Ok(ok)
}
