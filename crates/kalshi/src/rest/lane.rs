//! The Trigger lane: keep-alive HTTP/1.1 connections to the exchange held for Triggers alone,
//! each driven by the task that fires on it.
//!
//! The general HTTP client runs every connection on a task of its own: a request is handed to
//! that task through a channel and written when the runtime gets round to it, after whatever
//! else is ready (the stream's next frames, the loop's next input). On a busy host that hand-off
//! was the largest part of the time from a breaching fill to the Trigger on the wire. A lane
//! connection has no task: the firing task takes it from the idle set, and the same poll that
//! hands the request over writes it to the socket, then reads the answer. A Trigger that finds
//! no idle lane connection, or whose lane connection fails (the exchange may have closed it
//! while idle), goes by the general client at once; a Trigger is idempotent, so sending it twice
//! is harmless.
//!
//! The lane is filled and kept healthy by [`Lane::keep`] (connections opened and checked with
//! the exchange's public status read). It is off when the process is told to use an HTTP proxy
//! (the general client honours the proxy variables; the lane would bypass them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Stream = TokioIo<Box<dyn Io>>;

struct Conn {
    send: SendRequest<Full<Bytes>>,
    conn: Connection<Stream, Full<Bytes>>,
}

/// What the exchange answered on the lane.
pub(crate) struct Answer {
    pub status: u16,
    pub date: Option<String>,
    pub body: Bytes,
}

/// Where the lane connects.
#[derive(Clone)]
struct Target {
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

pub(crate) struct Lane {
    target: Target,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    /// Requests answered on the lane.
    answered: AtomicU64,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("authority", &self.target.authority)
            .field("idle", &self.idle_count())
            .finish()
    }
}

/// The proxy variables the general client honours.
const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl Lane {
    /// A lane to `url`'s origin, trusting `roots` (the system's when `None`) over `https`; the
    /// reason when the lane cannot or must not be used: a proxy is configured, or no TLS roots
    /// are found for an `https` exchange.
    pub(crate) fn new(
        url: &reqwest::Url,
        timeout: Duration,
        roots: Option<Arc<rustls::RootCertStore>>,
    ) -> Result<Lane, String> {
        if let Some(v) = PROXY_VARS.iter().find(|v| std::env::var_os(v).is_some()) {
            return Err(format!("{v} is set (Triggers go through the proxy)"));
        }
        let host = url
            .host_str()
            .ok_or("the exchange URL has no host")?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or("the exchange URL has no port")?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let tls = match url.scheme() {
            "https" => {
                let roots = match roots {
                    Some(r) => r,
                    None => Arc::new(crate::system_roots()?),
                };
                let mut cfg = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = rustls::pki_types::ServerName::try_from(
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                )
                .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(cfg)), name))
            }
            _ => None,
        };
        Ok(Lane {
            target: Target {
                host,
                port,
                authority,
                tls,
            },
            timeout,
            idle: Mutex::new(Vec::new()),
            answered: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Idle connections now.
    pub(crate) fn idle_count(&self) -> usize {
        self.lock().len()
    }

    /// Requests answered on the lane so far.
    pub(crate) fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Sends `method path` with `headers` and `body` on an idle lane connection; `None` when
    /// none is idle. An `Err` leaves the outcome unknown (the request may have been written).
    pub(crate) async fn send(
        &self,
        method: &http::Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: Option<Bytes>,
    ) -> Option<Result<Answer, String>> {
        let mut c = self.lock().pop()?;
        let req = match self.request(method, path, headers, body) {
            Ok(r) => r,
            Err(e) => {
                self.lock().push(c);
                return Some(Err(e));
            }
        };
        let answer = tokio::time::timeout(self.timeout, exchange(&mut c, req))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)));
        if answer.is_ok() {
            self.answered.fetch_add(1, Ordering::Relaxed);
            if reusable(&mut c) {
                self.lock().push(c);
            }
        }
        Some(answer)
    }

    fn request(
        &self,
        method: &http::Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: Option<Bytes>,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let mut b = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::HOST, &self.target.authority);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if body.is_some() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(body.unwrap_or_default()))
            .map_err(|e| format!("cannot build the request: {e}"))
    }

    /// Keeps `want` connections idle: each idle one is checked with a `GET path` (answered
    /// ones go back, the others are dropped), then new ones are opened up to `want`.
    pub(crate) async fn keep(&self, want: usize, path: &str) {
        let held: Vec<Conn> = std::mem::take(&mut *self.lock());
        let checks = held.into_iter().map(|c| self.check(c, path));
        for c in futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
        {
            self.lock().push(c);
        }
        let missing = want.saturating_sub(self.idle_count());
        let opened = futures_util::future::join_all((0..missing).map(|_| self.open())).await;
        let mut failed = None;
        for c in opened {
            match c {
                Ok(c) => self.lock().push(c),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, idle = self.idle_count(), want, "Trigger lane: cannot open a connection; Triggers go by the general client meanwhile");
        }
    }

    /// The connection back if it answered `GET path` and stays open.
    async fn check(&self, mut c: Conn, path: &str) -> Option<Conn> {
        let req = self.request(&http::Method::GET, path, &[], None).ok()?;
        match tokio::time::timeout(self.timeout, exchange(&mut c, req)).await {
            Ok(Ok(_)) => reusable(&mut c).then_some(c),
            _ => None,
        }
    }

    async fn open(&self) -> Result<Conn, String> {
        let t = &self.target;
        let connect = async {
            let tcp = TcpStream::connect((t.host.as_str(), t.port))
                .await
                .map_err(|e| format!("connect to {}: {e}", t.authority))?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = match &t.tls {
                None => Box::new(tcp),
                Some((tls, name)) => Box::new(
                    tls.connect(name.clone(), tcp)
                        .await
                        .map_err(|e| format!("TLS with {}: {e}", t.authority))?,
                ),
            };
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| format!("HTTP/1.1 with {}: {e}", t.authority))?;
            Ok(Conn { send, conn })
        };
        tokio::time::timeout(self.timeout, connect)
            .await
            .unwrap_or_else(|_| Err(format!("connect to {}: timed out", t.authority)))
    }
}

/// Sends `req` on `c` and reads the whole answer, driving the connection from this task.
async fn exchange(c: &mut Conn, req: http::Request<Full<Bytes>>) -> Result<Answer, String> {
    let Conn { send, conn } = c;
    tokio::select! {
        biased;
        r = send.ready() => r.map_err(|e| crate::error::error_chain(&e))?,
        r = &mut *conn => return Err(closed(r)),
    }
    let sending = send.send_request(req);
    tokio::pin!(sending);
    let resp = tokio::select! {
        biased;
        r = &mut sending => r.map_err(|e| crate::error::error_chain(&e))?,
        r = &mut *conn => return Err(closed(r)),
    };
    let status = resp.status().as_u16();
    let date = resp
        .headers()
        .get(http::header::DATE)
        .and_then(|d| d.to_str().ok())
        .map(str::to_owned);
    let reading = resp.into_body().collect();
    tokio::pin!(reading);
    let body = tokio::select! {
        biased;
        r = &mut reading => r.map_err(|e| crate::error::error_chain(&e))?.to_bytes(),
        r = &mut *conn => return Err(closed(r)),
    };
    Ok(Answer { status, date, body })
}

fn closed(r: Result<(), hyper::Error>) -> String {
    match r {
        Ok(()) => "the exchange closed the connection".into(),
        Err(e) => crate::error::error_chain(&e),
    }
}

/// Whether the connection may carry another request: not closed by the exchange (an answer
/// with `Connection: close`, or the socket shut).
fn reusable(c: &mut Conn) -> bool {
    (&mut c.conn).now_or_never().is_none() && !c.send.is_closed()
}
