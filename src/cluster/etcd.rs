//! The etcd task of cluster mode: registers this member under a lease, reads and watches the
//! shared kill latch, and writes it when the loop asks. It reports to the loop and decides
//! nothing.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ClusterCommand, ClusterEvent, RegisteredStrategy, Registration, SharedLatch};
use crate::config::ClusterConfig;
use crate::kalshi::retry::RetryPolicy;
use crate::risk::LimitSpec;
use crate::risk::engine::HandedTrip;

fn latch_key(cluster: &str) -> String {
    format!("/kalshi-riskd/{cluster}/latch")
}

fn members_prefix(cluster: &str) -> String {
    format!("/kalshi-riskd/{cluster}/members/")
}

/// Every member's registration, never leased: one here and not among the members was lost.
fn registry_prefix(cluster: &str) -> String {
    format!("/kalshi-riskd/{cluster}/registry/")
}

/// Trips made while guarding a lost member's strategy, by strategy.
fn trips_prefix(cluster: &str) -> String {
    format!("/kalshi-riskd/{cluster}/trips/")
}

fn cluster_prefix(cluster: &str) -> String {
    format!("/kalshi-riskd/{cluster}/")
}

/// Starts the etcd task. It runs until `stop`, reconnecting with backoff; every failure is
/// reported as `Readable(false)` and logged.
pub fn spawn(
    cfg: ClusterConfig,
    strategies: Vec<RegisteredStrategy>,
    account_limit: Option<LimitSpec>,
    events: mpsc::UnboundedSender<ClusterEvent>,
    stop: CancellationToken,
) -> (
    mpsc::UnboundedSender<ClusterCommand>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(run(cfg, strategies, account_limit, events, rx, stop));
    (tx, handle)
}

/// Reconnect pauses: from 200 ms up to a quarter of the lease's TTL (at least 200 ms, at most
/// 5 s), with full jitter. etcd keeps a lease one TTL (and its election timeout) after it
/// returns from an outage: a member must be registered again within it, or the others take it
/// for lost and guard (perhaps trigger) its strategies.
fn reconnect(ttl: Duration) -> RetryPolicy {
    let initial = Duration::from_millis(200);
    RetryPolicy {
        attempts: u32::MAX,
        initial,
        max: (ttl / 4).clamp(initial, Duration::from_secs(5)),
    }
}

async fn run(
    cfg: ClusterConfig,
    mut strategies: Vec<RegisteredStrategy>,
    account_limit: Option<LimitSpec>,
    events: mpsc::UnboundedSender<ClusterEvent>,
    mut commands: mpsc::UnboundedReceiver<ClusterCommand>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    let mut readable = false;
    loop {
        let mut session = Session {
            cfg: &cfg,
            strategies: &mut strategies,
            account_limit: &account_limit,
            events: &events,
            commands: &mut commands,
            stop: &stop,
            readable: &mut readable,
        };
        match session.run().await {
            Ok(()) => return,
            Err(e) => {
                if readable {
                    tracing::error!(error = %e, "etcd: the shared kill latch cannot be read; resets and releases are refused until it can");
                } else if failures == 0 || failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "etcd: not reachable");
                }
                readable = false;
                let _ = events.send(ClusterEvent::Readable(false));
                failures = failures.saturating_add(1);
            }
        }
        // Pause, failing releases that arrive meanwhile at once.
        let pause = tokio::time::sleep(reconnect(cfg.lease_ttl).delay(failures.min(16)));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut pause => break,
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(ClusterCommand::Release { token, .. }) => {
                        let _ = events.send(ClusterEvent::ReleaseFailed {
                            token,
                            error: "etcd is out of reach".into(),
                        });
                    }
                    Some(ClusterCommand::Register(s)) => strategies = s,
                    // Published again from the loop's sync once etcd answers.
                    Some(ClusterCommand::Publish(_)) => {}
                    // Asked again by the loop once etcd answers (it compares with what etcd
                    // holds).
                    Some(ClusterCommand::PublishTrip(_) | ClusterCommand::ClearTrip { .. }) => {}
                },
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Etcd(#[from] etcd_client::Error),
    #[error("{0}")]
    Lost(String),
}

struct Session<'a> {
    cfg: &'a ClusterConfig,
    strategies: &'a mut Vec<RegisteredStrategy>,
    account_limit: &'a Option<LimitSpec>,
    events: &'a mpsc::UnboundedSender<ClusterEvent>,
    commands: &'a mut mpsc::UnboundedReceiver<ClusterCommand>,
    stop: &'a CancellationToken,
    readable: &'a mut bool,
}

fn parse_latch(value: &[u8]) -> Option<SharedLatch> {
    match serde_json::from_slice(value) {
        Ok(l) => Some(l),
        Err(e) => {
            // Unreadable is not released: treat it as engaged by nobody, so the local latch is
            // published over it.
            tracing::error!(error = %e, "etcd: the shared latch holds something this daemon cannot read; it will be overwritten by the next engagement");
            None
        }
    }
}

impl Session<'_> {
    async fn run(&mut self) -> Result<(), SessionError> {
        let cfg = self.cfg;
        let ttl = cfg.lease_ttl;
        let options = ConnectOptions::new()
            .with_connect_timeout(ttl / 2)
            .with_timeout(ttl / 2)
            .with_keep_alive(ttl / 4, ttl / 4)
            .with_keep_alive_while_idle(true);
        let mut client = Client::connect(&cfg.endpoints, Some(options)).await?;
        let lease = client.lease_grant(ttl.as_secs() as i64, None).await?.id();
        let member_key = format!("{}{}", members_prefix(&cfg.name), cfg.member);
        let registry_key = format!("{}{}", registry_prefix(&cfg.name), cfg.member);
        self.register(&mut client, &member_key, &registry_key, lease)
            .await?;
        let (mut keeper, mut renewals) = client.lease_keep_alive(lease).await?;

        let key = latch_key(&cfg.name);
        let got = client.get(key.as_str(), None).await?;
        let revision = got.header().map_or(0, |h| h.revision());
        let mut latch_revision = got.kvs().first().map_or(0, |kv| kv.mod_revision());
        let latch = got.kvs().first().and_then(|kv| parse_latch(kv.value()));
        let mut watch = client
            .watch(
                key.as_str(),
                Some(WatchOptions::new().with_start_revision(revision + 1)),
            )
            .await?;
        // Members, the registry and handed trips: everything but the latch, watched as one.
        let prefix = cluster_prefix(&cfg.name);
        let mut members = client
            .watch(
                prefix.as_str(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await?;
        // The members first: a peer's fills are known as the peer's before anything else.
        self.list_members(&mut client).await?;
        self.list_trips(&mut client).await?;
        let _ = self.events.send(ClusterEvent::Latch(latch));
        let _ = self.events.send(ClusterEvent::Readable(true));
        *self.readable = true;
        tracing::info!(endpoints = ?cfg.endpoints, cluster = %cfg.name, member = %cfg.member, "etcd: registered; the shared kill latch is read and watched");

        let mut renew = tokio::time::interval(ttl / 3);
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => {
                    // A clean stop: leave the registry too (not lost), at once rather than when
                    // the lease runs out.
                    let leave = Txn::new().and_then([
                        TxnOp::delete(registry_key.as_str(), None),
                        TxnOp::delete(member_key.as_str(), None),
                    ]);
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        let _ = client.txn(leave).await;
                        let _ = client.lease_revoke(lease).await;
                    })
                    .await;
                    return Ok(());
                }
                _ = renew.tick() => {
                    if renewed.elapsed() > ttl {
                        return Err(SessionError::Lost(format!("the lease was not renewed for {ttl:?}")));
                    }
                    keeper.keep_alive().await?;
                }
                msg = members.message() => {
                    let Some(resp) = msg? else {
                        return Err(SessionError::Lost("the members watch ended".into()));
                    };
                    if resp.canceled() {
                        return Err(SessionError::Lost(format!("the members watch was cancelled: {}", resp.cancel_reason())));
                    }
                    let keys = || resp.events().iter().filter_map(|e| e.kv()).map(|kv| kv.key());
                    let trips = trips_prefix(&cfg.name);
                    if keys().any(|k| k.starts_with(trips.as_bytes())) {
                        self.list_trips(&mut client).await?;
                    }
                    let registry = registry_prefix(&cfg.name);
                    let members = members_prefix(&cfg.name);
                    if keys().any(|k| k.starts_with(members.as_bytes()) || k.starts_with(registry.as_bytes())) {
                        self.list_members(&mut client).await?;
                    }
                }
                msg = renewals.message() => match msg? {
                    Some(r) if r.ttl() > 0 => renewed = tokio::time::Instant::now(),
                    Some(_) => return Err(SessionError::Lost("the lease expired".into())),
                    None => return Err(SessionError::Lost("the lease renewal stream ended".into())),
                },
                msg = watch.message() => {
                    let Some(resp) = msg? else {
                        return Err(SessionError::Lost("the latch watch ended".into()));
                    };
                    if resp.canceled() {
                        return Err(SessionError::Lost(format!("the latch watch was cancelled: {}", resp.cancel_reason())));
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        latch_revision = kv.mod_revision();
                        let latch = match ev.event_type() {
                            EventType::Put => parse_latch(kv.value()),
                            EventType::Delete => None,
                        };
                        let _ = self.events.send(ClusterEvent::Latch(latch));
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    None => return Ok(()),
                    Some(ClusterCommand::Publish(record)) => {
                        let value = serde_json::to_vec(&SharedLatch::Engaged {
                            member: cfg.member.clone(),
                            record,
                        })
                        .map_err(|e| SessionError::Lost(e.to_string()))?;
                        let txn = Txn::new()
                            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, latch_revision)])
                            .and_then([TxnOp::put(key.as_str(), value, None)]);
                        if !client.txn(txn).await?.succeeded() {
                            // Someone wrote it first: read it again and let the loop decide.
                            let got = client.get(key.as_str(), None).await?;
                            latch_revision = got.kvs().first().map_or(0, |kv| kv.mod_revision());
                            let latch = got.kvs().first().and_then(|kv| parse_latch(kv.value()));
                            let _ = self.events.send(ClusterEvent::Latch(latch));
                        }
                    }
                    Some(ClusterCommand::Release { token, actor }) => {
                        let value = serde_json::to_vec(&SharedLatch::Released {
                            member: cfg.member.clone(),
                            actor,
                            at_ms: crate::kalshi::auth::now_ms(),
                        })
                        .map_err(|e| SessionError::Lost(e.to_string()))?;
                        match client.put(key.as_str(), value, None).await {
                            Ok(_) => {
                                let _ = self.events.send(ClusterEvent::ReleaseWritten { token });
                            }
                            Err(e) => {
                                let _ = self.events.send(ClusterEvent::ReleaseFailed { token, error: format!("etcd: {e}") });
                                return Err(e.into());
                            }
                        }
                    }
                    Some(ClusterCommand::Register(s)) => {
                        *self.strategies = s;
                        self.register(&mut client, &member_key, &registry_key, lease).await?;
                    }
                    Some(ClusterCommand::PublishTrip(trip)) => {
                        let key = format!("{}{}", trips_prefix(&cfg.name), trip.strategy);
                        let value = serde_json::to_vec(&trip).map_err(|e| SessionError::Lost(e.to_string()))?;
                        client.put(key.as_str(), value, None).await?;
                        tracing::warn!(strategy = %trip.strategy, owner = %trip.owner, "etcd: a trip made while guarding a lost member's strategy is kept for its owner");
                    }
                    Some(ClusterCommand::ClearTrip { strategy, at_ms }) => {
                        let key = format!("{}{strategy}", trips_prefix(&cfg.name));
                        let got = client.get(key.as_str(), None).await?;
                        if let Some(kv) = got.kvs().first()
                            && serde_json::from_slice::<HandedTrip>(kv.value()).is_ok_and(|t| t.trip.at_ms == at_ms)
                        {
                            let txn = Txn::new()
                                .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, kv.mod_revision())])
                                .and_then([TxnOp::delete(key.as_str(), None)]);
                            client.txn(txn).await?;
                        }
                    }
                },
            }
        }
    }

    /// Registers under the lease, and in the registry (never leased) in the same transaction.
    async fn register(
        &mut self,
        client: &mut Client,
        member_key: &str,
        registry_key: &str,
        lease: i64,
    ) -> Result<(), SessionError> {
        let reg = Registration {
            member: self.cfg.member.clone(),
            strategies: self.strategies.clone(),
            started_ms: crate::kalshi::auth::now_ms(),
            account_limit: self.account_limit.clone(),
        };
        let value = serde_json::to_vec(&reg).map_err(|e| SessionError::Lost(e.to_string()))?;
        let txn = Txn::new().and_then([
            TxnOp::put(
                member_key,
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::put(registry_key, value, None),
        ]);
        client.txn(txn).await?;
        Ok(())
    }

    async fn list_trips(&mut self, client: &mut Client) -> Result<(), SessionError> {
        let prefix = trips_prefix(&self.cfg.name);
        let got = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let trips = got
            .kvs()
            .iter()
            .filter_map(|kv| match serde_json::from_slice::<HandedTrip>(kv.value()) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %e, "etcd: a handed trip cannot be read; skipped");
                    None
                }
            })
            .collect();
        let _ = self.events.send(ClusterEvent::HandedTrips(trips));
        Ok(())
    }

    async fn list_members(&mut self, client: &mut Client) -> Result<(), SessionError> {
        let prefix = members_prefix(&self.cfg.name);
        let got = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = got.header().map_or(0, |h| h.revision());
        let mut members: Vec<Registration> = Vec::new();
        let leader = got
            .kvs()
            .iter()
            .min_by_key(|kv| kv.create_revision())
            .and_then(|kv| kv.key_str().ok())
            .and_then(|k| k.strip_prefix(prefix.as_str()))
            .map(str::to_owned);
        for kv in got.kvs() {
            match serde_json::from_slice::<Registration>(kv.value()) {
                Ok(r) => members.push(r),
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %e, "etcd: a member's registration cannot be read; skipped")
                }
            }
        }
        members.sort_by(|a, b| a.member.cmp(&b.member));
        let registry = registry_prefix(&self.cfg.name);
        let lost = client
            .get(
                registry.as_str(),
                // As of the members read: both sides of one moment.
                Some(GetOptions::new().with_prefix().with_revision(revision)),
            )
            .await?
            .kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Registration>(kv.value()).ok())
            .filter(|r| !members.iter().any(|m| m.member == r.member))
            .collect();
        let _ = self.events.send(ClusterEvent::Members {
            members,
            leader,
            lost,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_reconnects_well_within_its_lease() {
        for secs in [2, 5, 60] {
            let ttl = Duration::from_secs(secs);
            let longest = (0..40).map(|n| reconnect(ttl).delay(n)).max().unwrap();
            assert!(longest <= ttl / 4, "{longest:?} for a {ttl:?} lease");
        }
    }
}
