//! ConsumerGroupHeartbeat (API 68) v0–1 (Kafka's `consumerGroupHeartbeat`): validation in Kafka's
//! order, then join (epoch 0), heartbeat (epoch > 0) or leave (-1, static -2); the group epoch
//! moves on a subscription or metadata change, the target is recomputed when the group epoch is
//! ahead of it, and the member reconciles one step. Also member fencing (leave, session and
//! rebalance timeouts). Everything is validated before anything changes.

use std::collections::BTreeSet;

use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as WireAssignment, TopicPartitions as WireTopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::assignor::Assignor;
use super::group::ConsumerGroup;
use super::member::{
    Assignment, Member, MemberState, LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH,
};
use super::reconcile::{reconcile, Owned};
use super::timers::{Kind, Timers};
use super::topics::{TopicRegex, Topics};
use super::{next_member_id, CallContext, ConsumerEvent, ConsumerGroups, FenceCause};
use crate::group::Millis;

/// Kafka error codes ConsumerGroupHeartbeat answers with.
pub(crate) mod code {
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_REQUEST: i16 = 42;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
}

/// An error answer: code and message.
#[derive(Debug)]
pub(crate) struct Refusal(pub i16, pub String);

impl ConsumerGroups {
    /// Answers one ConsumerGroupHeartbeat at `cx.api_version` (0 or 1). Fires due timers first.
    pub fn heartbeat(
        &mut self,
        now: Millis,
        cx: &CallContext,
        req: &ConsumerGroupHeartbeatRequest,
        out: &mut Vec<ConsumerEvent>,
    ) -> ConsumerGroupHeartbeatResponse {
        self.run_timers(now, out);
        let group_id = req.group_id.as_str();
        let result = self.validate(cx.api_version, req).and_then(|()| {
            if req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH
                || req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
            {
                self.leave(req, out)
            } else {
                self.join_or_heartbeat(now, cx, req, out)
            }
        });
        self.note(group_id);
        result.unwrap_or_else(|Refusal(code, message)| {
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        })
    }

    /// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid` (4.x: v1 members bring their own
    /// id; a join may subscribe by names, by regex, or to nothing yet).
    pub(super) fn validate(
        &self,
        version: i16,
        req: &ConsumerGroupHeartbeatRequest,
    ) -> Result<(), Refusal> {
        let invalid = |m: &str| Err(Refusal(code::INVALID_REQUEST, m.to_string()));
        if req.group_id.is_empty() {
            return invalid("GroupId can't be empty.");
        }
        if req.instance_id.as_ref().is_some_and(|s| s.is_empty()) {
            return invalid("InstanceId can't be empty.");
        }
        if req.rack_id.as_ref().is_some_and(|s| s.is_empty()) {
            return invalid("RackId can't be empty.");
        }
        let epoch = req.member_epoch;
        if (version >= 1 || epoch > 0 || epoch == LEAVE_GROUP_MEMBER_EPOCH)
            && req.member_id.is_empty()
        {
            return invalid("MemberId can't be empty.");
        }
        if epoch == 0 {
            if req.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if !req.topic_partitions.as_ref().is_some_and(Vec::is_empty) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.");
            }
        } else if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            if req.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
            if req.instance_id.is_none() {
                return invalid("InstanceId can't be null.");
            }
        } else if epoch < 0 && epoch != LEAVE_GROUP_MEMBER_EPOCH {
            return invalid("MemberEpoch is invalid.");
        }
        if let Some(name) = &req.server_assignor {
            let known = self
                .config
                .assignors
                .iter()
                .any(|a| a.name() == name.as_str());
            if !known {
                let names: Vec<&str> = self.config.assignors.iter().map(|a| a.name()).collect();
                return Err(Refusal(
                    code::UNSUPPORTED_ASSIGNOR,
                    format!(
                        "ServerAssignor {} is not supported. Supported assignors: {}.",
                        name.as_str(),
                        names.join(", ")
                    ),
                ));
            }
        }
        if let Some(r) = req
            .subscribed_topic_regex
            .as_ref()
            .filter(|r| !r.is_empty())
        {
            TopicRegex::compile(r).map_err(|m| Refusal(code::INVALID_REGULAR_EXPRESSION, m))?;
        }
        Ok(())
    }

    pub(super) fn join_or_heartbeat(
        &mut self,
        now: Millis,
        cx: &CallContext,
        req: &ConsumerGroupHeartbeatRequest,
        out: &mut Vec<ConsumerEvent>,
    ) -> Result<ConsumerGroupHeartbeatResponse, Refusal> {
        let group_id = req.group_id.as_str();
        let joining = req.member_epoch == 0;
        let created = !self.groups.contains_key(group_id);
        if created && !joining {
            return Err(Refusal(
                code::GROUP_ID_NOT_FOUND,
                format!("Consumer group {group_id} not found."),
            ));
        }
        let member_id = if req.member_id.is_empty() {
            next_member_id(&mut self.ids)
        } else {
            req.member_id.to_string()
        };
        let owned: Option<Vec<(Uuid, Vec<i32>)>> = req.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .map(|tp| (tp.topic_id, tp.partitions.clone()))
                .collect()
        });
        let fresh;
        let group = match self.groups.get(group_id) {
            Some(g) => g,
            None => {
                fresh = ConsumerGroup::new(group_id.to_string());
                &fresh
            }
        };
        let known = group.members.contains_key(&member_id)
            || req
                .instance_id
                .as_ref()
                .is_some_and(|i| group.static_members.contains_key(i.as_str()));
        if group.members.len() >= self.config.max_size && !known {
            return Err(Refusal(
                code::GROUP_MAX_SIZE_REACHED,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    self.config.max_size
                ),
            ));
        }
        let (mut updated, replaced) = find_member(group, &member_id, req, owned.as_deref())?;

        // Validated: from here on the group changes.
        let topics = &self.topics;
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| ConsumerGroup::new(group_id.to_string()));
        if let Some(i) = &req.instance_id {
            updated.instance_id = Some(i.to_string());
        }
        if let Some(r) = &req.rack_id {
            updated.rack_id = Some(r.to_string());
        }
        if req.rebalance_timeout_ms != -1 {
            updated.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(a) = &req.server_assignor {
            updated.server_assignor = Some(a.to_string());
        }
        let mut subscription_changed = false;
        if let Some(names) = &req.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
            subscription_changed |= names != updated.subscribed_topic_names;
            updated.subscribed_topic_names = names;
        }
        if let Some(r) = &req.subscribed_topic_regex {
            let regex = Some(r.to_string()).filter(|r| !r.is_empty());
            subscription_changed |= regex != updated.subscribed_topic_regex;
            updated.subscribed_topic_regex = regex;
        }
        if updated.client_id != cx.client_id {
            updated.client_id = cx.client_id.clone();
        }
        if updated.client_host != cx.client_host {
            updated.client_host = cx.client_host.clone();
        }
        // A member heartbeating with the consumer protocol no longer uses the classic one.
        updated.classic = None;
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
        let (current, assignment_changed) =
            reconcile_step(group, &mut self.timers, now, updated, owned.as_deref());
        let session = now + self.config.session_timeout_ms.max(0) as u64;
        self.timers
            .arm(group_id, &current.id, Kind::Session, session);
        note_state(group, out);

        let mut response = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(current.id.clone())))
            .with_member_epoch(current.member_epoch)
            .with_heartbeat_interval_ms(self.config.heartbeat_interval_ms);
        let full = joining
            || (req.rebalance_timeout_ms != -1
                && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
                && req.topic_partitions.is_some());
        if full || replaced.is_some() || assignment_changed {
            response.assignment = Some(wire_assignment(&current.assigned));
        }
        Ok(response)
    }

    /// Epoch -1 (leave) or -2 (a static member leaves for now, keeping its partitions until its
    /// session expires or its instance rejoins). Kafka's `consumerGroupLeave`.
    fn leave(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        out: &mut Vec<ConsumerEvent>,
    ) -> Result<ConsumerGroupHeartbeatResponse, Refusal> {
        let group_id = req.group_id.as_str();
        let member_id = req.member_id.as_str();
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err(Refusal(
                code::GROUP_ID_NOT_FOUND,
                format!("Consumer group {group_id} not found."),
            ));
        };
        let response = |epoch: i32| {
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(StrBytes::from_string(member_id.to_string())))
                .with_member_epoch(epoch)
        };
        let Some(instance) = req.instance_id.as_ref().map(|i| i.as_str()) else {
            if !group.members.contains_key(member_id) {
                return Err(unknown_member(member_id, group_id));
            }
            self.fence(group_id, member_id, FenceCause::Leave, out);
            return Ok(response(req.member_epoch));
        };
        let Some(existing) = group.static_member(instance) else {
            return Err(Refusal(
                code::UNKNOWN_MEMBER_ID,
                format!("Instance id {instance} is unknown."),
            ));
        };
        if existing.id != member_id {
            return Err(fenced_instance(member_id, instance, &existing.id));
        }
        if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            let mut leaving = existing.clone();
            leaving.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
            leaving.pending_revocation = Assignment::new();
            group.put_member(leaving);
            // The member may not revoke now; its session timer still runs.
            self.timers.cancel_rebalance(group_id, member_id);
            note_state(group, out);
            return Ok(response(LEAVE_GROUP_STATIC_MEMBER_EPOCH));
        }
        self.fence(group_id, member_id, FenceCause::Leave, out);
        Ok(response(req.member_epoch))
    }
}

/// The member a join or heartbeat is about, validated (Kafka's
/// `getOrMaybeSubscribe{Dynamic,Static}ConsumerGroupMember`), and the static member it replaces.
fn find_member(
    group: &ConsumerGroup,
    member_id: &str,
    req: &ConsumerGroupHeartbeatRequest,
    owned: Option<&[(Uuid, Vec<i32>)]>,
) -> Result<(Member, Option<String>), Refusal> {
    let group_id = group.id.as_str();
    let joining = req.member_epoch == 0;
    let Some(instance) = req.instance_id.as_ref().map(|i| i.as_str()) else {
        return match group.members.get(member_id) {
            // A rejoin (epoch 0) of a known id: the client gave up everything it owned
            // (TopicPartitions is empty), so it starts over from epoch 0 with nothing.
            Some(m) if joining => Ok((restart(m), None)),
            Some(m) => {
                check_epoch(m, req.member_epoch, owned)?;
                Ok((m.clone(), None))
            }
            None if joining => Ok((Member::new(member_id.to_string()), None)),
            None => Err(unknown_member(member_id, group_id)),
        };
    };
    let existing = group.static_member(instance);
    if joining {
        return match existing {
            None => Ok((Member::new(member_id.to_string()), None)),
            // A classic-protocol incarnation may always be replaced (Kafka checks the release
            // only between two consumer-protocol members).
            Some(e)
                if e.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH
                    && !e.uses_classic_protocol() =>
            {
                Err(Refusal(
                code::UNRELEASED_INSTANCE_ID,
                format!(
                    "Static member {member_id} with instance id {instance} cannot join the group because the instance id is owned by {} member.",
                    e.id
                ),
                ))
            }
            Some(e) => {
                // The new incarnation takes over the old one's partitions, at epoch 0.
                let mut m = e.clone();
                m.id = member_id.to_string();
                m.member_epoch = 0;
                m.previous_member_epoch = 0;
                let replaced = (e.id != member_id).then(|| e.id.clone());
                Ok((m, replaced))
            }
        };
    }
    let Some(e) = existing else {
        return Err(Refusal(
            code::UNKNOWN_MEMBER_ID,
            format!("Instance id {instance} is unknown."),
        ));
    };
    if e.id != member_id {
        return Err(fenced_instance(member_id, instance, &e.id));
    }
    check_epoch(e, req.member_epoch, owned)?;
    Ok((e.clone(), None))
}

/// A known member starting over with epoch 0 and nothing owned.
fn restart(m: &Member) -> Member {
    let mut r = m.clone();
    r.member_epoch = 0;
    r.previous_member_epoch = -1;
    r.state = MemberState::Stable;
    r.assigned = Assignment::new();
    r.pending_revocation = Assignment::new();
    r
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`: a higher epoch, or a lower one that is not
/// the previous epoch with owned partitions inside the current assignment (a lost response), is
/// fenced.
fn check_epoch(
    member: &Member,
    received: i32,
    owned: Option<&[(Uuid, Vec<i32>)]>,
) -> Result<(), Refusal> {
    let fenced = |rel: &str| {
        Err(Refusal(
            code::FENCED_MEMBER_EPOCH,
            format!(
                "The consumer group member has a {rel} member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.member_epoch
            ),
        ))
    };
    if received > member.member_epoch {
        return fenced("greater");
    }
    if received < member.member_epoch {
        let subset = owned.is_some_and(|o| {
            o.iter().all(|(t, ps)| {
                member
                    .assigned
                    .get(t)
                    .is_some_and(|a| ps.iter().all(|p| a.contains(p)))
            })
        });
        if received != member.previous_member_epoch || !subset {
            return fenced("smaller");
        }
    }
    Ok(())
}

fn unknown_member(member_id: &str, group_id: &str) -> Refusal {
    Refusal(
        code::UNKNOWN_MEMBER_ID,
        format!("Member {member_id} is not a member of group {group_id}."),
    )
}

fn fenced_instance(member_id: &str, instance: &str, by: &str) -> Refusal {
    Refusal(
        code::FENCED_INSTANCE_ID,
        format!("Static member {member_id} with instance id {instance} was fenced by member {by}."),
    )
}

/// The group epoch moves on (the next heartbeat computes a new target).
pub(super) fn bump_group_epoch(group: &mut ConsumerGroup, out: &mut Vec<ConsumerEvent>) {
    group.group_epoch += 1;
    group.dirty = true;
    out.push(ConsumerEvent::GroupEpochBumped {
        group: group.id.clone(),
        epoch: group.group_epoch,
    });
    note_state(group, out);
}

/// The group's state follows its members; a change is an event.
pub(super) fn note_state(group: &mut ConsumerGroup, out: &mut Vec<ConsumerEvent>) {
    if group.update_state() {
        out.push(ConsumerEvent::StateChanged {
            group: group.id.clone(),
            state: group.state,
        });
    }
}

/// A member's new state after a join or heartbeat of either protocol (validated): it takes the
/// place of the static incarnation it replaces (target and partitions), a new member is counted,
/// a changed subscription moves the group epoch on, and the target is recomputed while the group
/// epoch is ahead of it. `subscription_changed`: its subscribed names or regex differ from the
/// member as it was. The caller stops the replaced incarnation's timers.
pub(super) fn apply_member(
    group: &mut ConsumerGroup,
    topics: &Topics,
    default_assignor: Assignor,
    updated: &Member,
    subscription_changed: bool,
    replaced: Option<&str>,
    out: &mut Vec<ConsumerEvent>,
) {
    let is_new = replaced.is_none() && !group.members.contains_key(&updated.id);
    if let Some(old) = replaced {
        group.move_target(old, &updated.id);
        group.remove_member(old);
    }
    // Unchanged (the common steady heartbeat): nothing to record.
    if group.members.get(&updated.id) != Some(updated) {
        group.put_member(updated.clone());
    }
    if is_new {
        out.push(ConsumerEvent::MemberJoined {
            group: group.id.clone(),
        });
    }
    if subscription_changed {
        group.refresh_subscriptions(topics);
        bump_group_epoch(group, out);
    }
    if group.group_epoch > group.assignment_epoch {
        let assignor = group.preferred_assignor(default_assignor);
        let epoch = group.group_epoch;
        group.compute_target(epoch, assignor, topics);
        out.push(ConsumerEvent::TargetAssigned {
            group: group.id.clone(),
            epoch,
            assignor,
        });
    }
}

/// One reconciliation step of a member towards the group's target (Kafka's
/// `CurrentAssignmentBuilder`), recorded with its rebalance timer: armed while it has partitions
/// to revoke, stopped otherwise. Returns the member as it is now and whether its assigned
/// partitions changed.
pub(super) fn reconcile_step(
    group: &mut ConsumerGroup,
    timers: &mut Timers,
    now: Millis,
    current: Member,
    owned: Owned<'_>,
) -> (Member, bool) {
    let target_epoch = group.assignment_epoch;
    if current.is_reconciled_to(target_epoch) {
        return (current, false);
    }
    let empty = Assignment::new();
    let target = group.target.get(&current.id).unwrap_or(&empty);
    let next = reconcile(
        &current,
        target_epoch,
        target,
        &|t, p| group.partition_epoch(t, p),
        owned,
    );
    if next == current {
        return (current, false);
    }
    if next.state == MemberState::UnrevokedPartitions {
        let at = now + next.rebalance_timeout_ms.max(0) as u64;
        let kind = Kind::Rebalance {
            epoch: next.member_epoch,
        };
        timers.arm(&group.id, &next.id, kind, at);
    } else {
        timers.cancel_rebalance(&group.id, &next.id);
    }
    let assignment_changed = next.assigned != current.assigned;
    group.put_member(next.clone());
    (next, assignment_changed)
}

/// Removes a member (Kafka's `consumerGroupFenceMember`): its partitions are free at once, the
/// subscription metadata follows, the group epoch moves on and its timers stop.
pub(super) fn fence_member(
    group: &mut ConsumerGroup,
    timers: &mut Timers,
    topics: &Topics,
    member_id: &str,
    cause: FenceCause,
    out: &mut Vec<ConsumerEvent>,
) {
    if group.remove_member(member_id).is_none() {
        return;
    }
    timers.cancel_member(&group.id, member_id);
    group.refresh_subscriptions(topics);
    out.push(ConsumerEvent::MemberFenced {
        group: group.id.clone(),
        cause,
    });
    bump_group_epoch(group, out);
}

/// An assignment as ConsumerGroupHeartbeat carries it.
pub(super) fn wire_assignment(a: &Assignment) -> WireAssignment {
    WireAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(t, ps)| {
                WireTopicPartitions::default()
                    .with_topic_id(*t)
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}
