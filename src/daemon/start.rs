//! Start: everything before `READY=1`, in order. Listen for metrics (a port problem fails the
//! start at once); load `state.json` and the open create intents; bring up group control (FIX
//! when configured, REST meanwhile); settle intents, adopt and create groups; restore the risk
//! core (persisted trips and the kill latch are re-triggered); persist; open the admin socket;
//! rebuild every window from the exchange's fills; subscribe to the user stream; arm the kill
//! set; then tell systemd the daemon is ready.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::cluster_link::ClusterLink;
use super::event_loop::Shell;
use super::event_loop::to_input;
use super::groups::{self, Prepared};
use super::intents::IntentLog;
use super::reads::{BackfillRead, Backfilling, Reconciling, rebuild_windows};
use super::signals::notify;
use super::store::{StateFile, Store};
use super::writer::{self, WriteHealth, Writer};
use super::{DaemonError, Stops};
use crate::admin::AdminCall;
use crate::config::Loaded;
use crate::http::{HealthState, Metrics};
use crate::kalshi::auth::now_ms;
use crate::kalshi::fix::{FixConfig, FixSession};
use crate::kalshi::rest::RestConfig;
use crate::kalshi::stream::{self, Health, StreamConfig, StreamCounters, StreamEvent};
use crate::kalshi::{GroupAddress, GroupControl, RestClient, Signer};
use crate::risk::engine::{BACKFILL_MARGIN_MS, Input, Output, RiskEngine, StreamHealth};

/// How long a start waits for the FIX session's logon before it goes on over REST (the session
/// keeps logging on in the background).
const FIX_LOGON_WAIT: Duration = Duration::from_secs(3);

/// A started daemon: the shell, what feeds its loop, and every task to stop in order.
pub(super) struct Running {
    pub shell: Shell,
    pub inbox: Inbox,
    pub events: mpsc::Receiver<StreamEvent>,
    pub counters: Arc<StreamCounters>,
    pub health: Arc<HealthState>,
    pub writer: Writer,
    pub tasks: Tasks,
    pub stops: Stops,
}

/// Everything that comes back to the loop besides the stream.
pub(super) struct Inbox {
    /// Outcomes of the executor's commands.
    pub results: mpsc::UnboundedReceiver<Input>,
    pub admin: mpsc::Receiver<AdminCall>,
    pub reload: mpsc::UnboundedReceiver<Result<Prepared, String>>,
    pub reconcile: mpsc::UnboundedReceiver<Result<Vec<GroupAddress>, String>>,
    pub backfill: mpsc::UnboundedReceiver<BackfillRead>,
    pub backfill_retry: mpsc::UnboundedReceiver<(i64, &'static str)>,
    /// Cluster mode's etcd task.
    pub cluster: Option<mpsc::UnboundedReceiver<crate::cluster::ClusterEvent>>,
}

/// The tasks a stop waits for.
pub(super) struct Tasks {
    pub http: tokio::task::JoinHandle<()>,
    pub admin: tokio::task::JoinHandle<()>,
    pub stream: tokio::task::JoinHandle<()>,
    pub armory: tokio::task::JoinHandle<()>,
    pub warm: tokio::task::JoinHandle<()>,
    pub fix: Option<tokio::task::JoinHandle<()>>,
    pub cluster: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the daemon up to `READY=1`. An error here stops every part started so far (they
/// hang off `stops`' root).
pub(super) async fn start(
    config_path: &std::path::Path,
    loaded: Loaded,
    signer: Signer,
    stops: Stops,
) -> Result<Running, DaemonError> {
    let d = loaded.daemon.clone();
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
    let (http_addr, http_task) =
        crate::http::serve(d.http_listen, health.clone(), stops.http.clone())
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
    let (control, fix_task) = match d.exchange.control {
        crate::config::Control::Rest => (GroupControl::rest(rest.clone()), None),
        crate::config::Control::Fix => {
            let cfg = FixConfig::new(d.exchange.fix_addr.clone());
            let (session, task) =
                FixSession::spawn(cfg, signer.clone(), rest.write_budget(), stops.fix.clone());
            let session = session.with_observer(observer);
            tracing::info!(addr = %d.exchange.fix_addr, "group actions go over FIX; logging on");
            if let Err(why) = session.wait_logged_on(FIX_LOGON_WAIT).await {
                tracing::error!(addr = %d.exchange.fix_addr, reason = %why, "no FIX logon yet: group actions and Triggers go over REST until the session logs on");
            }
            (GroupControl::fix(rest.clone(), session), Some(task))
        }
    };
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

    let (results_tx, results) = mpsc::unbounded_channel();
    let (admin_tx, admin) = mpsc::channel(64);
    let admin_task = crate::admin::serve(&d.admin_socket, admin_tx, stops.admin.clone())
        .await
        .map_err(DaemonError::Admin)?;
    tracing::info!(path = %d.admin_socket.display(), "admin API listening");
    // Windows survive a restart: they are rebuilt from the exchange's fills over the longest
    // window in use (below, before READY).
    let rebuild_since_ms = now_ms() - loaded.longest_window_ms() - BACKFILL_MARGIN_MS;
    let (reload_tx, reload) = mpsc::unbounded_channel();
    let (reconcile_tx, reconcile) = mpsc::unbounded_channel();
    let (backfill_tx, backfill) = mpsc::unbounded_channel();
    let (backfill_retry_tx, backfill_retry) = mpsc::unbounded_channel();
    let (cluster_link, cluster_events, cluster_task) =
        start_cluster(&loaded, &engine, &metrics, &stops)?;
    let mut inbox = Inbox {
        results,
        admin,
        reload,
        reconcile,
        backfill,
        backfill_retry,
        cluster: cluster_events,
    };
    let mut shell = Shell {
        metrics: metrics.clone(),
        loaded: loaded.clone(),
        config_path: config_path.to_owned(),
        engine,
        control: control.clone(),
        results: results_tx,
        writer: writer_tx,
        tracker: TaskTracker::new(),
        stop: stops.work.clone(),
        intents,
        writes: write_health.clone(),
        reload: None,
        reload_done: reload_tx,
        close_after_save: Vec::new(),
        unrecorded: Vec::new(),
        reconciling: Reconciling::default(),
        reconcile_done: reconcile_tx,
        backfilling: Backfilling::default(),
        triggering: HashMap::new(),
        reset_supersedes: HashMap::new(),
        backfill_done: backfill_tx,
        backfill_retry: backfill_retry_tx,
        backfill_floor_ms: rebuild_since_ms,
        cluster: cluster_link,
    };
    shell.dispatch(out);
    shell.engage_signalled_kill();
    let rebuilt_at_ms = now_ms();
    rebuild_windows(&mut shell, &rest, rebuild_since_ms, &mut inbox.results).await;
    // A backfill "since the start" (after the first gap) begins where the rebuild read up to.
    shell.backfill_floor_ms = rebuilt_at_ms - BACKFILL_MARGIN_MS;

    let mut stream_cfg = StreamConfig::new(d.exchange.ws_url.clone());
    stream_cfg.blind_after = d.blind_after;
    let (mut events, counters, stream_task) =
        stream::spawn(stream_cfg, signer, stops.stream.clone());
    // The kill set is armed before the refresher's first round: a kill costs socket writes,
    // not signatures. Over FIX too: REST is a Trigger's fallback when the session is down or
    // slow.
    // Where there are more groups than the armory holds, the tightest strategies' are armed.
    let kill_set = shell.engine.groups_tightest_first();
    let managed = kill_set.len();
    for g in kill_set {
        let _ = rest.armory().arm(g);
    }
    let armory = {
        let rest = rest.clone();
        let s = stops.armory.clone();
        tokio::spawn(async move { rest.run_armory(128, s).await })
    };
    // Pooled connections are kept open so a Trigger never pays a handshake (HTTP/1.1 needs
    // one per concurrent request).
    let warm = {
        let rest = rest.clone();
        let s = stops.armory.clone();
        tokio::spawn(async move {
            rest.keep_warm(managed.clamp(4, 128), Duration::from_secs(30), s)
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
    metrics.fix_session(
        control
            .fix_session()
            .map(|f| (f.is_logged_on(), f.logons())),
    );
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("watching"),
    ]);
    tracing::info!(
        strategies = loaded.enabled().count(),
        "kalshi-riskd running"
    );
    Ok(Running {
        shell,
        inbox,
        events,
        counters,
        health,
        writer,
        tasks: Tasks {
            http: http_task,
            admin: admin_task,
            stream: stream_task,
            armory,
            warm,
            fix: fix_task,
            cluster: cluster_task,
        },
        stops,
    })
}

type ClusterStart = (
    Option<ClusterLink>,
    Option<mpsc::UnboundedReceiver<crate::cluster::ClusterEvent>>,
    Option<tokio::task::JoinHandle<()>>,
);

/// Cluster mode: starts the etcd task. The loop hears from it from the first turn; until the
/// shared latch is read, resets and releases are refused (the risk core starts so).
#[cfg(feature = "cluster")]
fn start_cluster(
    loaded: &Loaded,
    engine: &RiskEngine,
    metrics: &Metrics,
    stops: &Stops,
) -> Result<ClusterStart, DaemonError> {
    let Some(c) = loaded.daemon.cluster.clone() else {
        return Ok((None, None, None));
    };
    metrics.enable_cluster()?;
    metrics.cluster_readable(false);
    let (events_tx, events) = mpsc::unbounded_channel();
    let strategies = super::cluster_link::registered(engine);
    let link_name = (c.name.clone(), c.member.clone());
    let (commands, task) = crate::cluster::etcd::spawn(
        c,
        strategies.clone(),
        loaded.daemon.account_limit.clone(),
        events_tx,
        stops.cluster.clone(),
    );
    Ok((
        Some(ClusterLink::new(
            link_name.0,
            link_name.1,
            commands,
            strategies,
        )),
        Some(events),
        Some(task),
    ))
}

/// Without the `cluster` feature, a config with `[cluster]` is refused when it is read.
#[cfg(not(feature = "cluster"))]
fn start_cluster(
    _: &Loaded,
    _: &RiskEngine,
    _: &Metrics,
    _: &Stops,
) -> Result<ClusterStart, DaemonError> {
    Ok((None, None, None))
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
