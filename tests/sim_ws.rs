//! The simulated user WebSocket: signed upgrade, commands and their acks and errors, the three
//! data channels in the exchange's shapes, per-sid `seq`, pings, drops, silence, injected frames.

mod support;

use std::time::Duration;

use kalshi_riskd::kalshi::Signer;
use kalshi_riskd::kalshi::auth::generate_key;
use serde_json::json;
use support::{Frame, TestSim};

#[tokio::test]
async fn the_upgrade_needs_a_valid_signature() {
    let t = TestSim::start().await;
    let stranger = Signer::from_pem(
        "nobody",
        generate_key().unwrap().private_pem.as_bytes(),
        "x",
    )
    .unwrap();
    let err = t.ws_signed_by(&stranger).await.err().expect("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 401);
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["details"], "NOT_FOUND", "{body}");
        }
        other => panic!("expected an HTTP 401, got {other:?}"),
    }
}

#[tokio::test]
async fn subscribe_list_and_unsubscribe() {
    let t = TestSim::start().await;
    let mut ws = t.ws().await;
    let sids = ws
        .subscribe(1, &["order_group_updates", "user_orders", "fill"])
        .await;
    assert_eq!(sids.len(), 3);
    assert!(sids[0] != sids[1] && sids[1] != sids[2], "{sids:?}");
    // Subscribing again to a channel is not an error and keeps its sid.
    assert_eq!(ws.subscribe(2, &["fill"]).await, vec![sids[2]]);

    ws.send(json!({"id": 3, "cmd": "list_subscriptions"})).await;
    let v = ws.json().await;
    assert_eq!(v["type"], "ok");
    assert_eq!(v["id"], 3);
    assert_eq!(v["msg"].as_array().unwrap().len(), 3, "{v}");

    ws.send(json!({"id": 4, "cmd": "unsubscribe", "params": {"sids": [sids[1]]}}))
        .await;
    let v = ws.json().await;
    assert_eq!(
        v,
        json!({"id": 4, "sid": sids[1], "seq": 0, "type": "unsubscribed"})
    );
    ws.send(json!({"id": 5, "cmd": "list_subscriptions"})).await;
    assert_eq!(ws.json().await["msg"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_commands_get_the_documented_error_codes() {
    let t = TestSim::start().await;
    let mut ws = t.ws().await;
    for (cmd, code) in [
        (json!({"id": 1, "cmd": "subscribe"}), 2),
        (json!({"id": 2, "cmd": "subscribe", "params": {}}), 3),
        (
            json!({"id": 3, "cmd": "subscribe", "params": {"channels": []}}),
            3,
        ),
        (json!({"id": 4, "cmd": "unsubscribe", "params": {}}), 4),
        (json!({"id": 5, "cmd": "fly"}), 5),
        (
            json!({"id": 6, "cmd": "unsubscribe", "params": {"sids": [99]}}),
            7,
        ),
        (
            json!({"id": 7, "cmd": "subscribe", "params": {"channels": ["no_such_channel"]}}),
            8,
        ),
    ] {
        ws.send(cmd.clone()).await;
        let v = ws.json().await;
        assert_eq!(v["type"], "error", "{cmd} -> {v}");
        assert_eq!(v["msg"]["code"], code, "{cmd} -> {v}");
        assert_eq!(v["id"], cmd["id"], "{v}");
    }
    ws.send_text("this is not json").await;
    let v = ws.json().await;
    assert_eq!(
        (v["type"].clone(), v["msg"]["code"].clone()),
        (json!("error"), json!(1))
    );
}

#[tokio::test]
async fn data_messages_follow_the_exchanges_shapes_and_order() {
    let t = TestSim::start().await;
    let mut ws = t.ws().await;
    let sids = ws
        .subscribe(1, &["order_group_updates", "user_orders", "fill"])
        .await;
    let g = t.create_group(5, 0).await;
    let created = ws.json().await;
    assert_eq!(created["type"], "order_group_updates");
    assert_eq!(created["sid"], sids[0]);
    assert_eq!(created["seq"], 1);
    assert_eq!(created["msg"]["event_type"], "created");
    assert_eq!(created["msg"]["order_group_id"], g.as_str());
    assert_eq!(created["msg"]["contracts_limit_fp"], "5.00");
    assert!(created["msg"]["ts_ms"].as_i64().unwrap() > 1_700_000_000_000);

    let (_, order) = t.order(Some(&g), "6").await;
    let order_id = order["order_id"].as_str().unwrap();

    let resting = ws.json().await;
    assert_eq!(resting["type"], "user_order");
    assert_eq!(resting["sid"], sids[1]);
    assert!(resting.get("seq").is_none(), "user_orders has no seq");
    assert_eq!(resting["msg"]["status"], "resting");
    assert_eq!(resting["msg"]["order_group_id"], g.as_str());
    assert_eq!(resting["msg"]["order_id"], order_id);

    let fill = ws.json().await;
    assert_eq!(fill["type"], "fill");
    assert_eq!(fill["sid"], sids[2]);
    assert!(fill.get("seq").is_none(), "fill has no seq");
    let m = &fill["msg"];
    assert!(
        m.get("order_group_id").is_none(),
        "fills do not name the group: {m}"
    );
    assert_eq!(m["order_id"], order_id);
    assert_eq!(m["count_fp"], "6.00");
    assert_eq!(m["yes_price_dollars"], "0.4200");
    assert_eq!(m["market_ticker"], "KXSIM-26NOV23-T1");
    assert_eq!(m["book_side"], "bid");
    assert_eq!(m["outcome_side"], "yes");
    assert_eq!(m["is_taker"], true);
    assert_eq!(m["trade_id"].as_str().unwrap().len(), 36);
    assert_eq!(m["post_position_fp"], "6.00");

    assert_eq!(ws.json().await["msg"]["status"], "executed");
    let triggered = ws.json().await;
    assert_eq!(triggered["seq"], 2);
    assert_eq!(triggered["msg"]["event_type"], "triggered");
    assert!(triggered["msg"].get("contracts_limit_fp").is_none());

    for (action, event) in [("reset", "reset"), ("trigger", "triggered")] {
        t.call(
            "PUT",
            &format!("/trade-api/v2/portfolio/order_groups/{g}/{action}"),
            None,
        )
        .await;
        let v = ws.next_of("order_group_updates").await;
        assert_eq!(v["msg"]["event_type"], event);
    }
    t.call(
        "PUT",
        &format!("/trade-api/v2/portfolio/order_groups/{g}/limit"),
        Some(json!({"contracts_limit": 9})),
    )
    .await;
    let v = ws.next_of("order_group_updates").await;
    assert_eq!(
        (
            v["msg"]["event_type"].clone(),
            v["msg"]["contracts_limit_fp"].clone()
        ),
        (json!("limit_updated"), json!("9.00"))
    );
    t.call(
        "DELETE",
        &format!("/trade-api/v2/portfolio/order_groups/{g}"),
        None,
    )
    .await;
    let v = ws.next_of("order_group_updates").await;
    assert_eq!(
        (v["msg"]["event_type"].clone(), v["seq"].clone()),
        (json!("deleted"), json!(6))
    );
}

#[tokio::test]
async fn seq_is_per_subscription_and_ticker_filters_apply() {
    let t = TestSim::start().await;
    let mut early = t.ws().await;
    early.subscribe(1, &["order_group_updates"]).await;
    t.create_group(5, 0).await;
    t.create_group(5, 0).await;
    assert_eq!(early.json().await["seq"], 1);
    assert_eq!(early.json().await["seq"], 2);
    let mut late = t.ws().await;
    late.subscribe(1, &["order_group_updates"]).await;
    late.send(json!({"id": 2, "cmd": "subscribe", "params": {"channels": ["fill"], "market_tickers": ["KXWANTED"]}})).await;
    late.json().await;
    t.create_group(5, 0).await;
    assert_eq!(
        late.json().await["seq"],
        1,
        "a new subscription starts its own sequence"
    );
    assert_eq!(early.json().await["seq"], 3);
    t.order_in("KXOTHER", None, "1", 0).await;
    t.order_in("KXWANTED", None, "2", 0).await;
    let fill = late.json().await;
    assert_eq!(
        fill["msg"]["market_ticker"], "KXWANTED",
        "the filter skipped KXOTHER: {fill}"
    );
}

#[tokio::test]
async fn the_server_pings_with_heartbeat() {
    let t = TestSim::start_with(|c| c.ping_interval = Duration::from_millis(100)).await;
    let mut ws = t.ws().await;
    loop {
        match ws.frame().await {
            Frame::Ping(p) => {
                assert_eq!(p, b"heartbeat");
                break;
            }
            Frame::Closed => panic!("closed"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn dropping_closes_every_connection_without_a_close_frame() {
    let t = TestSim::start().await;
    let mut a = t.ws().await;
    let mut b = t.ws().await;
    a.subscribe(1, &["fill"]).await;
    b.subscribe(1, &["fill"]).await;
    let (status, _) = t.control("POST", "/ws/drop", None).await;
    assert_eq!(status, 200);
    for ws in [&mut a, &mut b] {
        match tokio::time::timeout(
            support::PATIENCE,
            futures_util::StreamExt::next(&mut ws.stream),
        )
        .await
        {
            Ok(None) | Ok(Some(Err(_))) => {}
            other => panic!("expected an abrupt end, got {other:?}"),
        }
    }
    // New connections work after a drop.
    let mut c = t.ws().await;
    c.subscribe(1, &["fill"]).await;
}

#[tokio::test]
async fn a_silent_stream_says_nothing_then_resumes_with_a_seq_gap() {
    let t = TestSim::start_with(|c| c.ping_interval = Duration::from_millis(50)).await;
    let mut ws = t.ws().await;
    ws.subscribe(1, &["order_group_updates"]).await;
    t.create_group(5, 0).await;
    assert_eq!(ws.next_of("order_group_updates").await["seq"], 1);
    t.control("POST", "/faults", Some(json!({"ws_silent": true})))
        .await;
    // A ping already on the wire when the silence began may still arrive; nothing else may.
    while let Ok(Some(Ok(m))) = tokio::time::timeout(
        Duration::from_millis(150),
        futures_util::StreamExt::next(&mut ws.stream),
    )
    .await
    {
        assert!(m.is_ping(), "only an in-flight ping may arrive: {m:?}");
    }
    t.create_group(5, 0).await; // published while silent: lost
    // Commands go unanswered and not even pings arrive.
    ws.send(json!({"id": 9, "cmd": "list_subscriptions"})).await;
    ws.assert_quiet(Duration::from_millis(400)).await;
    t.control("POST", "/faults", Some(json!({"ws_silent": false})))
        .await;
    t.create_group(5, 0).await;
    let v = ws.next_of("order_group_updates").await;
    assert_eq!(v["seq"], 3, "seq 2 was lost during the silence: {v}");
}

#[tokio::test]
async fn garbage_frames_can_be_injected() {
    let t = TestSim::start().await;
    let mut ws = t.ws().await;
    ws.subscribe(1, &["fill"]).await;
    let (_, r) = t
        .control(
            "POST",
            "/ws/inject",
            Some(json!({"text": "{\"type\":\"fill\",\"msg\":"})),
        )
        .await;
    assert_eq!(r["sent_to"], 1);
    match ws.frame().await {
        Frame::Json(serde_json::Value::String(s)) => assert_eq!(s, "{\"type\":\"fill\",\"msg\":"),
        other => panic!("expected the raw garbage text, got {other:?}"),
    }
    t.control("POST", "/ws/inject", Some(json!({"binary_base64": "AAEC"})))
        .await;
    match ws.frame().await {
        Frame::Other(m) => assert!(m.is_binary()),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

#[tokio::test]
async fn the_exchange_ends_a_subscription_with_a_terminal_error_naming_its_sid() {
    let t = TestSim::start().await;
    let mut ws = t.ws().await;
    let sids = ws.subscribe(1, &["fill", "user_orders"]).await;
    let mut fill_sid = sids[0];
    for (id, code, text) in [
        (2, 25, "Subscription buffer overflow"),
        (3, 10, "Channel error"),
    ] {
        let (status, body) = t
            .control(
                "POST",
                "/ws/end_subscription",
                Some(json!({"channel": "fill", "code": code})),
            )
            .await;
        assert!(status.is_success(), "{body}");
        let err = ws.next_of("error").await;
        assert_eq!(
            err,
            json!({"id": 0, "type": "error", "sid": fill_sid, "msg": {"code": code, "msg": text}})
        );
        if id == 2 {
            // Subscribing again gives a new sid.
            let again = ws.subscribe(id, &["fill"]).await[0];
            assert_ne!(again, fill_sid);
            fill_sid = again;
        }
    }
    // The connection stays; the subscription is gone; user_orders is untouched.
    ws.send(json!({"id": 4, "cmd": "list_subscriptions"})).await;
    let v = ws.next_of("ok").await;
    assert_eq!(
        v["msg"],
        json!([{"channel": "user_orders", "sid": sids[1]}]),
        "{v}"
    );
    // Fills no longer arrive on this connection.
    t.order(None, "1").await;
    let next = ws.next_of("user_order").await;
    assert_eq!(next["sid"], sids[1]);
    // Bad requests are refused with the reason.
    let (status, _) = t
        .control(
            "POST",
            "/ws/end_subscription",
            Some(json!({"channel": "fill", "code": 7})),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_refused_subscribe_leaves_its_channels_unsubscribed() {
    let t = TestSim::start().await;
    t.set_faults(json!({"ws_refuse_subscribe": ["fill"]})).await;
    let mut ws = t.ws().await;
    ws.send(json!({"id": 1, "cmd": "subscribe", "params": {"channels": ["fill", "user_orders"]}}))
        .await;
    let ok = ws.json().await;
    assert_eq!(
        (ok["type"].as_str(), ok["msg"]["channel"].as_str()),
        (Some("subscribed"), Some("user_orders"))
    );
    let err = ws.json().await;
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["id"], 1);
    assert_eq!(err["msg"]["code"], 17);
    ws.send(json!({"id": 2, "cmd": "list_subscriptions"})).await;
    assert_eq!(ws.next_of("ok").await["msg"].as_array().unwrap().len(), 1);
}

/// The simulator can time a client's reaction itself: when a group's last fill and its trip
/// were handed to the WebSocket sessions, kept only once asked for.
#[tokio::test]
async fn stamps_time_a_groups_last_fill_and_its_trip_once_asked() {
    use kalshi_riskd::sim::GroupStamps;
    let t = TestSim::start().await;
    let g = t.create_group(5, 0).await;
    t.order(Some(&g), "3").await;
    assert_eq!(
        t.sim.state().stamps(&g),
        GroupStamps::default(),
        "not kept unless asked"
    );
    t.sim.state().keep_stamps();
    // 3 + 3 contracts in the window, over the limit of 5: the second fill trips the group.
    t.order(Some(&g), "3").await;
    let s = t.sim.state().stamps(&g);
    let (fill, trip) = (s.last_fill.expect("a fill"), s.triggered.expect("a trip"));
    assert!(trip >= fill, "{s:?}");
}
