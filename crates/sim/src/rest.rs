//! The exchange's REST paths under `/trade-api/v2`, with its status codes and error bodies.
//!
//! Error bodies come in the three shapes the exchange is recorded sending: nested `{"error":{"code","message"}}` for most 4xx, flat `{"code","message","details"}`
//! for a body that is not valid JSON, and bare `{"msg"}` for a malformed query parameter; plus
//! `429 {"error":"too many requests"}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::auth::AuthFailure;
use super::engine::{EngineError, GroupAct, parse_limit};
use super::{SimState, lock, ratelimit};
use riskd_kalshi::wire::{
    CreateOrderGroupRequest, CreateOrderGroupResponse, CreateOrderV2Request, GetFillsResponse,
    GetOrderGroupsResponse, GetOrderResponse, GetOrdersResponse, UpdateOrderGroupLimitRequest,
};

const GROUPS: &str = "/trade-api/v2/portfolio/order_groups";

/// Everything a REST handler can answer besides success.
#[derive(Debug)]
pub(super) enum ApiError {
    Engine(EngineError),
    /// The body is not JSON of the expected shape (flat error body).
    BadBody(String),
    /// A query parameter is malformed (bare `msg` body).
    BadQuery(String),
    Auth(AuthFailure),
    TooManyRequests,
    Injected,
    NoSuchPath,
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::Engine(e)
    }
}

fn nested(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use EngineError as E;
        match self {
            ApiError::Engine(e) => {
                let message = e.to_string();
                let (status, code) = match e {
                    E::InvalidParameters(_) => (StatusCode::BAD_REQUEST, "invalid_parameters"),
                    E::GroupNotFound | E::OrderNotFound => (StatusCode::NOT_FOUND, "not_found"),
                    E::TooManyGroups(_) => (StatusCode::BAD_REQUEST, "order_group_limit_reached"),
                    E::InvalidOrder(_) => (StatusCode::BAD_REQUEST, "invalid_order"),
                    E::OrderGroupNotFound(_) => (StatusCode::BAD_REQUEST, "order_group_not_found"),
                    E::GroupTriggered(_) => {
                        (StatusCode::BAD_REQUEST, "exceeded_order_group_risk_limit")
                    }
                    E::NotResting(_) => (StatusCode::CONFLICT, "order_not_resting"),
                };
                nested(status, code, message)
            }
            ApiError::BadBody(details) => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({
                    "code": "bad_request",
                    "message": "the request body could not be decoded",
                    "details": details,
                })),
            )
                .into_response(),
            ApiError::BadQuery(msg) => {
                (StatusCode::BAD_REQUEST, axum::Json(json!({"msg": msg}))).into_response()
            }
            ApiError::Auth(f) => {
                let (code, details) = f.code_and_details();
                (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"error": {
                        "code": code,
                        "message": "authentication failed",
                        "details": details,
                    }})),
                )
                    .into_response()
            }
            ApiError::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"error": "too many requests"})),
            )
                .into_response(),
            ApiError::Injected => nested(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_server_error",
                "internal server error (injected by the simulator)".into(),
            ),
            ApiError::NoSuchPath => nested(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint in the simulator".into(),
            ),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok_empty() -> ApiResult {
    Ok((StatusCode::OK, axum::Json(json!({}))).into_response())
}

/// Decodes a JSON body; an empty body counts as `{}` (the exchange's PUTs take an optional body).
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadBody(e.to_string()))
}

/// An optional integer query parameter.
fn query_int(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::BadQuery(format!("invalid value {v:?} for query parameter {name}"))
        }),
    }
}

/// `subaccount` and `exchange_index` of a mutator: query parameters, both defaulting to 0.
fn address(q: &HashMap<String, String>) -> Result<(i64, i64), ApiError> {
    Ok((
        query_int(q, "subaccount")?.unwrap_or(0),
        query_int(q, "exchange_index")?.unwrap_or(0),
    ))
}

async fn create_group(State(st): State<Arc<SimState>>, bytes: Bytes) -> ApiResult {
    let req: CreateOrderGroupRequest = body(&bytes)?;
    let limit = parse_limit(req.contracts_limit, req.contracts_limit_fp.as_deref())?;
    let subaccount = req.subaccount.unwrap_or(0);
    let exchange_index = req.exchange_index.unwrap_or(0);
    let id =
        st.with_engine(|e, now, ev| e.create_group(subaccount, exchange_index, limit, now, ev))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreateOrderGroupResponse {
            order_group_id: id,
            subaccount,
            exchange_index: Some(exchange_index),
        }),
    )
        .into_response())
}

async fn list_groups(
    State(st): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let subaccount = query_int(&q, "subaccount")?;
    let order_groups = lock(&st.engine).list_groups(subaccount);
    Ok(axum::Json(GetOrderGroupsResponse { order_groups }).into_response())
}

async fn get_group(
    State(st): State<Arc<SimState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let subaccount = query_int(&q, "subaccount")?;
    let g = lock(&st.engine).get_group(&id, subaccount)?;
    Ok(axum::Json(g).into_response())
}

async fn delete_group(
    State(st): State<Arc<SimState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (sub, ex) = address(&q)?;
    st.with_engine(|e, now, ev| e.act(GroupAct::Delete, &id, sub, ex, now, ev))?;
    ok_empty()
}

/// `PUT …/{id}/reset`, `…/trigger` and `…/limit`, the group addressed by the query. Reset and
/// trigger take an empty JSON object; limit takes the new limit.
async fn group_action(
    State(st): State<Arc<SimState>>,
    Path((id, action)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> ApiResult {
    let (sub, ex) = address(&q)?;
    match action.as_str() {
        "reset" | "trigger" => {
            let _: Value = body(&bytes)?;
            let act = if action == "reset" {
                GroupAct::Reset
            } else {
                GroupAct::Trigger
            };
            st.with_engine(|e, now, ev| e.act(act, &id, sub, ex, now, ev))?;
        }
        "limit" => {
            let req: UpdateOrderGroupLimitRequest = body(&bytes)?;
            let limit = parse_limit(req.contracts_limit, req.contracts_limit_fp.as_deref())?;
            st.with_engine(|e, now, ev| e.update_limit(&id, sub, ex, limit, now, ev))?;
        }
        _ => return Err(ApiError::NoSuchPath),
    }
    ok_empty()
}

async fn create_order(State(st): State<Arc<SimState>>, bytes: Bytes) -> ApiResult {
    let req: CreateOrderV2Request = body(&bytes)?;
    let resp = st.with_engine(|e, now, ev| e.place_order(&req, now, ev))?;
    Ok((StatusCode::CREATED, axum::Json(resp)).into_response())
}

async fn get_order(State(st): State<Arc<SimState>>, Path(id): Path<String>) -> ApiResult {
    let order = lock(&st.engine).get_order(&id)?;
    Ok(axum::Json(GetOrderResponse { order }).into_response())
}

async fn list_orders(
    State(st): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    // Pages of `limit` (1..=1000, default 100), newest first; the cursor is opaque to the
    // client (here: the offset of the next page) and empty on the last page. Filters are not
    // kept in the cursor: the client passes them again, as on the exchange.
    let subaccount = query_int(&q, "subaccount")?;
    let (limit, from) = page(&q)?;
    let (orders, more) = lock(&st.engine).list_orders(
        q.get("status").map(String::as_str),
        q.get("ticker").map(String::as_str),
        subaccount,
        from,
        limit,
    );
    let cursor = next_cursor(more, from, limit);
    Ok(axum::Json(GetOrdersResponse { orders, cursor }).into_response())
}

/// `GET /portfolio/fills`: newest first, in pages of `limit` (1..=1000, default 100); the
/// cursor is opaque (where in the history the next page starts, so that fills made between
/// pages neither shift nor repeat what follows), empty on the last page, and does not keep
/// the filters (`min_ts`, `max_ts` in Unix seconds, `subaccount`, `ticker`, `order_id`): the
/// client passes them again. Without `subaccount`, every subaccount's fills are listed.
async fn list_fills(
    State(st): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = page_limit(&q)?;
    let before = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.strip_prefix("f")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| ApiError::BadQuery(format!("invalid cursor {c:?}")))?,
        ),
    };
    let (fills, next) = lock(&st.engine).list_fills(
        query_int(&q, "min_ts")?,
        query_int(&q, "max_ts")?,
        query_int(&q, "subaccount")?,
        q.get("ticker").map(String::as_str),
        q.get("order_id").map(String::as_str),
        before,
        limit,
    );
    let cursor = next.map_or_else(String::new, |n| format!("f{n}"));
    Ok(axum::Json(GetFillsResponse { fills, cursor }).into_response())
}

/// The cursor of the page after `from..from + limit`: empty when no more follow.
fn next_cursor(more: bool, from: usize, limit: usize) -> String {
    if more {
        format!("o{}", from + limit)
    } else {
        String::new()
    }
}

/// `limit` (1..=1000, default 100) and the offset a `cursor` names.
fn page(q: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let limit = page_limit(q)?;
    let from = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => c
            .strip_prefix("o")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::BadQuery(format!("invalid cursor {c:?}")))?,
    };
    Ok((limit, from))
}

/// `limit`: 1..=1000, 100 when not given.
fn page_limit(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    Ok(match query_int(q, "limit")? {
        None => 100,
        Some(l @ 1..=1000) => l as usize,
        Some(l) => {
            return Err(ApiError::BadQuery(format!(
                "invalid value {l} for query parameter limit (1..=1000)"
            )));
        }
    })
}

async fn no_such_path() -> ApiError {
    ApiError::NoSuchPath
}

/// Latency, authentication, rate limits and injected errors, in the exchange's order.
async fn guard(State(st): State<Arc<SimState>>, req: Request, next: Next) -> Response {
    st.stats.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    let (latency_ms, answer_late) = {
        let f = lock(&st.faults);
        let applies = f
            .latency_path
            .as_deref()
            .is_none_or(|p| path.starts_with(p));
        (
            if applies { f.latency_ms } else { 0 },
            f.latency_after_apply,
        )
    };
    let latency = Duration::from_millis(latency_ms);
    if latency_ms > 0 && !answer_late {
        tokio::time::sleep(latency).await;
    }
    let now = riskd_kalshi::auth::now_ms();
    if let Err(f) = st
        .keys
        .verify(req.headers(), req.method().as_str(), &path, now)
    {
        st.stats.rejected_auth.fetch_add(1, Ordering::Relaxed);
        return ApiError::Auth(f).into_response();
    }
    let (bucket, cost) = ratelimit::cost(req.method(), &path);
    let admitted = lock(&st.limiter).admit(bucket, cost, tokio::time::Instant::now());
    let (burst, inject, after_apply) = {
        let mut f = lock(&st.faults);
        let burst = f.burst_429 > 0;
        f.burst_429 = f.burst_429.saturating_sub(1);
        let inject = admitted && !burst && f.take_error(&path);
        (burst, inject, f.error_after_apply)
    };
    if !admitted || burst {
        st.stats.rejected_429.fetch_add(1, Ordering::Relaxed);
        return ApiError::TooManyRequests.into_response();
    }
    if inject && !after_apply {
        st.stats.injected_errors.fetch_add(1, Ordering::Relaxed);
        return ApiError::Injected.into_response();
    }
    let resp = next.run(req).await;
    if latency_ms > 0 && answer_late {
        tokio::time::sleep(latency).await;
    }
    if inject {
        st.stats.injected_errors.fetch_add(1, Ordering::Relaxed);
        return ApiError::Injected.into_response();
    }
    resp
}

/// Every answer's `Date` reads `clock_skew_ms` ahead when that fault is set.
async fn skewed_date(State(st): State<Arc<SimState>>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let skew = lock(&st.faults).clock_skew_ms;
    if skew != 0 {
        let now = std::time::SystemTime::now();
        let by = Duration::from_millis(skew.unsigned_abs());
        let t = if skew > 0 { now + by } else { now - by };
        if let Ok(v) = http::HeaderValue::from_str(&riskd_kalshi::clock::http_date(t)) {
            resp.headers_mut().insert(http::header::DATE, v);
        }
    }
    resp
}

/// `GET /exchange/status`: public (no signature), as on the exchange.
async fn exchange_status(State(st): State<Arc<SimState>>) -> Response {
    st.stats.status_requests.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({"exchange_active": true, "trading_active": true})).into_response()
}

/// `GET /account/limits`: the tier and both buckets in tokens (a request costs 10). The
/// unlimited tier, which the exchange does not have, reports no buckets.
async fn account_limits(State(st): State<Arc<SimState>>) -> Response {
    let limits = lock(&st.limiter).limits();
    let bucket = |b: ratelimit::BucketLimits| json!({"refill_rate": b.refill_rate, "bucket_capacity": b.bucket_capacity});
    let mut body = json!({"usage_tier": st.tier.name(), "grants": []});
    if let Some((read, write)) = limits {
        body["read"] = bucket(read);
        body["write"] = bucket(write);
    }
    axum::Json(body).into_response()
}

pub(super) fn router(st: Arc<SimState>) -> Router {
    let public = Router::new()
        .route("/trade-api/v2/exchange/status", get(exchange_status))
        .with_state(st.clone());
    let private = Router::new()
        .route(&format!("{GROUPS}/create"), post(create_group))
        .route(GROUPS, get(list_groups))
        .route(
            &format!("{GROUPS}/{{order_group_id}}"),
            get(get_group).delete(delete_group),
        )
        .route(
            &format!("{GROUPS}/{{order_group_id}}/{{action}}"),
            put(group_action),
        )
        .route("/trade-api/v2/account/limits", get(account_limits))
        .route("/trade-api/v2/portfolio/events/orders", post(create_order))
        .route("/trade-api/v2/portfolio/orders", get(list_orders))
        .route("/trade-api/v2/portfolio/fills", get(list_fills))
        .route("/trade-api/v2/portfolio/orders/{order_id}", get(get_order))
        .route("/trade-api/v2/{*rest}", axum::routing::any(no_such_path))
        .layer(middleware::from_fn_with_state(st.clone(), guard))
        .with_state(st.clone());
    public
        .merge(private)
        .layer(middleware::from_fn_with_state(st, skewed_date))
}
