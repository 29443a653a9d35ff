//! Order-group actions over one channel, and the one place they are retried.
//!
//! A [`GroupChannel`] makes one attempt at an action (REST signs afresh and sends again at
//! once, once, when a signature expired on the way: that proves nothing was applied). The
//! provided methods retry those attempts by the rules of [`crate::retry`], with the channel's
//! one [`RetryPolicy`]. The REST client and a FIX session implement the attempts;
//! [`crate::GroupControl`] implements them by choosing a channel for each attempt, so an action
//! retried while FIX drops goes on over REST, and its retries are this same code.

use std::future::Future;

use crate::error::ExchangeError;
use crate::group::GroupAddress;
use crate::op::Op;
use crate::retry::{Repeat, RetryPolicy, with_retries};
use riskd_units::Contracts;

/// A channel for order-group actions: REST, a FIX session, or the daemon's choice of the two.
pub trait GroupChannel: Sync {
    /// The backoff between attempts of the provided methods.
    fn retry_policy(&self) -> &RetryPolicy;

    /// One create attempt.
    fn create_once(
        &self,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
    ) -> impl Future<Output = Result<GroupAddress, ExchangeError>> + Send;

    /// One reset attempt.
    fn reset_once(
        &self,
        g: &GroupAddress,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send;

    /// One Trigger attempt, first in line for the budget (and over REST with an armed
    /// signature when one is fresh): for a caller that is itself the retry layer, as the
    /// daemon is.
    fn trigger_once(
        &self,
        g: &GroupAddress,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send;

    /// One attempt to set a group's contracts limit.
    fn update_limit_once(
        &self,
        g: &GroupAddress,
        limit: Contracts,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send;

    /// One delete attempt.
    fn delete_once(
        &self,
        g: &GroupAddress,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send;

    /// A create, retried only while the exchange certainly did not apply it. An outcome left
    /// unknown is the caller's to settle, by listing
    /// ([`crate::GroupControl::create_group_reconciled`]).
    fn create_group(
        &self,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
    ) -> impl Future<Output = Result<GroupAddress, ExchangeError>> + Send {
        let op = Op::CreateOrderGroup.as_str();
        with_retries(
            op,
            self.retry_policy(),
            Repeat::OnlyIfNotApplied,
            None,
            move |_| self.create_once(subaccount, exchange_index, limit),
        )
    }

    fn reset_group(
        &self,
        g: &GroupAddress,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        let op = Op::ResetOrderGroup.as_str();
        with_retries(op, self.retry_policy(), Repeat::Safe, None, move |_| {
            self.reset_once(g)
        })
    }

    /// A Trigger, retried while retrying can help.
    fn trigger_group(
        &self,
        g: &GroupAddress,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        let op = Op::TriggerOrderGroup.as_str();
        with_retries(op, self.retry_policy(), Repeat::Safe, None, move |_| {
            self.trigger_once(g)
        })
    }

    fn update_limit(
        &self,
        g: &GroupAddress,
        limit: Contracts,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        let op = Op::UpdateOrderGroupLimit.as_str();
        with_retries(op, self.retry_policy(), Repeat::Safe, None, move |_| {
            self.update_limit_once(g, limit)
        })
    }

    /// A delete; a group already gone after an attempt whose outcome was unknown counts as
    /// deleted (that attempt deleted it).
    fn delete_group(
        &self,
        g: &GroupAddress,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        let op = Op::DeleteOrderGroup.as_str();
        let gone: fn() = || ();
        with_retries(
            op,
            self.retry_policy(),
            Repeat::Safe,
            Some(gone),
            move |_| self.delete_once(g),
        )
    }
}
