//! Order groups over FIX, as Kalshi's FIX order-group document describes them:
//! OrderGroupRequest (35=UOG) with `20131 OrderGroupAction` 1 Create, 2 Reset, 3 Delete,
//! 4 Trigger, 5 Update; `20130 OrderGroupID` (never on Create); `20132 OrderGroupContractsLimit`
//! (whole contracts, on Create and Update); `79 AllocAccount` (subaccount) and
//! `100 ExDestination` (exchange index), both omitted when 0 as the examples do. The answer is
//! OrderGroupResponse (35=UOH: 20130, 20132 on Create/Update, 79) or a reject (35=j / 35=3).
//!
//! The session is a [`GroupChannel`], as the REST client is: one attempt per call, with the same
//! errors; the channel's provided methods retry them by the same rules.

use super::codec::Message;
use super::session::FixSession;
use super::tag;
use crate::budget::Priority;
use crate::channel::GroupChannel;
use crate::op::Op;
use crate::retry::RetryPolicy;
use crate::{ExchangeError, GroupAddress, GroupId};
use riskd_units::Contracts;

pub const MSG_REQUEST: &str = "UOG";
pub const MSG_RESPONSE: &str = "UOH";

/// 20131 OrderGroupAction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create = 1,
    Reset = 2,
    Delete = 3,
    Trigger = 4,
    Update = 5,
}

impl Action {
    pub fn from_code(code: i64) -> Option<Action> {
        Some(match code {
            1 => Action::Create,
            2 => Action::Reset,
            3 => Action::Delete,
            4 => Action::Trigger,
            5 => Action::Update,
            _ => return None,
        })
    }

    /// The operation name used in errors and metrics (the REST client's names).
    pub fn op(self) -> &'static str {
        match self {
            Action::Create => Op::CreateOrderGroup.as_str(),
            Action::Reset => Op::ResetOrderGroup.as_str(),
            Action::Delete => Op::DeleteOrderGroup.as_str(),
            Action::Trigger => Op::TriggerOrderGroup.as_str(),
            Action::Update => Op::UpdateOrderGroupLimit.as_str(),
        }
    }
}

/// The body of an action on an existing group (reset, trigger, delete).
fn group_body(action: Action, g: &GroupAddress) -> Result<Vec<(u32, Vec<u8>)>, ExchangeError> {
    request_body(action, Some(&g.id), None, g.subaccount, g.exchange_index)
}

/// A UOG body (after 35): the action, then the group, limit, subaccount and exchange index.
pub fn request_body(
    action: Action,
    group: Option<&GroupId>,
    limit: Option<Contracts>,
    subaccount: u8,
    exchange_index: u32,
) -> Result<Vec<(u32, Vec<u8>)>, ExchangeError> {
    let mut m = Message::default();
    m.push(tag::ORDER_GROUP_ACTION, (action as u8).to_string());
    if let Some(g) = group {
        m.push(tag::ORDER_GROUP_ID, g.as_str());
    }
    if let Some(l) = limit {
        let whole = l.whole().ok_or_else(|| ExchangeError::Decode {
            op: action.op(),
            reason: format!("limit {l}: FIX carries whole contracts only (20132 is an integer)"),
        })?;
        m.push(tag::ORDER_GROUP_CONTRACTS_LIMIT, whole.to_string());
    }
    if subaccount != 0 {
        m.push(tag::ALLOC_ACCOUNT, subaccount.to_string());
    }
    if exchange_index != 0 {
        m.push(tag::EX_DESTINATION, exchange_index.to_string());
    }
    Ok(m.fields)
}

/// What a UOH says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub group: GroupId,
    pub limit: Option<Contracts>,
    pub subaccount: Option<u8>,
}

pub fn parse_response(op: &'static str, msg: &Message) -> Result<Response, ExchangeError> {
    let bad = |reason: String| ExchangeError::Decode { op, reason };
    if msg.msg_type() != Some(MSG_RESPONSE) {
        return Err(bad(format!(
            "expected 35={MSG_RESPONSE}, got 35={}",
            msg.msg_type().unwrap_or("?")
        )));
    }
    let group = msg
        .get_str(tag::ORDER_GROUP_ID)
        .filter(|g| !g.is_empty())
        .ok_or_else(|| bad("35=UOH without 20130 OrderGroupID".into()))?;
    let limit = match msg.get_str(tag::ORDER_GROUP_CONTRACTS_LIMIT) {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .ok()
                .filter(|l| *l > 0)
                .map(Contracts::from_whole)
                .ok_or_else(|| bad(format!("20132 OrderGroupContractsLimit {t:?}")))?,
        ),
    };
    let subaccount = match msg.get_str(tag::ALLOC_ACCOUNT) {
        None => None,
        Some(t) => Some(
            t.parse::<u8>()
                .map_err(|_| bad(format!("79 AllocAccount {t:?}")))?,
        ),
    };
    Ok(Response {
        group: GroupId::new(group.to_owned()),
        limit,
        subaccount,
    })
}

impl FixSession {
    async fn uog(
        &self,
        action: Action,
        priority: Priority,
        body: Vec<(u32, Vec<u8>)>,
    ) -> Result<Response, ExchangeError> {
        let op = action.op();
        let msg = self.request(op, priority, MSG_REQUEST, body).await?;
        parse_response(op, &msg)
    }

    /// An action on an existing group (reset, trigger, delete).
    async fn act(
        &self,
        action: Action,
        priority: Priority,
        g: &GroupAddress,
    ) -> Result<(), ExchangeError> {
        let body = group_body(action, g)?;
        self.uog(action, priority, body).await.map(drop)
    }
}

/// Each attempt is one request; the trait's provided methods retry them.
impl GroupChannel for FixSession {
    fn retry_policy(&self) -> &RetryPolicy {
        &RetryPolicy::DEFAULT
    }

    /// The UOH's 79 must be ours.
    async fn create_once(
        &self,
        subaccount: u8,
        exchange_index: u32,
        limit: Contracts,
    ) -> Result<GroupAddress, ExchangeError> {
        let body = request_body(
            Action::Create,
            None,
            Some(limit),
            subaccount,
            exchange_index,
        )?;
        let r = self.uog(Action::Create, Priority::Normal, body).await?;
        if let Some(s) = r.subaccount
            && s != subaccount
        {
            tracing::warn!(group = %r.group, asked = subaccount, answered = s, "UOH names another subaccount than the create asked for");
        }
        Ok(GroupAddress {
            id: r.group,
            subaccount,
            exchange_index,
        })
    }

    async fn reset_once(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        self.act(Action::Reset, Priority::Normal, g).await
    }

    async fn trigger_once(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        self.act(Action::Trigger, Priority::Trigger, g).await
    }

    async fn update_limit_once(
        &self,
        g: &GroupAddress,
        limit: Contracts,
    ) -> Result<(), ExchangeError> {
        let body = request_body(
            Action::Update,
            Some(&g.id),
            Some(limit),
            g.subaccount,
            g.exchange_index,
        )?;
        self.uog(Action::Update, Priority::Normal, body)
            .await
            .map(drop)
    }

    async fn delete_once(&self, g: &GroupAddress) -> Result<(), ExchangeError> {
        self.act(Action::Delete, Priority::Normal, g).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(fields: &[(u32, Vec<u8>)]) -> String {
        fields
            .iter()
            .map(|(t, v)| format!("{t}={}|", String::from_utf8_lossy(v)))
            .collect()
    }

    #[test]
    fn bodies_follow_the_seed_document() {
        let g = GroupId::new("770e8400-e29b-41d4-a716-446655440002");
        let create = request_body(
            Action::Create,
            None,
            Some(Contracts::from_whole(5000)),
            0,
            0,
        )
        .unwrap();
        assert_eq!(text(&create), "20131=1|20132=5000|");
        let reset = request_body(Action::Reset, Some(&g), None, 0, 0).unwrap();
        assert_eq!(
            text(&reset),
            "20131=2|20130=770e8400-e29b-41d4-a716-446655440002|"
        );
        let update = request_body(
            Action::Update,
            Some(&g),
            Some(Contracts::from_whole(2500)),
            3,
            2,
        )
        .unwrap();
        assert_eq!(
            text(&update),
            "20131=5|20130=770e8400-e29b-41d4-a716-446655440002|20132=2500|79=3|100=2|"
        );
        let half = Contracts::parse("1.5").unwrap();
        let e = request_body(Action::Create, None, Some(half), 0, 0).unwrap_err();
        assert!(e.to_string().contains("whole contracts"), "{e}");
    }

    #[test]
    fn responses() {
        let mut m = Message::new("UOH");
        m.push(20130, "g-1").push(20132, "5000").push(79, "2");
        let r = parse_response("create_order_group", &m).unwrap();
        assert_eq!(r.group.as_str(), "g-1");
        assert_eq!(r.limit, Some(Contracts::from_whole(5000)));
        assert_eq!(r.subaccount, Some(2));
        let e = parse_response("reset_order_group", &Message::new("UOH")).unwrap_err();
        assert!(e.to_string().contains("without 20130"), "{e}");
        let mut m = Message::new("UOH");
        m.push(20130, "g").push(79, "x");
        assert!(parse_response("x", &m).is_err());
    }
}
