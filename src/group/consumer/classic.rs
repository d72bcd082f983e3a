//! Classic-protocol members in a consumer group (Kafka 4's `classicGroupJoinToConsumerGroup`,
//! `classicGroupSyncToConsumerGroup`, `classicGroupHeartbeatToConsumerGroup`,
//! `classicGroupLeaveToConsumerGroup`): a JoinGroup/SyncGroup/Heartbeat/LeaveGroup client of a
//! group id that is a consumer group is served by the consumer coordinator. Its subscription comes
//! from the JoinGroup protocol metadata (ConsumerProtocolSubscription), its assignment goes back in
//! SyncGroup (ConsumerProtocolAssignment, both through kafka-protocol), its generation is its member
//! epoch, and it is told to rejoin (REBALANCE_IN_PROGRESS) while it lags its target. JoinGroup and
//! SyncGroup answer at once, as Kafka does for a consumer group: nothing parks here.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartition;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use uuid::Uuid;

use super::group::ConsumerGroup;
use super::heartbeat::{apply_member, bump_group_epoch, note_state, reconcile_step};
use super::member::{Assignment, ClassicMember, Member, MemberState};
use super::timers::{Kind, Timers};
use super::topics::Topics;
use super::{next_member_id, CallContext, ConsumerEvent, ConsumerGroups, FenceCause};
use crate::group::group::code;
use crate::group::rebalance::sb;
use crate::group::Millis;

/// The protocol type of consumers (Kafka's `ConsumerProtocol.PROTOCOL_TYPE`).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The highest ConsumerProtocol versions kafka-protocol 0.18 knows; a higher one is read as this.
const MAX_SUBSCRIPTION_VERSION: i16 = 3;
const MAX_ASSIGNMENT_VERSION: i16 = 3;

/// A ConsumerProtocolSubscription (its version header, then the body). `None` if it does not parse.
pub fn decode_subscription(bytes: &[u8]) -> Option<(i16, ConsumerProtocolSubscription)> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version < 0 {
        return None;
    }
    let s = ConsumerProtocolSubscription::decode(&mut buf, version.min(MAX_SUBSCRIPTION_VERSION));
    s.ok().map(|s| (version, s))
}

/// A ConsumerProtocolAssignment (version header and body). `None` if it does not parse; empty
/// bytes are an empty assignment (a member that never got one).
pub fn decode_assignment(bytes: &[u8]) -> Option<ConsumerProtocolAssignment> {
    if bytes.is_empty() {
        return Some(ConsumerProtocolAssignment::default());
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version < 0 {
        return None;
    }
    ConsumerProtocolAssignment::decode(&mut buf, version.min(MAX_ASSIGNMENT_VERSION)).ok()
}

/// `assignment` (topic ids resolved to names through `topics`; unknown ids are left out) as a
/// ConsumerProtocolAssignment at the version of the member's subscription (Kafka's
/// `serializeAssignment(…, deserializeVersion(metadata))`).
pub fn encode_assignment(assignment: &Assignment, topics: &Topics, subscription: &[u8]) -> Bytes {
    let version = if subscription.len() >= 2 {
        i16::from_be_bytes([subscription[0], subscription[1]]).clamp(0, MAX_ASSIGNMENT_VERSION)
    } else {
        0
    };
    let partitions = assignment
        .iter()
        .filter_map(|(t, ps)| {
            let name = topics.name(*t)?;
            Some(
                AssignedPartition::default()
                    .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(ps.iter().copied().collect()),
            )
        })
        .collect();
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(partitions);
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Only a version out of range fails, and the version was clamped into range.
    if a.encode(&mut buf, version).is_err() {
        return Bytes::new();
    }
    buf.freeze()
}

/// Topic names with partitions → an assignment by topic id (unknown topics are left out).
pub(crate) fn to_assignment<'a>(
    parts: impl IntoIterator<Item = (&'a str, &'a [i32])>,
    topics: &Topics,
) -> Assignment {
    let mut a = Assignment::new();
    for (name, ps) in parts {
        if let Some(t) = topics.get(name) {
            if !ps.is_empty() {
                a.entry(t.id).or_default().extend(ps.iter().copied());
            }
        }
    }
    a
}

/// A JoinGroup error: no generation, no protocol (null from v7, "" before, as the classic side).
fn join_error(version: i16, error: i16, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error)
        .with_generation_id(-1)
        .with_member_id(sb(member_id))
        .with_protocol_name((version < 7).then(StrBytes::default))
}

fn sync_error(error: i16) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error)
}

impl ConsumerGroups {
    /// Whether a classic JoinGroup for `group` is served here (`classic_join`): a consumer group
    /// with members. An empty consumer group's id goes to the classic coordinator (after `delete`),
    /// as Kafka's `classicGroupJoin` converts it.
    pub fn serves_classic_join(&self, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// JoinGroup (any version) of a classic consumer for a consumer group: answered at once.
    pub fn classic_join(
        &mut self,
        now: Millis,
        cx: &CallContext,
        req: &JoinGroupRequest,
        out: &mut Vec<ConsumerEvent>,
    ) -> JoinGroupResponse {
        self.run_timers(now, out);
        let group_id = req.group_id.as_str();
        let response = self.join_classic(now, cx, req, out);
        self.note(group_id);
        response.unwrap_or_else(|(code, member)| join_error(cx.api_version, code, &member))
    }

    fn join_classic(
        &mut self,
        now: Millis,
        cx: &CallContext,
        req: &JoinGroupRequest,
        out: &mut Vec<ConsumerEvent>,
    ) -> Result<JoinGroupResponse, (i16, String)> {
        let group_id = req.group_id.as_str();
        let unknown = req.member_id.is_empty();
        let member_id = if unknown {
            next_member_id(&mut self.ids)
        } else {
            req.member_id.to_string()
        };
        let Some(group) = self.groups.get(group_id) else {
            return Err((code::UNKNOWN_MEMBER_ID, member_id));
        };
        if group.members.len() >= self.config.max_size
            && (unknown || !group.members.contains_key(&member_id))
        {
            return Err((code::GROUP_MAX_SIZE_REACHED, member_id));
        }
        let protocols: Vec<(String, Bytes)> = req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        if !supports_classic_protocols(group, req.protocol_type.as_str(), &protocols) {
            return Err((code::INCONSISTENT_GROUP_PROTOCOL, member_id));
        }
        let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
        if cx.api_version >= 4 && unknown && instance.is_none() {
            return Err((code::MEMBER_ID_REQUIRED, member_id));
        }
        // All protocols carry the same subscription; Kafka reads the first.
        let Some((_, subscription)) = decode_subscription(&protocols[0].1) else {
            return Err((code::INCONSISTENT_GROUP_PROTOCOL, member_id));
        };
        let (member, replaced) = match &instance {
            None => (
                group
                    .members
                    .get(&member_id)
                    .cloned()
                    .unwrap_or_else(|| Member::new(member_id.clone())),
                None,
            ),
            Some(i) => match group.static_member(i) {
                None if unknown => (Member::new(member_id.clone()), None),
                None => return Err((code::UNKNOWN_MEMBER_ID, member_id)),
                Some(e) if unknown => {
                    // The new incarnation takes over the old one's partitions, at epoch 0.
                    let mut m = e.clone();
                    m.id = member_id.clone();
                    m.member_epoch = 0;
                    m.previous_member_epoch = 0;
                    (m, Some(e.id.clone()))
                }
                Some(e) if e.id != member_id => {
                    return Err((code::FENCED_INSTANCE_ID, member_id));
                }
                Some(e) => (e.clone(), None),
            },
        };
        // The incarnation replaced used the consumer protocol: maybe the last one to (step 4 of
        // Kafka's `classicGroupJoinToConsumerGroup`).
        let replaced_consumer = replaced
            .as_ref()
            .and_then(|old| group.members.get(old))
            .is_some_and(|m| !m.uses_classic_protocol());

        // Validated: from here on the group changes.
        let topics = &self.topics;
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err((code::UNKNOWN_MEMBER_ID, member_id));
        };
        let mut updated = member;
        if let Some(i) = &instance {
            updated.instance_id = Some(i.clone());
        }
        if let Some(r) = subscription.rack_id.as_ref().filter(|r| !r.is_empty()) {
            updated.rack_id = Some(r.to_string());
        }
        if req.rebalance_timeout_ms != -1 {
            updated.rebalance_timeout_ms = req.rebalance_timeout_ms;
        } else if cx.api_version == 0 || updated.rebalance_timeout_ms == -1 {
            // JoinGroup v0 has no rebalance timeout: the session timeout stands in (Kafka).
            updated.rebalance_timeout_ms = req.session_timeout_ms;
        }
        updated.server_assignor = None;
        // The regex stays: a classic subscription is by names only.
        let names: BTreeSet<String> = subscription.topics.iter().map(|t| t.to_string()).collect();
        let subscription_changed = names != updated.subscribed_topic_names;
        updated.subscribed_topic_names = names;
        updated.client_id = cx.client_id.clone();
        updated.client_host = cx.client_host.clone();
        updated.classic = Some(ClassicMember {
            session_timeout_ms: req.session_timeout_ms,
            protocols,
        });
        if let Some(old) = &replaced {
            self.timers.cancel_member(group_id, old);
        }
        let default_assignor = self.config.default_assignor();
        apply_member(
            group,
            topics,
            default_assignor,
            &updated,
            subscription_changed,
            replaced.as_deref(),
            out,
        );
        // What the member owns: the owned partitions of its subscription (v1+; an eager member
        // revoked everything before it rejoined, so it owns nothing).
        let owned: Vec<(Uuid, Vec<i32>)> = to_assignment(
            subscription
                .owned_partitions
                .iter()
                .map(|tp| (tp.topic.as_str(), tp.partitions.as_slice())),
            topics,
        )
        .into_iter()
        .map(|(t, ps)| (t, ps.into_iter().collect()))
        .collect();
        let (current, _) = reconcile_step(group, &mut self.timers, now, updated, Some(&owned));
        note_state(group, out);
        let protocol = first_protocol(&current).to_string();
        let response = JoinGroupResponse::default()
            .with_member_id(sb(&current.id))
            .with_generation_id(current.member_epoch)
            .with_protocol_type(Some(sb(CONSUMER_PROTOCOL_TYPE)))
            .with_protocol_name(Some(sb(&protocol)));
        if replaced_consumer
            && self.maybe_downgrade_after_replacement(group_id, subscription_changed)
        {
            // The classic side serves this member from now on (its SyncGroup included).
            return Ok(response);
        }
        self.timers.cancel_kind(group_id, &current.id, &Kind::Join);
        let session = now + req.session_timeout_ms.max(0) as u64;
        self.timers
            .arm(group_id, &current.id, Kind::Session, session);
        let sync = now + current.rebalance_timeout_ms.max(0) as u64;
        self.timers.arm(group_id, &current.id, Kind::Sync, sync);
        Ok(response)
    }

    /// SyncGroup of a classic member of a consumer group: its current assignment, at once.
    pub fn classic_sync(
        &mut self,
        now: Millis,
        _cx: &CallContext,
        req: &SyncGroupRequest,
        out: &mut Vec<ConsumerEvent>,
    ) -> SyncGroupResponse {
        self.run_timers(now, out);
        let group_id = req.group_id.as_str();
        let instance = req.group_instance_id.as_ref().map(|i| i.as_str());
        // Borrowed from `groups` while `timers` changes: no copy of the member.
        let ConsumerGroups {
            groups,
            timers,
            topics,
            ..
        } = self;
        let (group, member) =
            match classic_member(groups, group_id, req.member_id.as_str(), instance) {
                Ok(found) => found,
                Err(code) => return sync_error(code),
            };
        if req.generation_id != member.member_epoch {
            return sync_error(code::ILLEGAL_GENERATION);
        }
        let protocol = first_protocol(member);
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| t.as_str() != CONSUMER_PROTOCOL_TYPE)
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| n.as_str() != protocol)
        {
            return sync_error(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        // Kafka's `throwIfRebalanceInProgress`: the group moved past the member, which is not
        // busy revoking.
        if group.group_epoch > member.member_epoch
            && member.state != MemberState::UnrevokedPartitions
        {
            let at = now + member.rebalance_timeout_ms.max(0) as u64;
            timers.arm_if_absent(group_id, &member.id, Kind::Join, at);
            return sync_error(code::REBALANCE_IN_PROGRESS);
        }
        timers.cancel_kind(group_id, &member.id, &Kind::Sync);
        arm_classic_session(timers, now, group_id, member);
        let metadata = member
            .classic
            .as_ref()
            .and_then(|c| c.protocols.first())
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        SyncGroupResponse::default()
            .with_protocol_type(req.protocol_type.clone())
            .with_protocol_name(req.protocol_name.clone())
            .with_assignment(encode_assignment(&member.assigned, topics, &metadata))
    }

    /// Heartbeat of a classic member of a consumer group: REBALANCE_IN_PROGRESS while it must
    /// rejoin to move towards its target.
    pub fn classic_heartbeat(
        &mut self,
        now: Millis,
        _cx: &CallContext,
        req: &HeartbeatRequest,
        out: &mut Vec<ConsumerEvent>,
    ) -> HeartbeatResponse {
        self.run_timers(now, out);
        let group_id = req.group_id.as_str();
        let instance = req.group_instance_id.as_ref().map(|i| i.as_str());
        let ConsumerGroups { groups, timers, .. } = self;
        let (group, member) =
            match classic_member(groups, group_id, req.member_id.as_str(), instance) {
                Ok(found) => found,
                Err(code) => return HeartbeatResponse::default().with_error_code(code),
            };
        if req.generation_id != member.member_epoch {
            return HeartbeatResponse::default().with_error_code(code::ILLEGAL_GENERATION);
        }
        arm_classic_session(timers, now, group_id, member);
        let rejoin = member.member_epoch < group.group_epoch
            || member.state == MemberState::UnrevokedPartitions
            || (member.state == MemberState::UnreleasedPartitions
                && !waiting_on_unreleased(group, member));
        if rejoin {
            let at = now + member.rebalance_timeout_ms.max(0) as u64;
            timers.arm_if_absent(group_id, &member.id, Kind::Join, at);
            return HeartbeatResponse::default().with_error_code(code::REBALANCE_IN_PROGRESS);
        }
        HeartbeatResponse::default()
    }

    /// LeaveGroup (v0–2: one member; v3+: a batch, answered per member) of classic members of a
    /// consumer group. The group epoch moves on once for the batch.
    pub fn classic_leave(
        &mut self,
        now: Millis,
        cx: &CallContext,
        req: &LeaveGroupRequest,
        out: &mut Vec<ConsumerEvent>,
    ) -> LeaveGroupResponse {
        self.run_timers(now, out);
        let group_id = req.group_id.as_str();
        let batched = cx.api_version >= 3;
        let leaving: Vec<(String, Option<String>)> = if batched {
            req.members
                .iter()
                .map(|m| {
                    let instance = m.group_instance_id.as_ref().map(|i| i.to_string());
                    (m.member_id.to_string(), instance)
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let mut results = Vec::new();
        let mut removed = 0;
        for (member_id, instance) in &leaving {
            let found = match instance {
                None => classic_member(&self.groups, group_id, member_id, None).map(|(_, m)| m),
                Some(i) => self.classic_static_for_leave(group_id, member_id, i),
            };
            match found.map(|m| m.id.clone()) {
                Ok(id) => {
                    if let Some(g) = self.groups.get_mut(group_id) {
                        g.remove_member(&id);
                    }
                    self.timers.cancel_member(group_id, &id);
                    out.push(ConsumerEvent::MemberFenced {
                        group: group_id.to_string(),
                        cause: FenceCause::Leave,
                    });
                    removed += 1;
                    results.push((id, instance.clone(), 0));
                }
                Err(code) => results.push((member_id.clone(), instance.clone(), code)),
            }
        }
        if removed > 0 {
            if let Some(g) = self.groups.get_mut(group_id) {
                g.refresh_subscriptions(&self.topics);
                bump_group_epoch(g, out);
            }
        }
        self.note(group_id);
        if !batched {
            let error = results.first().map_or(0, |r| r.2);
            return LeaveGroupResponse::default().with_error_code(error);
        }
        LeaveGroupResponse::default().with_members(
            results
                .into_iter()
                .map(|(member_id, instance, error)| {
                    MemberResponse::default()
                        .with_member_id(sb(&member_id))
                        .with_group_instance_id(instance.as_deref().map(sb))
                        .with_error_code(error)
                })
                .collect(),
        )
    }

    /// A LeaveGroup entry by instance id: the member id may be left out (an admin removal).
    fn classic_static_for_leave(
        &self,
        group_id: &str,
        member_id: &str,
        instance: &str,
    ) -> Result<&Member, i16> {
        let g = self.groups.get(group_id).ok_or(code::UNKNOWN_MEMBER_ID)?;
        let m = g.static_member(instance).ok_or(code::UNKNOWN_MEMBER_ID)?;
        if !member_id.is_empty() && m.id != member_id {
            return Err(code::FENCED_INSTANCE_ID);
        }
        if !m.uses_classic_protocol() {
            return Err(code::UNKNOWN_MEMBER_ID);
        }
        Ok(m)
    }
}

/// Kafka's `validateConsumerGroupMember` + `throwIfMemberDoesNotUseClassicProtocol`: the group
/// and the member.
fn classic_member<'a>(
    groups: &'a BTreeMap<String, ConsumerGroup>,
    group_id: &str,
    member_id: &str,
    instance: Option<&str>,
) -> Result<(&'a ConsumerGroup, &'a Member), i16> {
    let g = groups.get(group_id).ok_or(code::UNKNOWN_MEMBER_ID)?;
    let m = match instance {
        None => g.members.get(member_id).ok_or(code::UNKNOWN_MEMBER_ID)?,
        Some(i) => {
            let m = g.static_member(i).ok_or(code::UNKNOWN_MEMBER_ID)?;
            if m.id != member_id {
                return Err(code::FENCED_INSTANCE_ID);
            }
            m
        }
    };
    if !m.uses_classic_protocol() {
        return Err(code::UNKNOWN_MEMBER_ID);
    }
    Ok((g, m))
}

/// A classic member's session runs on the timeout it joined with.
fn arm_classic_session(timers: &mut Timers, now: Millis, group_id: &str, member: &Member) {
    let session = member.classic.as_ref().map_or(0, |c| c.session_timeout_ms);
    let at = now + session.max(0) as u64;
    timers.arm(group_id, &member.id, Kind::Session, at);
}

/// The protocol name a classic member is answered with: its first (Kafka's
/// `supportedClassicProtocols().iterator().next()`).
fn first_protocol(m: &Member) -> &str {
    m.classic
        .as_ref()
        .and_then(|c| c.protocols.first())
        .map_or("", |(n, _)| n.as_str())
}

/// Kafka's `ConsumerGroup.supportsClassicProtocols`: protocol type "consumer", and one of the
/// member's protocols is supported by every classic member of the group.
fn supports_classic_protocols(
    group: &ConsumerGroup,
    protocol_type: &str,
    protocols: &[(String, Bytes)],
) -> bool {
    if protocol_type != CONSUMER_PROTOCOL_TYPE || protocols.is_empty() {
        return false;
    }
    let classic: Vec<&ClassicMember> = group
        .members
        .values()
        .filter_map(|m| m.classic.as_ref())
        .collect();
    protocols.iter().any(|(name, _)| {
        classic
            .iter()
            .all(|c| c.protocols.iter().any(|(n, _)| n == name))
    })
}

/// Kafka's `waitingOnUnreleasedPartition`: a partition of the member's target is still held by
/// another member.
fn waiting_on_unreleased(group: &ConsumerGroup, member: &Member) -> bool {
    if member.state != MemberState::UnreleasedPartitions {
        return false;
    }
    let Some(target) = group.target.get(&member.id) else {
        return false;
    };
    target.iter().any(|(t, ps)| {
        ps.iter().any(|p| {
            !member.assigned.get(t).is_some_and(|a| a.contains(p))
                && group.partition_epoch(*t, *p) != -1
        })
    })
}
