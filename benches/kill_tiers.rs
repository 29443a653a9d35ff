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
//! At the unlimited tier a **floor** runs after each daemon run: the least any client can do
//! on this harness (100 Triggers signed beforehand, written back to back on 100 warm sockets
//! from one thread), timed the same way; the ratio of the p50s is the daemon's cost. The
//! daemon's CPU during each kill (every thread's run time, from `/proc`) is reported too.
//! Client, daemon and simulator share the machine's cores.

mod support;

use support::{Ws, cpu_ns, next_json, observer, pct, simulator_at, start_daemon, state_groups};

use std::collections::HashSet;
use std::time::Duration;

use kalshi_riskd::kalshi::Signer;
use kalshi_riskd::sim::{Simulator, Tier};
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
    let rt = support::runtime();
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
    // `cargo bench --bench kill_tiers -- advanced` runs that tier only.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    rt.block_on(async {
        let mut unlimited_p50 = None;
        for case in cases {
            let name = format!("{:?}", case.tier).to_lowercase();
            if !only.is_empty() && !only.contains(&name) {
                continue;
            }
            let (sim, signer, key) = simulator_at(case.tier).await;
            let (mut took, mut allowed, mut cpu, mut floors) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut refused = 0;
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
                let daemon = start_daemon(dir.path());
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
                let refused_before = sim.state().rejected_429();
                let cpu_before = cpu_ns(daemon.id());
                let t0 = Instant::now();
                signal(daemon.id(), rustix::process::Signal::USR1);
                all_triggered(&mut ws, groups).await;
                took.push(t0.elapsed());
                cpu.push(Duration::from_nanos(cpu_ns(daemon.id()) - cpu_before));
                refused += sim.state().rejected_429() - refused_before;
                allowed.push(level.map_or(Duration::ZERO, |l| {
                    Duration::from_secs_f64(((GROUPS as f64 * COST - l) / case.rate).max(0.0))
                }));
                daemon.stop();
                if case.tier == Tier::Unlimited {
                    floors.push(floor_kill(&sim, &signer, &mut ws).await);
                }
            }
            let p50 = pct(&mut took, 0.5);
            let worst = pct(&mut took, 1.0);
            let budget = pct(&mut allowed, 0.5);
            let cpu50 = pct(&mut cpu, 0.5);
            print!(
                "kill of {GROUPS} groups at {name} ({} writes/s), {} runs: p50 {p50:.2?}, max {worst:.2?}, daemon CPU p50 {cpu50:.2?}; ",
                case.rate / COST,
                case.runs
            );
            if budget > Duration::from_millis(50) {
                println!(
                    "the budget allows {budget:.2?}: {:.3}x; 429s during the kills: {refused}",
                    p50.as_secs_f64() / budget.as_secs_f64()
                );
            } else if let Some(unlimited) = unlimited_p50 {
                println!(
                    "the budget allows all at once; against the unlimited tier's p50 {unlimited:.2?}: {:.2}x; 429s: {refused}",
                    p50.as_secs_f64() / Duration::as_secs_f64(&unlimited)
                );
            } else {
                let floor = pct(&mut floors, 0.5);
                println!(
                    "floor p50 {floor:.2?} (max {:.2?}): {:.2}x; 429s: {refused}",
                    pct(&mut floors, 1.0),
                    p50.as_secs_f64() / floor.as_secs_f64()
                );
                unlimited_p50 = Some(p50);
            }
            sim.shutdown().await;
        }
    });
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a child's pid");
    let _ = rustix::process::kill_process(pid, signal);
}

/// Waits for the `triggered` event of every group in `left`.
async fn all_triggered(ws: &mut Ws, mut left: HashSet<String>) {
    while !left.is_empty() {
        let v = next_json(ws).await;
        if v["msg"]["event_type"] == "triggered" {
            left.remove(v["msg"]["order_group_id"].as_str().unwrap_or_default());
        }
    }
}

/// The floor: 100 fresh groups, their Triggers signed beforehand, written back to back on 100
/// warm keep-alive sockets by one blocking thread; timed from the first write to the last
/// `triggered` event, as the daemon's kill is.
async fn floor_kill(sim: &Simulator, signer: &Signer, ws: &mut Ws) -> Duration {
    use std::io::{Read as _, Write as _};
    let http = reqwest::Client::new();
    let mut groups = HashSet::new();
    for _ in 0..GROUPS {
        groups.insert(support::create_group(&http, sim, signer).await);
    }
    let host = sim.addr().to_string();
    let requests: Vec<Vec<u8>> = groups
        .iter()
        .map(|g| support::trigger_request(&host, signer, g))
        .collect();
    let warm = format!("GET /trade-api/v2/exchange/status HTTP/1.1\r\nhost: {host}\r\n\r\n");
    let mut buf = [0u8; 4096];
    let mut sockets: Vec<std::net::TcpStream> = (0..GROUPS)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(sim.addr()).unwrap();
            s.set_nodelay(true).unwrap();
            s.write_all(warm.as_bytes()).unwrap();
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            s
        })
        .collect();
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        for (s, r) in sockets.iter_mut().zip(&requests) {
            s.write_all(r).unwrap();
        }
        sockets
    });
    all_triggered(ws, groups).await;
    let took = t0.elapsed();
    let sockets = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    for mut s in sockets {
        let n = s.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    took
}
