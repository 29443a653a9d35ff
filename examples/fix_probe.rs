//! Logs on to a FIX acceptor and runs each order-group action once, printing what came back:
//! the client half of `scripts/fix-interop.sh` (against a QuickFIX acceptor), also usable
//! against the simulator or, with care, a real exchange session.
//!
//! `cargo run --example fix_probe -- FIX_ADDR API_KEY_ID PRIVATE_KEY_PEM [HEARTBEAT_SECONDS]`
//!
//! With HEARTBEAT_SECONDS (more than 3) the session uses that HeartBtInt and first idles for
//! two and a half intervals, checking that heartbeats flow and the session stays up.
//!
//! Exits 0 when every action got the answer it should: UOH for create, update, trigger, reset
//! and delete (with the subaccount and exchange index echoed where sent), and a
//! BusinessMessageReject `ORDER_GROUP_NOT_FOUND` for a trigger of the deleted group.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kalshi_riskd::kalshi::budget::Budget;
use kalshi_riskd::kalshi::fix::{FixAddr, FixConfig, FixSession};
use kalshi_riskd::kalshi::{GroupChannel, Signer};
use kalshi_riskd::risk::Contracts;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, key_id, key_path, heartbeat) = match args.as_slice() {
        [a, k, p] => (a, k, p, None),
        [a, k, p, h] => match h.parse::<u64>() {
            Ok(h) if h > 3 => (a, k, p, Some(Duration::from_secs(h))),
            _ => {
                eprintln!("fix_probe: HEARTBEAT_SECONDS must be a whole number over 3");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: fix_probe FIX_ADDR API_KEY_ID PRIVATE_KEY_PEM [HEARTBEAT_SECONDS]");
            return ExitCode::from(2);
        }
    };
    kalshi_riskd::kalshi::install_crypto_provider();
    let addr = match FixAddr::parse(addr) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fix_probe: {e}");
            return ExitCode::from(2);
        }
    };
    let signer = match Signer::from_pem_file(key_id, key_path.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fix_probe: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = CancellationToken::new();
    let mut cfg = FixConfig::new(addr.clone());
    if let Some(h) = heartbeat {
        cfg.heartbeat = h;
    }
    let (fix, task) = FixSession::spawn(cfg, signer, Arc::new(Budget::unlimited()), stop.clone());
    let mut failures = 0;
    let mut check = |what: &str, ok: bool, detail: String| {
        println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
        failures += usize::from(!ok);
    };
    match fix.wait_logged_on(Duration::from_secs(10)).await {
        Ok(()) => check("logon", true, format!("logged on to {addr}")),
        Err(e) => {
            check("logon", false, e);
            stop.cancel();
            let _ = task.await;
            return ExitCode::from(1);
        }
    }
    if let Some(h) = heartbeat {
        tokio::time::sleep(h * 5 / 2).await;
        let (beats, logons) = (fix.heartbeats_received(), fix.logons());
        check(
            "heartbeats",
            beats >= 2 && logons == 1 && fix.is_logged_on(),
            format!(
                "{beats} received in {:?} idle, {logons} logon(s), still logged on: {}",
                h * 5 / 2,
                fix.is_logged_on()
            ),
        );
    }
    let g = match fix.create_group(0, 0, Contracts::from_whole(5000)).await {
        Ok(g) => {
            check("create (20131=1)", true, format!("UOH 20130={}", g.id));
            g
        }
        Err(e) => {
            check("create (20131=1)", false, e.to_string());
            stop.cancel();
            let _ = task.await;
            return ExitCode::from(1);
        }
    };
    let r = fix.update_limit(&g, Contracts::from_whole(2500)).await;
    check("update (20131=5)", r.is_ok(), format!("{r:?}"));
    let r = fix.trigger_group(&g).await;
    check("trigger (20131=4)", r.is_ok(), format!("{r:?}"));
    let r = fix.reset_group(&g).await;
    check("reset (20131=2)", r.is_ok(), format!("{r:?}"));
    let r = fix.delete_group(&g).await;
    check("delete (20131=3)", r.is_ok(), format!("{r:?}"));
    let r = fix.trigger_group(&g).await;
    check(
        "trigger of the deleted group",
        r.as_ref().is_err_and(|e| e.is_not_found()),
        match r {
            Ok(()) => "UOH (expected ORDER_GROUP_NOT_FOUND)".into(),
            Err(e) => e.to_string(),
        },
    );
    match fix.create_group(3, 2, Contracts::from_whole(10)).await {
        Ok(g2) => {
            check(
                "create in subaccount 3, exchange 2 (79, 100)",
                true,
                format!("UOH 20130={}", g2.id),
            );
            let r = fix.delete_group(&g2).await;
            check(
                "delete in subaccount 3, exchange 2",
                r.is_ok(),
                format!("{r:?}"),
            );
        }
        Err(e) => check(
            "create in subaccount 3, exchange 2 (79, 100)",
            false,
            e.to_string(),
        ),
    }
    stop.cancel();
    let _ = task.await;
    println!("logged out; {failures} failure(s)");
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
