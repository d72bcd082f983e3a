//! Durability effects (GROUP_SEMANTICS.md §3.9): the writes the coordinator asks the shell to make,
//! the replies and transitions that wait on them, and the in-order application of their outcomes.
//! Sans-IO: a write is an `Output::Persist`; the shell performs it and reports back with
//! `Coordinator::persisted`. Nothing here awaits.
//!
//! Rules:
//! - A write's effect (offsets into memory, a held reply, a SyncGroup round completing) is applied
//!   only once the store has answered, and per group **in the order the writes were issued**,
//!   whatever order the outcomes arrive in. Memory then mirrors what the store acknowledged.
//! - A group that was deleted (or deleted and created again) while a write was in flight does not
//!   receive that write's in-memory effect; the reply still goes out.
//! - Without a store (`Config::durable == false`) every write succeeds at once, within the same
//!   `handle`/`tick` call, and no `Output::Persist` is emitted.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use kafka_protocol::messages::{
    DeleteGroupsResponse, JoinGroupResponse, OffsetCommitResponse, OffsetDeleteResponse,
};

use super::group::Group;
use super::store::{CommittedOffset, TopicMap};
use super::{describe, import, join, offsets, sync, Coordinator, Millis, Output, Token};

/// Identifies one write (or one import) between the coordinator and the shell.
pub type WriteId = u64;

/// `(topic, partition, offset)`, as written and loaded.
pub type OffsetEntry = (String, i32, CommittedOffset);

/// A write the shell performs in the store. Writes for one group must be applied in the order
/// they were emitted; the outcome goes back through `Coordinator::persisted(id, …)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Persist {
    pub id: WriteId,
    pub group: String,
    pub write: Write,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Store these offsets, replacing earlier ones of the same partitions.
    Offsets(Vec<OffsetEntry>),
    /// Remove these partitions' offsets.
    DeleteOffsets(Vec<(String, i32)>),
    /// Replace the group record.
    Record(GroupRecord),
    /// Remove the group record and every offset of the group (the tombstone).
    DeleteGroup,
    /// Replace the group record with a consumer group's (KIP-848).
    ConsumerRecord(Box<super::consumer::ConsumerGroupRecord>),
}

/// The group record written at the persistence points: what a restarted coordinator needs to
/// bring a Stable group back without a rebalance (Kafka's GroupMetadataValue).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupRecord {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// When the group entered its current state (the coordinator's clock).
    pub state_since: Millis,
    pub members: Vec<MemberRecord>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// One group as the shell read it from the store at startup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedGroup {
    pub group: String,
    pub record: Option<GroupRecord>,
    /// A consumer group's record (then `record` is `None`).
    pub consumer: Option<Box<super::consumer::ConsumerGroupRecord>>,
    pub offsets: Vec<OffsetEntry>,
}

/// What waits on a write.
pub(crate) enum Effect {
    /// Nothing (a record at join completion into Empty; retention deletes already applied).
    None,
    /// An OffsetCommit: on success its values go into memory; either way the reply goes out,
    /// with `error` on the written partitions if the write failed.
    Commit {
        token: Token,
        response: OffsetCommitResponse,
        /// (topic index, partition index) of each written partition in `response`.
        written: Vec<(usize, usize)>,
        values: Vec<OffsetEntry>,
    },
    /// An OffsetDelete: on success the partitions leave memory.
    OffsetDelete {
        token: Token,
        response: OffsetDeleteResponse,
        partitions: Vec<(String, i32)>,
    },
    /// The leader's SyncGroup (§2.2): on success the round completes, on failure it resets.
    Assignment {
        generation: i32,
        assignments: HashMap<String, Bytes>,
    },
    /// A static member replaced in Stable (§3.7): the JoinGroup answer waits; a failure reverts.
    StaticJoin {
        token: Token,
        version: i16,
        response: JoinGroupResponse,
        old_id: String,
        new_id: String,
        generation: i32,
    },
    /// A group deleted (DeleteGroups: `token` and the result's index; the group to put back if
    /// the tombstone fails), or removed by retention (no token, nothing to restore).
    Tombstone {
        token: Option<Token>,
        index: usize,
        restore: Option<Box<(Group, TopicMap)>>,
    },
    /// Offsets imported from the gateway: on success they go into memory; either way the import
    /// is over and the calls parked on it run again.
    Import { values: Vec<OffsetEntry> },
    /// A consumer group's record, or a reply queued behind the group's writes: the reply (a
    /// ConsumerGroupHeartbeat answer reflecting the record) leaves once the write is durable.
    ConsumerRecord {
        reply: Option<(Token, super::Response)>,
    },
}

struct Pending {
    group: String,
    incarnation: u64,
    effect: Effect,
    outcome: Option<Result<(), i16>>,
}

/// A DeleteGroups response waiting on one or more tombstones.
pub(crate) struct HeldDelete {
    pub response: DeleteGroupsResponse,
    pub outstanding: usize,
}

/// A write whose outcome is known and whose turn has come.
pub(crate) struct Ready {
    pub id: WriteId,
    pub group: String,
    pub incarnation: u64,
    pub effect: Effect,
    pub outcome: Result<(), i16>,
}

/// Writes in flight, per group in issue order.
#[derive(Default)]
pub(crate) struct Persistence {
    pub durable: bool,
    next_id: WriteId,
    next_incarnation: u64,
    pending: HashMap<WriteId, Pending>,
    queues: HashMap<String, VecDeque<WriteId>>,
    /// Groups whose oldest write may have an outcome (checked by `take_ready`).
    dirty: Vec<String>,
    pub held_deletes: HashMap<Token, HeldDelete>,
}

impl Persistence {
    pub(crate) fn new(durable: bool) -> Self {
        Persistence {
            durable,
            ..Persistence::default()
        }
    }

    pub(crate) fn next_id(&mut self) -> WriteId {
        self.next_id += 1;
        self.next_id
    }

    /// A fresh identity for a group object (see the module docs).
    pub(crate) fn next_incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }

    /// Queues `write` for the group. Durable: emitted for the shell; otherwise it has already
    /// succeeded and its effect runs before the current call returns. `write` is built only when
    /// it is emitted.
    pub(crate) fn issue(
        &mut self,
        out: &mut Vec<super::Output>,
        group: &str,
        incarnation: u64,
        write: impl FnOnce() -> Write,
        effect: Effect,
    ) -> WriteId {
        let id = self.next_id();
        let outcome = if self.durable {
            out.push(super::Output::Persist(Persist {
                id,
                group: group.to_string(),
                write: write(),
            }));
            None
        } else {
            self.dirty.push(group.to_string());
            Some(Ok(()))
        };
        self.pending.insert(
            id,
            Pending {
                group: group.to_string(),
                incarnation,
                effect,
                outcome,
            },
        );
        self.queues
            .entry(group.to_string())
            .or_default()
            .push_back(id);
        id
    }

    /// Records the outcome of a write; false if the id is unknown (already settled).
    pub(crate) fn settle(&mut self, id: WriteId, outcome: Result<(), i16>) -> bool {
        match self.pending.get_mut(&id) {
            Some(p) if p.outcome.is_none() => {
                p.outcome = Some(outcome);
                self.dirty.push(p.group.clone());
                true
            }
            _ => false,
        }
    }

    /// The next write whose outcome is known and which is the oldest of its group, if any.
    pub(crate) fn take_ready(&mut self) -> Option<Ready> {
        while let Some(group) = self.dirty.last().cloned() {
            let queue = self.queues.get_mut(&group);
            let head = queue.as_ref().and_then(|q| q.front().copied());
            let settled = head
                .and_then(|id| self.pending.get(&id))
                .is_some_and(|p| p.outcome.is_some());
            if !settled {
                self.dirty.pop();
                continue;
            }
            let (Some(queue), Some(id)) = (queue, head) else {
                self.dirty.pop();
                continue;
            };
            queue.pop_front();
            if queue.is_empty() {
                self.queues.remove(&group);
            }
            let p = self.pending.remove(&id)?;
            return Some(Ready {
                id,
                group: p.group,
                incarnation: p.incarnation,
                effect: p.effect,
                outcome: p.outcome.unwrap_or(Ok(())),
            });
        }
        None
    }

    /// Queues a reply behind the group's writes in flight, to leave when they have settled (in
    /// order). Gives the reply back if none is in flight: the caller answers now.
    pub(crate) fn queue_behind(
        &mut self,
        group: &str,
        incarnation: u64,
        token: Token,
        response: super::Response,
    ) -> Option<super::Response> {
        if self.in_flight(group) == 0 {
            return Some(response);
        }
        let id = self.next_id();
        self.pending.insert(
            id,
            Pending {
                group: group.to_string(),
                incarnation,
                effect: Effect::ConsumerRecord {
                    reply: Some((token, response)),
                },
                outcome: Some(Ok(())),
            },
        );
        self.queues
            .entry(group.to_string())
            .or_default()
            .push_back(id);
        None
    }

    /// Writes of the group still waiting for an outcome or for their turn.
    pub(crate) fn in_flight(&self, group: &str) -> usize {
        self.queues.get(group).map_or(0, VecDeque::len)
    }

    pub(crate) fn total_in_flight(&self) -> usize {
        self.pending.len()
    }
}

/// Runs what waited on a settled write (see the module docs).
pub(crate) fn apply(c: &mut Coordinator, now: Millis, ready: Ready, out: &mut Vec<Output>) {
    let Ready {
        id,
        group,
        incarnation,
        effect,
        outcome,
    } = ready;
    let same_group = c
        .groups
        .get(&group)
        .is_some_and(|g| g.incarnation == incarnation)
        || c.consumer_incarnations.get(&group) == Some(incarnation);
    match effect {
        Effect::None => {}
        Effect::Commit {
            token,
            response,
            written,
            values,
        } => offsets::commit_settled(
            c, group, same_group, token, response, written, values, outcome, out,
        ),
        Effect::OffsetDelete {
            token,
            response,
            partitions,
        } => offsets::delete_settled(
            c, &group, same_group, token, response, partitions, outcome, out,
        ),
        Effect::Assignment {
            generation,
            assignments,
        } if same_group => {
            sync::assignment_settled(c, now, &group, id, generation, assignments, outcome, out)
        }
        Effect::Assignment { .. } => {}
        Effect::StaticJoin {
            token,
            version,
            response,
            old_id,
            new_id,
            generation,
        } => join::static_join_settled(
            c,
            now,
            &group,
            same_group,
            (token, version, response),
            (&old_id, &new_id, generation),
            outcome,
            out,
        ),
        Effect::Tombstone {
            token,
            index,
            restore,
        } => describe::tombstone_settled(c, &group, token, index, restore, outcome, out),
        Effect::Import { values } => {
            import::settled(c, now, &group, same_group, values, outcome, out)
        }
        Effect::ConsumerRecord { reply } => {
            c.consumer_record_settled(&group, same_group, reply, outcome, out)
        }
    }
}
