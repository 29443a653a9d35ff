//! Admin API calls, answered in the daemon's loop so they see exactly what the risk core
//! decided. A mutation is answered once its record is durable (its exchange commands are
//! already on their way); a reload is answered when it has been applied.

use crate::admin::api::{
    Control, Durable, Groups, Killed, LimitUse, LogFilterSet, Released, Status, StrategyChanged,
    StrategyStatus,
};
use crate::admin::{AdminAnswer, AdminCall, AdminError, AdminRequest};
use crate::kalshi::auth::now_ms;
use crate::risk::engine::{DecisionKind, Input, OperatorCommand};
use crate::risk::guard::GuardState;

use super::event_loop::Shell;

impl Shell {
    /// Answers one admin API call.
    pub(super) async fn admin(&mut self, call: AdminCall) {
        let actor = call.actor.clone();
        let mutation = call.request.is_mutation();
        let known = |shell: &Shell, name: &str| {
            shell
                .engine
                .strategies()
                .iter()
                .any(|s| s.policy.name == name)
        };
        let operator = |command| Input::Operator {
            command,
            actor: actor.clone(),
        };
        let answer = match call.request {
            AdminRequest::Status => Ok(AdminAnswer::Status(Box::new(self.status()))),
            AdminRequest::Groups => {
                let strategies = self
                    .engine
                    .strategies()
                    .iter()
                    .map(|s| (s.policy.name.clone(), s.groups.clone()))
                    .collect();
                Ok(AdminAnswer::Groups(Groups { strategies }))
            }
            AdminRequest::Kill => {
                self.handle(operator(OperatorCommand::Kill));
                let kill = self.engine.kill().cloned();
                Ok(AdminAnswer::Killed(Killed { kill }))
            }
            AdminRequest::Release => {
                // Cluster mode: written to etcd first, answered when that is done.
                let Some(reply) = self.cluster_release(call.reply, actor.clone()) else {
                    return;
                };
                let engaged = self.engine.kill().is_some();
                let decisions = self.handle(operator(OperatorCommand::Release));
                let answer = match decisions
                    .iter()
                    .find(|d| d.event == DecisionKind::ReleaseRefused)
                {
                    Some(d) => Err(AdminError::Refused(d.reason.clone())),
                    None => Ok(AdminAnswer::Released(Released {
                        released: engaged && self.engine.kill().is_none(),
                        kill: self.engine.kill().cloned(),
                    })),
                };
                if answer.is_ok() {
                    self.flush().await;
                }
                let _ = reply.send(answer);
                return;
            }
            AdminRequest::Reload => {
                // Answered when the reload is applied (its exchange work runs off the loop).
                self.begin_reload(&actor, vec![call.reply]);
                return;
            }
            AdminRequest::LogFilter(filter) => match crate::logging::set_filter(&filter) {
                Ok(log_filter) => {
                    tracing::warn!(%actor, %log_filter, "log filter replaced");
                    Ok(AdminAnswer::LogFilter(LogFilterSet { log_filter }))
                }
                Err(e) => Err(AdminError::BadLogFilter(e)),
            },
            AdminRequest::Trigger(name) | AdminRequest::Reset(name) if !known(self, &name) => {
                Err(AdminError::NoSuchStrategy(name))
            }
            AdminRequest::Trigger(name) => {
                self.handle(operator(OperatorCommand::Trigger(name.clone())));
                Ok(AdminAnswer::Strategy(StrategyChanged {
                    strategy: name,
                    state: GuardState::Tripped,
                }))
            }
            AdminRequest::Reset(name) => {
                let decisions = self.handle(operator(OperatorCommand::Reset(Some(name.clone()))));
                match decisions
                    .iter()
                    .find(|d| d.event == DecisionKind::ResetRefused)
                {
                    Some(d) => Err(AdminError::Refused(d.reason.clone())),
                    None => Ok(AdminAnswer::Strategy(StrategyChanged {
                        strategy: name,
                        state: GuardState::Active,
                    })),
                }
            }
        };
        if answer.is_ok() && mutation {
            self.flush().await;
        }
        let _ = call.reply.send(answer);
    }

    /// `GET /v1/status`: what the daemon knows, per strategy.
    fn status(&mut self) -> Status {
        let figures = self.engine.window_figures(now_ms());
        let strategies = self
            .engine
            .strategies()
            .iter()
            .map(|s| StrategyStatus {
                name: s.policy.name.clone(),
                mode: s.policy.mode,
                state: s.state(),
                warned: s.is_warned(),
                trip: s.trip().cloned(),
                groups: s.groups.clone(),
                group_contracts_limit: s.policy.group_limit,
                limits: figures
                    .iter()
                    .filter(|(name, _, _)| *name == s.policy.name)
                    .map(|(_, spec, u)| LimitUse {
                        name: spec.name.clone(),
                        window_ms: spec.window_ms,
                        contracts: u.contracts,
                        max_contracts: spec.max_contracts,
                        notional_dollars: u.notional,
                        max_notional_dollars: spec.max_notional,
                        fills: u.fills,
                        max_fills: spec.max_fills,
                    })
                    .collect(),
            })
            .collect();
        let control = match self.control.fix_session() {
            None => Control::Rest,
            Some(f) => Control::Fix {
                fix_addr: f.addr().to_string(),
                logged_on: f.is_logged_on(),
                logons: f.logons(),
            },
        };
        Status {
            kill: self.engine.kill().cloned(),
            blind: self.engine.is_blind(),
            durable: Durable {
                failing: self.writes.is_failing(),
                last_error: self.writes.last_error(),
            },
            control,
            strategies,
            cluster: self.cluster.as_ref().map(|c| c.status(&self.engine)),
        }
    }
}
