//! What the daemon costs while nothing happens, with 100 and 1,000 strategies (one group each):
//! the time to `READY=1` (a first start that creates the groups, then a restart that finds
//! them; each with the start-up read of fills), then, in steady state (the kill set armed,
//! connections warm), its CPU over two whole rounds of re-signing the armed Triggers (from
//! `/proc/<pid>/stat`, in percent of one core, and the busiest quarter-second of it) and its
//! resident memory.
//!
//! `cargo bench --bench idle_cost`. The simulator runs in the bench's process; only the
//! daemon's own process is measured.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{start_daemon_within, write_config};
use tokio::time::Instant;

/// How long the idle CPU is measured: two whole rounds of re-signing the armed Triggers
/// (signed 25 s ahead, each re-signed every 26.5 s), so that their cost is counted in full.
const IDLE_WINDOW: Duration = Duration::from_millis(53_000);

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are the 14th and 15th fields of the whole line: 12th and 13th here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// One of `/proc/<pid>/status`'s memory lines (`VmRSS`, `RssAnon`, `RssFile`), in KiB.
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    let rt = support::runtime();
    // Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    rt.block_on(async {
        let (sim, _signer, key) = support::simulator().await;
        // `IDLE_COST_SIZES=1000` measures one size only.
        let sizes: Vec<usize> = std::env::var("IDLE_COST_SIZES")
            .map(|v| v.split(',').map(|n| n.trim().parse().expect("IDLE_COST_SIZES: numbers")).collect())
            .unwrap_or_else(|_| vec![100, 1_000]);
        for n in sizes {
            let dir = tempfile::tempdir().unwrap();
            let policies: Vec<(String, String)> = (0..n)
                .map(|i| {
                    (
                        format!("s{i:04}.toml"),
                        "[group]\ncontracts_limit = 1000\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = 500\n[[limit]]\nname = \"hour\"\nwindow = \"1h\"\nmax_contracts = 5000\n".to_owned(),
                    )
                })
                .collect();
            write_config(dir.path(), &sim, &key.private_pem, &policies);
            let start = |patience| {
                let dir = dir.path().to_owned();
                tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let d = start_daemon_within(&dir, patience);
                    (d, started.elapsed())
                })
            };
            // The first start creates every group; the second (a restart) finds them.
            let (first, created) = start(Duration::from_secs(900)).await.unwrap();
            first.stop();
            let (daemon, ready) = start(Duration::from_secs(60)).await.unwrap();
            let pid = daemon.id();
            // Steady state: the kill set armed, connections warm, a sweep or two done.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let (t0, c0) = (Instant::now(), cpu_ticks(pid));
            // Sampled every 250 ms: the busiest quarter-second shows whether re-signing comes
            // in bursts.
            let (mut last, mut busiest) = (c0, 0);
            while t0.elapsed() < IDLE_WINDOW {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = cpu_ticks(pid);
                busiest = busiest.max(now - last);
                last = now;
            }
            let (secs, ticks) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid) - c0);
            let mib = |key| status_kib(pid, key) as f64 / 1024.0;
            println!(
                "{n} strategies: READY in {created:.2?} creating the groups, {ready:.2?} restarting; idle CPU {:.2} % of a core over {secs:.1} s (the busiest 250 ms: {:.0} ms); RSS {:.1} MiB ({:.1} anonymous, {:.1} the binary's and other files' pages)",
                ticks as f64 / hz / secs * 100.0,
                busiest as f64 / hz * 1000.0,
                mib("VmRSS"),
                mib("RssAnon"),
                mib("RssFile") + mib("RssShmem"),
            );
            daemon.stop();
        }
        sim.shutdown().await;
    });
}
