//! The real `kalshi-riskd run` against the simulator: start creates and adopts groups, a breach
//! trips before the exchange's own limit, SIGUSR1 kills, a restart keeps trips and the latch,
//! an exchange-side trigger is recorded, an unmapped fill is counted, a blind stream trips a
//! fail-closed strategy, SIGTERM stops cleanly. Readiness comes from a real NOTIFY_SOCKET.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{cli, get, group_of, run_config, sample, setup, start, stop, use_fix};
use support::{PATIENCE, TestSim};

const RUNAWAY: &str = "[group]\ncontracts_limit = 100\n[[limit]]\nname = \"fast\"\nwindow = \"15s\"\nmax_contracts = 20\n";
const CALM: &str = "[group]\ncontracts_limit = 100\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_breach_kill_restart_and_stop() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY), ("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    // Start created one group per strategy, with the policy's limit, and recorded them.
    let state = d.state();
    let (runaway, calm) = (group_of(&state, "runaway"), group_of(&state, "calm"));
    assert_eq!(
        t.group_state(&runaway).await["contracts_limit_fp"],
        "100.00"
    );
    assert_eq!(state["clean_stop"], false);

    // 21 contracts: over the daemon's 20, far under the exchange's 100.
    t.order(Some(&runaway), "10").await;
    t.order(Some(&runaway), "11").await;
    // The state is written while the Trigger is in flight: wait for the exchange's answer.
    let state = d.until_state("tripped, the Trigger confirmed", |s| {
        s["strategies"]["runaway"]["state"] == "tripped"
            && s["strategies"]["runaway"]["trip"]["confirmed_ms"].is_i64()
    });
    assert_eq!(state["strategies"]["runaway"]["trip"]["reason"], "limit");
    assert_eq!(
        state["strategies"]["runaway"]["trip"]["evidence"]["contracts"],
        "21.00"
    );
    let g = t.group_state(&runaway).await;
    assert_eq!(
        (g["triggered"].clone(), g["window_contracts_fp"].clone()),
        (json!(true), json!("21.00")),
        "the daemon, not the exchange's limit, triggered it"
    );
    assert_eq!(t.group_state(&calm).await["triggered"], false);
    d.until_audit("a confirmed trip", |v| {
        v["event"] == "trip_confirmed" && v["strategy"] == "runaway"
    });
    // Every audit line carries every field the audit log promises.
    for line in d.audit() {
        for key in [
            "ts", "event", "strategy", "group_id", "reason", "evidence", "actor",
        ] {
            assert!(line.get(key).is_some(), "{key} missing from {line}");
        }
    }

    // The kill switch.
    d.signal("-USR1");
    d.until_state("killed", |s| s["kill"]["actor"] == "signal");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while t.group_state(&calm).await["triggered"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "calm never triggered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A clean stop, then a restart that keeps and re-applies the trip and the latch.
    let code = stop(d).await;
    assert_eq!(code, Some(0));
    let reread: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/state.json")).unwrap())
            .unwrap();
    assert_eq!(reread["clean_stop"], true);
    t.call(
        "PUT",
        &format!("/trade-api/v2/portfolio/order_groups/{calm}/reset"),
        None,
    )
    .await;
    t.call(
        "PUT",
        &format!("/trade-api/v2/portfolio/order_groups/{runaway}/reset"),
        None,
    )
    .await;
    let d = start(dir.path()).await;
    let state = d.state();
    assert_eq!(
        group_of(&state, "runaway"),
        runaway,
        "adopted, not created again"
    );
    assert_eq!(state["strategies"]["runaway"]["state"], "tripped");
    assert!(state["kill"].is_object());
    // READY comes after the re-application: both groups are triggered again.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while t.group_state(&calm).await["triggered"] != true
        || t.group_state(&runaway).await["triggered"] != true
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "persisted trip and kill were not re-applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        t.call("GET", "/trade-api/v2/portfolio/order_groups", None)
            .await
            .1["order_groups"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_triggers_and_unmapped_fills_are_recorded() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    let calm = group_of(&d.state(), "calm");
    // A fill on an order in no group.
    t.order(None, "3").await;
    d.until_audit("an unmapped fill", |v| v["event"] == "unmapped_fill");
    // Someone else triggers the group on the exchange.
    t.call(
        "PUT",
        &format!("/trade-api/v2/portfolio/order_groups/{calm}/trigger"),
        None,
    )
    .await;
    let state = d.until_state("tripped by the exchange", |s| {
        s["strategies"]["calm"]["state"] == "tripped"
    });
    assert_eq!(state["strategies"]["calm"]["trip"]["reason"], "exchange");
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_stream_trips_a_fail_closed_strategy() {
    let t = TestSim::start().await;
    let closed = "[group]\ncontracts_limit = 100\n[blind]\naction = \"trigger\"\n";
    let dir = setup(
        &t,
        &[("closed.toml", closed), ("open.toml", CALM)],
        "\n[stream]\nblind_after = \"1s\"\n",
    );
    let d = start(dir.path()).await;
    t.set_faults(json!({"ws_silent": true})).await;
    let state = d.until_state("blind-tripped, the Trigger confirmed", |s| {
        s["strategies"]["closed"]["state"] == "tripped"
            && s["strategies"]["closed"]["trip"]["confirmed_ms"].is_i64()
    });
    assert_eq!(state["strategies"]["closed"]["trip"]["reason"], "blind");
    assert_eq!(state["strategies"]["open"]["state"], "active");
    let g = group_of(&state, "closed");
    assert_eq!(
        t.group_state(&g).await["triggered"],
        true,
        "REST still works while the stream is silent"
    );
    t.set_faults(json!({})).await;
    assert_eq!(stop(d).await, Some(0));
}

#[test]
fn bad_config_or_key_exits_2_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_config(dir.path(), "[exchange]\nenvironment = \"nope\"\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exchange.environment"));

    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let out = run_config(
        dir.path(),
        "[exchange]\nenvironment = \"sim\"\napi_key_id = \"k\"\nprivate_key_path = \"missing.pem\"\n[policies]\ndir = \"policies\"\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_good_policy_set_and_refuses_a_bad_one() {
    let t = TestSim::start().await;
    let retiring = "[group]\ncontracts_limit = 100\n[retire]\naction = \"trigger\"\n";
    let dir = setup(&t, &[("calm.toml", CALM), ("old.toml", retiring)], "");
    let mut d = start(dir.path()).await;
    let old_group = group_of(&d.state(), "old");

    // A bad policy: nothing changes.
    std::fs::write(
        dir.path().join("policies/broken.toml"),
        "[group]\ncontracts_limit = 0\n",
    )
    .unwrap();
    d.signal("-HUP");
    let mut d = tokio::task::spawn_blocking(move || {
        d.wait_notify(&["RELOADING=1", "MONOTONIC_USEC="]);
        d.wait_notify(&["READY=1"]);
        d
    })
    .await
    .unwrap();
    let failed = d.until_audit("a refused reload", |v| v["event"] == "reload_failed");
    assert!(
        failed["reason"].as_str().unwrap().contains("broken.toml"),
        "{failed}"
    );
    assert!(d.state()["strategies"]["old"].is_object());
    let addr = d.metrics_addr();
    let (_, scrape) = get(&addr, "/metrics").await;
    assert_eq!(
        sample(&scrape, "kalshi_riskd_policy_reload_success"),
        Some(0.0)
    );
    let loaded_at = sample(
        &scrape,
        "kalshi_riskd_policy_reload_last_success_timestamp_seconds",
    )
    .unwrap();

    // A good one: a new strategy, a removed one retired, a changed limit.
    std::fs::remove_file(dir.path().join("policies/broken.toml")).unwrap();
    std::fs::remove_file(dir.path().join("policies/old.toml")).unwrap();
    std::fs::write(
        dir.path().join("policies/new.toml"),
        "[group]\ncontracts_limit = 77\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policies/calm.toml"),
        "[group]\ncontracts_limit = 150\n",
    )
    .unwrap();
    d.signal("-HUP");
    let d = tokio::task::spawn_blocking(move || {
        d.wait_notify(&["RELOADING=1", "MONOTONIC_USEC="]);
        d.wait_notify(&["READY=1"]);
        d
    })
    .await
    .unwrap();
    let state = d.until_state("reloaded", |s| s["strategies"]["new"].is_object());
    let (_, scrape) = get(&addr, "/metrics").await;
    assert_eq!(
        sample(&scrape, "kalshi_riskd_policy_reload_success"),
        Some(1.0),
        "a good reload clears the failure"
    );
    assert!(
        sample(
            &scrape,
            "kalshi_riskd_policy_reload_last_success_timestamp_seconds"
        )
        .unwrap()
            > loaded_at
    );
    assert_eq!(
        state["strategies"]["old"]["retired"], true,
        "a retired strategy is remembered: {state}"
    );
    let new_group = group_of(&state, "new");
    assert_eq!(
        t.group_state(&new_group).await["contracts_limit_fp"],
        "77.00"
    );
    d.until_audit("the retirement", |v| {
        v["event"] == "retired" && v["strategy"] == "old"
    });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while t.group_state(&old_group).await["triggered"] != true
        || t.group_state(&group_of(&state, "calm")).await["contracts_limit_fp"] != "150.00"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retire trigger or limit update missing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_scope_kill_triggers_groups_the_daemon_did_not_create() {
    let t = TestSim::start().await;
    let strangers = [t.create_group(50, 0).await, t.create_group(50, 9).await];
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    d.signal("-USR1");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for g in &strangers {
        while t.group_state(g).await["triggered"] != true {
            assert!(
                tokio::time::Instant::now() < deadline,
                "group {g} not triggered by the kill:\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_finishes_in_flight_triggers() {
    let t = TestSim::start().await;
    let dir = setup(
        &t,
        &[("calm.toml", CALM)],
        "\n[kill]\nscope = \"managed\"\n",
    );
    let d = start(dir.path()).await;
    let calm = group_of(&d.state(), "calm");
    // Every answer now takes 1.5 s: the kill's Trigger is still in flight when SIGTERM arrives.
    t.set_faults(json!({"latency_ms": 1500})).await;
    d.signal("-USR1");
    d.until_state("killed", |s| s["kill"].is_object());
    let code = stop(d).await;
    assert_eq!(code, Some(0));
    t.set_faults(json!({})).await;
    assert_eq!(
        t.group_state(&calm).await["triggered"],
        true,
        "the Trigger completed before the exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_unclean_stop_active_strategies_are_unknown() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    d.signal("-KILL"); // no chance to write clean_stop
    drop(d);
    let d = start(dir.path()).await;
    let state = d.state();
    assert_eq!(state["strategies"]["calm"]["state"], "unknown", "{state}");
    d.until_audit("the unknown state recorded", |v| {
        v["event"] == "settled" && v["strategy"] == "calm"
    });
    // The exchange settles it: a reset event for its group proves it active.
    let calm = group_of(&state, "calm");
    t.call(
        "PUT",
        &format!("/trade-api/v2/portfolio/order_groups/{calm}/reset"),
        None,
    )
    .await;
    d.until_state("settled", |s| s["strategies"]["calm"]["state"] == "active");
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_fed_while_the_loop_runs() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let sock = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&sock).unwrap();
    notify.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
        .args(["run", "--config"])
        .arg(dir.path().join("kalshi-riskd.toml"))
        .env("NOTIFY_SOCKET", &sock)
        .env("WATCHDOG_USEC", "600000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 512];
        let mut seen = Vec::new();
        while seen
            .iter()
            .filter(|m: &&String| m.contains("WATCHDOG=1"))
            .count()
            < 2
        {
            let n = notify.recv(&mut buf).expect("notifications");
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        seen
    })
    .await
    .unwrap();
    assert!(
        seen[0].contains("READY=1"),
        "READY before any WATCHDOG: {seen:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness() {
    let t = TestSim::start().await;
    let dir = setup(
        &t,
        &[("runaway.toml", RUNAWAY), ("calm.toml", CALM)],
        "\n[stream]\nblind_after = \"1s\"\n",
    );
    let d = start(dir.path()).await;
    let addr = d.metrics_addr();
    assert_eq!(get(&addr, "/healthz").await.0, 200);
    assert_eq!(
        get(&addr, "/readyz").await.0,
        200,
        "ready once subscribed and reconciled"
    );

    // Every documented metric is there from the first scrape.
    let (status, first) = get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "window_contracts",
        "window_limit_contracts",
        "window_utilization_ratio",
        "window_warn_ratio",
        "group_contracts_limit",
        "strategy_tripped",
        "kill_switch_engaged",
        "fills_total",
        "filled_contracts_total",
        "unmapped_fills_total",
        "trips_total",
        "resets_total",
        "stream_connected",
        "stream_reconnects_total",
        "stream_last_message_timestamp_seconds",
        "strategy_state",
        "fix_logons_total",
        "policy_reload_success",
        "policy_reload_last_success_timestamp_seconds",
        "start_time_seconds",
        "exchange_clock_offset_seconds",
        "exchange_requests_total",
        "exchange_request_duration_seconds",
        "trigger_latency_seconds",
        "policy_reloads_total",
        "build_info",
    ] {
        assert!(
            first.contains(&format!("# TYPE kalshi_riskd_{name} ")),
            "{name} missing:\n{first}"
        );
    }
    assert!(
        first.contains("process_resident_memory_bytes"),
        "process metrics"
    );
    let revision = env!("KALSHI_RISKD_REVISION");
    assert!(
        first.contains(&format!(
            "kalshi_riskd_build_info{{revision=\"{revision}\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "build_info names the version and the revision:\n{first}"
    );
    for series in [
        r#"kalshi_riskd_trips_total{reason="limit",strategy="runaway"}"#,
        r#"kalshi_riskd_trips_total{reason="exchange",strategy="calm"}"#,
        r#"kalshi_riskd_resets_total{reason="auto",strategy="calm"}"#,
        r#"kalshi_riskd_policy_reloads_total{result="failure"}"#,
        r#"kalshi_riskd_exchange_requests_total{op="trigger_order_group",status="5xx"}"#,
        r#"kalshi_riskd_fills_total{strategy="calm"}"#,
        "kalshi_riskd_unmapped_fills_total",
        "kalshi_riskd_kill_switch_engaged",
    ] {
        assert_eq!(
            sample(&first, series),
            Some(0.0),
            "{series} should start at 0:\n{first}"
        );
    }
    assert_eq!(
        sample(
            &first,
            r#"kalshi_riskd_window_limit_contracts{limit="fast",strategy="runaway"}"#
        ),
        Some(20.0)
    );
    assert_eq!(
        sample(
            &first,
            r#"kalshi_riskd_group_contracts_limit{exchange_index="0",strategy="runaway"}"#
        ),
        Some(100.0)
    );
    assert_eq!(sample(&first, "kalshi_riskd_stream_connected"), Some(1.0));
    assert_eq!(
        sample(
            &first,
            r#"kalshi_riskd_window_warn_ratio{limit="fast",strategy="runaway"}"#
        ),
        Some(0.8),
        "the policy's warn ratio (the default)"
    );
    assert_eq!(
        sample(&first, "kalshi_riskd_policy_reload_success"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &first,
            r#"kalshi_riskd_strategy_state{state="active",strategy="runaway"}"#
        ),
        Some(1.0)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for series in [
        "kalshi_riskd_start_time_seconds",
        "kalshi_riskd_stream_last_message_timestamp_seconds",
        "kalshi_riskd_policy_reload_last_success_timestamp_seconds",
    ] {
        let t = sample(&first, series).unwrap();
        assert!((now - 60.0..=now).contains(&t), "{series} = {t}, now {now}");
    }

    // A breach shows in the figures.
    let runaway = group_of(&d.state(), "runaway");
    t.order(Some(&runaway), "21").await;
    d.until_state("tripped", |s| {
        s["strategies"]["runaway"]["state"] == "tripped"
    });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let scrape = loop {
        let (_, scrape) = get(&addr, "/metrics").await;
        // Latency is observed at confirmation; counters and gauges on the loop's next tick.
        if sample(&scrape, "kalshi_riskd_trigger_latency_seconds_count") == Some(1.0)
            && sample(
                &scrape,
                r#"kalshi_riskd_strategy_tripped{strategy="runaway"}"#,
            ) == Some(1.0)
        {
            break scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trigger latency never observed:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(
            &scrape,
            r#"kalshi_riskd_trips_total{reason="limit",strategy="runaway"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"kalshi_riskd_strategy_tripped{strategy="runaway"}"#
        ),
        Some(1.0)
    );
    for (state, v) in [("tripped", 1.0), ("active", 0.0), ("unknown", 0.0)] {
        let series =
            format!(r#"kalshi_riskd_strategy_state{{state="{state}",strategy="runaway"}}"#);
        assert_eq!(sample(&scrape, &series), Some(v), "{series}");
    }
    assert_eq!(
        sample(&scrape, r#"kalshi_riskd_fills_total{strategy="runaway"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"kalshi_riskd_filled_contracts_total{strategy="runaway"}"#
        ),
        Some(21.0)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"kalshi_riskd_window_contracts{limit="fast",strategy="runaway"}"#
        ),
        Some(21.0)
    );
    assert!(
        sample(
            &scrape,
            r#"kalshi_riskd_window_utilization_ratio{limit="fast",strategy="runaway"}"#
        )
        .unwrap()
            > 1.0
    );
    assert!(
        sample(
            &scrape,
            r#"kalshi_riskd_exchange_requests_total{op="trigger_order_group",status="2xx"}"#
        )
        .unwrap()
            >= 1.0
    );

    // A silent stream: no longer ready.
    t.set_faults(json!({"ws_silent": true})).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while get(&addr, "/readyz").await.0 != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready while blind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.set_faults(json!({})).await;
    while get(&addr, "/readyz").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready again after the stream came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_its_cli_clients() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = TestSim::start().await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY), ("calm.toml", CALM)], "");
    let p = dir.path().to_owned();
    // Not running yet: a clear message, and the "unreachable" exit code (not "refused").
    let (code, _, err) = cli(&p, &["status"]);
    assert_eq!(code, Some(3));
    assert!(
        err.contains("no daemon is listening on") && err.contains("admin.sock"),
        "{err}"
    );

    let d = start(&p).await;
    let sock = p.join("admin.sock");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );

    // status: a row per strategy.
    let (code, out, _) = cli(&p, &["status"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("kill switch: released"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("runaway"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("enforce") && row.contains("active") && row.contains("fast 0.00/20.00"),
        "{row}"
    );
    let (_, json_out, _) = cli(&p, &["status", "--json"]);
    let v: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(v["strategies"].as_array().unwrap().len(), 2);

    // GET /v1/groups: what strategies read to tag their orders.
    let (status, groups) = kalshi_riskd::admin::request(&sock, "GET", "/v1/groups")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let runaway = groups["strategies"]["runaway"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(runaway, group_of(&d.state(), "runaway"));

    // A breach, then a reset through the daemon.
    t.order(Some(&runaway), "21").await;
    d.until_state("tripped", |s| {
        s["strategies"]["runaway"]["state"] == "tripped"
    });
    let (code, out, _) = cli(&p, &["status"]);
    assert_eq!(
        code,
        Some(6),
        "a tripped strategy is worth a non-zero exit: {out}"
    );
    // The same through -c and --socket.
    let (code, _, err) = cli(
        &p,
        &["--socket", sock.to_str().unwrap(), "status", "--json"],
    );
    assert_eq!(code, Some(6), "{err}");
    let out2 = std::process::Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
        .args(["-c"])
        .arg(p.join("kalshi-riskd.toml"))
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out2.status.code(), Some(6));
    assert!(
        out.lines().any(|l| l.starts_with("runaway")
            && l.contains("TRIPPED")
            && l.contains("limit: limit fast exceeded")),
        "{out}"
    );
    let (code, out, err) = cli(&p, &["reset", "runaway"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("runaway: reset"), "{out}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while t.group_state(&runaway).await["triggered"] != false {
        assert!(
            tokio::time::Instant::now() < deadline,
            "group never reset on the exchange"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.state()["strategies"]["runaway"]["state"], "active");

    // Kill, a refused reset, release.
    let (code, _, _) = cli(&p, &["kill"]);
    assert_eq!(code, Some(0));
    d.until_state("killed", |s| {
        s["kill"]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("uid:"))
    });
    let (code, _, err) = cli(&p, &["reset", "--all"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("refused (409)") && err.contains("kill switch"),
        "{err}"
    );
    let (code, out, _) = cli(&p, &["release"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("kill switch released"), "{out}");
    assert!(d.state()["kill"].is_null());
    let (code, out, _) = cli(&p, &["reset", "--all"]);
    assert_eq!((code, out.trim()), (Some(0), "2 strategies reset"));

    // Trigger through the API; unknown strategies are 404s.
    let (status, _) = kalshi_riskd::admin::request(&sock, "POST", "/v1/strategies/calm/trigger")
        .await
        .unwrap();
    assert_eq!(status, 200);
    d.until_state("calm tripped by an operator", |s| {
        s["strategies"]["calm"]["trip"]["reason"] == "manual"
    });
    let (status, body) = kalshi_riskd::admin::request(&sock, "POST", "/v1/strategies/nobody/reset")
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (404, "no strategy named \"nobody\"")
    );
    let (code, _, err) = cli(&p, &["reset", "nobody"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404"), "{err}");

    // Reload through the API.
    let (status, body) = kalshi_riskd::admin::request(&sock, "POST", "/v1/reload")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // Every mutation is audited with the caller's real uid (this process's: it owns the dir).
    let me = {
        use std::os::unix::fs::MetadataExt as _;
        format!("uid:{}", std::fs::metadata(&p).unwrap().uid())
    };
    for event in ["kill_engaged", "kill_released", "reset", "trip", "reload"] {
        d.until_audit(event, |v| v["event"] == event && v["actor"] == me.as_str());
    }

    // groups: straight from the exchange, with the owning strategy.
    let (code, out, err) = cli(&p, &["groups"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&runaway) && l.ends_with("runaway")),
        "{out}"
    );
    assert_eq!(stop(d).await, Some(0));
    assert!(!sock.exists(), "the socket is removed on a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_lowered_below_the_groups_volume_is_not_sent_at_once() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    let calm = group_of(&d.state(), "calm");
    t.order(Some(&calm), "60").await;
    // Wait until the daemon has counted the fill (otherwise sending 50 would be right).
    let addr = d.metrics_addr();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while sample(
        &get(&addr, "/metrics").await.1,
        r#"kalshi_riskd_fills_total{strategy="calm"}"#,
    ) != Some(1.0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fill was never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(
        dir.path().join("policies/calm.toml"),
        "[group]\ncontracts_limit = 50\n",
    )
    .unwrap();
    d.signal("-HUP");
    d.until_audit("the deferral", |v| {
        v["event"] == "limit_deferred" && v["strategy"] == "calm"
    });
    let g = t.group_state(&calm).await;
    assert_eq!(
        g["contracts_limit_fp"], "100.00",
        "50 was not sent while 60 sit in the window: {g}"
    );
    assert_eq!(g["triggered"], false, "{g}");
    assert_eq!(stop(d).await, Some(0));
}

async fn sim_stat(t: &TestSim, key: &str) -> u64 {
    t.control("GET", "/stats", None).await.1[key]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_fix_groups_breach_trip_kill_reset_and_reconnect() {
    let t = TestSim::start().await;
    let fix_addr = t.start_fix(false).await;
    let dir = setup(&t, &[("runaway.toml", RUNAWAY), ("calm.toml", CALM)], "");
    use_fix(dir.path(), &fix_addr);
    let p = dir.path().to_owned();
    let d = start(&p).await;
    // Both groups were created over FIX (two UOG creates), with the policies' limits.
    assert_eq!(sim_stat(&t, "fix_logons").await, 1);
    assert_eq!(sim_stat(&t, "fix_requests").await, 2);
    let state = d.state();
    let (runaway, calm) = (group_of(&state, "runaway"), group_of(&state, "calm"));
    assert_eq!(
        t.group_state(&runaway).await["contracts_limit_fp"],
        "100.00"
    );
    let (_, out, _) = cli(&p, &["status", "--json"]);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["control"]["channel"], "fix", "{status}");
    assert_eq!(status["control"]["logged_on"], true, "{status}");

    // A breach: the daemon triggers over FIX before the exchange's own limit.
    t.order(Some(&runaway), "10").await;
    t.order(Some(&runaway), "11").await;
    d.until_audit("a confirmed trip", |v| {
        v["event"] == "trip_confirmed" && v["strategy"] == "runaway"
    });
    assert_eq!(t.group_state(&runaway).await["triggered"], true);
    assert_eq!(sim_stat(&t, "fix_requests").await, 3);

    // The exchange drops the session: the daemon logs on again.
    t.control("POST", "/fix/drop", None).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while sim_stat(&t, "fix_logons").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no second logon:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The kill switch, over the new session.
    d.signal("-USR1");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while t.group_state(&calm).await["triggered"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "calm never triggered:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Release and reset go over FIX too.
    let before = sim_stat(&t, "fix_requests").await;
    assert_eq!(cli(&p, &["release"]).0, Some(0));
    let (code, out, err) = cli(&p, &["reset", "calm"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(t.group_state(&calm).await["triggered"], false);
    assert!(sim_stat(&t, "fix_requests").await > before);

    // A clean stop logs the session out.
    assert_eq!(stop(d).await, Some(0));
    assert_eq!(t.sim.state().fix_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_clock_offset_is_measured_from_its_answers() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    let addr = d.metrics_addr();
    let offset = |scrape: &str| sample(scrape, "kalshi_riskd_exchange_clock_offset_seconds");
    let (_, scrape) = get(&addr, "/metrics").await;
    let same = offset(&scrape).unwrap();
    assert!(same.abs() <= 1.0, "one clock, offset {same}");
    // The exchange's clock runs 5 s ahead: the next answers say so.
    t.set_faults(json!({"clock_skew_ms": 5000})).await;
    let p = dir.path().to_owned();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let p = p.clone();
        tokio::task::spawn_blocking(move || cli(&p, &["reset", "calm"]))
            .await
            .unwrap();
        let (_, scrape) = get(&addr, "/metrics").await;
        let ahead = offset(&scrape).unwrap();
        if (4.0..=6.0).contains(&ahead) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "offset {ahead}, not 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stop(d).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_rotated_under_the_daemon_loses_no_line() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("calm.toml", CALM)], "");
    let d = start(dir.path()).await;
    let audit = dir.path().join("state/audit.jsonl");
    let before = std::fs::read_to_string(&audit).unwrap();
    assert!(!before.is_empty(), "start writes its decisions");
    // logrotate's `create`: the log renamed away and a new empty file put in its place.
    std::fs::rename(&audit, dir.path().join("state/audit.jsonl-1")).unwrap();
    std::fs::File::create(&audit).unwrap();
    let p = dir.path().to_owned();
    let (code, _, err) = tokio::task::spawn_blocking(move || cli(&p, &["kill"]))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{err}");
    let line = d.until_audit("the kill, in the new file", |v| {
        v["event"] == "kill_engaged"
    });
    assert!(line["actor"].as_str().unwrap().starts_with("uid:"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state/audit.jsonl-1")).unwrap(),
        before,
        "the rotated file keeps every line it had"
    );
    assert_eq!(stop(d).await, Some(0));
}
