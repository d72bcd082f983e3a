//! ConsumerGroupDescribe (API 69) v0–1 (Kafka's `ConsumerGroup.asDescribedGroup`): state, epochs,
//! the preferred assignor, and every member with its current and target assignment (topic names
//! from the topic metadata); and a consumer group as the classic DescribeGroups and ListGroups see
//! it. Read-only: it must not change a group.

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as WireAssignment, DescribedGroup, Member as WireMember, TopicPartitions,
};
use kafka_protocol::messages::describe_groups_response::DescribedGroup as ClassicDescribedGroup;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName,
};

use super::group::ConsumerGroup;
use super::heartbeat::code;
use super::member::Assignment;
use super::topics::Topics;
use super::ConsumerGroups;
use crate::group::rebalance::sb;

/// ConsumerGroupDescribe's member type (v1, KIP-1099): 0 classic protocol, 1 consumer protocol.
const MEMBER_TYPE_CLASSIC: i8 = 0;
const MEMBER_TYPE_CONSUMER: i8 = 1;

impl ConsumerGroups {
    /// Answers ConsumerGroupDescribe for the groups this coordinator holds; any other id is
    /// GROUP_ID_NOT_FOUND (a classic group's id included: the shell may say "not a consumer group").
    pub fn describe(&self, req: &ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
        let groups = req
            .group_ids
            .iter()
            .map(|id| match self.groups.get(id.as_str()) {
                Some(g) => self.described(g),
                None => not_found(id.as_str(), &format!("Group {} not found.", id.as_str())),
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    }

    fn described(&self, g: &ConsumerGroup) -> DescribedGroup {
        let empty = Assignment::new();
        let assignor = g.preferred_assignor(self.config.default_assignor());
        let members = g
            .members
            .values()
            .map(|m| {
                WireMember::default()
                    .with_member_id(sb(&m.id))
                    .with_instance_id(m.instance_id.as_deref().map(sb))
                    .with_rack_id(m.rack_id.as_deref().map(sb))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(sb(&m.client_id))
                    .with_client_host(sb(&m.client_host))
                    .with_subscribed_topic_names(
                        m.subscribed_topic_names
                            .iter()
                            .map(|n| TopicName(sb(n)))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(m.subscribed_topic_regex.as_deref().map(sb))
                    .with_assignment(wire(&m.assigned, &self.topics))
                    .with_target_assignment(wire(
                        g.target.get(&m.id).unwrap_or(&empty),
                        &self.topics,
                    ))
                    .with_member_type(if m.uses_classic_protocol() {
                        MEMBER_TYPE_CLASSIC
                    } else {
                        MEMBER_TYPE_CONSUMER
                    })
            })
            .collect();
        DescribedGroup::default()
            .with_group_id(GroupId(sb(&g.id)))
            .with_group_state(sb(g.state.name()))
            .with_group_epoch(g.group_epoch)
            .with_assignment_epoch(g.assignment_epoch)
            .with_assignor_name(sb(assignor.name()))
            .with_members(members)
    }
}

/// A described group that is not there (also what a classic group's id gets).
pub fn not_found(group: &str, message: &str) -> DescribedGroup {
    DescribedGroup::default()
        .with_group_id(GroupId(sb(group)))
        .with_error_code(code::GROUP_ID_NOT_FOUND)
        .with_error_message(Some(sb(message)))
}

fn wire(a: &Assignment, topics: &Topics) -> WireAssignment {
    WireAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(t, ps)| {
                TopicPartitions::default()
                    .with_topic_id(*t)
                    .with_topic_name(TopicName(sb(topics.name(*t).unwrap_or(""))))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

impl ConsumerGroups {
    /// DescribeGroups (the classic API, at `api_version`) of a consumer group's id, as Kafka 4
    /// answers it: state Dead, and from v6 GROUP_ID_NOT_FOUND "Group … is not a classic group."
    /// (Kafka's `describeGroups` looks the id up as a classic group). `None` if `group` is not a
    /// consumer group here (the classic side answers).
    pub fn describe_classic(&self, group: &str, api_version: i16) -> Option<ClassicDescribedGroup> {
        self.groups.get(group)?;
        let mut d = ClassicDescribedGroup::default()
            .with_group_id(GroupId(sb(group)))
            .with_group_state(sb("Dead"));
        if api_version >= 6 {
            d = d
                .with_error_code(code::GROUP_ID_NOT_FOUND)
                .with_error_message(Some(sb(&format!("Group {group} is not a classic group."))));
        }
        Some(d)
    }

    /// ListGroups entries of the consumer groups (Kafka's `ModernGroup.asListedGroup`): protocol
    /// type "consumer", state as ConsumerGroupDescribe spells it, type "consumer". `states` (v4+)
    /// and `types` (v5+) filter case-insensitively; empty means all.
    pub fn list(&self, states: &[&str], types: &[&str]) -> Vec<ListedGroup> {
        let wanted = |filter: &[&str], value: &str| {
            filter.is_empty() || filter.iter().any(|f| f.trim().eq_ignore_ascii_case(value))
        };
        if !wanted(types, GROUP_TYPE_CONSUMER) {
            return Vec::new();
        }
        self.groups
            .values()
            .filter(|g| wanted(states, g.state.name()))
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(sb(&g.id)))
                    .with_protocol_type(sb(GROUP_TYPE_CONSUMER))
                    .with_group_state(sb(g.state.name()))
                    .with_group_type(sb(GROUP_TYPE_CONSUMER))
            })
            .collect()
    }
}

/// ListGroups' group type and the protocol type of a consumer group.
const GROUP_TYPE_CONSUMER: &str = "consumer";
