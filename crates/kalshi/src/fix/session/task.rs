//! The session's task: it owns the connection, logs on, keeps the heartbeat, serialises
//! requests and answers, and reconnects with backoff until stopped.

use crate::fix::tag;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    APPL_VER_FIX50SP2, BEGIN_STRING, Counters, FixConfig, Request, SessionStatus, logon_prehash,
    sending_time, show,
};
use crate::auth::now_ms;
use crate::fix::codec::{self, DecodeError, Message};
use crate::{ExchangeError, Signer};

/// A byte stream the session runs over: TCP or TLS over TCP.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection's state.
pub(super) struct Conn {
    io: Box<dyn Io>,
    buf: BytesMut,
    sender: String,
    target: String,
    out_seq: u64,
    in_seq: u64,
    last_sent: Instant,
    last_received: Instant,
}

/// Why a connection ended.
pub(super) struct Ended {
    reason: String,
    /// The exchange asked for it (Logout) or we did (stop).
    orderly: bool,
}

impl Ended {
    pub(super) fn error(reason: impl Into<String>) -> Ended {
        Ended {
            reason: reason.into(),
            orderly: false,
        }
    }
}

impl Conn {
    /// Sends a message with the standard header; returns its MsgSeqNum.
    pub(super) async fn send(
        &mut self,
        fields: &[(u32, Vec<u8>)],
        timeout: Duration,
    ) -> Result<u64, String> {
        let seq = self.out_seq;
        let st = sending_time(now_ms());
        self.send_with(fields, seq, &st, timeout).await?;
        Ok(seq)
    }

    pub(super) async fn send_with(
        &mut self,
        fields: &[(u32, Vec<u8>)],
        seq: u64,
        sending_time: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut msg = Message::default();
        // 35 first, then the rest of the header, then the body.
        let (first, rest) = fields.split_first().ok_or("empty message")?;
        msg.fields.push(first.clone());
        msg.push(tag::SENDER_COMP_ID, &self.sender)
            .push(tag::TARGET_COMP_ID, &self.target)
            .push(tag::MSG_SEQ_NUM, seq.to_string())
            .push(tag::SENDING_TIME, sending_time);
        msg.fields.extend(rest.iter().cloned());
        tracing::debug!(msg = %show(&msg), "FIX out");
        let bytes = codec::encode(BEGIN_STRING, &msg);
        match tokio::time::timeout(timeout, self.io.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("write failed: {e}")),
            Err(_) => return Err(format!("write blocked for {timeout:?}")),
        }
        if seq == self.out_seq {
            self.out_seq += 1;
        }
        self.last_sent = Instant::now();
        Ok(())
    }

    /// The next whole message, reading as needed (cancel-safe: bytes stay in `buf`).
    pub(super) async fn next(&mut self) -> Result<Message, String> {
        loop {
            match codec::decode(&self.buf) {
                Ok((msg, begin, used)) => {
                    let _ = self.buf.split_to(used);
                    if begin != BEGIN_STRING {
                        return Err(format!(
                            "the exchange sent BeginString {begin:?}, not {BEGIN_STRING}"
                        ));
                    }
                    self.last_received = Instant::now();
                    tracing::debug!(msg = %show(&msg), "FIX in");
                    return Ok(msg);
                }
                Err(DecodeError::Incomplete) => {}
                Err(e) => return Err(format!("undecodable message from the exchange: {e}")),
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => return Err("connection closed by the exchange".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }
}

pub(super) fn text(msg: &Message) -> Option<String> {
    msg.get_str(tag::TEXT).map(str::to_owned)
}

pub(super) fn num<T: std::str::FromStr>(msg: &Message, tag: u32) -> Option<T> {
    msg.get_str(tag).and_then(|v| v.parse().ok())
}

pub(super) fn session_reject(op: &'static str, msg: &Message) -> ExchangeError {
    ExchangeError::SessionReject {
        op,
        reason: num(msg, tag::SESSION_REJECT_REASON),
        ref_tag: num(msg, tag::REF_TAG_ID),
        text: text(msg),
    }
}

pub(super) fn business_reject(op: &'static str, msg: &Message) -> ExchangeError {
    ExchangeError::BusinessReject {
        op,
        reason: num(msg, tag::BUSINESS_REJECT_REASON),
        text: text(msg),
    }
}

pub(super) struct InFlight {
    req: Request,
    seq: u64,
    sent: Instant,
}

pub(super) struct Task {
    pub(super) cfg: FixConfig,
    pub(super) signer: Signer,
    pub(super) triggers_rx: mpsc::UnboundedReceiver<Request>,
    pub(super) normal_rx: mpsc::UnboundedReceiver<Request>,
    pub(super) triggers: VecDeque<Request>,
    pub(super) normal: VecDeque<Request>,
    pub(super) status: watch::Sender<SessionStatus>,
    pub(super) counters: Arc<Counters>,
    pub(super) last_error: Mutex<Option<String>>,
    pub(super) stop: CancellationToken,
}

impl Task {
    pub(super) async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            self.status.send_replace(SessionStatus::Connecting);
            let ended = match self.logon().await {
                Ok(conn) => {
                    failures = 0;
                    self.counters.logons.fetch_add(1, Ordering::Relaxed);
                    self.counters.logged_on.store(true, Ordering::Relaxed);
                    self.status.send_replace(SessionStatus::LoggedOn);
                    tracing::info!(addr = %self.cfg.addr, target = %self.cfg.target_comp_id, "FIX session logged on");
                    let ended = self.serve(conn).await;
                    self.counters.logged_on.store(false, Ordering::Relaxed);
                    ended
                }
                Err(e) => Ended::error(e),
            };
            if self.stop.is_cancelled() {
                break;
            }
            failures = failures.saturating_add(1);
            let why = format!("FIX session to {}: {}", self.cfg.addr, ended.reason);
            if ended.orderly {
                tracing::warn!(reason = %why, "FIX session ended; reconnecting");
            } else {
                tracing::error!(reason = %why, "FIX session down; reconnecting");
            }
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
            self.status.send_replace(SessionStatus::Down(why));
            if !self.wait_down(self.cfg.reconnect.delay(failures)).await {
                break;
            }
        }
        self.counters.logged_on.store(false, Ordering::Relaxed);
        self.status.send_replace(SessionStatus::Stopped);
        self.drain();
        let stopped = format!("FIX session to {}: stopped", self.cfg.addr);
        for r in self.triggers.drain(..).chain(self.normal.drain(..)) {
            let _ = r.reply.send(Err(ExchangeError::Transport {
                op: r.op,
                reason: stopped.clone(),
                maybe_sent: false,
            }));
        }
    }

    pub(super) fn drain(&mut self) {
        while let Ok(r) = self.triggers_rx.try_recv() {
            self.triggers.push_back(r);
        }
        while let Ok(r) = self.normal_rx.try_recv() {
            self.normal.push_back(r);
        }
    }

    /// Fails queued requests that have waited longer than `queue_timeout` for a session.
    pub(super) fn expire(&mut self) {
        let limit = self.cfg.queue_timeout;
        let why = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| format!("FIX session to {}: not logged on", self.cfg.addr));
        for q in [&mut self.triggers, &mut self.normal] {
            let (old, young): (VecDeque<Request>, VecDeque<Request>) =
                q.drain(..).partition(|r| r.queued.elapsed() >= limit);
            *q = young;
            for r in old {
                let _ = r.reply.send(Err(ExchangeError::Transport {
                    op: r.op,
                    reason: format!("not sent: no FIX session for {limit:?} ({why})"),
                    maybe_sent: false,
                }));
            }
        }
    }

    /// Waits `delay` while down, expiring requests; false when stopped.
    pub(super) async fn wait_down(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            self.drain();
            self.expire();
            tokio::select! {
                _ = self.stop.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => return true,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    pub(super) async fn connect(&self) -> Result<Box<dyn Io>, String> {
        let addr = &self.cfg.addr;
        let tcp = tokio::time::timeout(
            self.cfg.connect_timeout,
            TcpStream::connect((addr.host.as_str(), addr.port)),
        )
        .await
        .map_err(|_| format!("connect timed out after {:?}", self.cfg.connect_timeout))?
        .map_err(|e| format!("connect failed: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !addr.tls {
            return Ok(Box::new(tcp));
        }
        let roots = match &self.cfg.tls_roots {
            Some(r) => r.clone(),
            None => Arc::new(crate::system_roots()?),
        };
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(addr.host.clone())
            .map_err(|e| format!("{:?} is not a TLS server name: {e}", addr.host))?;
        let stream = tokio::time::timeout(
            self.cfg.connect_timeout,
            tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp),
        )
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
        Ok(Box::new(stream))
    }

    /// Connects and logs on; the first message back must be the exchange's Logon.
    pub(super) async fn logon(&mut self) -> Result<Conn, String> {
        let io = self.connect().await?;
        let now = Instant::now();
        let mut conn = Conn {
            io,
            buf: BytesMut::with_capacity(4096),
            sender: self.signer.key_id().to_owned(),
            target: self.cfg.target_comp_id.clone(),
            out_seq: 1,
            in_seq: 1,
            last_sent: now,
            last_received: now,
        };
        let st = sending_time(now_ms());
        let prehash = logon_prehash(&st, 1, &conn.sender, &conn.target);
        let signature = self.signer.sign_base64(&prehash);
        let mut logon = Message::new("A");
        logon
            .push(tag::ENCRYPT_METHOD, "0")
            .push(
                tag::HEART_BT_INT,
                self.cfg.heartbeat.as_secs().max(4).to_string(),
            )
            .push(tag::RESET_SEQ_NUM_FLAG, "Y")
            .push(tag::DEFAULT_APPL_VER_ID, APPL_VER_FIX50SP2)
            .push_data(tag::RAW_DATA_LENGTH, tag::RAW_DATA, signature.as_bytes());
        conn.send_with(&logon.fields, 1, &st, self.cfg.answer_timeout)
            .await?;
        let answer = tokio::time::timeout(self.cfg.answer_timeout, conn.next())
            .await
            .map_err(|_| format!("no Logon answer within {:?}", self.cfg.answer_timeout))??;
        match answer.msg_type() {
            Some("A") => {
                conn.in_seq = num::<u64>(&answer, 34).unwrap_or(1) + 1;
                Ok(conn)
            }
            Some("5") => Err(format!(
                "logon refused (Logout): {}",
                text(&answer).unwrap_or_else(|| "no reason given".into())
            )),
            Some("3") => Err(format!(
                "logon refused: {}",
                session_reject("logon", &answer)
            )),
            other => Err(format!(
                "expected the exchange's Logon, got 35={}",
                other.unwrap_or("?")
            )),
        }
    }

    /// Runs a logged-on connection until it ends.
    pub(super) async fn serve(&mut self, mut conn: Conn) -> Ended {
        let hb = self.cfg.heartbeat;
        let write_timeout = hb.min(Duration::from_secs(5));
        let mut in_flight: Option<InFlight> = None;
        let mut test_request: Option<(String, Instant)> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100).min(hb / 4));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            if in_flight.is_none() {
                self.drain();
                if let Some(req) = self
                    .triggers
                    .pop_front()
                    .or_else(|| self.normal.pop_front())
                {
                    match conn.send(&req.body, write_timeout).await {
                        Ok(seq) => {
                            in_flight = Some(InFlight {
                                req,
                                seq,
                                sent: Instant::now(),
                            })
                        }
                        Err(e) => {
                            let _ = req.reply.send(Err(ExchangeError::Transport {
                                op: req.op,
                                reason: format!("FIX session to {}: {e}", self.cfg.addr),
                                maybe_sent: true,
                            }));
                            break Ended::error(e);
                        }
                    }
                }
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled(), if in_flight.is_none() => {
                    break self.logout(&mut conn, "stopping").await;
                }
                msg = conn.next() => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => break Ended::error(e),
                    };
                    match self.on_message(&mut conn, msg, &mut in_flight, &mut test_request).await {
                        Ok(()) => {}
                        Err(end) => break end,
                    }
                }
                Some(r) = self.triggers_rx.recv() => self.triggers.push_back(r),
                Some(r) = self.normal_rx.recv() => self.normal.push_back(r),
                _ = tick.tick() => {
                    if let Some(f) = &in_flight && f.sent.elapsed() >= self.cfg.answer_timeout {
                        let f = in_flight.take().map(|f| f.req);
                        let why = format!("no answer within {:?}", self.cfg.answer_timeout);
                        if let Some(req) = f {
                            let _ = req.reply.send(Err(ExchangeError::Transport {
                                op: req.op,
                                reason: format!("FIX session to {}: {why}; outcome unknown", self.cfg.addr),
                                maybe_sent: true,
                            }));
                        }
                        // Without a request id, a late answer would be taken for the next
                        // request's: start a fresh session instead.
                        break Ended::error(format!("{why}; reconnecting so no late answer is misread"));
                    }
                    if conn.last_sent.elapsed() >= hb
                        && let Err(e) = conn.send(&[(tag::MSG_TYPE, b"0".to_vec())], write_timeout).await
                    {
                        break Ended::error(e);
                    }
                    let quiet = conn.last_received.elapsed();
                    match &test_request {
                        None if quiet >= hb + hb / 5 => {
                            let id = format!("riskd-{}", now_ms());
                            if let Err(e) = conn.send(&[(tag::MSG_TYPE, b"1".to_vec()), (tag::TEST_REQ_ID, id.clone().into_bytes())], write_timeout).await {
                                break Ended::error(e);
                            }
                            self.counters.test_requests_sent.fetch_add(1, Ordering::Relaxed);
                            test_request = Some((id, Instant::now()));
                        }
                        Some((_, sent)) if sent.elapsed() >= hb => {
                            break Ended::error(format!("no answer to a TestRequest within {hb:?}"));
                        }
                        _ => {}
                    }
                }
            }
        };
        if let Some(f) = in_flight {
            let _ = f.req.reply.send(Err(ExchangeError::Transport {
                op: f.req.op,
                reason: format!(
                    "FIX session to {}: {} with the request in flight; outcome unknown",
                    self.cfg.addr, ended.reason
                ),
                maybe_sent: true,
            }));
        }
        ended
    }

    /// Sends Logout and waits briefly for the exchange's.
    pub(super) async fn logout(&self, conn: &mut Conn, why: &str) -> Ended {
        let _ = conn
            .send(
                &[
                    (tag::MSG_TYPE, b"5".to_vec()),
                    (tag::TEXT, why.as_bytes().to_vec()),
                ],
                Duration::from_secs(1),
            )
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(m) = conn.next().await {
                if m.msg_type() == Some("5") {
                    return;
                }
            }
        })
        .await;
        let _ = conn.io.shutdown().await;
        Ended {
            reason: format!("logged out: {why}"),
            orderly: true,
        }
    }

    pub(super) async fn on_message(
        &mut self,
        conn: &mut Conn,
        msg: Message,
        in_flight: &mut Option<InFlight>,
        test_request: &mut Option<(String, Instant)>,
    ) -> Result<(), Ended> {
        let write_timeout = self.cfg.heartbeat.min(Duration::from_secs(5));
        let msg_type = msg.msg_type().unwrap_or("").to_owned();
        // Sequence: a gap cannot be filled on this session type; lower than expected without
        // PossDupFlag means the two sides disagree, which FIX answers with a Logout.
        let seq: u64 = num(&msg, tag::MSG_SEQ_NUM).unwrap_or(0);
        let poss_dup = msg.get(tag::POSS_DUP_FLAG) == Some(b"Y");
        if msg_type == "4" && msg.get(tag::GAP_FILL_FLAG) != Some(b"Y") {
            // SequenceReset-Reset: takes effect whatever its own number.
        } else if seq < conn.in_seq && !poss_dup {
            let why = format!(
                "MsgSeqNum too low: expected {}, received {seq}",
                conn.in_seq
            );
            let _ = self.logout(conn, &why).await;
            return Err(Ended::error(why));
        } else if seq > conn.in_seq {
            tracing::warn!(
                expected = conn.in_seq,
                received = seq,
                "FIX sequence gap from the exchange (no retransmission on this session)"
            );
        }
        if seq >= conn.in_seq {
            conn.in_seq = seq + 1;
        }
        let answer = |conn_in_flight: &mut Option<InFlight>,
                      result: Result<Message, ExchangeError>| {
            if let Some(f) = conn_in_flight.take() {
                let _ = f.req.reply.send(result);
            }
        };
        match msg_type.as_str() {
            "0" => {
                self.counters
                    .heartbeats_received
                    .fetch_add(1, Ordering::Relaxed);
                if let Some((id, _)) = test_request
                    && msg.get_str(tag::TEST_REQ_ID) == Some(id.as_str())
                {
                    *test_request = None;
                }
            }
            "1" => {
                let id = msg.get(tag::TEST_REQ_ID).unwrap_or_default().to_vec();
                conn.send(
                    &[(tag::MSG_TYPE, b"0".to_vec()), (tag::TEST_REQ_ID, id)],
                    write_timeout,
                )
                .await
                .map_err(Ended::error)?;
            }
            "2" => {
                // Nothing is ever resent: a late group action could undo a newer one.
                let begin: u64 = num(&msg, tag::BEGIN_SEQ_NO).unwrap_or(1).max(1);
                let next = conn.out_seq;
                let orig = sending_time(now_ms());
                conn.send_with(
                    &[
                        (tag::MSG_TYPE, b"4".to_vec()),
                        (tag::POSS_DUP_FLAG, b"Y".to_vec()),
                        (tag::ORIG_SENDING_TIME, orig.clone().into_bytes()),
                        (tag::GAP_FILL_FLAG, b"Y".to_vec()),
                        (tag::NEW_SEQ_NO, next.to_string().into_bytes()),
                    ],
                    begin.min(next),
                    &orig,
                    write_timeout,
                )
                .await
                .map_err(Ended::error)?;
            }
            "4" => {
                if let Some(n) = num::<u64>(&msg, 36)
                    && n > conn.in_seq
                {
                    conn.in_seq = n;
                }
            }
            "5" => {
                let why = text(&msg).unwrap_or_else(|| "no reason given".into());
                let _ = conn
                    .send(&[(tag::MSG_TYPE, b"5".to_vec())], Duration::from_secs(1))
                    .await;
                return Err(Ended {
                    reason: format!("the exchange logged out: {why}"),
                    orderly: true,
                });
            }
            "3" => {
                let ref_seq: Option<u64> = num(&msg, tag::REF_SEQ_NUM);
                match in_flight {
                    Some(f) if ref_seq == Some(f.seq) => {
                        let e = session_reject(f.req.op, &msg);
                        answer(in_flight, Err(e));
                    }
                    _ => {
                        tracing::warn!(msg = %show(&msg), "FIX session reject of a message that is not a request")
                    }
                }
            }
            "j" => {
                let ref_seq: Option<u64> = num(&msg, tag::REF_SEQ_NUM);
                match in_flight {
                    Some(f) if ref_seq.is_none_or(|s| s == f.seq) => {
                        let e = business_reject(f.req.op, &msg);
                        answer(in_flight, Err(e));
                    }
                    _ => {
                        tracing::warn!(msg = %show(&msg), "FIX business reject that answers no request in flight")
                    }
                }
            }
            "A" => tracing::warn!("a second Logon from the exchange; ignored"),
            _ if in_flight.is_some() && is_answer(&msg_type) => answer(in_flight, Ok(msg)),
            _ => tracing::debug!(msg = %show(&msg), "FIX message ignored"),
        }
        Ok(())
    }
}

/// Application messages that answer a request (UOH answers UOG).
pub(super) fn is_answer(msg_type: &str) -> bool {
    msg_type == "UOH"
}
