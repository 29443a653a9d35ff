//! `kalshi-riskd replay` agrees with the live daemon: the same fills, made on the simulator
//! while the real daemon guards them, are read back from the exchange by `replay
//! --from-exchange` and replayed through the risk core; every trip and automatic reset the
//! daemon wrote to its audit log comes out of the replay, with the same evidence, in the same
//! order for each strategy.
//!
//! The daemon decides when a fill reaches it, the replay at the fill's exchange time, and an
//! automatic reset comes on the next tick after its cooldown (every 250 ms, live and
//! replayed): times agree within a second, figures exactly.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::daemon::{Daemon, cli, group_of, setup};
use support::{PATIENCE, TestSim};
use tokio::time::Instant;

/// Trips at more than 10 contracts in 3 s, warns at 5, resets itself a second after a trip
/// once the window is below 5.
const ALPHA: &str = "[group]\ncontracts_limit = 100\n[[limit]]\nname = \"fast\"\nwindow = \"3s\"\nmax_contracts = 10\nwarn_ratio = 0.5\n[reset]\nmode = \"cooldown\"\ncooldown = \"1s\"\nresume_ratio = 0.5\n";
/// Trips at more than 3 fills in 10 s; reset by hand only.
const BETA: &str =
    "[group]\ncontracts_limit = 100\n[[limit]]\nname = \"slow\"\nwindow = \"10s\"\nmax_fills = 3\n";

async fn order(t: &TestSim, group: Option<&str>, count: &str) {
    let (status, body) = t.order(group, count).await;
    assert!(status.is_success(), "{body}");
}

async fn until_active(d: &Daemon, t: &TestSim, strategy: &str, group: &str) {
    d.until_state(&format!("{strategy} reset"), |s| {
        s["strategies"][strategy]["state"] == "active"
    });
    let deadline = Instant::now() + PATIENCE;
    while t.group_state(group).await["triggered"] == true {
        assert!(
            Instant::now() < deadline,
            "{group} never reset on the exchange"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(event, strategy, evidence, ts_ms)` of every trip and automatic reset (an operator's reset
/// is the daemon's alone: the replay has no operator).
fn trips_and_resets(lines: &[Value]) -> Vec<(String, String, Value, i64)> {
    lines
        .iter()
        .filter(|l| {
            l["event"] == "trip"
                || (l["event"] == "reset"
                    && l["reason"].as_str().is_some_and(|r| r.starts_with("auto")))
        })
        .map(|l| {
            (
                l["event"].as_str().unwrap().to_owned(),
                l["strategy"].as_str().unwrap_or("").to_owned(),
                l["evidence"].clone(),
                l["ts_ms"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Runs `replay` with `args` on the config in `dir` and checks its trips and automatic resets
/// against the daemon's (`live`, sorted by strategy): the same events and evidence, in the
/// same order per strategy, within a second. The report.
fn replay_agrees(
    dir: &std::path::Path,
    live: &[(String, String, Value, i64)],
    args: &[&str],
) -> Value {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = cli(dir, &all);
    assert_eq!(code, Some(0), "{args:?}: {stdout}{stderr}");
    let out = args[args.iter().position(|a| *a == "--out").unwrap() + 1];
    let report: Value = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(out).join("report.json")).unwrap(),
    )
    .unwrap();
    let mut replayed = trips_and_resets(report["decisions"].as_array().unwrap());
    replayed.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        live.len(),
        replayed.len(),
        "{args:?}: live:\n{live:#?}\nreplayed:\n{replayed:#?}\n{stdout}"
    );
    for (l, r) in live.iter().zip(&replayed) {
        assert_eq!((&l.0, &l.1, &l.2), (&r.0, &r.1, &r.2), "{args:?}: {stdout}");
        assert!(
            (l.3 - r.3).abs() <= 1_000,
            "{args:?}: {} {} at {} live, {} replayed",
            l.0,
            l.1,
            l.3,
            r.3
        );
    }
    assert!(stdout.contains("Trips: 3"), "{stdout}");
    assert_eq!(
        report["tripped_at_end"],
        serde_json::json!(["beta"]),
        "{report}"
    );
    report
}

/// Orders older than every fill: `n` bids resting in a market with nothing to sell.
async fn older_orders(t: &TestSim, n: usize) {
    let (status, body) = t
        .control(
            "POST",
            "/liquidity",
            Some(serde_json::json!({"ticker": "KXREST", "contracts": "0"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    for _ in 0..n {
        let (status, body) = t.order_in("KXREST", None, "1", 0).await;
        assert!(status.is_success(), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_the_exchanges_fills_makes_the_live_daemons_trips_and_resets() {
    let t = TestSim::start().await;
    let dir = setup(&t, &[("alpha.toml", ALPHA), ("beta.toml", BETA)], "");
    // An account's older history: more than two pages of orders placed before any fill.
    older_orders(&t, 2_100).await;
    // The daemon also records its fills, for `replay --audit`.
    let cfg = dir.path().join("kalshi-riskd.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert_eq!(text.matches("dir = \"state\"\n").count(), 1);
    std::fs::write(
        &cfg,
        text.replace("dir = \"state\"\n", "dir = \"state\"\naudit_fills = true\n"),
    )
    .unwrap();
    let d = support::daemon::start(dir.path()).await;
    let state = d.state();
    let (alpha, beta) = (group_of(&state, "alpha"), group_of(&state, "beta"));

    // alpha: a warning, a trip, its automatic reset; twice.
    for counts in [["3", "3", "5"], ["4", "2", "5"]] {
        for c in counts {
            order(&t, Some(&alpha), c).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        d.until_state("alpha tripped", |s| {
            s["strategies"]["alpha"]["state"] == "tripped"
        });
        until_active(&d, &t, "alpha", &alpha).await;
    }
    // beta: four fills in 10 s trip it; an operator resets it.
    for _ in 0..4 {
        order(&t, Some(&beta), "1").await;
    }
    d.until_state("beta tripped", |s| {
        s["strategies"]["beta"]["state"] == "tripped"
            && s["strategies"]["beta"]["trip"]["confirmed_ms"].is_i64()
    });
    let (code, out, err) = cli(&d.dir, &["reset", "beta"]);
    assert_eq!(code, Some(0), "{out}{err}");
    until_active(&d, &t, "beta", &beta).await;
    // A fill in no group: unmapped, live and replayed.
    order(&t, None, "2").await;
    d.until_audit("the unmapped fill", |v| v["event"] == "unmapped_fill");
    let live = trips_and_resets(&d.audit());
    assert_eq!(
        live.iter().filter(|(e, ..)| e == "trip").count(),
        3,
        "{live:#?}"
    );
    assert_eq!(d.stop(), Some(0));

    let mut live = live;
    // Strategy by strategy (stable: each one's decisions keep their order). Across strategies
    // the order may differ within the ticks' phase.
    live.sort_by(|a, b| a.1.cmp(&b.1));

    // From the exchange's fills and orders, mapped through state.json's groups.
    let out = dir.path().join("replay-out");
    let requests = || async { t.stats().await["requests"].as_u64().unwrap() };
    let before = requests().await;
    let report = replay_agrees(
        dir.path(),
        &live,
        &[
            "--from-exchange",
            "--since",
            "1h",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(report["unmapped"].as_object().unwrap().len(), 1, "{report}");
    // One page of fills and one of orders: the orders listing stops once it has found every
    // fill's order, and never reads the older pages.
    assert_eq!(requests().await - before, 2, "requests made by the replay");
    // From the fills the daemon wrote to its own audit log.
    let audit = dir.path().join("state/audit.jsonl");
    let from_audit = dir.path().join("replay-audit");
    let report = replay_agrees(
        dir.path(),
        &live,
        &[
            "--audit",
            audit.to_str().unwrap(),
            "--out",
            from_audit.to_str().unwrap(),
        ],
    );
    // alpha's six, beta's four and the one in no group.
    assert_eq!(report["fills"], 11, "{report}");
    assert_eq!(
        report["unmapped"],
        serde_json::json!({"unmapped by the daemon (its audit log says why)": 1}),
        "{report}"
    );
    for plot in ["alpha.svg", "beta.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("window use"),
            "{plot}"
        );
    }
    for plot in ["alpha.png", "beta.png"] {
        let png = std::fs::read(out.join(plot)).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{plot}"
        );
    }
}

/// Bad input stops the replay with exit 2 and names what is wrong and where; with `--skip-bad`
/// an unreadable fill is replayed around and listed.
#[test]
fn bad_history_or_policy_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("alpha.toml"), ALPHA).unwrap();
    std::fs::write(
        p.join("broken.toml"),
        "[group]\ncontracts_limit = \"many\"\n",
    )
    .unwrap();
    let fill = |trade: &str, count: &str| {
        format!(
            r#"{{"trade_id":"{trade}","order_id":"o","ticker":"KX","side":"yes","count_fp":"{count}","yes_price_dollars":"0.40","created_time":"2026-11-23T10:00:00Z"}}"#
        )
    };
    std::fs::write(
        p.join("garbage.json"),
        format!("{}\nnot json\n", fill("a", "1.00")),
    )
    .unwrap();
    std::fs::write(
        p.join("bad-fill.json"),
        format!("{}\n{}\n", fill("a", "1.00"), fill("b", "-")),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
            .arg("replay")
            .args(args)
            .args(["--config", "/nonexistent/kalshi-riskd.toml", "--out"])
            .arg(p.join("out"))
            .current_dir(p)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["--policy", "alpha.toml", "--fills", "garbage.json"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("garbage.json:2: not JSON"), "{err}");
    let (code, _, err) = run(&["--policy", "alpha.toml", "--fills", "bad-fill.json"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("bad-fill.json:2 (fill 1), trade b: count_fp"),
        "{err}"
    );
    let (code, out, err) = run(&[
        "--policy",
        "alpha.toml",
        "--fills",
        "bad-fill.json",
        "--skip-bad",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Replayed 1 fills"), "{out}");
    assert!(out.contains("1 fills skipped (unreadable)"), "{out}");
    let (code, _, err) = run(&["--policy", "broken.toml", "--fills", "bad-fill.json"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("broken.toml"), "{err}");
    // An audit log from a daemon that did not record its fills.
    std::fs::write(
        p.join("audit.jsonl"),
        "{\"ts\":\"2026-11-23T10:00:00.000Z\",\"ts_ms\":1,\"event\":\"reload\",\"strategy\":null,\"group_id\":null,\"reason\":\"\",\"evidence\":null,\"actor\":\"daemon\"}\n",
    )
    .unwrap();
    let (code, _, err) = run(&["--policy", "alpha.toml", "--audit", "audit.jsonl"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("state.audit_fills = true"), "{err}");
    let (code, _, err) = run(&["--policy", "alpha.toml", "--fills", "missing.json"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing.json"), "{err}");
}
