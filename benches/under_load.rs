//! The daemon under load: the breach's reaction while it digests background fills, and how many
//! fill messages a second it keeps up with.
//!
//! `cargo bench --bench under_load`. One daemon against the simulator (in this process), with
//! 100 load strategies (one group each; a one-hour limit on fills far above the load) and 80
//! probe strategies (a 15 s limit of 1 contract). Every strategy's group holds one resting
//! order; the bench fills them in-process through the simulator's engine, so each fill is
//! published on the WebSocket (`fill`, and the order's `user_order` update) exactly as a
//! counterparty's would be.
//! - **breach, idle and under load**: a probe's order fills 2 contracts; timed from that call to
//!   the group's `triggered` event on the bench's own WebSocket (subscribed to group events
//!   only). 40 samples with nothing else happening, then 40 while the load strategies' orders
//!   fill 10,000 times a second (1 contract each, round robin).
//! - **floor**: the same breaches met by the least any client can do here, sampled alternately
//!   with the daemon's in both phases: a thread reading its own fill subscription all the time
//!   (as the daemon must) that writes a Trigger signed beforehand on a warm socket when its
//!   order's fill goes by. The daemon / floor ratios say what the daemon adds under load; the
//!   floor's own change says what the harness adds.
//! - **throughput**: the load at 100,000 fills a second for 5 s. Every 20 ms the bench reads the
//!   daemon's count of load fills (its admin API: fills in the one-hour windows) against the
//!   fills published; the largest gap is the lag, and the drain is how long after the last fill
//!   the daemon has counted them all. A fill never counted is reported as lost. The floor's
//!   subscription is closed first.
//! - **ingest**: the same, with each fill published on the fill stream alone (no engine, no
//!   `user_order` update, nothing in the fills list for the sweeps), which the simulator can
//!   publish far faster: how many fill messages a second the daemon itself takes in.
//!
//! Client, daemon and simulator share the machine's cores.

mod support;

use support::{
    Floor, Ws, cpu_ns, next_json, observer_of, pct, start_daemon, state_groups, write_config,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kalshi_riskd::admin::AdminClient;
use kalshi_riskd::kalshi::Signer;
use kalshi_riskd::risk::Contracts;
use kalshi_riskd::sim::{SimState, Simulator};
use serde_json::{Value, json};
use tokio::time::Instant;

const LOAD_STRATEGIES: usize = 100;
const PROBES: usize = 80;
const BACKGROUND_PER_S: u64 = 10_000;
const THROUGHPUT_PER_S: u64 = 100_000;
const THROUGHPUT_FOR: Duration = Duration::from_secs(5);

fn main() {
    let rt = support::runtime();
    rt.block_on(async {
        let (sim, signer, key) = support::simulator().await;
        let dir = tempfile::tempdir().unwrap();
        let mut policies = Vec::new();
        for i in 0..LOAD_STRATEGIES {
            policies.push((
                format!("load{i:03}.toml"),
                "[group]\ncontracts_limit = 1000000\n[[limit]]\nname = \"hour\"\nwindow = \"1h\"\nmax_fills = 1000000000\n".to_owned(),
            ));
        }
        for i in 0..PROBES {
            policies.push((
                format!("probe{i:03}.toml"),
                "[group]\ncontracts_limit = 1000\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = 1\n".to_owned(),
            ));
        }
        write_config(dir.path(), &sim, &key.private_pem, &policies);
        let daemon = start_daemon(dir.path());
        let state = state_groups(dir.path());
        let group = |name: &str| {
            state["strategies"][name]["groups"][0]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let http = reqwest::Client::new();
        for ticker in ["KXLOAD", "KXPROBE"] {
            http.post(format!("http://{}/_sim/liquidity", sim.addr()))
                .json(&json!({"ticker": ticker, "contracts": "0"}))
                .send()
                .await
                .unwrap();
        }
        let mut load_orders = Vec::new();
        for i in 0..LOAD_STRATEGIES {
            let g = group(&format!("load{i:03}"));
            load_orders.push(rest_order(&http, &sim, &signer, "KXLOAD", "1000000", &g, None).await);
        }
        let mut probes = Vec::new();
        for i in 0..PROBES {
            let g = group(&format!("probe{i:03}"));
            probes.push((rest_order(&http, &sim, &signer, "KXPROBE", "10", &g, None).await, g));
        }
        // The floor's groups and orders (not the daemon's: its kill scope is its own groups).
        let mut floors = Vec::new();
        for i in 0..PROBES {
            let g = support::create_group(&http, &sim, &signer).await;
            let cid = format!("floor-{i}");
            let order = rest_order(&http, &sim, &signer, "KXPROBE", "10", &g, Some(&cid)).await;
            floors.push((order, g, cid));
        }
        let floor = live_floor(Floor::connect(&sim, &signer));
        let host = sim.addr().to_string();
        let mut ws = observer_of(&sim, &signer, &["order_group_updates"]).await;
        // Steady state: the orders' groups learnt from the stream, the kill set armed.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let admin = AdminClient::new(dir.path().join("admin.sock"), Duration::from_secs(10));

        let mut probes = probes.into_iter();
        let mut floors = floors.into_iter();
        let (mut idle, mut idle_floor) = (Vec::new(), Vec::new());
        for (order, g) in probes.by_ref().take(PROBES / 2) {
            idle.push(probe(&sim, &mut ws, &order, &g).await);
            tokio::time::sleep(Duration::from_millis(25)).await;
            let (order, g, cid) = floors.next().unwrap();
            floor.send((cid, support::trigger_request(&host, &signer, &g))).unwrap();
            idle_floor.push(probe(&sim, &mut ws, &order, &g).await);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let load = Load::start(sim.state().clone(), load_orders.clone(), BACKGROUND_PER_S);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (mut loaded, mut loaded_floor) = (Vec::new(), Vec::new());
        let (cpu_before, wall) = (cpu_ns(daemon.id()), Instant::now());
        for (order, g) in probes {
            loaded.push(probe(&sim, &mut ws, &order, &g).await);
            tokio::time::sleep(Duration::from_millis(25)).await;
            let (order, g, cid) = floors.next().unwrap();
            floor.send((cid, support::trigger_request(&host, &signer, &g))).unwrap();
            loaded_floor.push(probe(&sim, &mut ws, &order, &g).await);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let busy = (cpu_ns(daemon.id()) - cpu_before) as f64 / wall.elapsed().as_nanos() as f64;
        let background = load.stop();
        println!(
            "breach, idle, {} samples: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
            idle.len(),
            pct(&mut idle, 0.5),
            pct(&mut idle, 0.99),
            pct(&mut idle, 1.0)
        );
        println!(
            "breach under {:.0} fills/s across {LOAD_STRATEGIES} strategies, {} samples: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
            background.per_s(),
            loaded.len(),
            pct(&mut loaded, 0.5),
            pct(&mut loaded, 0.99),
            pct(&mut loaded, 1.0)
        );
        println!(
            "the daemon's CPU under that load: {:.0} % of a core",
            busy * 100.0
        );
        println!(
            "floor, idle: p50 {:.2?}  p99 {:.2?}; under load: p50 {:.2?}  p99 {:.2?}",
            pct(&mut idle_floor, 0.5),
            pct(&mut idle_floor, 0.99),
            pct(&mut loaded_floor, 0.5),
            pct(&mut loaded_floor, 0.99)
        );
        println!(
            "daemon / floor: idle p50 {:.2}x p99 {:.2}x; under load p50 {:.2}x p99 {:.2}x",
            pct(&mut idle, 0.5).as_secs_f64() / pct(&mut idle_floor, 0.5).as_secs_f64(),
            pct(&mut idle, 0.99).as_secs_f64() / pct(&mut idle_floor, 0.99).as_secs_f64(),
            pct(&mut loaded, 0.5).as_secs_f64() / pct(&mut loaded_floor, 0.5).as_secs_f64(),
            pct(&mut loaded, 0.99).as_secs_f64() / pct(&mut loaded_floor, 0.99).as_secs_f64()
        );
        println!(
            "under load / idle: p50 {:.2}x, p99 {:.2}x",
            pct(&mut loaded, 0.5).as_secs_f64() / pct(&mut idle, 0.5).as_secs_f64(),
            pct(&mut loaded, 0.99).as_secs_f64() / pct(&mut idle, 0.99).as_secs_f64()
        );

        // Throughput: every load fill so far counted first, then the burst, without the floor
        // (its subscription would double what the simulator writes).
        drop(floor);
        let before = wait_counted(&admin, background.fills, Duration::from_secs(30)).await;
        assert_eq!(before, Some(background.fills), "fills of the background load not counted");
        let load = Load::start(sim.state().clone(), load_orders.clone(), THROUGHPUT_PER_S);
        let started = Instant::now();
        let mut max_gap = 0u64;
        while started.elapsed() < THROUGHPUT_FOR {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let published = load.published();
            let counted = load_fills(&admin).await - background.fills;
            max_gap = max_gap.max(published.saturating_sub(counted));
        }
        let burst = load.stop();
        let stopped = Instant::now();
        let all = wait_counted(&admin, background.fills + burst.fills, Duration::from_secs(60)).await;
        let drain = stopped.elapsed();
        println!(
            "throughput: {} fills published in {:.2?} ({:.0}/s, asked {THROUGHPUT_PER_S}/s); largest gap behind the exchange {max_gap} fills ({:.1} ms at that rate); all counted {:.2?} after the last",
            burst.fills,
            burst.took,
            burst.per_s(),
            max_gap as f64 / burst.per_s() * 1000.0,
            drain
        );
        match all {
            Some(n) if n == background.fills + burst.fills => {}
            other => println!(
                "LOST: the daemon counted {:?} of {} load fills within a minute",
                other,
                background.fills + burst.fills
            ),
        }

        // Ingest: the same, with fills published on the stream alone (no engine, no order
        // update, nothing for the sweeps to read): what the daemon itself keeps up with.
        let base = background.fills + burst.fills;
        let flood = Load::start_on(
            sim.state().clone(),
            load_orders,
            THROUGHPUT_PER_S,
            Publish::StreamOnly,
        );
        let started = Instant::now();
        let (cpu_before, mut max_gap) = (cpu_ns(daemon.id()), 0u64);
        while started.elapsed() < THROUGHPUT_FOR {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let published = flood.published();
            let counted = load_fills(&admin).await - base;
            max_gap = max_gap.max(published.saturating_sub(counted));
        }
        let flooded = flood.stop();
        let stopped = Instant::now();
        let all = wait_counted(&admin, base + flooded.fills, Duration::from_secs(60)).await;
        let drain = stopped.elapsed();
        let busy = (cpu_ns(daemon.id()) - cpu_before) as f64
            / (flooded.took + drain).as_nanos() as f64;
        println!(
            "ingest, fills on the stream alone: {} in {:.2?} ({:.0}/s, asked {THROUGHPUT_PER_S}/s); largest gap {max_gap} fills ({:.1} ms at that rate); all counted {:.2?} after the last; the daemon's CPU {:.0} % of a core",
            flooded.fills,
            flooded.took,
            flooded.per_s(),
            max_gap as f64 / flooded.per_s() * 1000.0,
            drain,
            busy * 100.0
        );
        match all {
            Some(n) if n == base + flooded.fills => {}
            other => println!(
                "LOST: the daemon counted {:?} of {} load fills within a minute",
                other.map(|n| n - base),
                flooded.fills
            ),
        }
        daemon.stop();
        sim.shutdown().await;
    });
}

/// A resting order of `count` contracts in `group`; its id.
async fn rest_order(
    http: &reqwest::Client,
    sim: &Simulator,
    signer: &Signer,
    ticker: &str,
    count: &str,
    group: &str,
    client_order_id: Option<&str>,
) -> String {
    let path = "/trade-api/v2/portfolio/events/orders";
    let mut body = json!({
        "ticker": ticker, "side": "bid", "count": count, "price": "0.50",
        "time_in_force": "good_till_canceled", "self_trade_prevention_type": "maker",
        "order_group_id": group,
    });
    if let Some(c) = client_order_id {
        body["client_order_id"] = json!(c);
    }
    let mut req = http
        .post(format!("http://{}{path}", sim.addr()))
        .json(&body);
    for (k, v) in signer.sign_now("POST", path).pairs() {
        req = req.header(k, v);
    }
    let v: Value = req.send().await.unwrap().json().await.unwrap();
    v["order_id"].as_str().expect("an order id").to_owned()
}

/// One breach: 2 contracts of the probe's order fill; the time until its group is triggered.
async fn probe(sim: &Simulator, ws: &mut Ws, order: &str, group: &str) -> Duration {
    let t0 = Instant::now();
    sim.state()
        .fill_resting(order, Contracts::from_whole(2))
        .unwrap();
    loop {
        let v = next_json(ws).await;
        if v["msg"]["event_type"] == "triggered" && v["msg"]["order_group_id"] == group {
            return t0.elapsed();
        }
    }
}

/// Load fills the daemon has counted: the fills in the load strategies' one-hour windows.
async fn load_fills(admin: &AdminClient) -> u64 {
    let status = admin.status().await.unwrap();
    status
        .strategies
        .iter()
        .filter(|s| s.name.starts_with("load"))
        .flat_map(|s| s.limits.iter())
        .map(|l| l.fills as u64)
        .sum()
}

/// Waits until the daemon has counted `n` load fills; what it counted last.
async fn wait_counted(admin: &AdminClient, n: u64, patience: Duration) -> Option<u64> {
    let t0 = Instant::now();
    let mut last = None;
    while t0.elapsed() < patience {
        let counted = load_fills(admin).await;
        last = Some(counted);
        if counted >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    last
}

/// Fills at a steady rate, 1 contract each, round robin over resting orders, from a thread of
/// its own (the simulator's engine publishes each one).
struct Load {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Duration>,
}

struct Made {
    fills: u64,
    took: Duration,
}

impl Made {
    fn per_s(&self) -> f64 {
        self.fills as f64 / self.took.as_secs_f64()
    }
}

/// How the load's fills reach the stream.
#[derive(Clone, Copy)]
enum Publish {
    /// Made by the simulator's engine: the fill, its order's update, the fills list.
    Engine,
    /// On the fill stream alone.
    StreamOnly,
}

impl Load {
    fn start(state: Arc<SimState>, orders: Vec<String>, per_s: u64) -> Load {
        Load::start_on(state, orders, per_s, Publish::Engine)
    }

    fn start_on(state: Arc<SimState>, orders: Vec<String>, per_s: u64, how: Publish) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let (stop, published) = (stop.clone(), published.clone());
            move || {
                let one = Contracts::from_whole(1);
                let start = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = (start.elapsed().as_secs_f64() * per_s as f64) as u64;
                    if n >= due {
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    // At most a millisecond's worth between looks at the clock and the stop.
                    let upto = due.min(n + per_s / 1000 + 1);
                    while n < upto {
                        let order = &orders[(n % orders.len() as u64) as usize];
                        match how {
                            Publish::Engine => state.fill_resting(order, one).unwrap(),
                            Publish::StreamOnly => state.publish_stream_fill(order, one).unwrap(),
                        }
                        n += 1;
                    }
                    published.store(n, Ordering::Relaxed);
                }
                start.elapsed()
            }
        });
        Load {
            stop,
            published,
            thread,
        }
    }

    fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    fn stop(self) -> Made {
        self.stop.store(true, Ordering::Relaxed);
        let took = self.thread.join().unwrap();
        Made {
            fills: self.published.load(Ordering::Relaxed),
            took,
        }
    }
}

/// The floor, reading its fill subscription all the time on a thread of its own. Send it a
/// client order id and a Trigger signed beforehand; when that order's fill goes by, it writes
/// the Trigger on its warm socket and reads the answer. Dropping the sender closes its
/// subscription at the next message (the throughput phase does without it).
fn live_floor(mut f: Floor) -> std::sync::mpsc::Sender<(String, Vec<u8>)> {
    use std::io::{Read as _, Write as _};
    use std::sync::mpsc::TryRecvError;
    use tokio_tungstenite::tungstenite::Message;
    let (tx, rx) = std::sync::mpsc::channel::<(String, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut armed: Vec<(String, Vec<u8>)> = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(msg) = f.ws.read() {
            loop {
                match rx.try_recv() {
                    Ok((cid, req)) => armed.push((format!("\"client_order_id\":\"{cid}\""), req)),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        let _ = f.ws.close(None);
                        let _ = f.ws.flush();
                        return;
                    }
                }
            }
            let Message::Text(text) = msg else { continue };
            if let Some(i) = armed
                .iter()
                .position(|(mine, _)| text.as_str().contains(mine.as_str()))
            {
                let (_, request) = armed.swap_remove(i);
                f.rest.write_all(&request).unwrap();
                let n = f.rest.read(&mut buf).unwrap();
                assert!(
                    buf[..n].starts_with(b"HTTP/1.1 200"),
                    "{}",
                    String::from_utf8_lossy(&buf[..n])
                );
            }
        }
    });
    tx
}
