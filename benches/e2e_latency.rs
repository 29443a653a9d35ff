//! End-to-end latency with the real daemon binary against the simulator on loopback.
//!
//! `cargo bench --bench e2e_latency`. An observer on its own WebSocket connection timestamps
//! what the exchange publishes, so the figures include the daemon's whole path:
//! - **breach**: from the fill message to the group's `triggered` event: the fill reaches the
//!   daemon, the risk core trips the strategy, the Trigger goes out and the exchange applies it.
//!   Each sample is a fresh strategy (limit 1 contract, a 2-contract fill trips it).
//! - **floor**: the same, with the daemon replaced by the least any client can do here (a
//!   blocking WebSocket read and a pre-signed Trigger written on a warm socket), sampled
//!   alternately with breach in the same run; the ratio of the two p50s is the daemon's cost.
//!   Both are also timed on the simulator's own clock (from handing the fill to its WebSocket
//!   sessions to applying the Trigger), which leaves out the observer's socket and scheduling.
//! - **kill**: from `SIGUSR1` to the last of 100 groups' `triggered` events, two seconds after
//!   the daemon is ready (steady state: the kill set is armed).
//!   Client, daemon and simulator share the machine's two cores.

mod support;

use support::{Floor, Ws, next_json, observer, pct, start_daemon, state_groups, write_config};

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

const BREACH_SAMPLES: usize = 100;
const KILL_GROUPS: usize = 100;
const KILL_RUNS: usize = 5;

fn main() {
    let rt = support::runtime();
    rt.block_on(async {
        let (sim, signer, key) = support::simulator().await;
        let http = reqwest::Client::new();

        // Breach: one strategy per sample.
        let dir = tempfile::tempdir().unwrap();
        let policies: Vec<(String, String)> = (0..BREACH_SAMPLES)
            .map(|i| (format!("s{i:03}.toml"), "[group]\ncontracts_limit = 1000\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = 1\n".to_owned()))
            .collect();
        write_config(dir.path(), &sim, &key.private_pem, &policies);
        let daemon = start_daemon(dir.path());
        let state = state_groups(dir.path());
        let mut ws = observer(&sim, &signer).await;
        let signed_post = |path: &str, body: Value| {
            let mut req = http.post(format!("http://{}{path}", sim.addr())).json(&body);
            for (k, v) in signer.sign_now("POST", path).pairs() {
                req = req.header(k, v);
            }
            req.send()
        };
        // One sample: an order that fills 2 contracts in `group`, timed on the observer from
        // the fill to the group's `triggered` event.
        async fn sample(ws: &mut Ws, order: impl std::future::IntoFuture<Output = reqwest::Result<reqwest::Response>>, group: &str) -> Duration {
            let mut fill_at = None;
            let watch = async {
                loop {
                    let v = next_json(ws).await;
                    if v["type"] == "fill" && fill_at.is_none() {
                        fill_at = Some(Instant::now());
                    }
                    if v["type"] == "order_group_updates" && v["msg"]["event_type"] == "triggered" && v["msg"]["order_group_id"] == group {
                        return Instant::now();
                    }
                }
            };
            let (resp, triggered_at) = tokio::join!(order.into_future(), watch);
            resp.unwrap();
            triggered_at - fill_at.unwrap()
        }
        let order = |group: &str, client_order_id: &str| {
            signed_post("/trade-api/v2/portfolio/events/orders", json!({
                "ticker": "KXBENCH", "side": "bid", "count": "2", "price": "0.50",
                "time_in_force": "good_till_canceled", "self_trade_prevention_type": "maker",
                "order_group_id": group, "client_order_id": client_order_id,
            }))
        };
        let mut floor = Some(Floor::connect(&sim, &signer));
        // Steady state: the armory's first round signs the kill set at the current time; once
        // the exchange has accepted a read signed ahead, the next re-signs it 25 s ahead, about
        // 1.5 s later (100 signatures: over 100 ms of a core here). Both are past after 4 s.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (mut breach, mut floors) = (Vec::new(), Vec::new());
        // The same samples on the simulator's own clock: from handing the fill to its
        // WebSocket sessions to applying the Trigger, no observer's socket in between.
        sim.state().keep_stamps();
        let on_sim_clock = |group: &str| {
            let s = sim.state().stamps(group);
            s.triggered.unwrap() - s.last_fill.unwrap()
        };
        let (mut breach_sim, mut floors_sim) = (Vec::new(), Vec::new());
        for i in 0..BREACH_SAMPLES {
            // The daemon, then the floor, alternating, so both see the same machine.
            let group = state["strategies"][format!("s{i:03}")]["groups"][0]["id"].as_str().unwrap().to_owned();
            breach.push(sample(&mut ws, order(&group, &format!("daemon-{i}")), &group).await);
            breach_sim.push(on_sim_clock(&group));


            let created: Value = signed_post("/trade-api/v2/portfolio/order_groups/create", json!({"contracts_limit_fp": "1000"}))
                .await.unwrap().json().await.unwrap();
            let group = created["order_group_id"].as_str().unwrap().to_owned();
            let mut f = floor.take().unwrap();
            let request = f.armed(&signer, &group);
            let mine = format!("floor-{i}");
            let contender = std::thread::spawn({
                let mine = mine.clone();
                move || {
                    f.fire_on_fill(&mine, &request);
                    f
                }
            });
            floors.push(sample(&mut ws, order(&group, &mine), &group).await);
            floors_sim.push(on_sim_clock(&group));
            floor = Some(tokio::task::spawn_blocking(move || contender.join().unwrap()).await.unwrap());
        }
        daemon.stop();
        let (p50, floor50) = (pct(&mut breach, 0.5), pct(&mut floors, 0.5));
        println!(
            "breach (fill published -> Trigger applied by the exchange), {} samples: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
            breach.len(),
            p50,
            pct(&mut breach, 0.99),
            pct(&mut breach, 1.0)
        );
        println!(
            "floor (a blocking client firing a pre-signed Trigger on a warm socket), same run: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
            floor50,
            pct(&mut floors, 0.99),
            pct(&mut floors, 1.0)
        );
        println!(
            "breach / floor at p50: {:.2}x",
            p50.as_secs_f64() / floor50.as_secs_f64()
        );
        let (p50, floor50) = (pct(&mut breach_sim, 0.5), pct(&mut floors_sim, 0.5));
        println!(
            "on the simulator's clock (fill handed to its sessions -> Trigger applied): breach p50 {:.2?}  p99 {:.2?}; floor p50 {:.2?}  p99 {:.2?}; breach / floor at p50: {:.2}x",
            p50,
            pct(&mut breach_sim, 0.99),
            floor50,
            pct(&mut floors_sim, 0.99),
            p50.as_secs_f64() / floor50.as_secs_f64()
        );

        // Kill: 100 groups, one strategy per exchange index set.
        let mut kills = Vec::new();
        for _ in 0..KILL_RUNS {
            let dir = tempfile::tempdir().unwrap();
            let indexes: Vec<String> = (0..KILL_GROUPS).map(|i| i.to_string()).collect();
            let policy = format!("exchange_indexes = [{}]\n[group]\ncontracts_limit = 1000\n", indexes.join(", "));
            write_config(dir.path(), &sim, &key.private_pem, &[("wide.toml".into(), policy)]);
            let daemon = start_daemon(dir.path());
            let groups: std::collections::HashSet<String> = state_groups(dir.path())["strategies"]["wide"]["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(groups.len(), KILL_GROUPS);
            let mut ws = observer(&sim, &signer).await;
            // Steady state: the armory's first round (signing the kill set) is done.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let t0 = Instant::now();
            Command::new("kill").args(["-USR1", &daemon.id().to_string()]).status().unwrap();
            let mut left = groups.clone();
            while !left.is_empty() {
                let v = next_json(&mut ws).await;
                if v["msg"]["event_type"] == "triggered" {
                    left.remove(v["msg"]["order_group_id"].as_str().unwrap_or_default());
                }
            }
            kills.push(t0.elapsed());
            daemon.stop();
        }
        println!(
            "kill (SIGUSR1 -> all {KILL_GROUPS} groups triggered), {} runs: p50 {:.2?}  max {:.2?}",
            kills.len(),
            pct(&mut kills, 0.5),
            pct(&mut kills, 1.0)
        );
        sim.shutdown().await;
    });
}
