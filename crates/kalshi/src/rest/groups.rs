//! The order-group calls: list and get, settling a create whose outcome is unknown, and one
//! attempt at each action (create, reset, trigger, limit, delete) as a [`GroupChannel`].

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Bill, Call, CreateError, CreateOutcome, RestClient};
use crate::auth::{SignedHeaders, now_ms};
use crate::budget::Priority;
use crate::channel::GroupChannel;
use crate::error::ExchangeError;
use crate::group::{GroupAddress, GroupDetail, GroupId, ListedGroup};
use crate::op::Op;
use crate::retry::{Repeat, RetryPolicy};
use crate::wire;
use riskd_units::Contracts;

/// The query string order-group mutators carry: the group's own subaccount and exchange index.
pub(super) fn query(g: &GroupAddress) -> String {
    format!(
        "?subaccount={}&exchange_index={}",
        g.subaccount, g.exchange_index
    )
}

pub(super) fn parse_limit(fp: Option<&str>, legacy: Option<i64>) -> Option<Contracts> {
    match fp {
        Some(t) => Contracts::parse(t).ok(),
        None => legacy.map(Contracts::from_whole),
    }
}

impl RestClient {
    /// A create made by `create` (over REST or FIX) whose unknown outcome is settled by
    /// listing: a new group (not in `known`) in the same subaccount with the same exchange
    /// index and limit is the one this call made. The exchange's reads may lag a write by some
    /// hundreds of milliseconds, so an empty listing is checked again before the create is
    /// tried once more.
    ///
    /// `tried` is an attempt already made by the caller whose outcome is unknown: settling
    /// starts by listing, not by creating.
    pub async fn settle_create<F>(
        &self,
        create: impl Fn() -> F,
        tried: Option<ExchangeError>,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
        known: &HashSet<GroupId>,
    ) -> Result<CreateOutcome, CreateError>
    where
        F: std::future::Future<Output = Result<GroupAddress, ExchangeError>>,
    {
        const SETTLE_ROUNDS: u32 = 3;
        let unsettled = |last| CreateError::Unsettled {
            subaccount,
            exchange_index,
            limit,
            last,
        };
        let mut last = None;
        let mut tried = tried;
        for _ in 0..self.retry.attempts.max(1) {
            let attempt = match tried.take() {
                Some(e) => Err(e),
                None => create().await,
            };
            match attempt {
                Ok(g) => return Ok(CreateOutcome::Created(g)),
                Err(e) if !e.outcome_unknown() => return Err(CreateError::Refused(e)),
                Err(e) => {
                    tracing::warn!(error = %e, subaccount, exchange_index, %limit, "order-group create outcome unknown; settling by listing");
                    last = Some(e);
                }
            }
            for round in 0..SETTLE_ROUNDS {
                tokio::time::sleep(self.retry.initial * (round + 1) * 4).await;
                let listed = match self.list_groups(Some(subaccount)).await {
                    Ok(l) => l,
                    Err(e) => return Err(unsettled(e)),
                };
                let new: Vec<GroupAddress> = listed
                    .into_iter()
                    .filter(|g| {
                        !known.contains(&g.id)
                            && g.exchange_index == exchange_index
                            && g.contracts_limit == Some(limit)
                    })
                    .map(|g| GroupAddress {
                        id: g.id,
                        subaccount,
                        exchange_index,
                    })
                    .collect();
                match new.len() {
                    0 => continue,
                    1 => return Ok(CreateOutcome::Adopted(new[0].clone())),
                    _ => return Ok(CreateOutcome::Ambiguous(new)),
                }
            }
            // Not there after settling: the create did not happen; try again.
        }
        Err(unsettled(last.unwrap_or(ExchangeError::Decode {
            op: Op::CreateOrderGroup.as_str(),
            reason: "no attempt made".into(),
        })))
    }

    /// Every group, or one subaccount's.
    pub async fn list_groups(
        &self,
        subaccount: Option<u8>,
    ) -> Result<Vec<ListedGroup>, ExchangeError> {
        let path = match subaccount {
            Some(s) => format!("/portfolio/order_groups?subaccount={s}"),
            None => "/portfolio/order_groups".to_owned(),
        };
        let r: wire::GetOrderGroupsResponse = self
            .get_json(
                Op::ListOrderGroups.as_str(),
                &path,
                Bill::Write(Priority::Normal),
            )
            .await?;
        Ok(r.order_groups
            .into_iter()
            .map(|g| ListedGroup {
                id: GroupId::new(g.id),
                contracts_limit: parse_limit(g.contracts_limit_fp.as_deref(), g.contracts_limit),
                exchange_index: g.exchange_index.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
            })
            .collect())
    }

    /// Every group on the account with its subaccount and limit. The listing has no subaccount
    /// field, so each subaccount (0..=63) is listed until every group of the account-wide
    /// listing has been placed.
    pub async fn list_account_groups(
        &self,
    ) -> Result<Vec<(GroupAddress, Option<Contracts>)>, ExchangeError> {
        let all = self.list_groups(None).await?;
        let mut left: HashSet<GroupId> = all.iter().map(|g| g.id.clone()).collect();
        let mut out = Vec::new();
        for s in 0..=63u8 {
            if left.is_empty() {
                break;
            }
            for g in self.list_groups(Some(s)).await? {
                if left.remove(&g.id) {
                    out.push((
                        GroupAddress {
                            id: g.id,
                            subaccount: s,
                            exchange_index: g.exchange_index,
                        },
                        g.contracts_limit,
                    ));
                }
            }
        }
        Ok(out)
    }

    pub async fn get_group(
        &self,
        id: &GroupId,
        subaccount: Option<u8>,
    ) -> Result<GroupDetail, ExchangeError> {
        let path = match subaccount {
            Some(s) => format!("/portfolio/order_groups/{id}?subaccount={s}"),
            None => format!("/portfolio/order_groups/{id}"),
        };
        let r: wire::GetOrderGroupResponse = self
            .get_json(
                Op::GetOrderGroup.as_str(),
                &path,
                Bill::Write(Priority::Normal),
            )
            .await?;
        Ok(GroupDetail {
            orders: r.orders,
            contracts_limit: parse_limit(r.contracts_limit_fp.as_deref(), None),
            exchange_index: r.exchange_index.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
        })
    }

    /// `PUT /portfolio/order_groups/{id}/{action}` with an empty object: reset or trigger.
    pub(super) async fn put_action(
        &self,
        g: &GroupAddress,
        op: Op,
        action: &str,
        priority: Priority,
        presigned: Option<SignedHeaders>,
    ) -> Result<(), ExchangeError> {
        let path = format!("/portfolio/order_groups/{}/{action}{}", g.id, query(g));
        self.call(Call {
            op: op.as_str(),
            method: Method::PUT,
            path: &path,
            body: Some(&json!({})),
            bill: Bill::Write(priority),
            repeat: Repeat::Never,
            presigned,
        })
        .await
        .map(drop)
    }
}

/// Each attempt is one request (an expired signature aside); the trait's provided methods
/// retry them.
impl GroupChannel for RestClient {
    fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    async fn create_once(
        &self,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
    ) -> Result<GroupAddress, ExchangeError> {
        let body = serde_json::to_value(wire::CreateOrderGroupRequest {
            subaccount: Some(subaccount.into()),
            contracts_limit: None,
            contracts_limit_fp: Some(limit.to_string()),
            exchange_index: Some(exchange_index.into()),
        })
        .unwrap_or(Value::Null);
        let bytes = self
            .call(Call {
                op: Op::CreateOrderGroup.as_str(),
                method: Method::POST,
                path: "/portfolio/order_groups/create",
                body: Some(&body),
                bill: Bill::Write(Priority::Normal),
                repeat: Repeat::Never,
                presigned: None,
            })
            .await?;
        let r: wire::CreateOrderGroupResponse =
            Self::decode(Op::CreateOrderGroup.as_str(), &bytes)?;
        Ok(GroupAddress {
            id: GroupId::new(r.order_group_id),
            subaccount,
            exchange_index,
        })
    }

    async fn reset_once(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        self.put_action(g, Op::ResetOrderGroup, "reset", Priority::Normal, None)
            .await
    }

    async fn trigger_once(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        let armed = self.armory.take(g, now_ms());
        self.put_action(
            g,
            Op::TriggerOrderGroup,
            "trigger",
            Priority::Trigger,
            armed,
        )
        .await
    }

    async fn update_limit_once(
        &self,
        g: &GroupAddress,
        limit: Contracts,
    ) -> Result<(), ExchangeError> {
        let path = format!("/portfolio/order_groups/{}/limit{}", g.id, query(g));
        let body = json!({"contracts_limit_fp": limit.to_string()});
        self.call(Call {
            op: Op::UpdateOrderGroupLimit.as_str(),
            method: Method::PUT,
            path: &path,
            body: Some(&body),
            bill: Bill::Write(Priority::Normal),
            repeat: Repeat::Never,
            presigned: None,
        })
        .await
        .map(drop)
    }

    async fn delete_once(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        let path = format!("/portfolio/order_groups/{}{}", g.id, query(g));
        self.call(Call {
            op: Op::DeleteOrderGroup.as_str(),
            method: Method::DELETE,
            path: &path,
            body: None,
            bill: Bill::Write(Priority::Normal),
            repeat: Repeat::Never,
            presigned: None,
        })
        .await
        .map(drop)
    }
}
