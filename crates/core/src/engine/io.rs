//! What goes into the risk engine ([`Input`]) and what comes out ([`Output`]: commands for the
//! shell to carry out, decisions for the record).

use serde::{Deserialize, Serialize};

use crate::ids::{GroupAddress, GroupId};
use crate::kill::KillRecord;
use crate::limits::Evidence;
use crate::policy::StrategyPolicy;
use crate::units::{Contracts, Dollars};

/// One fill, as the risk core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub trade_id: String,
    pub order_id: String,
    pub count: Contracts,
    /// The price paid per contract: the YES price for YES, one dollar less it for NO (the
    /// larger of the two when the side is not known).
    pub price: Dollars,
    /// Matching-engine time, epoch ms.
    pub ts_ms: i64,
}

/// What happened on the exchange to a group (`order_group_updates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupChange {
    Created,
    Triggered,
    Reset,
    Deleted,
    LimitUpdated(Option<Contracts>),
}

/// The stream's health, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamHealth {
    Connected,
    Disconnected,
    Blind,
    /// Events may have been missed (a `seq` gap or an overflow).
    Lossy(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Trigger,
    Reset,
    UpdateLimit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorCommand {
    Kill,
    Release,
    /// Reset one strategy's groups, or every strategy's (`None`).
    Reset(Option<String>),
    Trigger(String),
}

/// What cluster mode's etcd link tells the core about the account's shared kill latch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterInput {
    /// Whether the shared latch can be read. While it cannot, every reset (manual or
    /// automatic) and every release is refused: they would need the latch.
    Readable(bool),
    /// Another member engaged the shared latch: engage this one (the record is shared).
    Engaged(KillRecord),
    /// etcd now holds an engaged latch that covers this member's engagement.
    Shared,
    /// An operator (`actor`) released the shared latch: release this one, if etcd held it.
    Released { actor: String },
    /// The other members' groups, with the member managing each: fills in them are theirs to
    /// count, not unmapped here.
    PeerGroups(std::collections::BTreeMap<GroupId, String>),
    /// The other members' strategies that publish a policy, mirrored here: their fills are
    /// counted into a mirror of their windows, and the ones marked `guarded` are guarded here
    /// (their owner was lost and this member is the leader). A strategy missing from the list
    /// is forgotten.
    Peers(Vec<PeerStrategy>),
    /// The trips that members guarding a lost member's strategies made, as etcd holds them
    /// until the strategy's owner takes them back. A strategy of this member's among them is
    /// tripped with its trip (the owner takes it back); a peer's marks its mirror tripped.
    HandedTrips(Vec<HandedTrip>),
    /// Whether this member evaluates the account-level limit: the cluster's leader does, and
    /// every member does while the shared latch cannot be read (each guards alone). Fills are
    /// counted in the account window either way, so a new leader starts with a full window.
    AccountLimit(bool),
}

/// A strategy another member manages, as it published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStrategy {
    pub member: String,
    pub policy: StrategyPolicy,
    pub groups: Vec<GroupAddress>,
    /// Guarded here: its owner was lost, and this member took over.
    pub guarded: bool,
}

/// A trip made by the member guarding a lost member's strategy, kept in etcd until the owner
/// takes it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedTrip {
    pub strategy: String,
    /// The member that guarded the strategy and tripped it.
    pub by: String,
    /// The member that owned the strategy when it was lost.
    pub owner: String,
    pub trip: crate::guard::Trip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Fill(Fill),
    /// An order's group (`user_order`), `None` when it has none.
    OrderGroup {
        order_id: String,
        group: Option<GroupId>,
    },
    /// The answer to a [`Command::LookupOrder`]: `Err` when the lookup failed.
    OrderLookup {
        order_id: String,
        group: Result<Option<GroupId>, String>,
    },
    GroupEvent {
        group: GroupId,
        change: GroupChange,
    },
    /// Every group on the account, with its address (from listing each subaccount).
    GroupsListed(Vec<GroupAddress>),
    /// The shell created or adopted a strategy's groups.
    GroupsAssigned {
        strategy: String,
        groups: Vec<GroupAddress>,
    },
    /// The outcome of a command the shell carried out.
    ActionDone {
        group: GroupAddress,
        action: Action,
        result: Result<(), String>,
    },
    Stream(StreamHealth),
    Tick,
    Operator {
        command: OperatorCommand,
        actor: String,
    },
    /// New policies (a reload): existing strategies are updated, new ones added, missing ones
    /// dropped (their retirement is the shell's).
    Policies(Vec<StrategyPolicy>),
    /// Fills read back from the exchange (`GET /portfolio/fills`) from `since_ms` on, after a
    /// gap in the stream or at start (`reason` says which). They go the same way as streamed
    /// fills, counted at their exchange time; one already counted is skipped.
    Backfill {
        fills: Vec<Fill>,
        since_ms: i64,
        reason: String,
    },
    /// Cluster mode: the account's shared kill latch, as the shell's etcd link reads it.
    Cluster(ClusterInput),
    /// A backfill could not be completed (`reason`): the windows may be missing fills. With
    /// `unknown` (the start-up rebuild), every active strategy becomes Unknown (still guarded,
    /// never auto-reset) until settled.
    BackfillFailed {
        reason: String,
        unknown: bool,
    },
}

/// What the shell must do on the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Trigger {
        group: GroupAddress,
    },
    Reset {
        group: GroupAddress,
    },
    UpdateLimit {
        group: GroupAddress,
        limit: Contracts,
    },
    /// Find an order's group (`GET /portfolio/orders/{id}`) and answer with
    /// [`Input::OrderLookup`].
    LookupOrder {
        order_id: String,
    },
    /// List the account's groups (and answer with [`Input::GroupsListed`]).
    Reconcile,
    /// Read the account's fills from `since_ms` on (and answer with [`Input::Backfill`]).
    Backfill {
        since_ms: i64,
    },
    /// The periodic sweep: read the fills from `since_ms` on, unless a backfill is already
    /// reading them (answer with [`Input::Backfill`] and [`SWEEP_REASON`]); a failed one is
    /// not retried, the next comes soon.
    Sweep {
        since_ms: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Trip,
    TripConfirmed,
    Warn,
    WarnCleared,
    Reset,
    ResetRefused,
    ResetFailed,
    Retrigger,
    Settled,
    KillEngaged,
    KillReleased,
    UnmappedFill,
    Blind,
    StreamRestored,
    StreamLossy,
    LimitDeferred,
    GroupChangedOutside,
    ActionFailed,
    /// A command a shadow-mode strategy would have sent.
    Shadow,
    /// The shell applied new policies (SIGHUP or the admin API).
    Reload,
    /// A reload was refused; nothing changed.
    ReloadFailed,
    /// A strategy whose policy was removed was retired.
    Retired,
    /// Fills were read back from the exchange after a gap or at start.
    Backfill,
    /// Fills could not be read back: windows may be short of them.
    BackfillFailed,
    /// A group the daemon created but had not recorded (a lost answer, or a stop between the
    /// create and the record) was found by listing and adopted.
    OrphanAdopted,
    /// A duplicate group from the daemon's own creates was deleted (or the delete failed, as
    /// the reason says).
    OrphanDeleted,
    /// Cluster mode: etcd holds an engaged latch that covers this member's engagement.
    KillShared,
    /// A release was refused (the shared latch cannot be read).
    ReleaseRefused,
    /// Cluster mode: the shared kill latch can no longer be read (etcd out of reach).
    LatchUnreadable,
    /// Cluster mode: the shared kill latch is read again.
    LatchReadable,
    /// Cluster mode: this member took over guarding a lost member's strategy.
    Takeover,
    /// Cluster mode: a strategy guarded here went back to its owner (or a strategy of this
    /// member's came back with the trip its guard made meanwhile).
    Handback,
    /// A fill counted against a strategy (only with `audit_fills`: the history `replay` reads).
    Fill,
}

/// The fill a `fill` or `unmapped_fill` decision records (with `audit_fills`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillRecord {
    pub trade_id: String,
    pub order_id: String,
    pub count: Contracts,
    pub price: Dollars,
    /// Matching-engine time, epoch ms.
    pub ts_ms: i64,
}

impl From<&Fill> for FillRecord {
    fn from(f: &Fill) -> Self {
        FillRecord {
            trade_id: f.trade_id.clone(),
            order_id: f.order_id.clone(),
            count: f.count,
            price: f.price,
            ts_ms: f.ts_ms,
        }
    }
}

/// One decision, with enough to audit it (a line of `audit.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub ts_ms: i64,
    pub event: DecisionKind,
    /// Every field is always present (`null` when empty), as the audit contract lists them.
    pub strategy: Option<String>,
    pub group_id: Option<GroupId>,
    pub reason: String,
    pub evidence: Option<Evidence>,
    pub actor: String,
    /// The fill of a `fill` or `unmapped_fill` decision, with `audit_fills` (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<Box<FillRecord>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Command(Command),
    Decision(Decision),
}

/// A decision with no strategy, group or evidence (also for the shell's own records).
pub fn decision(
    now_ms: i64,
    event: DecisionKind,
    reason: impl Into<String>,
    actor: &str,
) -> Decision {
    Decision {
        ts_ms: now_ms,
        event,
        strategy: None,
        group_id: None,
        reason: reason.into(),
        evidence: None,
        actor: actor.to_owned(),
        fill: None,
    }
}
