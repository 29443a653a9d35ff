//! The loop and the shell's state. Signals, admin calls, command outcomes, reads, stream
//! events and ticks go into the risk core one at a time, and what comes out takes one path to
//! the world: commands go to the executor first (each on its own task), then decisions are
//! logged and handed to the durable writer, so no Trigger ever waits for a disk write. The loop
//! never waits on the exchange or the disk; it returns when asked to stop (SIGTERM, SIGINT, or
//! the caller's token) or when the stream task ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::groups::Prepared;
use super::intents::IntentLog;
use super::reads::{BackfillRead, Backfilling, Reconciling};
use super::reload::ReloadInFlight;
use super::signals::{KILL_SIGNALLED, Signals, notify};
use super::start::Running;
use super::store::StateFile;
use super::writer::{WriteHealth, WriteJob};
use crate::admin::AdminResult;
use crate::config::Loaded;
use crate::http::Metrics;
use crate::kalshi::auth::now_ms;
use crate::kalshi::stream::{Health, StreamEvent};
use crate::kalshi::{GroupAddress, GroupControl};
use crate::risk::GroupId;
use crate::risk::engine::{
    DecisionKind, Fill, GroupChange, Input, OperatorCommand, Output, RiskEngine, StreamHealth,
};

/// An admin caller waiting for an answer.
pub(super) type AdminReply = tokio::sync::oneshot::Sender<crate::admin::AdminResult>;

pub(super) struct Shell {
    pub(super) metrics: Arc<Metrics>,
    pub(super) loaded: Loaded,
    pub(super) config_path: std::path::PathBuf,
    pub(super) engine: RiskEngine,
    pub(super) control: GroupControl,
    pub(super) results: mpsc::UnboundedSender<Input>,
    pub(super) writer: std::sync::mpsc::Sender<WriteJob>,
    pub(super) tracker: TaskTracker,
    pub(super) stop: CancellationToken,
    pub(super) intents: Arc<IntentLog>,
    pub(super) writes: Arc<WriteHealth>,
    pub(super) reload: Option<ReloadInFlight>,
    pub(super) reload_done: mpsc::UnboundedSender<Result<Prepared, String>>,
    /// Create intents to close with the next state write.
    pub(super) close_after_save: Vec<u64>,
    /// Decisions not yet logged and handed to the writer: those of an input that sent a
    /// Trigger wait until the loop has let the Trigger's task run ([`Shell::record`]).
    pub(super) unrecorded: Vec<crate::risk::engine::Decision>,
    pub(super) reconciling: Reconciling,
    pub(super) reconcile_done: mpsc::UnboundedSender<Result<Vec<GroupAddress>, String>>,
    pub(super) backfilling: Backfilling,
    pub(super) backfill_done: mpsc::UnboundedSender<BackfillRead>,
    pub(super) backfill_retry: mpsc::UnboundedSender<(i64, &'static str)>,
    /// Where a backfill asked for "since the start" begins: the start-up rebuild's time.
    pub(super) backfill_floor_ms: i64,
    /// The Trigger retry loop of each group, if one may still be running: a reset the exchange
    /// confirmed later ends it, or its next attempt would undo the reset.
    pub(super) triggering: HashMap<GroupId, CancellationToken>,
    /// Trigger loops that were running when a reset of their group was sent: ended once the
    /// exchange confirms that reset (a Trigger decided after the reset is not among them).
    pub(super) reset_supersedes: HashMap<GroupId, Vec<CancellationToken>>,
    /// Cluster mode: the etcd task and what it last reported.
    pub(super) cluster: Option<super::cluster_link::ClusterLink>,
}

/// Decisions that change what `state.json` holds.
fn changes_state(kind: DecisionKind) -> bool {
    use DecisionKind as D;
    matches!(
        kind,
        D::Trip
            | D::TripConfirmed
            | D::Reset
            | D::ResetFailed
            | D::Settled
            | D::KillEngaged
            | D::KillReleased
            | D::KillShared
            | D::Reload
            | D::Retired
    )
}

impl Shell {
    pub(super) fn handle(&mut self, input: Input) -> Vec<crate::risk::engine::Decision> {
        let mut out = Vec::new();
        self.engine.handle(input, now_ms(), &mut out);
        let decisions = self.dispatch(out);
        // Cluster mode: a new local engagement is published (after its Triggers went out), and
        // so is a trip made while guarding a lost member's strategy.
        if self.cluster.is_some() {
            if decisions
                .iter()
                .any(|d| d.event == DecisionKind::KillEngaged)
            {
                self.cluster_sync();
            }
            if decisions.iter().any(|d| d.event == DecisionKind::Trip) {
                self.cluster_publish_trips();
            }
        }
        decisions
    }

    /// Carries out commands (each on its own task), then records decisions; returns the
    /// decisions. When a Trigger went out, the record waits until the loop has yielded, so the
    /// Trigger's task runs first ([`Shell::trigger_pending`]); records stay in order.
    pub(super) fn dispatch(&mut self, out: Vec<Output>) -> Vec<crate::risk::engine::Decision> {
        let mut decisions = Vec::new();
        let mut fired = false;
        for o in out {
            match o {
                Output::Command(c) => {
                    fired |= matches!(c, crate::risk::engine::Command::Trigger { .. });
                    self.spawn(c)
                }
                Output::Decision(d) => decisions.push(d),
            }
        }
        if decisions.is_empty() {
            return decisions;
        }
        self.unrecorded.extend(decisions.iter().cloned());
        if !fired {
            self.record();
        }
        decisions
    }

    /// Engages the kill if SIGUSR1 came before the loop could take it (during start-up).
    pub(super) fn engage_signalled_kill(&mut self) {
        if KILL_SIGNALLED.swap(false, Ordering::SeqCst) {
            tracing::error!("SIGUSR1 (during start-up): kill switch");
            self.handle(Input::Operator {
                command: OperatorCommand::Kill,
                actor: "signal".into(),
            });
        }
    }

    /// Whether decisions wait for the Trigger tasks just spawned to run.
    pub(super) fn trigger_pending(&self) -> bool {
        !self.unrecorded.is_empty()
    }

    /// Logs the decisions not yet recorded and hands them (with the state, if they changed it)
    /// to the writer, in order.
    pub(super) fn record(&mut self) {
        if self.unrecorded.is_empty() {
            return;
        }
        let decisions = std::mem::take(&mut self.unrecorded);
        for d in &decisions {
            match d.event {
                DecisionKind::Reload => self.metrics.reload(true),
                DecisionKind::ReloadFailed => self.metrics.reload(false),
                _ => {}
            }
        }
        for d in decisions
            .iter()
            .filter(|d| d.event == DecisionKind::TripConfirmed)
        {
            let trip = self
                .engine
                .strategies()
                .iter()
                .find(|s| Some(&s.policy.name) == d.strategy.as_ref())
                .and_then(|s| s.trip());
            if let Some(t) = trip
                && let Some(done) = t.confirmed_ms
            {
                self.metrics
                    .observe_trigger_latency(Duration::from_millis((done - t.at_ms).max(0) as u64));
            }
        }
        for d in decisions.iter().filter(|d| d.event != DecisionKind::Fill) {
            tracing::warn!(event = ?d.event, strategy = d.strategy.as_deref().unwrap_or(""), group = d.group_id.as_ref().map(|g| g.as_str()).unwrap_or(""), actor = %d.actor, reason = %d.reason, "decision");
        }
        let state = decisions
            .iter()
            .any(|d| changes_state(d.event))
            .then(|| StateFile {
                snapshot: self.engine.snapshot(),
                clean_stop: false,
            });
        if self
            .writer
            .send(WriteJob {
                decisions,
                close_intents: if state.is_some() {
                    std::mem::take(&mut self.close_after_save)
                } else {
                    Vec::new()
                },
                state,
                done: None,
            })
            .is_err()
        {
            tracing::error!("the state writer has stopped; decisions are not being recorded");
        }
    }

    /// Answers admin callers once everything recorded so far is durable, without holding up
    /// the loop.
    pub(super) fn answer_when_durable(&mut self, replies: Vec<AdminReply>, answer: AdminResult) {
        if replies.is_empty() {
            return;
        }
        // Answered even if the writer has stopped (its own metric and alert say so): the
        // decision was made and its commands sent.
        self.after_durable(move |_| {
            for r in replies {
                let _ = r.send(answer.clone());
            }
        });
    }

    /// Runs `then(durable)` once everything recorded so far is durable (`true`), or once the
    /// writer has stopped without saying so (`false`), without holding up the loop.
    pub(super) fn after_durable(&mut self, then: impl FnOnce(bool) + Send + 'static) {
        self.record();
        let (done, durable) = tokio::sync::oneshot::channel();
        let _ = self.writer.send(WriteJob {
            decisions: Vec::new(),
            state: None,
            close_intents: Vec::new(),
            done: Some(done),
        });
        tokio::spawn(async move {
            then(durable.await.is_ok());
        });
    }

    /// Waits until everything recorded so far is durable (the writer works in order).
    pub(super) async fn flush(&mut self) {
        self.record();
        let (done, durable) = tokio::sync::oneshot::channel();
        let job = WriteJob {
            decisions: Vec::new(),
            state: None,
            close_intents: Vec::new(),
            done: Some(done),
        };
        if self.writer.send(job).is_ok() {
            let _ = durable.await;
        }
    }
}

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
        shell.record();
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
                Some(ev) = cluster_event(&mut inbox.cluster) => shell.on_cluster(ev),
                Some(input) = inbox.results.recv() => {
                    shell.action_done(&input);
                    shell.handle(input);
                }
                ev = events.recv() => match ev {
                    Some(ev) => {
                        if let Some(input) = to_input(ev) {
                            shell.handle(input);
                        }
                        // Stream events already queued are taken now, a bounded few, instead
                        // of each going through every branch above (under load the stream is
                        // the busy one). A Trigger sent ends the run: its task goes first.
                        for _ in 0..STREAM_RUN {
                            if shell.trigger_pending() {
                                break;
                            }
                            let Ok(ev) = events.try_recv() else { break };
                            if let Some(input) = to_input(ev) {
                                shell.handle(input);
                            }
                        }
                    }
                    None => {
                        tracing::error!("the user stream task ended");
                        break;
                    }
                },
                _ = tick.tick() => {
                    shell.handle(Input::Tick);
                    shell.cluster_register();
                    shell.cluster_publish_trips();
                    let now = now_ms();
                    shell.metrics.refresh(&mut shell.engine, counters, now);
                    shell.metrics.refresh_writes(&shell.writes);
                    shell.metrics.clock_offset(shell.control.rest_client().clock_offset_ms());
                    // Readiness is the stream's: without FIX the daemon still guards (REST
                    // Triggers); the FIX session has its own metric and alert.
                    health.ready.store(counters.connected.load(Ordering::Relaxed), Ordering::Relaxed);
                    shell.metrics.fix_session(shell.control.fix_session().map(|f| (f.is_logged_on(), f.logons())));
                    // The watchdog is fed only while this loop makes progress.
                    if let Some(every) = watchdog && last_watchdog.elapsed() >= every / 2 {
                        notify(&[sd_notify::NotifyState::Watchdog]);
                        last_watchdog = tokio::time::Instant::now();
                    }
                }
            }
            // A Trigger went out: let its task run (it sits in this worker's next slot) before
            // the decisions are logged, the state snapshotted and the writer told.
            if shell.trigger_pending() {
                tokio::task::yield_now().await;
                shell.record();
            }
        }
        shell.record();
    }
}

/// Stream events the loop takes in one turn after the one it woke for, at most: the signals,
/// the admin socket and the results of actions wait no longer than that many (a few hundred
/// microseconds).
const STREAM_RUN: usize = 64;

/// The next report of cluster mode's etcd task; never, alone on a host.
async fn cluster_event(
    events: &mut Option<mpsc::UnboundedReceiver<crate::cluster::ClusterEvent>>,
) -> Option<crate::cluster::ClusterEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) fn to_input(ev: StreamEvent) -> Option<Input> {
    use crate::kalshi::ws::GroupEventKind as K;
    Some(match ev {
        StreamEvent::Fill(f) => Input::Fill(Fill {
            price: f.price_paid(),
            trade_id: f.trade_id,
            order_id: f.order_id,
            count: f.count,
            ts_ms: f.ts_ms,
        }),
        StreamEvent::Order(o) => Input::OrderGroup {
            order_id: o.order_id,
            group: o.group_id,
        },
        StreamEvent::Group(g) => Input::GroupEvent {
            group: g.group_id,
            change: match g.kind {
                K::Created => GroupChange::Created,
                K::Triggered => GroupChange::Triggered,
                K::Reset => GroupChange::Reset,
                K::Deleted => GroupChange::Deleted,
                K::LimitUpdated => GroupChange::LimitUpdated(g.limit),
            },
        },
        StreamEvent::Health(h) => Input::Stream(match h {
            Health::Connected => StreamHealth::Connected,
            Health::Disconnected { .. } => StreamHealth::Disconnected,
            Health::Blind { .. } => StreamHealth::Blind,
            Health::SeqGap { expected, got } => StreamHealth::Lossy(format!(
                "order_group_updates seq {got} after {}",
                expected - 1
            )),
            Health::Overflow { dropped } => {
                StreamHealth::Lossy(format!("{dropped} stream events dropped"))
            }
            Health::ServerError { .. } => return None,
            Health::SubscriptionLost { channel, reason } => {
                StreamHealth::Lossy(format!("the subscription to {channel} was lost: {reason}"))
            }
            Health::Lossy { reason } => StreamHealth::Lossy(reason),
        }),
    })
}
