//! The kill at each rate-limit tier, against what the tier's write budget allows.
//!
//! `cargo bench --bench kill_tiers`. For each tier the simulator enforces the exchange's Write
//! bucket (10 tokens a request; Basic 100 tokens/s with one second of burst, Advanced 300/s and
//! Premier 1,000/s with two); the daemon runs with `write_budget_per_s` at the tier's rate and
//! one strategy of 100 groups. Once the exchange's bucket is full again after the start, the
//! bench reads how many tokens it holds (`L`), sends `SIGUSR1` and times the last of the 100
//! `triggered` events on its own WebSocket. The budget allows the last Trigger at
//! `max(0, (1000 - L) / rate)`: the daemon's figure over that one is its cost (the goal is
//! within 5 %). Where the budget allows all 100 at once (Premier), the figure is read against
//! the unlimited tier's, measured in the same run. 429s are the simulator's count during the
//! kill: a daemon that bursts past the exchange's bucket pays for them in retries.
//! Client, daemon and simulator share the machine's cores.

mod support;

use support::{next_json, observer, pct, simulator_at, start_daemon, state_groups};

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use kalshi_riskd::sim::Tier;
use tokio::time::Instant;

const GROUPS: usize = 100;
/// Tokens a request costs.
const COST: f64 = 10.0;

struct Case {
    tier: Tier,
    /// Write tokens a second.
    rate: f64,
    runs: usize,
}

fn main() {
    kalshi_riskd::kalshi::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cases = [
        Case {
            tier: Tier::Unlimited,
            rate: 50_000.0,
            runs: 10,
        },
        Case {
            tier: Tier::Basic,
            rate: 100.0,
            runs: 2,
        },
        Case {
            tier: Tier::Advanced,
            rate: 300.0,
            runs: 3,
        },
        Case {
            tier: Tier::Premier,
            rate: 1_000.0,
            runs: 5,
        },
    ];
    rt.block_on(async {
        let mut unlimited_p50 = None;
        for case in cases {
            let (sim, signer, key) = simulator_at(case.tier).await;
            let (mut took, mut allowed, mut refused) = (Vec::new(), Vec::new(), 0);
            for _ in 0..case.runs {
                let dir = tempfile::tempdir().unwrap();
                let indexes: Vec<String> = (0..GROUPS).map(|i| i.to_string()).collect();
                let policy = format!(
                    "exchange_indexes = [{}]\n[group]\ncontracts_limit = 1000\n",
                    indexes.join(", ")
                );
                support::write_config_budget(
                    dir.path(),
                    &sim,
                    &key.private_pem,
                    &[("wide.toml".into(), policy)],
                    case.rate / COST,
                );
                let mut daemon = start_daemon(dir.path());
                let groups: HashSet<String> = state_groups(dir.path())["strategies"]["wide"]
                    ["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g["id"].as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(groups.len(), GROUPS);
                let mut ws = observer(&sim, &signer).await;
                // Steady state: the kill set armed, the account's limits read, and the
                // exchange's bucket full again after the start's creates (or ten seconds).
                tokio::time::sleep(Duration::from_secs(3)).await;
                let full = Instant::now();
                while let Some(tokens) = sim.state().write_tokens() {
                    let capacity = case.rate * if case.tier == Tier::Basic { 1.0 } else { 2.0 };
                    if tokens >= capacity * 0.999 || full.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let level = sim.state().write_tokens();
                let refused_before = sim_429s(&sim);
                let t0 = Instant::now();
                Command::new("kill")
                    .args(["-USR1", &daemon.id().to_string()])
                    .status()
                    .unwrap();
                let mut left = groups.clone();
                while !left.is_empty() {
                    let v = next_json(&mut ws).await;
                    if v["msg"]["event_type"] == "triggered" {
                        left.remove(v["msg"]["order_group_id"].as_str().unwrap_or_default());
                    }
                }
                took.push(t0.elapsed());
                refused += sim_429s(&sim) - refused_before;
                allowed.push(level.map_or(Duration::ZERO, |l| {
                    Duration::from_secs_f64(((GROUPS as f64 * COST - l) / case.rate).max(0.0))
                }));
                let _ = Command::new("kill")
                    .args(["-TERM", &daemon.id().to_string()])
                    .status();
                let _ = daemon.wait();
            }
            let name = format!("{:?}", case.tier).to_lowercase();
            let p50 = pct(&mut took, 0.5);
            let worst = pct(&mut took, 1.0);
            let budget = pct(&mut allowed, 0.5);
            print!(
                "kill of {GROUPS} groups at {name} ({} writes/s), {} runs: p50 {p50:.2?}, max {worst:.2?}; ",
                case.rate / COST,
                case.runs
            );
            if budget > Duration::from_millis(50) {
                println!(
                    "the budget allows {budget:.2?}: {:.3}x; 429s during the kills: {refused}",
                    p50.as_secs_f64() / budget.as_secs_f64()
                );
            } else if let Some(floor) = unlimited_p50 {
                println!(
                    "the budget allows all at once; against the unlimited tier's p50 {floor:.2?}: {:.2}x; 429s: {refused}",
                    p50.as_secs_f64() / Duration::as_secs_f64(&floor)
                );
            } else {
                println!("429s: {refused}");
                unlimited_p50 = Some(p50);
            }
            sim.shutdown().await;
        }
    });
}

fn sim_429s(sim: &kalshi_riskd::sim::Simulator) -> u64 {
    sim.state().rejected_429()
}
