//! Where order-group actions go: the REST API, or a FIX session when `exchange.control = "fix"`
//! (DESIGN.md §10). Reads (listing groups, looking up orders) are REST either way: FIX has no
//! listing. A create whose outcome is unknown is settled by REST listing on both channels.

use std::collections::HashSet;

use super::fix::FixSession;
use super::rest::{CreateError, CreateOutcome};
use super::{ExchangeError, GroupAddress, GroupId, RestClient};
use crate::risk::Contracts;

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

    /// Creates a group, settling an unknown outcome by listing.
    pub async fn create_group_reconciled(
        &self,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
        known: &HashSet<GroupId>,
    ) -> Result<CreateOutcome, CreateError> {
        match &self.fix {
            None => {
                self.rest
                    .create_group_reconciled(subaccount, exchange_index, limit, known)
                    .await
            }
            Some(fix) => {
                self.rest
                    .settle_create(
                        || fix.create_group(subaccount, exchange_index, limit),
                        subaccount,
                        exchange_index,
                        limit,
                        known,
                    )
                    .await
            }
        }
    }

    pub async fn reset_group(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        match &self.fix {
            None => self.rest.reset_group(g).await,
            Some(f) => f.reset_group(g).await,
        }
    }

    pub async fn trigger_group(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        match &self.fix {
            None => self.rest.trigger_group(g).await,
            Some(f) => f.trigger_group(g).await,
        }
    }

    pub async fn update_limit(
        &self,
        g: &GroupAddress,
        limit: Contracts,
    ) -> Result<(), ExchangeError> {
        match &self.fix {
            None => self.rest.update_limit(g, limit).await,
            Some(f) => f.update_limit(g, limit).await,
        }
    }

    pub async fn delete_group(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        match &self.fix {
            None => self.rest.delete_group(g).await,
            Some(f) => f.delete_group(g).await,
        }
    }
}
