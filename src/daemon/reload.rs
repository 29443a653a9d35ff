//! Reloads (SIGHUP or the admin API): validated in the loop, prepared off it, applied in it.

use std::collections::BTreeSet;

use super::event_loop::{AdminReply, Shell};
use super::groups::{self, Prepared};
use super::signals::notify;
use crate::admin::api::Reloaded;
use crate::admin::{AdminAnswer, AdminError};
use crate::config::Loaded;
use crate::kalshi::GroupAddress;
use crate::kalshi::GroupChannel;
use crate::kalshi::auth::now_ms;
use crate::risk::engine::{Command, DecisionKind, Input, Output};

/// A reload whose exchange work is running outside the loop.
pub(super) struct ReloadInFlight {
    pub(super) actor: String,
    pub(super) new: Loaded,
    pub(super) replies: Vec<AdminReply>,
    pub(super) task: tokio::task::JoinHandle<()>,
    /// Another reload asked for meanwhile: its actor and callers.
    pub(super) again: Option<(String, Vec<AdminReply>)>,
}

impl Shell {
    /// Starts a reload (SIGHUP or the admin API). Everything is validated first, in the loop
    /// (reading files is quick); on any error nothing changes. The exchange work (listing,
    /// settling intents, creating groups) then runs in a task of its own, and its result comes
    /// back to the loop as [`Shell::finish_reload`], so fills, trips, kills, admin calls and the
    /// watchdog go on meanwhile. A reload asked for while one is running follows it, once.
    pub(super) fn begin_reload(&mut self, actor: &str, replies: Vec<AdminReply>) {
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
    pub(super) fn finish_reload(&mut self, result: Result<Prepared, String>) {
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
                if new.daemon.cluster != old.cluster {
                    restart_only.push("[cluster]");
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
}
