//! Simulator throughput on loopback: how many signed REST calls and WebSocket messages per
//! second it sustains, so later benchmarks know it is not their bottleneck.
//!
//! `cargo bench --bench sim_throughput` (release build). The client runs in the same process
//! and on the same two cores as the simulator, so the figures are lower bounds. Signatures are
//! made once per second per request path and reused (the exchange's window allows 5 s), so the
//! client measures the server rather than its own RSA signing; the server verifies every one.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use kalshi_riskd::kalshi::Signer;
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const PHASE: Duration = Duration::from_secs(3);
const CLIENTS: usize = 32;
const WS_READERS: usize = 4;

struct Caller {
    http: reqwest::Client,
    base: String,
    signer: Signer,
}

impl Caller {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        signed: &mut (Instant, Vec<(&'static str, String)>),
    ) -> u16 {
        if signed.1.is_empty() || signed.0.elapsed() > Duration::from_secs(1) {
            let h = self.signer.sign_now(method.as_str(), path);
            *signed = (
                Instant::now(),
                h.pairs().iter().map(|(k, v)| (*k, v.to_string())).collect(),
            );
        }
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        for (k, v) in &signed.1 {
            req = req.header(*k, v);
        }
        if method == reqwest::Method::POST {
            req = req.json(&json!({
                "ticker": "KXBENCH", "side": "bid", "count": "1", "price": "0.5000",
                "time_in_force": "good_till_canceled", "self_trade_prevention_type": "maker",
            }));
        }
        match req.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                let _ = r.bytes().await;
                s
            }
            Err(_) => 0,
        }
    }
}

async fn run_phase(caller: Arc<Caller>, paths: Vec<(reqwest::Method, String)>) -> (u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + PHASE;
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (method, path) = paths[i % paths.len()].clone();
        let (caller, ok, bad) = (caller.clone(), ok.clone(), bad.clone());
        tasks.push(tokio::spawn(async move {
            let mut signed = (Instant::now(), Vec::new());
            while Instant::now() < deadline {
                let s = caller.call(method.clone(), &path, &mut signed).await;
                if (200..300).contains(&s) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (sim, signer, _key) = support::simulator().await;
        let caller = Arc::new(Caller {
            http: reqwest::Client::builder().pool_max_idle_per_host(CLIENTS).build().unwrap(),
            base: format!("http://{}", sim.addr()),
            signer: signer.clone(),
        });

        // Groups to act on.
        let mut ids = Vec::new();
        for _ in 0..8 {
            let path = "/trade-api/v2/portfolio/order_groups/create";
            let mut req = caller.http.post(format!("{}{path}", caller.base)).json(&json!({"contracts_limit": 1000000}));
            for (k, v) in signer.sign_now("POST", path).pairs() {
                req = req.header(k, v);
            }
            let v: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
            ids.push(v["order_group_id"].as_str().unwrap().to_owned());
        }

        let mut group_paths = Vec::new();
        for id in &ids {
            group_paths.push((reqwest::Method::GET, format!("/trade-api/v2/portfolio/order_groups/{id}")));
            group_paths.push((reqwest::Method::PUT, format!("/trade-api/v2/portfolio/order_groups/{id}/trigger")));
            group_paths.push((reqwest::Method::PUT, format!("/trade-api/v2/portfolio/order_groups/{id}/reset")));
        }
        let (ok, bad) = run_phase(caller.clone(), group_paths).await;
        println!(
            "order-group REST (get/trigger/reset, {CLIENTS} concurrent clients): {:.0} req/s ({ok} ok, {bad} failed in {PHASE:?})",
            ok as f64 / PHASE.as_secs_f64()
        );

        // Orders with WebSocket readers subscribed to everything.
        let received = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        for _ in 0..WS_READERS {
            let mut req = sim.ws_url().into_client_request().unwrap();
            for (k, v) in signer.sign_now("GET", "/trade-api/ws/v2").pairs() {
                req.headers_mut().insert(k, v.parse().unwrap());
            }
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
            use futures_util::SinkExt as _;
            ws.send(tokio_tungstenite::tungstenite::Message::text(
                json!({"id":1,"cmd":"subscribe","params":{"channels":["fill","user_orders","order_group_updates"]}}).to_string(),
            )).await.unwrap();
            for _ in 0..3 {
                ws.next().await;
            }
            let received = received.clone();
            readers.push(tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        let before = received.load(Ordering::Relaxed);
        let started = Instant::now();
        let (ok, bad) = run_phase(caller.clone(), vec![(reqwest::Method::POST, "/trade-api/v2/portfolio/events/orders".into())]).await;
        // Let the readers drain what was published.
        let mut last = received.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = received.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        let delivered = last - before;
        let secs = started.elapsed().as_secs_f64() - 0.2;
        println!(
            "orders (POST /portfolio/events/orders, {CLIENTS} clients): {:.0} req/s ({ok} ok, {bad} failed)",
            ok as f64 / PHASE.as_secs_f64()
        );
        println!(
            "websocket delivery to {WS_READERS} readers (3 messages per order each): {delivered} messages, {:.0} msg/s, expected {}",
            delivered as f64 / secs,
            ok * 3 * WS_READERS as u64
        );
        for r in readers {
            r.abort();
        }
        sim.shutdown().await;
    });
}
