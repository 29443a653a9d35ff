//! The user-stream client against the simulator: typed events in order, reconnect after a drop,
//! blind on silence, `seq` gaps, garbage frames counted and survived, and overflow reported.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use kalshi_riskd::kalshi::stream::{self, Health, StreamConfig, StreamEvent};
use kalshi_riskd::kalshi::ws::GroupEventKind;
use kalshi_riskd::risk::Contracts;
use serde_json::json;
use support::{PATIENCE, TestSim};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

fn config(t: &TestSim) -> StreamConfig {
    let mut cfg = StreamConfig::new(t.sim.ws_url());
    cfg.blind_after = Duration::from_millis(800);
    cfg.backoff.initial = Duration::from_millis(10);
    cfg.backoff.max = Duration::from_millis(50);
    cfg
}

async fn next(rx: &mut Receiver<StreamEvent>) -> StreamEvent {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("an event in time")
        .expect("the stream is running")
}

/// The next event that satisfies `want`, skipping others.
async fn until(rx: &mut Receiver<StreamEvent>, want: impl Fn(&StreamEvent) -> bool) -> StreamEvent {
    loop {
        let ev = next(rx).await;
        if want(&ev) {
            return ev;
        }
    }
}

fn is(h: Health) -> impl Fn(&StreamEvent) -> bool {
    move |e| *e == StreamEvent::Health(h.clone())
}

#[tokio::test]
async fn typed_events_arrive_in_exchange_order() {
    let t = TestSim::start().await;
    let stop = CancellationToken::new();
    let (mut rx, counters, task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    assert_eq!(next(&mut rx).await, StreamEvent::Health(Health::Connected));
    assert!(counters.connected.load(Ordering::Relaxed));

    let g = t.create_group(5, 0).await;
    let StreamEvent::Group(created) = next(&mut rx).await else {
        panic!()
    };
    assert_eq!(
        (created.kind, created.group_id.as_str(), created.limit),
        (
            GroupEventKind::Created,
            g.as_str(),
            Some(Contracts::from_whole(5))
        )
    );
    let (_, order) = t.order(Some(&g), "6").await;
    let StreamEvent::Order(resting) = next(&mut rx).await else {
        panic!()
    };
    assert_eq!(
        resting.group_id.as_ref().map(|g| g.as_str()),
        Some(g.as_str())
    );
    assert_eq!(resting.order_id, order["order_id"].as_str().unwrap());
    let StreamEvent::Fill(fill) = next(&mut rx).await else {
        panic!()
    };
    assert_eq!(fill.count, Contracts::from_whole(6));
    assert_eq!(fill.order_id, resting.order_id);
    let StreamEvent::Order(executed) = next(&mut rx).await else {
        panic!()
    };
    assert_eq!(executed.status, "executed");
    let StreamEvent::Group(triggered) = next(&mut rx).await else {
        panic!()
    };
    assert_eq!(triggered.kind, GroupEventKind::Triggered);

    stop.cancel();
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_dropped_connection_is_rebuilt_and_resubscribed() {
    let t = TestSim::start().await;
    let stop = CancellationToken::new();
    let (mut rx, counters, _task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    until(&mut rx, is(Health::Connected)).await;
    t.control("POST", "/ws/drop", None).await;
    until(&mut rx, |e| {
        matches!(e, StreamEvent::Health(Health::Disconnected { .. }))
    })
    .await;
    until(&mut rx, is(Health::Connected)).await;
    assert!(counters.reconnects.load(Ordering::Relaxed) >= 1);
    // Subscribed again: new events flow.
    let g = t.create_group(5, 0).await;
    let StreamEvent::Group(e) = until(&mut rx, |e| matches!(e, StreamEvent::Group(_))).await else {
        unreachable!()
    };
    assert_eq!(e.group_id.as_str(), g);
    stop.cancel();
}

#[tokio::test]
async fn a_silent_stream_is_blind_and_rebuilt() {
    let t = TestSim::start().await;
    let stop = CancellationToken::new();
    let (mut rx, _counters, _task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    until(&mut rx, is(Health::Connected)).await;
    t.set_faults(json!({"ws_silent": true})).await;
    let ev = until(&mut rx, |e| {
        matches!(e, StreamEvent::Health(Health::Blind { .. }))
    })
    .await;
    let StreamEvent::Health(Health::Blind { silent_for }) = ev else {
        unreachable!()
    };
    assert!(silent_for >= Duration::from_millis(800), "{silent_for:?}");
    // New connections are silent too, so the stream stays blind until the fault is lifted.
    t.set_faults(json!({})).await;
    until(&mut rx, is(Health::Connected)).await;
    stop.cancel();
}

#[tokio::test]
async fn a_seq_gap_is_reported() {
    let t = TestSim::start().await;
    let stop = CancellationToken::new();
    let (mut rx, counters, _task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    until(&mut rx, is(Health::Connected)).await;
    t.create_group(5, 0).await; // seq 1 on the client's order_group_updates sid
    until(&mut rx, |e| matches!(e, StreamEvent::Group(_))).await;
    // Find the sid the simulator gave this connection: it is 3 (the third channel subscribed).
    let forged = json!({"type": "order_group_updates", "sid": 3, "seq": 5,
        "msg": {"event_type": "reset", "order_group_id": "og-x", "ts_ms": 1}});
    t.control(
        "POST",
        "/ws/inject",
        Some(json!({"text": forged.to_string()})),
    )
    .await;
    assert_eq!(
        until(&mut rx, |e| matches!(
            e,
            StreamEvent::Health(Health::SeqGap { .. })
        ))
        .await,
        StreamEvent::Health(Health::SeqGap {
            expected: 2,
            got: 5
        })
    );
    assert_eq!(counters.gaps.load(Ordering::Relaxed), 1);
    stop.cancel();
}

#[tokio::test]
async fn garbage_frames_are_counted_and_the_stream_goes_on() {
    let t = TestSim::start().await;
    let stop = CancellationToken::new();
    let (mut rx, counters, _task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    until(&mut rx, is(Health::Connected)).await;
    for junk in [
        json!({"text": "{\"type\":\"fill\",\"msg\":"}),
        json!({"text": "\u{0}\u{1}not json at all"}),
        json!({"text": "{\"type\":\"fill\",\"msg\":{\"trade_id\":\"t\",\"count_fp\":\"-1\"}}"}),
        json!({"binary_base64": "3q2+7w=="}),
    ] {
        t.control("POST", "/ws/inject", Some(junk)).await;
    }
    let g = t.create_group(5, 0).await;
    let StreamEvent::Group(e) = until(&mut rx, |e| matches!(e, StreamEvent::Group(_))).await else {
        unreachable!()
    };
    assert_eq!(e.group_id.as_str(), g, "still connected and decoding");
    assert_eq!(counters.garbage.load(Ordering::Relaxed), 4);
    assert_eq!(counters.reconnects.load(Ordering::Relaxed), 0);
    stop.cancel();
}

#[tokio::test]
async fn a_full_buffer_drops_events_and_says_how_many() {
    let t = TestSim::start().await;
    let stop = CancellationToken::new();
    let mut cfg = config(&t);
    cfg.buffer = 4;
    let (mut rx, counters, _task) = stream::spawn(cfg, t.signer.clone(), stop.clone());
    until(&mut rx, is(Health::Connected)).await;
    // Ten group events while nobody reads: four fit, six are dropped.
    for _ in 0..10 {
        t.create_group(5, 0).await;
    }
    // The last create's event has been sent once a later frame has been processed; wait for
    // the drops to be counted.
    tokio::time::timeout(PATIENCE, async {
        while counters.dropped.load(Ordering::Relaxed) < 6 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("drops counted");
    for _ in 0..4 {
        assert!(matches!(next(&mut rx).await, StreamEvent::Group(_)));
    }
    t.create_group(5, 0).await;
    assert_eq!(
        next(&mut rx).await,
        StreamEvent::Health(Health::Overflow { dropped: 6 })
    );
    assert!(matches!(next(&mut rx).await, StreamEvent::Group(_)));
    stop.cancel();
}

#[tokio::test]
async fn a_refused_key_keeps_retrying_and_says_why() {
    let t = TestSim::start().await;
    let key = kalshi_riskd::kalshi::auth::generate_key().unwrap();
    let stranger =
        kalshi_riskd::kalshi::Signer::from_pem("stranger", key.private_pem.as_bytes(), "x")
            .unwrap();
    let stop = CancellationToken::new();
    let (mut rx, _counters, _task) = stream::spawn(config(&t), stranger, stop.clone());
    let StreamEvent::Health(Health::Disconnected { reason }) = next(&mut rx).await else {
        panic!()
    };
    assert!(reason.contains("401"), "{reason}");
    let StreamEvent::Health(Health::Disconnected { .. }) = next(&mut rx).await else {
        panic!("retries")
    };
    stop.cancel();
}

#[tokio::test]
async fn the_client_answers_the_servers_pings() {
    let t = TestSim::start_with(|c| c.ping_interval = Duration::from_millis(50)).await;
    let stop = CancellationToken::new();
    let (mut rx, _counters, _task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    until(&mut rx, is(Health::Connected)).await;
    tokio::time::timeout(PATIENCE, async {
        while t.stats().await["ws_pongs"].as_u64().unwrap() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("pongs reach the server");
    stop.cancel();
}

/// The next fill, skipping everything else.
async fn next_fill(rx: &mut Receiver<StreamEvent>) -> kalshi_riskd::kalshi::ws::Fill {
    match until(rx, |e| matches!(e, StreamEvent::Fill(_))).await {
        StreamEvent::Fill(f) => f,
        _ => unreachable!(),
    }
}

fn lost(channel: &'static str) -> impl Fn(&StreamEvent) -> bool {
    move |e| matches!(e, StreamEvent::Health(Health::SubscriptionLost { channel: c, .. }) if *c == channel)
}

#[tokio::test]
async fn a_subscription_the_exchange_ends_is_restored_and_fills_keep_coming() {
    let t = TestSim::start().await;
    let stop = CancellationToken::new();
    let (mut rx, counters, task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    until(&mut rx, is(Health::Connected)).await;
    for code in [25, 10] {
        let (status, body) = t
            .control(
                "POST",
                "/ws/end_subscription",
                Some(json!({"channel": "fill", "code": code})),
            )
            .await;
        assert!(status.is_success(), "{body}");
        let StreamEvent::Health(Health::SubscriptionLost { reason, .. }) =
            until(&mut rx, lost("fill")).await
        else {
            unreachable!()
        };
        assert!(reason.contains(&format!("error {code}")), "{reason}");
        // Restored at once on the same connection: Connected again, and fills flow.
        until(&mut rx, is(Health::Connected)).await;
        t.order(None, "2").await;
        assert_eq!(next_fill(&mut rx).await.count, Contracts::from_whole(2));
    }
    assert_eq!(counters.subscriptions_lost[0].load(Ordering::Relaxed), 2);
    assert_eq!(
        counters.reconnects.load(Ordering::Relaxed),
        0,
        "no reconnect was needed"
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_subscription_lost_without_a_word_is_found_by_listing() {
    let t = TestSim::start().await;
    let stop = CancellationToken::new();
    let mut cfg = config(&t);
    cfg.list_every = Duration::from_millis(100);
    let (mut rx, _counters, task) = stream::spawn(cfg, t.signer.clone(), stop.clone());
    until(&mut rx, is(Health::Connected)).await;
    let (status, body) = t
        .control(
            "POST",
            "/ws/end_subscription",
            Some(json!({"channel": "order_group_updates", "silent": true})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let StreamEvent::Health(Health::SubscriptionLost { reason, .. }) =
        until(&mut rx, lost("order_group_updates")).await
    else {
        unreachable!()
    };
    assert!(reason.contains("list_subscriptions"), "{reason}");
    until(&mut rx, is(Health::Connected)).await;
    let g = t.create_group(5, 0).await;
    let ev = until(&mut rx, |e| matches!(e, StreamEvent::Group(_))).await;
    let StreamEvent::Group(created) = ev else {
        unreachable!()
    };
    assert_eq!(created.group_id.as_str(), g);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_refused_subscribe_is_retried_and_counts_as_blind_until_restored() {
    let t = TestSim::start().await;
    t.set_faults(json!({"ws_refuse_subscribe": ["fill"]})).await;
    let stop = CancellationToken::new();
    let (mut rx, counters, task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    let StreamEvent::Health(Health::SubscriptionLost { reason, .. }) =
        until(&mut rx, lost("fill")).await
    else {
        unreachable!()
    };
    assert!(reason.contains("subscribe refused"), "{reason}");
    assert!(!counters.connected.load(Ordering::Relaxed));
    // Not restored within blind_after: blind, and the connection is rebuilt.
    until(&mut rx, |e| {
        matches!(e, StreamEvent::Health(Health::Blind { .. }))
    })
    .await;
    t.set_faults(json!({})).await;
    until(&mut rx, is(Health::Connected)).await;
    assert!(
        counters
            .subscribed
            .iter()
            .all(|s| s.load(Ordering::Relaxed))
    );
    t.order(None, "3").await;
    assert_eq!(next_fill(&mut rx).await.count, Contracts::from_whole(3));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn loose_group_events_are_taken_and_unknown_ones_counted_not_fatal() {
    let t = TestSim::start().await;
    t.set_faults(json!({"ws_loose_group_events": true})).await;
    let stop = CancellationToken::new();
    let (mut rx, counters, task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    until(&mut rx, is(Health::Connected)).await;
    let g = t.create_group(5, 0).await;
    t.call(
        "PUT",
        &format!("/trade-api/v2/portfolio/order_groups/{g}/trigger"),
        None,
    )
    .await;
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match next(&mut rx).await {
            StreamEvent::Group(e) => {
                assert_eq!(e.ts_ms, None, "sent without ts_ms");
                kinds.push(e.kind);
            }
            StreamEvent::Health(h) => panic!("no health event expected: {h:?}"),
            _ => {}
        }
    }
    assert_eq!(kinds, [GroupEventKind::Created, GroupEventKind::Triggered]);
    assert!(counters.unknown.load(Ordering::Relaxed) >= 1);
    assert_eq!(
        counters.gaps.load(Ordering::Relaxed),
        0,
        "unknown events keep seq"
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_undecodable_group_message_asks_for_a_reconcile() {
    let t = TestSim::start().await;
    let stop = CancellationToken::new();
    let (mut rx, _counters, task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    until(&mut rx, is(Health::Connected)).await;
    t.control(
        "POST",
        "/ws/inject",
        Some(json!({"text": r#"{"type":"order_group_updates","sid":3,"seq":1,"msg":{"event_type":7}}"#})),
    )
    .await;
    let ev = until(&mut rx, |e| {
        matches!(e, StreamEvent::Health(Health::Lossy { .. }))
    })
    .await;
    assert!(format!("{ev:?}").contains("order_group_updates"), "{ev:?}");
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_fill_reaches_the_consumer_before_the_next_frame_is_read() {
    // One thread: what the stream task does before the consumer runs is visible in its
    // message count.
    let t = TestSim::start().await;
    let stop = CancellationToken::new();
    let (mut rx, counters, task) = stream::spawn(config(&t), t.signer.clone(), stop.clone());
    assert_eq!(next(&mut rx).await, StreamEvent::Health(Health::Connected));
    let g = t.create_group(5, 0).await;
    until(&mut rx, |e| matches!(e, StreamEvent::Group(_))).await;
    // The fill is published between the order's two updates, with the group's trigger after.
    let before = counters.messages.load(Ordering::Relaxed);
    let (_, at_fill) = tokio::join!(t.order(Some(&g), "6"), async {
        until(&mut rx, |e| matches!(e, StreamEvent::Fill(_))).await;
        counters.messages.load(Ordering::Relaxed)
    });
    // Read so far: the resting order's update and the fill; not the messages after it.
    assert_eq!(
        at_fill,
        before + 2,
        "the stream read on past the fill first"
    );
    stop.cancel();
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
}
