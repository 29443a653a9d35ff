//! The simulator's seven order-group operations over signed HTTP: paths, status codes, body
//! shapes, the subaccount body/query asymmetry, limits, the group cap and the error bodies.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::TestSim;

const GROUPS: &str = "/trade-api/v2/portfolio/order_groups";

#[tokio::test]
async fn create_answers_201_with_id_subaccount_and_exchange_index() {
    let t = TestSim::start().await;
    let (status, body) = t
        .call(
            "POST",
            &format!("{GROUPS}/create"),
            Some(json!({"contracts_limit_fp": "150.00", "subaccount": 3, "exchange_index": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 3, "{body}");
    assert!(
        body["order_group_id"].as_str().unwrap().len() == 36,
        "{body}"
    );
    assert_eq!(body["subaccount"], 3);
    assert_eq!(body["exchange_index"], 2);
}

#[tokio::test]
async fn create_validates_the_limit() {
    let t = TestSim::start().await;
    let path = format!("{GROUPS}/create");
    for (bad, why) in [
        (json!({}), "neither field"),
        (json!({"contracts_limit": 0}), "below 1"),
        (json!({"contracts_limit": 1_000_001}), "above 1,000,000"),
        (json!({"contracts_limit_fp": "3.50"}), "fractional"),
        (
            json!({"contracts_limit": 5, "contracts_limit_fp": "6.00"}),
            "mismatch",
        ),
        (json!({"contracts_limit_fp": "ten"}), "not a number"),
        (
            json!({"contracts_limit": 5, "subaccount": 64}),
            "subaccount out of range",
        ),
        (
            json!({"contracts_limit": 5, "exchange_index": -1}),
            "auto-route index",
        ),
    ] {
        let (status, body) = t.call("POST", &path, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameters", "{why}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().len() > 5,
            "{why}"
        );
    }
    for good in [
        json!({"contracts_limit": 1}),
        json!({"contracts_limit": 1_000_000}),
        json!({"contracts_limit": 7, "contracts_limit_fp": "7.00"}),
        json!({"contracts_limit_fp": "7"}),
    ] {
        let (status, body) = t.call("POST", &path, Some(good.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "{good}: {body}");
    }
}

#[tokio::test]
async fn list_shows_groups_without_state_and_filters_by_subaccount() {
    let t = TestSim::start().await;
    let a = t.create_group(10, 0).await;
    let b = t.create_group(20, 5).await;
    let (status, body) = t.call("GET", GROUPS, None).await;
    assert_eq!(status, StatusCode::OK);
    let groups = body["order_groups"].as_array().unwrap();
    assert_eq!(
        groups.len(),
        2,
        "omitting subaccount lists every subaccount: {body}"
    );
    assert_eq!(
        groups[0],
        json!({"id": a, "contracts_limit_fp": "10.00", "is_auto_cancel_enabled": true, "exchange_index": 0})
    );
    assert_eq!(groups[1]["id"], b.as_str());
    let (_, only5) = t.call("GET", &format!("{GROUPS}?subaccount=5"), None).await;
    let ids: Vec<_> = only5["order_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(b)]);
}

#[tokio::test]
async fn get_one_shows_orders_and_limit_and_404s_for_wrong_subaccount() {
    let t = TestSim::start().await;
    let g = t.create_group(10, 2).await;
    let (status, body) = t.order_in("KXSIM-A", Some(&g), "3", 2).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let order_id = body["order_id"].as_str().unwrap().to_owned();
    let (status, body) = t.call("GET", &format!("{GROUPS}/{g}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"is_auto_cancel_enabled": true, "orders": [order_id], "contracts_limit_fp": "10.00", "exchange_index": 0})
    );
    let (status, _) = t
        .call("GET", &format!("{GROUPS}/{g}?subaccount=2"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = t
        .call("GET", &format!("{GROUPS}/{g}?subaccount=0"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = t
        .call("GET", &format!("{GROUPS}/no-such-group"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn mutators_take_subaccount_in_the_query_defaulting_to_primary() {
    let t = TestSim::start().await;
    let g = t.create_group(10, 4).await;
    for action in ["reset", "trigger"] {
        let (status, body) = t
            .call("PUT", &format!("{GROUPS}/{g}/{action}"), Some(json!({})))
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{action} without ?subaccount=4: {body}"
        );
        let (status, body) = t
            .call(
                "PUT",
                &format!("{GROUPS}/{g}/{action}?subaccount=4"),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
        assert_eq!(body, json!({}));
    }
    // A body-less PUT is accepted as well.
    let (status, _) = t
        .call("PUT", &format!("{GROUPS}/{g}/reset?subaccount=4"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // The wrong exchange index is another group's address: 404.
    let (status, _) = t
        .call(
            "PUT",
            &format!("{GROUPS}/{g}/trigger?subaccount=4&exchange_index=1"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = t
        .call(
            "PUT",
            &format!("{GROUPS}/{g}/limit"),
            Some(json!({"contracts_limit": 20})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = t
        .call(
            "PUT",
            &format!("{GROUPS}/{g}/limit?subaccount=4"),
            Some(json!({"contracts_limit_fp": "20.00"})),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(t.group_state(&g).await["contracts_limit_fp"], "20.00");
    let (status, body) = t
        .call(
            "PUT",
            &format!("{GROUPS}/{g}/limit?subaccount=4"),
            Some(json!({"contracts_limit": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = t.call("DELETE", &format!("{GROUPS}/{g}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = t
        .call("DELETE", &format!("{GROUPS}/{g}?subaccount=4"), None)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (status, _) = t.call("GET", &format!("{GROUPS}/{g}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted");
}

#[tokio::test]
async fn creation_beyond_the_group_cap_is_refused() {
    let t = TestSim::start_with(|c| c.engine.max_groups = 2).await;
    let first = t.create_group(5, 0).await;
    t.create_group(5, 0).await;
    let (status, body) = t
        .call(
            "POST",
            &format!("{GROUPS}/create"),
            Some(json!({"contracts_limit": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "order_group_limit_reached");
    t.call("DELETE", &format!("{GROUPS}/{first}"), None).await;
    t.create_group(5, 0).await;
}

#[tokio::test]
async fn errors_come_in_the_exchanges_three_shapes() {
    let t = TestSim::start().await;
    // Body that is not JSON: flat {code, message, details}.
    let (status, body) = t
        .call_raw("POST", &format!("{GROUPS}/create"), "{not json")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "bad_request", "{body}");
    assert!(body["details"].is_string(), "{body}");
    // Wrong JSON type: also a decode failure.
    let (status, body) = t
        .call_raw(
            "POST",
            &format!("{GROUPS}/create"),
            r#"{"contracts_limit":"5"}"#,
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("bad_request"))
    );
    // Malformed query parameter: bare {msg}.
    let (status, body) = t
        .call("GET", &format!("{GROUPS}?subaccount=abc"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["msg"].as_str().unwrap().contains("subaccount"),
        "{body}"
    );
    // Validation: nested {error: {code, message}}.
    let (_, body) = t
        .call(
            "POST",
            &format!("{GROUPS}/create"),
            Some(json!({"contracts_limit": 0})),
        )
        .await;
    assert!(
        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        "{body}"
    );
    // A path the exchange does not have.
    let (status, body) = t
        .call("GET", "/trade-api/v2/portfolio/nothing_here", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
