//! The executor: carries out the risk core's commands, each on its own task, and returns
//! every outcome to the loop as an input. It speaks to the exchange only through the group
//! control channel and the REST client; it keeps no state of its own beyond which Trigger loops
//! may still be running.

use tokio_util::sync::CancellationToken;

use super::event_loop::Shell;
use crate::kalshi::GroupChannel;
use crate::kalshi::rest::RetryPolicy;
use crate::risk::engine::{Action, Command, Input, SWEEP_REASON};

impl Shell {
    /// Bookkeeping on a command's outcome before the risk core sees it: a reset the exchange
    /// confirmed ends the Trigger retries that were running when it was sent (they would undo
    /// it); a Trigger decided after it, a re-trip, goes on.
    pub(super) fn action_done(&mut self, input: &Input) {
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

    pub(super) fn spawn(&mut self, c: Command) {
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
        // A Trigger that would be signed first is left to the runtime: signing (a quarter of
        // a millisecond or more) on the loop's thread would hold up every Trigger after it.
        let at_once = matches!(&c, Command::Trigger { group } if control.trigger_signed(group));
        let task = self.tracker.track_future(async move {
            let input = match c {
                Command::Trigger { group } => {
                    // The Trigger's one retry layer: one attempt at a time (on each channel),
                    // retried with the exchange calls' backoff until the exchange confirms it;
                    // a group that no longer exists cannot be triggered.
                    let backoff = RetryPolicy { attempts: u32::MAX, ..RetryPolicy::default() };
                    let mut attempt = 0;
                    loop {
                        // A reset confirmed meanwhile ends an attempt still waiting for its
                        // budget, its connection or a fresh signature, not only the next one.
                        let attempted = tokio::select! {
                            r = control.trigger_attempt(&group) => r,
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
                                // Refused for the rate: the budget, emptied by the refusal,
                                // paces the next attempt to the exchange's refill; a backoff
                                // on top would only leave tokens unused.
                                if e.pseudo_status() == Some(429) && rest.write_budget().rate().is_some() {
                                    continue;
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
        if at_once {
            start_now(task);
        } else {
            tokio::spawn(task);
        }
    }
}

/// Runs a new task's first poll on the loop's own thread, then hands the task to the runtime
/// if it is not finished. A signed Trigger's first poll writes its request on a lane
/// connection (or over FIX), so the request leaves before the loop yields, instead of when the
/// runtime next gets round to a new task (on a busy worker, or after waking another one).
///
/// The first poll's waker does nothing: the runtime polls the task again as soon as it is
/// spawned, and that poll registers the task's own waker with whatever it waits on.
fn start_now(task: impl Future<Output = ()> + Send + 'static) {
    let mut task = Box::pin(task);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if task.as_mut().poll(&mut cx).is_pending() {
        tokio::spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::start_now;

    /// On a runtime of one thread nothing spawned runs before the caller yields: a flag the
    /// task's first poll sets is already set when `start_now` returns.
    #[tokio::test(flavor = "current_thread")]
    async fn the_first_poll_runs_before_the_caller_yields() {
        let polled = Arc::new(AtomicBool::new(false));
        let flag = polled.clone();
        start_now(async move {
            flag.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        });
        assert!(polled.load(Ordering::SeqCst), "the task was only queued");
    }

    /// A task that waits after its first poll is finished by the runtime: the waker its first
    /// poll left does nothing, the runtime's poll registers the real one.
    #[tokio::test(flavor = "current_thread")]
    async fn a_task_that_waits_is_finished_by_the_runtime() {
        let go = Arc::new(tokio::sync::Notify::new());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let wait = go.clone();
        start_now(async move {
            wait.notified().await;
            let _ = done_tx.send(());
        });
        go.notify_one();
        tokio::time::timeout(std::time::Duration::from_secs(10), done_rx)
            .await
            .expect("the task never finished")
            .expect("the task was dropped");
    }
}
