//! The loop: signals, admin calls, command outcomes, reads, stream events and ticks go into
//! the risk core one at a time, and what comes out is carried out. It never waits on the
//! exchange or the disk; it returns when asked to stop (SIGTERM, SIGINT, or the caller's
//! token) or when the stream task ends.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::events::to_input;
use super::signals::{KILL_SIGNALLED, Signals, notify};
use super::start::Running;
use crate::kalshi::auth::now_ms;
use crate::kalshi::fix::FixSession;
use crate::risk::engine::{Input, OperatorCommand};

/// How often the risk core gets a tick (timers, the watchdog, metrics).
const TICK: Duration = Duration::from_millis(250);

impl Running {
    pub(super) async fn run_loop(&mut self, signals: &mut Signals, shutdown: &CancellationToken) {
        let Running {
            shell,
            inbox,
            events,
            counters,
            health,
            ..
        } = self;
        let watchdog = sd_notify::watchdog_enabled();
        let mut tick = tokio::time::interval(TICK);
        let mut last_watchdog = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = signals.usr1.recv() => {
                    KILL_SIGNALLED.store(false, Ordering::SeqCst);
                    tracing::error!("SIGUSR1: kill switch");
                    shell.handle(Input::Operator { command: OperatorCommand::Kill, actor: "signal".into() });
                }
                _ = signals.term.recv() => break,
                _ = shutdown.cancelled() => break,
                _ = signals.int.recv() => break,
                _ = signals.hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    shell.begin_reload("signal", Vec::new());
                }
                Some(call) = inbox.admin.recv() => shell.admin(call).await,
                Some(prepared) = inbox.reload.recv() => shell.finish_reload(prepared),
                Some(listed) = inbox.reconcile.recv() => shell.finish_reconcile(listed),
                Some((since, why, read)) = inbox.backfill.recv() => shell.finish_backfill(since, why, read),
                Some((since, why)) = inbox.backfill_retry.recv() => shell.backfill(since, why),
                Some(input) = inbox.results.recv() => {
                    shell.action_done(&input);
                    shell.handle(input);
                }
                ev = events.recv() => match ev {
                    Some(ev) => {
                        if let Some(input) = to_input(ev) {
                            shell.handle(input);
                        }
                    }
                    None => {
                        tracing::error!("the user stream task ended");
                        break;
                    }
                },
                _ = tick.tick() => {
                    shell.handle(Input::Tick);
                    let now = now_ms();
                    shell.metrics.refresh(&mut shell.engine, counters, now);
                    shell.metrics.refresh_writes(&shell.writes);
                    // Readiness is the stream's: without FIX the daemon still guards (REST
                    // Triggers); the FIX session has its own metric and alert.
                    health.ready.store(counters.connected.load(Ordering::Relaxed), Ordering::Relaxed);
                    shell.metrics.fix_session(shell.control.fix_session().map(FixSession::is_logged_on));
                    // The watchdog is fed only while this loop makes progress.
                    if let Some(every) = watchdog && last_watchdog.elapsed() >= every / 2 {
                        notify(&[sd_notify::NotifyState::Watchdog]);
                        last_watchdog = tokio::time::Instant::now();
                    }
                }
            }
        }
    }
}
