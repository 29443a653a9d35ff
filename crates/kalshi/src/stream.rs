//! The user stream: one long-lived task that keeps a signed WebSocket subscribed to `fill`,
//! `user_orders` and `order_group_updates`, and turns it into one stream of typed events.
//!
//! - **Liveness**: any frame (data, ping, pong) counts as life. The client pings every quarter
//!   of `blind_after`, so an idle but healthy connection still answers. Nothing for
//!   `blind_after` is [`Health::Blind`], and the connection is dropped and rebuilt.
//! - **Reconnect**: exponential backoff with full jitter, re-signed, re-subscribed (sids are per
//!   connection). [`Health::Connected`] is sent once every subscription is acknowledged.
//! - **Subscriptions**: the task knows, per channel, whether it is subscribed. The exchange
//!   ends a subscription with a terminal error (10 channel error, 25 buffer overflow: data was
//!   lost), a refused `subscribe` leaves its channels unsubscribed, and `list_subscriptions`
//!   (asked every `list_every`) finds one lost without a word. Each is
//!   [`Health::SubscriptionLost`] (events may have been missed: reconcile), and the channel is
//!   subscribed again at once (a refused one every quarter of `blind_after`). A channel still
//!   unsubscribed after `blind_after` is [`Health::Blind`], and the connection is rebuilt. A
//!   terminal error that names no known subscription rebuilds the connection at once.
//! - **Gaps**: `order_group_updates` carries a per-sid `seq`; a jump is [`Health::SeqGap`] (group
//!   state may have been missed: reconcile). `fill` and `user_orders` have no `seq`.
//! - **Bounded output**: events go into a bounded channel. When it is full, events are counted
//!   and dropped rather than stalling the socket, and a [`Health::Overflow`] saying how many
//!   precedes the next event that fits. Server error 25 (its own buffer overflowed) is reported
//!   the same way.
//! - **Garbage**: a frame that does not decode is counted and logged (truncated), never a panic.
//!   One on the group channel may have been a `triggered` event, so it is [`Health::Lossy`]
//!   (reconcile). Unknown message types and unknown group `event_type`s are counted and
//!   logged; a known event is never dropped because of one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;

use super::auth::{Signer, now_ms};
use super::rest::RetryPolicy;
use super::ws::{DecodeError, Decoded, Fill, GroupEvent, OrderUpdate, decode};

/// The channels the daemon needs.
pub const CHANNELS: [&str; 3] = ["fill", "user_orders", "order_group_updates"];

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// `wss://…/trade-api/ws/v2` or the simulator's `ws://127.0.0.1:8280/trade-api/ws/v2`.
    pub url: String,
    /// No frame at all for this long means the stream is blind.
    pub blind_after: Duration,
    /// Backoff between connection attempts.
    pub backoff: RetryPolicy,
    /// Events buffered for the consumer before they are dropped and counted.
    pub buffer: usize,
    /// How often the server is asked which subscriptions it holds (`list_subscriptions`).
    pub list_every: Duration,
}

impl StreamConfig {
    pub fn new(url: impl Into<String>) -> StreamConfig {
        StreamConfig {
            url: url.into(),
            blind_after: Duration::from_secs(10),
            backoff: RetryPolicy {
                attempts: u32::MAX,
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
            buffer: 65_536,
            list_every: Duration::from_secs(30),
        }
    }
}

/// The stream's own state, for the risk loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Subscribed to every channel (after each connect or reconnect).
    Connected,
    /// The connection ended or could not be made; reconnecting.
    Disconnected { reason: String },
    /// Nothing arrived for `silent_for`; the connection is being rebuilt.
    Blind { silent_for: Duration },
    /// `order_group_updates` skipped from `expected` to `got`.
    SeqGap { expected: u64, got: u64 },
    /// `dropped` events were lost (the consumer fell behind, or the server said so with
    /// error 25, in which case `dropped` is 0: unknown).
    Overflow { dropped: u64 },
    /// The server reported an error that ends no subscription.
    ServerError { code: u64, msg: String },
    /// The subscription to `channel` ended or was refused (`reason` says which); it is being
    /// restored. Events on it may have been missed.
    SubscriptionLost {
        channel: &'static str,
        reason: String,
    },
    /// Events may have been missed for another reason (`reason`).
    Lossy { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Fill(Fill),
    Order(OrderUpdate),
    Group(GroupEvent),
    Health(Health),
}

/// Counters the metrics read.
#[derive(Debug, Default)]
pub struct StreamCounters {
    pub connected: AtomicBool,
    pub messages: AtomicU64,
    pub garbage: AtomicU64,
    pub reconnects: AtomicU64,
    pub gaps: AtomicU64,
    pub dropped: AtomicU64,
    /// Wall-clock ms of the last frame received (0: never).
    pub last_frame_ms: AtomicI64,
    /// Per channel (in [`CHANNELS`] order): subscribed now.
    pub subscribed: [AtomicBool; 3],
    /// Per channel: subscriptions ended by the exchange, refused, or found missing.
    pub subscriptions_lost: [AtomicU64; 3],
    /// Messages of an unknown type, or group events of an unknown `event_type`.
    pub unknown: AtomicU64,
}

/// Starts the stream task. It runs until `stop` fires or the receiver is dropped.
pub fn spawn(
    cfg: StreamConfig,
    signer: Signer,
    stop: CancellationToken,
) -> (
    mpsc::Receiver<StreamEvent>,
    Arc<StreamCounters>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(cfg.buffer.max(1));
    let counters = Arc::new(StreamCounters::default());
    let mut task = StreamTask {
        path: ws_path(&cfg.url),
        cfg,
        signer,
        out: Out {
            tx,
            pending_drop: 0,
            counters: counters.clone(),
        },
    };
    let handle = tokio::spawn(async move { task.run(stop).await });
    (rx, counters, handle)
}

/// The URL path the upgrade signature covers.
fn ws_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    match after_scheme.find('/') {
        Some(i) => after_scheme[i..]
            .split('?')
            .next()
            .unwrap_or("/")
            .to_owned(),
        None => "/".to_owned(),
    }
}

struct Out {
    tx: mpsc::Sender<StreamEvent>,
    pending_drop: u64,
    counters: Arc<StreamCounters>,
}

/// What the consumer did with an event.
enum Sent {
    Ok,
    /// The consumer is gone: stop.
    Closed,
}

impl Out {
    fn emit(&mut self, ev: StreamEvent) -> Sent {
        use mpsc::error::TrySendError;
        if self.pending_drop > 0 {
            match self.tx.try_send(StreamEvent::Health(Health::Overflow {
                dropped: self.pending_drop,
            })) {
                Ok(()) => self.pending_drop = 0,
                Err(TrySendError::Full(_)) => {
                    self.drop_one();
                    return Sent::Ok;
                }
                Err(TrySendError::Closed(_)) => return Sent::Closed,
            }
        }
        match self.tx.try_send(ev) {
            Ok(()) => Sent::Ok,
            Err(TrySendError::Full(_)) => {
                self.drop_one();
                Sent::Ok
            }
            Err(TrySendError::Closed(_)) => Sent::Closed,
        }
    }

    /// Nothing is queued for the consumer.
    fn caught_up(&self) -> bool {
        self.tx.capacity() == self.tx.max_capacity()
    }

    fn drop_one(&mut self) {
        self.pending_drop += 1;
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

struct StreamTask {
    cfg: StreamConfig,
    path: String,
    signer: Signer,
    out: Out,
}

/// Why a connection ended.
enum End {
    Stop,
    Reconnect,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection's subscriptions, per channel (in [`CHANNELS`] order).
#[derive(Debug, Default)]
struct Subscriptions {
    sid: [Option<u64>; 3],
    /// A subscribe for the channel is in flight.
    asked: [bool; 3],
    /// Subscribe commands in flight: command id → channels.
    pending: std::collections::BTreeMap<u64, Vec<usize>>,
    last_id: u64,
    /// Every channel subscribed (and [`Health::Connected`] sent) since the last loss.
    all_up: bool,
    /// Since when a channel has been missing after every channel was up once.
    missing_since: Option<Instant>,
    /// The `list_subscriptions` in flight.
    list_id: Option<u64>,
}

impl Subscriptions {
    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        (0..CHANNELS.len()).filter(|&i| self.sid[i].is_none())
    }

    /// Missing channels with no subscribe in flight.
    fn unasked(&self) -> Vec<usize> {
        self.missing().filter(|&i| !self.asked[i]).collect()
    }

    fn channel_of(&self, sid: u64) -> Option<usize> {
        self.sid.iter().position(|s| *s == Some(sid))
    }

    async fn subscribe(
        &mut self,
        ws: &mut Ws,
        channels: &[usize],
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let id = self.next_id();
        let names: Vec<&str> = channels.iter().map(|&i| CHANNELS[i]).collect();
        for &i in channels {
            self.asked[i] = true;
        }
        self.pending.insert(id, channels.to_vec());
        let cmd = serde_json::json!({"id": id, "cmd": "subscribe", "params": {"channels": names}});
        ws.send(Message::text(cmd.to_string())).await
    }
}

impl StreamTask {
    async fn run(&mut self, stop: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let connected = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.connect() => r,
            };
            match connected {
                Ok(ws) => {
                    let healthy = Instant::now();
                    match self.session(ws, &stop).await {
                        End::Stop => return,
                        End::Reconnect => {}
                    }
                    // A connection that lasted resets the backoff.
                    if healthy.elapsed() > self.cfg.blind_after {
                        failures = 0;
                    }
                }
                Err(reason) => {
                    if let Sent::Closed = self
                        .out
                        .emit(StreamEvent::Health(Health::Disconnected { reason }))
                    {
                        return;
                    }
                }
            }
            self.out.counters.connected.store(false, Ordering::Relaxed);
            failures = failures.saturating_add(1);
            self.out.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            let pause = self.cfg.backoff.delay(failures);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn connect(&self) -> Result<Ws, String> {
        let mut req = self
            .cfg
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad stream URL {}: {e}", self.cfg.url))?;
        for (k, v) in self.signer.sign_now("GET", &self.path).pairs() {
            let value = v.parse().map_err(|e| format!("header {k}: {e}"))?;
            req.headers_mut().insert(k, value);
        }
        let attempt = tokio_tungstenite::connect_async(req);
        match tokio::time::timeout(self.cfg.blind_after, attempt).await {
            Err(_) => Err(format!("connect to {} timed out", self.cfg.url)),
            Ok(Err(e)) => Err(format!("connect to {}: {e}", self.cfg.url)),
            Ok(Ok((ws, _))) => Ok(ws),
        }
    }

    /// Runs one connection until it ends.
    async fn session(&mut self, mut ws: Ws, stop: &CancellationToken) -> End {
        let mut subs = Subscriptions::default();
        let all: Vec<usize> = (0..CHANNELS.len()).collect();
        if let Err(e) = subs.subscribe(&mut ws, &all).await {
            return self.lost(format!("subscribe: {e}"));
        }
        let mut last_seq: Option<(u64, u64)> = None; // (sid, seq) of order_group_updates
        let mut last_frame = Instant::now();
        let mut ping = tokio::time::interval(self.cfg.blind_after / 4);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut list = tokio::time::interval(self.cfg.list_every);
        list.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        list.tick().await;
        // One timer for the session, not one per frame: it is only ever moved earlier here, and
        // a deadline that frames have pushed later is found when it fires.
        let blind = tokio::time::sleep_until(last_frame + self.cfg.blind_after);
        tokio::pin!(blind);
        // No fill handed over since the task last waited for the socket: the next fill starts
        // a burst.
        let mut fresh = true;
        loop {
            let silent_until = last_frame + self.cfg.blind_after;
            let deadline = subs
                .missing_since
                .map_or(silent_until, |m| silent_until.min(m + self.cfg.blind_after));
            if deadline < blind.deadline() {
                blind.as_mut().reset(deadline);
            }
            let frame = tokio::select! {
                _ = stop.cancelled() => {
                    let _ = ws.close(None).await;
                    return End::Stop;
                }
                _ = ping.tick() => {
                    if let Err(e) = ws.send(Message::Ping(Bytes::from_static(b"riskd"))).await {
                        return self.lost(format!("ping: {e}"));
                    }
                    // Channels still unsubscribed (a refused subscribe) are asked for again.
                    let retry = subs.unasked();
                    if !retry.is_empty()
                        && let Err(e) = subs.subscribe(&mut ws, &retry).await
                    {
                        return self.lost(format!("subscribe: {e}"));
                    }
                    continue;
                }
                _ = list.tick() => {
                    if subs.all_up {
                        let id = subs.next_id();
                        subs.list_id = Some(id);
                        let cmd = serde_json::json!({"id": id, "cmd": "list_subscriptions"});
                        if let Err(e) = ws.send(Message::text(cmd.to_string())).await {
                            return self.lost(format!("list_subscriptions: {e}"));
                        }
                    }
                    continue;
                }
                _ = &mut blind => {
                    if Instant::now() < deadline {
                        blind.as_mut().reset(deadline);
                        continue;
                    }
                    let silent_for = last_frame.elapsed();
                    if silent_for >= self.cfg.blind_after {
                        tracing::warn!(?silent_for, "user stream is blind; reconnecting");
                    } else {
                        let missing: Vec<&str> = subs.missing().map(|i| CHANNELS[i]).collect();
                        tracing::warn!(?missing, "channels not restored within blind_after: blind; reconnecting");
                    }
                    let silent_for = subs.missing_since.map_or(silent_for, |m| silent_for.max(m.elapsed()));
                    if let Sent::Closed = self.out.emit(StreamEvent::Health(Health::Blind { silent_for })) {
                        return End::Stop;
                    }
                    return End::Reconnect;
                }
                f = std::future::poll_fn(|cx| {
                    let polled = ws.poll_next_unpin(cx);
                    if polled.is_pending() {
                        fresh = true;
                    }
                    polled
                }) => f,
            };
            last_frame = Instant::now();
            self.out
                .counters
                .last_frame_ms
                .store(now_ms(), Ordering::Relaxed);
            let text = match frame {
                None => return self.lost("closed by the server".into()),
                Some(Err(e)) => return self.lost(e.to_string()),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Ping(_))) => {
                    // tungstenite queued the pong; send it now rather than with the next write.
                    if let Err(e) = ws.flush().await {
                        return self.lost(format!("pong: {e}"));
                    }
                    continue;
                }
                Some(Ok(Message::Pong(_))) | Some(Ok(Message::Frame(_))) => continue,
                Some(Ok(Message::Close(c))) => {
                    return self.lost(format!("closed by the server: {c:?}"));
                }
                Some(Ok(Message::Binary(b))) => {
                    self.garbage(&format!("binary frame of {} bytes", b.len()));
                    continue;
                }
            };
            self.out.counters.messages.fetch_add(1, Ordering::Relaxed);
            let decoded = match decode(text.as_str()) {
                Ok(d) => d,
                Err(e) => {
                    let shown: String = text.as_str().chars().take(120).collect();
                    self.garbage(&format!("{e}: {shown}"));
                    // It may have been a `triggered` event: the group state must be re-read.
                    if matches!(
                        e,
                        DecodeError::Field {
                            kind: "order_group_updates",
                            ..
                        }
                    ) {
                        let reason =
                            format!("an order_group_updates message could not be read ({e})");
                        if let Sent::Closed =
                            self.out.emit(StreamEvent::Health(Health::Lossy { reason }))
                        {
                            return End::Stop;
                        }
                    }
                    continue;
                }
            };
            // A fill may be the start of a breach's path: the first fill of a burst, or one the
            // consumer is idle for, reaches the consumer before the next frame is read and
            // decoded (a yield costs well under a microsecond). Deep in a burst, with events
            // still queued, the consumer is busy already, and yielding for every fill would
            // only pass this task back and forth between the runtime's workers (at 100,000
            // fills a second that hand-off cost more than the fills themselves).
            let hand_over =
                matches!(decoded, Decoded::Fill { .. }) && (fresh || self.out.caught_up());
            let ev = match decoded {
                Decoded::Fill { fill, .. } => StreamEvent::Fill(fill),
                Decoded::Order { order, .. } => StreamEvent::Order(order),
                Decoded::Group { sid, seq, event } => {
                    if let Some(end) = self.check_seq(&mut last_seq, sid, seq) {
                        return end;
                    }
                    StreamEvent::Group(event)
                }
                Decoded::GroupOther {
                    sid,
                    seq,
                    event_type,
                } => {
                    if let Some(end) = self.check_seq(&mut last_seq, sid, seq) {
                        return end;
                    }
                    self.unknown(&format!("order_group_updates event_type {event_type:?}"));
                    continue;
                }
                Decoded::Subscribed { id, sid, channel } => {
                    let Some(i) = CHANNELS.iter().position(|c| *c == channel) else {
                        continue;
                    };
                    if let Some(waiting) = subs.pending.get_mut(&id) {
                        waiting.retain(|&c| c != i);
                        if waiting.is_empty() {
                            subs.pending.remove(&id);
                        }
                    }
                    subs.sid[i] = Some(sid);
                    subs.asked[i] = false;
                    self.out.counters.subscribed[i].store(true, Ordering::Relaxed);
                    if subs.all_up || subs.missing().next().is_some() {
                        continue;
                    }
                    subs.all_up = true;
                    subs.missing_since = None;
                    self.out.counters.connected.store(true, Ordering::Relaxed);
                    tracing::info!(url = %self.cfg.url, "user stream connected");
                    StreamEvent::Health(Health::Connected)
                }
                Decoded::Error { id, sid, code, msg } => {
                    // An answer to a subscribe: its channels not yet acknowledged stay
                    // unsubscribed (asked again on the next ping tick).
                    if let Some(channels) = subs.pending.remove(&id).filter(|_| id != 0) {
                        let unacked: Vec<usize> = channels
                            .into_iter()
                            .filter(|&i| subs.sid[i].is_none())
                            .collect();
                        for i in unacked {
                            subs.asked[i] = false;
                            let why = format!("subscribe refused: error {code} {msg}");
                            if let Some(end) = self.channel_lost(&mut subs, i, why) {
                                return end;
                            }
                        }
                        continue;
                    }
                    if !super::wire::ws_error::is_terminal(code) {
                        tracing::warn!(code, %msg, "user stream server error");
                        StreamEvent::Health(Health::ServerError { code, msg })
                    } else {
                        let Some(i) = sid.and_then(|s| subs.channel_of(s)) else {
                            // Which subscription ended is unknown: rebuild them all.
                            return self.lost(format!(
                                "terminal error {code} ({msg}) for no known subscription"
                            ));
                        };
                        let why = format!("ended by the exchange: error {code} {msg}");
                        if let Some(end) = self.channel_lost(&mut subs, i, why) {
                            return end;
                        }
                        if let Err(e) = subs.subscribe(&mut ws, &[i]).await {
                            return self.lost(format!("subscribe: {e}"));
                        }
                        continue;
                    }
                }
                Decoded::Subscriptions { id, list } => {
                    if subs.list_id != Some(id) {
                        continue;
                    }
                    subs.list_id = None;
                    let gone: Vec<usize> = (0..CHANNELS.len())
                        .filter(|&i| {
                            subs.sid[i].is_some_and(|sid| {
                                !list.iter().any(|(c, s)| c == CHANNELS[i] && *s == sid)
                            })
                        })
                        .collect();
                    for &i in &gone {
                        let why = "list_subscriptions no longer shows it".to_owned();
                        if let Some(end) = self.channel_lost(&mut subs, i, why) {
                            return end;
                        }
                    }
                    if !gone.is_empty()
                        && let Err(e) = subs.subscribe(&mut ws, &gone).await
                    {
                        return self.lost(format!("subscribe: {e}"));
                    }
                    continue;
                }
                Decoded::Unsubscribed { sid, .. } => {
                    // The daemon never unsubscribes: the server dropped it.
                    if let Some(i) = subs.channel_of(sid) {
                        let why = "unsubscribed by the server".to_owned();
                        if let Some(end) = self.channel_lost(&mut subs, i, why) {
                            return end;
                        }
                        if let Err(e) = subs.subscribe(&mut ws, &[i]).await {
                            return self.lost(format!("subscribe: {e}"));
                        }
                    }
                    continue;
                }
                Decoded::Ok { .. } => continue,
                Decoded::Other { kind } => {
                    self.unknown(&format!("message type {kind:?}"));
                    continue;
                }
            };
            if let Sent::Closed = self.out.emit(ev) {
                return End::Stop;
            }
            if hand_over {
                fresh = false;
                tokio::task::yield_now().await;
            }
        }
    }

    /// Follows `order_group_updates`' `seq`; a jump is reported. `Some` when the consumer is
    /// gone.
    fn check_seq(&mut self, last_seq: &mut Option<(u64, u64)>, sid: u64, seq: u64) -> Option<End> {
        if let Some((last_sid, last)) = *last_seq
            && last_sid == sid
            && seq != last + 1
        {
            self.out.counters.gaps.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                sid,
                expected = last + 1,
                got = seq,
                "order_group_updates sequence gap"
            );
            if let Sent::Closed = self.out.emit(StreamEvent::Health(Health::SeqGap {
                expected: last + 1,
                got: seq,
            })) {
                return Some(End::Stop);
            }
        }
        *last_seq = Some((sid, seq));
        None
    }

    /// Channel `i`'s subscription is gone: counted, reported, and the stream is not connected
    /// until it is back. `Some` when the consumer is gone.
    fn channel_lost(&mut self, subs: &mut Subscriptions, i: usize, reason: String) -> Option<End> {
        let channel = CHANNELS[i];
        tracing::warn!(channel, %reason, "user stream subscription lost; restoring it");
        subs.sid[i] = None;
        subs.all_up = false;
        subs.missing_since.get_or_insert_with(Instant::now);
        let c = &self.out.counters;
        c.subscribed[i].store(false, Ordering::Relaxed);
        c.subscriptions_lost[i].fetch_add(1, Ordering::Relaxed);
        c.connected.store(false, Ordering::Relaxed);
        match self.out.emit(StreamEvent::Health(Health::SubscriptionLost {
            channel,
            reason,
        })) {
            Sent::Closed => Some(End::Stop),
            Sent::Ok => None,
        }
    }

    fn unknown(&self, what: &str) {
        let n = self.out.counters.unknown.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            unknown_total = n,
            what,
            "unknown message on the user stream; ignored"
        );
    }

    fn lost(&mut self, reason: String) -> End {
        tracing::warn!(%reason, "user stream disconnected");
        match self
            .out
            .emit(StreamEvent::Health(Health::Disconnected { reason }))
        {
            Sent::Closed => End::Stop,
            Sent::Ok => End::Reconnect,
        }
    }

    fn garbage(&self, what: &str) {
        let n = self.out.counters.garbage.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(garbage_total = n, frame = %what, "undecodable frame on the user stream");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_means_nothing_queued_for_the_consumer() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut out = Out {
            tx,
            pending_drop: 0,
            counters: Arc::new(StreamCounters::default()),
        };
        assert!(out.caught_up());
        let ev = || StreamEvent::Health(Health::Connected);
        assert!(matches!(out.emit(ev()), Sent::Ok));
        assert!(!out.caught_up(), "an event waits for the consumer");
        assert!(rx.try_recv().is_ok());
        assert!(out.caught_up());
        // Full: the event is dropped and counted; still not caught up.
        for _ in 0..5 {
            assert!(matches!(out.emit(ev()), Sent::Ok));
        }
        assert!(!out.caught_up());
        assert_eq!(out.counters.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn signs_the_url_path() {
        assert_eq!(
            ws_path("wss://h.example/trade-api/ws/v2"),
            "/trade-api/ws/v2"
        );
        assert_eq!(
            ws_path("ws://127.0.0.1:1/trade-api/ws/v2?x=1"),
            "/trade-api/ws/v2"
        );
        assert_eq!(ws_path("ws://127.0.0.1:1"), "/");
    }
}
