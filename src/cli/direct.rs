//! `kill --direct`: the break-glass kill for when the daemon itself is down. It triggers every
//! order group on the account straight through the exchange with the daemon's key, first and
//! without waiting on anything else; then it records the kill so that it outlives the command:
//! a daemon that answers on its admin socket is asked to engage its kill switch (it records and
//! holds it itself); otherwise the kill latch is written into `state.json` and a `kill_engaged`
//! line into `audit.jsonl`, so the daemon comes back with the latch engaged, re-triggers what
//! its scope covers, and refuses resets until an operator releases it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::admin::AdminClient;
use crate::daemon::store::{StateFile, Store};
use crate::kalshi::auth::now_ms;
use crate::kalshi::{GroupAddress, GroupChannel, RestClient, RestConfig};
use crate::risk::engine::{DecisionKind, decision};
use crate::risk::kill::KillRecord;

/// How long a running daemon gets to answer before the command records the kill itself.
const DAEMON_PATIENCE: Duration = Duration::from_secs(2);

/// Runs `kill --direct`: 0 when every group was triggered and the kill recorded, 1 when a group
/// could not be triggered, the account could not be listed, or the kill could not be recorded
/// (each named), 2 for a bad config or key.
pub fn run(config: &Path, socket: Option<&Path>) -> ExitCode {
    let (loaded, signer, rt) = match super::prepare(config, "kill --direct") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let actor = format!("cli --direct uid:{}", rustix::process::getuid().as_raw());
    rt.block_on(async move {
        let mut cfg = RestConfig::new(loaded.daemon.exchange.rest_url.clone());
        cfg.write_per_s = Some(loaded.daemon.exchange.write_budget_per_s);
        let api = match RestClient::new(&cfg, signer) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("kalshi-riskd kill --direct: {e}");
                return ExitCode::from(2);
            }
        };
        // The account's write bucket's size, read beside the kill (never before it): once
        // known, the kill bursts as far as the exchange allows rather than one second's worth.
        let fit = tokio::spawn({
            let api = api.clone();
            async move { api.fit_write_budget().await }
        });
        let (triggered, failed, listing) = trigger_all(&api).await;
        fit.abort();
        for (g, e) in &failed {
            eprintln!(
                "kalshi-riskd kill --direct: group {} (subaccount {}) NOT triggered: {e}",
                g.id, g.subaccount
            );
        }
        if let Some(e) = &listing {
            eprintln!("kalshi-riskd kill --direct: the account's groups could not be listed: {e}");
        }
        println!(
            "{} group(s) triggered straight through the exchange{}",
            triggered.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(", {} NOT triggered", failed.len())
            }
        );
        let reason = format!(
            "break-glass kill through the exchange: {} group(s) triggered, {} failed{}",
            triggered.len(),
            failed.len(),
            listing
                .as_ref()
                .map(|e| format!("; listing failed: {e}"))
                .unwrap_or_default()
        );
        let socket = socket
            .map(Path::to_path_buf)
            .unwrap_or_else(|| loaded.daemon.admin_socket.clone());
        let recorded = record(&socket, &loaded.daemon.state_dir, &actor, reason).await;
        match &recorded {
            Ok(how) => println!("{how}"),
            Err(e) => eprintln!("kalshi-riskd kill --direct: the kill is NOT recorded: {e}"),
        }
        if failed.is_empty() && listing.is_none() && recorded.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(super::exit::REFUSED)
        }
    })
}

/// Lists every group on the account and triggers them all at once; returns the triggered, the
/// failed with why, and the listing's error if it failed.
async fn trigger_all(
    api: &RestClient,
) -> (
    Vec<GroupAddress>,
    Vec<(GroupAddress, String)>,
    Option<String>,
) {
    let groups = match api.list_account_groups().await {
        Ok(g) => g,
        Err(e) => return (Vec::new(), Vec::new(), Some(e.to_string())),
    };
    let results = futures_util::future::join_all(
        groups
            .iter()
            .map(|(g, _)| async move { (g.clone(), api.trigger_group(g).await) }),
    )
    .await;
    let (mut triggered, mut failed) = (Vec::new(), Vec::new());
    for (g, r) in results {
        match r {
            Ok(()) => triggered.push(g),
            Err(e) => failed.push((g, e.to_string())),
        }
    }
    (triggered, failed, None)
}

/// Makes the kill outlive the command: through the daemon when it answers, else in its files.
async fn record(
    socket: &Path,
    state_dir: &Path,
    actor: &str,
    reason: String,
) -> Result<String, String> {
    let daemon = AdminClient::new(socket, DAEMON_PATIENCE);
    if daemon.status().await.is_ok() {
        return match daemon.kill().await {
            Ok(_) => Ok("the daemon answered: its kill switch is engaged".into()),
            Err(e) => Err(format!(
                "the daemon answered but refused its kill switch: {e}"
            )),
        };
    }
    let mut store = Store::open(state_dir).map_err(|e| e.to_string())?;
    let now = now_ms();
    let mut state = store
        .load()
        .map_err(|e| e.to_string())?
        .unwrap_or(StateFile {
            snapshot: Default::default(),
            clean_stop: false,
        });
    let mut line = decision(now, DecisionKind::KillEngaged, reason.clone(), actor);
    if let Some(k) = &state.snapshot.kill {
        line.reason = format!("{reason} (the latch was already engaged by {})", k.actor);
    } else {
        state.snapshot.kill = Some(KillRecord {
            at_ms: now,
            actor: actor.to_owned(),
            reason,
            evidence: None,
            shared: false,
        });
    }
    store.save(&state).map_err(|e| e.to_string())?;
    store.audit(&[line]).map_err(|e| e.to_string())?;
    Ok(format!(
        "no daemon answered on {}: the kill latch is written to {} and audit.jsonl; the daemon \
         holds it when it starts, until `kalshi-riskd release`",
        socket.display(),
        state_dir.join("state.json").display()
    ))
}
