//! The REST client against the simulator: typed calls, subaccount placement, error parsing,
//! retries of idempotent calls, no blind retry of a create, the reconciled create, and Triggers
//! fired from armed (pre-signed) requests.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::collections::HashSet;

use kalshi_riskd::kalshi::rest::{CreateError, CreateOutcome};
use kalshi_riskd::kalshi::{ExchangeError, GroupAddress, GroupChannel, GroupControl, GroupId};
use kalshi_riskd::risk::Contracts;
use serde_json::json;
use support::TestSim;

fn c(n: i64) -> Contracts {
    Contracts::from_whole(n)
}

#[tokio::test]
async fn every_order_group_operation_round_trips() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let g = api.create_group(7, 2, c(50)).await.unwrap();
    assert_eq!((g.subaccount, g.exchange_index), (7, 2));
    let listed = api.list_groups(Some(7)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, g.id);
    assert_eq!(listed[0].contracts_limit, Some(c(50)));
    assert_eq!(listed[0].exchange_index, 2);
    assert!(api.list_groups(Some(0)).await.unwrap().is_empty());

    api.update_limit(&g, c(80)).await.unwrap();
    let detail = api.get_group(&g.id, Some(7)).await.unwrap();
    assert_eq!(detail.contracts_limit, Some(c(80)));
    api.trigger_group(&g).await.unwrap();
    assert_eq!(t.group_state(g.id.as_str()).await["triggered"], true);
    api.reset_group(&g).await.unwrap();
    assert_eq!(t.group_state(g.id.as_str()).await["triggered"], false);
    api.delete_group(&g).await.unwrap();
    let err = api.get_group(&g.id, None).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn the_wrong_subaccount_is_a_final_404_not_retried() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let g = api.create_group(3, 0, c(5)).await.unwrap();
    let wrong = GroupAddress {
        subaccount: 0,
        ..g.clone()
    };
    let before = t.stats().await["requests"].as_u64().unwrap();
    let err = api.trigger_group(&wrong).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.code(), Some("not_found"));
    assert!(!err.is_retryable());
    assert_eq!(
        t.stats().await["requests"].as_u64().unwrap() - before,
        1,
        "a 404 is not retried"
    );
}

#[tokio::test]
async fn order_reads_map_orders_to_groups() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let g = api.create_group(0, 0, c(100)).await.unwrap();
    let (_, order) = t.order(Some(g.id.as_str()), "2").await;
    let id = order["order_id"].as_str().unwrap();
    let info = api.get_order(id).await.unwrap();
    assert_eq!(info.group_id, Some(g.id.clone()));
    assert_eq!(info.status, "executed");
    assert_eq!(info.subaccount, Some(0));
    let (_, loose) = t.order(None, "1").await;
    assert_eq!(
        api.get_order(loose["order_id"].as_str().unwrap())
            .await
            .unwrap()
            .group_id,
        None
    );
    assert_eq!(api.list_orders(Some("executed")).await.unwrap().len(), 2);
    assert!(api.get_order("missing").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn idempotent_calls_ride_out_429s_and_5xx() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let g = api.create_group(0, 0, c(5)).await.unwrap();
    t.set_faults(json!({"burst_429": 3})).await;
    api.trigger_group(&g)
        .await
        .expect("retried through three 429s");
    t.set_faults(json!({"error_burst": 3, "error_path": "/trade-api/v2/portfolio/order_groups"}))
        .await;
    api.reset_group(&g)
        .await
        .expect("retried through three injected 500s");
    t.set_faults(json!({"error_burst": 2})).await;
    api.list_groups(None)
        .await
        .expect("retried through two injected 500s");
    assert_eq!(t.stats().await["injected_errors"], 5);
    t.set_faults(json!({"error_rate": 1.0})).await;
    let err = api.list_groups(None).await.unwrap_err();
    assert_eq!(
        err.status(),
        Some(500),
        "gives up after the attempts: {err}"
    );
    assert!(err.to_string().contains("injected"), "{err}");
}

#[tokio::test]
async fn a_create_refused_by_the_exchange_is_not_retried() {
    let t = TestSim::start_with(|c| c.engine.max_groups = 1).await;
    let api = t.rest_client(|_| {});
    api.create_group(0, 0, c(5)).await.unwrap();
    let before = t.stats().await["requests"].as_u64().unwrap();
    let err = GroupControl::rest(api.clone())
        .create_group_reconciled(0, 0, c(5), &HashSet::new())
        .await
        .unwrap_err();
    match err {
        CreateError::Refused(e) => assert_eq!(e.code(), Some("order_group_limit_reached")),
        other => panic!("{other}"),
    }
    assert_eq!(t.stats().await["requests"].as_u64().unwrap() - before, 1);
}

#[tokio::test]
async fn a_create_that_failed_before_applying_is_tried_again_once_settled() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    // The first create answers 500 without applying it.
    t.set_faults(
        json!({"error_burst": 1, "error_path": "/trade-api/v2/portfolio/order_groups/create"}),
    )
    .await;
    let outcome = GroupControl::rest(api.clone())
        .create_group_reconciled(0, 0, c(9), &HashSet::new())
        .await
        .unwrap();
    assert!(matches!(outcome, CreateOutcome::Created(_)), "{outcome:?}");
    assert_eq!(
        api.list_groups(None).await.unwrap().len(),
        1,
        "exactly one group exists"
    );
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_adopted_from_the_listing() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let existing = api.create_group(0, 0, c(9)).await.unwrap(); // same limit, already known
    t.set_faults(json!({"error_rate": 1.0, "error_after_apply": true,
        "error_path": "/trade-api/v2/portfolio/order_groups/create"}))
        .await;
    let known: HashSet<GroupId> = [existing.id.clone()].into();
    let outcome = GroupControl::rest(api.clone())
        .create_group_reconciled(0, 0, c(9), &known)
        .await
        .unwrap();
    let CreateOutcome::Adopted(adopted) = outcome else {
        panic!("{outcome:?}")
    };
    assert_ne!(adopted.id, existing.id);
    assert_eq!(
        api.list_groups(None).await.unwrap().len(),
        2,
        "no extra group was created"
    );
}

#[tokio::test]
async fn an_ambiguous_create_is_reported_not_guessed() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let stranger = api.create_group(0, 0, c(9)).await.unwrap(); // not in `known`
    t.set_faults(json!({"error_rate": 1.0, "error_after_apply": true,
        "error_path": "/trade-api/v2/portfolio/order_groups/create"}))
        .await;
    let outcome = GroupControl::rest(api.clone())
        .create_group_reconciled(0, 0, c(9), &HashSet::new())
        .await
        .unwrap();
    let CreateOutcome::Ambiguous(candidates) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(candidates.len(), 2);
    assert!(candidates.iter().any(|g| g.id == stranger.id));
}

#[tokio::test]
async fn an_unsettled_create_names_what_could_not_be_settled() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    t.set_faults(json!({"error_rate": 1.0})).await; // even the listing fails
    let err = GroupControl::rest(api.clone())
        .create_group_reconciled(4, 1, c(12), &HashSet::new())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CreateError::Unsettled { .. }), "{text}");
    assert!(
        text.contains("subaccount 4")
            && text.contains("exchange index 1")
            && text.contains("12.00"),
        "{text}"
    );
}

/// Found by the chaos suite: under a 3 s network delay an armed signature (up to 3 s old when
/// taken) reached the exchange older than its 5 s window; the 401 was final, and every retry
/// took another armed signature, so a kill's Triggers failed for as long as the delay lasted.
/// An expired signature is signed afresh and sent again at once.
#[tokio::test]
async fn a_signature_that_expired_on_the_way_is_signed_afresh() {
    let t = TestSim::start().await;
    let api = t.rest_client(|c| c.armory.max_age = std::time::Duration::from_secs(60));
    let g = api.create_group(1, 0, c(5)).await.unwrap();
    api.armory().arm(&g).unwrap();
    // Armed 6 s ago: past the exchange's window by the time it arrives.
    let stale = kalshi_riskd::kalshi::auth::now_ms() - 6_000;
    assert_eq!(api.armory().refresh_at(stale, 16), 1);
    api.trigger_group(&g)
        .await
        .expect("the expired signature is replaced, and the Trigger lands");
    assert_eq!(t.group_state(g.id.as_str()).await["triggered"], true);
    assert_eq!(
        t.stats().await["rejected_auth"],
        1,
        "one refused, then one accepted"
    );
}

/// Armed Triggers are signed ahead of the clock (re-signed every 26.5 s, not every 1.5 s) only
/// once the exchange accepted a probe signed further ahead; a Trigger the exchange refuses as
/// signed too far ahead stops that at once, and is signed now and sent again.
#[tokio::test]
async fn triggers_are_signed_ahead_only_while_the_exchange_accepts_it() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let g = api.create_group(1, 0, c(5)).await.unwrap();
    api.armory().arm(&g).unwrap();
    assert_eq!(
        api.armory().ahead(),
        Duration::ZERO,
        "not before the exchange said so"
    );
    api.probe_signing_ahead().await;
    assert_eq!(api.armory().ahead(), Duration::from_secs(25));
    assert_eq!(api.armory().refresh(16), 1);
    let now = kalshi_riskd::kalshi::auth::now_ms();
    let stamp: i64 = api
        .armory()
        .take(&g, now)
        .unwrap()
        .timestamp_ms
        .parse()
        .unwrap();
    assert!(stamp >= now + 24_000, "signed ahead: {stamp} at {now}");
    let before = t.signer.signatures();
    api.trigger_group(&g).await.expect("accepted ahead");
    assert_eq!(t.signer.signatures(), before, "no signature at fire time");
    assert_eq!(t.stats().await["rejected_auth"], 0);

    // Further ahead than the exchange takes (the simulator: 30 s): the probe fails and the
    // armory signs at the current time.
    let far = t.rest_client(|c| c.armory.ahead = Duration::from_secs(40));
    far.armory().set_ahead(true);
    far.probe_signing_ahead().await;
    assert_eq!(
        far.armory().ahead(),
        Duration::ZERO,
        "the probe was refused"
    );
    // The exchange narrowed its window after a probe passed: the Trigger signed ahead is
    // refused, signed now, sent again, and signing ahead stops.
    far.armory().set_ahead(true);
    let h = far.create_group(1, 0, c(5)).await.unwrap();
    far.armory().arm(&h).unwrap();
    assert_eq!(far.armory().refresh(16), 1);
    let refused_before = t.stats().await["rejected_auth"].as_u64().unwrap();
    far.trigger_group(&h)
        .await
        .expect("signed afresh, it lands");
    assert_eq!(t.group_state(h.id.as_str()).await["triggered"], true);
    assert_eq!(
        t.stats().await["rejected_auth"].as_u64().unwrap(),
        refused_before + 1
    );
    assert_eq!(far.armory().ahead(), Duration::ZERO);
    let now = kalshi_riskd::kalshi::auth::now_ms();
    assert_eq!(
        far.armory().take(&h, now),
        None,
        "the signature made ahead is dropped"
    );
}

#[tokio::test]
async fn an_armed_trigger_fires_without_signing() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let g = api.create_group(1, 0, c(5)).await.unwrap();
    api.armory().arm(&g).unwrap();
    assert_eq!(api.armory().refresh(16), 1);
    let before = t.signer.signatures();
    api.trigger_group(&g)
        .await
        .expect("the pre-signed request is accepted");
    assert_eq!(t.signer.signatures(), before, "no signature at fire time");
    assert_eq!(t.group_state(g.id.as_str()).await["triggered"], true);
    // Unarmed: signed at fire time.
    let h = api.create_group(1, 0, c(5)).await.unwrap();
    let before = t.signer.signatures();
    api.trigger_group(&h).await.unwrap();
    assert_eq!(t.signer.signatures(), before + 1);
}

#[tokio::test]
async fn transport_failures_are_retryable_and_named() {
    // Nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let t = TestSim::start().await;
    let mut cfg =
        kalshi_riskd::kalshi::RestConfig::new(format!("http://127.0.0.1:{port}/trade-api/v2"));
    cfg.retry.attempts = 2;
    cfg.retry.initial = std::time::Duration::from_millis(1);
    let api = kalshi_riskd::kalshi::RestClient::new(&cfg, t.signer.clone()).unwrap();
    let err = api.list_groups(None).await.unwrap_err();
    assert!(
        matches!(
            err,
            ExchangeError::Transport {
                maybe_sent: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(
        kalshi_riskd::kalshi::RestClient::new(
            &kalshi_riskd::kalshi::RestConfig::new("not a url"),
            t.signer.clone()
        )
        .is_err()
    );
}

/// A client whose armed Triggers are signed at the current time and due for re-signing every
/// 150 ms, one group armed, and its refresher running (stopped by the token).
async fn refreshing_every_150ms(
    t: &TestSim,
) -> (
    kalshi_riskd::kalshi::RestClient,
    GroupAddress,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let api = t.rest_client(|c| {
        c.armory.max_age = Duration::from_millis(300);
        c.armory.refresh_before = Duration::from_millis(150);
        c.armory.ahead = Duration::ZERO;
    });
    let g = api.create_group(0, 0, c(5)).await.unwrap();
    api.armory().arm(&g).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let refresher = tokio::spawn({
        let (api, stop) = (api.clone(), stop.clone());
        async move { api.run_armory(16, stop).await }
    });
    (api, g, stop, refresher)
}

#[tokio::test]
async fn the_armory_refresher_keeps_armed_triggers_fresh() {
    let t = TestSim::start().await;
    let (api, g, stop, refresher) = refreshing_every_150ms(&t).await;
    let fresh = |api: &kalshi_riskd::kalshi::RestClient| {
        api.armory().take(&g, kalshi_riskd::kalshi::auth::now_ms())
    };
    let first = tokio::time::timeout(support::PATIENCE, async {
        loop {
            if let Some(h) = fresh(&api) {
                return h;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("signed by the refresher");
    let later = tokio::time::timeout(support::PATIENCE, async {
        loop {
            if let Some(h) = fresh(&api)
                && h.timestamp_ms != first.timestamp_ms
            {
                return h;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("re-signed by the refresher");
    assert!(later.timestamp_ms > first.timestamp_ms);
    api.trigger_group(&g).await.unwrap();
    stop.cancel();
    refresher.await.unwrap();
}

#[tokio::test]
async fn keep_warm_probes_the_public_status_endpoint_on_every_connection() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let stop = tokio_util::sync::CancellationToken::new();
    let warm = tokio::spawn({
        let (api, stop) = (api.clone(), stop.clone());
        async move {
            api.keep_warm(3, std::time::Duration::from_millis(50), stop)
                .await
        }
    });
    tokio::time::timeout(support::PATIENCE, async {
        while t.stats().await["status_requests"].as_u64().unwrap() < 6 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("two rounds of three probes");
    stop.cancel();
    warm.await.unwrap();
}

#[tokio::test]
async fn a_delete_is_retried_by_one_layer_and_a_lost_answer_counts_as_deleted() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let g = api.create_group(0, 0, c(50)).await.unwrap();
    // A persistent 429: the delete gives up after the client's attempts, not their square.
    t.set_faults(json!({"burst_429": 1000})).await;
    let before = t.stats().await["rejected_429"].as_u64().unwrap();
    let err = api.delete_group(&g).await.unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    let tried = t.stats().await["rejected_429"].as_u64().unwrap() - before;
    assert_eq!(tried, 6, "one retry layer: 6 attempts");
    // Applied, then answered 500: the retry finds it gone, which is what was asked.
    t.set_faults(json!({
        "error_burst": 1,
        "error_path": "/trade-api/v2/portfolio/order_groups/",
        "error_after_apply": true,
    }))
    .await;
    api.delete_group(&g).await.unwrap();
    t.set_faults(json!({})).await;
    assert!(api.get_group(&g.id, None).await.unwrap_err().is_not_found());
    // A group that was never there is still an error.
    let ghost = GroupAddress {
        id: GroupId::new("00000000-0000-4000-8000-00000000beef"),
        subaccount: 0,
        exchange_index: 0,
    };
    assert!(api.delete_group(&ghost).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn order_lists_follow_the_exchanges_cursors() {
    let t = TestSim::start().await;
    for _ in 0..5 {
        t.order(None, "1").await;
    }
    // The simulator pages like the exchange: `limit`, then `cursor` until it comes back empty.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for page in 0.. {
        let path = if cursor.is_empty() {
            "/trade-api/v2/portfolio/orders?limit=2".to_owned()
        } else {
            format!("/trade-api/v2/portfolio/orders?limit=2&cursor={cursor}")
        };
        let (status, body) = t.call("GET", &path, None).await;
        assert!(status.is_success(), "{body}");
        seen.extend(body["orders"].as_array().unwrap().iter().cloned());
        cursor = body["cursor"].as_str().unwrap().to_owned();
        if cursor.is_empty() {
            assert_eq!(page, 2, "pages of 2, 2 and 1");
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    let (status, _) = t
        .call("GET", "/trade-api/v2/portfolio/orders?limit=0", None)
        .await;
    assert_eq!(status, 400);
    // The client reads every page: more orders than one page holds.
    for _ in 0..1_000 {
        t.order(None, "1").await;
    }
    let api = t.rest_client(|_| {});
    assert_eq!(api.list_orders(None).await.unwrap().len(), 1_005);
}

#[tokio::test]
async fn fills_are_listed_from_the_exchange_oldest_first_with_their_times() {
    let t = TestSim::start().await;
    let start_s = kalshi_riskd::kalshi::auth::now_ms() / 1000;
    t.order(None, "3").await;
    t.order_in("KXSIM-26NOV23-T1", None, "4", 2).await;
    t.order(None, "5").await;
    let api = t.rest_client(|_| {});
    let all = api.list_fills(start_s, None).await.unwrap();
    let counts: Vec<Contracts> = all.iter().map(|f| f.count).collect();
    assert_eq!(counts, [c(3), c(4), c(5)], "every subaccount, oldest first");
    assert!(all.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
    assert!(all[0].ts_ms >= start_s * 1000, "to the millisecond");
    assert_eq!(all[1].subaccount, Some(2));
    let sub2 = api.list_fills(start_s, Some(2)).await.unwrap();
    assert_eq!(sub2.len(), 1);
    assert!(
        api.list_fills(start_s + 3_600, None)
            .await
            .unwrap()
            .is_empty()
    );
    // The exchange's shape, paged by cursor.
    let (status, body) = t
        .call("GET", "/trade-api/v2/portfolio/fills?limit=2", None)
        .await;
    assert!(status.is_success(), "{body}");
    assert_eq!(body["fills"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["fills"][0]["count_fp"], "5.00",
        "newest first on the wire"
    );
    for key in [
        "fill_id",
        "trade_id",
        "order_id",
        "ticker",
        "side",
        "yes_price_dollars",
        "created_time",
        "ts",
    ] {
        assert!(body["fills"][0].get(key).is_some(), "{key} missing: {body}");
    }
    let cursor = body["cursor"].as_str().unwrap();
    assert!(!cursor.is_empty());
    // A fill made between two pages neither shifts nor repeats what the cursor goes on to.
    t.order(None, "6").await;
    let (_, last) = t
        .call(
            "GET",
            &format!("/trade-api/v2/portfolio/fills?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    let counts: Vec<&serde_json::Value> = last["fills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["count_fp"])
        .collect();
    assert_eq!(counts, ["3.00"], "{last}");
    assert_eq!(last["cursor"], "");
}

/// An exchange that refuses a Trigger signed ahead with something other than a 401 (here a
/// 400, as a stricter production exchange might): signing ahead stops at that first refusal,
/// so the next attempt is signed now instead of sending the same signature again for 28 s.
#[tokio::test]
async fn any_refusal_of_a_trigger_signed_ahead_stops_signing_ahead() {
    use axum::routing::{get, put};
    use std::sync::{Arc, Mutex};
    let stamps: Arc<Mutex<Vec<i64>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/trade-api/v2/portfolio/fills",
            get(|| async { axum::Json(json!({"fills": [], "cursor": ""})) }),
        )
        .route(
            "/trade-api/v2/portfolio/order_groups/{id}/trigger",
            put({
                let stamps = stamps.clone();
                move |headers: axum::http::HeaderMap| async move {
                    let stamp: i64 = headers["KALSHI-ACCESS-TIMESTAMP"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let mut s = stamps.lock().unwrap();
                    s.push(stamp);
                    if s.len() == 1 {
                        (
                            axum::http::StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": {"code": "bad_request"}})),
                        )
                    } else {
                        (axum::http::StatusCode::OK, axum::Json(json!({})))
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let t = TestSim::start().await;
    let mut cfg = kalshi_riskd::kalshi::RestConfig::new(format!("http://{addr}/trade-api/v2"));
    cfg.write_per_s = None;
    cfg.read_per_s = None;
    let api = kalshi_riskd::kalshi::RestClient::new(&cfg, t.signer.clone()).unwrap();
    api.probe_signing_ahead().await;
    assert_eq!(
        api.armory().ahead(),
        Duration::from_secs(25),
        "the probe passed"
    );
    let g = GroupAddress {
        id: GroupId::new("g-1"),
        subaccount: 0,
        exchange_index: 0,
    };
    api.armory().arm(&g).unwrap();
    assert_eq!(api.armory().refresh(16), 1);
    let refused = api.trigger_group(&g).await.unwrap_err();
    assert_eq!(refused.status(), Some(400), "{refused}");
    assert_eq!(
        api.armory().ahead(),
        Duration::ZERO,
        "stopped at the first refusal"
    );
    api.trigger_group(&g).await.expect("signed now, accepted");
    let now = kalshi_riskd::kalshi::auth::now_ms();
    let s = stamps.lock().unwrap().clone();
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(
        s[0] > now + 20_000,
        "the first was signed ahead: {s:?} at {now}"
    );
    assert!(s[1] <= now, "the second was signed now: {s:?} at {now}");
}

#[tokio::test]
async fn the_write_budget_bursts_as_far_as_the_accounts_write_bucket() {
    use futures_util::FutureExt as _;
    use kalshi_riskd::kalshi::budget::Priority;
    // Advanced: 30 writes a second and two seconds of burst at the exchange.
    let t = TestSim::start_with(|c| c.tier = kalshi_riskd::sim::Tier::Advanced).await;
    let api = t.rest_client(|c| c.write_per_s = Some(30.0));
    let budget = api.write_budget();
    assert_eq!(
        budget.burst(),
        Some(1.0),
        "one second until the account says"
    );
    let limits = api.account_limits().await.unwrap();
    assert_eq!(limits.usage_tier.as_deref(), Some("advanced"));
    api.fit_write_budget().await;
    assert_eq!(budget.burst(), Some(2.0));
    // Full again (it held one second's worth when it grew): 60 Triggers may go at once, as the
    // exchange would take them, and no more.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for i in 0..60 {
        assert!(
            budget.acquire(Priority::Trigger).now_or_never().is_some(),
            "Trigger {i} waited"
        );
    }
    assert!(budget.acquire(Priority::Trigger).now_or_never().is_none());

    // Basic: one second of burst. An answer without buckets (the unlimited simulator) leaves
    // the budget as it was.
    for (tier, burst) in [
        (kalshi_riskd::sim::Tier::Basic, 1.0),
        (kalshi_riskd::sim::Tier::Unlimited, 1.0),
    ] {
        let t = TestSim::start_with(|c| c.tier = tier).await;
        let api = t.rest_client(|c| c.write_per_s = Some(10.0));
        api.fit_write_budget().await;
        assert_eq!(api.write_budget().burst(), Some(burst), "{tier:?}");
    }
}

#[tokio::test]
async fn a_429_empties_the_write_budget_whatever_it_held() {
    use futures_util::FutureExt as _;
    use kalshi_riskd::kalshi::budget::Priority;
    // A budget set ten times above a Basic account's rate: the exchange refuses first.
    let t = TestSim::start_with(|c| c.tier = kalshi_riskd::sim::Tier::Basic).await;
    let api = t.rest_client(|c| c.write_per_s = Some(100.0));
    let control = GroupControl::rest(api.clone());
    let nowhere = GroupAddress {
        id: GroupId::new("no-such-group"),
        subaccount: 0,
        exchange_index: 0,
    };
    let mut refused = false;
    for _ in 0..200 {
        let e = control.trigger_attempt(&nowhere).await.unwrap_err();
        if e.status() == Some(429) {
            refused = true;
            break;
        }
        assert!(e.is_not_found(), "{e}");
    }
    assert!(refused, "the simulator never refused");
    assert!(
        api.write_budget()
            .acquire(Priority::Trigger)
            .now_or_never()
            .is_none(),
        "after a 429 the next write waits for the exchange's refill"
    );
}

#[tokio::test]
async fn armed_triggers_are_re_signed_while_the_exchange_is_slow_to_give_its_limits() {
    let t = TestSim::start().await;
    // The account's limits answer after 20 s (each attempt times out after 5 s, six attempts).
    t.set_faults(json!({"latency_ms": 20_000, "latency_path": "/trade-api/v2/account/limits"}))
        .await;
    let (api, g, stop, refresher) = refreshing_every_150ms(&t).await;
    // Three signatures in a row, each within 3 s of the last (a refresh is due every 150 ms).
    let mut last = 0;
    for n in 0..3 {
        last = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                if let Some(h) = api.armory().take(&g, kalshi_riskd::kalshi::auth::now_ms())
                    && h.timestamp_ms.parse::<i64>().unwrap() > last
                {
                    return h.timestamp_ms.parse::<i64>().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("signature {n} not made while the limits read hangs"));
    }
    stop.cancel();
    refresher.await.unwrap();
}

/// Runs `keep_warm` with `connections` for one round (the next is an hour away) and waits
/// until the Trigger lane holds them.
async fn warm_lane(
    api: &kalshi_riskd::kalshi::RestClient,
    connections: usize,
) -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let (api, stop) = (api.clone(), stop.clone());
        async move {
            api.keep_warm(connections, Duration::from_secs(3600), stop)
                .await
        }
    });
    tokio::time::timeout(support::PATIENCE, async {
        while api.trigger_lane().expect("a lane").0 < connections {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the lane's connections open");
    stop
}

#[tokio::test]
async fn a_trigger_goes_out_on_a_lane_connection_which_stays_open() {
    let t = TestSim::start().await;
    let api = t.rest_client(|_| {});
    let g = api.create_group(1, 0, c(5)).await.unwrap();
    api.armory().arm(&g).unwrap();
    assert_eq!(api.armory().refresh(16), 1);
    let stop = warm_lane(&api, 2).await;
    assert_eq!(api.trigger_lane(), Some((2, 0)));
    api.trigger_group(&g).await.expect("accepted");
    assert_eq!(t.group_state(g.id.as_str()).await["triggered"], true);
    assert_eq!(
        api.trigger_lane(),
        Some((2, 1)),
        "answered on the lane, and the connection went back to it"
    );
    // Everything else goes by the general client.
    api.reset_group(&g).await.unwrap();
    assert_eq!(api.trigger_lane(), Some((2, 1)));
    stop.cancel();
}

/// One connection of a minimal exchange: answers every request `200 {}`, counts Triggers, and
/// closes the connection, without a word, once it has been idle for `idle`.
async fn answer_requests<S>(mut s: S, triggers: Arc<AtomicUsize>, idle: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let Ok(Ok(n)) = tokio::time::timeout(idle, s.read(&mut chunk)).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length: usize = text[..end]
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        if buf.len() < end + 4 + length {
            continue;
        }
        if text.starts_with("PUT ") && text[..end].contains("/trigger") {
            triggers.fetch_add(1, Ordering::SeqCst);
        }
        buf.drain(..end + 4 + length);
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A minimal exchange on 127.0.0.1 (over TLS with `tls`; see [`answer_requests`]); its address
/// and its count of Triggers.
async fn mock_exchange(
    tls: Option<tokio_rustls::TlsAcceptor>,
    idle: Duration,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let triggers = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let triggers = triggers.clone();
        async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let (triggers, tls) = (triggers.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => answer_requests(s, triggers, idle).await,
                        Some(tls) => {
                            if let Ok(s) = tls.accept(s).await {
                                answer_requests(s, triggers, idle).await
                            }
                        }
                    }
                });
            }
        }
    });
    (addr, triggers)
}

#[tokio::test]
async fn a_trigger_whose_lane_connection_was_closed_goes_by_the_general_client_at_once() {
    // An exchange that closes a keep-alive connection after 100 ms idle.
    let (addr, triggers) = mock_exchange(None, Duration::from_millis(100)).await;
    let signer = TestSim::start().await.signer.clone();
    let mut cfg = kalshi_riskd::kalshi::RestConfig::new(format!("http://{addr}/trade-api/v2"));
    cfg.write_per_s = None;
    cfg.read_per_s = None;
    let api = kalshi_riskd::kalshi::RestClient::new(&cfg, signer).unwrap();
    let stop = warm_lane(&api, 2).await;
    // Both lane connections are closed by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let g = GroupAddress {
        id: GroupId::new("g-1"),
        subaccount: 0,
        exchange_index: 0,
    };
    let control = GroupControl::rest(api.clone());
    control
        .trigger_attempt(&g)
        .await
        .expect("one attempt lands: by the general client when the lane's connection is dead");
    assert_eq!(triggers.load(Ordering::SeqCst), 1);
    assert_eq!(
        api.trigger_lane(),
        Some((0, 0)),
        "both dead connections left the lane when the Trigger looked for a live one"
    );
    stop.cancel();
}

#[tokio::test]
async fn the_trigger_lane_speaks_tls() {
    kalshi_riskd::kalshi::install_crypto_provider();
    let acceptor = kalshi_riskd::sim::fix::tls_acceptor(
        include_bytes!("fixtures/tls/server.pem"),
        include_bytes!("fixtures/tls/server.key"),
    )
    .unwrap();
    let (addr, triggers) = mock_exchange(Some(acceptor), Duration::from_secs(60)).await;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    for c in CertificateDer::pem_slice_iter(include_bytes!("fixtures/tls/ca.pem")) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = kalshi_riskd::kalshi::RestConfig::new(format!("https://{addr}/trade-api/v2"));
    cfg.write_per_s = None;
    cfg.read_per_s = None;
    cfg.lane_tls_roots = Some(Arc::new(roots));
    let signer = TestSim::start().await.signer.clone();
    let api = kalshi_riskd::kalshi::RestClient::new(&cfg, signer).unwrap();
    let stop = warm_lane(&api, 2).await;
    let g = GroupAddress {
        id: GroupId::new("g-1"),
        subaccount: 0,
        exchange_index: 0,
    };
    GroupControl::rest(api.clone())
        .trigger_attempt(&g)
        .await
        .expect("accepted over the lane's TLS connection");
    assert_eq!(triggers.load(Ordering::SeqCst), 1);
    assert_eq!(api.trigger_lane(), Some((2, 1)), "carried by the lane");
    stop.cancel();
}
