//! The FIX session layer, initiator side: FIXT.1.1 with FIX50SP2 as the application version,
//! over TLS (or plain TCP to a local stunnel or the simulator).
//!
//! - **Logon**: `98=0`, `108=HeartBtInt`, `141=Y` (the KalshiNR session
//!   has no retransmission and wants sequence numbers reset at every logon), `1137=9`, and the
//!   RSA-PSS signature of `SendingTime␁A␁MsgSeqNum␁SenderCompID␁TargetCompID` in `96 RawData`
//!   with `95 RawDataLength` before it (the docs' examples omit 95, but QuickFIX refuses a 96
//!   without it, so it is always sent).
//! - **Heartbeats**: a Heartbeat after `HeartBtInt` without sending; a TestRequest after
//!   `HeartBtInt` and a bit without hearing anything, and the connection is dropped if that goes
//!   unanswered for another interval. A TestRequest from the exchange is answered at once.
//! - **Sequence numbers**: ours start at 1 at every logon; the exchange's are checked. A gap
//!   cannot be filled on this session type (no retransmission), so it is logged and skipped;
//!   a number lower than expected without PossDupFlag ends the session, as FIX requires. A
//!   ResendRequest is answered with a gap fill: group actions are never replayed late.
//! - **Requests** are serialised: one in flight at a time, because the exchange's answer (UOH)
//!   carries no request id. Triggers go ahead of queued requests. An
//!   answer that does not come within `answer_timeout` fails the request as "outcome unknown"
//!   and drops the connection, so a late answer can never be taken for the next request's.
//! - **Rejects**: a session Reject (35=3) or BusinessMessageReject (35=j) whose RefSeqNum is the
//!   request in flight fails it with a typed [`ExchangeError`] naming the reason.
//! - **Reconnect**: with the exchange calls' backoff (`reconnect`, a [`RetryPolicy`]), for as
//!   long as the session runs; requests wait in the queue for up to `queue_timeout` and then
//!   fail as certainly not sent.
//! - **Logout** on stop, waiting briefly for the exchange's Logout.

use crate::fix::tag;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod task;

use super::codec::Message;
use crate::budget::{Budget, Priority};
use crate::rest::Observer;
use crate::retry::RetryPolicy;
use crate::{ExchangeError, Signer};
use task::Task;

/// The transport version FIX 5.0 rides on.
pub const BEGIN_STRING: &str = "FIXT.1.1";
/// `1137 DefaultApplVerID` for FIX50SP2.
pub const APPL_VER_FIX50SP2: &str = "9";
/// The order-entry session without retransmission, where order groups live.
pub const TARGET_NR: &str = "KalshiNR";

/// Where the FIX acceptor is: `tls://host:port` (the exchange; also a bare `host:port`) or
/// `tcp://host:port` (plain TCP: a local stunnel, the simulator, a test acceptor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl FixAddr {
    pub fn parse(text: &str) -> Result<FixAddr, String> {
        let (tls, rest) = match text.split_once("://") {
            Some(("tls", r)) => (true, r),
            Some(("tcp", r)) => (false, r),
            Some((scheme, _)) => {
                return Err(format!(
                    "{text:?}: scheme {scheme:?} is not tls:// or tcp://"
                ));
            }
            None => (true, text),
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{text:?}: {port:?} is not a port number"))?;
        if host.is_empty() || host.contains('/') {
            return Err(format!("{text:?}: no host"));
        }
        Ok(FixAddr {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for FixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "tls" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct FixConfig {
    pub addr: FixAddr,
    /// 56 TargetCompID: the session type.
    pub target_comp_id: String,
    /// 108 HeartBtInt (the exchange wants more than 3 s).
    pub heartbeat: Duration,
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// How long the Logon answer and each request's answer may take.
    pub answer_timeout: Duration,
    /// How long a request may wait for a logged-on session before it fails as not sent.
    pub queue_timeout: Duration,
    /// The pause before each reconnect (its `attempts` is not used: the session reconnects for
    /// as long as it runs).
    pub reconnect: RetryPolicy,
    /// Roots trusted for TLS; `None` reads the system's (`SSL_CERT_FILE` and `SSL_CERT_DIR`
    /// are honoured).
    pub tls_roots: Option<Arc<rustls::RootCertStore>>,
}

impl FixConfig {
    pub fn new(addr: FixAddr) -> FixConfig {
        FixConfig {
            addr,
            target_comp_id: TARGET_NR.to_owned(),
            heartbeat: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(5),
            queue_timeout: Duration::from_secs(10),
            reconnect: RetryPolicy {
                attempts: u32::MAX,
                initial: Duration::from_millis(250),
                max: Duration::from_secs(10),
            },
            tls_roots: None,
        }
    }
}

/// `52 SendingTime` as the exchange wants it: UTC `YYYYMMDD-HH:MM:SS.mmm`.
pub fn sending_time(epoch_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(epoch_ms.max(0) as u64);
    // 2026-11-23T09:09:18.126Z -> 20261123-09:09:18.126
    let rfc = humantime::format_rfc3339_millis(t).to_string();
    let mut out = String::with_capacity(21);
    for (i, c) in rfc.chars().enumerate() {
        match (i, c) {
            (4 | 7, '-') | (_, 'Z') => {}
            (10, 'T') => out.push('-'),
            (_, c) => out.push(c),
        }
    }
    out
}

/// Reads `YYYYMMDD-HH:MM:SS[.mmm]` back into epoch milliseconds.
pub fn parse_sending_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 17 || b[8] != b'-' || !b[..8].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..]
    );
    let t = humantime::parse_rfc3339(&rfc).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// The bytes the Logon signature covers.
pub fn logon_prehash(sending_time: &str, seq: u64, sender: &str, target: &str) -> Vec<u8> {
    format!("{sending_time}\x01A\x01{seq}\x01{sender}\x01{target}").into_bytes()
}

/// A message for logs: SOH shown as `|`, the signature left out.
pub fn show(msg: &Message) -> String {
    let mut out = String::new();
    for (tag, value) in &msg.fields {
        if *tag == 96 {
            out.push_str("96=<signature>|");
        } else {
            out.push_str(&format!("{tag}={}|", String::from_utf8_lossy(value)));
        }
    }
    out
}

/// What the session is doing, for callers waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatus {
    Connecting,
    LoggedOn,
    /// Not logged on, and why.
    Down(String),
    Stopped,
}

struct Request {
    op: &'static str,
    body: Vec<(u32, Vec<u8>)>,
    reply: oneshot::Sender<Result<Message, ExchangeError>>,
    queued: Instant,
}

#[derive(Debug, Default)]
struct Counters {
    logons: AtomicU64,
    logged_on: AtomicBool,
    heartbeats_received: AtomicU64,
    test_requests_sent: AtomicU64,
}

/// A FIX session to the exchange, run by a task of its own. Cheap to clone.
#[derive(Clone)]
pub struct FixSession {
    triggers: mpsc::UnboundedSender<Request>,
    normal: mpsc::UnboundedSender<Request>,
    status: watch::Receiver<SessionStatus>,
    counters: Arc<Counters>,
    budget: Arc<Budget>,
    observer: Option<Observer>,
    addr: FixAddr,
}

impl fmt::Debug for FixSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixSession")
            .field("addr", &self.addr.to_string())
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl FixSession {
    /// Starts the session task; it connects, logs on and reconnects until `stop` fires, then
    /// logs out. Requests draw on `budget` (the account's write budget, shared with REST: the
    /// exchange bills FIX from the same buckets).
    pub fn spawn(
        cfg: FixConfig,
        signer: Signer,
        budget: Arc<Budget>,
        stop: CancellationToken,
    ) -> (FixSession, tokio::task::JoinHandle<()>) {
        let (triggers_tx, triggers_rx) = mpsc::unbounded_channel();
        let (normal_tx, normal_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(SessionStatus::Connecting);
        let counters = Arc::new(Counters::default());
        let session = FixSession {
            triggers: triggers_tx,
            normal: normal_tx,
            status: status_rx,
            counters: counters.clone(),
            budget,
            observer: None,
            addr: cfg.addr.clone(),
        };
        let task = Task {
            cfg,
            signer,
            triggers_rx,
            normal_rx,
            triggers: VecDeque::new(),
            normal: VecDeque::new(),
            status: status_tx,
            counters,
            last_error: Mutex::new(None),
            stop,
        };
        (session, tokio::spawn(task.run()))
    }

    /// Reports every request to `observer` (metrics), with the pseudo HTTP status of
    /// [`ExchangeError::pseudo_status`] (200 for an answer).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn addr(&self) -> &FixAddr {
        &self.addr
    }

    pub fn status(&self) -> SessionStatus {
        self.status.borrow().clone()
    }

    pub fn is_logged_on(&self) -> bool {
        self.counters.logged_on.load(Ordering::Relaxed)
    }

    /// Successful logons so far (a reconnect adds one).
    pub fn logons(&self) -> u64 {
        self.counters.logons.load(Ordering::Relaxed)
    }

    pub fn heartbeats_received(&self) -> u64 {
        self.counters.heartbeats_received.load(Ordering::Relaxed)
    }

    pub fn test_requests_sent(&self) -> u64 {
        self.counters.test_requests_sent.load(Ordering::Relaxed)
    }

    /// Waits until the session is logged on; on timeout, says why it is not.
    pub async fn wait_logged_on(&self, timeout: Duration) -> Result<(), String> {
        let mut rx = self.status.clone();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if *rx.borrow_and_update() == SessionStatus::LoggedOn {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        match waited {
            Ok(true) => Ok(()),
            _ => Err(match self.status() {
                SessionStatus::Down(why) => why,
                SessionStatus::Stopped => "the session has stopped".into(),
                _ => format!("no logon within {timeout:?}"),
            }),
        }
    }

    /// Sends one application message (`35=msg_type` plus `body`) and waits for its answer: the
    /// next application message from the exchange, or a reject naming this request. Triggers
    /// (`Priority::Trigger`) go ahead of queued requests.
    pub async fn request(
        &self,
        op: &'static str,
        priority: Priority,
        msg_type: &str,
        body: Vec<(u32, Vec<u8>)>,
    ) -> Result<Message, ExchangeError> {
        self.budget.acquire(priority).await;
        let started = Instant::now();
        let (reply, rx) = oneshot::channel();
        let mut fields = vec![(tag::MSG_TYPE, msg_type.as_bytes().to_vec())];
        fields.extend(body);
        let req = Request {
            op,
            body: fields,
            reply,
            queued: started,
        };
        let queue = match priority {
            Priority::Trigger => &self.triggers,
            Priority::Normal => &self.normal,
        };
        let stopped = || ExchangeError::Transport {
            op,
            reason: format!("FIX session to {}: stopped", self.addr),
            maybe_sent: false,
        };
        let result = match queue.send(req) {
            Ok(()) => rx.await.unwrap_or_else(|_| Err(stopped())),
            Err(_) => Err(stopped()),
        };
        if let Err(e) = &result
            && e.pseudo_status() == Some(429)
        {
            // The exchange's bucket, which REST and FIX share, is empty.
            self.budget.drained();
        }
        if let Some(o) = &self.observer {
            let status = match &result {
                Ok(_) => Some(200),
                Err(e) => e.pseudo_status(),
            };
            (o.0)(op, status, started.elapsed());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sending_time_is_the_exchange_format_and_reads_back() {
        // 2023-08-09 12:34:56.789 UTC, the seed document's example.
        let ms = 1_691_584_496_789;
        assert_eq!(sending_time(ms), "20230809-12:34:56.789");
        assert_eq!(parse_sending_time("20230809-12:34:56.789"), Some(ms));
        assert_eq!(parse_sending_time("20230809-12:34:56"), Some(ms - 789));
        assert_eq!(parse_sending_time("2023-08-09T12:34:56Z"), None);
        assert_eq!(parse_sending_time("garbage"), None);
    }

    #[test]
    fn logon_prehash_is_the_documented_string() {
        assert_eq!(
            logon_prehash("20230809-12:34:56.789", 1, "key", "KalshiNR"),
            b"20230809-12:34:56.789\x01A\x011\x01key\x01KalshiNR".to_vec()
        );
    }

    #[test]
    fn addresses() {
        let a = FixAddr::parse("mm.fix.elections.kalshi.com:8228").unwrap();
        assert!(a.tls && a.port == 8228);
        let a = FixAddr::parse("tcp://127.0.0.1:8228").unwrap();
        assert!(!a.tls && a.host == "127.0.0.1");
        assert_eq!(a.to_string(), "tcp://127.0.0.1:8228");
        assert_eq!(
            FixAddr::parse("tls://[::1]:9").unwrap().to_string(),
            "tls://[::1]:9"
        );
        for bad in ["http://x:1", "x", "x:0", "x:port", ":80", "tcp://:1"] {
            assert!(FixAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
