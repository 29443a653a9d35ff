//! `kalshi-riskd demo`, the README's main command, runs to completion: the runaway strategy is
//! tripped by the daemon before the exchange's own limit, the kill switch triggers every group,
//! and it exits 0. (Run without a terminal: plain lines, not the redrawn table.)

use std::process::Command;

#[test]
fn the_demo_trips_the_runaway_pulls_the_kill_switch_and_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_kalshi-riskd"))
        .args(["demo", "--duration", "6s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("btc-daily-mm: tripped by the daemon"),
        "{text}"
    );
    assert!(text.contains("exchange-side limit is 500"), "{text}");
    assert!(text.contains("kill switch pulled"), "{text}");
    assert_eq!(
        text.matches("TRIGGERED").count(),
        3,
        "every group triggered:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("t=") && l.contains("btc-daily-mm tripped")),
        "plain progress lines:\n{text}"
    );
    // The runaway's group never reached the exchange's own limit: the daemon acted first.
    let runaway = text
        .lines()
        .find(|l| l.contains("subaccount 0  exchange 0"))
        .unwrap();
    let volume: f64 = runaway
        .split("15 s volume")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(volume < 500.0, "{runaway}");
}
