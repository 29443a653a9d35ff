//! The signed REST client: typed order-group and order calls, the client-side budgets, armed
//! Triggers, and a create that cannot leave an unaccounted group behind.
//!
//! Reads (GET) are retried here, on 429, 5xx and transport errors, with backoff and jitter.
//! Order-group actions are made one attempt at a time (the client is a
//! [`crate::GroupChannel`]); the channel's provided methods retry them by the same rules:
//! reset, trigger, limit and delete are idempotent in effect, a delete that finds the group
//! gone after an attempt whose outcome was unknown has done its job, and a create is retried
//! only when the exchange certainly did not apply it (429, or the connection was never made);
//! when its outcome is unknown, [`RestClient::settle_create`] settles it by listing.
//!
//! Budgets: order-group calls draw on the write budget (the simulator bills even group reads to
//! Write, the cautious reading of the docs); order reads draw on the read budget. Trigger uses
//! [`Priority::Trigger`].

mod account;
mod groups;
mod lane;
mod portfolio;

pub use portfolio::rest_fill;

pub use account::write_burst_seconds;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::{SignedHeaders, Signer, now_ms};
use crate::budget::{Budget, Priority};
use crate::clock::ClockOffset;
use crate::error::{ExchangeError, error_chain};
use crate::group::GroupAddress;
use crate::retry::{Repeat, with_retries};
use crate::trigger::{Armory, ArmoryConfig};
use riskd_units::Contracts;

pub use crate::retry::RetryPolicy;

/// How often the REST client asks the exchange whether it still accepts requests signed ahead
/// of its clock.
pub const PROBE_EVERY: Duration = Duration::from_secs(300);

/// Connections the general pool keeps warm beside a Trigger lane.
const GENERAL_WARM: usize = 4;

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
    /// Roots the Trigger lane trusts for TLS; `None` reads the system's, as the general client
    /// does (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).
    pub lane_tls_roots: Option<Arc<rustls::RootCertStore>>,
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
            lane_tls_roots: None,
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
    clock: Arc<ClockOffset>,
    /// Connections held for Triggers (`None`: off, see [`lane`]).
    lane: Option<Arc<lane::Lane>>,
}

/// An answer: its status, `Date` and body (which may fail to arrive after the status).
struct Sent {
    status: u16,
    date: Option<String>,
    body: Result<bytes::Bytes, ExchangeError>,
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
    repeat: Repeat,
    presigned: Option<SignedHeaders>,
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
            .pool_max_idle_per_host(128)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(15))
            .build()
            .map_err(|e| ClientError::Http(error_chain(&e)))?;
        let budget = |rate: Option<f64>, reserve: f64| match rate {
            Some(r) => Budget::new(r, reserve),
            None => Budget::unlimited(),
        };
        let lane = match lane::Lane::new(&url, cfg.timeout, cfg.lane_tls_roots.clone()) {
            Ok(l) => Some(Arc::new(l)),
            Err(why) => {
                tracing::warn!(%why, "no Trigger lane: Triggers go by the general HTTP client");
                None
            }
        };
        Ok(RestClient {
            lane,
            observer: None,
            http,
            origin,
            armory: Arc::new(Armory::new(signer.clone(), &base_path, cfg.armory.clone())),
            base_path,
            signer,
            write: Arc::new(budget(cfg.write_per_s, cfg.trigger_reserve)),
            read: Arc::new(budget(cfg.read_per_s, 0.0)),
            retry: cfg.retry.clone(),
            clock: Arc::new(ClockOffset::default()),
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
    /// The exchange's clock minus ours (ms), from its answers' `Date`; `None` before the first.
    pub fn clock_offset_ms(&self) -> Option<i64> {
        self.clock.get_ms()
    }

    pub fn armory(&self) -> &Arc<Armory> {
        &self.armory
    }

    /// Keeps armed Triggers fresh until `stop` fires, signing on a blocking thread; asks the
    /// exchange (at once, then every [`PROBE_EVERY`]) for the account's write bucket's size and
    /// whether it accepts Triggers signed ahead.
    pub async fn run_armory(
        &self,
        max_signatures_per_round: usize,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.armory.refresh_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = probe.tick() => {
                    // On a task of its own: a slow or unreachable exchange (the limits read is
                    // retried) must not hold up the re-signing below.
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.fit_write_budget().await;
                        me.probe_signing_ahead().await;
                    });
                }
                _ = tick.tick() => {
                    let armory = self.armory.clone();
                    let _ = tokio::task::spawn_blocking(move || armory.refresh(max_signatures_per_round)).await;
                }
            }
        }
    }

    /// Sends one read signed [`Armory::probe_ahead`] ahead of the clock and tells the armory
    /// whether the exchange took it. An answer that is neither (no answer, a 5xx, a 429)
    /// changes nothing: armed Triggers stay as they are signed until a probe or a Trigger says
    /// otherwise, and before the first answer they are signed at the current time.
    pub async fn probe_signing_ahead(&self) {
        let ahead = self.armory.probe_ahead();
        if ahead.is_zero() {
            return;
        }
        let full_path = format!("{}/portfolio/fills", self.base_path);
        let url = format!("{}{}?limit=1", self.origin, full_path);
        self.read.acquire(Priority::Normal).await;
        let sent_ms = now_ms();
        let stamp = sent_ms.saturating_add(i64::try_from(ahead.as_millis()).unwrap_or(0));
        let headers = self.signer.sign(stamp, "GET", &full_path);
        let mut req = self.http.get(url);
        for (k, v) in headers.pairs() {
            req = req.header(k, v);
        }
        let accepted = match req.send().await {
            Ok(resp) if resp.status().is_success() => true,
            Ok(resp) if resp.status() == reqwest::StatusCode::UNAUTHORIZED => false,
            Ok(resp) => {
                tracing::debug!(
                    status = resp.status().as_u16(),
                    "the signing-ahead probe had no clear answer"
                );
                return;
            }
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "the signing-ahead probe had no answer");
                return;
            }
        };
        if self.armory.set_ahead(accepted) {
            if accepted {
                tracing::info!(ahead = ?self.armory.ahead(), probe = ?ahead, "the exchange accepts requests signed ahead of its clock: armed Triggers are signed ahead, and re-signed less often");
            } else {
                tracing::warn!(probe = ?ahead, "the exchange no longer accepts requests signed ahead of its clock: armed Triggers are signed at the current time");
            }
        }
    }

    /// The Trigger lane's idle connections and the requests it has carried; `None` when there
    /// is no lane (an HTTP proxy is configured, or no TLS roots were found).
    pub fn trigger_lane(&self) -> Option<(usize, u64)> {
        self.lane.as_ref().map(|l| (l.idle_count(), l.answered()))
    }

    /// Keeps `connections` connections open for Triggers (the lane's, or the general pool's
    /// when there is no lane) and a few for everything else, by touching the public
    /// exchange-status endpoint every `every`, until `stop` fires.
    pub async fn keep_warm(
        &self,
        connections: usize,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let path = format!("{}/exchange/status", self.base_path);
        let url = format!("{}{path}", self.origin);
        // With a Trigger lane, the general pool serves the rest (and a Trigger that finds every
        // lane connection busy): a few connections.
        let general = match &self.lane {
            Some(_) => connections.clamp(1, GENERAL_WARM),
            None => connections.max(1),
        };
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let lane = async {
                        if let Some(l) = &self.lane {
                            l.keep(connections, &path).await;
                        }
                    };
                    let probes = (0..general).map(|_| {
                        let req = self.http.get(&url);
                        async move {
                            let sent_ms = now_ms();
                            if let Ok(r) = req.send().await {
                                self.observe_date(&r, sent_ms);
                                let _ = r.bytes().await;
                            }
                        }
                    });
                    futures_util::future::join(futures_util::future::join_all(probes), lane).await;
                }
            }
        }
    }

    /// Takes the exchange's clock from an answer's `Date`.
    fn observe_date(&self, resp: &reqwest::Response, sent_ms: i64) {
        if let Some(date) = resp.headers().get(reqwest::header::DATE)
            && let Ok(date) = date.to_str()
        {
            self.clock.observe(date, sent_ms, now_ms());
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
            repeat,
            mut presigned,
        } = c;
        let full_path = format!("{}{}", self.base_path, path);
        let url = format!("{}{}", self.origin, full_path);
        with_retries(op, &self.retry, repeat, None, |_| {
            // The armed signature, if any, is for the first attempt only.
            let headers = presigned.take();
            let armed_stamp = headers
                .as_ref()
                .and_then(|h| h.timestamp_ms.parse::<i64>().ok());
            let (full_path, url, method, bill) = (&full_path, &url, &method, &bill);
            async move {
                match bill {
                    Bill::Write(p) => self.write.acquire(*p).await,
                    Bill::Read => self.read.acquire(Priority::Normal).await,
                }
                let headers =
                    headers.unwrap_or_else(|| self.signer.sign_now(method.as_str(), full_path));
                let started = tokio::time::Instant::now();
                let sent_ms = now_ms();
                let (status, outcome) = match self
                    .send(op, method, url, full_path, &headers, body, bill)
                    .await
                {
                    Ok(answer) => {
                        let status = answer.status;
                        // Any refusal of a request signed ahead (a 4xx other than "no such
                        // group" or "too many requests") may be the exchange's answer to the
                        // timestamp, whatever code it gives: stop signing ahead, so that the
                        // next attempt is signed now rather than sent again as it was.
                        if (400..500).contains(&status)
                            && !matches!(status, 404 | 429)
                            && let Some(stamp) = armed_stamp
                            && self.armory.refused(stamp, sent_ms)
                        {
                            tracing::warn!(op, status, "the exchange refused a Trigger signed ahead of its clock: armed Triggers are signed at the current time from now on (it is sent again, signed now)");
                        }
                        if status == 429 {
                            match bill {
                                Bill::Write(_) => self.write.drained(),
                                Bill::Read => self.read.drained(),
                            }
                        }
                        if let Some(date) = &answer.date {
                            self.clock.observe(date, sent_ms, now_ms());
                        }
                        match answer.body {
                            Ok(bytes) if (200..300).contains(&status) => (Some(status), Ok(bytes)),
                            Ok(bytes) => (
                                Some(status),
                                Err(ExchangeError::from_response(op, status, &bytes)),
                            ),
                            Err(e) => (Some(status), Err(e)),
                        }
                    }
                    Err(e) => (None, Err(e)),
                };
                if let Some(o) = &self.observer {
                    (o.0)(op, status, started.elapsed());
                }
                outcome
            }
        })
        .await
    }

    /// One request, on the Trigger lane for a Trigger when a lane connection is idle, else by
    /// the general client. A Trigger whose lane connection failed goes by the general client
    /// at once, with the same signature (a Trigger is idempotent, and the signature is fresh).
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        op: &'static str,
        method: &Method,
        url: &str,
        full_path: &str,
        headers: &SignedHeaders,
        body: Option<&Value>,
        bill: &Bill,
    ) -> Result<Sent, ExchangeError> {
        if let (Bill::Write(Priority::Trigger), Some(lane)) = (bill, &self.lane) {
            let bytes = body.map(|b| bytes::Bytes::from(b.to_string()));
            match lane.send(method, full_path, &headers.pairs(), bytes).await {
                Some(Ok(a)) => {
                    return Ok(Sent {
                        status: a.status,
                        date: a.date,
                        body: Ok(a.body),
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(op, error = %e, "Trigger lane connection failed; sending by the general client");
                }
                None => {}
            }
        }
        let mut req = self.http.request(method.clone(), url);
        for (k, v) in headers.pairs() {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ExchangeError::transport(op, &e))?;
        let date = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .map(str::to_owned);
        let status = resp.status().as_u16();
        Ok(Sent {
            status,
            date,
            body: resp
                .bytes()
                .await
                .map_err(|e| ExchangeError::transport(op, &e)),
        })
    }

    /// An idempotent GET whose JSON answer is decoded as `T`.
    async fn get_json<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        bill: Bill,
    ) -> Result<T, ExchangeError> {
        let bytes = self.get_bytes(op, path, bill).await?;
        Self::decode(op, &bytes)
    }

    /// A `GET`'s answer, undecoded: for a caller that reads it in place.
    async fn get_bytes(
        &self,
        op: &'static str,
        path: &str,
        bill: Bill,
    ) -> Result<bytes::Bytes, ExchangeError> {
        self.call(Call {
            op,
            method: Method::GET,
            path,
            body: None,
            bill,
            repeat: Repeat::Safe,
            presigned: None,
        })
        .await
    }

    fn decode<'a, T: serde::Deserialize<'a>>(
        op: &'static str,
        bytes: &'a [u8],
    ) -> Result<T, ExchangeError> {
        serde_json::from_slice(bytes).map_err(|e| ExchangeError::Decode {
            op,
            reason: e.to_string(),
        })
    }
}
