//! Kafka's consumer group protocol (KIP-848): ConsumerGroupHeartbeat (API 68) v0–1 and
//! ConsumerGroupDescribe (API 69) v0–1, with server-side assignment and incremental reconciliation,
//! and the classic-protocol members Kafka 4 serves in a consumer group, as a pure state machine
//! beside the classic coordinator (no tokio, no sockets, no clock reads: time is passed in). The semantics are Apache Kafka 4's group coordinator (`GroupMetadataManager`,
//! `ConsumerGroup`, `CurrentAssignmentBuilder`, `TargetAssignmentBuilder`, `UniformAssignor`,
//! `RangeAssignor`).
//!
//! Layout: `member.rs`, `group.rs` (data and queries), `reconcile.rs` (one member towards its
//! target), `assignor/` (`uniform`, `range`), `heartbeat.rs` (join, heartbeat, leave, timeouts),
//! `classic.rs` (classic-protocol members: JoinGroup/SyncGroup/Heartbeat/LeaveGroup of a consumer
//! group), `convert.rs` (online upgrade from and downgrade to classic groups), `describe.rs`,
//! `offsets.rs` (OffsetCommit/OffsetFetch fenced by member epoch), `topics.rs` (topic metadata
//! input, regexes), `timers.rs`.
//!
//! For the shell:
//! - Topic metadata comes in through `set_topics` (ids, names, partition counts); groups whose
//!   subscribed topics or regex matches change get a new group epoch, so their next heartbeat
//!   computes a new target.
//! - Every call answers at once (nothing parks, the classic APIs included). Call `tick(now)` when
//!   `now >= next_deadline()`: expired sessions, rebalance, join and sync timeouts fence members.
//! - One group-id namespace with the classic coordinator is the caller's job. A
//!   ConsumerGroupHeartbeat for an id that names a classic group: an empty one is deleted first (Kafka's
//!   `getOrMaybeCreateConsumerGroup`); a non-empty one is an upgrade when the heartbeat joins (epoch
//!   0): `upgrade_from` with the classic side's snapshot, and the classic side drops the group only
//!   if it returns `true`; otherwise GROUP_ID_NOT_FOUND ("not a consumer group").
//! - Classic JoinGroup for an id where `serves_classic_join` is true goes to `classic_join`; an empty
//!   consumer group is deleted first and the JoinGroup goes to the classic side (Kafka's
//!   `classicGroupJoin`). SyncGroup, Heartbeat, LeaveGroup for a consumer group's id go to
//!   `classic_sync`, `classic_heartbeat`, `classic_leave`. `contains` tells the classic side an id
//!   is taken.
//! - After every call and `tick`: `take_downgrades` gives the groups that became classic again, for
//!   the classic side's `import_classic`; `take_dirty` names the records to write (a downgraded
//!   group's record is `None`: its tombstone).

mod assignor;
mod classic;
mod convert;
mod describe;
mod group;
mod heartbeat;
mod member;
mod offsets;
mod reconcile;
mod record;
mod timers;
mod topics;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use crate::group::ids::IdGen;

pub use assignor::Assignor;
pub use classic::{decode_assignment, encode_assignment, CONSUMER_PROTOCOL_TYPE};
pub use convert::{
    ClassicMemberSnapshot, ClassicSnapshot, Downgrade, DowngradeReason, MigrationPolicy,
};
pub use group::{ConsumerGroup, ConsumerGroupState, Reconciliation};
pub use member::{
    Assignment, ClassicMember, Member, MemberState, LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
};
pub use offsets::OffsetFence;
pub use record::{
    AssignmentRecord, ClassicMemberRecord, ConsumerGroupRecord, ConsumerMemberRecord,
};
pub use topics::{TopicInfo, Topics};

use super::Millis;
use timers::{Kind, Timers};

/// A bound on timers fired by one call; the rest fire on the next.
const MAX_TIMERS_PER_PASS: usize = 100_000;

/// Consumer group settings: Kafka's `group.consumer.*` broker configs, with Kafka's defaults.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub max_size: usize,
    /// `group.consumer.assignors`: the server-side assignors offered; the first is the default.
    pub assignors: Vec<Assignor>,
    /// `group.consumer.migration.policy`: whether a classic group may become a consumer group
    /// (upgrade) and back (downgrade).
    pub migration_policy: MigrationPolicy,
    /// `group.classic.max.size`: a consumer group with more members is not downgraded (the shell
    /// sets it to the classic coordinator's `max_group_size`).
    pub classic_max_size: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: i32::MAX as usize,
            assignors: vec![Assignor::Uniform, Assignor::Range],
            migration_policy: MigrationPolicy::Bidirectional,
            classic_max_size: i32::MAX as usize,
        }
    }
}

impl ConsumerConfig {
    pub fn default_assignor(&self) -> Assignor {
        self.assignors.first().copied().unwrap_or(Assignor::Uniform)
    }
}

/// Why a member left the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceCause {
    /// It sent member epoch -1.
    Leave,
    /// No heartbeat within the session timeout.
    SessionTimeout,
    /// It kept partitions pending revocation beyond its rebalance timeout.
    RebalanceTimeout,
    /// A classic-protocol member did not rejoin within its rebalance timeout when told to.
    JoinTimeout,
    /// A classic-protocol member did not send SyncGroup within its rebalance timeout.
    SyncTimeout,
}

impl FenceCause {
    /// A metric label.
    pub fn name(self) -> &'static str {
        match self {
            FenceCause::Leave => "leave",
            FenceCause::SessionTimeout => "session_timeout",
            FenceCause::RebalanceTimeout => "rebalance_timeout",
            FenceCause::JoinTimeout => "join_timeout",
            FenceCause::SyncTimeout => "sync_timeout",
        }
    }
}

/// Metric events of consumer groups.
#[derive(Clone, Debug, PartialEq)]
pub enum ConsumerEvent {
    GroupEpochBumped {
        group: String,
        epoch: i32,
    },
    /// A new target assignment was computed (Kafka's rebalance of a consumer group).
    TargetAssigned {
        group: String,
        epoch: i32,
        assignor: Assignor,
    },
    StateChanged {
        group: String,
        state: ConsumerGroupState,
    },
    MemberJoined {
        group: String,
    },
    MemberFenced {
        group: String,
        cause: FenceCause,
    },
}

/// The shell's context of one request.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    pub api_version: i16,
    pub client_id: String,
    /// The peer address, e.g. "/127.0.0.1".
    pub client_host: String,
}

/// Every consumer group this coordinator serves.
pub struct ConsumerGroups {
    config: ConsumerConfig,
    groups: BTreeMap<String, ConsumerGroup>,
    topics: Topics,
    timers: Timers,
    /// Member ids for v0 joins (`next_member_id`).
    ids: IdGen,
    /// Groups whose record changed since `take_dirty` (deleted ones included).
    dirty: BTreeSet<String>,
    /// Groups converted back to classic groups, for the shell (`take_downgrades`).
    downgrades: Vec<Downgrade>,
}

impl ConsumerGroups {
    /// Member ids the coordinator generates (v0) are seeded per process.
    pub fn new(config: ConsumerConfig) -> Self {
        Self::with_seed(config, IdGen::from_process_entropy().seed())
    }

    /// Like `new`, with generated member ids fully determined by `seed` (tests).
    pub fn with_seed(config: ConsumerConfig, seed: u64) -> Self {
        ConsumerGroups {
            config,
            groups: BTreeMap::new(),
            topics: Topics::default(),
            timers: Timers::default(),
            ids: IdGen::with_seed(seed),
            dirty: BTreeSet::new(),
            downgrades: Vec::new(),
        }
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Replaces the topic metadata. Groups whose subscription metadata (subscribed topics that
    /// exist, their ids and partition counts, regex matches) changes get a new group epoch.
    pub fn set_topics(&mut self, now: Millis, topics: Topics, out: &mut Vec<ConsumerEvent>) {
        self.run_timers(now, out);
        self.topics = topics;
        for g in self.groups.values_mut() {
            if g.refresh_subscriptions(&self.topics) {
                heartbeat::bump_group_epoch(g, out);
            }
            if std::mem::take(&mut g.dirty) {
                self.dirty.insert(g.id.clone());
            }
        }
    }

    /// Whether `group` is a consumer group here (one namespace with the classic groups).
    pub fn contains(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    pub fn group(&self, group: &str) -> Option<&ConsumerGroup> {
        self.groups.get(group)
    }

    pub fn groups(&self) -> impl Iterator<Item = &ConsumerGroup> {
        self.groups.values()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Removes an Empty group (DeleteGroups; Kafka's `validateDeleteGroup`): NON_EMPTY_GROUP (68)
    /// if it has members, GROUP_ID_NOT_FOUND (69) if there is none.
    pub fn delete(&mut self, group: &str) -> Result<(), i16> {
        match self.groups.get(group) {
            None => Err(69),
            Some(g) if g.state != ConsumerGroupState::Empty => Err(68),
            Some(_) => {
                self.groups.remove(group);
                self.timers.cancel_group(group);
                self.dirty.insert(group.to_string());
                Ok(())
            }
        }
    }

    /// The earliest armed timer; call `tick` when the clock reaches it.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.timers.next_deadline()
    }

    /// Armed timers (tests).
    #[cfg(test)]
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Fires every timer due at `now`, each at its own deadline.
    pub fn tick(&mut self, now: Millis, out: &mut Vec<ConsumerEvent>) {
        self.run_timers(now, out);
    }

    fn run_timers(&mut self, now: Millis, out: &mut Vec<ConsumerEvent>) {
        for _ in 0..MAX_TIMERS_PER_PASS {
            let Some((_at, group, member, kind)) = self.timers.pop_due(now) else {
                return;
            };
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            let fence = match kind {
                Kind::Session | Kind::Join | Kind::Sync => g.members.contains_key(&member),
                Kind::Rebalance { epoch } => g
                    .members
                    .get(&member)
                    .is_some_and(|m| m.member_epoch == epoch),
            };
            if fence {
                let cause = match kind {
                    Kind::Session => FenceCause::SessionTimeout,
                    Kind::Rebalance { .. } => FenceCause::RebalanceTimeout,
                    Kind::Join => FenceCause::JoinTimeout,
                    Kind::Sync => FenceCause::SyncTimeout,
                };
                self.fence(&group, &member, cause, out);
            }
            self.note(&group);
        }
    }

    /// Remembers `group` as changed if it is.
    fn note(&mut self, group: &str) {
        if let Some(g) = self.groups.get_mut(group) {
            if std::mem::take(&mut g.dirty) {
                self.dirty.insert(group.to_string());
            }
        }
    }

    /// Forgets that `group` changed (its removal is written by the caller, or nothing is).
    pub fn clean(&mut self, group: &str) {
        self.dirty.remove(group);
    }

    /// Marks `group` changed (its last record write failed: write it again at the next change).
    pub fn touch(&mut self, group: &str) {
        if self.groups.contains_key(group) {
            self.dirty.insert(group.to_string());
        }
    }

    /// The groups whose record changed since the last call (write `record(id)`, or a tombstone
    /// when it is `None`), in id order. A steady heartbeat changes nothing.
    pub fn take_dirty(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.dirty)
    }
}

/// A member id for a v0 join (Kafka generates a random UUID; ours are unique per process and
/// seeded per process), printed like Kafka's `Uuid.toString()`: 22 characters of URL-safe base64.
fn next_member_id(ids: &mut IdGen) -> String {
    let bytes = ids.next_bits(29, 0x2545_f491_4f6c_dd1d).to_be_bytes();
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            s.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        s.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    s
}
