//! The real `kalshi-riskd run` against the simulator, where a crash, a reload or a slow
//! exchange used to leave a strategy unguarded or an account with a second group:
//! - after a `kill -9` every strategy is Unknown, and a breach while Unknown trips it;
//! - a group created but not yet recorded when the process dies is adopted at the next start,
//!   never created again (scripted at start and on reload, then at random moments);
//! - a reload never clears a trip: a removed strategy that comes back comes back tripped, with
//!   its group, across restarts; a reload that would leave no strategy is refused;
//! - a reload's exchange work runs outside the risk loop: a breach during a slow reload trips
//!   at once and the watchdog keeps its rhythm;
//! - SIGTERM during a slow start-up stops the daemon there (exit 0), unless a kill was asked
//!   for (SIGUSR1, the admin socket): then the kill is engaged and persisted first.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::{Value, json};
use support::daemon::{Daemon, cli, group_of, setup, start, stop};
use support::{PATIENCE, TestSim};

const RUNAWAY: &str = "[group]\ncontracts_limit = 100\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = 20\n";
const CALM: &str = "[group]\ncontracts_limit = 100\n";

/// Every group on the simulated exchange.
async fn exchange_groups(t: &TestSim) -> Vec<Value> {
    let (status, body) = t.control("GET", "/groups", None).await;
    assert!(status.is_success(), "{body}");
    body.as_array().unwrap().clone()
}

/// A resting order of `count` in `group` (its ticker has no liquidity), to fill later through
/// `/_sim/` so the fill's moment is the test's to choose.
async fn resting_order(t: &TestSim, group: &str, count: &str) -> String {
    let (status, body) = t
        .control(
            "POST",
            "/liquidity",
            Some(json!({"ticker": "KXREST", "contracts": "0"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = t.order_in("KXREST", Some(group), count, 0).await;
    assert!(status.is_success(), "{body}");
    body["order_id"].as_str().unwrap().to_owned()
}

async fn fill(t: &TestSim, order: &str, count: &str) {
    let (status, body) = t
        .control(
            "POST",
            &format!("/orders/{order}/fill"),
            Some(json!({ "count": count })),
        )
        .await;
    assert!(status.is_success(), "{body}");
}

/// Waits (bounded) until `f` holds for the daemon's log.
fn until_log(d: &Daemon, what: &str, f: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f(&d.log()) {
        assert!(
            Instant::now() < deadline,
            "log never showed {what}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

async fn reload(d: Daemon) -> Daemon {
    tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.signal("-HUP");
        d.wait_notify(&["RELOADING=1", "MONOTONIC_USEC="]);
        d.wait_notify(&["READY=1"]);
        d
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_9_a_breach_while_unknown_trips() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY)], "");
    let d = start(dir.path()).await;
    let g = group_of(&d.state(), "runaway");
    d.crash();
    let d = start(dir.path()).await;
    assert_eq!(d.state()["strategies"]["runaway"]["state"], "unknown");
    // 42 contracts against the daemon's 20 (the exchange's own limit is 100).
    t.order(Some(&g), "42").await;
    let state = d.until_state("tripped while unknown", |s| {
        s["strategies"]["runaway"]["state"] == "tripped"
    });
    let trip = &state["strategies"]["runaway"]["trip"];
    assert_eq!(trip["reason"], "limit", "{state}");
    assert_eq!(trip["evidence"]["contracts"], "42.00", "{state}");
    let deadline = Instant::now() + PATIENCE;
    while t.group_state(&g).await["triggered"] != true {
        assert!(Instant::now() < deadline, "never triggered:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.until_audit("the trip", |v| {
        v["event"] == "trip" && v["strategy"] == "runaway"
    });
    assert_eq!(stop(d).await, Some(0));
}

/// Every create is applied and then answered 500, and every answer takes `latency_ms`: a
/// create's outcome is unknown and the daemon is settling it by listing when it is killed.
fn lost_creates(latency_ms: u64) -> Value {
    json!({
        "error_rate": 1.0,
        "error_path": "/trade-api/v2/portfolio/order_groups/create",
        "error_after_apply": true,
        "latency_ms": latency_ms,
    })
}

const SETTLING: &str = "order-group create outcome unknown; settling by listing";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_created_just_before_a_crash_at_start_is_adopted_not_created_again() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    t.set_faults(lost_creates(300)).await;
    let d = Daemon::spawn(dir.path(), &[]);
    until_log(&d, "a create in doubt", |l| l.contains(SETTLING));
    d.crash();
    assert_eq!(exchange_groups(&t).await.len(), 1, "the create landed");
    let intents: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/intents.json")).unwrap())
            .unwrap();
    assert_eq!(intents["intents"][0]["strategy"], "calm", "{intents}");

    t.set_faults(json!({})).await;
    let d = start(dir.path()).await;
    let groups = exchange_groups(&t).await;
    assert_eq!(groups.len(), 1, "no second group: {groups:?}");
    assert_eq!(
        group_of(&d.state(), "calm"),
        groups[0]["id"].as_str().unwrap()
    );
    d.until_audit("the orphan adopted", |v| {
        v["event"] == "orphan_adopted" && v["strategy"] == "calm"
    });
    let intents: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/intents.json")).unwrap())
            .unwrap();
    assert_eq!(intents["intents"], json!([]), "settled and closed");
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_created_just_before_a_crash_in_a_reload_is_adopted_not_created_again() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    std::fs::write(
        dir.path().join("policies/fresh.toml"),
        "[group]\ncontracts_limit = 70\n",
    )
    .unwrap();
    t.set_faults(lost_creates(300)).await;
    d.signal("-HUP");
    until_log(&d, "a create in doubt", |l| l.contains(SETTLING));
    d.crash();
    assert_eq!(exchange_groups(&t).await.len(), 2, "the create landed");

    t.set_faults(json!({})).await;
    let d = start(dir.path()).await;
    let groups = exchange_groups(&t).await;
    assert_eq!(groups.len(), 2, "no second group for fresh: {groups:?}");
    let state = d.state();
    let ids: BTreeSet<&str> = groups.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert!(ids.contains(group_of(&state, "fresh").as_str()), "{state}");
    assert!(ids.contains(group_of(&state, "calm").as_str()), "{state}");
    d.until_audit("the orphan adopted", |v| {
        v["event"] == "orphan_adopted" && v["strategy"] == "fresh"
    });
    assert_eq!(stop(d).await, Some(0));
}

/// Slots per policy file: (subaccount, exchange indexes).
fn slots(policies: &[(String, String)]) -> usize {
    policies
        .iter()
        .map(|(_, text)| {
            text.lines()
                .find_map(|l| l.strip_prefix("exchange_indexes = "))
                .map_or(1, |v| v.matches(',').count() + 1)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_crashes_during_group_creation_never_leave_two_groups() {
    let t = TestSim::start().await;
    // Two strategies share a subaccount and a limit, so a settle must tell their groups apart.
    let mut policies: Vec<(String, String)> = vec![
        (
            "a.toml".into(),
            "exchange_indexes = [0, 1]\n[group]\ncontracts_limit = 100\n".into(),
        ),
        (
            "b.toml".into(),
            "exchange_indexes = [0, 1]\n[group]\ncontracts_limit = 100\n".into(),
        ),
        (
            "c.toml".into(),
            "subaccount = 3\n[group]\ncontracts_limit = 100\n".into(),
        ),
        ("d.toml".into(), "[group]\ncontracts_limit = 50\n".into()),
    ];
    let refs: Vec<(&str, &str)> = policies
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_str()))
        .collect();
    let dir = setup(&t, &refs, "");
    // Creates take effect at once and are answered 30 ms later, so a crash can land between
    // a group existing and the daemon hearing of it.
    t.set_faults(json!({"latency_ms": 30, "latency_after_apply": true}))
        .await;
    let mut rng = fastrand::Rng::with_seed(20_261_130);
    let runs = 24;
    // Each run adds a strategy with two groups to create, then kills the daemon at a random
    // moment of the start (even runs) or of a reload (odd runs).
    for run in 0..runs {
        let in_reload = run % 2 == 1;
        let d = in_reload.then(|| Daemon::spawn(dir.path(), &[]));
        let d = match d {
            Some(mut d) => {
                d = tokio::task::spawn_blocking(move || {
                    d.wait_notify(&["READY=1"]);
                    d
                })
                .await
                .unwrap();
                Some(d)
            }
            None => None,
        };
        let name = format!("r{run}.toml");
        let text = format!(
            "subaccount = {}\nexchange_indexes = [0, 2]\n[group]\ncontracts_limit = 100\n",
            run % 3
        );
        std::fs::write(dir.path().join("policies").join(&name), &text).unwrap();
        policies.push((name, text));
        let d = match d {
            Some(d) => {
                d.signal("-HUP");
                d
            }
            None => Daemon::spawn(dir.path(), &[]),
        };
        if run % 3 == 0 {
            // Aimed: the moment a new group exists on the exchange, before its answer.
            let before = exchange_groups(&t).await.len();
            let deadline = Instant::now() + Duration::from_secs(2);
            while exchange_groups(&t).await.len() == before && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        } else {
            let wait = if in_reload { 0..250 } else { 0..400 };
            tokio::time::sleep(Duration::from_millis(rng.u64(wait))).await;
        }
        d.crash();
    }
    t.set_faults(json!({})).await;
    let d = start(dir.path()).await;
    let groups = exchange_groups(&t).await;
    let state = d.state();
    let recorded: BTreeMap<String, usize> = state["strategies"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["groups"].as_array().unwrap().len()))
        .collect();
    assert_eq!(
        groups.len(),
        slots(&policies),
        "one group per (strategy, subaccount, exchange index) after {runs} crashes (half in reloads): recorded {recorded:?}\n{groups:#?}"
    );
    let named: BTreeSet<String> = state["strategies"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|s| s["groups"].as_array().unwrap().clone())
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    let on_exchange: BTreeSet<String> = groups
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(named, on_exchange, "state.json names every group, once");
    // The crashes did land between a create and its record: the daemon found and adopted
    // its own orphans (otherwise this test proved nothing).
    let audit = std::fs::read_to_string(dir.path().join("state/audit.jsonl")).unwrap();
    let adopted = audit.matches("\"orphan_adopted\"").count();
    eprintln!("{runs} crashes at random moments: {adopted} orphans adopted, 0 duplicates");
    assert!(
        adopted >= 1,
        "no crash landed between a create and its record"
    );
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_never_clears_a_trip() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY), ("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    let g = group_of(&d.state(), "runaway");
    t.order(Some(&g), "21").await;
    d.until_state("tripped", |s| {
        s["strategies"]["runaway"]["state"] == "tripped"
    });

    // Removed: retired, its trip and group remembered.
    let policy = dir.path().join("policies/runaway.toml");
    std::fs::remove_file(&policy).unwrap();
    let d = reload(d).await;
    let state = d.until_state("retired", |s| s["strategies"]["runaway"]["retired"] == true);
    assert_eq!(
        state["strategies"]["runaway"]["state"], "tripped",
        "{state}"
    );

    // A crash while it is retired forgets nothing.
    d.crash();
    let d = start(dir.path()).await;
    assert_eq!(d.state()["strategies"]["runaway"]["retired"], true);

    // Back: tripped, with the group it left with, and no reset.
    std::fs::write(&policy, RUNAWAY).unwrap();
    let d = reload(d).await;
    let state = d.until_state("back", |s| s["strategies"]["runaway"]["retired"].is_null());
    assert_eq!(
        state["strategies"]["runaway"]["state"], "tripped",
        "{state}"
    );
    assert_eq!(group_of(&state, "runaway"), g, "the group it left with");
    assert_eq!(state["strategies"]["runaway"]["trip"]["reason"], "limit");
    assert_eq!(exchange_groups(&t).await.len(), 2, "no new group");
    assert_eq!(t.group_state(&g).await["triggered"], true);
    assert!(
        !d.audit().iter().any(|v| v["event"] == "reset"),
        "no reset happened, none is audited"
    );
    let (code, out, err) = cli(dir.path(), &["status", "--json"]);
    let status: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{code:?} {err}"));
    let runaway = status["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "runaway")
        .unwrap()
        .clone();
    assert_eq!(runaway["state"], "tripped", "{status}");
    let sock = dir.path().join("admin.sock");
    let (code, groups) = kalshi_riskd::admin::request(&sock, "GET", "/v1/groups")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        groups["strategies"]["runaway"][0]["id"], g,
        "strategies are handed the group they left with: {groups}"
    );

    // A reload that would leave no strategy is refused, naming why; nothing changes.
    for f in ["runaway.toml", "calm.toml"] {
        std::fs::remove_file(dir.path().join("policies").join(f)).unwrap();
    }
    let (code, body) = kalshi_riskd::admin::request(&sock, "POST", "/v1/reload")
        .await
        .unwrap();
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("holds no enabled policy"),
        "{body}"
    );
    let refused = d.until_audit("the refused reload", |v| v["event"] == "reload_failed");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("a reload that would leave no strategy is refused"),
        "{refused}"
    );
    let state = d.state();
    assert!(state["strategies"]["calm"]["retired"].is_null(), "{state}");
    assert_eq!(state["strategies"]["runaway"]["state"], "tripped");
    assert_eq!(stop(d).await, Some(0));
}

/// Every notification the daemon sends, with when it arrived.
type Notes = Arc<Mutex<Vec<(Instant, String)>>>;

fn record_notifications(sock: UnixDatagram) -> Notes {
    let notes: Notes = Arc::default();
    let sink = notes.clone();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => sink.lock().unwrap().push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                )),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
            if Arc::strong_count(&sink) == 1 {
                return;
            }
        }
    });
    notes
}

async fn until_note(notes: &Notes, what: &str, after: usize) -> usize {
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        if let Some(i) = notes
            .lock()
            .unwrap()
            .iter()
            .skip(after)
            .position(|(_, m)| m.lines().any(|l| l == what))
        {
            return after + i;
        }
        assert!(Instant::now() < deadline, "no {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_during_a_slow_reload_trips_at_once_and_the_watchdog_keeps_its_rhythm() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY)], "");
    let d = Daemon::spawn(dir.path(), &[("WATCHDOG_USEC", "2000000")]);
    let notes = record_notifications(d.notify.try_clone().unwrap());
    let log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    until_note(&notes, "READY=1", 0).await;
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/state.json")).unwrap())
            .unwrap();
    let g = group_of(&state, "runaway");
    let order = resting_order(&t, &g, "42").await;

    // Every exchange answer now takes 3 s; the reload must list and create (two new groups).
    t.set_faults(json!({"latency_ms": 3000})).await;
    std::fs::write(
        dir.path().join("policies/fresh.toml"),
        "exchange_indexes = [0, 1]\n[group]\ncontracts_limit = 70\n",
    )
    .unwrap();
    d.signal("-HUP");
    let reloading = until_note(&notes, "RELOADING=1", 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let filled_at = Instant::now();
    fill(&t, &order, "42").await;
    // The trip is decided at once (the Trigger itself then takes the exchange's 3 s).
    let audit = || -> Vec<Value> {
        std::fs::read_to_string(dir.path().join("state/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let deadline = Instant::now() + PATIENCE;
    while !audit().iter().any(|v| v["event"] == "trip") {
        assert!(Instant::now() < deadline, "no trip:\n{}", log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let decided = filled_at.elapsed();
    while t.group_state(&g).await["triggered"] != true {
        assert!(Instant::now() < deadline, "never triggered:\n{}", log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let triggered = filled_at.elapsed();
    let events: Vec<Value> = audit();
    let trip_at = events.iter().position(|v| v["event"] == "trip").unwrap();
    let reload_at = events.iter().position(|v| v["event"] == "reload");
    assert!(
        reload_at.is_none_or(|r| r > trip_at),
        "the trip did not wait for the reload: {events:#?}"
    );
    assert!(
        decided < Duration::from_millis(1_500),
        "trip decided {decided:?} after the fill, during a reload"
    );
    // Without a reload a Trigger costs one 3 s answer; allow scheduling slack, not a reload.
    assert!(
        triggered < Duration::from_millis(5_000),
        "triggered {triggered:?} after the fill"
    );
    let ready = until_note(&notes, "READY=1", reloading).await;
    t.set_faults(json!({})).await;
    // The watchdog never paused for longer than 2 s, before, during or after the reload.
    let watchdogs: Vec<Instant> = notes.lock().unwrap()[..=ready]
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(at, _)| *at)
        .collect();
    let worst = watchdogs
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(watchdogs.len() >= 4, "{} WATCHDOG=1 seen", watchdogs.len());
    assert!(
        worst <= Duration::from_secs(2),
        "the watchdog paused {worst:?} during a slow reload"
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let state: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("state/state.json")).unwrap())
                .unwrap();
        if state["strategies"]["fresh"]["groups"]
            .as_array()
            .map(Vec::len)
            == Some(2)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload was never applied: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_write_that_fails_is_retried_shown_and_never_dropped() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY), ("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    let addr = d.metrics_addr();
    let g = group_of(&d.state(), "runaway");
    // The state file's temp name is taken by a directory: every state write fails (as on a
    // full or read-only disk), whoever runs the test.
    let blocker = dir.path().join("state/state.json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    t.order(Some(&g), "21").await;
    d.signal("-USR1");
    let deadline = Instant::now() + PATIENCE;
    let readyz = loop {
        let resp = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
        let (code, text) = (resp.status().as_u16(), resp.text().await.unwrap());
        if code == 503 && text.contains("durable writes are failing") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never said so: {code} {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(readyz.contains("state.json"), "{readyz}");
    // The Trigger did not wait for the disk; the audit log still takes the decisions.
    let deadline = Instant::now() + PATIENCE;
    while t.group_state(&g).await["triggered"] != true {
        assert!(Instant::now() < deadline, "never triggered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.until_audit("the trip", |v| v["event"] == "trip");
    let on_disk = d.state();
    assert_eq!(
        on_disk["strategies"]["runaway"]["state"], "active",
        "not yet written"
    );
    let (code, out, _) = cli(dir.path(), &["status"]);
    assert!(out.contains("durable writes: FAILING"), "{code:?} {out}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let scrape = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |series: &str| {
            scrape
                .lines()
                .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        if value("kalshi_riskd_state_write_failing") == Some(1.0)
            && value(r#"kalshi_riskd_state_write_failures_total{file="state.json"}"#)
                .is_some_and(|n| n >= 1.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics never said so:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The disk recovers: the trip and the kill latch reach state.json without anything else
    // happening, and survive a kill -9.
    std::fs::remove_dir(&blocker).unwrap();
    d.until_state("the trip and the latch written", |s| {
        s["strategies"]["runaway"]["state"] == "tripped" && s["kill"].is_object()
    });
    let deadline = Instant::now() + PATIENCE;
    while reqwest::get(format!("http://{addr}/readyz"))
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.crash();
    let d = start(dir.path()).await;
    let state = d.state();
    assert_eq!(
        state["strategies"]["runaway"]["state"], "tripped",
        "{state}"
    );
    assert!(state["kill"].is_object(), "{state}");
    assert_eq!(stop(d).await, Some(0));
}

/// Found by the chaos suite: a Trigger the exchange kept refusing was still being retried when
/// the operator reset the strategy; once the exchange took it again, the retry triggered the
/// freshly reset group, and the daemon showed the strategy active over a blocked group. A reset
/// the exchange confirms ends the group's Trigger retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_ends_the_trigger_retries_it_supersedes() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY)], "");
    let d = start(dir.path()).await;
    let g = group_of(&d.state(), "runaway");
    // Every Trigger of this group fails; its reset does not.
    t.set_faults(json!({
        "error_rate": 1.0,
        "error_path": format!("/trade-api/v2/portfolio/order_groups/{g}/trigger"),
    }))
    .await;
    t.order(Some(&g), "21").await;
    until_log(&d, "the Trigger being retried", |l| {
        l.contains("trigger not confirmed; retrying")
    });
    let (code, out, err) = cli(dir.path(), &["reset", "runaway"]);
    assert_eq!(code, Some(0), "{out}{err}");
    d.until_audit("the retries given up", |v| {
        v["event"] == "action_failed"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("superseded"))
    });
    t.set_faults(json!({})).await;
    // Longer than the retries' longest pause: a retry still running would land by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        t.group_state(&g).await["triggered"],
        false,
        "the reset stands"
    );
    assert_eq!(d.state()["strategies"]["runaway"]["state"], "active");
    assert_eq!(stop(d).await, Some(0));
}

/// Starts the daemon and returns once start-up is under way (its metrics listener up, the
/// exchange being read), without waiting for READY=1.
fn starting(dir: &std::path::Path) -> Daemon {
    let d = Daemon::spawn(dir, &[]);
    until_log(&d, "start-up under way", |l| {
        l.contains("metrics listening")
    });
    d
}

/// SIGTERM, waited for off the async workers: the daemon (its files) and its exit code.
async fn stop_keeping(mut d: Daemon) -> (Daemon, Option<i32>) {
    tokio::task::spawn_blocking(move || {
        let code = d.stop_waiting();
        (d, code)
    })
    .await
    .unwrap()
}

/// Every answer to the order-group calls (the listing at start among them) takes `ms`.
fn slow_groups(ms: u64) -> Value {
    json!({"latency_ms": ms, "latency_path": "/trade-api/v2/portfolio/order_groups"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_start_stops_there() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    // Far longer than the test waits: start-up cannot finish by itself meanwhile.
    t.set_faults(slow_groups(120_000)).await;
    let d = starting(dir.path());
    let (d, code) = stop_keeping(d).await;
    assert_eq!(code, Some(0), "{}", d.log());
    assert!(
        d.log().contains("before start-up had finished"),
        "{}",
        d.log()
    );

    // The next start is an ordinary one.
    t.set_faults(json!({})).await;
    let d = start(dir.path()).await;
    assert_eq!(exchange_groups(&t).await.len(), 1);
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_signalled_during_start_is_engaged_before_a_sigterm_stops_it() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    let group = group_of(&d.state(), "calm");
    assert_eq!(stop(d).await, Some(0));

    t.set_faults(slow_groups(1_500)).await;
    let d = starting(dir.path());
    d.signal("-USR1");
    let (d, code) = stop_keeping(d).await;
    assert_eq!(code, Some(0), "{}", d.log());
    assert_eq!(d.state()["kill"]["actor"], "signal", "the latch persisted");
    assert_eq!(
        t.group_state(&group).await["triggered"],
        true,
        "{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_asked_on_the_admin_socket_during_start_is_carried_out_before_a_sigterm_stops_it() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    let group = group_of(&d.state(), "calm");
    assert_eq!(stop(d).await, Some(0));

    // Start-up's rebuild of the windows (after the admin socket opened) reads the fills: slowly.
    t.set_faults(json!({"latency_ms": 2_000, "latency_path": "/trade-api/v2/portfolio/fills"}))
        .await;
    let d = Daemon::spawn(dir.path(), &[("RUST_LOG", "debug")]);
    until_log(&d, "the admin socket open", |l| {
        l.contains("admin API listening")
    });
    let p = d.dir.clone();
    let killing = tokio::task::spawn_blocking(move || cli(&p, &["kill"]));
    until_log(&d, "the kill request taken", |l| {
        l.contains("kill request received")
    });
    let (d, code) = stop_keeping(d).await;
    assert_eq!(code, Some(0), "{}", d.log());
    let (code, out, err) = killing.await.unwrap();
    assert_eq!(code, Some(0), "the kill was answered: {out}{err}");
    assert!(d.state()["kill"].is_object(), "the latch persisted");
    assert_eq!(
        t.group_state(&group).await["triggered"],
        true,
        "{}",
        d.log()
    );
}
