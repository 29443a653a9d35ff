//! The Trigger lane: keep-alive HTTP/1.1 connections to the exchange held for Triggers alone,
//! each driven by the task that fires on it.
//!
//! The general HTTP client runs every connection on a task of its own: a request is handed to
//! that task through a channel and written when the runtime gets round to it, after whatever
//! else is ready (the stream's next frames, the loop's next input). On a busy host that hand-off
//! was the largest part of the time from a breaching fill to the Trigger on the wire. A lane
//! connection has no task: the firing task takes it from the idle set, writes the request to the
//! socket and reads the answer. A Trigger that finds no idle lane connection, or whose lane
//! connection fails (the exchange may have closed it while idle), goes by the general client at
//! once; a Trigger is idempotent, so sending it twice is harmless.
//!
//! A lane connection speaks the little HTTP/1.1 a Trigger needs, and nothing else: one request
//! at a time, an answer framed by `Content-Length`, chunks or the end of the connection, heads
//! parsed by `httparse`. Held idle, it costs its socket and a read buffer of at most
//! [`IDLE_BUFFER`] (an HTTP client's connection holds channels and buffers of 25 KiB: 3 MiB for
//! a lane of 128).
//!
//! The lane is filled and kept healthy by [`Lane::keep`] (connections opened and checked with
//! the exchange's public status read). It is off when the process is told to use an HTTP proxy
//! (the general client honours the proxy variables; the lane would bypass them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The most of an answer's head a lane connection reads (the exchange's are under 2 KiB).
const MAX_HEAD: usize = 16 * 1024;
/// The most of an answer a lane connection reads, head and body.
const MAX_ANSWER: usize = 1024 * 1024;
/// The read buffer a connection keeps between requests; a larger one made for a long answer is
/// given back.
const IDLE_BUFFER: usize = 2048;

struct Conn {
    io: Box<dyn Io>,
    /// The answer being read; empty between requests.
    buf: Vec<u8>,
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
        let req = match request(method, path, &self.target.authority, headers, body) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        // An idle connection the exchange closed meanwhile is dropped here, not written to.
        let mut c = loop {
            let mut c = self.lock().pop()?;
            if still_open(&mut c) {
                break c;
            }
        };
        let answer = tokio::time::timeout(self.timeout, exchange(&mut c, &req))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)));
        Some(answer.map(|(answer, reusable)| {
            self.answered.fetch_add(1, Ordering::Relaxed);
            if reusable {
                self.lock().push(c);
            }
            answer
        }))
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
        let get = &http::Method::GET;
        let req = request(get, path, &self.target.authority, &[], None).ok()?;
        if !still_open(&mut c) {
            return None;
        }
        match tokio::time::timeout(self.timeout, exchange(&mut c, &req)).await {
            Ok(Ok((_, true))) => Some(c),
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
            Ok(Conn {
                io,
                buf: Vec::new(),
            })
        };
        tokio::time::timeout(self.timeout, connect)
            .await
            .unwrap_or_else(|_| Err(format!("connect to {}: timed out", t.authority)))
    }
}

/// `method path` with `headers` and `body` (JSON) as HTTP/1.1 bytes. A header value or path
/// that would break the framing (a line break in it) is refused.
fn request(
    method: &http::Method,
    path: &str,
    authority: &str,
    headers: &[(&'static str, &str)],
    body: Option<Bytes>,
) -> Result<Vec<u8>, String> {
    let unsafe_text = |t: &str| t.bytes().any(|b| b == b'\r' || b == b'\n');
    if unsafe_text(path) || headers.iter().any(|(_, v)| unsafe_text(v)) {
        return Err("a line break in the request's path or headers".into());
    }
    let body = body.unwrap_or_default();
    let mut req = Vec::with_capacity(256 + path.len() + body.len());
    let mut line = |parts: &[&[u8]]| {
        parts.iter().for_each(|p| req.extend_from_slice(p));
        req.extend_from_slice(b"\r\n");
    };
    line(&[
        method.as_str().as_bytes(),
        b" ",
        path.as_bytes(),
        b" HTTP/1.1",
    ]);
    line(&[b"host: ", authority.as_bytes()]);
    for (k, v) in headers {
        line(&[k.as_bytes(), b": ", v.as_bytes()]);
    }
    // A write carries its length even when empty (an intermediary may refuse one without).
    let has_body = !body.is_empty() || !matches!(*method, http::Method::GET | http::Method::HEAD);
    if !body.is_empty() {
        line(&[b"content-type: application/json"]);
    }
    if has_body {
        line(&[b"content-length: ", body.len().to_string().as_bytes()]);
    }
    line(&[]);
    req.extend_from_slice(&body);
    Ok(req)
}

/// Whether an idle connection is still open: nothing to read (the exchange sends nothing
/// unasked; a close, or bytes, mean it is done with the connection).
fn still_open(c: &mut Conn) -> bool {
    let mut probe = [0u8; 1];
    c.io.read(&mut probe).now_or_never().is_none()
}

/// Writes `req` on `c` and reads the whole answer; with it, whether the connection may carry
/// another request.
async fn exchange(c: &mut Conn, req: &[u8]) -> Result<(Answer, bool), String> {
    c.io.write_all(req)
        .await
        .map_err(|e| format!("writing the request: {e}"))?;
    c.io.flush()
        .await
        .map_err(|e| format!("writing the request: {e}"))?;
    c.buf.clear();
    let read = read_answer(&mut c.io, &mut c.buf).await;
    c.buf.clear();
    if c.buf.capacity() > IDLE_BUFFER {
        c.buf = Vec::new();
    }
    read
}

/// Reads more of the answer into `buf`: `false` when the exchange closed the connection.
async fn read_more(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<bool, String> {
    if buf.len() >= MAX_ANSWER {
        return Err(format!("an answer over {MAX_ANSWER} bytes"));
    }
    buf.reserve(IDLE_BUFFER.min(MAX_ANSWER - buf.len()));
    match io.read_buf(buf).await {
        Ok(n) => Ok(n > 0),
        Err(e) => Err(format!("reading the answer: {e}")),
    }
}

/// Reads more of the answer into `buf`; an error when the exchange closed the connection first.
async fn fill(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<(), String> {
    match read_more(io, buf).await? {
        true => Ok(()),
        false => Err("the exchange closed the connection before the whole answer".into()),
    }
}

/// The parts of an answer's head the lane uses.
struct Head {
    len: usize,
    status: u16,
    date: Option<String>,
    length: Option<usize>,
    chunked: bool,
    /// `Connection: close`, or an HTTP/1.0 answer.
    close: bool,
}

/// The head at the start of `buf`, if all of it is there.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(format!("an answer's head over {MAX_HEAD} bytes"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("a malformed answer: {e}")),
    };
    let mut head = Head {
        len,
        status: r.code.unwrap_or(0),
        date: None,
        length: None,
        chunked: false,
        close: r.version != Some(1),
    };
    for h in r.headers.iter() {
        let value = std::str::from_utf8(h.value).map(str::trim);
        let is = |name: &str| h.name.eq_ignore_ascii_case(name);
        let has = |token: &str| {
            (value.unwrap_or(""))
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if is("date") {
            head.date = value.ok().map(str::to_owned);
        } else if is("content-length") {
            let n = (value.ok())
                .and_then(|v| v.parse().ok())
                .ok_or("an answer with an unreadable Content-Length")?;
            if head.length.is_some_and(|m| m != n) {
                return Err("an answer with two Content-Lengths".into());
            }
            head.length = Some(n);
        } else if is("transfer-encoding") {
            head.chunked = has("chunked");
        } else if is("connection") && has("close") {
            head.close = true;
        }
    }
    Ok(Some(head))
}

/// Reads one answer into `buf` (empty on entry): the answer, and whether the connection may
/// carry another request.
async fn read_answer(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<(Answer, bool), String> {
    let head = loop {
        match parse_head(buf)? {
            // An interim answer (100 Continue) is skipped; the final one follows.
            Some(h) if (100..200).contains(&h.status) => {
                buf.drain(..h.len);
            }
            Some(h) => break h,
            None => fill(io, buf).await?,
        }
    };
    let start = head.len;
    let (body, reusable) = if matches!(head.status, 204 | 304) {
        (Bytes::new(), buf.len() == start)
    } else if head.chunked {
        let body = read_chunks(io, buf, start).await?;
        (body, buf.len() == start)
    } else if let Some(n) = head.length {
        if n > MAX_ANSWER {
            return Err(format!("an answer of {n} bytes"));
        }
        while buf.len() < start + n {
            fill(io, buf).await?;
        }
        let body = Bytes::copy_from_slice(&buf[start..start + n]);
        (body, buf.len() == start + n)
    } else {
        // Framed by the end of the connection.
        while read_more(io, buf).await? {}
        (Bytes::copy_from_slice(&buf[start..]), false)
    };
    let answer = Answer {
        status: head.status,
        date: head.date,
        body,
    };
    Ok((answer, reusable && !head.close))
}

/// Decodes the chunked body that starts at `buf[start..]`; on return `buf` is cut back to
/// `start` plus whatever followed the body.
async fn read_chunks(
    io: &mut Box<dyn Io>,
    buf: &mut Vec<u8>,
    start: usize,
) -> Result<Bytes, String> {
    let mut body = Vec::new();
    let mut at = start;
    loop {
        let (used, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete((used, size))) => (used, size),
            Ok(httparse::Status::Partial) => {
                fill(io, buf).await?;
                continue;
            }
            Err(_) => return Err("a malformed chunk size".into()),
        };
        let size = usize::try_from(size)
            .ok()
            .filter(|&n| n <= MAX_ANSWER)
            .ok_or("a chunk over the answer's limit")?;
        if size == 0 {
            // Trailers, if any, then an empty line.
            let from = at + used;
            loop {
                if buf[from..].starts_with(b"\r\n") {
                    buf.drain(start..from + 2);
                    return Ok(Bytes::from(body));
                }
                if let Some(end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                    buf.drain(start..from + end + 4);
                    return Ok(Bytes::from(body));
                }
                fill(io, buf).await?;
            }
        }
        let data = at + used;
        while buf.len() < data + size + 2 {
            fill(io, buf).await?;
        }
        if &buf[data + size..data + size + 2] != b"\r\n" {
            return Err("a chunk not ended by a line break".into());
        }
        if body.len() + size > MAX_ANSWER {
            return Err(format!("an answer over {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&buf[data..data + size]);
        at = data + size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn conn(io: tokio::io::DuplexStream) -> Conn {
        Conn {
            io: Box::new(io),
            buf: Vec::new(),
        }
    }

    /// What a lane connection makes of an exchange that answers `pieces` (written one at a
    /// time), then closes the connection if `close` (else keeps it open).
    async fn answer(pieces: Vec<Vec<u8>>, close: bool) -> Result<(Answer, bool), String> {
        let (client, mut server) = tokio::io::duplex(1 << 21);
        let exchange_side = tokio::spawn(async move {
            for p in pieces {
                server.write_all(&p).await.unwrap();
                tokio::task::yield_now().await;
            }
            if !close {
                std::future::pending::<()>().await;
            }
        });
        let mut c = conn(client);
        let r = exchange(&mut c, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        exchange_side.abort();
        r
    }

    async fn whole(text: &str, close: bool) -> Result<(Answer, bool), String> {
        answer(vec![text.as_bytes().to_vec()], close).await
    }

    #[tokio::test]
    async fn an_answer_framed_by_its_length_leaves_the_connection_open() {
        let (a, reusable) = whole(
            "HTTP/1.1 200 OK\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: 2\r\n\r\n{}",
            false,
        )
        .await
        .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.date.as_deref(), Some("Tue, 01 Dec 2026 10:00:00 GMT"));
        assert_eq!(&a.body[..], b"{}");
        assert!(reusable);
    }

    #[tokio::test]
    async fn an_answer_read_a_byte_at_a_time_is_the_same_answer() {
        let text = b"HTTP/1.1 404 Not Found\r\ncontent-length: 11\r\n\r\nnot found!!";
        let pieces = text.iter().map(|b| vec![*b]).collect();
        let (a, reusable) = answer(pieces, false).await.unwrap();
        assert_eq!(
            (a.status, &a.body[..], reusable),
            (404, &b"not found!!"[..], true)
        );
    }

    #[tokio::test]
    async fn chunked_answers_with_and_without_trailers() {
        let plain = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        let (a, reusable) = whole(plain, false).await.unwrap();
        assert_eq!((&a.body[..], reusable), (&b"Wikipedia"[..], true));
        let trailers = "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
        let (a, reusable) = whole(trailers, false).await.unwrap();
        assert_eq!((&a.body[..], reusable), (&b"abc"[..], true));
    }

    #[tokio::test]
    async fn a_closing_answer_or_one_framed_by_the_close_is_not_reused() {
        let close = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}";
        assert!(!whole(close, false).await.unwrap().1);
        let old = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert!(!whole(old, false).await.unwrap().1);
        let (a, reusable) = whole("HTTP/1.1 200 OK\r\n\r\nuntil the end", true)
            .await
            .unwrap();
        assert_eq!((&a.body[..], reusable), (&b"until the end"[..], false));
        // Bytes past the answer: the connection is out of step.
        let extra = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP";
        assert!(!whole(extra, false).await.unwrap().1);
    }

    #[tokio::test]
    async fn an_interim_answer_is_skipped_and_an_empty_one_has_no_body() {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let (a, reusable) = whole(text, false).await.unwrap();
        assert_eq!((a.status, a.body.len(), reusable), (204, 0, true));
    }

    #[tokio::test]
    async fn broken_answers_are_errors_that_say_what_is_wrong() {
        let cases = [
            ("garbage\r\n\r\n", "malformed answer"),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
                "closed the connection before the whole answer",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
                "two Content-Lengths",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
                "unreadable Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "malformed chunk size",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd",
                "chunk not ended by a line break",
            ),
            ("", "closed the connection"),
        ];
        for (text, says) in cases {
            let e = whole(text, true).await.err().unwrap_or_default();
            assert!(e.contains(says), "{text:?}: {e:?}");
        }
        let long_head = format!("HTTP/1.1 200 OK\r\nx: {}\r\n", "a".repeat(MAX_HEAD));
        let e = whole(&long_head, false).await.err().unwrap_or_default();
        assert!(e.contains("head over"), "{e}");
    }

    #[tokio::test]
    async fn an_idle_connection_the_exchange_closed_is_not_taken() {
        let (client, server) = tokio::io::duplex(1024);
        let mut c = conn(client);
        assert!(still_open(&mut c));
        drop(server);
        assert!(!still_open(&mut c));
    }

    #[test]
    fn requests_carry_their_length_and_refuse_line_breaks() {
        let put = request(&http::Method::PUT, "/t", "ex:1", &[("k", "v")], None).unwrap();
        assert_eq!(
            String::from_utf8(put).unwrap(),
            "PUT /t HTTP/1.1\r\nhost: ex:1\r\nk: v\r\ncontent-length: 0\r\n\r\n"
        );
        let post = request(
            &http::Method::POST,
            "/c",
            "ex",
            &[],
            Some(Bytes::from("{}")),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(post).unwrap(),
            "POST /c HTTP/1.1\r\nhost: ex\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
        let get = request(&http::Method::GET, "/s", "ex", &[], None).unwrap();
        assert_eq!(
            String::from_utf8(get).unwrap(),
            "GET /s HTTP/1.1\r\nhost: ex\r\n\r\n"
        );
        let e = request(&http::Method::GET, "/s", "ex", &[("k", "a\r\nb: c")], None);
        assert!(e.is_err());
    }

    proptest! {
        /// Any body, sent by length or in chunks of any sizes, split anywhere on the way, reads
        /// back as itself, and the connection stays usable.
        #[test]
        fn any_body_in_any_framing_and_any_pieces_reads_back(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            chunks in proptest::collection::vec(1usize..700, 1..8),
            chunked in any::<bool>(),
            cuts in proptest::collection::vec(1usize..400, 0..12),
        ) {
            let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
            if chunked {
                text.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                let mut sizes = chunks.iter().cycle();
                while !rest.is_empty() {
                    let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
                    text.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    text.extend_from_slice(&rest[..n]);
                    text.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                text.extend_from_slice(b"0\r\n\r\n");
            } else {
                text.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                text.extend_from_slice(&body);
            }
            let mut pieces = Vec::new();
            let mut rest = &text[..];
            for cut in &cuts {
                let n = (*cut).min(rest.len());
                pieces.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
            pieces.push(rest.to_vec());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (a, reusable) = rt.block_on(answer(pieces, false)).unwrap();
            prop_assert_eq!(&a.body[..], &body[..]);
            prop_assert!(reusable);
        }
    }
}
