//! A read-only picture of every group this coordinator serves, for the shell's lag poller and
//! `GET /groups`: state, generation, protocol, members with their assignments, and each committed
//! offset with its commit time. Builds plain data from what is in memory; never changes a group,
//! never emits output.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::consumer::{
    encode_assignment, ConsumerGroup, ConsumerGroupState, CONSUMER_PROTOCOL_TYPE,
};
use super::{Coordinator, GroupState, Millis};

/// One group as the coordinator holds it now.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupView {
    pub group: String,
    pub state: GroupState,
    pub generation: i32,
    /// "" when no member has joined (a group with committed offsets only).
    pub protocol_type: String,
    /// The selected assignor; "" outside a join phase's result.
    pub protocol: String,
    pub leader: Option<String>,
    pub members: Vec<MemberView>,
    /// By topic, then partition.
    pub offsets: Vec<OffsetView>,
}

/// One member and the assignment the leader gave it (opaque bytes; empty before SyncGroup).
#[derive(Clone, Debug, PartialEq)]
pub struct MemberView {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub assignment: Bytes,
}

/// One committed offset.
#[derive(Clone, Debug, PartialEq)]
pub struct OffsetView {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// On the shell's clock (Unix-epoch milliseconds).
    pub commit_timestamp: Millis,
}

impl Coordinator {
    /// Every group served here (with members, or with committed offsets only), sorted by id.
    /// Empty while loading.
    pub fn views(&self) -> Vec<GroupView> {
        if self.loading {
            return Vec::new();
        }
        let mut ids: BTreeSet<&str> = self.groups.keys().map(String::as_str).collect();
        ids.extend(self.consumer.groups().map(|g| g.id.as_str()));
        ids.extend(self.offsets.group_ids().filter(|g| self.owns(g)));
        ids.into_iter().map(|id| self.view(id)).collect()
    }

    fn view(&self, id: &str) -> GroupView {
        let offsets = self
            .offsets
            .all(id)
            .flat_map(|(topic, partitions)| {
                partitions.iter().map(move |(p, o)| OffsetView {
                    topic: topic.to_string(),
                    partition: *p,
                    offset: o.offset,
                    commit_timestamp: o.commit_timestamp,
                })
            })
            .collect();
        if let Some(g) = self.consumer.group(id) {
            return self.consumer_view(g, offsets);
        }
        let Some(g) = self.groups.get(id) else {
            return GroupView {
                group: id.to_string(),
                state: GroupState::Empty,
                generation: 0,
                protocol_type: String::new(),
                protocol: String::new(),
                leader: None,
                members: Vec::new(),
                offsets,
            };
        };
        GroupView {
            group: id.to_string(),
            state: g.state,
            generation: g.generation,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: g.protocol_name.clone().unwrap_or_default(),
            leader: g.leader.clone(),
            members: g
                .members
                .values()
                .map(|m| MemberView {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
            offsets,
        }
    }

    /// A consumer group (KIP-848) in the same shape: protocol type "consumer", the group epoch as
    /// generation, Stable or rebalancing (Assigning/Reconciling read as PreparingRebalance), and
    /// each member's owned partitions as a ConsumerProtocolAssignment, as a classic consumer
    /// group's members carry them.
    fn consumer_view(&self, g: &ConsumerGroup, offsets: Vec<OffsetView>) -> GroupView {
        let state = match g.state {
            ConsumerGroupState::Empty => GroupState::Empty,
            ConsumerGroupState::Stable => GroupState::Stable,
            ConsumerGroupState::Assigning | ConsumerGroupState::Reconciling => {
                GroupState::PreparingRebalance
            }
        };
        let topics = self.consumer.topics();
        GroupView {
            group: g.id.clone(),
            state,
            generation: g.group_epoch,
            protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
            protocol: g
                .preferred_assignor(self.consumer.config().default_assignor())
                .name()
                .into(),
            leader: None,
            members: g
                .members
                .values()
                .map(|m| MemberView {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    assignment: encode_assignment(&m.assigned, topics, &[]),
                })
                .collect(),
            offsets,
        }
    }
}
