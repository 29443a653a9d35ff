//! No fill left uncounted, with the real binary and the simulator: fills made while the stream
//! is down are read back from `GET /portfolio/fills` once it returns (and a breach among them
//! trips); windows survive a clean restart and a `kill -9`; a start that cannot read the
//! exchange's fills does not pretend its windows are empty.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::TestSim;
use support::daemon::{Daemon, group_of, setup, start, stop};

const RUNAWAY: &str = "[group]\ncontracts_limit = 100\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = 20\n";
const DAILY: &str = "[group]\ncontracts_limit = 1000\n[[limit]]\nname = \"daily\"\nwindow = \"24h\"\nmax_contracts = 100\n";

/// `kalshi-riskd status --json`, the named strategy's named limit's contracts.
fn used(dir: &Path, strategy: &str, limit: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
        .args(["status", "--json", "--config"])
        .arg(dir.join("kalshi-riskd.toml"))
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let s = body["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == strategy)
        .unwrap()
        .clone();
    s["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == limit)
        .unwrap()["contracts"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn scrape(d: &Daemon) -> String {
    reqwest::get(format!("http://{}/metrics", d.metrics_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_made_while_the_stream_is_down_are_counted_when_it_returns() {
    let t = TestSim::start().await;
    let dir = setup(
        &t,
        &[("runaway.toml", RUNAWAY)],
        "\n[stream]\nblind_after = \"1s\"\n",
    );
    let d = start(dir.path()).await;
    let g = group_of(&d.state(), "runaway");
    // Or the read that follows the start would count the fill below.
    d.until_read_after_start();
    // The stream goes silent: what is published meanwhile never reaches the daemon.
    t.set_faults(json!({"ws_silent": true})).await;
    t.order(Some(&g), "21").await;
    d.until_audit("blind", |v| v["event"] == "blind");
    assert_eq!(d.state()["strategies"]["runaway"]["state"], "active");
    // It comes back: the fill is read back, counted at its exchange time, and trips.
    t.set_faults(json!({})).await;
    let state = d.until_state("tripped from the backfill", |s| {
        s["strategies"]["runaway"]["state"] == "tripped"
    });
    let trip = &state["strategies"]["runaway"]["trip"];
    assert_eq!(trip["reason"], "limit", "{state}");
    assert_eq!(trip["evidence"]["contracts"], "21.00", "{state}");
    d.until_audit("the backfill", |v| {
        v["event"] == "backfill"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("after a gap") && r.contains("1 not seen before"))
    });
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        let m = scrape(&d).await;
        if m.lines()
            .any(|l| l == "kalshi_riskd_fills_backfilled_total 1")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_long_window_is_the_same_after_a_clean_restart_and_after_a_kill_9() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("daily.toml", DAILY)], "");
    let p = dir.path().to_owned();
    let d = start(&p).await;
    let g = group_of(&d.state(), "daily");
    t.order(Some(&g), "90").await;
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    while used(&p, "daily", "daily") != "90.00" {
        assert!(tokio::time::Instant::now() < deadline, "never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stop(d).await, Some(0));
    let d = start(&p).await;
    assert_eq!(used(&p, "daily", "daily"), "90.00", "after a clean restart");
    d.crash();
    let d = start(&p).await;
    assert_eq!(used(&p, "daily", "daily"), "90.00", "after a kill -9");
    assert!(
        d.audit()
            .iter()
            .any(|v| v["event"] == "backfill" && v["reason"].as_str().unwrap().starts_with("start")),
        "the rebuild is audited"
    );
    // Still one window: 11 more contracts breach it.
    t.order(Some(&g), "11").await;
    let state = d.until_state("tripped", |s| {
        s["strategies"]["daily"]["state"] == "tripped"
    });
    assert_eq!(
        state["strategies"]["daily"]["trip"]["evidence"]["contracts"],
        "101.00"
    );
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_cannot_read_the_fills_leaves_strategies_unknown_and_says_why() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("daily.toml", DAILY)], "");
    let p = dir.path().to_owned();
    t.set_faults(json!({"error_rate": 1.0, "error_path": "/trade-api/v2/portfolio/fills"}))
        .await;
    let d = start(&p).await;
    // READY comes once the decision is made; its record follows on the writer thread.
    let state = d.until_state("unknown", |s| {
        s["strategies"]["daily"]["state"] == "unknown"
    });
    let failed = d.until_audit("the failure", |v| v["event"] == "backfill_failed");
    assert!(
        failed["reason"].as_str().unwrap().contains("at start"),
        "{failed}"
    );
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        let m = scrape(&d).await;
        if m.lines()
            .any(|l| l.starts_with("kalshi_riskd_backfill_failures_total ") && !l.ends_with(" 0"))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.set_faults(json!({})).await;
    // Still guarded: a breach trips.
    let g = group_of(&state, "daily");
    t.order(Some(&g), "101").await;
    d.until_state("tripped", |s| {
        s["strategies"]["daily"]["state"] == "tripped"
    });
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_basic_tiers_budget_a_trigger_does_not_wait_for_a_long_backfill() {
    let t = TestSim::start().await;
    let dir = setup(
        &t,
        &[
            ("runaway.toml", RUNAWAY),
            ("calm.toml", "[group]\ncontracts_limit = 100\n"),
        ],
        "\n[stream]\nblind_after = \"1s\"\n",
    );
    let cfg = dir.path().join("kalshi-riskd.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("write_budget_per_s = 100", "write_budget_per_s = 10"),
    )
    .unwrap();
    let d = start(dir.path()).await;
    let state = d.state();
    let (runaway, calm) = (group_of(&state, "runaway"), group_of(&state, "calm"));
    // Fills the stream misses, then a backfill that takes the exchange 4 s to answer.
    t.set_faults(json!({"ws_silent": true})).await;
    t.order(Some(&calm), "3").await;
    d.until_audit("blind", |v| v["event"] == "blind");
    t.set_faults(json!({"latency_ms": 4000, "latency_path": "/trade-api/v2/portfolio/fills"}))
        .await;
    // Back: the backfill is under way when a streamed breach arrives.
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    while d.log().matches("user stream connected").count() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reconnected:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.order(Some(&runaway), "21").await;
    let state = d.until_state("a confirmed trip", |s| {
        s["strategies"]["runaway"]["trip"]["confirmed_ms"].is_i64()
    });
    let trip = &state["strategies"]["runaway"]["trip"];
    let took = trip["confirmed_ms"].as_i64().unwrap() - trip["at_ms"].as_i64().unwrap();
    assert!(took < 1_000, "the Trigger waited {took} ms");
    assert!(
        !d.audit()
            .iter()
            .any(|v| v["event"] == "backfill"
                && v["reason"].as_str().unwrap().contains("after a gap")),
        "the backfill was still running when the Trigger was confirmed"
    );
    // The backfill lands afterwards and counts the missed fill.
    d.until_audit("the backfill", |v| {
        v["event"] == "backfill" && v["reason"].as_str().unwrap().contains("after a gap")
    });
    t.set_faults(json!({})).await;
    assert_eq!(stop(d).await, Some(0));
}

/// Found by the chaos suite: a stream that drops fills without ever going quiet long enough to
/// be blind (the `fill` channel has no sequence numbers to show the loss) must not lose them
/// for good. The periodic sweep reads the recent fills back and counts the missing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_the_stream_silently_dropped_is_found_by_the_periodic_sweep() {
    let t = TestSim::start().await;
    let dir = setup(
        &t,
        &[("runaway.toml", RUNAWAY)],
        "\n[stream]\nblind_after = \"5s\"\n",
    );
    let d = start(dir.path()).await;
    let g = group_of(&d.state(), "runaway");
    d.until_read_after_start();
    // Half a second of silence, far short of blind: the breaching fill is published into it.
    t.set_faults(json!({"ws_silent": true})).await;
    t.order(Some(&g), "21").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.set_faults(json!({})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = d.state();
        if state["strategies"]["runaway"]["state"] == "tripped" {
            assert_eq!(
                state["strategies"]["runaway"]["trip"]["evidence"]["contracts"],
                "21.00"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped fill was never counted: {state}\n{:#?}",
            d.audit()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let audit = d.audit();
    assert!(
        audit.iter().any(|v| v["event"] == "backfill"
            && v["reason"].as_str().is_some_and(
                |r| r.starts_with("periodic sweep") && r.contains("1 not seen before")
            )),
        "{audit:#?}"
    );
    assert!(
        !audit.iter().any(|v| v["event"] == "blind"),
        "never blind: the sweep found it"
    );
    assert_eq!(stop(d).await, Some(0));
}
