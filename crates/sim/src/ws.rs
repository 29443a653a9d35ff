//! The user WebSocket at `/trade-api/ws/v2`.
//!
//! The upgrade is authenticated like REST (signature over `timestamp + "GET" +
//! "/trade-api/ws/v2"`); a failed check answers 401 with the REST error body instead of
//! upgrading. Commands: `subscribe` (one `subscribed` reply per channel, each with its own `sid`;
//! subscribing again to a channel returns the existing `sid`), `unsubscribe`, and
//! `list_subscriptions`. The simulator serves the `fill`, `user_orders` and `order_group_updates`
//! channels; other channel names get error 8. `order_group_updates` carries a per-`sid` `seq`
//! starting at 1. The server pings every `ping_interval` with payload `heartbeat`.
//!
//! Terminal channel errors, as the exchange sends them: a reader that falls more than the event
//! buffer behind loses data, and each of its subscriptions ends with error 25 (buffer overflow)
//! carrying that subscription's `sid`; `/_sim/ws/end_subscription` ends one channel's
//! subscriptions with error 10 or 25 the same way. The connection and its pings stay up. The
//! faults can also refuse a `subscribe` for some channels (error 17 for them, after the
//! `subscribed` replies of the others) and send `order_group_updates` in loose shapes (no
//! `ts_ms`, unknown `event_type`s).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::rest::ApiError;
use super::{Channel, Published, SimState, SubscriptionEnd};
use riskd_kalshi::wire::ws_error;

pub(super) const WS_PATH: &str = "/trade-api/ws/v2";

pub(super) fn router(st: Arc<SimState>) -> Router {
    Router::new().route(WS_PATH, get(upgrade)).with_state(st)
}

async fn upgrade(State(st): State<Arc<SimState>>, mut req: Request) -> Response {
    let now = riskd_kalshi::auth::now_ms();
    if let Err(f) = st.keys.verify(req.headers(), "GET", WS_PATH, now) {
        st.stats.rejected_auth.fetch_add(1, Ordering::Relaxed);
        return ApiError::Auth(f).into_response();
    }
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return (StatusCode::BAD_REQUEST, "expected a WebSocket upgrade").into_response();
    };
    if !is_upgrade {
        return (StatusCode::BAD_REQUEST, "expected a WebSocket upgrade").into_response();
    }
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                st.stats.ws_sessions.fetch_add(1, Ordering::Relaxed);
                let mut session = Session::default();
                session.run(&st, ws).await;
                session.count_delivering(&st, false);
                st.stats.ws_sessions.fetch_sub(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

#[derive(Debug)]
struct Subscription {
    channel: Channel,
    /// Last `seq` sent (only `order_group_updates` carries it).
    seq: u64,
    /// `market_ticker(s)` filter for `fill` and `user_orders`.
    tickers: Option<HashSet<String>>,
}

#[derive(Debug, Default)]
struct Session {
    subs: BTreeMap<u64, Subscription>,
    next_sid: u64,
    /// Whether this session counts in the `fill` deliverers gauge.
    delivering: bool,
}

fn error_reply(id: u64, code: u32, msg: &str) -> String {
    json!({"id": id, "type": "error", "msg": {"code": code, "msg": msg}}).to_string()
}

/// The exchange's text for a terminal channel error.
fn terminal_text(code: u32) -> &'static str {
    if code == ws_error::SUBSCRIPTION_BUFFER_OVERFLOW {
        "Subscription buffer overflow"
    } else {
        "Channel error"
    }
}

/// Events already published that a session writes with the one it woke for, at most.
const BATCH_MORE: usize = 255;

impl Session {
    /// Keeps the gauge of sessions that would deliver a fill now in step with this one.
    fn count_delivering(&mut self, st: &SimState, now: bool) {
        if now != self.delivering {
            self.delivering = now;
            if now {
                st.stats.ws_fill_subscribed.fetch_add(1, Ordering::Relaxed);
            } else {
                st.stats.ws_fill_subscribed.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    async fn run(&mut self, st: &SimState, ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>) {
        let (mut sink, mut stream) = ws.split();
        let mut events = st.events.subscribe();
        let mut inject = st.inject.subscribe();
        let mut ends = st.ends.subscribe();
        let mut silent = st.silent.subscribe();
        let dropped = st.ws_drop_token();
        let mut ping = tokio::time::interval(st.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            let quiet = *silent.borrow_and_update();
            let fills = self.subs.values().any(|s| s.channel == Channel::Fill);
            self.count_delivering(st, fills && !quiet);
            let out: Vec<Message> = tokio::select! {
                // Abrupt drop: the socket closes without a close frame.
                _ = dropped.cancelled() => return,
                _ = silent.changed() => continue,
                frame = stream.next(), if !quiet => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let refused = st.faults().ws_refuse_subscribe;
                        self.command(text.as_str(), &refused).into_iter().map(Message::text).collect()
                    }
                    Some(Ok(Message::Binary(_))) => vec![Message::text(error_reply(
                        0, ws_error::UNABLE_TO_PROCESS, "Unable to process message"))],
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(Message::Pong(_))) => {
                        st.stats.ws_pongs.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Some(Ok(_)) => continue, // a ping: tungstenite answers it itself
                },
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        let loose = st.faults().ws_loose_group_events;
                        let mut msgs = self.render(&ev, loose);
                        // Events already waiting go out in the same write, as a busy
                        // server's would (a burst is not flushed a message at a time).
                        for _ in 0..BATCH_MORE {
                            match events.try_recv() {
                                Ok(ev) => msgs.extend(self.render(&ev, loose)),
                                Err(TryRecvError::Lagged(n)) => {
                                    msgs.extend(self.fell_behind(n));
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        // Read the flag again: it may have changed while this event waited.
                        if *silent.borrow() { continue }
                        msgs.into_iter().map(Message::text).collect()
                    }
                    Err(RecvError::Lagged(n)) => {
                        self.fell_behind(n).into_iter().map(Message::text).collect()
                    }
                    Err(RecvError::Closed) => return,
                },
                m = inject.recv() => match m {
                    Ok(m) => vec![m],
                    Err(_) => continue,
                },
                e = ends.recv() => match e {
                    Ok(SubscriptionEnd { channel, code, silent }) => {
                        let errors = self.end(channel, code);
                        if silent { continue }
                        errors.into_iter().map(Message::text).collect()
                    }
                    Err(_) => continue,
                },
                _ = ping.tick(), if !quiet => {
                    if *silent.borrow() { continue }
                    vec![Message::Ping(Bytes::from_static(b"heartbeat"))]
                }
            };
            let n = out.len() as u64;
            for m in out {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
            st.stats.ws_messages.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The reader fell more than the buffer behind and `lost` events were dropped: every
    /// subscription ends, as on the exchange (error 25).
    fn fell_behind(&mut self, lost: u64) -> Vec<String> {
        tracing::warn!(lost, "simulated websocket reader fell behind");
        let all: Vec<Channel> = self.subs.values().map(|s| s.channel).collect();
        all.into_iter()
            .flat_map(|c| self.end(c, ws_error::SUBSCRIPTION_BUFFER_OVERFLOW))
            .collect()
    }

    /// Ends this connection's subscriptions to `channel` with the terminal error `code`; the
    /// error names each one's `sid`.
    fn end(&mut self, channel: Channel, code: u32) -> Vec<String> {
        let sids: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.channel == channel)
            .map(|(sid, _)| *sid)
            .collect();
        sids.into_iter()
            .map(|sid| {
                self.subs.remove(&sid);
                json!({"id": 0, "type": "error", "sid": sid,
                       "msg": {"code": code, "msg": terminal_text(code)}})
                .to_string()
            })
            .collect()
    }

    /// The data messages one event becomes on this connection (one per matching subscription).
    /// `loose`: group events without `ts_ms`, each followed by one of an unknown `event_type`.
    fn render(&mut self, ev: &Published, loose: bool) -> Vec<String> {
        let mut out = Vec::new();
        for (sid, sub) in self.subs.iter_mut() {
            if sub.channel != ev.channel {
                continue;
            }
            if let (Some(filter), Some(t)) = (&sub.tickers, &ev.ticker)
                && !filter.contains(t)
            {
                continue;
            }
            let ty = ev.channel.message_type();
            if ev.channel == Channel::OrderGroupUpdates {
                sub.seq += 1;
                if loose && let Ok(Value::Object(mut msg)) = serde_json::from_str(&ev.msg_json) {
                    msg.remove("ts_ms");
                    let group = msg.get("order_group_id").cloned().unwrap_or(Value::Null);
                    out.push(
                        json!({"type": ty, "sid": sid, "seq": sub.seq, "msg": msg}).to_string(),
                    );
                    sub.seq += 1;
                    out.push(
                        json!({"type": ty, "sid": sid, "seq": sub.seq,
                               "msg": {"event_type": "paused", "order_group_id": group}})
                        .to_string(),
                    );
                    continue;
                }
                out.push(format!(
                    r#"{{"type":"{ty}","sid":{sid},"seq":{},"msg":{}}}"#,
                    sub.seq, ev.msg_json
                ));
            } else {
                out.push(format!(
                    r#"{{"type":"{ty}","sid":{sid},"msg":{}}}"#,
                    ev.msg_json
                ));
            }
        }
        out
    }

    /// Handles one client command, returning the replies. `refused`: channels a `subscribe`
    /// is refused for (a fault).
    fn command(&mut self, text: &str, refused: &[String]) -> Vec<String> {
        let Ok(Value::Object(cmd)) = serde_json::from_str::<Value>(text) else {
            return vec![error_reply(
                0,
                ws_error::UNABLE_TO_PROCESS,
                "Unable to process message",
            )];
        };
        let id = cmd.get("id").and_then(Value::as_u64).unwrap_or(0);
        let params = cmd.get("params").and_then(Value::as_object);
        match cmd.get("cmd").and_then(Value::as_str) {
            Some("subscribe") => self.subscribe(id, params, refused),
            Some("unsubscribe") => self.unsubscribe(id, params),
            Some("list_subscriptions") => {
                let list: Vec<Value> = self
                    .subs
                    .iter()
                    .map(|(sid, s)| json!({"channel": s.channel.name(), "sid": sid}))
                    .collect();
                vec![json!({"id": id, "type": "ok", "msg": list}).to_string()]
            }
            _ => vec![error_reply(
                id,
                ws_error::UNKNOWN_COMMAND,
                "Unknown command",
            )],
        }
    }

    fn subscribe(
        &mut self,
        id: u64,
        params: Option<&serde_json::Map<String, Value>>,
        refused: &[String],
    ) -> Vec<String> {
        let Some(params) = params else {
            return vec![error_reply(
                id,
                ws_error::PARAMS_REQUIRED,
                "Params required",
            )];
        };
        let names: Vec<&str> = params
            .get("channels")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if names.is_empty() {
            return vec![error_reply(
                id,
                ws_error::CHANNELS_REQUIRED,
                "Channels required",
            )];
        }
        let mut channels = Vec::new();
        for name in names {
            match Channel::parse(name) {
                Some(c) => channels.push(c),
                None => {
                    return vec![error_reply(
                        id,
                        ws_error::UNKNOWN_CHANNEL,
                        "Unknown channel",
                    )];
                }
            }
        }
        let mut tickers: Option<HashSet<String>> = params
            .get("market_tickers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            });
        if let Some(t) = params.get("market_ticker").and_then(Value::as_str) {
            tickers
                .get_or_insert_with(HashSet::new)
                .insert(t.to_owned());
        }
        let mut replies = Vec::new();
        let mut refusals = Vec::new();
        for channel in channels {
            if refused.iter().any(|r| r == channel.name()) {
                refusals.push(error_reply(id, 17, "Internal error"));
                continue;
            }
            let existing = self
                .subs
                .iter()
                .find(|(_, s)| s.channel == channel)
                .map(|(sid, _)| *sid);
            let sid = match existing {
                Some(sid) => sid,
                None => {
                    self.next_sid += 1;
                    let filter = (channel != Channel::OrderGroupUpdates)
                        .then(|| tickers.clone())
                        .flatten();
                    self.subs.insert(
                        self.next_sid,
                        Subscription {
                            channel,
                            seq: 0,
                            tickers: filter,
                        },
                    );
                    self.next_sid
                }
            };
            replies.push(
                json!({"id": id, "type": "subscribed", "msg": {"channel": channel.name(), "sid": sid}})
                    .to_string(),
            );
        }
        replies.extend(refusals);
        replies
    }

    fn unsubscribe(
        &mut self,
        id: u64,
        params: Option<&serde_json::Map<String, Value>>,
    ) -> Vec<String> {
        let sids: Vec<u64> = params
            .and_then(|p| p.get("sids"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if sids.is_empty() {
            return vec![error_reply(id, ws_error::SIDS_REQUIRED, "Sids required")];
        }
        sids.into_iter()
            .map(|sid| match self.subs.remove(&sid) {
                Some(s) => {
                    json!({"id": id, "sid": sid, "seq": s.seq, "type": "unsubscribed"}).to_string()
                }
                None => error_reply(id, ws_error::UNKNOWN_SID, "Unknown sid"),
            })
            .collect()
    }
}
