//! Order-group semantics over real orders and fills: the rolling 15 s
//! window, the trigger boundary, cancels on trigger, rejected orders, reset, update below
//! volume, delete, and the built-in counterparty.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::TestSim;

const GROUPS: &str = "/trade-api/v2/portfolio/order_groups";

async fn advance(t: &TestSim, ms: u64) {
    let (status, _) = t
        .control("POST", "/clock/advance", Some(json!({"ms": ms})))
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn set_liquidity(t: &TestSim, ticker: &str, contracts: Option<&str>) {
    let (status, body) = t
        .control(
            "POST",
            "/liquidity",
            Some(json!({"ticker": ticker, "contracts": contracts})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn group_triggers_when_volume_exceeds_the_limit_not_when_it_reaches_it() {
    let t = TestSim::start().await;
    let g = t.create_group(10, 0).await;
    let (status, body) = t.order(Some(&g), "10").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["fill_count"], "10.00");
    assert_eq!(body["remaining_count"], "0.00");
    let s = t.group_state(&g).await;
    assert_eq!(
        (s["triggered"].clone(), s["window_contracts_fp"].clone()),
        (json!(false), json!("10.00"))
    );
    let (status, _) = t.order(Some(&g), "1").await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the order that crosses the limit fills, then trips"
    );
    let s = t.group_state(&g).await;
    assert_eq!(s["triggered"], true, "{s}");
    assert_eq!(s["window_contracts_fp"], "11.00");
}

#[tokio::test]
async fn trigger_at_limit_option_trips_on_reaching_it() {
    let t = TestSim::start_with(|c| {
        c.engine.boundary = kalshi_riskd::sim::TriggerBoundary::Reaches;
    })
    .await;
    let g = t.create_group(10, 0).await;
    t.order(Some(&g), "10").await;
    assert_eq!(t.group_state(&g).await["triggered"], true);
}

#[tokio::test]
async fn a_triggered_group_cancels_resting_orders_and_rejects_new_ones_until_reset() {
    let t = TestSim::start().await;
    let g = t.create_group(5, 0).await;
    // A resting order: no liquidity on its ticker.
    set_liquidity(&t, "KXREST", Some("0")).await;
    let (_, resting) = t.order_in("KXREST", Some(&g), "4", 0).await;
    assert_eq!(resting["remaining_count"], "4.00");
    let resting_id = resting["order_id"].as_str().unwrap().to_owned();
    // Six contracts fill elsewhere in the group: 6 > 5 trips it.
    t.order(Some(&g), "6").await;
    let (_, o) = t
        .call(
            "GET",
            &format!("/trade-api/v2/portfolio/orders/{resting_id}"),
            None,
        )
        .await;
    assert_eq!(o["order"]["status"], "canceled", "{o}");
    assert_eq!(o["order"]["remaining_count_fp"], "0.00");
    assert_eq!(o["order"]["order_group_id"], g.as_str());

    let (status, body) = t.order(Some(&g), "1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "exceeded_order_group_risk_limit");

    let (status, _) = t
        .call("PUT", &format!("{GROUPS}/{g}/reset"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let s = t.group_state(&g).await;
    assert_eq!(
        (s["triggered"].clone(), s["window_contracts_fp"].clone()),
        (json!(false), json!("0.00")),
        "reset clears the window"
    );
    let (status, body) = t.order(Some(&g), "5").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        t.group_state(&g).await["triggered"],
        false,
        "a cleared window holds the full limit again"
    );
}

#[tokio::test]
async fn the_window_rolls_over_fifteen_seconds() {
    let t = TestSim::start().await;
    let g = t.create_group(10, 0).await;
    t.order(Some(&g), "8").await;
    advance(&t, 14_900).await;
    assert_eq!(t.group_state(&g).await["window_contracts_fp"], "8.00");
    t.order(Some(&g), "2").await; // 10: at the limit, not over
    advance(&t, 200).await; // the first fill is now 15.1 s old
    assert_eq!(t.group_state(&g).await["window_contracts_fp"], "2.00");
    t.order(Some(&g), "8").await; // 10 again, still not over
    assert_eq!(t.group_state(&g).await["triggered"], false);
    t.order(Some(&g), "0.01").await; // fractional fills count too
    let s = t.group_state(&g).await;
    assert_eq!(
        (s["triggered"].clone(), s["window_contracts_fp"].clone()),
        (json!(true), json!("10.01"))
    );
}

#[tokio::test]
async fn lowering_the_limit_below_volume_triggers_and_raising_it_does_not() {
    let t = TestSim::start().await;
    let g = t.create_group(100, 0).await;
    t.order(Some(&g), "30").await;
    let (status, _) = t
        .call(
            "PUT",
            &format!("{GROUPS}/{g}/limit"),
            Some(json!({"contracts_limit": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        t.group_state(&g).await["triggered"],
        false,
        "30 is not below 30"
    );
    t.call(
        "PUT",
        &format!("{GROUPS}/{g}/limit"),
        Some(json!({"contracts_limit": 29})),
    )
    .await;
    assert_eq!(t.group_state(&g).await["triggered"], true);
}

#[tokio::test]
async fn manual_trigger_cancels_and_delete_cancels_and_removes() {
    let t = TestSim::start().await;
    set_liquidity(&t, "KXREST", Some("0")).await;
    let a = t.create_group(100, 0).await;
    let (_, ra) = t.order_in("KXREST", Some(&a), "5", 0).await;
    t.call("PUT", &format!("{GROUPS}/{a}/trigger"), None).await;
    assert_eq!(t.group_state(&a).await["triggered"], true);
    let id = ra["order_id"].as_str().unwrap();
    let (_, o) = t
        .call("GET", &format!("/trade-api/v2/portfolio/orders/{id}"), None)
        .await;
    assert_eq!(o["order"]["status"], "canceled");

    let b = t.create_group(100, 0).await;
    let (_, rb) = t.order_in("KXREST", Some(&b), "5", 0).await;
    t.call("DELETE", &format!("{GROUPS}/{b}"), None).await;
    let id = rb["order_id"].as_str().unwrap();
    let (_, o) = t
        .call("GET", &format!("/trade-api/v2/portfolio/orders/{id}"), None)
        .await;
    assert_eq!(o["order"]["status"], "canceled");
    let (status, body) = t.order(Some(&b), "1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "order_group_not_found");
}

#[tokio::test]
async fn resting_orders_fill_through_the_control_surface_and_count_in_the_window() {
    let t = TestSim::start().await;
    set_liquidity(&t, "KXREST", Some("0")).await;
    let g = t.create_group(5, 0).await;
    let (_, r) = t.order_in("KXREST", Some(&g), "8", 0).await;
    let id = r["order_id"].as_str().unwrap().to_owned();
    let (status, body) = t
        .control(
            "POST",
            &format!("/orders/{id}/fill"),
            Some(json!({"count": "3"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, o) = t
        .call("GET", &format!("/trade-api/v2/portfolio/orders/{id}"), None)
        .await;
    assert_eq!(
        (
            o["order"]["status"].clone(),
            o["order"]["fill_count_fp"].clone()
        ),
        (json!("resting"), json!("3.00"))
    );
    let (status, _) = t
        .control(
            "POST",
            &format!("/orders/{id}/fill"),
            Some(json!({"count": "6"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "more than remains");
    t.control(
        "POST",
        &format!("/orders/{id}/fill"),
        Some(json!({"count": "3"})),
    )
    .await;
    let s = t.group_state(&g).await;
    assert_eq!(
        (s["triggered"].clone(), s["window_contracts_fp"].clone()),
        (json!(true), json!("6.00"))
    );
    let (_, o) = t
        .call("GET", &format!("/trade-api/v2/portfolio/orders/{id}"), None)
        .await;
    assert_eq!(
        o["order"]["status"], "canceled",
        "the trip cancels the rest of the order"
    );
    let (status, _) = t
        .control(
            "POST",
            &format!("/orders/{id}/fill"),
            Some(json!({"count": "1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_counterparty_fills_in_full_in_part_or_not_at_all() {
    let t = TestSim::start().await;
    set_liquidity(&t, "KXPART", Some("3")).await;
    let (_, o) = t.order_in("KXPART", None, "5", 0).await;
    assert_eq!(
        (o["fill_count"].clone(), o["remaining_count"].clone()),
        (json!("3.00"), json!("2.00"))
    );
    assert_eq!(o["average_fill_price"], "0.4200");
    // Liquidity is used up: the next order rests entirely.
    let (_, o) = t.order_in("KXPART", None, "1", 0).await;
    assert_eq!(o["fill_count"], "0.00");
    // Immediate-or-cancel and fill-or-kill do not rest.
    set_liquidity(&t, "KXPART", Some("2")).await;
    let body = |tif: &str| {
        json!({
            "ticker": "KXPART", "side": "ask", "count": "3", "price": "0.60",
            "time_in_force": tif, "self_trade_prevention_type": "maker",
        })
    };
    let (_, fok) = t
        .call(
            "POST",
            "/trade-api/v2/portfolio/events/orders",
            Some(body("fill_or_kill")),
        )
        .await;
    assert_eq!(
        (fok["fill_count"].clone(), fok["remaining_count"].clone()),
        (json!("0.00"), json!("0.00"))
    );
    let (_, ioc) = t
        .call(
            "POST",
            "/trade-api/v2/portfolio/events/orders",
            Some(body("immediate_or_cancel")),
        )
        .await;
    assert_eq!(
        (ioc["fill_count"].clone(), ioc["remaining_count"].clone()),
        (json!("2.00"), json!("0.00"))
    );
    let (_, listed) = t
        .call(
            "GET",
            "/trade-api/v2/portfolio/orders?ticker=KXPART&status=resting",
            None,
        )
        .await;
    assert_eq!(listed["orders"].as_array().unwrap().len(), 2, "{listed}");
}

#[tokio::test]
async fn orders_are_validated() {
    let t = TestSim::start().await;
    let g = t.create_group(5, 1).await;
    let (status, body) = t.order_in("KXA", Some(&g), "1", 0).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the group belongs to subaccount 1: {body}"
    );
    assert_eq!(body["error"]["code"], "order_group_not_found");
    for (field, value) in [
        ("side", json!("buy")),
        ("count", json!("0")),
        ("count", json!("1.001")),
        ("price", json!("1.00")),
        ("time_in_force", json!("day")),
        ("self_trade_prevention_type", json!("none")),
    ] {
        let mut b = json!({
            "ticker": "KXA", "side": "bid", "count": "1", "price": "0.50",
            "time_in_force": "good_till_canceled", "self_trade_prevention_type": "maker",
        });
        b[field] = value.clone();
        let (status, body) = t
            .call("POST", "/trade-api/v2/portfolio/events/orders", Some(b))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}={value}: {body}");
        assert_eq!(
            body["error"]["code"], "invalid_order",
            "{field}={value}: {body}"
        );
    }
    // Numeric count and price are refused, as on the exchange (they must be strings).
    let (status, body) = t
        .call(
            "POST",
            "/trade-api/v2/portfolio/events/orders",
            Some(json!({
            "ticker": "KXA", "side": "bid", "count": 1, "price": "0.50",
            "time_in_force": "good_till_canceled", "self_trade_prevention_type": "maker"})),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("bad_request"))
    );
    let (status, _) = t
        .call("GET", "/trade-api/v2/portfolio/orders/unknown-order", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
