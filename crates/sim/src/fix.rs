//! The simulator's FIX acceptor: FIXT.1.1 order-entry sessions (`KalshiNR`, `KalshiRT`) that
//! answer OrderGroupRequest (35=UOG) with OrderGroupResponse (35=UOH) or a reject, on the same
//! order-group engine as REST, as Kalshi's FIX documents describe them.
//!
//! Logon (35=A) must be the first message and is checked as the exchange documents it: 49 a
//! registered API key, 56 a session type, 34=1 with `141=Y` (required on KalshiNR), `98=0`,
//! `108` over 3, `1137=9`, 52 within 30 s of the simulator's clock (else Reject 373=10), and the
//! RSA-PSS signature in `96` over `SendingTime␁A␁MsgSeqNum␁SenderCompID␁TargetCompID` (else
//! Reject 373=8). `95 RawDataLength` must come before `96` (QuickFIX-based acceptors refuse a
//! 96 without it; the exchange's docs are silent, so the simulator takes the strict reading).
//! A second session for the same key and session type gets Logout `58=already exists`. A Logon
//! draws on the write bucket like a REST write.
//!
//! UOG checks, where the docs give the reject type: a malformed field (a 20130 that is not a
//! UUID, a 20131 or 20132 that is not a number in range) is a session Reject (35=3) naming the
//! tag; business failures are a BusinessMessageReject (35=j) with 45 RefSeqNum, 372=UOG, 380 and
//! 58 Text: `ORDER_GROUP_NOT_FOUND` (380=1) for a group that does not exist or belongs to
//! another subaccount or exchange index, `ORDER_GROUP_LIMIT_REACHED` (380=0) at the group cap,
//! 380=5 for a missing 20130 or 20132, 380=8 over the rate limit, and `EXCHANGE_UNAVAILABLE`
//! (380=0, outcome unknown) for an injected error. Choices where the docs are silent: 20130 on
//! a Create is a session Reject 373=2 (tag not defined for this message type); other message
//! types get 35=j 380=3; UOH always echoes 79.
//!
//! The session: heartbeats every HeartBtInt when idle, TestRequest answered, a peer silent for
//! two intervals is logged out, a MsgSeqNum lower than expected ends the session, a gap is
//! accepted (no retransmission on NR), ResendRequest gets a gap fill. Faults: `fix_silent`
//! (nothing sent, nothing answered), `latency_ms`, the REST error faults (path `fix:UOG`), and
//! `POST /_sim/fix/drop`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::engine::{EngineError, GroupAct};
use super::{SimState, lock, ratelimit};
use riskd_kalshi::auth::now_ms;
use riskd_kalshi::fix::codec::{self, DecodeError, Message};
use riskd_kalshi::fix::session::{
    APPL_VER_FIX50SP2, BEGIN_STRING, logon_prehash, parse_sending_time, sending_time,
};
use riskd_kalshi::fix::tag;
use riskd_kalshi::fix::uog::{Action, MSG_REQUEST, MSG_RESPONSE};
use riskd_units::Contracts;

/// The session types that take order groups.
const TARGETS: [&str; 2] = ["KalshiNR", "KalshiRT"];
/// SendingTime of a Logon may be this far from the simulator's clock.
const LOGON_WINDOW_MS: i64 = 30_000;
/// The pseudo path faults match for UOG requests.
pub const FAULT_PATH: &str = "fix:UOG";

/// Sessions logged on now, by (key id, session type).
pub(super) type Sessions = std::sync::Mutex<HashSet<(String, String)>>;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Accepts FIX connections until the simulator stops.
pub(super) async fn serve(
    st: Arc<SimState>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = st.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "sim FIX: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let st = st.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let io: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "sim FIX: TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
            };
            let drop_token = st.fix_drop_token();
            let mut s = Session {
                st,
                io,
                buf: BytesMut::with_capacity(4096),
                key: String::new(),
                target: String::new(),
                out_seq: 1,
                in_seq: 1,
                last_sent: Instant::now(),
                last_received: Instant::now(),
            };
            if let Some((key, target)) = s.run(drop_token).await {
                lock(&s.st.fix_sessions).remove(&(key, target));
            }
        });
    }
}

struct Session {
    st: Arc<SimState>,
    io: Box<dyn Io>,
    buf: BytesMut,
    key: String,
    target: String,
    out_seq: u64,
    in_seq: u64,
    last_sent: Instant,
    last_received: Instant,
}

fn reject(ref_seq: u64, ref_type: &str, reason: u32, tag: Option<u32>, text: &str) -> Message {
    let mut m = Message::new("3");
    m.push(tag::REF_SEQ_NUM, ref_seq.to_string());
    if let Some(t) = tag {
        m.push(tag::REF_TAG_ID, t.to_string());
    }
    m.push(tag::REF_MSG_TYPE, ref_type)
        .push(tag::SESSION_REJECT_REASON, reason.to_string())
        .push(tag::TEXT, text);
    m
}

fn business_reject(ref_seq: u64, ref_type: &str, reason: u32, text: &str) -> Message {
    let mut m = Message::new("j");
    m.push(tag::REF_SEQ_NUM, ref_seq.to_string())
        .push(tag::REF_MSG_TYPE, ref_type)
        .push(tag::BUSINESS_REJECT_REASON, reason.to_string())
        .push(tag::TEXT, text);
    m
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

impl Session {
    async fn send(&mut self, msg: Message) -> bool {
        if self.st.faults().fix_silent {
            return true;
        }
        let (first, rest) = match msg.fields.split_first() {
            Some(x) => x,
            None => return true,
        };
        let mut out = Message::default();
        out.fields.push(first.clone());
        out.push(tag::SENDER_COMP_ID, &self.target)
            .push(tag::TARGET_COMP_ID, &self.key)
            .push(tag::MSG_SEQ_NUM, self.out_seq.to_string())
            .push(tag::SENDING_TIME, sending_time(now_ms()));
        out.fields.extend(rest.iter().cloned());
        self.out_seq += 1;
        self.last_sent = Instant::now();
        let bytes = codec::encode(BEGIN_STRING, &out);
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.io.write_all(&bytes)).await,
            Ok(Ok(()))
        )
    }

    async fn next(&mut self) -> Result<(Message, String), String> {
        loop {
            match codec::decode(&self.buf) {
                Ok((m, begin, used)) => {
                    let _ = self.buf.split_to(used);
                    self.last_received = Instant::now();
                    return Ok((m, begin));
                }
                Err(DecodeError::Incomplete) => {}
                Err(e) => return Err(e.to_string()),
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => return Err("closed".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    async fn logout(&mut self, text: &str) {
        let mut m = Message::new("5");
        m.push(tag::TEXT, text);
        self.send(m).await;
        let _ = self.io.shutdown().await;
    }

    /// Runs the session; returns the (key, target) it held, if it logged on.
    async fn run(&mut self, drop_token: CancellationToken) -> Option<(String, String)> {
        let first = tokio::time::timeout(Duration::from_secs(10), self.next()).await;
        let (logon, begin) = match first {
            Ok(Ok(m)) => m,
            _ => return None,
        };
        let hb = match self.check_logon(&logon, &begin).await {
            Ok(hb) => hb,
            Err(()) => {
                self.st
                    .stats
                    .fix_logons_refused
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let held = (self.key.clone(), self.target.clone());
        self.st.stats.fix_logons.fetch_add(1, Ordering::Relaxed);
        let mut answer = Message::new("A");
        answer
            .push(tag::ENCRYPT_METHOD, "0")
            .push(tag::HEART_BT_INT, hb.as_secs().to_string())
            .push(tag::RESET_SEQ_NUM_FLAG, "Y")
            .push(tag::DEFAULT_APPL_VER_ID, APPL_VER_FIX50SP2);
        if !self.send(answer).await {
            return Some(held);
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let shutdown = self.st.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.logout("simulator shutting down").await;
                    return Some(held);
                }
                _ = drop_token.cancelled() => return Some(held),
                r = self.next() => {
                    let msg = match r {
                        Ok((m, _)) => m,
                        Err(_) => return Some(held),
                    };
                    if !self.on_message(msg).await {
                        return Some(held);
                    }
                }
                _ = tick.tick() => {
                    if self.last_sent.elapsed() >= hb && !self.send(Message::new("0")).await {
                        return Some(held);
                    }
                    if self.last_received.elapsed() >= hb * 2 + hb / 2 {
                        self.logout("heartbeat timeout").await;
                        return Some(held);
                    }
                }
            }
        }
    }

    /// Checks a Logon as the exchange does; answers a refusal itself.
    async fn check_logon(&mut self, m: &Message, begin: &str) -> Result<Duration, ()> {
        let seq: u64 = m
            .get_str(tag::MSG_SEQ_NUM)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.key = m.get_str(tag::SENDER_COMP_ID).unwrap_or("").to_owned();
        self.target = m
            .get_str(tag::TARGET_COMP_ID)
            .unwrap_or("KalshiNR")
            .to_owned();
        let fail = |reason: u32, tag: Option<u32>, text: &str| Err((reason, tag, text.to_owned()));
        let checked: Result<Duration, (u32, Option<u32>, String)> = (|| {
            if begin != BEGIN_STRING {
                return fail(5, Some(8), "BeginString must be FIXT.1.1");
            }
            if m.msg_type() != Some("A") {
                return fail(
                    11,
                    Some(tag::MSG_TYPE),
                    "the first message must be a Logon (35=A)",
                );
            }
            if !TARGETS.contains(&self.target.as_str()) {
                return fail(
                    9,
                    Some(56),
                    "TargetCompID is not an order-entry session type",
                );
            }
            if self.target == "KalshiNR" && m.get(tag::RESET_SEQ_NUM_FLAG) != Some(b"Y") {
                return fail(5, Some(141), "ResetSeqNumFlag=Y is required on KalshiNR");
            }
            if seq != 1 {
                return fail(
                    5,
                    Some(34),
                    "a Logon with ResetSeqNumFlag=Y must be MsgSeqNum 1",
                );
            }
            if m.get(tag::ENCRYPT_METHOD) != Some(b"0") {
                return fail(5, Some(98), "EncryptMethod must be 0");
            }
            if m.get(tag::DEFAULT_APPL_VER_ID) != Some(APPL_VER_FIX50SP2.as_bytes()) {
                return fail(5, Some(1137), "DefaultApplVerID must be 9 (FIX50SP2)");
            }
            let hb: u64 = match m.get_str(tag::HEART_BT_INT).and_then(|s| s.parse().ok()) {
                Some(h) if h > 3 => h,
                _ => return fail(5, Some(108), "HeartBtInt must be more than 3 seconds"),
            };
            let st = m.get_str(tag::SENDING_TIME).unwrap_or("");
            match parse_sending_time(st) {
                Some(t) if (t - now_ms()).abs() <= LOGON_WINDOW_MS => {}
                _ => {
                    return fail(
                        10,
                        Some(52),
                        "SendingTime is not within 30 seconds of the exchange's clock",
                    );
                }
            }
            if m.get(tag::RAW_DATA_LENGTH).is_none() {
                return fail(
                    1,
                    Some(95),
                    "RawDataLength (95) must accompany RawData (96)",
                );
            }
            let sig = match m.get_str(tag::RAW_DATA) {
                Some(s) => s,
                None => return fail(1, Some(96), "RawData (96) with the signature is required"),
            };
            let prehash = logon_prehash(st, seq, &self.key, &self.target);
            if self
                .st
                .keys
                .verify_message(&self.key, &prehash, sig)
                .is_err()
            {
                return fail(8, Some(96), "invalid signature");
            }
            Ok(Duration::from_secs(hb))
        })();
        let hb = match checked {
            Ok(hb) => hb,
            Err((reason, tag, text)) => {
                self.send(reject(seq, "A", reason, tag, &text)).await;
                self.logout(&text).await;
                return Err(());
            }
        };
        let cost = 10;
        if !lock(&self.st.limiter).admit(ratelimit::Bucket::Write, cost, Instant::now()) {
            self.logout("rate limit exceeded").await;
            return Err(());
        }
        if !lock(&self.st.fix_sessions).insert((self.key.clone(), self.target.clone())) {
            self.logout("already exists").await;
            return Err(());
        }
        self.in_seq = 2;
        Ok(hb)
    }

    /// Handles one message after logon; false ends the session.
    async fn on_message(&mut self, m: Message) -> bool {
        let seq: u64 = m
            .get_str(tag::MSG_SEQ_NUM)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let msg_type = m.msg_type().unwrap_or("").to_owned();
        let poss_dup = m.get(tag::POSS_DUP_FLAG) == Some(b"Y");
        let reset = msg_type == "4" && m.get(tag::GAP_FILL_FLAG) != Some(b"Y");
        if !reset {
            if seq < self.in_seq && !poss_dup {
                let text = format!(
                    "MsgSeqNum too low, expecting {} but received {seq}",
                    self.in_seq
                );
                self.logout(&text).await;
                return false;
            }
            if seq >= self.in_seq {
                self.in_seq = seq + 1;
            }
        }
        if self.st.faults().fix_silent {
            return true;
        }
        match msg_type.as_str() {
            "0" => true,
            "1" => {
                let mut hb = Message::new("0");
                hb.push(
                    tag::TEST_REQ_ID,
                    m.get(tag::TEST_REQ_ID).unwrap_or_default(),
                );
                self.send(hb).await
            }
            "2" => {
                let mut gap = Message::new("4");
                gap.push(tag::GAP_FILL_FLAG, "Y")
                    .push(tag::NEW_SEQ_NO, self.out_seq.to_string());
                self.send(gap).await
            }
            "4" => {
                if let Some(n) = m
                    .get_str(tag::NEW_SEQ_NO)
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    self.in_seq = n;
                }
                true
            }
            "5" => {
                self.send(Message::new("5")).await;
                let _ = self.io.shutdown().await;
                false
            }
            "A" => {
                self.send(reject(seq, "A", 99, None, "already logged on"))
                    .await
            }
            t if t == MSG_REQUEST => {
                self.st.stats.fix_requests.fetch_add(1, Ordering::Relaxed);
                let latency = self.st.faults().latency_ms;
                if latency > 0 {
                    tokio::time::sleep(Duration::from_millis(latency)).await;
                }
                let answer = self.order_group(&m, seq);
                self.send(answer).await
            }
            other => {
                let text = format!("message type {other} is not supported by the simulator");
                self.send(business_reject(seq, other, 3, &text)).await
            }
        }
    }

    /// Answers one UOG: UOH, or 35=3 / 35=j.
    fn order_group(&self, m: &Message, seq: u64) -> Message {
        let rej = |reason, tag, text: &str| reject(seq, MSG_REQUEST, reason, Some(tag), text);
        let bmr = |reason, text: &str| business_reject(seq, MSG_REQUEST, reason, text);
        let int = |tag: u32| -> Result<Option<i64>, Message> {
            match m.get_str(tag) {
                None => Ok(None),
                Some(v) => v
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| rej(6, tag, &format!("{v:?} is not an integer"))),
            }
        };
        let parsed = (|| {
            let action = match int(tag::ORDER_GROUP_ACTION)? {
                None => {
                    return Err(rej(
                        1,
                        tag::ORDER_GROUP_ACTION,
                        "OrderGroupAction (20131) is required",
                    ));
                }
                Some(a) => Action::from_code(a).ok_or_else(|| {
                    rej(
                        5,
                        tag::ORDER_GROUP_ACTION,
                        "OrderGroupAction must be 1 to 5",
                    )
                })?,
            };
            let group = m.get_str(tag::ORDER_GROUP_ID).map(str::to_owned);
            match (&group, action) {
                (Some(_), Action::Create) => {
                    return Err(rej(
                        2,
                        tag::ORDER_GROUP_ID,
                        "OrderGroupID (20130) must not be sent on Create",
                    ));
                }
                (Some(g), _) if !is_uuid(g) => {
                    return Err(rej(6, tag::ORDER_GROUP_ID, "OrderGroupID must be a UUID"));
                }
                (None, a) if a != Action::Create => {
                    return Err(bmr(5, "OrderGroupID (20130) is required for this action"));
                }
                _ => {}
            }
            let limit = match int(tag::ORDER_GROUP_CONTRACTS_LIMIT)? {
                Some(l) if (1..=1_000_000).contains(&l) => Some(Contracts::from_whole(l)),
                Some(_) => {
                    return Err(rej(
                        5,
                        tag::ORDER_GROUP_CONTRACTS_LIMIT,
                        "OrderGroupContractsLimit must be 1 to 1,000,000",
                    ));
                }
                None if matches!(action, Action::Create | Action::Update) => {
                    return Err(bmr(
                        5,
                        "OrderGroupContractsLimit (20132) is required for this action",
                    ));
                }
                None => None,
            };
            let sub = int(tag::ALLOC_ACCOUNT)?.unwrap_or(0);
            if !(0..=63).contains(&sub) {
                return Err(rej(5, tag::ALLOC_ACCOUNT, "AllocAccount must be 0 to 63"));
            }
            let ex = int(tag::EX_DESTINATION)?.unwrap_or(0);
            if ex < 0 {
                return Err(rej(
                    5,
                    tag::EX_DESTINATION,
                    "ExDestination must be 0 or more",
                ));
            }
            Ok((action, group, limit, sub, ex))
        })();
        let (action, group, limit, sub, ex) = match parsed {
            Ok(p) => p,
            Err(answer) => return answer,
        };
        if !lock(&self.st.limiter).admit(ratelimit::Bucket::Write, 10, Instant::now()) {
            self.st.stats.rejected_429.fetch_add(1, Ordering::Relaxed);
            return bmr(8, "TOO_MANY_REQUESTS");
        }
        let (inject, after_apply) = {
            let mut f = lock(&self.st.faults);
            (f.take_error(FAULT_PATH), f.error_after_apply)
        };
        if inject && !after_apply {
            self.st
                .stats
                .injected_errors
                .fetch_add(1, Ordering::Relaxed);
            return bmr(0, "EXCHANGE_UNAVAILABLE");
        }
        let id = group.clone().unwrap_or_default();
        let limit_or_zero = limit.unwrap_or(Contracts::ZERO);
        let result = self.st.with_engine(|e, now, ev| match action {
            Action::Create => e.create_group(sub, ex, limit_or_zero, now, ev),
            Action::Reset => e
                .act(GroupAct::Reset, &id, sub, ex, now, ev)
                .map(|_| id.clone()),
            Action::Delete => e
                .act(GroupAct::Delete, &id, sub, ex, now, ev)
                .map(|_| id.clone()),
            Action::Trigger => e
                .act(GroupAct::Trigger, &id, sub, ex, now, ev)
                .map(|_| id.clone()),
            Action::Update => e
                .update_limit(&id, sub, ex, limit_or_zero, now, ev)
                .map(|_| id.clone()),
        });
        if inject {
            self.st
                .stats
                .injected_errors
                .fetch_add(1, Ordering::Relaxed);
            return bmr(0, "EXCHANGE_UNAVAILABLE");
        }
        match result {
            Ok(id) => {
                let mut uoh = Message::new(MSG_RESPONSE);
                uoh.push(tag::ORDER_GROUP_ID, id);
                if let Some(l) = limit
                    && matches!(action, Action::Create | Action::Update)
                {
                    uoh.push(
                        tag::ORDER_GROUP_CONTRACTS_LIMIT,
                        l.whole().unwrap_or(0).to_string(),
                    );
                }
                uoh.push(tag::ALLOC_ACCOUNT, sub.to_string());
                uoh
            }
            Err(EngineError::GroupNotFound) | Err(EngineError::OrderGroupNotFound(_)) => {
                bmr(1, "ORDER_GROUP_NOT_FOUND")
            }
            Err(EngineError::TooManyGroups(_)) => bmr(0, "ORDER_GROUP_LIMIT_REACHED"),
            Err(e) => bmr(0, &format!("INVALID_PARAMETERS: {e}")),
        }
    }
}

/// A TLS acceptor from a PEM certificate chain and its private key (PKCS#8, PKCS#1 or SEC1).
pub fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("certificate PEM: no CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key PEM: {e}"))?;
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(is_uuid("770e8400-e29b-41d4-a716-446655440002"));
        assert!(is_uuid(&super::super::engine::new_id()));
        for bad in [
            "",
            "770e8400e29b41d4a716446655440002",
            "770e8400-e29b-41d4-a716-44665544000g",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }
}
