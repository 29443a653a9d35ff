//! How long a start takes when the daemon must rebuild its windows from a day of fills.
//!
//! `cargo bench --bench start_rebuild`. The simulator holds N fills, each of its own order, in
//! one strategy's group within its 24 h window; the real daemon starts (its budgets those of
//! the Basic tier: 10 writes and 20 reads a second) and the time from spawn to `READY=1` is
//! measured, with the window's figure checked afterwards. Every fill's order must be mapped to
//! its group (pages of 1,000 orders), which is the worst case. Client, daemon and simulator
//! share the machine's two cores.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt as _;
use kalshi_riskd::sim::Simulator;
use serde_json::{Value, json};
use tokio::time::Instant;

const SIZES: [usize; 4] = [0, 10_000, 30_000, 50_000];

fn write_config(dir: &Path, sim: &Simulator, key_pem: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("key.pem"), key_pem).unwrap();
    std::fs::set_permissions(dir.join("key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        dir.join("k.toml"),
        format!(
            "[exchange]\nenvironment = \"sim\"\nrest_url = \"{}\"\nws_url = \"{}\"\napi_key_id = \"{}\"\nprivate_key_path = \"key.pem\"\nwrite_budget_per_s = 10\n[policies]\ndir = \"policies\"\n[state]\ndir = \"state\"\n[http]\nlisten = \"127.0.0.1:0\"\nadmin_socket = \"admin.sock\"\n[log]\nformat = \"json\"\n",
            sim.rest_url(),
            sim.ws_url(),
            support::KEY_ID
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/day.toml"),
        "[group]\ncontracts_limit = 1000000\n[[limit]]\nname = \"day\"\nwindow = \"24h\"\nmax_contracts = 100000000\n",
    )
    .unwrap();
}

/// Runs the daemon until READY=1 (for up to ten minutes); how long that took. Leaves it
/// running.
fn time_to_ready(dir: &Path) -> (Duration, support::DaemonProcess) {
    let started = Instant::now();
    let daemon = support::start_daemon_within(dir, Duration::from_secs(600));
    (started.elapsed(), daemon)
}

fn main() {
    let rt = support::runtime();
    rt.block_on(async {
        println!("start_rebuild: time from spawn to READY=1, rebuilding a 24 h window");
        for n in SIZES {
            let (sim, signer, key) = support::simulator().await;
            let dir = tempfile::tempdir().unwrap();
            write_config(dir.path(), &sim, &key.private_pem);
            // A first start creates the group; then the day's fills are made.
            let (_, daemon) = time_to_ready(dir.path());
            daemon.stop();
            let state: Value =
                serde_json::from_slice(&std::fs::read(dir.path().join("state/state.json")).unwrap())
                    .unwrap();
            let group = state["strategies"]["day"]["groups"][0]["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let http = reqwest::Client::new();
            let made = Instant::now();
            futures_util::stream::iter(0..n)
                .for_each_concurrent(32, |_| {
                    let (http, signer, group) = (http.clone(), signer.clone(), group.clone());
                    let url = format!("http://{}/trade-api/v2/portfolio/events/orders", sim.addr());
                    async move {
                        let path = "/trade-api/v2/portfolio/events/orders";
                        let mut req = http.post(url).json(&json!({
                            "ticker": "KXBENCH", "side": "bid", "count": "1", "price": "0.50",
                            "time_in_force": "good_till_canceled",
                            "self_trade_prevention_type": "maker", "order_group_id": group,
                        }));
                        for (k, v) in signer.sign_now("POST", path).pairs() {
                            req = req.header(k, v);
                        }
                        let r = req.send().await.unwrap();
                        assert!(r.status().is_success());
                    }
                })
                .await;
            let made = made.elapsed();
            let dir_path = dir.path().to_owned();
            let (took, daemon) =
                tokio::task::spawn_blocking(move || time_to_ready(&dir_path)).await.unwrap();
            let out = Command::new(support::daemon_binary())
                .args(["status", "--json", "--config"])
                .arg(dir.path().join("k.toml"))
                .output()
                .unwrap();
            let status: Value = serde_json::from_slice(&out.stdout).unwrap();
            let counted = status["strategies"][0]["limits"][0]["contracts"].clone();
            let state = status["strategies"][0]["state"].clone();
            daemon.stop();
            println!(
                "  {n:>6} fills ({} orders, made in {made:.1?}): ready in {took:.2?}; window shows {counted} contracts, state {state}",
                n
            );
        }
    });
}
