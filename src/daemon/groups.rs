//! Preparing the groups every enabled strategy needs: list, settle open create intents, adopt,
//! create.
//!
//! One group per (strategy, subaccount, exchange index), whatever happens to the process:
//! - Each create is preceded by a durable [`CreateIntent`]; the intent stays open until
//!   `state.json` names the result, so a crash anywhere in between leaves a trace. The
//!   intents of every create a start or reload needs are written in one batch, before the
//!   first create (one write, not one per group: a first start with 1,000 strategies would
//!   otherwise rewrite the file 1,000 times).
//! - Before anything is created, every open intent is settled by listing its subaccount: a
//!   group that appeared there with the intent's exchange index and limit, and that no record
//!   names, is the daemon's own. One is adopted for the strategy (if it still wants that slot);
//!   any others are duplicates and are deleted. Intents are settled newest first, and each
//!   intent remembers every group known when it was written, so two strategies creating in
//!   the same subaccount with the same limit each get their own group back. Intents of one
//!   batch share what was known, so a group any of them created could be any of theirs: each
//!   takes one (the groups are alike: same subaccount, exchange index and limit, new), and the
//!   oldest deletes what is left.
//! - The creates go a few at a time (signing is most of what a create costs the daemon, and
//!   the signatures are made on every core). A create whose answer was lost is settled by
//!   listing once every create beside it has answered, knowing the groups they made; when
//!   several of them lost their answers, each takes one of the alike groups listed, in turn.
//!   Several matches for the last of them are duplicates, handled as above.
//!
//! The exchange does not say who created a group. A group that appears in the subaccount with
//! the same exchange index and limit while the daemon's create is in doubt is taken to be the
//! daemon's: the reading that never leaves a strategy with two groups, or with none.
//!
//! This runs outside the risk loop (at start before the loop exists, on reload in a task of
//! its own); its result goes back to the loop as data.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use futures_util::{StreamExt, stream};

use super::intents::{CreateIntent, IntentLog};
use super::store::StoreError;
use crate::config::Loaded;
use crate::kalshi::auth::now_ms;
use crate::kalshi::group::ListedGroup;
use crate::kalshi::rest::{CreateError, CreateOutcome};
use crate::kalshi::{ExchangeError, GroupAddress, GroupControl, GroupId};
use crate::kalshi::{GroupChannel, Op};
use crate::risk::engine::{Decision, DecisionKind, GroupSnapshot, Snapshot, decision};

const DAEMON: &str = "daemon";

/// How many creates a start or reload keeps in flight at once.
const CREATES_IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{0}")]
    Exchange(#[from] ExchangeError),
    #[error("{0}")]
    Create(#[from] CreateError),
    #[error("recording a create intent: {0}")]
    Intent(#[from] StoreError),
}

/// What [`prepare`] found and did.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Every enabled strategy's groups, in the order of its exchange indexes.
    pub groups: BTreeMap<String, Vec<GroupAddress>>,
    /// Orphans adopted and duplicates deleted, for the audit log.
    pub decisions: Vec<Decision>,
    /// Intents to close once `state.json` names these groups.
    pub settled_intents: Vec<u64>,
}

/// A strategy's slot: one group per (strategy, subaccount, exchange index).
type Slot = (String, u8, u32);

/// What a slot gets: a group already there, or a create (its intent's index in the batch).
enum Planned {
    Found(GroupAddress),
    Create(usize),
}

struct Work<'a> {
    control: &'a GroupControl,
    out: Prepared,
}

impl Work<'_> {
    fn record(&mut self, event: DecisionKind, strategy: &str, group: &GroupId, reason: String) {
        let mut d = decision(now_ms(), event, reason, DAEMON);
        d.strategy = Some(strategy.to_owned());
        d.group_id = Some(group.clone());
        tracing::warn!(event = ?event, strategy, group = %group, reason = %d.reason, "group settled");
        self.out.decisions.push(d);
    }

    /// Keeps the first of `found` for `strategy` (when `adopt`) and deletes the rest.
    async fn keep_one(
        &mut self,
        strategy: &str,
        found: &[GroupAddress],
        adopt: bool,
        why: &str,
    ) -> Option<GroupAddress> {
        let (kept, extra) = match (adopt, found.split_first()) {
            (true, Some((first, rest))) => (Some(first.clone()), rest),
            _ => (None, found),
        };
        if let Some(g) = &kept {
            self.record(
                DecisionKind::OrphanAdopted,
                strategy,
                &g.id,
                format!(
                    "adopted group {} (subaccount {}, exchange index {}): {why}",
                    g.id, g.subaccount, g.exchange_index
                ),
            );
        }
        for g in extra {
            let reason = match self.control.delete_group(g).await {
                Ok(()) => format!("deleted duplicate group {}: {why}", g.id),
                Err(e) => format!("could not delete duplicate group {}: {e}; {why}", g.id),
            };
            self.record(DecisionKind::OrphanDeleted, strategy, &g.id, reason);
        }
        kept
    }
}

/// Lists, settles, adopts and creates the groups every enabled strategy of `loaded` needs,
/// given the records in `snapshot` (live and retired strategies). At start (`update_limits`)
/// an adopted group whose limit differs from its policy is updated at once; on reload the
/// risk core decides, because a limit lowered below the group's volume must wait for the
/// window to drain.
pub async fn prepare(
    control: &GroupControl,
    intents: &IntentLog,
    loaded: &Loaded,
    snapshot: &Snapshot,
    update_limits: bool,
) -> Result<Prepared, PrepareError> {
    let pending = intents.pending();
    let subaccounts: BTreeSet<u8> = loaded
        .enabled()
        .map(|p| p.subaccount)
        .chain(pending.iter().map(|i| i.subaccount))
        .collect();
    let mut listed: BTreeMap<u8, Vec<ListedGroup>> = BTreeMap::new();
    for &s in &subaccounts {
        listed.insert(s, control.rest_client().list_groups(Some(s)).await?);
    }
    let recorded: HashSet<GroupId> = snapshot
        .strategies
        .values()
        .flat_map(|s| s.groups.iter().map(|g| g.id.clone()))
        .collect();
    let mut known: HashSet<GroupId> = recorded.clone();
    known.extend(listed.values().flatten().map(|g| g.id.clone()));
    let on_exchange = |sub: u8, id: &GroupId| {
        listed
            .get(&sub)
            .and_then(|l| l.iter().find(|g| &g.id == id))
    };
    // The recorded group of each slot, if it is still on the exchange.
    let mut live: BTreeMap<Slot, (GroupSnapshot, Option<crate::risk::Contracts>)> = BTreeMap::new();
    for (name, s) in &snapshot.strategies {
        for g in &s.groups {
            if let Some(l) = on_exchange(g.subaccount, &g.id) {
                live.entry((name.clone(), g.subaccount, g.exchange_index))
                    .or_insert((g.clone(), l.contracts_limit));
            }
        }
    }
    let wants = |slot: &Slot| {
        loaded.enabled().any(|p| {
            p.risk.name == slot.0 && p.subaccount == slot.1 && p.exchange_indexes.contains(&slot.2)
        })
    };

    let mut work = Work {
        control,
        out: Prepared::default(),
    };
    // Settle open intents, newest first.
    let mut claimed: HashSet<GroupId> = HashSet::new();
    let mut adopted: BTreeMap<Slot, GroupAddress> = BTreeMap::new();
    for intent in pending.iter().rev() {
        let mut found: Vec<GroupAddress> = listed
            .get(&intent.subaccount)
            .into_iter()
            .flatten()
            .filter(|g| {
                !intent.known.contains(&g.id)
                    && !recorded.contains(&g.id)
                    && !claimed.contains(&g.id)
                    && g.exchange_index == intent.exchange_index
                    && g.contracts_limit == Some(intent.contracts_limit)
            })
            .map(|g| GroupAddress {
                id: g.id.clone(),
                subaccount: intent.subaccount,
                exchange_index: intent.exchange_index,
            })
            .collect();
        found.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        // An older intent of the same batch, for the same kind of group, may own any of these:
        // take one and leave the rest to it.
        let sibling_left = pending.iter().any(|o| {
            o.id < intent.id
                && o.subaccount == intent.subaccount
                && o.exchange_index == intent.exchange_index
                && o.contracts_limit == intent.contracts_limit
                && o.known == intent.known
        });
        if sibling_left {
            found.truncate(1);
        }
        claimed.extend(found.iter().map(|g| g.id.clone()));
        let slot = (
            intent.strategy.clone(),
            intent.subaccount,
            intent.exchange_index,
        );
        let adopt = wants(&slot) && !live.contains_key(&slot) && !adopted.contains_key(&slot);
        if found.is_empty() {
            tracing::info!(strategy = %intent.strategy, subaccount = intent.subaccount, exchange_index = intent.exchange_index, "an open create intent settled: nothing had been created");
        } else {
            let why = if adopt {
                "created before the daemon could record it"
            } else {
                "created before the daemon could record it, for a slot that no longer needs it"
            };
            if let Some(g) = work.keep_one(&intent.strategy, &found, adopt, why).await {
                adopted.insert(slot, g);
            }
        }
        work.out.settled_intents.push(intent.id);
    }

    // Each strategy's groups, in the order of its exchange indexes: found, or to be created.
    let mut plan: Vec<(String, Vec<Planned>)> = Vec::new();
    let known_now = Arc::new(known.iter().cloned().collect::<BTreeSet<GroupId>>());
    let mut batch: Vec<CreateIntent> = Vec::new();
    for p in loaded.enabled() {
        let name = &p.risk.name;
        let mut groups = Vec::new();
        for &ex in &p.exchange_indexes {
            let slot = (name.clone(), p.subaccount, ex);
            if let Some(g) = adopted.remove(&slot) {
                groups.push(Planned::Found(g));
                continue;
            }
            if let Some((g, limit)) = live.get(&slot) {
                let addr = GroupAddress {
                    id: g.id.clone(),
                    subaccount: p.subaccount,
                    exchange_index: ex,
                };
                if update_limits && *limit != Some(p.risk.group_limit) {
                    tracing::info!(strategy = %name, group = %addr.id, limit = %p.risk.group_limit, "updating an adopted group's limit");
                    control.update_limit(&addr, p.risk.group_limit).await?;
                }
                tracing::info!(strategy = %name, group = %addr.id, exchange_index = ex, "adopted group");
                groups.push(Planned::Found(addr));
                continue;
            }
            if let Some(s) = snapshot.strategies.get(name)
                && let Some(g) = s
                    .groups
                    .iter()
                    .find(|g| g.subaccount == p.subaccount && g.exchange_index == ex)
            {
                tracing::warn!(strategy = %name, group = %g.id, "the group state.json names is gone from the exchange; creating another");
            }
            groups.push(Planned::Create(batch.len()));
            batch.push(CreateIntent {
                id: 0,
                strategy: name.clone(),
                subaccount: p.subaccount,
                exchange_index: ex,
                contracts_limit: p.risk.group_limit,
                known: Arc::clone(&known_now),
                at_ms: now_ms(),
            });
        }
        plan.push((name.clone(), groups));
    }

    // Every create's intent, in one durable write, before the first create.
    let ids = if batch.is_empty() {
        Vec::new()
    } else {
        intents.record_all(batch.clone())?
    };
    for (intent, id) in batch.iter_mut().zip(ids) {
        intent.id = id;
    }
    // The creates, a few in flight at once: signing a request is most of what a create costs
    // the daemon, and a first start with 1,000 strategies makes 1,000 of them. Each is tried
    // as a whole first (retried while the exchange certainly did not apply it); only once
    // every create has answered are the ones whose outcome is unknown settled, one at a time,
    // by listing: every group the others made is known by then, so a group one of them made
    // is never taken for another's.
    // Each create is a task of its own, so that their signatures are made on every core.
    let kinds: Vec<(u8, u32, crate::risk::Contracts)> = (batch.iter())
        .map(|w| (w.subaccount, w.exchange_index, w.contracts_limit))
        .collect();
    let tried: Vec<Result<GroupAddress, ExchangeError>> = stream::iter(kinds)
        .map(|(subaccount, ex, limit)| {
            let control = control.clone();
            tokio::spawn(async move { control.create_group(subaccount, ex, limit).await })
        })
        .buffered(CREATES_IN_FLIGHT)
        .map(|joined| {
            // A create task that did not finish (the runtime shutting down) may or may not
            // have reached the exchange.
            joined.unwrap_or_else(|e| {
                Err(ExchangeError::Transport {
                    op: Op::CreateOrderGroup.as_str(),
                    reason: format!("the create's task ended early: {e}"),
                    maybe_sent: true,
                })
            })
        })
        .collect()
        .await;
    known.extend(tried.iter().flatten().map(|g| g.id.clone()));
    // A refused create made nothing: its intent is closed and the start or reload fails. The
    // intents of the creates that did land stay open, and the next attempt adopts their groups.
    let refused = |r: &Result<GroupAddress, ExchangeError>| match r {
        Err(e) if !e.outcome_unknown() => Some(e.clone()),
        _ => None,
    };
    if let Some(e) = tried.iter().find_map(refused) {
        let closed: Vec<u64> = (batch.iter().zip(&tried))
            .filter(|(_, r)| refused(r).is_some())
            .map(|(want, _)| want.id)
            .collect();
        intents.close(&closed)?;
        return Err(PrepareError::Exchange(e));
    }
    // Whether each create's outcome is still to be settled, in the order they are settled.
    let unsettled: Vec<bool> = tried.iter().map(Result::is_err).collect();
    let mut tried = tried.into_iter();
    for (name, planned) in plan {
        let mut groups = Vec::with_capacity(planned.len());
        for g in planned {
            let (k, want) = match g {
                Planned::Found(found) => {
                    groups.push(found);
                    continue;
                }
                Planned::Create(k) => (k, &batch[k]),
            };
            let (id, ex) = (want.id, want.exchange_index);
            // The plan names the creates in the batch's order, each once.
            let outcome = match tried.next() {
                Some(Ok(a)) => Ok(CreateOutcome::Created(a)),
                Some(Err(e)) => {
                    control
                        .settle_tried_create(e, want.subaccount, ex, want.contracts_limit, &known)
                        .await
                }
                None => {
                    control
                        .create_group_reconciled(want.subaccount, ex, want.contracts_limit, &known)
                        .await
                }
            };
            let created = match outcome {
                Ok(CreateOutcome::Created(a)) | Ok(CreateOutcome::Adopted(a)) => a,
                // Another create of the same kind from this batch is still to be settled:
                // the groups listed are alike, this one takes the first, and that one finds
                // the rest.
                Ok(CreateOutcome::Ambiguous(candidates))
                    if (batch.iter().zip(&unsettled))
                        .skip(k + 1)
                        .any(|(other, &left)| {
                            left && other.subaccount == want.subaccount
                                && other.exchange_index == ex
                                && other.contracts_limit == want.contracts_limit
                        }) =>
                {
                    candidates[0].clone()
                }
                Ok(CreateOutcome::Ambiguous(candidates)) => {
                    known.extend(candidates.iter().map(|c| c.id.clone()));
                    let why = "a create whose answer was lost landed more than once";
                    let Some(a) = work.keep_one(&name, &candidates, true, why).await else {
                        return Err(PrepareError::Exchange(ExchangeError::Decode {
                            op: Op::CreateOrderGroup.as_str(),
                            reason: "an ambiguous create listed no candidate".into(),
                        }));
                    };
                    a
                }
                Err(CreateError::Refused(e)) => {
                    // Nothing was created for this one: its intent is done.
                    intents.close(&[id])?;
                    return Err(PrepareError::Exchange(e));
                }
                // The intent stays open: the next start or reload settles it by listing.
                Err(e) => return Err(e.into()),
            };
            tracing::info!(strategy = %name, group = %created.id, exchange_index = ex, "created group");
            known.insert(created.id.clone());
            work.out.settled_intents.push(id);
            groups.push(created);
        }
        work.out.groups.insert(name.clone(), groups);
    }
    Ok(work.out)
}

/// The snapshot to restore from: the persisted one, with each enabled strategy's groups
/// replaced by the ones just verified on the exchange.
pub fn with_groups(
    mut snap: Snapshot,
    loaded: &Loaded,
    groups: &BTreeMap<String, Vec<GroupAddress>>,
) -> Snapshot {
    use crate::risk::engine::StrategySnapshot;
    use crate::risk::guard::GuardState;
    for p in loaded.enabled() {
        let verified: Vec<GroupSnapshot> = groups
            .get(&p.risk.name)
            .into_iter()
            .flatten()
            .map(|g| GroupSnapshot {
                id: g.id.clone(),
                subaccount: g.subaccount,
                exchange_index: g.exchange_index,
                contracts_limit: p.risk.group_limit,
            })
            .collect();
        snap.strategies
            .entry(p.risk.name.clone())
            .and_modify(|s| s.groups = verified.clone())
            .or_insert(StrategySnapshot {
                groups: verified,
                state: GuardState::Active,
                trip: None,
                auto_resets: Vec::new(),
                retired: false,
            });
    }
    snap
}
