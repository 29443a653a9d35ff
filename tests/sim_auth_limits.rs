//! Authentication (RSA-PSS signatures, timestamp window, 401 bodies), per-tier rate limits
//! (429 `{"error":"too many requests"}`) and injected REST faults.

mod support;

use std::time::Duration;

use kalshi_riskd::kalshi::Signer;
use kalshi_riskd::kalshi::auth::{generate_key, now_ms};
use kalshi_riskd::sim::{Faults, Tier};
use reqwest::StatusCode;
use serde_json::json;
use support::{KEY_ID, TestSim, key, registry_with};

const LIST: &str = "/trade-api/v2/portfolio/order_groups";

type Headers = Vec<(&'static str, String)>;

fn headers(signer: &Signer, ts: i64, method: &str, path: &str) -> Headers {
    let h = signer.sign(ts, method, path);
    h.pairs().iter().map(|(k, v)| (*k, v.to_string())).collect()
}

#[tokio::test]
async fn a_good_signature_passes_and_bad_ones_get_401_with_a_reason() {
    let t = TestSim::start().await;
    let now = now_ms();
    let (status, _) = t
        .send("GET", LIST, None, headers(&t.signer, now, "GET", LIST))
        .await;
    assert_eq!(status, StatusCode::OK);

    let cases: Vec<(&str, Headers, &str, &str)> = vec![
        (
            "no headers",
            vec![],
            "authentication_error",
            "MISSING_AUTH_HEADERS",
        ),
        (
            "signed for another path",
            headers(&t.signer, now, "GET", "/trade-api/v2/portfolio/balance"),
            "authentication_error",
            "INCORRECT_API_KEY_SIGNATURE",
        ),
        (
            "signed without the /trade-api/v2 prefix",
            headers(&t.signer, now, "GET", "/portfolio/order_groups"),
            "authentication_error",
            "INCORRECT_API_KEY_SIGNATURE",
        ),
        (
            "signed for another method",
            headers(&t.signer, now, "POST", LIST),
            "authentication_error",
            "INCORRECT_API_KEY_SIGNATURE",
        ),
        (
            "six seconds old",
            headers(&t.signer, now - 6_000, "GET", LIST),
            "header_timestamp_expired",
            "TIMESTAMP_OUTSIDE_WINDOW",
        ),
        (
            "a minute ahead",
            headers(&t.signer, now + 60_000, "GET", LIST),
            "header_timestamp_expired",
            "TIMESTAMP_OUTSIDE_WINDOW",
        ),
    ];
    for (why, h, code, details) in cases {
        let (status, body) = t.send("GET", LIST, None, h).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
        assert_eq!(body["error"]["code"], code, "{why}: {body}");
        assert_eq!(body["error"]["details"], details, "{why}: {body}");
    }

    let stranger =
        Signer::from_pem(KEY_ID, generate_key().unwrap().private_pem.as_bytes(), "x").unwrap();
    let (status, body) = t
        .send("GET", LIST, None, headers(&stranger, now, "GET", LIST))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "right key id, wrong key: {body}"
    );
    let unknown = Signer::from_pem("not-registered", key().private_pem.as_bytes(), "x").unwrap();
    let (_, body) = t
        .send("GET", LIST, None, headers(&unknown, now, "GET", LIST))
        .await;
    assert_eq!(body["error"]["details"], "NOT_FOUND");
}

#[tokio::test]
async fn the_query_string_is_not_signed() {
    let t = TestSim::start().await;
    let h = headers(&t.signer, now_ms(), "GET", LIST);
    let (status, _) = t
        .send("GET", &format!("{LIST}?subaccount=0"), None, h)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn several_keys_can_sign_for_the_account() {
    let second = generate_key().unwrap();
    let t =
        TestSim::start_with(|c| c.keys = registry_with(&[(KEY_ID, key()), ("second", &second)]))
            .await;
    let s2 = Signer::from_pem("second", second.private_pem.as_bytes(), "x").unwrap();
    let (status, _) = t
        .send("GET", LIST, None, headers(&s2, now_ms(), "GET", LIST))
        .await;
    assert_eq!(status, StatusCode::OK);
    let g = t.create_group(5, 0).await; // by the first key
    let (_, body) = t
        .send("GET", LIST, None, headers(&s2, now_ms(), "GET", LIST))
        .await;
    assert_eq!(
        body["order_groups"][0]["id"],
        g.as_str(),
        "one account, several keys"
    );
}

#[tokio::test]
async fn basic_tier_allows_ten_writes_a_second_then_429() {
    let t = TestSim::start_with(|c| c.tier = Tier::Basic).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (status, body) = t.call("GET", LIST, None).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body, json!({"error": "too many requests"}));
        }
        statuses.push(status.as_u16());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    // Ten fit the bucket; a refill of one token set may land while the loop runs.
    assert!((10..=11).contains(&ok), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    // Reads of an order draw on the separate Read bucket.
    let (status, _) = t
        .call("GET", "/trade-api/v2/portfolio/orders/none", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not rate-limited");
    // Refill over time is covered with explicit instants in the rate limiter's unit tests.
}

#[tokio::test]
async fn a_429_burst_and_injected_errors_on_demand() {
    let t = TestSim::start().await;
    let (status, _) = t
        .control("POST", "/faults", Some(json!({"burst_429": 2})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        t.call("GET", LIST, None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        t.call("GET", LIST, None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(t.call("GET", LIST, None).await.0, StatusCode::OK);

    // Errors only on the create path; the create is not applied.
    t.control(
        "POST",
        "/faults",
        Some(
            json!({"error_rate": 1.0, "error_path": "/trade-api/v2/portfolio/order_groups/create"}),
        ),
    )
    .await;
    let (status, body) = t
        .call(
            "POST",
            &format!("{LIST}/create"),
            Some(json!({"contracts_limit": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(t.call("GET", LIST, None).await.1["order_groups"], json!([]));

    // After-apply: the create happens but the client hears 500.
    t.control(
        "POST",
        "/faults",
        Some(json!({"error_rate": 1.0, "error_after_apply": true})),
    )
    .await;
    let (status, _) = t
        .call(
            "POST",
            &format!("{LIST}/create"),
            Some(json!({"contracts_limit": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    t.sim.state().set_faults(Faults::default());
    let (_, body) = t.call("GET", LIST, None).await;
    assert_eq!(
        body["order_groups"].as_array().unwrap().len(),
        1,
        "applied despite the 500"
    );

    let (status, body) = t
        .control("POST", "/faults", Some(json!({"error_rate": 2.0})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = t
        .control("POST", "/faults", Some(json!({"no_such_fault": true})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, stats) = t.control("GET", "/stats", None).await;
    assert_eq!(stats["rejected_429"], 2, "{stats}");
    assert_eq!(stats["injected_errors"], 2, "{stats}");
}

#[tokio::test]
async fn added_latency_delays_answers() {
    let t = TestSim::start().await;
    t.control("POST", "/faults", Some(json!({"latency_ms": 300})))
        .await;
    let start = tokio::time::Instant::now();
    let (status, _) = t.call("GET", LIST, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}
