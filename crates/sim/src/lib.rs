//! A faithful single-process Kalshi exchange, for tests, the demo and benchmarks.
//!
//! It serves the exchange's REST order-group and order-entry paths under `/trade-api/v2`, the
//! user WebSocket at `/trade-api/ws/v2`, and a control surface for tests under `/_sim/` (never
//! part of the exchange's paths). Every REST request and WebSocket upgrade must carry a valid
//! RSA-PSS signature from a registered key; requests are rate-limited per account tier; faults
//! (errors, 429 bursts, latency, dropped and silent streams) can be switched on by flag or at
//! run time. It follows the exchange's documented behaviour, including where the exchange is
//! awkward; the choices
//! made where the exchange is silent are documented in [`engine`], [`auth`] and [`ratelimit`].
//!
//! A FIX acceptor ([`fix`]) can be added on its own port ([`Simulator::start_fix`]), plain or
//! TLS, answering order-group requests on the same engine.
//!
//! The simulator models one account (user) with any number of API keys.

pub mod auth;
mod control;
pub mod engine;
pub mod faults;
pub mod fix;
pub mod ratelimit;
mod rest;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub use auth::KeyRegistry;
pub use engine::{EngineConfig, GroupView, TriggerBoundary};
pub use faults::Faults;
pub use ratelimit::Tier;

use engine::{Engine, Event};

/// How often the exchange pings each WebSocket.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);
/// Stream events buffered per WebSocket before a slow reader loses data (error 25).
const EVENT_BUFFER: usize = 65_536;

/// Everything the simulator is started with.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub tier: Tier,
    /// `(api key id, public key DER)` pairs allowed to sign requests.
    pub keys: KeyRegistry,
    pub ping_interval: Duration,
    pub engine: EngineConfig,
    pub faults: Faults,
    /// Drop every WebSocket connection this often.
    pub ws_drop_every: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            tier: Tier::Basic,
            keys: KeyRegistry::default(),
            ping_interval: DEFAULT_PING_INTERVAL,
            engine: EngineConfig::default(),
            faults: Faults::default(),
            ws_drop_every: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Which WebSocket channel an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Fill,
    UserOrders,
    OrderGroupUpdates,
}

impl Channel {
    fn parse(name: &str) -> Option<Channel> {
        match name {
            "fill" => Some(Channel::Fill),
            "user_orders" => Some(Channel::UserOrders),
            "order_group_updates" => Some(Channel::OrderGroupUpdates),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Channel::Fill => "fill",
            Channel::UserOrders => "user_orders",
            Channel::OrderGroupUpdates => "order_group_updates",
        }
    }

    /// The message `type` the exchange puts on this channel's data.
    fn message_type(self) -> &'static str {
        match self {
            Channel::Fill => "fill",
            Channel::UserOrders => "user_order",
            Channel::OrderGroupUpdates => "order_group_updates",
        }
    }
}

/// Every WebSocket's subscription to `channel` ends with error `code` (10 or 25, the
/// exchange's terminal channel errors), as the exchange ends one.
#[derive(Debug, Clone, Copy)]
struct SubscriptionEnd {
    channel: Channel,
    code: u32,
    /// End it without a word (no error message): only `list_subscriptions` shows it.
    silent: bool,
}

/// One stream event, serialised once and fanned out to every subscribed WebSocket.
#[derive(Debug)]
struct Published {
    channel: Channel,
    ticker: Option<String>,
    msg_json: String,
}

impl Published {
    fn from_event(e: &Event) -> Published {
        let (channel, ticker, json) = match e {
            Event::Fill(m) => (
                Channel::Fill,
                Some(m.market_ticker.clone()),
                serde_json::to_string(m),
            ),
            Event::UserOrder(m) => (
                Channel::UserOrders,
                Some(m.ticker.clone()),
                serde_json::to_string(m),
            ),
            Event::GroupUpdate(m) => (Channel::OrderGroupUpdates, None, serde_json::to_string(m)),
        };
        Published {
            channel,
            ticker,
            msg_json: json.unwrap_or_else(|_| "{}".to_owned()),
        }
    }
}

/// Counters for tests and benchmarks (`GET /_sim/stats`).
#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    rejected_auth: AtomicU64,
    rejected_429: AtomicU64,
    injected_errors: AtomicU64,
    ws_sessions: AtomicU64,
    /// Sessions subscribed to `fill` and not silenced.
    ws_fill_subscribed: AtomicU64,
    ws_messages: AtomicU64,
    ws_pongs: AtomicU64,
    status_requests: AtomicU64,
    fix_logons: AtomicU64,
    fix_logons_refused: AtomicU64,
    fix_requests: AtomicU64,
}

/// The running exchange's state, shared by the REST, WebSocket and control handlers.
pub struct SimState {
    engine: Mutex<Engine>,
    events: broadcast::Sender<Arc<Published>>,
    keys: KeyRegistry,
    tier: Tier,
    limiter: Mutex<ratelimit::RateLimiter>,
    faults: Mutex<Faults>,
    silent: watch::Sender<bool>,
    drop_ws: Mutex<CancellationToken>,
    drop_fix: Mutex<CancellationToken>,
    fix_sessions: fix::Sessions,
    inject: broadcast::Sender<Message>,
    /// Subscriptions ended on demand (`/_sim/ws/end_subscription`).
    ends: broadcast::Sender<SubscriptionEnd>,
    clock_offset_ms: AtomicI64,
    ping_interval: Duration,
    shutdown: CancellationToken,
    stats: Stats,
    /// Whether `stamps` are kept (off unless a harness asks: it costs a map update a fill).
    stamping: AtomicBool,
    stamps: Mutex<HashMap<String, GroupStamps>>,
}

/// When a group's last fill and its last trip were published, on the simulator's monotonic
/// clock, taken as each event is handed to the WebSocket sessions: a client's reaction to a
/// fill timed by the exchange itself, with no third party's socket and scheduling in between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStamps {
    pub last_fill: Option<tokio::time::Instant>,
    pub triggered: Option<tokio::time::Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these structures half-updated in a way that
    // matters more than stopping the simulator would; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    fn new(cfg: &SimConfig, shutdown: CancellationToken) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (inject, _) = broadcast::channel(64);
        let (ends, _) = broadcast::channel(64);
        let (silent, _) = watch::channel(cfg.faults.ws_silent);
        SimState {
            engine: Mutex::new(Engine::new(cfg.engine.clone())),
            events,
            keys: cfg.keys.clone(),
            tier: cfg.tier,
            limiter: Mutex::new(ratelimit::RateLimiter::new(
                cfg.tier,
                tokio::time::Instant::now(),
            )),
            faults: Mutex::new(cfg.faults.clone()),
            silent,
            drop_ws: Mutex::new(shutdown.child_token()),
            drop_fix: Mutex::new(shutdown.child_token()),
            fix_sessions: Default::default(),
            inject,
            ends,
            clock_offset_ms: AtomicI64::new(0),
            ping_interval: cfg.ping_interval,
            shutdown,
            stats: Stats::default(),
            stamping: AtomicBool::new(false),
            stamps: Mutex::default(),
        }
    }

    /// Starts keeping each group's [`GroupStamps`] (for benchmarks).
    pub fn keep_stamps(&self) {
        self.stamping.store(true, Ordering::Relaxed);
    }

    /// `group`'s stamps so far (none unless [`SimState::keep_stamps`] was called first).
    pub fn stamps(&self, group: &str) -> GroupStamps {
        lock(&self.stamps).get(group).copied().unwrap_or_default()
    }

    /// The simulator's clock in epoch milliseconds: wall time plus whatever tests advanced.
    /// Rolling windows and `ts_ms` fields use it; signature timestamps use the wall clock.
    pub fn now_ms(&self) -> i64 {
        riskd_kalshi::auth::now_ms() + self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// Moves the simulator's clock forward (windows expire as if time had passed).
    pub fn advance_clock(&self, by: Duration) -> i64 {
        self.clock_offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed)
            + by.as_millis() as i64
    }

    /// Runs one engine operation and publishes the events it caused, in order. Publishing
    /// happens under the engine lock so that concurrent requests cannot interleave streams.
    fn with_engine<T>(&self, f: impl FnOnce(&mut Engine, i64, &mut Vec<Event>) -> T) -> T {
        let mut engine = lock(&self.engine);
        let now = self.now_ms();
        let mut events = Vec::new();
        let out = f(&mut engine, now, &mut events);
        let stamping = self.stamping.load(Ordering::Relaxed);
        for e in &events {
            // Stamped first: whoever sees the event can read its stamp.
            if stamping {
                self.stamp(&engine, e);
            }
            // No receivers is fine: nobody is connected.
            let _ = self.events.send(Arc::new(Published::from_event(e)));
        }
        out
    }

    fn stamp(&self, engine: &Engine, e: &Event) {
        let at = tokio::time::Instant::now();
        let (group, fill) = match e {
            Event::Fill(f) => match engine.order_group(&f.order_id) {
                Some(g) => (g.to_owned(), true),
                None => return,
            },
            Event::GroupUpdate(u) if u.event_type == "triggered" => {
                (u.order_group_id.clone(), false)
            }
            _ => return,
        };
        let mut stamps = lock(&self.stamps);
        let s = stamps.entry(group).or_default();
        if fill {
            s.last_fill = Some(at);
        } else {
            s.triggered = Some(at);
        }
    }

    /// The tokens the account's Write bucket holds now (each request costs 10); `None` at the
    /// unlimited tier. Benchmarks read it to know what the budget allows from here.
    pub fn write_tokens(&self) -> Option<f64> {
        lock(&self.limiter).level(ratelimit::Bucket::Write, tokio::time::Instant::now())
    }

    /// Fills `count` contracts of the resting order `order_id` now, as the built-in
    /// counterparty does on `POST /_sim/orders/{id}/fill`, and publishes what it caused
    /// (benchmarks drive background load with it in-process).
    pub fn fill_resting(
        &self,
        order_id: &str,
        count: riskd_units::Contracts,
    ) -> Result<(), engine::EngineError> {
        self.with_engine(|e, now, ev| e.fill_resting(order_id, count, now, ev))
    }

    /// Publishes a fill of `count` contracts of the resting order `order_id` on the fill
    /// stream only, as if made: the order, its group and the fills list stay as they were. For
    /// harnesses that measure how fast a client takes in the stream, without the engine's cost
    /// of each fill (no `user_order` update follows, and no sweep of the fills list finds it).
    pub fn publish_stream_fill(
        &self,
        order_id: &str,
        count: riskd_units::Contracts,
    ) -> Result<(), engine::EngineError> {
        self.with_engine(|e, now, ev| {
            ev.push(engine::Event::Fill(
                e.stream_only_fill(order_id, count, now)?,
            ));
            Ok(())
        })
    }

    /// Requests refused with 429 so far.
    pub fn rejected_429(&self) -> u64 {
        self.stats.rejected_429.load(Ordering::Relaxed)
    }

    /// Internal state of every group (what the exchange never shows), for tests.
    pub fn groups(&self) -> Vec<GroupView> {
        let now = self.now_ms();
        lock(&self.engine).group_views(now)
    }

    /// Every fill the exchange made, oldest first, with its order's group.
    pub fn ledger(&self) -> Vec<engine::LedgerFill> {
        lock(&self.engine).ledger()
    }

    /// WebSocket connections subscribed to `fill` and not silenced: those that would deliver a
    /// fill made now.
    pub fn fill_subscribers(&self) -> u64 {
        self.stats.ws_fill_subscribed.load(Ordering::Relaxed)
    }

    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.silent.send_replace(faults.ws_silent);
        *lock(&self.faults) = faults;
    }

    /// Drops every open WebSocket connection at once, without a close frame.
    pub fn drop_websockets(&self) {
        let mut token = lock(&self.drop_ws);
        token.cancel();
        *token = self.shutdown.child_token();
    }

    fn ws_drop_token(&self) -> CancellationToken {
        lock(&self.drop_ws).clone()
    }

    /// Drops every FIX connection at once, without a Logout.
    pub fn drop_fix_sessions(&self) -> usize {
        let mut token = lock(&self.drop_fix);
        token.cancel();
        *token = self.shutdown.child_token();
        lock(&self.fix_sessions).len()
    }

    fn fix_drop_token(&self) -> CancellationToken {
        lock(&self.drop_fix).clone()
    }

    /// FIX sessions logged on now.
    pub fn fix_sessions(&self) -> usize {
        lock(&self.fix_sessions).len()
    }
}

/// A running simulator. Dropping it does not stop it; call [`Simulator::shutdown`].
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<SimState>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Simulator {
    /// Starts serving on `listener` (bind `127.0.0.1:0` in tests).
    pub async fn start(cfg: SimConfig, listener: TcpListener) -> Result<Simulator, SimError> {
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let state = Arc::new(SimState::new(&cfg, shutdown.clone()));
        let app = rest::router(state.clone())
            .merge(ws::router(state.clone()))
            .merge(control::router(state.clone()));
        if let Some(every) = cfg.ws_drop_every {
            let st = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = st.shutdown.cancelled() => return,
                        _ = tick.tick() => st.drop_websockets(),
                    }
                }
            });
        }
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Ok(Simulator {
            addr,
            state,
            shutdown,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/trade-api/v2`
    pub fn rest_url(&self) -> String {
        format!("http://{}/trade-api/v2", self.addr)
    }

    /// `ws://ADDR/trade-api/ws/v2`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/trade-api/ws/v2", self.addr)
    }

    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    /// Adds a FIX acceptor on `listener` (plain TCP, or TLS with `tls`) on the same exchange;
    /// it stops with the simulator.
    pub fn start_fix(
        &self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Result<SocketAddr, SimError> {
        let addr = listener.local_addr()?;
        tokio::spawn(fix::serve(self.state.clone(), listener, tls));
        Ok(addr)
    }

    /// Stops accepting, closes every WebSocket and waits for the server to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Waits until the server stops (for the `sim` command, which stops it by a signal).
    pub async fn wait(self, stop: impl std::future::Future<Output = ()>) {
        stop.await;
        self.shutdown().await;
    }
}
