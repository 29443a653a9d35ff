//! The cost of firing a Trigger, armed (pre-signed) and unarmed (signed at fire time), through
//! the project's REST client against the simulator on loopback over a warm connection.
//!
//! `cargo bench --bench trigger_fire`. Prints client-side latency percentiles for one Trigger at
//! a time, the CPU spent at fire time on the signature, and the wall time to Trigger 100 groups
//! at once (a kill). Client and simulator share the machine's two cores.

mod support;

use std::time::Duration;

use kalshi_riskd::kalshi::auth::now_ms;
use kalshi_riskd::kalshi::{GroupAddress, GroupChannel, RestClient, RestConfig};
use kalshi_riskd::risk::Contracts;
use tokio::time::Instant;

const N: usize = 2000;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut d: Vec<Duration>) {
    d.sort();
    let mean = d.iter().sum::<Duration>() / d.len() as u32;
    println!(
        "{name:<28} p50 {:>8.1?}  p99 {:>8.1?}  mean {:>8.1?}  (n={})",
        pct(&d, 0.5),
        pct(&d, 0.99),
        mean,
        d.len()
    );
}

async fn fire_one_by_one(api: &RestClient, g: &GroupAddress, armed: bool) -> Vec<Duration> {
    let mut out = Vec::with_capacity(N);
    for i in 0..N {
        if armed && i % 100 == 0 {
            api.armory().refresh(16); // outside the timed section, as the refresher does
        }
        let t0 = Instant::now();
        api.trigger_group(g).await.expect("trigger");
        out.push(t0.elapsed());
    }
    out
}

async fn kill(api: &RestClient, groups: &[GroupAddress]) -> Duration {
    let t0 = Instant::now();
    let fired = groups.iter().map(|g| api.trigger_group(g));
    for r in futures_util::future::join_all(fired).await {
        r.expect("trigger");
    }
    t0.elapsed()
}

fn main() {
    let rt = support::runtime();
    rt.block_on(async {
        let (sim, signer, _key) = support::simulator().await;
        let mut cfg = RestConfig::new(sim.rest_url());
        cfg.write_per_s = None;
        cfg.read_per_s = None;
        let api = RestClient::new(&cfg, signer.clone()).unwrap();
        let g = api
            .create_group(0, 0, Contracts::from_whole(1000))
            .await
            .unwrap();

        // Fire-time CPU: what an unarmed Trigger must compute before its first byte.
        let path = "/trade-api/v2/portfolio/order_groups/x/trigger";
        let t0 = Instant::now();
        for _ in 0..200 {
            std::hint::black_box(signer.sign(now_ms(), "PUT", path));
        }
        println!(
            "RSA-PSS signature (fire-time CPU of an unarmed Trigger): {:.0?} each",
            t0.elapsed() / 200
        );
        api.armory().arm(&g).unwrap();
        api.armory().refresh(16);
        let t0 = Instant::now();
        for _ in 0..200_000 {
            std::hint::black_box(api.armory().take(&g, now_ms()));
        }
        println!(
            "armed lookup (fire-time CPU of an armed Trigger):    {:.0?} each",
            t0.elapsed() / 200_000
        );
        api.armory().disarm(&g);

        fire_one_by_one(&api, &g, false).await; // warm up
        report(
            "one Trigger, unarmed",
            fire_one_by_one(&api, &g, false).await,
        );
        api.armory().arm(&g).unwrap();
        report("one Trigger, armed", fire_one_by_one(&api, &g, true).await);
        api.armory().disarm(&g);

        let mut groups = Vec::new();
        for _ in 0..100 {
            groups.push(
                api.create_group(0, 0, Contracts::from_whole(1000))
                    .await
                    .unwrap(),
            );
        }
        kill(&api, &groups).await; // warm the pool
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for _ in 0..20 {
            cold.push(kill(&api, &groups).await);
        }
        for g in &groups {
            api.armory().arm(g).unwrap();
        }
        for _ in 0..20 {
            api.armory().refresh(128);
            warm.push(kill(&api, &groups).await);
        }
        report("kill 100 groups, unarmed", cold);
        report("kill 100 groups, armed", warm);
        sim.shutdown().await;
    });
}
