//! Reading the exchange back: reconciles (the account's groups), backfills and sweeps (its
//! fills), and the start-up rebuild of every window. Each runs off the loop, one at a time, and
//! comes back as risk-core inputs.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc;

use super::event_loop::{Shell, to_input};
use super::signals::notify;
use crate::kalshi::Op;
use crate::kalshi::stream::StreamEvent;
use crate::kalshi::{ExchangeError, GroupAddress, RestClient};
use crate::risk::engine::{Fill, Input, SWEEP_REASON};

/// A finished backfill read: from when, why, and the inputs it read (or why it could not).
pub(super) type BackfillRead = (i64, &'static str, Result<Vec<Input>, String>);

/// Backfills in flight (see [`Shell::backfill`]).
#[derive(Debug, Default)]
pub(super) struct Backfilling {
    pub(super) running: bool,
    /// Another one asked for meanwhile, from this time, and why.
    pub(super) again: Option<(i64, &'static str)>,
    /// The last one failed: the next waits.
    pub(super) pause: bool,
    /// Failures in a row (the wait doubles with each, up to a minute).
    pub(super) failures: u32,
}

/// The account's fills from `since_ms` on, as risk-core inputs: first each fill's order and its
/// group, then the fills, oldest first. Fills are read once for every subaccount and once per
/// subaccount the policies use (whether the exchange lists every subaccount's fills without
/// one is not documented; duplicates are dropped here and by `trade_id` in the risk core).
/// Orders are mapped in bulk from `GET /portfolio/orders` (1,000 a page, newest first, until
/// every fill's order is found), not one lookup each: a day of fills may span thousands of
/// orders, and a breach among them must not wait behind single lookups. An order not found
/// there is looked up on its own by the risk core's usual path.
pub(super) async fn read_fills(
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
pub(super) struct Reconciling {
    pub(super) running: bool,
    pub(super) again: bool,
    /// When the last one started listing.
    pub(super) last: Option<tokio::time::Instant>,
}

/// The least time between two reconciles' listings.
pub(super) const RECONCILE_GAP: Duration = Duration::from_secs(2);

impl Shell {
    /// Lists the account's groups for the risk core. Reconciles are coalesced (one at a time;
    /// any asked for meanwhile become one more after it) and paced (at least
    /// [`RECONCILE_GAP`] apart): each lists every subaccount a group is in, on the write budget
    /// at normal priority, which never touches the Trigger reserve. A failed one is tried
    /// again, paced the same way.
    pub(super) fn reconcile(&mut self) {
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
    pub(super) fn backfill(&mut self, since_ms: i64, reason: &'static str) {
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

    pub(super) fn finish_backfill(
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
    pub(super) fn feed_orders(&mut self, inputs: Vec<Input>) -> Vec<Fill> {
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

    pub(super) fn finish_reconcile(&mut self, listed: Result<Vec<GroupAddress>, String>) {
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
pub(super) async fn rebuild_windows(
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
                op: Op::ListFills.as_str(),
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
