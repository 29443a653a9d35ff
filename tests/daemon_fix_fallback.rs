//! A Trigger never waits on one channel: with `exchange.control = "fix"`, the real binary still
//! starts, guards and kills over REST when the FIX acceptor refuses connections or goes silent.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{Daemon, group_of, sample, setup, start, stop, use_fix};
use support::{PATIENCE, TestSim};
use tokio::time::Instant;

const RUNAWAY: &str = "[group]\ncontracts_limit = 100\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = 20\n";
const CALM: &str = "[group]\ncontracts_limit = 100\n";

async fn scrape(addr: &str) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A breach of `runaway`'s limit: the daemon's own figure from decision to every group
/// confirmed, in ms.
async fn breach_confirmed_ms(t: &TestSim, d: &Daemon, group: &str) -> i64 {
    t.order(Some(group), "21").await;
    let state = d.until_state("a confirmed trip", |s| {
        s["strategies"]["runaway"]["trip"]["confirmed_ms"].is_i64()
    });
    let trip = &state["strategies"]["runaway"]["trip"];
    trip["confirmed_ms"].as_i64().unwrap() - trip["at_ms"].as_i64().unwrap()
}

/// SIGUSR1, then how long until every group in `groups` shows triggered on the exchange.
async fn kill_takes(t: &TestSim, d: &Daemon, groups: &[String]) -> Duration {
    let started = Instant::now();
    d.signal("-USR1");
    for g in groups {
        while t.group_state(g).await["triggered"] != true {
            assert!(
                started.elapsed() < PATIENCE,
                "{g} never triggered:\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_acceptor_that_refuses_connections_does_not_stop_the_daemon_guarding() {
    let t = TestSim::start().await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fix_addr = format!("tcp://{}", free.local_addr().unwrap());
    drop(free);
    let dir = setup(
        &t,
        &[("runaway.toml", RUNAWAY), ("calm.toml", CALM)],
        "\n[kill]\nscope = \"managed\"\n",
    );
    use_fix(dir.path(), &fix_addr);
    // The start does not wait for FIX: groups are prepared over REST.
    let d = start(dir.path()).await;
    let state = d.state();
    let (runaway, calm) = (group_of(&state, "runaway"), group_of(&state, "calm"));
    let took = breach_confirmed_ms(&t, &d, &runaway).await;
    assert!(
        took < 1_000,
        "breach confirmed {took} ms after the decision"
    );
    let took = kill_takes(&t, &d, &[calm]).await;
    assert!(took < Duration::from_secs(1), "kill took {took:?}");
    let addr = d.metrics_addr();
    let s = scrape(&addr).await;
    assert_eq!(sample(&s, "kalshi_riskd_fix_session_configured"), Some(1.0));
    assert_eq!(sample(&s, "kalshi_riskd_fix_session_up"), Some(0.0), "{s}");
    assert!(
        sample(
            &s,
            r#"kalshi_riskd_trigger_confirmations_total{channel="rest"}"#
        )
        .is_some_and(|n| n >= 2.0),
        "{s}"
    );
    assert!(
        d.log().contains("no FIX logon yet"),
        "the start says why:\n{}",
        d.log()
    );
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_fix_session_does_not_hold_up_a_trigger_or_a_kill() {
    let t = TestSim::start().await;
    let fix_addr = t.start_fix(false).await;
    let dir = setup(
        &t,
        &[("runaway.toml", RUNAWAY), ("calm.toml", CALM)],
        "\n[kill]\nscope = \"managed\"\n",
    );
    use_fix(dir.path(), &fix_addr);
    let d = start(dir.path()).await;
    let addr = d.metrics_addr();
    let state = d.state();
    let (runaway, calm) = (group_of(&state, "runaway"), group_of(&state, "calm"));
    let deadline = Instant::now() + PATIENCE;
    while sample(&scrape(&addr).await, "kalshi_riskd_fix_session_up") != Some(1.0) {
        assert!(Instant::now() < deadline, "never logged on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The acceptor goes silent: logged on, but nothing is answered.
    t.set_faults(json!({"fix_silent": true})).await;
    let took = breach_confirmed_ms(&t, &d, &runaway).await;
    assert!(
        took < 1_000,
        "breach confirmed {took} ms after the decision"
    );
    let took = kill_takes(&t, &d, &[calm]).await;
    assert!(took < Duration::from_secs(1), "kill took {took:?}");
    let s = scrape(&addr).await;
    assert!(
        sample(
            &s,
            r#"kalshi_riskd_trigger_confirmations_total{channel="rest"}"#
        )
        .is_some_and(|n| n >= 2.0),
        "{s}"
    );
    let (_, out, _) = {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
            .args(["status", "--json", "--config"])
            .arg(dir.path().join("kalshi-riskd.toml"))
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["control"]["channel"], "fix", "{status}");
    t.set_faults(json!({})).await;
    assert_eq!(stop(d).await, Some(0));
}
