//! The signed REST client: typed order-group and order calls, the client-side budgets, retries
//! with backoff and jitter for idempotent calls, armed Triggers, and a create that cannot leave
//! an unaccounted group behind.
//!
//! Which calls retry: GET, PUT (reset, trigger, limit) and DELETE are idempotent in effect and
//! are retried on 429, 5xx and transport errors. A DELETE that finds the group gone after an
//! attempt whose outcome was unknown has done its job. Create is not idempotent: it is retried
//! only when the exchange certainly did not apply it (429, or the connection was never made);
//! when its outcome is unknown, [`RestClient::create_group_reconciled`] settles it by listing.
//!
//! Budgets: order-group calls draw on the write budget (the simulator bills even group reads to
//! Write, the cautious reading of the docs); order reads draw on the read budget. Trigger uses
//! [`Priority::Trigger`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::auth::{SignedHeaders, Signer, now_ms};
use super::budget::{Budget, Priority};
use super::error::{ExchangeError, error_chain};
use super::group::{GroupAddress, GroupDetail, GroupId, ListedGroup, OrderInfo};
use super::op::Op;
use super::trigger::{Armory, ArmoryConfig};
use super::wire;
use riskd_units::Contracts;

/// Backoff between attempts: exponential from `initial`, capped at `max`, with full jitter.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `n` (1-based retry count): uniform in `[0, min(max, initial·2ⁿ)]`.
    pub fn delay(&self, n: u32) -> Duration {
        let cap = self.initial.saturating_mul(1u32 << n.min(16)).min(self.max);
        cap.mul_f64(fastrand::f64())
    }
}

#[derive(Debug, Clone)]
pub struct RestConfig {
    /// e.g. `https://external-api.kalshi.com/trade-api/v2` or the simulator's
    /// `http://127.0.0.1:8280/trade-api/v2`.
    pub base_url: String,
    /// Write requests a second (the tier's write tokens / 10); `None` is unlimited.
    pub write_per_s: Option<f64>,
    /// Share of the write budget held back for Trigger.
    pub trigger_reserve: f64,
    /// Read requests a second; `None` is unlimited.
    pub read_per_s: Option<f64>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub armory: ArmoryConfig,
}

impl RestConfig {
    pub fn new(base_url: impl Into<String>) -> RestConfig {
        RestConfig {
            base_url: base_url.into(),
            write_per_s: Some(10.0),
            trigger_reserve: 0.5,
            read_per_s: Some(20.0),
            timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            armory: ArmoryConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid exchange URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// How a create whose first answer was unclear was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The exchange created the group and said so.
    Created(GroupAddress),
    /// The answer was lost, but listing found exactly one new group that matches: it is ours.
    Adopted(GroupAddress),
    /// Listing found several new matching groups; the caller must decide (and report) which to
    /// keep. None of them has been adopted.
    Ambiguous(Vec<GroupAddress>),
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The exchange refused the create: nothing was created.
    #[error(transparent)]
    Refused(ExchangeError),
    /// The create may or may not have happened and listing could not tell.
    #[error(
        "create of a group (subaccount {subaccount}, exchange index {exchange_index}, limit {limit}) is unsettled: {last}"
    )]
    Unsettled {
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
        last: ExchangeError,
    },
}

/// Called after every attempt with the operation, the HTTP status (none when no answer came)
/// and how long it took: the metrics hook.
#[derive(Clone)]
pub struct Observer(pub Arc<dyn Fn(&'static str, Option<u16>, Duration) + Send + Sync>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// The exchange's REST API, signed, budgeted and retried. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RestClient {
    observer: Option<Observer>,
    http: reqwest::Client,
    /// `scheme://host[:port]`
    origin: String,
    /// `/trade-api/v2`
    base_path: String,
    signer: Signer,
    write: Arc<Budget>,
    read: Arc<Budget>,
    retry: RetryPolicy,
    armory: Arc<Armory>,
}

enum Bill {
    Write(Priority),
    Read,
}

/// One request: `path` is relative to the base path and may carry a query; `presigned` (an
/// armed Trigger) is used for the first attempt if given.
struct Call<'a> {
    op: &'static str,
    method: Method,
    path: &'a str,
    body: Option<&'a Value>,
    bill: Bill,
    idempotent: bool,
    presigned: Option<SignedHeaders>,
    /// A 404 after an earlier attempt whose outcome was unknown means that attempt did it
    /// (a delete): success.
    gone_ok: bool,
}

impl RestClient {
    pub fn new(cfg: &RestConfig, signer: Signer) -> Result<RestClient, ClientError> {
        let url = reqwest::Url::parse(&cfg.base_url).map_err(|e| ClientError::Url {
            url: cfg.base_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ClientError::Url {
                url: cfg.base_url.clone(),
                reason: "expected http:// or https:// with a host".into(),
            });
        }
        let origin = url.origin().ascii_serialization();
        let base_path = url.path().trim_end_matches('/').to_owned();
        // Connections are kept open indefinitely and probed by TCP keepalive, so that a Trigger
        // never pays a TCP or TLS handshake; `keep_warm` refreshes them.
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(3)))
            .pool_idle_timeout(None)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(15))
            .build()
            .map_err(|e| ClientError::Http(error_chain(&e)))?;
        let budget = |rate: Option<f64>, reserve: f64| match rate {
            Some(r) => Budget::new(r, reserve),
            None => Budget::unlimited(),
        };
        Ok(RestClient {
            observer: None,
            http,
            origin,
            armory: Arc::new(Armory::new(signer.clone(), &base_path, cfg.armory.clone())),
            base_path,
            signer,
            write: Arc::new(budget(cfg.write_per_s, cfg.trigger_reserve)),
            read: Arc::new(budget(cfg.read_per_s, 0.0)),
            retry: cfg.retry.clone(),
        })
    }

    /// Reports every attempt to `observer` (metrics).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The write budget, which a FIX session shares (the exchange bills both from the same
    /// buckets).
    pub fn write_budget(&self) -> Arc<Budget> {
        self.write.clone()
    }

    /// The armed-Trigger set; the owner arms groups and runs [`RestClient::run_armory`].
    pub fn armory(&self) -> &Arc<Armory> {
        &self.armory
    }

    /// Keeps armed Triggers fresh until `stop` fires, signing on a blocking thread.
    pub async fn run_armory(
        &self,
        max_signatures_per_round: usize,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.armory.refresh_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let armory = self.armory.clone();
                    let _ = tokio::task::spawn_blocking(move || armory.refresh(max_signatures_per_round)).await;
                }
            }
        }
    }

    /// Keeps `connections` pooled connections open by touching the public exchange-status
    /// endpoint every `every`, until `stop` fires.
    pub async fn keep_warm(
        &self,
        connections: usize,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let url = format!("{}{}/exchange/status", self.origin, self.base_path);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let probes = (0..connections.max(1)).map(|_| {
                        let req = self.http.get(&url);
                        async move {
                            if let Ok(r) = req.send().await {
                                let _ = r.bytes().await;
                            }
                        }
                    });
                    futures_util::future::join_all(probes).await;
                }
            }
        }
    }

    /// One call, with budget, signing and retries.
    async fn call(&self, c: Call<'_>) -> Result<bytes::Bytes, ExchangeError> {
        let Call {
            op,
            method,
            path,
            body,
            bill,
            idempotent,
            mut presigned,
            gone_ok,
        } = c;
        let full_path = format!("{}{}", self.base_path, path);
        let url = format!("{}{}", self.origin, full_path);
        let mut attempt = 0;
        let mut unclear = false;
        loop {
            match &bill {
                Bill::Write(p) => self.write.acquire(*p).await,
                Bill::Read => self.read.acquire(Priority::Normal).await,
            }
            let headers = match presigned.take() {
                Some(h) => h,
                None => self.signer.sign_now(method.as_str(), &full_path),
            };
            let mut req = self.http.request(method.clone(), &url);
            for (k, v) in headers.pairs() {
                req = req.header(k, v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let started = tokio::time::Instant::now();
            let (status, outcome) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(bytes) if (200..300).contains(&status) => (Some(status), Ok(bytes)),
                        Ok(bytes) => (
                            Some(status),
                            Err(ExchangeError::from_response(op, status, &bytes)),
                        ),
                        Err(e) => (Some(status), Err(ExchangeError::transport(op, &e))),
                    }
                }
                Err(e) => (None, Err(ExchangeError::transport(op, &e))),
            };
            if let Some(o) = &self.observer {
                (o.0)(op, status, started.elapsed());
            }
            let err = match outcome {
                Ok(bytes) => return Ok(bytes),
                Err(e) => e,
            };
            if gone_ok && unclear && err.is_not_found() {
                return Ok(bytes::Bytes::new());
            }
            unclear |= err.outcome_unknown();
            attempt += 1;
            // A signature that aged past the exchange's window on the way (an armed Trigger's
            // plus a slow path) proves nothing was applied: sign afresh and go again at once.
            if err.is_timestamp_expired() && attempt < self.retry.attempts {
                tracing::warn!(op, attempt, "signature expired on the way; signing afresh");
                continue;
            }
            let may_retry = err.is_retryable() && (idempotent || !err.outcome_unknown());
            if !may_retry || attempt >= self.retry.attempts {
                return Err(err);
            }
            tracing::debug!(op, attempt, error = %err, "retrying exchange call");
            tokio::time::sleep(self.retry.delay(attempt)).await;
        }
    }

    /// An idempotent GET whose JSON answer is decoded as `T`.
    async fn get_json<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        bill: Bill,
    ) -> Result<T, ExchangeError> {
        let bytes = self
            .call(Call {
                op,
                method: Method::GET,
                path,
                body: None,
                bill,
                idempotent: true,
                presigned: None,
                gone_ok: false,
            })
            .await?;
        Self::decode(op, &bytes)
    }

    fn decode<T: DeserializeOwned>(op: &'static str, bytes: &[u8]) -> Result<T, ExchangeError> {
        serde_json::from_slice(bytes).map_err(|e| ExchangeError::Decode {
            op,
            reason: e.to_string(),
        })
    }

    /// One create attempt (retried only while certainly not applied).
    pub async fn create_group(
        &self,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
    ) -> Result<GroupAddress, ExchangeError> {
        let body = serde_json::to_value(wire::CreateOrderGroupRequest {
            subaccount: Some(subaccount.into()),
            contracts_limit: None,
            contracts_limit_fp: Some(limit.to_string()),
            exchange_index: Some(exchange_index.into()),
        })
        .unwrap_or(Value::Null);
        let bytes = self
            .call(Call {
                op: Op::CreateOrderGroup.as_str(),
                method: Method::POST,
                path: "/portfolio/order_groups/create",
                body: Some(&body),
                bill: Bill::Write(Priority::Normal),
                idempotent: false,
                presigned: None,
                gone_ok: false,
            })
            .await?;
        let r: wire::CreateOrderGroupResponse =
            Self::decode(Op::CreateOrderGroup.as_str(), &bytes)?;
        Ok(GroupAddress {
            id: GroupId::new(r.order_group_id),
            subaccount,
            exchange_index,
        })
    }

    /// A create that settles an unknown outcome by listing: a new group (not in `known`) in
    /// the same subaccount with the same exchange index and limit is the one this call made.
    /// The exchange's reads may lag a write by some hundreds of milliseconds, so an empty
    /// listing is checked again before the create is tried once more.
    pub async fn create_group_reconciled(
        &self,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
        known: &HashSet<GroupId>,
    ) -> Result<CreateOutcome, CreateError> {
        self.settle_create(
            || self.create_group(subaccount, exchange_index, limit),
            subaccount,
            exchange_index,
            limit,
            known,
        )
        .await
    }

    /// [`RestClient::create_group_reconciled`] with the create made by `create` (over REST or
    /// FIX); the settling is always by REST listing.
    pub async fn settle_create<F>(
        &self,
        create: impl Fn() -> F,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
        known: &HashSet<GroupId>,
    ) -> Result<CreateOutcome, CreateError>
    where
        F: std::future::Future<Output = Result<GroupAddress, ExchangeError>>,
    {
        const SETTLE_ROUNDS: u32 = 3;
        let unsettled = |last| CreateError::Unsettled {
            subaccount,
            exchange_index,
            limit,
            last,
        };
        let mut last = None;
        for _ in 0..self.retry.attempts.max(1) {
            match create().await {
                Ok(g) => return Ok(CreateOutcome::Created(g)),
                Err(e) if !e.outcome_unknown() => return Err(CreateError::Refused(e)),
                Err(e) => {
                    tracing::warn!(error = %e, subaccount, exchange_index, %limit, "order-group create outcome unknown; settling by listing");
                    last = Some(e);
                }
            }
            for round in 0..SETTLE_ROUNDS {
                tokio::time::sleep(self.retry.initial * (round + 1) * 4).await;
                let listed = match self.list_groups(Some(subaccount)).await {
                    Ok(l) => l,
                    Err(e) => return Err(unsettled(e)),
                };
                let new: Vec<GroupAddress> = listed
                    .into_iter()
                    .filter(|g| {
                        !known.contains(&g.id)
                            && g.exchange_index == exchange_index
                            && g.contracts_limit == Some(limit)
                    })
                    .map(|g| GroupAddress {
                        id: g.id,
                        subaccount,
                        exchange_index,
                    })
                    .collect();
                match new.len() {
                    0 => continue,
                    1 => return Ok(CreateOutcome::Adopted(new[0].clone())),
                    _ => return Ok(CreateOutcome::Ambiguous(new)),
                }
            }
            // Not there after settling: the create did not happen; try again.
        }
        Err(unsettled(last.unwrap_or(ExchangeError::Decode {
            op: Op::CreateOrderGroup.as_str(),
            reason: "no attempt made".into(),
        })))
    }

    /// Every group, or one subaccount's.
    pub async fn list_groups(
        &self,
        subaccount: Option<u8>,
    ) -> Result<Vec<ListedGroup>, ExchangeError> {
        let path = match subaccount {
            Some(s) => format!("/portfolio/order_groups?subaccount={s}"),
            None => "/portfolio/order_groups".to_owned(),
        };
        let r: wire::GetOrderGroupsResponse = self
            .get_json(
                Op::ListOrderGroups.as_str(),
                &path,
                Bill::Write(Priority::Normal),
            )
            .await?;
        Ok(r.order_groups
            .into_iter()
            .map(|g| ListedGroup {
                id: GroupId::new(g.id),
                contracts_limit: parse_limit(g.contracts_limit_fp.as_deref(), g.contracts_limit),
                exchange_index: g.exchange_index.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
            })
            .collect())
    }

    /// Every group on the account with its subaccount and limit. The listing has no subaccount
    /// field, so each subaccount (0..=63) is listed until every group of the account-wide
    /// listing has been placed.
    pub async fn list_account_groups(
        &self,
    ) -> Result<Vec<(GroupAddress, Option<Contracts>)>, ExchangeError> {
        let all = self.list_groups(None).await?;
        let mut left: HashSet<GroupId> = all.iter().map(|g| g.id.clone()).collect();
        let mut out = Vec::new();
        for s in 0..=63u8 {
            if left.is_empty() {
                break;
            }
            for g in self.list_groups(Some(s)).await? {
                if left.remove(&g.id) {
                    out.push((
                        GroupAddress {
                            id: g.id,
                            subaccount: s,
                            exchange_index: g.exchange_index,
                        },
                        g.contracts_limit,
                    ));
                }
            }
        }
        Ok(out)
    }

    pub async fn get_group(
        &self,
        id: &GroupId,
        subaccount: Option<u8>,
    ) -> Result<GroupDetail, ExchangeError> {
        let path = match subaccount {
            Some(s) => format!("/portfolio/order_groups/{id}?subaccount={s}"),
            None => format!("/portfolio/order_groups/{id}"),
        };
        let r: wire::GetOrderGroupResponse = self
            .get_json(
                Op::GetOrderGroup.as_str(),
                &path,
                Bill::Write(Priority::Normal),
            )
            .await?;
        Ok(GroupDetail {
            orders: r.orders,
            contracts_limit: parse_limit(r.contracts_limit_fp.as_deref(), None),
            exchange_index: r.exchange_index.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
        })
    }

    /// Deletes a group; a group already gone after an unclear attempt counts as deleted.
    /// Deletes a group. Retried like any idempotent call (one layer of retries); a group
    /// already gone after an attempt whose outcome was unknown counts as deleted.
    pub async fn delete_group(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        let path = format!("/portfolio/order_groups/{}{}", g.id, query(g));
        self.call(Call {
            op: Op::DeleteOrderGroup.as_str(),
            method: Method::DELETE,
            path: &path,
            body: None,
            bill: Bill::Write(Priority::Normal),
            idempotent: true,
            presigned: None,
            gone_ok: true,
        })
        .await
        .map(drop)
    }

    pub async fn reset_group(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        let op = Op::ResetOrderGroup;
        self.put_action(g, op, "reset", Priority::Normal, None)
            .await
    }

    /// Triggers a group: first in line for the budget, using an armed signature when fresh.
    pub async fn trigger_group(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        let armed = self.armory.take(g, now_ms());
        let op = Op::TriggerOrderGroup;
        self.put_action(g, op, "trigger", Priority::Trigger, armed)
            .await
    }

    /// `PUT /portfolio/order_groups/{id}/{action}` with an empty object: reset or trigger.
    async fn put_action(
        &self,
        g: &GroupAddress,
        op: Op,
        action: &str,
        priority: Priority,
        presigned: Option<SignedHeaders>,
    ) -> Result<(), ExchangeError> {
        let path = format!("/portfolio/order_groups/{}/{action}{}", g.id, query(g));
        self.call(Call {
            op: op.as_str(),
            method: Method::PUT,
            path: &path,
            body: Some(&json!({})),
            bill: Bill::Write(priority),
            idempotent: true,
            presigned,
            gone_ok: false,
        })
        .await
        .map(drop)
    }

    pub async fn update_limit(
        &self,
        g: &GroupAddress,
        limit: Contracts,
    ) -> Result<(), ExchangeError> {
        let path = format!("/portfolio/order_groups/{}/limit{}", g.id, query(g));
        let body = json!({"contracts_limit_fp": limit.to_string()});
        self.call(Call {
            op: Op::UpdateOrderGroupLimit.as_str(),
            method: Method::PUT,
            path: &path,
            body: Some(&body),
            bill: Bill::Write(Priority::Normal),
            idempotent: true,
            presigned: None,
            gone_ok: false,
        })
        .await
        .map(drop)
    }

    /// An order's group and status (read budget).
    pub async fn get_order(&self, order_id: &str) -> Result<OrderInfo, ExchangeError> {
        let path = format!("/portfolio/orders/{order_id}");
        let r: wire::GetOrderResponse = self
            .get_json(Op::GetOrder.as_str(), &path, Bill::Read)
            .await?;
        Ok(order_info(r.order))
    }

    /// The account's fills from `min_ts` (Unix seconds) on, oldest first, read from
    /// `GET /portfolio/fills` a page of 1,000 at a time following cursors (read budget). With
    /// `subaccount`, that subaccount's only. A fill that cannot be read or is implausible (as
    /// the stream decoder judges it) is left out and logged. Times come from `created_time`
    /// (to the millisecond) or, failing that, `ts` (to the second).
    pub async fn list_fills(
        &self,
        min_ts: i64,
        subaccount: Option<u8>,
    ) -> Result<Vec<super::ws::Fill>, ExchangeError> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let mut path = format!("/portfolio/fills?limit=1000&min_ts={}", min_ts.max(0));
            if let Some(s) = subaccount {
                path.push_str(&format!("&subaccount={s}"));
            }
            if !cursor.is_empty() {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let r: wire::GetFillsResponse = self
                .get_json(Op::ListFills.as_str(), &path, Bill::Read)
                .await?;
            for f in r.fills {
                match rest_fill(&f) {
                    Ok(fill) => out.push(fill),
                    Err(why) => {
                        tracing::warn!(trade_id = %f.trade_id, reason = %why, "a listed fill could not be read; left out")
                    }
                }
            }
            if r.cursor.is_empty() || r.cursor == cursor {
                break;
            }
            cursor = r.cursor;
        }
        out.sort_by_key(|f| f.ts_ms);
        Ok(out)
    }

    /// One page of orders, newest first (read budget): the orders and the next page's cursor
    /// (empty after the last).
    pub async fn orders_page(
        &self,
        cursor: &str,
    ) -> Result<(Vec<OrderInfo>, String), ExchangeError> {
        let mut path = "/portfolio/orders?limit=1000".to_owned();
        if !cursor.is_empty() {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let r: wire::GetOrdersResponse = self
            .get_json(Op::ListOrders.as_str(), &path, Bill::Read)
            .await?;
        Ok((r.orders.into_iter().map(order_info).collect(), r.cursor))
    }

    /// Orders, newest first, optionally only those with `status` (read budget). Follows the
    /// exchange's cursors to the last page (an empty cursor), a page of 1,000 at a time.
    pub async fn list_orders(&self, status: Option<&str>) -> Result<Vec<OrderInfo>, ExchangeError> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let mut path = "/portfolio/orders?limit=1000".to_owned();
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            if !cursor.is_empty() {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let r: wire::GetOrdersResponse = self
                .get_json(Op::ListOrders.as_str(), &path, Bill::Read)
                .await?;
            out.extend(r.orders.into_iter().map(order_info));
            if r.cursor.is_empty() || r.cursor == cursor {
                return Ok(out);
            }
            cursor = r.cursor;
        }
    }
}

/// The query string order-group mutators carry: the group's own subaccount and exchange index.
fn query(g: &GroupAddress) -> String {
    format!(
        "?subaccount={}&exchange_index={}",
        g.subaccount, g.exchange_index
    )
}

fn order_info(o: wire::Order) -> OrderInfo {
    OrderInfo {
        order_id: o.order_id,
        group_id: o.order_group_id.filter(|g| !g.is_empty()).map(GroupId::new),
        status: o.status,
        ticker: o.ticker,
        subaccount: o.subaccount_number.and_then(|s| u8::try_from(s).ok()),
    }
}

/// A listed fill in the stream's terms, bounded as the stream decoder bounds it.
fn rest_fill(f: &wire::RestFill) -> Result<super::ws::Fill, String> {
    use riskd_units::Dollars;
    let count = Contracts::parse(&f.count_fp).map_err(|e| format!("count_fp: {e}"))?;
    let yes_price =
        Dollars::parse(&f.yes_price_dollars).map_err(|e| format!("yes_price_dollars: {e}"))?;
    if count > super::ws::MAX_FILL_COUNT || yes_price > Dollars::ONE || f.trade_id.is_empty() {
        return Err(format!(
            "implausible: {count} contracts at {yes_price}, trade id {:?}",
            f.trade_id
        ));
    }
    let ts_ms = f
        .created_time
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .or(f.ts.map(|s| s.saturating_mul(1000)))
        .ok_or("no created_time or ts")?;
    Ok(super::ws::Fill {
        trade_id: f.trade_id.clone(),
        order_id: f.order_id.clone(),
        ticker: f.ticker.clone(),
        count,
        yes_price,
        ts_ms,
        subaccount: f.subaccount.and_then(|s| u8::try_from(s).ok()),
        exchange_index: 0,
        bought_yes: f.side.as_deref().and_then(|s| match s {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        }),
    })
}

fn parse_limit(fp: Option<&str>, legacy: Option<i64>) -> Option<Contracts> {
    match fp {
        Some(t) => Contracts::parse(t).ok(),
        None => legacy.map(Contracts::from_whole),
    }
}
