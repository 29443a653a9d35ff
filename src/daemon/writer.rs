//! The durable writer: one thread that appends decisions to `audit.jsonl`, rewrites
//! `state.json` and closes create intents, in order, off the risk loop.
//!
//! Nothing handed to it is ever dropped. A write that fails (a full disk, a read-only or
//! vanished directory) is retried with backoff until it succeeds; meanwhile new batches are
//! merged in (decisions appended in order, only the newest state kept, since each state
//! supersedes the last), so the retry always writes everything so far. While writes fail the
//! daemon says so: [`WriteHealth`] feeds a metric, `/readyz` (503) and `status`. The risk core
//! keeps the truth in memory the whole time, so a trip or the kill latch is on disk as soon as
//! the disk takes writes again.
//!
//! At stop the writer gets a bounded time ([`STOP_FLUSH`]) to write what is left; if it cannot,
//! the stop says so and exits with an error, and the next start treats the stop as unclean.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::intents::IntentLog;
use super::store::{StateFile, Store};
use crate::risk::engine::Decision;

/// How long a stop waits for writes that keep failing.
pub const STOP_FLUSH: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// One batch for the writer.
#[derive(Debug, Default)]
pub struct WriteJob {
    pub decisions: Vec<Decision>,
    pub state: Option<StateFile>,
    /// Create intents to close once `state` is durable (it names their groups).
    pub close_intents: Vec<u64>,
    /// Told once this job, and so every job before it, is durable.
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Whether durable writes are succeeding, for metrics, `/readyz` and `status`.
#[derive(Debug, Default)]
pub struct WriteHealth {
    /// True from a failed write until everything pending is written.
    pub failing: AtomicBool,
    /// Failed attempts to write `state.json`.
    pub state_failures: AtomicU64,
    /// Failed attempts to append to `audit.jsonl`.
    pub audit_failures: AtomicU64,
    /// The last failure, for `status`.
    pub last_error: Mutex<Option<String>>,
}

impl WriteHealth {
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn failed(&self, counter: &AtomicU64, error: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(%error, "a durable write failed; retrying until it succeeds");
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }
}

/// Everything received and not yet durable.
#[derive(Default)]
struct Pending {
    decisions: Vec<Decision>,
    state: Option<StateFile>,
    close_intents: Vec<u64>,
    done: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Pending {
    fn merge(&mut self, job: WriteJob) {
        self.decisions.extend(job.decisions);
        if job.state.is_some() {
            self.state = job.state;
        }
        self.close_intents.extend(job.close_intents);
        self.done.extend(job.done);
    }

    fn is_empty(&self) -> bool {
        self.decisions.is_empty()
            && self.state.is_none()
            && self.close_intents.is_empty()
            && self.done.is_empty()
    }
}

/// The writer thread: joined, it gives back the store and whether everything was written.
pub type Writer = std::thread::JoinHandle<(Store, bool)>;

/// Starts the writer thread. It runs until every sender is dropped, then writes what is left
/// (for at most [`STOP_FLUSH`] if writes fail) and returns the store and whether everything
/// was written.
pub fn spawn(
    store: Store,
    intents: Arc<IntentLog>,
    health: Arc<WriteHealth>,
) -> std::io::Result<(Sender<WriteJob>, Writer)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("state-writer".into())
        .spawn(move || run(store, &intents, &health, rx))?;
    Ok((tx, handle))
}

fn run(
    mut store: Store,
    intents: &IntentLog,
    health: &WriteHealth,
    rx: Receiver<WriteJob>,
) -> (Store, bool) {
    let mut pending = Pending::default();
    let mut retry = FIRST_RETRY;
    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        // Wait for work when there is none; while retrying, wait at most the backoff.
        let wait = if pending.is_empty() {
            None
        } else {
            Some(retry)
        };
        let got = match (wait, stopping) {
            (_, Some(_)) => Err(RecvTimeoutError::Disconnected),
            (None, None) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            (Some(w), None) => rx.recv_timeout(w),
        };
        match got {
            Ok(job) => {
                pending.merge(job);
                while let Ok(job) = rx.try_recv() {
                    pending.merge(job);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let since = *stopping.get_or_insert_with(tokio::time::Instant::now);
                if pending.is_empty() {
                    return (store, true);
                }
                if since.elapsed() >= STOP_FLUSH {
                    tracing::error!(
                        decisions = pending.decisions.len(),
                        state = pending.state.is_some(),
                        "stopping with durable writes still failing; the next start will see an unclean stop"
                    );
                    return (store, false);
                }
                std::thread::sleep(retry);
            }
        }
        if write(&mut store, intents, health, &mut pending) {
            retry = FIRST_RETRY;
        } else {
            retry = (retry * 2).min(MAX_RETRY);
        }
    }
}

/// One attempt at everything pending; true when all of it is durable.
fn write(
    store: &mut Store,
    intents: &IntentLog,
    health: &WriteHealth,
    pending: &mut Pending,
) -> bool {
    if !pending.decisions.is_empty() {
        match store.audit(&pending.decisions) {
            Ok(()) => pending.decisions.clear(),
            Err(e) => {
                health.failed(&health.audit_failures, e.to_string());
                return false;
            }
        }
    }
    if let Some(state) = &pending.state {
        match store.save(state) {
            Ok(()) => pending.state = None,
            Err(e) => {
                health.failed(&health.state_failures, e.to_string());
                return false;
            }
        }
    }
    // Only once state.json names their groups; a failed close leaves them open, and settling
    // them again finds the groups recorded.
    if let Err(e) = intents.close(&pending.close_intents) {
        tracing::error!(error = %e, "cannot close create intents; they are settled at the next start");
    }
    pending.close_intents.clear();
    for done in pending.done.drain(..) {
        let _ = done.send(());
    }
    if health.failing.swap(false, Ordering::Relaxed) {
        tracing::info!("durable writes succeed again; everything pending is written");
    }
    true
}
