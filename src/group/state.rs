//! The named things the coordinator reports: group states, rebalance reasons and eviction causes.
//! Plain enums with Kafka's spellings (`as_str`) so metrics and DescribeGroups agree.

/// The classic group state (Kafka's `ClassicGroupState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    /// Never stored: a deleted group is removed at once (GROUP_SEMANTICS.md §7 point 5).
    /// Used for DescribeGroups of an unknown group and for the metric of a deleted group.
    Dead,
}

impl GroupState {
    /// Kafka's state string, as DescribeGroups and ListGroups return it.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Whether `self -> to` is one of the transitions of GROUP_SEMANTICS.md §3.2.
    pub(crate) fn can_become(self, to: GroupState) -> bool {
        use GroupState::*;
        match to {
            PreparingRebalance => matches!(self, Stable | CompletingRebalance | Empty),
            CompletingRebalance => self == PreparingRebalance,
            Stable => self == CompletingRebalance,
            Empty => self == PreparingRebalance,
            Dead => true,
        }
    }
}

/// Why a rebalance started: the fixed label set of GROUP_SEMANTICS.md §7 point 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RebalanceReason {
    /// A member was added (a new dynamic or static member, or a pending member's second join).
    NewMember,
    /// A follower rejoined with different protocols or metadata.
    MetadataChange,
    /// The leader rejoined a Stable group (Kafka always rebalances then).
    LeaderRejoin,
    /// LeaveGroup removed at least one member.
    Leave,
    /// A member's session expired.
    SessionExpiry,
    /// A new member's JoinGroup was parked longer than the new-member join timeout.
    JoinTimeout,
    /// Members did not send SyncGroup within the rebalance timeout.
    SyncTimeout,
    /// A static member rejoined with a new member id and the rejoin needs a rebalance.
    StaticProtocolChange,
    /// A group loaded from the store over `max_group_size` was forced to rebalance.
    MaxSize,
    /// The store could not keep the group's state: the group record write of the leader's
    /// SyncGroup failed, so the round was reset (GROUP_SEMANTICS.md §2.2).
    Load,
}

impl RebalanceReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RebalanceReason::NewMember => "new_member",
            RebalanceReason::MetadataChange => "metadata_change",
            RebalanceReason::LeaderRejoin => "leader_rejoin",
            RebalanceReason::Leave => "leave",
            RebalanceReason::SessionExpiry => "session_expiry",
            RebalanceReason::JoinTimeout => "join_timeout",
            RebalanceReason::SyncTimeout => "sync_timeout",
            RebalanceReason::StaticProtocolChange => "static_protocol_change",
            RebalanceReason::MaxSize => "max_size",
            RebalanceReason::Load => "load",
        }
    }
}

/// Why a member was removed without leaving (METRICS.md `kelp_group_member_evictions_total{cause}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvictionCause {
    /// No heartbeat within the session timeout.
    SessionExpiry,
    /// A new member's parked JoinGroup timed out, or a dynamic member did not rejoin before the
    /// join phase completed.
    JoinTimeout,
    /// The member did not send SyncGroup within the rebalance timeout after the join phase.
    SyncTimeout,
    /// A JoinGroup was refused with GROUP_MAX_SIZE_REACHED and the member was removed.
    MaxSize,
    /// A consumer-group member (KIP-848) kept partitions pending revocation beyond its rebalance
    /// timeout.
    RebalanceTimeout,
}

impl EvictionCause {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionCause::SessionExpiry => "session_expiry",
            EvictionCause::JoinTimeout => "join_timeout",
            EvictionCause::SyncTimeout => "sync_timeout",
            EvictionCause::MaxSize => "max_size",
            EvictionCause::RebalanceTimeout => "rebalance_timeout",
        }
    }
}
