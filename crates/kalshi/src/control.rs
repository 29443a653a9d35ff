//! Where order-group actions go: the REST API, or a FIX session when `exchange.control = "fix"`.
//! Reads (listing groups, looking up orders) are REST either way: FIX has no listing. A create
//! whose outcome is unknown is settled by REST listing on both channels.
//!
//! A Trigger never waits on one channel. Both channels reach the same groups with the same key,
//! and a Trigger is idempotent on both, so over FIX: while the session is not logged on the
//! Trigger goes over REST at once; when FIX does not confirm within [`FIX_TRIGGER_PROMPT`] (a
//! silent or slow session) it goes over REST too, and the first confirmation wins. Which
//! channel confirmed is returned, for the metrics. Other actions (create, reset, limit,
//! delete) go over REST while the session is not logged on, chosen again for each attempt: the
//! daemon starts and guards without waiting for FIX, and an action retried while FIX drops goes
//! on over REST.

use std::collections::HashSet;
use std::time::Duration;

use super::channel::GroupChannel;
use super::fix::FixSession;
use super::rest::{CreateError, CreateOutcome};
use super::retry::RetryPolicy;
use super::{ExchangeError, GroupAddress, GroupId, RestClient};
use riskd_units::Contracts;

/// How long a Trigger over FIX may go unanswered before it is sent over REST too.
pub const FIX_TRIGGER_PROMPT: Duration = Duration::from_millis(250);

/// The channel for group actions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupControl {
    rest: RestClient,
    fix: Option<FixSession>,
}

impl GroupControl {
    /// Everything over REST.
    pub fn rest(rest: RestClient) -> GroupControl {
        GroupControl { rest, fix: None }
    }

    /// Actions over `fix`, reads over `rest`.
    pub fn fix(rest: RestClient, fix: FixSession) -> GroupControl {
        GroupControl {
            rest,
            fix: Some(fix),
        }
    }

    pub fn rest_client(&self) -> &RestClient {
        &self.rest
    }

    pub fn fix_session(&self) -> Option<&FixSession> {
        self.fix.as_ref()
    }

    /// `"rest"` or `"fix"`.
    pub fn channel(&self) -> &'static str {
        if self.fix.is_some() { "fix" } else { "rest" }
    }

    /// The FIX session, when it is configured and logged on.
    fn fix_up(&self) -> Option<&FixSession> {
        self.fix.as_ref().filter(|f| f.is_logged_on())
    }

    /// Whether a Trigger for the group would go out without being signed first: over FIX
    /// while the session is logged on, else with an armed signature.
    pub fn trigger_signed(&self, g: &GroupAddress) -> bool {
        self.fix_up().is_some() || self.rest.armory().holds(g, crate::auth::now_ms())
    }

    /// Creates a group, settling an unknown outcome by REST listing (on both channels: FIX has
    /// no listing).
    pub async fn create_group_reconciled(
        &self,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
        known: &HashSet<GroupId>,
    ) -> Result<CreateOutcome, CreateError> {
        self.settle_create(None, subaccount, exchange_index, limit, known)
            .await
    }

    /// Settles a create the caller already tried (with [`GroupChannel::create_group`]) whose
    /// outcome is unknown: by listing first, then as [`Self::create_group_reconciled`] does.
    /// `known` must name every group whose creator is known, those of creates made beside
    /// this one included.
    pub async fn settle_tried_create(
        &self,
        tried: ExchangeError,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
        known: &HashSet<GroupId>,
    ) -> Result<CreateOutcome, CreateError> {
        self.settle_create(Some(tried), subaccount, exchange_index, limit, known)
            .await
    }

    async fn settle_create(
        &self,
        tried: Option<ExchangeError>,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
        known: &HashSet<GroupId>,
    ) -> Result<CreateOutcome, CreateError> {
        self.rest
            .settle_create(
                || self.create_group(subaccount, exchange_index, limit),
                tried,
                subaccount,
                exchange_index,
                limit,
                known,
            )
            .await
    }

    /// One attempt to trigger a group on each channel it uses; `Ok` names the channel that
    /// confirmed it (`"fix"` or `"rest"`). Nothing here retries: the caller is the Trigger's one
    /// retry layer (the daemon retries until the exchange confirms, or a later reset of the
    /// group supersedes it).
    pub async fn trigger_attempt(&self, g: &GroupAddress) -> Result<&'static str, ExchangeError> {
        let over_rest = async { self.rest.trigger_once(g).await.map(|()| "rest") };
        let Some(fix) = self.fix_up() else {
            return over_rest.await;
        };
        let over_fix = async { fix.trigger_once(g).await.map(|()| "fix") };
        tokio::pin!(over_fix);
        tokio::select! {
            r = &mut over_fix => match r {
                Ok(c) => return Ok(c),
                Err(e) if e.is_not_found() => return Err(e),
                Err(e) => {
                    tracing::warn!(group = %g.id, error = %e, "Trigger over FIX failed; sending it over REST");
                    return over_rest.await;
                }
            },
            _ = tokio::time::sleep(FIX_TRIGGER_PROMPT) => {
                tracing::warn!(group = %g.id, "no answer over FIX within {FIX_TRIGGER_PROMPT:?}; sending the Trigger over REST too");
            }
        }
        tokio::pin!(over_rest);
        tokio::select! {
            r = &mut over_fix => match r {
                Ok(c) => Ok(c),
                Err(_) => over_rest.await,
            },
            r = &mut over_rest => match r {
                Ok(c) => Ok(c),
                Err(e) => over_fix.await.map_err(|_| e),
            },
        }
    }
}

/// Each attempt goes over FIX while the session is logged on, over REST otherwise; retries
/// (the provided methods) use the REST client's policy.
impl GroupChannel for GroupControl {
    fn retry_policy(&self) -> &RetryPolicy {
        self.rest.retry_policy()
    }

    async fn create_once(
        &self,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
    ) -> Result<GroupAddress, ExchangeError> {
        match self.fix_up() {
            None => {
                self.rest
                    .create_once(subaccount, exchange_index, limit)
                    .await
            }
            Some(f) => f.create_once(subaccount, exchange_index, limit).await,
        }
    }

    async fn reset_once(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        match self.fix_up() {
            None => self.rest.reset_once(g).await,
            Some(f) => f.reset_once(g).await,
        }
    }

    async fn trigger_once(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        self.trigger_attempt(g).await.map(drop)
    }

    async fn update_limit_once(
        &self,
        g: &GroupAddress,
        limit: Contracts,
    ) -> Result<(), ExchangeError> {
        match self.fix_up() {
            None => self.rest.update_limit_once(g, limit).await,
            Some(f) => f.update_limit_once(g, limit).await,
        }
    }

    async fn delete_once(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        match self.fix_up() {
            None => self.rest.delete_once(g).await,
            Some(f) => f.delete_once(g).await,
        }
    }
}
