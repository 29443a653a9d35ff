//! The user stream: one long-lived task that keeps a signed WebSocket subscribed to `fill`,
//! `user_orders` and `order_group_updates`, and turns it into one stream of typed events.
//!
//! - **Liveness**: any frame (data, ping, pong) counts as life. The client pings every quarter
//!   of `blind_after`, so an idle but healthy connection still answers. Nothing for
//!   `blind_after` is [`Health::Blind`], and the connection is dropped and rebuilt.
//! - **Reconnect**: exponential backoff with full jitter, re-signed, re-subscribed (sids are per
//!   connection). [`Health::Connected`] is sent once every subscription is acknowledged.
//! - **Gaps**: `order_group_updates` carries a per-sid `seq`; a jump is [`Health::SeqGap`] (group
//!   state may have been missed: reconcile). `fill` and `user_orders` have no `seq`.
//! - **Bounded output**: events go into a bounded channel. When it is full, events are counted
//!   and dropped rather than stalling the socket, and a [`Health::Overflow`] saying how many
//!   precedes the next event that fits. Server error 25 (its own buffer overflowed) is reported
//!   the same way.
//! - **Garbage**: a frame that does not decode is counted and logged (truncated), never a panic.

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
use super::ws::{Decoded, Fill, GroupEvent, OrderUpdate, decode};

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
    /// The server refused a subscription or reported an error.
    ServerError { code: u64, msg: String },
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
        let subscribe =
            serde_json::json!({"id": 1, "cmd": "subscribe", "params": {"channels": CHANNELS}});
        if let Err(e) = ws.send(Message::text(subscribe.to_string())).await {
            return self.lost(format!("subscribe: {e}"));
        }
        let mut acked = 0usize;
        let mut last_seq: Option<(u64, u64)> = None; // (sid, seq) of order_group_updates
        let mut last_frame = Instant::now();
        let mut ping = tokio::time::interval(self.cfg.blind_after / 4);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            let deadline = last_frame + self.cfg.blind_after;
            let frame = tokio::select! {
                _ = stop.cancelled() => {
                    let _ = ws.close(None).await;
                    return End::Stop;
                }
                _ = ping.tick() => {
                    if let Err(e) = ws.send(Message::Ping(Bytes::from_static(b"riskd"))).await {
                        return self.lost(format!("ping: {e}"));
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let silent_for = last_frame.elapsed();
                    tracing::warn!(?silent_for, "user stream is blind; reconnecting");
                    if let Sent::Closed = self.out.emit(StreamEvent::Health(Health::Blind { silent_for })) {
                        return End::Stop;
                    }
                    return End::Reconnect;
                }
                f = ws.next() => f,
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
                    continue;
                }
            };
            let ev = match decoded {
                Decoded::Fill { fill, .. } => StreamEvent::Fill(fill),
                Decoded::Order { order, .. } => StreamEvent::Order(order),
                Decoded::Group { sid, seq, event } => {
                    if let Some((last_sid, last)) = last_seq
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
                            return End::Stop;
                        }
                    }
                    last_seq = Some((sid, seq));
                    StreamEvent::Group(event)
                }
                Decoded::Subscribed { .. } => {
                    acked += 1;
                    if acked == CHANNELS.len() {
                        self.out.counters.connected.store(true, Ordering::Relaxed);
                        tracing::info!(url = %self.cfg.url, "user stream connected");
                        StreamEvent::Health(Health::Connected)
                    } else {
                        continue;
                    }
                }
                Decoded::Error { code, msg, .. } => {
                    tracing::warn!(code, %msg, "user stream server error");
                    if code == super::wire::ws_error::SUBSCRIPTION_BUFFER_OVERFLOW as u64 {
                        StreamEvent::Health(Health::Overflow { dropped: 0 })
                    } else {
                        StreamEvent::Health(Health::ServerError { code, msg })
                    }
                }
                Decoded::Unsubscribed { .. } | Decoded::Ok { .. } | Decoded::Other { .. } => {
                    continue;
                }
            };
            if let Sent::Closed = self.out.emit(ev) {
                return End::Stop;
            }
        }
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
