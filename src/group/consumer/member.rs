//! One member of a consumer group (KIP-848) and the partition-set type every part of the consumer
//! coordinator shares. Pure data and queries: no timers, no output (Kafka's `ConsumerGroupMember`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use uuid::Uuid;

/// Partitions by topic id (Kafka's `Map<Uuid, Set<Integer>>`); a topic is present only with at
/// least one partition.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The member epoch of a member that leaves (`-1`) and of a static member that leaves
/// temporarily, keeping its partitions until its session expires or its instance rejoins (`-2`).
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Where a member is in reconciling its current assignment with its target (Kafka's `MemberState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// The member owns what it should at its epoch.
    Stable,
    /// The member must give up `partitions_pending_revocation` before it moves to the next epoch.
    UnrevokedPartitions,
    /// The member is at the target epoch but waits for partitions other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked_partitions",
            MemberState::UnreleasedPartitions => "unreleased_partitions",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: BTreeSet<String>,
    /// `None` when the member subscribes by names only.
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub state: MemberState,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// What the member owns now and may consume.
    pub assigned: Assignment,
    /// What the member still owns but must give up (not consumable by anyone else yet).
    pub pending_revocation: Assignment,
    /// Set for a member that speaks the classic protocol (JoinGroup/SyncGroup/Heartbeat) in this
    /// consumer group (Kafka's `ClassicMemberMetadata`).
    pub classic: Option<ClassicMember>,
}

/// What a classic-protocol member of a consumer group brought in its JoinGroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicMember {
    pub session_timeout_ms: i32,
    /// (name, ConsumerProtocolSubscription bytes) in the client's order of preference.
    pub protocols: Vec<(String, Bytes)>,
}

impl Member {
    /// A member joining with epoch 0 (Kafka's builder defaults).
    pub fn new(id: String) -> Self {
        Member {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: -1,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            state: MemberState::Stable,
            member_epoch: 0,
            previous_member_epoch: -1,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            classic: None,
        }
    }

    /// Kafka's `useClassicProtocol`.
    pub fn uses_classic_protocol(&self) -> bool {
        self.classic.is_some()
    }

    /// Kafka's `isReconciledTo`.
    pub fn is_reconciled_to(&self, target_epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == target_epoch
    }

    /// Kafka's `updateMemberEpoch`: the old epoch becomes the previous one.
    pub fn set_epoch(&mut self, epoch: i32) {
        self.previous_member_epoch = self.member_epoch;
        self.member_epoch = epoch;
    }

    /// Every partition the member holds: assigned and pending revocation.
    pub fn owned(&self) -> impl Iterator<Item = (Uuid, i32)> + '_ {
        flatten(&self.assigned).chain(flatten(&self.pending_revocation))
    }
}

/// Every (topic id, partition) of an assignment, in order.
pub fn flatten(a: &Assignment) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
}

/// The number of partitions in an assignment.
pub fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// Adds one partition.
pub fn add(a: &mut Assignment, topic: Uuid, partition: i32) {
    a.entry(topic).or_default().insert(partition);
}

/// Removes one partition (and the topic once it is empty).
pub fn remove(a: &mut Assignment, topic: Uuid, partition: i32) {
    if let Some(ps) = a.get_mut(&topic) {
        ps.remove(&partition);
        if ps.is_empty() {
            a.remove(&topic);
        }
    }
}
