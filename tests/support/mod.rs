//! Shared test harness: an in-process simulator on 127.0.0.1:0, a signed REST client and a
//! signed WebSocket client. Everything goes over real sockets with real RSA-PSS signatures.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod daemon;
pub mod etcd;

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use kalshi_riskd::kalshi::Signer;
use kalshi_riskd::kalshi::auth::{GeneratedKey, generate_key, public_key_der_from_pem};
use kalshi_riskd::sim::{KeyRegistry, SimConfig, Simulator, Tier};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const KEY_ID: &str = "0b7e6a3c-1111-4a2b-9c3d-5e6f7a8b9c0d";
/// Generous bound for liveness waits; never a speed assertion.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One RSA key for the whole test binary (generating one takes a while).
pub fn key() -> &'static GeneratedKey {
    static KEY: OnceLock<GeneratedKey> = OnceLock::new();
    KEY.get_or_init(|| generate_key().expect("generate a test key"))
}

pub fn signer() -> Signer {
    Signer::from_pem(KEY_ID, key().private_pem.as_bytes(), "test key").unwrap()
}

pub fn registry_with(keys: &[(&str, &GeneratedKey)]) -> KeyRegistry {
    let mut reg = KeyRegistry::default();
    for (id, k) in keys {
        let der = public_key_der_from_pem(k.public_pem.as_bytes(), "test key").unwrap();
        reg.register(id, &der).unwrap();
    }
    reg
}

pub struct TestSim {
    pub sim: Simulator,
    pub signer: Signer,
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl TestSim {
    /// A simulator with the unlimited tier (rate-limit tests choose their tier).
    pub async fn start() -> TestSim {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut SimConfig)) -> TestSim {
        let mut cfg = SimConfig {
            tier: Tier::Unlimited,
            keys: registry_with(&[(KEY_ID, key())]),
            ..SimConfig::default()
        };
        tweak(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::start(cfg, listener).await.unwrap();
        let base = format!("http://{}", sim.addr());
        TestSim {
            sim,
            signer: signer(),
            http: reqwest::Client::new(),
            base,
        }
    }

    /// A signed call; `path` starts with `/trade-api/v2` and may carry a query.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let headers = self.signer.sign_now(method, path);
        self.send(
            method,
            path,
            body,
            headers.pairs().map(|(k, v)| (k, v.to_owned())),
        )
        .await
    }

    /// A call with exactly these headers (for authentication tests).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: impl IntoIterator<Item = (&str, String)>,
    ) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the simulator");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// A signed call with a raw (possibly invalid) body.
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        raw: &'static str,
    ) -> (StatusCode, Value) {
        let headers = self.signer.sign_now(method, path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(raw);
        for (k, v) in headers.pairs() {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Adds the FIX acceptor on another port; returns its `fix_addr` (`tcp://` or `tls://`,
    /// the latter with the test certificate in `tests/fixtures/tls`).
    pub async fn start_fix(&self, tls: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let acceptor = tls.then(|| {
            kalshi_riskd::sim::fix::tls_acceptor(
                include_bytes!("../fixtures/tls/server.pem"),
                include_bytes!("../fixtures/tls/server.key"),
            )
            .unwrap()
        });
        let addr = self.sim.start_fix(listener, acceptor).unwrap();
        format!("{}://{addr}", if tls { "tls" } else { "tcp" })
    }

    /// The unauthenticated `/_sim/` control surface.
    pub async fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}/_sim{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn create_group(&self, limit: i64, subaccount: i64) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/trade-api/v2/portfolio/order_groups/create",
                Some(json!({"contracts_limit": limit, "subaccount": subaccount})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["order_group_id"].as_str().unwrap().to_owned()
    }

    /// A good-till-canceled bid into a group (subaccount 0 unless `subaccount` says otherwise).
    pub async fn order(&self, group: Option<&str>, count: &str) -> (StatusCode, Value) {
        self.order_in("KXSIM-26NOV23-T1", group, count, 0).await
    }

    pub async fn order_in(
        &self,
        ticker: &str,
        group: Option<&str>,
        count: &str,
        subaccount: i64,
    ) -> (StatusCode, Value) {
        let mut body = json!({
            "ticker": ticker,
            "side": "bid",
            "count": count,
            "price": "0.4200",
            "time_in_force": "good_till_canceled",
            "self_trade_prevention_type": "taker_at_cross",
            "client_order_id": kalshi_riskd::sim::engine::new_id(),
            "subaccount": subaccount,
        });
        if let Some(g) = group {
            body["order_group_id"] = json!(g);
        }
        self.call("POST", "/trade-api/v2/portfolio/events/orders", Some(body))
            .await
    }

    /// The simulator's internal view of one group.
    pub async fn group_state(&self, id: &str) -> Value {
        let (status, body) = self.control("GET", &format!("/groups/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn ws(&self) -> Ws {
        self.ws_signed_by(&self.signer)
            .await
            .expect("websocket connects")
    }

    pub async fn ws_signed_by(
        &self,
        signer: &Signer,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!("ws://{}/trade-api/ws/v2", self.sim.addr());
        let mut req = url.into_client_request().unwrap();
        for (k, v) in signer.sign_now("GET", "/trade-api/ws/v2").pairs() {
            req.headers_mut().insert(k, v.parse().unwrap());
        }
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Ws { stream })
    }
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the next frame was.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Ping(Vec<u8>),
    Other(Message),
    /// The connection ended (with or without a close frame).
    Closed,
}

impl Ws {
    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, t: &str) {
        self.stream.send(Message::text(t.to_owned())).await.unwrap();
    }

    /// The next frame of any kind, within `PATIENCE`.
    pub async fn frame(&mut self) -> Frame {
        match tokio::time::timeout(PATIENCE, self.stream.next()).await {
            Err(_) => panic!("no frame within {PATIENCE:?}"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => Frame::Closed,
            Ok(Some(Ok(Message::Text(t)))) => Frame::Json(
                serde_json::from_str(t.as_str()).unwrap_or(Value::String(t.as_str().to_owned())),
            ),
            Ok(Some(Ok(Message::Ping(p)))) => Frame::Ping(p.to_vec()),
            Ok(Some(Ok(m))) => Frame::Other(m),
        }
    }

    /// The next JSON message, skipping pings.
    pub async fn json(&mut self) -> Value {
        loop {
            match self.frame().await {
                Frame::Json(v) => return v,
                Frame::Ping(_) => continue,
                other => panic!("expected a JSON message, got {other:?}"),
            }
        }
    }

    /// The next JSON message whose `type` is `ty`, skipping others.
    pub async fn next_of(&mut self, ty: &str) -> Value {
        loop {
            let v = self.json().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Subscribes to channels and returns their sids, in order.
    pub async fn subscribe(&mut self, id: u64, channels: &[&str]) -> Vec<u64> {
        self.send(json!({"id": id, "cmd": "subscribe", "params": {"channels": channels}}))
            .await;
        let mut sids = Vec::new();
        for c in channels {
            let v = self.json().await;
            assert_eq!(v["type"], "subscribed", "{v}");
            assert_eq!(v["id"], id, "{v}");
            assert_eq!(v["msg"]["channel"], *c, "{v}");
            sids.push(v["msg"]["sid"].as_u64().unwrap());
        }
        sids
    }

    /// Asserts nothing at all arrives for `quiet` (used only where silence is the behaviour).
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(frame) = tokio::time::timeout(quiet, self.stream.next()).await {
            panic!("expected silence, got {frame:?}");
        }
    }
}

impl TestSim {
    /// The project's REST client pointed at this simulator, unlimited budgets, fast retries.
    pub fn rest_client(
        &self,
        tweak: impl FnOnce(&mut kalshi_riskd::kalshi::RestConfig),
    ) -> kalshi_riskd::kalshi::RestClient {
        let mut cfg = kalshi_riskd::kalshi::RestConfig::new(self.sim.rest_url());
        cfg.write_per_s = None;
        cfg.read_per_s = None;
        cfg.retry = kalshi_riskd::kalshi::rest::RetryPolicy {
            attempts: 6,
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
        };
        tweak(&mut cfg);
        kalshi_riskd::kalshi::RestClient::new(&cfg, self.signer.clone()).unwrap()
    }

    pub async fn stats(&self) -> Value {
        self.control("GET", "/stats", None).await.1
    }

    pub async fn set_faults(&self, faults: Value) {
        let (status, body) = self.control("POST", "/faults", Some(faults)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
