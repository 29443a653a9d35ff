//! `kalshi-riskd demo`: the whole product in one command, on a throwaway simulated exchange.
//!
//! It starts the simulator in-process with a freshly generated key, runs the real daemon on
//! the example policies embedded from `config/policies/` (so it works from any directory),
//! and drives two synthetic strategies through signed REST orders: `eth-arb` trades calmly
//! inside its limits; `btc-daily-mm` runs away, and the daemon trips it before the exchange's
//! own group limit would. Then it pulls the kill switch through the admin API, the way an
//! operator would, and prints a summary taken from the exchange's side. A live table redraws
//! on a terminal; otherwise it prints plain lines.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admin::api::Status;
use crate::admin::{AdminClient, status_table};
use crate::kalshi::Signer;
use crate::kalshi::auth::{generate_key, public_key_der_from_pem};
use crate::risk::guard::GuardState;
use crate::risk::{Contracts, Evidence};
use crate::sim::{KeyRegistry, SimConfig, Simulator, Tier};

const RUNAWAY_POLICY: &str = include_str!("../config/policies/btc-daily-mm.toml");
const CALM_POLICY: &str = include_str!("../config/policies/eth-arb.toml");
const RUNAWAY: &str = "btc-daily-mm";
const CALM: &str = "eth-arb";

#[derive(Default)]
struct Tally {
    filled: AtomicU64,
    rejected: AtomicU64,
}

/// One synthetic strategy: `count` contracts every `every` into `group`, until `stop`.
async fn trade(
    http: reqwest::Client,
    base: String,
    signer: Signer,
    order: Value,
    every: Duration,
    tally: Arc<Tally>,
    stop: CancellationToken,
) {
    let path = "/trade-api/v2/portfolio/events/orders";
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut req = http.post(format!("{base}{path}")).json(&order);
        for (k, v) in signer.sign_now("POST", path).pairs() {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => tally.filled.fetch_add(1, Ordering::Relaxed),
            _ => tally.rejected.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn write_setup(
    dir: &Path,
    sim: &Simulator,
    key_id: &str,
    private_pem: &str,
) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::create_dir_all(dir.join("policies"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("key.pem"))?
        .write_all(private_pem.as_bytes())?;
    std::fs::write(dir.join("policies/btc-daily-mm.toml"), RUNAWAY_POLICY)?;
    std::fs::write(dir.join("policies/eth-arb.toml"), CALM_POLICY)?;
    let path = dir.join("kalshi-riskd.toml");
    std::fs::write(
        &path,
        format!(
            "[exchange]\nenvironment = \"sim\"\nrest_url = \"{}\"\nws_url = \"{}\"\napi_key_id = \"{key_id}\"\n\
             private_key_path = \"key.pem\"\nwrite_budget_per_s = 30\n\n[policies]\ndir = \"policies\"\n\n\
             [kill]\nscope = \"account\"\n\n[http]\nlisten = \"127.0.0.1:0\"\nadmin_socket = \"admin.sock\"\n\n\
             [state]\ndir = \"state\"\n\n[log]\nformat = \"json\"\n",
            sim.rest_url(),
            sim.ws_url()
        ),
    )?;
    Ok(path)
}

fn line_for(status: &Status, elapsed: Duration) -> String {
    let parts: Vec<String> = status
        .strategies
        .iter()
        .map(|s| {
            let fast = s
                .limits
                .iter()
                .find(|l| l.name == "fast")
                .map(|l| {
                    let max = l.max_contracts.map_or("-".to_owned(), |m| m.to_string());
                    format!("fast {}/{max}", l.contracts)
                })
                .unwrap_or_default();
            format!("{} {} {}", s.name, s.state.as_str(), fast)
        })
        .collect();
    format!(
        "t={:>4.1}s  kill switch {}  |  {}",
        elapsed.as_secs_f64(),
        if status.kill.is_some() {
            "ENGAGED"
        } else {
            "off"
        },
        parts.join("  |  ")
    )
}

/// Runs the demo for `duration` and returns the process exit code.
pub fn run(duration: Duration) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kalshi-riskd demo: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(demo(duration)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kalshi-riskd demo: {e}");
            ExitCode::from(1)
        }
    }
}

async fn demo(duration: Duration) -> Result<(), String> {
    let tty = std::io::stdout().is_terminal();
    let dir = std::env::temp_dir().join(format!("kalshi-riskd-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = generate_key().map_err(|e| e.to_string())?;
    let key_id = crate::sim::engine::new_id();
    let mut keys = KeyRegistry::default();
    keys.register(
        &key_id,
        &public_key_der_from_pem(key.public_pem.as_bytes(), "demo key")
            .map_err(|e| e.to_string())?,
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let sim = Simulator::start(
        SimConfig {
            tier: Tier::Advanced,
            keys,
            ..SimConfig::default()
        },
        listener,
    )
    .await
    .map_err(|e| e.to_string())?;
    let config = write_setup(&dir, &sim, &key_id, &key.private_pem)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let log = std::fs::File::create(dir.join("daemon.log")).map_err(|e| e.to_string())?;
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::sync::Mutex::new(log))
        .try_init();
    let loaded = crate::config::load(&config, Vec::new()).map_err(|e| e.to_string())?;
    let signer = Signer::from_pem(&key_id, key.private_pem.as_bytes(), "demo key")
        .map_err(|e| e.to_string())?;

    println!(
        "kalshi-riskd demo: a simulated Kalshi exchange on {}, the daemon on two strategies:",
        sim.addr()
    );
    println!("  {CALM:<14} calm: 3 contracts every 0.5 s (limit fast: 150 contracts per 15 s)");
    println!(
        "  {RUNAWAY:<14} runaway: 40 contracts every 0.2 s (daemon limit fast: 400 per 15 s; the exchange's group limit: 500)"
    );
    println!(
        "  the kill switch is pulled at {:.0} s; the demo ends at {:.0} s\n",
        duration.as_secs_f64() * 0.6,
        duration.as_secs_f64()
    );

    let stop_daemon = CancellationToken::new();
    let daemon = {
        let (config, stop) = (config.clone(), stop_daemon.clone());
        let signer = signer.clone();
        tokio::spawn(async move { crate::daemon::run(&config, loaded, signer, stop).await })
    };
    let sock = dir.join("admin.sock");
    let admin = AdminClient::new(sock, crate::admin::client::DEFAULT_TIMEOUT);
    let started = Instant::now();
    let groups = loop {
        if daemon.is_finished() {
            return Err(format!(
                "the daemon stopped during start; see {}",
                dir.join("daemon.log").display()
            ));
        }
        if let Ok(g) = admin.groups().await
            && g.strategies.get(CALM).is_some_and(|a| !a.is_empty())
        {
            break g;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("the daemon did not come up within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let group = |s: &str| {
        groups
            .strategies
            .get(s)
            .and_then(|gs| gs.first())
            .map(|g| g.id.as_str().to_owned())
            .unwrap_or_default()
    };
    let order = |ticker: &str, count: &str, group: String, subaccount: i64| {
        json!({"ticker": ticker, "side": "bid", "count": count, "price": "0.45",
               "time_in_force": "good_till_canceled", "self_trade_prevention_type": "maker",
               "order_group_id": group, "subaccount": subaccount})
    };
    let http = reqwest::Client::new();
    let base = format!("http://{}", sim.addr());
    let traders = CancellationToken::new();
    let (calm, runaway) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    tokio::spawn(trade(
        http.clone(),
        base.clone(),
        signer.clone(),
        order("KXETH-DEMO", "3", group(CALM), 1),
        Duration::from_millis(500),
        calm.clone(),
        traders.clone(),
    ));
    tokio::spawn(trade(
        http.clone(),
        base.clone(),
        signer.clone(),
        order("KXBTC-DEMO", "40", group(RUNAWAY), 0),
        Duration::from_millis(200),
        runaway.clone(),
        traders.clone(),
    ));

    let t0 = Instant::now();
    let t0_ms = crate::kalshi::auth::now_ms();
    let kill_at = duration.mul_f64(0.6);
    let mut killed_at = None;
    let mut tripped_at = None;
    let mut tick = tokio::time::interval(Duration::from_millis(if tty { 250 } else { 1000 }));
    while t0.elapsed() < duration {
        tick.tick().await;
        if killed_at.is_none() && t0.elapsed() >= kill_at {
            admin
                .kill()
                .await
                .map_err(|e| format!("kill refused: {e}"))?;
            killed_at = Some(t0.elapsed());
        }
        let status = admin.status().await?;
        let runaway_tripped = status
            .strategy(RUNAWAY)
            .is_some_and(|s| s.state == GuardState::Tripped);
        if runaway_tripped && tripped_at.is_none() {
            tripped_at = Some(t0.elapsed());
        }
        if tty {
            print!("\x1b[2J\x1b[H");
            println!(
                "kalshi-riskd demo  t = {:.1} s of {:.0} s   (press Ctrl-C to stop early)\n",
                t0.elapsed().as_secs_f64(),
                duration.as_secs_f64()
            );
            print!("{}", status_table(&status));
            println!(
                "\norders  {CALM}: {} filled, {} rejected   {RUNAWAY}: {} filled, {} rejected",
                calm.filled.load(Ordering::Relaxed),
                calm.rejected.load(Ordering::Relaxed),
                runaway.filled.load(Ordering::Relaxed),
                runaway.rejected.load(Ordering::Relaxed)
            );
        } else {
            println!("{}", line_for(&status, t0.elapsed()));
        }
        let _ = std::io::stdout().flush();
    }
    traders.cancel();
    let status = admin.status().await?;
    let exchange = sim.state().groups();
    stop_daemon.cancel();
    match daemon.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("daemon: {e}")),
        Err(e) => return Err(format!("daemon task: {e}")),
    }
    sim.shutdown().await;

    println!("\nSummary");
    match (
        status.strategy(RUNAWAY).and_then(|s| s.trip.as_ref()),
        tripped_at,
    ) {
        (Some(trip), Some(_)) => {
            let figure = |f: fn(&Evidence) -> Option<Contracts>| {
                trip.evidence
                    .as_ref()
                    .and_then(f)
                    .map_or("?".to_owned(), |c| c.to_string())
            };
            let at = Duration::from_millis((trip.at_ms - t0_ms).max(0) as u64);
            println!(
                "- {RUNAWAY}: tripped by the daemon about {:.1} s in: {} ({} of {} contracts in 15 s). Its group's\n  exchange-side limit is 500, so the daemon acted before the exchange would have. Orders: {} filled, {} rejected after the trip.",
                at.as_secs_f64(),
                trip.detail,
                figure(|e| Some(e.contracts)),
                figure(|e| e.max_contracts),
                runaway.filled.load(Ordering::Relaxed),
                runaway.rejected.load(Ordering::Relaxed)
            );
        }
        _ => println!("- {RUNAWAY}: did NOT trip (unexpected; see the log)"),
    }
    println!(
        "- {CALM}: stayed inside its limits until the kill switch; orders: {} filled, {} rejected after the kill.",
        calm.filled.load(Ordering::Relaxed),
        calm.rejected.load(Ordering::Relaxed)
    );
    if let Some(at) = killed_at {
        println!(
            "- kill switch pulled at {:.1} s through the admin API: every group on the account triggered.",
            at.as_secs_f64()
        );
    }
    println!("- the exchange's own view of each group (it never shows this over REST):");
    for g in &exchange {
        println!(
            "    {}  subaccount {}  exchange {}  limit {:>7}  15 s volume {:>7}  {}",
            g.id,
            g.subaccount,
            g.exchange_index,
            g.contracts_limit_fp,
            g.window_contracts_fp,
            if g.triggered { "TRIGGERED" } else { "active" }
        );
    }
    println!(
        "- the daemon's log, state.json and audit.jsonl: {}",
        dir.display()
    );
    let ok = tripped_at.is_some() && exchange.iter().all(|g| g.triggered);
    if ok {
        Ok(())
    } else {
        Err("the demo did not reach its expected end state; see the log".into())
    }
}
