//! The FIX session and order-group calls against the simulator's acceptor (plain TCP and TLS),
//! and the acceptor's checks against hand-built messages. Real sockets, real signatures.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kalshi_riskd::kalshi::ExchangeError;
use kalshi_riskd::kalshi::GroupAddress;
use kalshi_riskd::kalshi::budget::{Budget, Priority};
use kalshi_riskd::kalshi::fix::codec::{self, Message};
use kalshi_riskd::kalshi::fix::session::{logon_prehash, sending_time};
use kalshi_riskd::kalshi::fix::{FixAddr, FixConfig, FixSession, SessionStatus};
use kalshi_riskd::kalshi::{GroupChannel, GroupControl, GroupId, Signer};
use kalshi_riskd::risk::Contracts;
use serde_json::json;
use support::{KEY_ID, PATIENCE, TestSim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn config(addr: &str) -> FixConfig {
    kalshi_riskd::kalshi::install_crypto_provider();
    let mut cfg = FixConfig::new(FixAddr::parse(addr).unwrap());
    if cfg.addr.tls {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        for c in CertificateDer::pem_slice_iter(include_bytes!("fixtures/tls/ca.pem")) {
            roots.add(c.unwrap()).unwrap();
        }
        cfg.tls_roots = Some(Arc::new(roots));
    }
    cfg
}

fn session(cfg: FixConfig, signer: Signer) -> (FixSession, CancellationToken) {
    let stop = CancellationToken::new();
    let (s, _task) = FixSession::spawn(cfg, signer, Arc::new(Budget::unlimited()), stop.clone());
    (s, stop)
}

async fn logged_on(t: &TestSim, tls: bool) -> (FixSession, CancellationToken) {
    let addr = t.start_fix(tls).await;
    let (s, stop) = session(config(&addr), t.signer.clone());
    s.wait_logged_on(PATIENCE).await.unwrap();
    (s, stop)
}

async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sim_group(t: &TestSim, id: &GroupId) -> serde_json::Value {
    t.group_state(id.as_str()).await
}

#[tokio::test]
async fn all_five_actions_over_plain_tcp_reach_the_same_engine_as_rest() {
    let t = TestSim::start().await;
    let (s, stop) = logged_on(&t, false).await;
    let g = s
        .create_group(2, 0, Contracts::from_whole(5000))
        .await
        .unwrap();
    assert_eq!(g.subaccount, 2);
    // REST sees the group FIX made, in the subaccount it was made for.
    let (_, listed) = t
        .call(
            "GET",
            "/trade-api/v2/portfolio/order_groups?subaccount=2",
            None,
        )
        .await;
    assert_eq!(listed["order_groups"][0]["id"], json!(g.id.as_str()));
    assert_eq!(
        listed["order_groups"][0]["contracts_limit_fp"],
        json!("5000.00")
    );

    s.update_limit(&g, Contracts::from_whole(2500))
        .await
        .unwrap();
    assert_eq!(
        sim_group(&t, &g.id).await["contracts_limit_fp"],
        json!("2500.00")
    );
    s.trigger_group(&g).await.unwrap();
    assert_eq!(sim_group(&t, &g.id).await["triggered"], json!(true));
    s.reset_group(&g).await.unwrap();
    assert_eq!(sim_group(&t, &g.id).await["triggered"], json!(false));
    s.delete_group(&g).await.unwrap();
    let (_, listed) = t
        .call(
            "GET",
            "/trade-api/v2/portfolio/order_groups?subaccount=2",
            None,
        )
        .await;
    assert_eq!(listed["order_groups"], json!([]));
    stop.cancel();
}

#[tokio::test]
async fn tls_logon_and_a_create() {
    let t = TestSim::start().await;
    let (s, stop) = logged_on(&t, true).await;
    let g = s
        .create_group(0, 1, Contracts::from_whole(10))
        .await
        .unwrap();
    assert_eq!(sim_group(&t, &g.id).await["exchange_index"], json!(1));
    stop.cancel();
}

#[tokio::test]
async fn tls_to_an_untrusted_certificate_is_refused() {
    let t = TestSim::start().await;
    let addr = t.start_fix(true).await;
    let mut cfg = config(&addr);
    cfg.tls_roots = Some(Arc::new(rustls::RootCertStore::empty()));
    let (s, stop) = session(cfg, t.signer.clone());
    let why = s.wait_logged_on(Duration::from_secs(2)).await.unwrap_err();
    assert!(why.contains("TLS handshake failed"), "{why}");
    stop.cancel();
}

#[tokio::test]
async fn rejects_are_typed_errors_that_name_the_reason() {
    let t = TestSim::start().await;
    let (s, stop) = logged_on(&t, false).await;
    // A group that does not exist: BusinessMessageReject ORDER_GROUP_NOT_FOUND.
    let ghost = GroupAddress {
        id: GroupId::new("770e8400-e29b-41d4-a716-446655440002"),
        subaccount: 0,
        exchange_index: 0,
    };
    let e = s.trigger_group(&ghost).await.unwrap_err();
    assert!(
        matches!(&e, ExchangeError::BusinessReject { reason: Some(1), text: Some(t), .. } if t == "ORDER_GROUP_NOT_FOUND"),
        "{e:?}"
    );
    assert!(e.is_not_found());
    assert!(e.to_string().contains("ORDER_GROUP_NOT_FOUND"), "{e}");
    // The right group from the wrong subaccount is not found either (AllocAccount must match).
    let g = s
        .create_group(1, 0, Contracts::from_whole(5))
        .await
        .unwrap();
    let wrong = GroupAddress {
        subaccount: 0,
        ..g.clone()
    };
    assert!(s.reset_group(&wrong).await.unwrap_err().is_not_found());
    // A malformed field: session Reject naming the tag.
    let e = s
        .request(
            "reset_order_group",
            Priority::Normal,
            "UOG",
            vec![(20131, b"2".to_vec()), (20130, b"not-a-uuid".to_vec())],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ExchangeError::SessionReject {
                reason: Some(6),
                ref_tag: Some(20130),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("incorrect data format"), "{e}");
    // A missing conditionally required field: 380=5.
    let e = s
        .request(
            "update_order_group_limit",
            Priority::Normal,
            "UOG",
            vec![
                (20131, b"5".to_vec()),
                (20130, g.id.as_str().as_bytes().to_vec()),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ExchangeError::BusinessReject {
                reason: Some(5),
                ..
            }
        ),
        "{e:?}"
    );
    // The session is still good after all of that.
    s.trigger_group(&g).await.unwrap();
    assert_eq!(s.logons(), 1);
    stop.cancel();
}

#[tokio::test]
async fn a_bad_signature_is_refused_at_logon_and_says_so() {
    let t = TestSim::start().await;
    let addr = t.start_fix(false).await;
    let other = kalshi_riskd::kalshi::auth::generate_key().unwrap();
    let wrong = Signer::from_pem(KEY_ID, other.private_pem.as_bytes(), "other").unwrap();
    let mut cfg = config(&addr);
    cfg.queue_timeout = Duration::from_secs(1);
    let (s, stop) = session(cfg, wrong);
    let why = s.wait_logged_on(Duration::from_secs(3)).await.unwrap_err();
    assert!(why.contains("signature"), "{why}");
    let e = s
        .request("create_order_group", Priority::Normal, "UOG", vec![])
        .await;
    assert!(e.is_err());
    stop.cancel();
}

#[tokio::test]
async fn reconnects_after_a_dropped_connection_and_carries_on() {
    let t = TestSim::start().await;
    let (s, stop) = logged_on(&t, false).await;
    let g = s
        .create_group(0, 0, Contracts::from_whole(5))
        .await
        .unwrap();
    let (_, dropped) = t.control("POST", "/fix/drop", None).await;
    assert_eq!(dropped["dropped"], json!(1));
    wait_for("a second logon", async || {
        s.logons() >= 2 && s.is_logged_on()
    })
    .await;
    s.trigger_group(&g).await.unwrap();
    assert_eq!(sim_group(&t, &g.id).await["triggered"], json!(true));
    stop.cancel();
}

#[tokio::test]
async fn a_second_session_for_the_same_key_is_refused_as_already_existing() {
    let t = TestSim::start().await;
    let (first, stop1) = logged_on(&t, false).await;
    let addr = format!("tcp://{}", {
        // the acceptor's address: a second acceptor on the same engine shares its sessions
        let a = t.start_fix(false).await;
        a.trim_start_matches("tcp://").to_owned()
    });
    let (second, stop2) = session(config(&addr), t.signer.clone());
    let why = second
        .wait_logged_on(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(why.contains("already exists"), "{why}");
    assert!(first.is_logged_on());
    stop1.cancel();
    stop2.cancel();
}

#[tokio::test]
async fn requests_wait_for_a_session_and_then_fail_as_not_sent() {
    // Nothing listens on this port.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", free.local_addr().unwrap());
    drop(free);
    let mut cfg = config(&addr);
    cfg.queue_timeout = Duration::from_millis(500);
    let (s, stop) = session(cfg, support::signer());
    let e = s
        .create_group(0, 0, Contracts::from_whole(1))
        .await
        .unwrap_err();
    match &e {
        ExchangeError::Transport {
            maybe_sent, reason, ..
        } => {
            assert!(!maybe_sent, "{e}");
            assert!(reason.contains("connect failed"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.status(), SessionStatus::Down(_)));
    stop.cancel();
}

#[tokio::test]
async fn a_trigger_goes_ahead_of_queued_requests() {
    let t = TestSim::start().await;
    let (s, stop) = logged_on(&t, false).await;
    let g = s
        .create_group(0, 0, Contracts::from_whole(5))
        .await
        .unwrap();
    t.control("POST", "/faults", Some(json!({"latency_ms": 300})))
        .await;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let requests_before = t.control("GET", "/stats", None).await.1["fix_requests"]
        .as_u64()
        .unwrap();
    for i in 0..3 {
        let (s, tx) = (s.clone(), done_tx.clone());
        tokio::spawn(async move {
            s.create_group(0, 0, Contracts::from_whole(7))
                .await
                .unwrap();
            tx.send(format!("create {i}")).unwrap();
        });
    }
    // Once the first create is at the exchange, the others are queued behind it.
    wait_for("the first create in flight", async || {
        t.control("GET", "/stats", None).await.1["fix_requests"]
            .as_u64()
            .unwrap()
            > requests_before
    })
    .await;
    {
        let (s, g, tx) = (s.clone(), g.clone(), done_tx.clone());
        tokio::spawn(async move {
            s.trigger_group(&g).await.unwrap();
            tx.send("trigger".to_owned()).unwrap();
        });
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(
            tokio::time::timeout(PATIENCE, done_rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(order[1], "trigger", "{order:?}");
    stop.cancel();
}

#[tokio::test]
async fn heartbeats_flow_and_a_silent_exchange_is_detected() {
    let t = TestSim::start().await;
    let addr = t.start_fix(false).await;
    let mut cfg = config(&addr);
    cfg.heartbeat = Duration::from_secs(4);
    let (s, stop) = session(cfg, t.signer.clone());
    s.wait_logged_on(PATIENCE).await.unwrap();
    // The client heartbeats when idle; the acceptor answers a TestRequest, so nothing drops.
    wait_for("a heartbeat from the exchange", async || {
        s.heartbeats_received() >= 1
    })
    .await;
    assert_eq!(s.logons(), 1);
    // A silent exchange: TestRequest, then the connection is given up.
    t.control("POST", "/faults", Some(json!({"fix_silent": true})))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let SessionStatus::Down(why) = s.status() {
            assert!(
                why.contains("TestRequest") || why.contains("Logon answer"),
                "{why}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.test_requests_sent() >= 1);
    // Back to normal: the session comes back.
    t.control("POST", "/faults", Some(json!({}))).await;
    wait_for("logged on again", async || s.is_logged_on()).await;
    stop.cancel();
}

/// Reads one FIX message from a raw socket.
async fn read_msg(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Message {
    loop {
        match codec::decode(buf) {
            Ok((m, _, used)) => {
                buf.drain(..used);
                return m;
            }
            Err(codec::DecodeError::Incomplete) => {}
            Err(e) => panic!("{e}"),
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, sock.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn the_client_logon_on_the_wire_is_signed_as_documented() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let (_s, stop) = session(config(&addr), support::signer());
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let logon = read_msg(&mut sock, &mut buf).await;
    let tags: Vec<u32> = logon.fields.iter().map(|(t, _)| *t).collect();
    assert_eq!(&tags[..5], &[35, 49, 56, 34, 52], "header order: {tags:?}");
    assert_eq!(logon.get_str(35), Some("A"));
    assert_eq!(logon.get_str(49), Some(KEY_ID));
    assert_eq!(logon.get_str(56), Some("KalshiNR"));
    assert_eq!(logon.get_str(34), Some("1"));
    assert_eq!(logon.get_str(98), Some("0"));
    assert_eq!(logon.get_str(108), Some("30"));
    assert_eq!(logon.get_str(141), Some("Y"));
    assert_eq!(logon.get_str(1137), Some("9"));
    let p95 = tags
        .iter()
        .position(|t| *t == 95)
        .expect("95 RawDataLength");
    assert_eq!(tags[p95 + 1], 96, "96 right after 95");
    let sig = logon.get_str(96).unwrap();
    assert_eq!(logon.get_str(95), Some(sig.len().to_string().as_str()));
    let st = logon.get_str(52).unwrap();
    assert_eq!(st.len(), 21, "YYYYMMDD-HH:MM:SS.mmm: {st}");
    let prehash = logon_prehash(st, 1, KEY_ID, "KalshiNR");
    support::registry_with(&[(KEY_ID, support::key())])
        .verify_message(KEY_ID, &prehash, sig)
        .expect("the signature verifies with the public key");
    stop.cancel();
}

/// Sends a hand-built Logon to the simulator and returns its first answer.
async fn raw_logon(addr: &str, tweak: impl FnOnce(&mut Message)) -> Message {
    let mut sock = tokio::net::TcpStream::connect(addr.trim_start_matches("tcp://"))
        .await
        .unwrap();
    let signer = support::signer();
    let st = sending_time(kalshi_riskd::kalshi::auth::now_ms());
    let sig = signer.sign_base64(&logon_prehash(&st, 1, KEY_ID, "KalshiNR"));
    let mut m = Message::new("A");
    m.push(49, KEY_ID)
        .push(56, "KalshiNR")
        .push(34, "1")
        .push(52, &st)
        .push(98, "0")
        .push(108, "30")
        .push(141, "Y")
        .push(1137, "9")
        .push_data(95, 96, sig.as_bytes());
    tweak(&mut m);
    sock.write_all(&codec::encode("FIXT.1.1", &m))
        .await
        .unwrap();
    let mut buf = Vec::new();
    read_msg(&mut sock, &mut buf).await
}

#[tokio::test]
async fn the_acceptor_checks_every_logon_field_it_should() {
    let t = TestSim::start().await;
    let addr = t.start_fix(false).await;
    let ok = raw_logon(&addr, |_| {}).await;
    assert_eq!(ok.get_str(35), Some("A"), "{ok:?}");
    assert_eq!(ok.get_str(1137), Some("9"));
    t.sim.state().drop_fix_sessions();
    wait_for("the session released", async || {
        t.sim.state().fix_sessions() == 0
    })
    .await;

    type Tweak = Box<dyn FnOnce(&mut Message)>;
    let cases: Vec<(&str, Tweak, &str, &str)> = vec![
        (
            "no 95",
            Box::new(|m: &mut Message| m.fields.retain(|(t, _)| *t != 95)),
            "1",
            "95",
        ),
        (
            "forged signature",
            Box::new(|m: &mut Message| {
                for f in m.fields.iter_mut().filter(|(t, _)| *t == 52) {
                    f.1 = sending_time(kalshi_riskd::kalshi::auth::now_ms() - 1000).into_bytes();
                }
            }),
            "8",
            "96",
        ),
        (
            "stale SendingTime",
            Box::new(|m: &mut Message| {
                for f in m.fields.iter_mut().filter(|(t, _)| *t == 52) {
                    f.1 = sending_time(kalshi_riskd::kalshi::auth::now_ms() - 60_000).into_bytes();
                }
            }),
            "10",
            "52",
        ),
        (
            "HeartBtInt 3",
            Box::new(|m: &mut Message| {
                for f in m.fields.iter_mut().filter(|(t, _)| *t == 108) {
                    f.1 = b"3".to_vec();
                }
            }),
            "5",
            "108",
        ),
        (
            "no ResetSeqNumFlag on NR",
            Box::new(|m: &mut Message| m.fields.retain(|(t, _)| *t != 141)),
            "5",
            "141",
        ),
    ];
    for (name, tweak, reason, tag) in cases {
        let answer = raw_logon(&addr, tweak).await;
        assert_eq!(answer.get_str(35), Some("3"), "{name}: {answer:?}");
        assert_eq!(answer.get_str(373), Some(reason), "{name}: {answer:?}");
        assert_eq!(answer.get_str(371), Some(tag), "{name}: {answer:?}");
        assert!(answer.get_str(58).is_some(), "{name}");
    }
}

/// Each attempt of a group action picks its channel: an action retried after the FIX session
/// went silent goes on over REST instead of waiting on FIX.
#[tokio::test]
async fn a_group_action_retried_after_fix_goes_silent_goes_on_over_rest() {
    let t = TestSim::start().await;
    let addr = t.start_fix(false).await;
    let mut cfg = config(&addr);
    cfg.answer_timeout = Duration::from_millis(500);
    cfg.queue_timeout = Duration::from_secs(1);
    let (s, stop) = session(cfg, t.signer.clone());
    s.wait_logged_on(PATIENCE).await.unwrap();
    let control = GroupControl::fix(t.rest_client(|_| {}), s.clone());
    let g = control
        .create_group(0, 0, Contracts::from_whole(5))
        .await
        .unwrap();
    control.trigger_group(&g).await.unwrap();
    assert_eq!(sim_group(&t, &g.id).await["triggered"], true);
    // The acceptor reads the reset and ignores it: the first attempt gets no answer, and the
    // session gives up its connection.
    t.control("POST", "/faults", Some(json!({"fix_silent": true})))
        .await;
    let started = tokio::time::Instant::now();
    control.reset_group(&g).await.unwrap();
    assert_eq!(sim_group(&t, &g.id).await["triggered"], false);
    assert!(!s.is_logged_on());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the reset waited on FIX: {:?}",
        started.elapsed()
    );
    stop.cancel();
}
