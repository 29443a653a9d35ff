//! The daemon: the imperative shell around the risk core.
//!
//! Start ([`start`]): load `state.json` and the open create intents; list the groups on the
//! exchange for every subaccount the policies use; settle the open intents, adopt the groups
//! the state names (updating a limit that changed) and create the missing ones, each behind a
//! durable intent (see [`groups`]); restore the risk core, which re-triggers persisted trips and
//! the kill latch; persist, then close the intents; rebuild every window from the exchange's
//! fills; subscribe to the user stream; tell systemd `READY=1`.
//!
//! Run ([`event_loop`]): stream events, command results, ticks and signals go into the risk core
//! one at a time; what comes out is carried out ([`shell`]). Commands go out first, each on its
//! own task ([`executor`]; a Trigger is retried until the exchange confirms it); decisions are
//! then logged and handed to the writer thread ([`writer`]), which appends them to
//! `audit.jsonl` and rewrites `state.json` when state changed, so no Trigger ever waits for a
//! disk write. A reload ([`reload`]) is validated in the loop, prepares its groups in a task of
//! its own and is applied when that is done; reads of the exchange ([`reads`]) run the same
//! way: the loop never waits on the exchange. Admin calls are answered in the loop
//! ([`admin`]).
//!
//! Stop (SIGTERM/SIGINT): see [`Running::stop`] for the order. Groups stay as they are: the
//! exchange's limits keep holding.

mod admin;
mod cluster_link;
mod event_loop;
mod executor;
pub mod groups;
pub mod intents;
mod reads;
mod reload;
mod signals;
mod start;
pub mod store;
pub mod writer;

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::Loaded;
use crate::kalshi::{ExchangeError, Signer};
pub use signals::{KILL_SIGNALLED, register_early_signals};
use start::Running;
use store::{StateFile, StoreError};
use writer::WriteJob;

/// How long a stop waits for in-flight Triggers.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state: {0}")]
    Store(#[from] StoreError),
    #[error("exchange client: {0}")]
    Client(#[from] crate::kalshi::rest::ClientError),
    #[error("at start: {0}")]
    Exchange(#[from] ExchangeError),
    #[error("at start: {0}")]
    Prepare(#[from] groups::PrepareError),
    #[error("signals: {0}")]
    Signals(std::io::Error),
    #[error("metrics listener on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Metrics(#[from] crate::http::metrics::MetricsError),
    #[error("{0}")]
    Admin(crate::admin::SocketError),
    #[error("FIX control channel: {0}")]
    Fix(String),
    #[error(
        "stop: durable writes kept failing for {flush:?}; state.json may be behind, and the next start treats this stop as unclean (last error: {0})",
        flush = writer::STOP_FLUSH
    )]
    Unflushed(String),
}

/// One root cancellation for the whole daemon. Each part stops on a child of it, in the order
/// [`Running::stop`] follows; if the daemon returns early (a failed start), dropping this stops
/// every part at once.
pub(crate) struct Stops {
    _root: DropGuard,
    /// Exchange work: reads, reconciles and the Trigger loops' last attempts.
    pub work: CancellationToken,
    pub stream: CancellationToken,
    /// The signature refresher and the warm connections.
    pub armory: CancellationToken,
    pub http: CancellationToken,
    pub admin: CancellationToken,
    pub fix: CancellationToken,
    pub cluster: CancellationToken,
}

impl Stops {
    fn new() -> Self {
        let root = CancellationToken::new();
        Stops {
            work: root.child_token(),
            stream: root.child_token(),
            armory: root.child_token(),
            http: root.child_token(),
            admin: root.child_token(),
            fix: root.child_token(),
            cluster: root.child_token(),
            _root: root.drop_guard(),
        }
    }
}

/// Runs the daemon until SIGTERM, SIGINT or `shutdown` (the demo and tests stop it so).
pub async fn run(
    config_path: &std::path::Path,
    loaded: Loaded,
    signer: Signer,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    // Signal streams first: from here on SIGHUP, SIGTERM and SIGINT are handled, not fatal.
    let mut signals = signals::Signals::open().map_err(DaemonError::Signals)?;
    // A stop asked for during start-up (which waits on the exchange, and may take a while
    // against a slow one) ends it there, as a crash would: the next start settles what this
    // one had begun and re-applies a persisted trip or kill latch. Unless a kill was signalled
    // or asked for on the admin socket: start-up then goes on, so that the kill is engaged, its
    // Triggers sent and the latch persisted, and the daemon stops after.
    let start = start::start(config_path, loaded, signer, Stops::new());
    tokio::pin!(start);
    let mut stop_asked = None;
    let started = loop {
        tokio::select! {
            started = &mut start => break started,
            _ = signals.term.recv(), if stop_asked.is_none() => stop_asked = Some("SIGTERM"),
            _ = signals.int.recv(), if stop_asked.is_none() => stop_asked = Some("SIGINT"),
            _ = shutdown.cancelled(), if stop_asked.is_none() => stop_asked = Some("a shutdown request"),
        }
        if let Some(why) = stop_asked {
            if !signals::KILL_SEEN.load(Ordering::SeqCst)
                && !crate::admin::server::KILL_ASKED.load(Ordering::SeqCst)
            {
                signals::notify(&[sd_notify::NotifyState::Stopping]);
                tracing::warn!(
                    "stopped by {why} before start-up had finished; the next start settles what it had begun"
                );
                return Ok(());
            }
            tracing::warn!(
                "{why} during start-up with a kill asked for: start-up goes on until the kill is engaged, then the daemon stops"
            );
        }
    };
    let mut running = started?;
    if stop_asked.is_some() {
        running.shell.engage_signalled_kill();
        // The admin calls that came during start-up (a kill among them) are answered first.
        while let Ok(call) = running.inbox.admin.try_recv() {
            running.shell.admin(call).await;
        }
        return running.stop().await;
    }
    running.run_loop(&mut signals, &shutdown).await;
    running.stop().await
}

impl Running {
    /// The ordered stop: readiness off and `STOPPING=1`; an unfinished reload abandoned (its
    /// intents settle at the next start); the stream and the signature refresher stopped; the
    /// Trigger loops given [`STOP_GRACE`] to finish, their outcomes handed to the risk core;
    /// `state.json` written with `clean_stop` and the writer joined; the metrics listener and
    /// the admin socket closed; the FIX session logs out, once nothing can use it; last, in
    /// cluster mode, the member leaves etcd (its lease revoked).
    async fn stop(self) -> Result<(), DaemonError> {
        let Running {
            mut shell,
            mut inbox,
            health,
            writer,
            tasks,
            stops,
            ..
        } = self;
        health.ready.store(false, Ordering::Relaxed);
        signals::notify(&[sd_notify::NotifyState::Stopping]);
        if let Some(r) = shell.reload.take() {
            tracing::warn!("stopping during a reload: the reload is abandoned");
            r.task.abort();
        }
        tracing::info!("stopping: finishing in-flight Triggers");
        stops.stream.cancel();
        stops.armory.cancel();
        shell.tracker.close();
        stops.work.cancel();
        if tokio::time::timeout(STOP_GRACE, shell.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!("stop: some exchange calls did not finish in time");
        }
        while let Ok(input) = inbox.results.try_recv() {
            shell.handle(input);
        }
        shell.record();
        let final_state = StateFile {
            snapshot: shell.engine.snapshot(),
            clean_stop: true,
        };
        let write_health = shell.writes.clone();
        let writer_tx = shell.writer;
        let _ = writer_tx.send(WriteJob {
            state: Some(final_state),
            ..WriteJob::default()
        });
        drop(writer_tx);
        let (_store, written) = writer
            .join()
            .map_err(|_| DaemonError::Signals(std::io::Error::other("state writer panicked")))?;
        stops.http.cancel();
        let _ = tasks.http.await;
        stops.admin.cancel();
        let _ = tasks.admin.await;
        let _ = tasks.stream.await;
        let _ = tasks.armory.await;
        let _ = tasks.warm.await;
        stops.fix.cancel();
        if let Some(t) = tasks.fix {
            let _ = t.await;
        }
        // Last: the member leaves the cluster (its lease revoked) once nothing here acts.
        stops.cluster.cancel();
        if let Some(t) = tasks.cluster {
            let _ = t.await;
        }
        if !written {
            return Err(DaemonError::Unflushed(
                write_health.last_error().unwrap_or_default(),
            ));
        }
        tracing::info!("stopped cleanly");
        Ok(())
    }
}
