//! The test control surface under `/_sim/` (never one of the exchange's paths; unauthenticated,
//! so bind the simulator to loopback).
//!
//! | method and path                  | body / answer                                          |
//! |----------------------------------|--------------------------------------------------------|
//! | `GET /_sim/groups`               | every group's internal state (triggered, window volume)|
//! | `GET /_sim/groups/{id}`          | one group's internal state                             |
//! | `POST /_sim/orders/{id}/fill`    | `{"count":"3"}`: fill part or all of a resting order   |
//! | `POST /_sim/liquidity`           | `{"ticker":"X","contracts":"5"}` (`null` = unlimited)  |
//! | `POST /_sim/clock/advance`       | `{"ms":15000}`: windows expire as if time had passed   |
//! | `GET`/`POST /_sim/faults`        | the fault set ([`super::Faults`]); POST replaces it    |
//! | `POST /_sim/ws/drop`             | drop every WebSocket connection now                    |
//! | `POST /_sim/ws/end_subscription` | `{"channel":"fill","code":25}`: end that channel's subscriptions with error 10 or 25 (`"silent":true`: with no error) |
//! | `POST /_sim/ws/inject`           | `{"text":"…"}` or `{"binary_base64":"…"}`: send a raw frame to every WebSocket |
//! | `POST /_sim/fix/drop`            | drop every FIX connection now (no Logout)              |
//! | `GET /_sim/stats`                | request, rejection, WebSocket and FIX counters         |

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::engine::EngineError;
use super::rest::ApiError;
use super::{Faults, SimState, lock};
use riskd_units::Contracts;

fn bad(msg: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": msg.into()})),
    )
        .into_response()
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("body: {e}"))
}

async fn groups(State(st): State<Arc<SimState>>) -> Response {
    axum::Json(st.groups()).into_response()
}

async fn group(State(st): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    match st.groups().into_iter().find(|g| g.id == id) {
        Some(g) => axum::Json(g).into_response(),
        None => ApiError::Engine(EngineError::GroupNotFound).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FillBody {
    count: String,
}

async fn fill(State(st): State<Arc<SimState>>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let b: FillBody = match parse(&bytes) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let count = match Contracts::parse(&b.count) {
        Ok(c) => c,
        Err(e) => return bad(format!("count: {e}")),
    };
    match st.fill_resting(&id, count) {
        Ok(()) => axum::Json(json!({"filled": count.to_string()})).into_response(),
        Err(e) => ApiError::Engine(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiquidityBody {
    ticker: String,
    contracts: Option<String>,
}

async fn liquidity(State(st): State<Arc<SimState>>, bytes: Bytes) -> Response {
    let b: LiquidityBody = match parse(&bytes) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let contracts = match b.contracts.as_deref().map(Contracts::parse).transpose() {
        Ok(c) => c,
        Err(e) => return bad(format!("contracts: {e}")),
    };
    lock(&st.engine).set_liquidity(&b.ticker, contracts);
    axum::Json(json!({"ticker": b.ticker, "contracts": contracts.map(|c| c.to_string())}))
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    ms: u64,
}

async fn advance(State(st): State<Arc<SimState>>, bytes: Bytes) -> Response {
    let b: AdvanceBody = match parse(&bytes) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let offset = st.advance_clock(Duration::from_millis(b.ms));
    axum::Json(json!({"offset_ms": offset, "now_ms": st.now_ms()})).into_response()
}

async fn get_faults(State(st): State<Arc<SimState>>) -> Response {
    axum::Json(st.faults()).into_response()
}

async fn set_faults(State(st): State<Arc<SimState>>, bytes: Bytes) -> Response {
    let f: Faults = match parse(&bytes) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    if let Err(e) = f.validate() {
        return bad(e);
    }
    st.set_faults(f.clone());
    axum::Json(f).into_response()
}

async fn drop_ws(State(st): State<Arc<SimState>>) -> Response {
    let open = st.stats.ws_sessions.load(Ordering::Relaxed);
    st.drop_websockets();
    axum::Json(json!({"dropped": open})).into_response()
}

async fn drop_fix(State(st): State<Arc<SimState>>) -> Response {
    let open = st.drop_fix_sessions();
    axum::Json(json!({"dropped": open})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectBody {
    text: Option<String>,
    binary_base64: Option<String>,
}

async fn inject(State(st): State<Arc<SimState>>, bytes: Bytes) -> Response {
    let b: InjectBody = match parse(&bytes) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let msg = match (b.text, b.binary_base64) {
        (Some(t), None) => Message::text(t),
        (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(raw) => Message::binary(raw),
            Err(e) => return bad(format!("binary_base64: {e}")),
        },
        _ => return bad("give exactly one of text or binary_base64"),
    };
    let sent = st.inject.send(msg).unwrap_or(0);
    axum::Json(json!({"sent_to": sent})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndBody {
    channel: String,
    #[serde(default)]
    code: u32,
    #[serde(default)]
    silent: bool,
}

async fn end_subscription(State(st): State<Arc<SimState>>, bytes: Bytes) -> Response {
    let b: EndBody = match parse(&bytes) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let Some(channel) = super::Channel::parse(&b.channel) else {
        return bad(format!(
            "channel: {:?} is not one the simulator serves",
            b.channel
        ));
    };
    if !b.silent && !riskd_kalshi::wire::ws_error::is_terminal(b.code as u64) {
        return bad(format!(
            "code: {} is not a terminal channel error (10 or 25)",
            b.code
        ));
    }
    let sent = st
        .ends
        .send(super::SubscriptionEnd {
            channel,
            code: b.code,
            silent: b.silent,
        })
        .unwrap_or(0);
    axum::Json(json!({"sent_to": sent})).into_response()
}

async fn stats(State(st): State<Arc<SimState>>) -> Response {
    let s = &st.stats;
    axum::Json(json!({
        "requests": s.requests.load(Ordering::Relaxed),
        "rejected_auth": s.rejected_auth.load(Ordering::Relaxed),
        "rejected_429": s.rejected_429.load(Ordering::Relaxed),
        "injected_errors": s.injected_errors.load(Ordering::Relaxed),
        "ws_sessions": s.ws_sessions.load(Ordering::Relaxed),
        "ws_fill_subscribed": s.ws_fill_subscribed.load(Ordering::Relaxed),
        "ws_messages": s.ws_messages.load(Ordering::Relaxed),
        "ws_pongs": s.ws_pongs.load(Ordering::Relaxed),
        "status_requests": s.status_requests.load(Ordering::Relaxed),
        "fix_logons": s.fix_logons.load(Ordering::Relaxed),
        "fix_logons_refused": s.fix_logons_refused.load(Ordering::Relaxed),
        "fix_requests": s.fix_requests.load(Ordering::Relaxed),
        "fix_sessions": st.fix_sessions(),
    }))
    .into_response()
}

pub(super) fn router(st: Arc<SimState>) -> Router {
    Router::new()
        .route("/_sim/groups", get(groups))
        .route("/_sim/groups/{id}", get(group))
        .route("/_sim/orders/{id}/fill", post(fill))
        .route("/_sim/liquidity", post(liquidity))
        .route("/_sim/clock/advance", post(advance))
        .route("/_sim/faults", get(get_faults).post(set_faults))
        .route("/_sim/ws/drop", post(drop_ws))
        .route("/_sim/ws/inject", post(inject))
        .route("/_sim/ws/end_subscription", post(end_subscription))
        .route("/_sim/fix/drop", post(drop_fix))
        .route("/_sim/stats", get(stats))
        .with_state(st)
}
