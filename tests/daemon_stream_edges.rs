//! The real `kalshi-riskd run` against the simulator at the stream's edges: a subscription the
//! exchange ends is noticed, restored and reconciled (and a breach after it still trips); one
//! that cannot be restored within `blind_after` is blind, and a fail-closed strategy trips;
//! loose group events from the exchange still trip a strategy.

mod support;

use std::time::Duration;

use serde_json::json;
use support::TestSim;
use support::daemon::{get, group_of, sample, setup, start, stop};
use tokio::time::Instant;

const RUNAWAY: &str = "[group]\ncontracts_limit = 100\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = 20\n";

async fn end_subscription(t: &TestSim, channel: &str, code: u32) {
    let (status, body) = t
        .control(
            "POST",
            "/ws/end_subscription",
            Some(json!({"channel": channel, "code": code})),
        )
        .await;
    assert!(status.is_success(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_the_exchange_ends_is_restored_and_a_breach_after_it_trips() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY)], "");
    let d = start(dir.path()).await;
    let addr = d.metrics_addr();
    let g = group_of(&d.state(), "runaway");
    end_subscription(&t, "fill", 25).await;
    let lossy = d.until_audit("the lost subscription", |v| v["event"] == "stream_lossy");
    assert!(
        lossy["reason"]
            .as_str()
            .unwrap()
            .contains("subscription to fill was lost: ended by the exchange: error 25"),
        "{lossy}"
    );
    // Restored: the metric counts the loss, the channel is subscribed again.
    let deadline = Instant::now() + support::PATIENCE;
    loop {
        let scrape = get(&addr, "/metrics").await.1;
        let lost = sample(
            &scrape,
            r#"kalshi_riskd_stream_subscriptions_lost_total{channel="fill"}"#,
        );
        let up = sample(&scrape, r#"kalshi_riskd_stream_subscribed{channel="fill"}"#);
        if lost == Some(1.0) && up == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{scrape}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Fills reach the daemon again: a breach trips.
    t.order(Some(&g), "21").await;
    d.until_state("tripped", |s| {
        s["strategies"]["runaway"]["state"] == "tripped"
    });
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_cannot_be_restored_is_blind_and_a_fail_closed_strategy_trips() {
    let t = TestSim::start().await;
    let closed = "[group]\ncontracts_limit = 100\n[blind]\naction = \"trigger\"\n";
    let dir = setup(
        &t,
        &[("closed.toml", closed)],
        "\n[stream]\nblind_after = \"1s\"\n",
    );
    let d = start(dir.path()).await;
    let addr = d.metrics_addr();
    // The exchange ends the fill subscription and refuses it back, while the connection and
    // its pings stay healthy.
    t.set_faults(json!({"ws_refuse_subscribe": ["fill"]})).await;
    end_subscription(&t, "fill", 10).await;
    let deadline = Instant::now() + support::PATIENCE;
    while get(&addr, "/readyz").await.0 != 503 {
        assert!(Instant::now() < deadline, "still ready without fills");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The state is written while the Trigger is in flight: wait for the exchange's answer.
    let state = d.until_state("blind-tripped, the Trigger confirmed", |s| {
        s["strategies"]["closed"]["state"] == "tripped"
            && s["strategies"]["closed"]["trip"]["confirmed_ms"].is_i64()
    });
    assert_eq!(state["strategies"]["closed"]["trip"]["reason"], "blind");
    assert_eq!(
        t.group_state(&group_of(&state, "closed")).await["triggered"],
        true
    );
    t.set_faults(json!({})).await;
    let deadline = Instant::now() + support::PATIENCE;
    while get(&addr, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loose_group_events_from_the_exchange_still_trip_a_strategy() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY)], "");
    let d = start(dir.path()).await;
    let addr = d.metrics_addr();
    let g = group_of(&d.state(), "runaway");
    t.set_faults(json!({"ws_loose_group_events": true})).await;
    // Someone else triggers the group: the event comes without ts_ms, followed by an event
    // type the daemon does not know.
    t.call(
        "PUT",
        &format!("/trade-api/v2/portfolio/order_groups/{g}/trigger"),
        None,
    )
    .await;
    let state = d.until_state("tripped by the exchange", |s| {
        s["strategies"]["runaway"]["state"] == "tripped"
    });
    assert_eq!(state["strategies"]["runaway"]["trip"]["reason"], "exchange");
    let deadline = Instant::now() + support::PATIENCE;
    loop {
        let scrape = get(&addr, "/metrics").await.1;
        if sample(&scrape, "kalshi_riskd_stream_unknown_messages_total") >= Some(1.0) {
            assert_eq!(
                sample(&scrape, "kalshi_riskd_stream_connected"),
                Some(1.0),
                "an unknown event is not fatal to the session"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{scrape}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !d.audit().iter().any(|v| v["event"] == "stream_lossy"),
        "no gap: unknown events keep their seq"
    );
    t.set_faults(json!({})).await;
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_are_coalesced_and_paced() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY)], "");
    let d = start(dir.path()).await;
    let addr = d.metrics_addr();
    let lists = |scrape: &str| {
        sample(
            scrape,
            r#"kalshi_riskd_exchange_requests_total{op="list_order_groups",status="2xx"}"#,
        )
        .unwrap_or(0.0)
    };
    let before = lists(&get(&addr, "/metrics").await.1);
    // Twenty messages the daemon cannot read on the group channel, each a reason to reconcile.
    for _ in 0..20 {
        t.control(
            "POST",
            "/ws/inject",
            Some(json!({"text": r#"{"type":"order_group_updates","sid":3,"seq":1,"msg":{}}"#})),
        )
        .await;
    }
    d.until_audit("the lossy stream", |v| v["event"] == "stream_lossy");
    // Two reconciles at most (one, then one for everything asked meanwhile), paced 2 s apart;
    // each lists the account, then subaccount 0. The start's own reconcile may land in this
    // count too (metrics refresh every 250 ms): 6 listings at most, where 20 uncoalesced
    // reconciles would make 40.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = lists(&get(&addr, "/metrics").await.1);
    let made = after - before;
    assert!(
        (2.0..=6.0).contains(&made),
        "{made} listings for 20 reasons to reconcile"
    );
    let lossy = d
        .audit()
        .iter()
        .filter(|v| v["event"] == "stream_lossy")
        .count();
    assert_eq!(lossy, 20, "each is still recorded");
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_basic_tier_a_long_reconcile_does_not_delay_a_trigger() {
    let t = TestSim::start_with(|c| c.tier = kalshi_riskd::sim::Tier::Basic).await;
    // A group on the last subaccount: each reconcile lists all 64 subaccounts (65 GETs, about
    // 13 s of the Basic tier's non-reserved write budget).
    t.create_group(50, 63).await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY)], "");
    let cfg = dir.path().join("kalshi-riskd.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("write_budget_per_s = 100", "write_budget_per_s = 10"),
    )
    .unwrap();
    let d = start(dir.path()).await;
    let g = group_of(&d.state(), "runaway");
    t.control(
        "POST",
        "/ws/inject",
        Some(json!({"text": r#"{"type":"order_group_updates","sid":3,"seq":1,"msg":{}}"#})),
    )
    .await;
    d.until_audit("the lossy stream", |v| v["event"] == "stream_lossy");
    tokio::time::sleep(Duration::from_secs(2)).await; // the reconcile is well under way
    t.order(Some(&g), "21").await;
    let state = d.until_state("a confirmed trip", |s| {
        s["strategies"]["runaway"]["trip"]["confirmed_ms"].is_i64()
    });
    let trip = &state["strategies"]["runaway"]["trip"];
    let took = trip["confirmed_ms"].as_i64().unwrap() - trip["at_ms"].as_i64().unwrap();
    assert!(
        took < 1_000,
        "the Trigger waited {took} ms behind the reconcile"
    );
    assert_eq!(
        t.stats().await["rejected_429"],
        0,
        "the daemon stayed under the tier's rate"
    );
    assert_eq!(stop(d).await, Some(0));
}
