//! The daemon: the imperative shell around the risk core.
//!
//! Start: load `state.json` and the open create intents; list the groups on the exchange for
//! every subaccount the policies use; settle the open intents, adopt the groups the state names
//! (updating a limit that changed) and create the missing ones, each behind a durable intent
//! (see [`groups`]); restore the risk core, which re-triggers persisted trips and the kill
//! latch; persist, then close the intents; subscribe to the user stream; tell systemd
//! `READY=1`.
//!
//! Run: stream events, command results, ticks and signals go into the risk core one at a time;
//! what comes out is carried out. Commands go out first, each on its own task (a Trigger is
//! retried until the exchange confirms it); decisions are then logged and handed to the writer
//! thread, which appends them to `audit.jsonl` and rewrites `state.json` when state changed, so
//! no Trigger ever waits for a disk write. A reload is validated in the loop, prepares its
//! groups in a task of its own and is applied when that is done: the loop never waits on the
//! exchange.
//!
//! Stop (SIGTERM/SIGINT): stop taking new work, let in-flight Triggers finish (bounded), write
//! the state with `clean_stop`, exit 0. Groups stay as they are: the exchange's limits keep
//! holding.

mod admin;
pub mod groups;
pub mod intents;
pub mod store;
pub mod writer;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::api::Reloaded;
use crate::admin::{AdminAnswer, AdminError, AdminResult};
use crate::config::Loaded;
use crate::http::{HealthState, Metrics};
use crate::kalshi::auth::now_ms;
use crate::kalshi::fix::{FixConfig, FixSession};
use crate::kalshi::rest::{RestConfig, RetryPolicy};
use crate::kalshi::stream::{self, Health, StreamConfig, StreamEvent};
use crate::kalshi::{ExchangeError, GroupAddress, GroupControl, RestClient, Signer};
use crate::risk::engine::{
    Action, BACKFILL_MARGIN_MS, Command, DecisionKind, Fill, GroupChange, Input, OperatorCommand,
    Output, RiskEngine, SWEEP_REASON, StreamHealth,
};
use crate::risk::{Dollars, GroupId};
use groups::Prepared;
use intents::IntentLog;
use store::{StateFile, Store, StoreError};
use writer::{WriteHealth, WriteJob};

/// How long a stop waits for in-flight Triggers.
const STOP_GRACE: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(250);
/// How long a start waits for the FIX session's logon before it goes on over REST (the session
/// keeps logging on in the background).
const FIX_LOGON_WAIT: Duration = Duration::from_secs(3);

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

/// Set by SIGUSR1 from the moment the process starts (registered before the runtime exists),
/// so a kill sent during start-up is not lost.
pub static KILL_SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Registers the SIGUSR1 flag. Call first thing in `main`, before any thread starts.
pub fn register_early_signals() -> std::io::Result<()> {
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, &KILL_SIGNALLED).map(drop)
}

/// Tells the service manager about a state change, without ever waiting for it: the send is
/// non-blocking, so a manager that stops reading (its socket buffer full) costs a dropped
/// notification and a warning, never a stalled risk loop.
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), states) {
        tracing::warn!(error = %e, "service manager notification not sent");
    }
}

fn notify_to(
    socket: Option<&std::ffi::OsStr>,
    states: &[sd_notify::NotifyState],
) -> std::io::Result<()> {
    let Some(path) = socket else {
        return Ok(());
    };
    let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    sock.connect(path)?;
    sock.set_nonblocking(true)?;
    let sent = sock.send(msg.as_bytes())?;
    if sent != msg.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "incomplete notification",
        ));
    }
    Ok(())
}

/// The price paid per contract: the YES price for YES, one dollar less it for NO, the larger
/// when the side is not known.
fn price_paid(f: &crate::kalshi::ws::Fill) -> Dollars {
    let no = Dollars::ONE - f.yes_price;
    match f.bought_yes {
        Some(true) => f.yes_price,
        Some(false) => no,
        None => f.yes_price.max(no),
    }
}

fn to_input(ev: StreamEvent) -> Option<Input> {
    use crate::kalshi::ws::GroupEventKind as K;
    Some(match ev {
        StreamEvent::Fill(f) => Input::Fill(Fill {
            price: price_paid(&f),
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

/// An admin caller waiting for an answer.
type AdminReply = tokio::sync::oneshot::Sender<crate::admin::AdminResult>;

/// A reload whose exchange work is running outside the loop.
struct ReloadInFlight {
    actor: String,
    new: Loaded,
    replies: Vec<AdminReply>,
    task: tokio::task::JoinHandle<()>,
    /// Another reload asked for meanwhile: its actor and callers.
    again: Option<(String, Vec<AdminReply>)>,
}

struct Shell {
    metrics: Arc<Metrics>,
    loaded: Loaded,
    config_path: std::path::PathBuf,
    engine: RiskEngine,
    control: GroupControl,
    results: mpsc::UnboundedSender<Input>,
    writer: std::sync::mpsc::Sender<WriteJob>,
    tracker: TaskTracker,
    stop: CancellationToken,
    intents: Arc<IntentLog>,
    writes: Arc<WriteHealth>,
    reload: Option<ReloadInFlight>,
    reload_done: mpsc::UnboundedSender<Result<Prepared, String>>,
    /// Create intents to close with the next state write.
    close_after_save: Vec<u64>,
    reconciling: Reconciling,
    reconcile_done: mpsc::UnboundedSender<Result<Vec<GroupAddress>, String>>,
    backfilling: Backfilling,
    backfill_done: mpsc::UnboundedSender<BackfillRead>,
    backfill_retry: mpsc::UnboundedSender<(i64, &'static str)>,
    /// Where a backfill asked for "since the start" begins: the start-up rebuild's time.
    backfill_floor_ms: i64,
    /// The Trigger retry loop of each group, if one may still be running: a reset the exchange
    /// confirmed later ends it, or its next attempt would undo the reset.
    triggering: HashMap<GroupId, CancellationToken>,
    /// Trigger loops that were running when a reset of their group was sent: ended once the
    /// exchange confirms that reset (a Trigger decided after the reset is not among them).
    reset_supersedes: HashMap<GroupId, Vec<CancellationToken>>,
}

/// A finished backfill read: from when, why, and the inputs it read (or why it could not).
type BackfillRead = (i64, &'static str, Result<Vec<Input>, String>);

/// Backfills in flight (see [`Shell::backfill`]).
#[derive(Debug, Default)]
struct Backfilling {
    running: bool,
    /// Another one asked for meanwhile, from this time, and why.
    again: Option<(i64, &'static str)>,
    /// The last one failed: the next waits.
    pause: bool,
    /// Failures in a row (the wait doubles with each, up to a minute).
    failures: u32,
}

/// The account's fills from `since_ms` on, as risk-core inputs: first each fill's order and its
/// group, then the fills, oldest first. Fills are read once for every subaccount and once per
/// subaccount the policies use (whether the exchange lists every subaccount's fills without
/// one is not documented; duplicates are dropped here and by `trade_id` in the risk core).
/// Orders are mapped in bulk from `GET /portfolio/orders` (1,000 a page, newest first, until
/// every fill's order is found), not one lookup each: a day of fills may span thousands of
/// orders, and a breach among them must not wait behind single lookups. An order not found
/// there is looked up on its own by the risk core's usual path.
async fn read_fills(
    rest: &RestClient,
    since_ms: i64,
    subaccounts: &[u8],
) -> Result<Vec<Input>, ExchangeError> {
    let since_s = since_ms.div_euclid(1000);
    let mut fills = rest.list_fills(since_s, None).await?;
    let mut asked = BTreeSet::new();
    for &s in subaccounts {
        if asked.insert(s) {
            fills.extend(rest.list_fills(since_s, Some(s)).await?);
        }
    }
    let mut seen = std::collections::HashSet::new();
    fills.retain(|f| f.ts_ms >= since_ms && seen.insert(f.trade_id.clone()));
    fills.sort_by_key(|f| f.ts_ms);
    let mut needed: std::collections::HashSet<&str> =
        fills.iter().map(|f| f.order_id.as_str()).collect();
    let mut inputs = Vec::new();
    let mut cursor = String::new();
    while !needed.is_empty() {
        let (orders, next) = match rest.orders_page(&cursor).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, left = needed.len(), "cannot list orders to map read-back fills; looking them up one by one");
                break;
            }
        };
        for o in orders {
            if needed.remove(o.order_id.as_str()) {
                inputs.push(Input::OrderGroup {
                    order_id: o.order_id,
                    group: o.group_id,
                });
            }
        }
        if next.is_empty() || next == cursor {
            break;
        }
        cursor = next;
    }
    inputs.extend(
        fills
            .into_iter()
            .filter_map(|f| to_input(StreamEvent::Fill(f))),
    );
    Ok(inputs)
}

/// Reconciles in flight (see [`Shell::reconcile`]).
#[derive(Debug, Default)]
struct Reconciling {
    running: bool,
    again: bool,
    /// When the last one started listing.
    last: Option<tokio::time::Instant>,
}

/// The least time between two reconciles' listings.
const RECONCILE_GAP: Duration = Duration::from_secs(2);

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
            | D::Reload
            | D::Retired
    )
}

impl Shell {
    fn handle(&mut self, input: Input) -> Vec<crate::risk::engine::Decision> {
        let mut out = Vec::new();
        self.engine.handle(input, now_ms(), &mut out);
        self.dispatch(out)
    }

    /// Commands first (each on its own task), then the record.
    /// Carries out commands and records decisions; returns the decisions.
    fn dispatch(&mut self, out: Vec<Output>) -> Vec<crate::risk::engine::Decision> {
        let mut decisions = Vec::new();
        for o in out {
            match o {
                Output::Command(c) => self.spawn(c),
                Output::Decision(d) => decisions.push(d),
            }
        }
        if decisions.is_empty() {
            return decisions;
        }
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
                .and_then(|s| s.trip.as_ref());
            if let Some(t) = trip
                && let Some(done) = t.confirmed_ms
            {
                self.metrics
                    .observe_trigger_latency(Duration::from_millis((done - t.at_ms).max(0) as u64));
            }
        }
        for d in &decisions {
            tracing::warn!(event = ?d.event, strategy = d.strategy.as_deref().unwrap_or(""), group = d.group_id.as_ref().map(|g| g.as_str()).unwrap_or(""), actor = %d.actor, reason = %d.reason, "decision");
        }
        let state = decisions
            .iter()
            .any(|d| changes_state(d.event))
            .then(|| StateFile {
                snapshot: self.engine.snapshot(),
                clean_stop: false,
            });
        let returned = decisions.clone();
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
        returned
    }

    /// Starts a reload (SIGHUP or the admin API). Everything is validated first, in the loop
    /// (reading files is quick); on any error nothing changes. The exchange work (listing,
    /// settling intents, creating groups) then runs in a task of its own, and its result comes
    /// back to the loop as [`Shell::finish_reload`], so fills, trips, kills, admin calls and the
    /// watchdog go on meanwhile. A reload asked for while one is running follows it, once.
    fn begin_reload(&mut self, actor: &str, replies: Vec<AdminReply>) {
        use crate::risk::engine::decision;
        if let Some(r) = &mut self.reload {
            tracing::info!("a reload is already running; another follows it");
            let queued = r
                .again
                .get_or_insert_with(|| (actor.to_owned(), Vec::new()));
            queued.1.extend(replies);
            return;
        }
        // systemd (253+) wants MONOTONIC_USEC in the same message as RELOADING=1.
        match sd_notify::NotifyState::monotonic_usec_now() {
            Ok(m) => notify(&[sd_notify::NotifyState::Reloading, m]),
            Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
        }
        let refuse = |shell: &mut Shell, why: String, replies: Vec<AdminReply>| {
            tracing::error!(reason = %why, "reload refused");
            let d = decision(now_ms(), DecisionKind::ReloadFailed, why.clone(), actor);
            shell.dispatch(vec![Output::Decision(d)]);
            notify(&[sd_notify::NotifyState::Ready]);
            for r in replies {
                let _ = r.send(Err(AdminError::ReloadFailed(why.clone())));
            }
        };
        let new = match crate::config::load(&self.config_path, std::env::vars()) {
            Ok(new) => new,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(error = %e, "reload refused");
                }
                let why = format!(
                    "{} error(s); nothing changed: {}",
                    errors.0.len(),
                    errors.0.first().map(|e| e.to_string()).unwrap_or_default()
                );
                return refuse(self, why, replies);
            }
        };
        if new.enabled().next().is_none() {
            let why = format!(
                "{}: holds no enabled policy; a reload that would leave no strategy is refused; nothing changed",
                new.daemon.policies_dir.display()
            );
            return refuse(self, why, replies);
        }
        let snapshot = self.engine.snapshot();
        let (control, intents, done) = (
            self.control.clone(),
            self.intents.clone(),
            self.reload_done.clone(),
        );
        let loaded = new.clone();
        let task = tokio::spawn(async move {
            let result = groups::prepare(&control, &intents, &loaded, &snapshot, false)
                .await
                .map_err(|e| format!("could not prepare groups: {e}; nothing changed"));
            let _ = done.send(result);
        });
        self.reload = Some(ReloadInFlight {
            actor: actor.to_owned(),
            new,
            replies,
            task,
            again: None,
        });
    }

    /// Applies a reload whose exchange work is done: removed strategies are retired per their
    /// `retire.action`, new and changed policies go through the risk core (a lowered group limit
    /// waits for its window to drain), and the groups prepared are assigned. Settings that
    /// need a restart are reported and left as they are.
    fn finish_reload(&mut self, result: Result<Prepared, String>) {
        use crate::config::RetireAction;
        use crate::risk::engine::decision;
        let Some(r) = self.reload.take() else {
            return;
        };
        let now = now_ms();
        let (actor, new) = (r.actor, r.new);
        let answer = match result {
            Err(why) => {
                tracing::error!(reason = %why, "reload refused");
                let d = decision(now, DecisionKind::ReloadFailed, why.clone(), &actor);
                self.dispatch(vec![Output::Decision(d)]);
                Err(AdminError::ReloadFailed(why))
            }
            Ok(prepared) => {
                let old = &self.loaded.daemon;
                let mut restart_only = Vec::new();
                if new.daemon.exchange != old.exchange {
                    restart_only.push("[exchange]");
                }
                if new.daemon.http_listen != old.http_listen
                    || new.daemon.admin_socket != old.admin_socket
                {
                    restart_only.push("[http]");
                }
                if new.daemon.state_dir != old.state_dir {
                    restart_only.push("[state]");
                }
                if new.daemon.blind_after != old.blind_after {
                    restart_only.push("[stream]");
                }
                if new.daemon.log_format != old.log_format {
                    restart_only.push("[log]");
                }
                if new.daemon.account_limit != old.account_limit
                    || new.daemon.kill_scope != old.kill_scope
                    || new.daemon.kill_hold != old.kill_hold
                {
                    restart_only.push("[account]/[kill]");
                }
                if !restart_only.is_empty() {
                    tracing::warn!(sections = ?restart_only, "these settings changed and take effect at the next restart");
                }
                let staying: BTreeSet<&str> = new.enabled().map(|p| p.risk.name.as_str()).collect();
                let mut out: Vec<Output> = prepared
                    .decisions
                    .into_iter()
                    .map(Output::Decision)
                    .collect();
                // Strategies going away: retire their groups as their (old) policy says.
                for p in self
                    .loaded
                    .enabled()
                    .filter(|p| !staying.contains(p.risk.name.as_str()))
                {
                    let name = p.risk.name.clone();
                    let gs: Vec<GroupAddress> = self
                        .engine
                        .managed_groups()
                        .filter(|(s, _)| *s == name)
                        .map(|(_, g)| g.clone())
                        .collect();
                    let mut d = decision(
                        now,
                        DecisionKind::Retired,
                        format!(
                            "policy removed; groups {}; its state is remembered",
                            match p.retire {
                                RetireAction::Keep => "kept as they are",
                                RetireAction::Trigger => "triggered",
                                RetireAction::Delete => "deleted",
                            }
                        ),
                        &actor,
                    );
                    d.strategy = Some(name.clone());
                    out.push(Output::Decision(d));
                    for g in gs {
                        self.control.rest_client().armory().disarm(&g);
                        match p.retire {
                            RetireAction::Keep => {}
                            RetireAction::Trigger => {
                                out.push(Output::Command(Command::Trigger { group: g }))
                            }
                            RetireAction::Delete => {
                                let control = self.control.clone();
                                self.tracker.spawn(async move {
                                    if let Err(e) = control.delete_group(&g).await {
                                        tracing::error!(group = %g.id, error = %e, "retire: delete failed");
                                    }
                                });
                            }
                        }
                    }
                }
                let summary = format!(
                    "{} strategies ({} added, {} removed){}",
                    staying.len(),
                    new.enabled()
                        .filter(|p| !self.loaded.enabled().any(|o| o.risk.name == p.risk.name))
                        .count(),
                    self.loaded
                        .enabled()
                        .filter(|p| !staying.contains(p.risk.name.as_str()))
                        .count(),
                    if restart_only.is_empty() {
                        String::new()
                    } else {
                        format!("; {} changed and need a restart", restart_only.join(", "))
                    }
                );
                self.engine.handle(
                    Input::Policies(new.enabled().map(|p| p.risk.clone()).collect()),
                    now,
                    &mut out,
                );
                for (strategy, gs) in prepared.groups {
                    for g in &gs {
                        // Armed on either channel: over FIX, REST is the Trigger's fallback.
                        let _ = self.control.rest_client().armory().arm(g);
                    }
                    self.engine.handle(
                        Input::GroupsAssigned {
                            strategy,
                            groups: gs,
                        },
                        now,
                        &mut out,
                    );
                }
                out.push(Output::Decision(decision(
                    now,
                    DecisionKind::Reload,
                    summary.clone(),
                    &actor,
                )));
                self.loaded = Loaded {
                    daemon: self.loaded.daemon.clone(),
                    policies: new.policies,
                };
                // The intents close once state.json names their groups.
                self.close_after_save.extend(prepared.settled_intents);
                self.dispatch(out);
                Ok(AdminAnswer::Reloaded(Reloaded { reloaded: summary }))
            }
        };
        notify(&[sd_notify::NotifyState::Ready]);
        self.answer_when_durable(r.replies, answer);
        if let Some((actor, replies)) = r.again {
            self.begin_reload(&actor, replies);
        }
    }

    /// Answers admin callers once everything recorded so far is durable, without holding up
    /// the loop.
    fn answer_when_durable(&self, replies: Vec<AdminReply>, answer: AdminResult) {
        if replies.is_empty() {
            return;
        }
        let (done, durable) = tokio::sync::oneshot::channel();
        let _ = self.writer.send(WriteJob {
            decisions: Vec::new(),
            state: None,
            close_intents: Vec::new(),
            done: Some(done),
        });
        tokio::spawn(async move {
            let _ = durable.await;
            for r in replies {
                let _ = r.send(answer.clone());
            }
        });
    }

    /// Waits until everything recorded so far is durable (the writer works in order).
    async fn flush(&self) {
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

    /// Lists the account's groups for the risk core. Reconciles are coalesced (one at a time;
    /// any asked for meanwhile become one more after it) and paced (at least
    /// [`RECONCILE_GAP`] apart): each lists every subaccount a group is in, on the write budget
    /// at normal priority, which never touches the Trigger reserve. A failed one is tried
    /// again, paced the same way.
    fn reconcile(&mut self) {
        if self.reconciling.running {
            self.reconciling.again = true;
            return;
        }
        let now = tokio::time::Instant::now();
        let wait = self.reconciling.last.map_or(Duration::ZERO, |l| {
            (l + RECONCILE_GAP).saturating_duration_since(now)
        });
        self.reconciling.running = true;
        self.reconciling.last = Some(now + wait);
        let (rest, done, stop) = (
            self.control.rest_client().clone(),
            self.reconcile_done.clone(),
            self.stop.clone(),
        );
        tokio::spawn(async move {
            let listed = tokio::select! {
                _ = stop.cancelled() => return,
                r = async {
                    tokio::time::sleep(wait).await;
                    rest.list_account_groups().await
                } => r,
            };
            let _ = done.send(
                listed
                    .map(|gs| gs.into_iter().map(|(g, _)| g).collect())
                    .map_err(|e| e.to_string()),
            );
        });
    }

    /// Reads the account's fills from `since_ms` on (0: from the start-up rebuild) for the risk
    /// core. Coalesced like reconciles: one at a time, and any asked for meanwhile become one
    /// more from the earliest time asked. Reads draw on the read budget, apart from Triggers'.
    fn backfill(&mut self, since_ms: i64, reason: &'static str) {
        let since_ms = if since_ms == 0 {
            self.backfill_floor_ms
        } else {
            since_ms
        };
        if self.backfilling.running {
            let again = self.backfilling.again.get_or_insert((since_ms, reason));
            again.0 = again.0.min(since_ms);
            return;
        }
        self.backfilling.running = true;
        let (rest, done, stop) = (
            self.control.rest_client().clone(),
            self.backfill_done.clone(),
            self.stop.clone(),
        );
        let subaccounts: Vec<u8> = self.loaded.enabled().map(|p| p.subaccount).collect();
        tokio::spawn(async move {
            let read = tokio::select! {
                _ = stop.cancelled() => return,
                r = read_fills(&rest, since_ms, &subaccounts) => r,
            };
            let _ = done.send((since_ms, reason, read.map_err(|e| e.to_string())));
        });
    }

    fn finish_backfill(
        &mut self,
        since_ms: i64,
        reason: &'static str,
        read: Result<Vec<Input>, String>,
    ) {
        self.backfilling.running = false;
        match read {
            Ok(inputs) => {
                self.backfilling.failures = 0;
                let fills = self.feed_orders(inputs);
                self.handle(Input::Backfill {
                    fills,
                    since_ms,
                    reason: reason.into(),
                });
            }
            Err(why) if reason == SWEEP_REASON => {
                // Not retried: the next sweep comes soon, and a real gap has its own backfill.
                tracing::warn!(error = %why, "periodic sweep of the fills failed");
            }
            Err(why) => {
                tracing::warn!(error = %why, "backfill failed; trying again");
                self.handle(Input::BackfillFailed {
                    reason: why,
                    unknown: false,
                });
                let again = self.backfilling.again.get_or_insert((since_ms, reason));
                again.0 = again.0.min(since_ms);
                // Paced: the next try waits, longer after each failure in a row.
                self.backfilling.pause = true;
                self.backfilling.failures = self.backfilling.failures.saturating_add(1);
            }
        }
        if let Some((since, reason)) = self.backfilling.again.take() {
            if std::mem::take(&mut self.backfilling.pause) {
                let done = self.backfill_retry.clone();
                let wait = RECONCILE_GAP
                    .saturating_mul(1 << self.backfilling.failures.saturating_sub(1).min(5))
                    .min(Duration::from_secs(60));
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = done.send((since, reason));
                });
            } else {
                self.backfill(since, reason);
            }
        }
    }

    /// Hands read-back orders' groups to the risk core; returns the fills.
    fn feed_orders(&mut self, inputs: Vec<Input>) -> Vec<Fill> {
        let mut fills = Vec::new();
        for input in inputs {
            match input {
                Input::Fill(f) => fills.push(f),
                other => {
                    self.handle(other);
                }
            }
        }
        fills
    }

    fn finish_reconcile(&mut self, listed: Result<Vec<GroupAddress>, String>) {
        self.reconciling.running = false;
        match listed {
            Ok(groups) => {
                self.handle(Input::GroupsListed(groups));
            }
            Err(why) => {
                tracing::warn!(error = %why, "reconcile failed; trying again");
                self.reconciling.again = true;
            }
        }
        if std::mem::take(&mut self.reconciling.again) {
            self.reconcile();
        }
    }

    /// Bookkeeping on a command's outcome before the risk core sees it: a reset the exchange
    /// confirmed ends the Trigger retries that were running when it was sent (they would undo
    /// it); a Trigger decided after it, a re-trip, goes on.
    fn action_done(&mut self, input: &Input) {
        if let Input::ActionDone {
            group,
            action: Action::Reset,
            result,
        } = input
            && let Some(loops) = self.reset_supersedes.remove(&group.id)
            && result.is_ok()
        {
            loops.iter().for_each(CancellationToken::cancel);
        }
    }

    fn spawn(&mut self, c: Command) {
        if c == Command::Reconcile {
            return self.reconcile();
        }
        if let Command::Backfill { since_ms } = c {
            return self.backfill(since_ms, "after a gap in the stream");
        }
        if let Command::Sweep { since_ms } = c {
            // A backfill under way reads the same fills.
            if !self.backfilling.running {
                self.backfill(since_ms, SWEEP_REASON);
            }
            return;
        }
        let (control, tx, stop) = (
            self.control.clone(),
            self.results.clone(),
            self.stop.clone(),
        );
        let rest = control.rest_client().clone();
        let metrics = self.metrics.clone();
        let superseded = match &c {
            Command::Trigger { group } => {
                let token = CancellationToken::new();
                if let Some(older) = self.triggering.insert(group.id.clone(), token.clone()) {
                    older.cancel();
                }
                token
            }
            Command::Reset { group } => {
                if let Some(running) = self.triggering.remove(&group.id) {
                    self.reset_supersedes
                        .entry(group.id.clone())
                        .or_default()
                        .push(running);
                }
                CancellationToken::new()
            }
            _ => CancellationToken::new(),
        };
        self.tracker.spawn(async move {
            let input = match c {
                Command::Trigger { group } => {
                    // Retried until the exchange confirms it; a group that no longer exists
                    // cannot be triggered.
                    let backoff = RetryPolicy { attempts: u32::MAX, initial: Duration::from_millis(100), max: Duration::from_secs(2) };
                    let mut attempt = 0;
                    loop {
                        // A reset confirmed meanwhile ends an attempt still waiting for its
                        // budget, its connection or a fresh signature, not only the next one.
                        let attempted = tokio::select! {
                            r = control.trigger_group(&group) => r,
                            _ = superseded.cancelled() => {
                                break Input::ActionDone { group, action: Action::Trigger, result: Err("given up: superseded by a later reset or Trigger".into()) };
                            }
                        };
                        match attempted {
                            Ok(channel) => {
                                metrics.trigger_confirmed(channel);
                                break Input::ActionDone { group, action: Action::Trigger, result: Ok(()) };
                            }
                            Err(e) if e.is_not_found() => {
                                break Input::ActionDone { group, action: Action::Trigger, result: Err(e.to_string()) };
                            }
                            Err(e) => {
                                attempt += 1;
                                tracing::error!(group = %group.id, attempt, error = %e, "trigger not confirmed; retrying");
                                if stop.is_cancelled() && attempt > 20 {
                                    break Input::ActionDone { group, action: Action::Trigger, result: Err(e.to_string()) };
                                }
                                tokio::select! {
                                    _ = superseded.cancelled() => {
                                        break Input::ActionDone { group, action: Action::Trigger, result: Err(format!("{e}; given up: superseded by a later reset or Trigger")) };
                                    }
                                    _ = tokio::time::sleep(backoff.delay(attempt)) => {}
                                }
                            }
                        }
                    }
                }
                Command::Reset { group } => {
                    let result = control.reset_group(&group).await.map_err(|e| e.to_string());
                    Input::ActionDone { group, action: Action::Reset, result }
                }
                Command::UpdateLimit { group, limit } => {
                    let result = control.update_limit(&group, limit).await.map_err(|e| e.to_string());
                    Input::ActionDone { group, action: Action::UpdateLimit, result }
                }
                Command::LookupOrder { order_id } => {
                    let group = match rest.get_order(&order_id).await {
                        Ok(info) => Ok(info.group_id),
                        Err(e) if e.is_not_found() => Ok(None),
                        Err(e) => Err(e.to_string()),
                    };
                    Input::OrderLookup { order_id, group }
                }
                // Never here: reconciles and backfills go through their own Shell methods.
                Command::Reconcile | Command::Backfill { .. } | Command::Sweep { .. } => return,
            };
            let _ = tx.send(input);
        });
    }
}

/// How long a start waits for the orders of rebuilt fills to be mapped to their groups.
const REBUILD_WAIT: Duration = Duration::from_secs(30);
/// How long a start may spend reading the exchange's fills before it gives up on them (and
/// comes up with its strategies Unknown rather than not at all).
const REBUILD_READ_LIMIT: Duration = Duration::from_secs(300);

/// Rebuilds every window from the exchange's fills since `since_ms`, before READY: a restart,
/// clean or not, never empties a window. Fills go through the risk core like streamed ones
/// (their orders looked up, a breach tripping at once). If the fills cannot be read, or their
/// orders not mapped within [`REBUILD_WAIT`], the daemon does not pretend: every active
/// strategy becomes Unknown (guarded, never auto-reset) and the failure is recorded and
/// counted.
async fn rebuild_windows(
    shell: &mut Shell,
    rest: &RestClient,
    since_ms: i64,
    results: &mut mpsc::UnboundedReceiver<Input>,
) {
    let started = tokio::time::Instant::now();
    let subaccounts: Vec<u8> = shell.loaded.enabled().map(|p| p.subaccount).collect();
    // A long read must not run into systemd's start timeout: say so, and ask for more time.
    let extender = tokio::spawn(async {
        // Nothing to say for a quick rebuild: the first word comes after 10 s.
        let ten = Duration::from_secs(10);
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + ten, ten);
        loop {
            every.tick().await;
            notify(&[
                sd_notify::NotifyState::ExtendTimeoutUsec(30_000_000),
                sd_notify::NotifyState::Status("rebuilding windows from the exchange's fills"),
            ]);
        }
    });
    let read = tokio::time::timeout(REBUILD_READ_LIMIT, read_fills(rest, since_ms, &subaccounts))
        .await
        .unwrap_or_else(|_| {
            Err(ExchangeError::Decode {
                op: "list_fills",
                reason: format!("not done within {REBUILD_READ_LIMIT:?}"),
            })
        });
    extender.abort();
    let inputs = match read {
        Ok(inputs) => inputs,
        Err(e) => {
            tracing::error!(error = %e, "cannot rebuild windows from the exchange's fills");
            shell.handle(Input::BackfillFailed {
                reason: format!("at start, reading fills since {since_ms}: {e}"),
                unknown: true,
            });
            return;
        }
    };
    let fills = shell.feed_orders(inputs);
    let read = fills.len();
    shell.handle(Input::Backfill {
        fills,
        since_ms,
        reason: "start: windows rebuilt from the exchange's fills".into(),
    });
    let deadline = started + REBUILD_WAIT;
    while shell.engine.parked_fills() > 0 {
        tokio::select! {
            Some(input) = results.recv() => {
                shell.handle(input);
            }
            _ = tokio::time::sleep_until(deadline) => {
                let waiting = shell.engine.parked_fills();
                shell.handle(Input::BackfillFailed {
                    reason: format!("at start, {waiting} fills' orders could not be mapped to their groups within {REBUILD_WAIT:?}"),
                    unknown: true,
                });
                return;
            }
        }
    }
    tracing::info!(fills = read, took = ?started.elapsed(), "windows rebuilt from the exchange's fills");
}

/// Raises the soft limit on open descriptors to the hard one (systemd's default soft limit is
/// 1,024): a flood of connections must not leave the daemon without a descriptor for the
/// exchange, `sd_notify` or `state.json`.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current == now.maximum {
        return;
    }
    let raised = Rlimit {
        current: now.maximum,
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(from = ?now.current, to = ?now.maximum, "raised the open-descriptor limit")
        }
        Err(e) => {
            tracing::warn!(error = %e, limit = ?now.current, "cannot raise the open-descriptor limit")
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
    use tokio::signal::unix::{SignalKind, signal};
    let d = loaded.daemon.clone();
    // Signal streams first: from here on SIGHUP, SIGTERM and SIGINT are handled, not fatal.
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(DaemonError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    raise_descriptor_limit();

    let mut rest_cfg = RestConfig::new(d.exchange.rest_url.clone());
    rest_cfg.write_per_s = Some(d.exchange.write_budget_per_s);
    rest_cfg.trigger_reserve = d.exchange.trigger_reserve;
    rest_cfg.read_per_s = Some(d.exchange.write_budget_per_s * 2.0);
    let metrics = Arc::new(Metrics::new()?);
    let observer = {
        let m = metrics.clone();
        crate::kalshi::rest::Observer(Arc::new(move |op, status, took| {
            m.observe_request(op, status, took)
        }))
    };
    let rest = RestClient::new(&rest_cfg, signer.clone())?.with_observer(observer.clone());
    // The listener comes up first: a port problem fails the start at once.
    let write_health = Arc::new(WriteHealth::default());
    let health = Arc::new(HealthState {
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
        writes: write_health.clone(),
    });
    let http_stop = CancellationToken::new();
    let (http_addr, http_task) =
        crate::http::serve(d.http_listen, health.clone(), http_stop.clone())
            .await
            .map_err(|source| DaemonError::Listen {
                addr: d.http_listen,
                source,
            })?;
    tracing::info!(addr = %http_addr, "metrics listening (/metrics, /healthz, /readyz)");

    let store = Store::open(&d.state_dir)?;
    let previous = store.load()?;
    let clean = previous.as_ref().is_none_or(|s| s.clean_stop);
    if !clean {
        tracing::warn!(
            "the last stop was not clean: strategies last seen active are unknown until settled"
        );
    }
    let persisted = previous.map(|s| s.snapshot).unwrap_or_default();
    // Group actions over FIX when configured. A start waits a little for the logon, then goes
    // on over REST: the daemon guards (REST Triggers, armed) while FIX logs on. The session
    // outlives the stream and the admin API so in-flight Triggers finish over it at stop.
    let fix_stop = CancellationToken::new();
    let (control, fix_task) = match d.exchange.control {
        crate::config::Control::Rest => (GroupControl::rest(rest.clone()), None),
        crate::config::Control::Fix => {
            let cfg = FixConfig::new(d.exchange.fix_addr.clone());
            let (session, task) =
                FixSession::spawn(cfg, signer.clone(), rest.write_budget(), fix_stop.clone());
            let session = session.with_observer(observer);
            tracing::info!(addr = %d.exchange.fix_addr, "group actions go over FIX; logging on");
            if let Err(why) = session.wait_logged_on(FIX_LOGON_WAIT).await {
                tracing::error!(addr = %d.exchange.fix_addr, reason = %why, "no FIX logon yet: group actions and Triggers go over REST until the session logs on");
            }
            (GroupControl::fix(rest.clone(), session), Some(task))
        }
    };
    // An early return stops the session too.
    let _fix_guard = fix_stop.clone().drop_guard();
    let intents = Arc::new(IntentLog::open(&d.state_dir)?);
    if !intents.pending().is_empty() {
        tracing::warn!(
            open = intents.pending().len(),
            "group creates were in flight when the daemon last stopped; settling them by listing"
        );
    }
    let prepared = groups::prepare(&control, &intents, &loaded, &persisted, true).await?;
    let snapshot = groups::with_groups(persisted, &loaded, &prepared.groups);

    let mut out: Vec<Output> = prepared
        .decisions
        .into_iter()
        .map(Output::Decision)
        .collect();
    let engine = RiskEngine::restore(loaded.risk_config(), &snapshot, clean, now_ms(), &mut out);
    store.save(&StateFile {
        snapshot: engine.snapshot(),
        clean_stop: false,
    })?;
    // state.json now names every group created: their intents are done.
    intents.close(&prepared.settled_intents)?;

    let (writer_tx, writer) = writer::spawn(store, intents.clone(), write_health.clone())
        .map_err(DaemonError::Signals)?;

    let stop = CancellationToken::new();
    let (results_tx, mut results_rx) = mpsc::unbounded_channel();
    let (admin_tx, mut admin_rx) = mpsc::channel(64);
    let admin_stop = CancellationToken::new();
    let admin_task = crate::admin::serve(&d.admin_socket, admin_tx, admin_stop.clone())
        .await
        .map_err(DaemonError::Admin)?;
    tracing::info!(path = %d.admin_socket.display(), "admin API listening");
    // Windows survive a restart: they are rebuilt from the exchange's fills over the longest
    // window in use (below, before READY).
    let rebuild_since_ms = now_ms() - loaded.longest_window_ms() - BACKFILL_MARGIN_MS;
    let (reload_tx, mut reload_rx) = mpsc::unbounded_channel();
    let (reconcile_tx, mut reconcile_rx) = mpsc::unbounded_channel();
    let (backfill_tx, mut backfill_rx) = mpsc::unbounded_channel();
    let (backfill_retry_tx, mut backfill_retry_rx) = mpsc::unbounded_channel();
    let mut shell = Shell {
        metrics: metrics.clone(),
        loaded: loaded.clone(),
        config_path: config_path.to_owned(),
        engine,
        control: control.clone(),
        results: results_tx,
        writer: writer_tx,
        tracker: TaskTracker::new(),
        stop: stop.clone(),
        intents,
        writes: write_health.clone(),
        reload: None,
        reload_done: reload_tx,
        close_after_save: Vec::new(),
        reconciling: Reconciling::default(),
        reconcile_done: reconcile_tx,
        backfilling: Backfilling::default(),
        triggering: HashMap::new(),
        reset_supersedes: HashMap::new(),
        backfill_done: backfill_tx,
        backfill_retry: backfill_retry_tx,
        backfill_floor_ms: rebuild_since_ms,
    };
    shell.dispatch(out);
    if KILL_SIGNALLED.swap(false, Ordering::SeqCst) {
        shell.handle(Input::Operator {
            command: OperatorCommand::Kill,
            actor: "signal".into(),
        });
    }
    let rebuilt_at_ms = now_ms();
    rebuild_windows(&mut shell, &rest, rebuild_since_ms, &mut results_rx).await;
    // A backfill "since the start" (after the first gap) begins where the rebuild read up to.
    shell.backfill_floor_ms = rebuilt_at_ms - BACKFILL_MARGIN_MS;

    let mut stream_cfg = StreamConfig::new(d.exchange.ws_url.clone());
    stream_cfg.blind_after = d.blind_after;
    let stream_stop = stop.child_token();
    let (mut events, counters, stream_task) =
        stream::spawn(stream_cfg, signer, stream_stop.clone());
    let armory_stop = stop.child_token();
    // The kill set is armed before the refresher's first round: a kill costs socket writes,
    // not signatures. Over FIX too: REST is a Trigger's fallback when the session is down or
    // slow.
    let mut managed = 0;
    for (_, g) in shell.engine.managed_groups() {
        managed += 1;
        let _ = rest.armory().arm(g);
    }
    let armory = {
        let rest = rest.clone();
        let s = armory_stop.clone();
        tokio::spawn(async move { rest.run_armory(128, s).await })
    };
    // Pooled connections are kept open so a Trigger never pays a handshake (HTTP/1.1 needs
    // one per concurrent request).
    let warm = {
        let rest = rest.clone();
        let s = armory_stop.clone();
        tokio::spawn(async move {
            rest.keep_warm(managed.clamp(4, 32), Duration::from_secs(30), s)
                .await
        })
    };

    // READY=1 once subscribed, so nothing published after READY is missed. If the
    // stream cannot connect within `blind_after`, start anyway: REST works, and the daemon is
    // blind, says so and acts on it.
    let subscribed = tokio::time::timeout(d.blind_after, async {
        while let Some(ev) = events.recv().await {
            let connected = ev == StreamEvent::Health(Health::Connected);
            if let Some(input) = to_input(ev) {
                shell.handle(input);
            }
            if connected {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !subscribed {
        tracing::error!("the user stream did not connect at start; running blind");
        shell.handle(Input::Stream(StreamHealth::Blind));
    }
    // Fills made between the rebuild and the subscription.
    if subscribed {
        shell.backfill(
            shell.backfill_floor_ms,
            "after the start: fills between the rebuild and the subscription",
        );
    }
    metrics.refresh(&mut shell.engine, &counters, now_ms());
    metrics.refresh_writes(&write_health);
    health.ready.store(subscribed, Ordering::Relaxed);
    metrics.fix_session(control.fix_session().map(FixSession::is_logged_on));
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("watching"),
    ]);
    tracing::info!(
        strategies = loaded.enabled().count(),
        "kalshi-riskd running"
    );
    let watchdog = sd_notify::watchdog_enabled();
    let mut tick = tokio::time::interval(TICK);
    let mut last_watchdog = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = usr1.recv() => {
                KILL_SIGNALLED.store(false, Ordering::SeqCst);
                tracing::error!("SIGUSR1: kill switch");
                shell.handle(Input::Operator { command: OperatorCommand::Kill, actor: "signal".into() });
            }
            _ = term.recv() => break,
            _ = shutdown.cancelled() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                shell.begin_reload("signal", Vec::new());
            }
            Some(call) = admin_rx.recv() => shell.admin(call).await,
            Some(prepared) = reload_rx.recv() => shell.finish_reload(prepared),
            Some(listed) = reconcile_rx.recv() => shell.finish_reconcile(listed),
            Some((since, why, read)) = backfill_rx.recv() => shell.finish_backfill(since, why, read),
            Some((since, why)) = backfill_retry_rx.recv() => shell.backfill(since, why),
            Some(input) = results_rx.recv() => {
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
                metrics.refresh(&mut shell.engine, &counters, now);
                metrics.refresh_writes(&write_health);
                // Readiness is the stream's: without FIX the daemon still guards (REST
                // Triggers); the FIX session has its own metric and alert.
                health.ready.store(counters.connected.load(Ordering::Relaxed), Ordering::Relaxed);
                metrics.fix_session(control.fix_session().map(FixSession::is_logged_on));
                // The watchdog is fed only while this loop makes progress.
                if let Some(every) = watchdog && last_watchdog.elapsed() >= every / 2 {
                    notify(&[sd_notify::NotifyState::Watchdog]);
                    last_watchdog = tokio::time::Instant::now();
                }
            }
        }
    }

    health.ready.store(false, Ordering::Relaxed);
    notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(r) = shell.reload.take() {
        // Its open create intents are settled at the next start.
        tracing::warn!("stopping during a reload: the reload is abandoned");
        r.task.abort();
    }
    tracing::info!("stopping: finishing in-flight Triggers");
    stream_stop.cancel();
    armory_stop.cancel();
    shell.tracker.close();
    stop.cancel();
    if tokio::time::timeout(STOP_GRACE, shell.tracker.wait())
        .await
        .is_err()
    {
        tracing::error!("stop: some exchange calls did not finish in time");
    }
    while let Ok(input) = results_rx.try_recv() {
        shell.handle(input);
    }
    let final_state = StateFile {
        snapshot: shell.engine.snapshot(),
        clean_stop: true,
    };
    let Shell {
        writer: writer_tx, ..
    } = shell;
    let _ = writer_tx.send(WriteJob {
        state: Some(final_state),
        ..WriteJob::default()
    });
    drop(writer_tx);
    let (_store, written) = writer
        .join()
        .map_err(|_| DaemonError::Signals(std::io::Error::other("state writer panicked")))?;
    http_stop.cancel();
    let _ = http_task.await;
    admin_stop.cancel();
    let _ = admin_task.await;
    let _ = stream_task.await;
    let _ = armory.await;
    let _ = warm.await;
    // Last: the FIX session logs out once nothing can use it any more.
    fix_stop.cancel();
    if let Some(t) = fix_task {
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
