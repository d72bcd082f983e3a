//! JoinGroup (API 11, v0–9): check order of GROUP_SEMANTICS.md §2.1, static membership (§3.7) and
//! group size (§3.6). Every check runs before anything changes, so an error changes nothing.
//! v0 uses the session timeout as rebalance timeout; v4+ asks new dynamic members for a known id
//! (MEMBER_ID_REQUIRED); v7+ has a nullable ProtocolName; v9 lets a static leader skip assignment.

use bytes::Bytes;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::group::{code, Group, Member, Protocol, Waiter};
use super::load::record;
use super::persist::{Effect, Write};
use super::rebalance::{
    add_member, create_group, current_members, evict, join_error, join_ok,
    maybe_complete_join_phase, maybe_prepare_rebalance_or_complete_join, prepare_rebalance, Ctx,
};
use super::state::{EvictionCause, GroupState, RebalanceReason};
use super::{CallMeta, Coordinator, Millis, Output, Response};

/// The parts of a JoinGroup the state machine uses.
struct Join {
    meta: CallMeta,
    member_id: String,
    instance_id: Option<String>,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<Protocol>,
}

impl Join {
    fn waiter(&self) -> Waiter {
        Waiter {
            token: self.meta.token,
            version: self.meta.version,
        }
    }

    fn fail(&self, cx: &mut Ctx, error: i16, member_id: &str) {
        let response = join_error(self.meta.version, error, member_id);
        cx.reply(self.meta.token, Response::JoinGroup(response));
    }
}

pub(crate) fn handle(
    c: &mut Coordinator,
    now: Millis,
    meta: CallMeta,
    req: JoinGroupRequest,
    out: &mut Vec<Output>,
) {
    let version = meta.version;
    let group_id = req.group_id.0.to_string();
    let j = Join {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata.clone(),
            })
            .collect(),
        meta,
    };
    let loading = c.loading;
    let (groups, _, mut cx) = c.parts(now, out);
    let cx = &mut cx;

    if group_id.is_empty() {
        return j.fail(cx, code::INVALID_GROUP_ID, &j.member_id);
    }
    if j.session_timeout_ms < cx.config.session_timeout_min_ms
        || j.session_timeout_ms > cx.config.session_timeout_max_ms
    {
        return j.fail(cx, code::INVALID_SESSION_TIMEOUT, &j.member_id);
    }
    if loading {
        return j.fail(cx, code::COORDINATOR_LOAD_IN_PROGRESS, &j.member_id);
    }
    if !groups.contains_key(&group_id) {
        if !j.member_id.is_empty() {
            return j.fail(cx, code::UNKNOWN_MEMBER_ID, &j.member_id);
        }
        // G6, pinned: a join that an Empty group would refuse does not create the group.
        if j.protocol_type.is_empty() || j.protocols.is_empty() {
            return j.fail(cx, code::INCONSISTENT_GROUP_PROTOCOL, "");
        }
        create_group(groups, cx, &group_id);
    }
    let Some(g) = groups.get_mut(&group_id) else {
        return;
    };

    if !accept_joining_member(g, cx.config.max_group_size, &j.member_id) {
        if g.members.contains_key(&j.member_id) {
            evict(g, cx, &j.member_id, EvictionCause::MaxSize);
            maybe_complete_join_phase(g, cx);
        } else {
            g.pending_join.remove(&j.member_id);
        }
        return j.fail(cx, code::GROUP_MAX_SIZE_REACHED, "");
    }
    if j.member_id.is_empty() {
        join_new_member(g, cx, j);
    } else {
        join_existing_member(g, cx, j);
    }
}

/// §3.6: Kafka's `acceptJoiningMember`.
fn accept_joining_member(g: &Group, max: usize, member_id: &str) -> bool {
    let member = g.members.get(member_id);
    match g.state {
        GroupState::Empty | GroupState::Dead => true,
        GroupState::PreparingRebalance => {
            member.is_some_and(Member::is_awaiting_join) || g.num_awaiting_join() < max
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            member.is_some() || g.members.len() < max
        }
    }
}

fn join_new_member(g: &mut Group, cx: &mut Ctx, j: Join) {
    if !g.supports_protocols(&j.protocol_type, &j.protocols) {
        return j.fail(cx, code::INCONSISTENT_GROUP_PROTOCOL, "");
    }
    let prefix = j.instance_id.as_deref().unwrap_or(&j.meta.client_id);
    let new_id = cx.ids.next(prefix);
    match &j.instance_id {
        Some(instance) => match g.static_members.get(instance).cloned() {
            Some(old_id) => replace_static_member(g, cx, j, &old_id, &new_id),
            None => add_member_then_rebalance(g, cx, j, new_id),
        },
        None if j.meta.version >= 4 => {
            g.pending_join.insert(new_id.clone());
            cx.arm_heartbeat(&g.id, &new_id, j.session_timeout_ms);
            j.fail(cx, code::MEMBER_ID_REQUIRED, &new_id);
        }
        None => add_member_then_rebalance(g, cx, j, new_id),
    }
}

fn join_existing_member(g: &mut Group, cx: &mut Ctx, j: Join) {
    let id = j.member_id.clone();
    if !g.supports_protocols(&j.protocol_type, &j.protocols) {
        return j.fail(cx, code::INCONSISTENT_GROUP_PROTOCOL, &id);
    }
    if g.pending_join.contains(&id) {
        // Pending ids are dynamic; Kafka treats a pending id with an instance id as a bug, kelp
        // answers what validateMember would.
        if let Some(instance) = j.instance_id.as_deref() {
            let error = g
                .validate_member(&id, Some(instance))
                .err()
                .unwrap_or(code::UNKNOWN_MEMBER_ID);
            return j.fail(cx, error, &id);
        }
        return add_member_then_rebalance(g, cx, j, id);
    }
    if let Err(error) = g.validate_member(&id, j.instance_id.as_deref()) {
        return j.fail(cx, error, &id);
    }
    let same_protocols = g
        .members
        .get(&id)
        .is_some_and(|m| m.protocols == j.protocols);
    match g.state {
        GroupState::PreparingRebalance => {
            update_member_then_rebalance(g, cx, j, RebalanceReason::MetadataChange)
        }
        GroupState::CompletingRebalance if same_protocols => {
            // The member probably missed its JoinGroup response: repeat it.
            let members = if g.is_leader(&id) {
                current_members(g)
            } else {
                Vec::new()
            };
            answer_current_generation(g, cx, &j, members);
        }
        GroupState::CompletingRebalance => {
            update_member_then_rebalance(g, cx, j, RebalanceReason::MetadataChange)
        }
        GroupState::Stable if g.is_leader(&id) => {
            update_member_then_rebalance(g, cx, j, RebalanceReason::LeaderRejoin)
        }
        GroupState::Stable if !same_protocols => {
            update_member_then_rebalance(g, cx, j, RebalanceReason::MetadataChange)
        }
        GroupState::Stable => answer_current_generation(g, cx, &j, Vec::new()),
        GroupState::Empty | GroupState::Dead => j.fail(cx, code::UNKNOWN_MEMBER_ID, &id),
    }
}

fn answer_current_generation(
    g: &Group,
    cx: &mut Ctx,
    j: &Join,
    members: Vec<kafka_protocol::messages::join_group_response::JoinGroupResponseMember>,
) {
    let leader = g.leader.clone().unwrap_or_default();
    let response = join_ok(g, j.meta.version, &j.member_id, &leader, members, false);
    cx.reply(j.meta.token, Response::JoinGroup(response));
}

/// Updates a member in place from its JoinGroup and parks the request. Its assignment is kept.
/// A JoinGroup it still had parked is superseded and answered REBALANCE_IN_PROGRESS (§7 point 3).
fn update_member(g: &mut Group, cx: &mut Ctx, member_id: &str, j: &Join) {
    let Some(m) = g.members.get_mut(member_id) else {
        return;
    };
    m.protocols = j.protocols.clone();
    m.rebalance_timeout_ms = j.rebalance_timeout_ms;
    m.session_timeout_ms = j.session_timeout_ms;
    if let Some(old) = m.join_waiter.replace(j.waiter()) {
        let response = join_error(old.version, code::REBALANCE_IN_PROGRESS, member_id);
        cx.reply(old.token, Response::JoinGroup(response));
    }
}

fn update_member_then_rebalance(g: &mut Group, cx: &mut Ctx, j: Join, reason: RebalanceReason) {
    update_member(g, cx, &j.member_id, &j);
    maybe_prepare_rebalance_or_complete_join(g, cx, reason);
}

fn add_member_then_rebalance(g: &mut Group, cx: &mut Ctx, j: Join, member_id: String) {
    let member = Member {
        id: member_id.clone(),
        instance_id: j.instance_id.clone(),
        client_id: j.meta.client_id.clone(),
        client_host: j.meta.client_host.clone(),
        session_timeout_ms: j.session_timeout_ms,
        rebalance_timeout_ms: j.rebalance_timeout_ms,
        protocol_type: j.protocol_type.clone(),
        protocols: j.protocols.clone(),
        assignment: Bytes::new(),
        join_waiter: Some(j.waiter()),
        sync_waiter: None,
        is_new: true,
    };
    if g.state == GroupState::PreparingRebalance && g.previous_state == GroupState::Empty {
        g.new_member_added = true;
    }
    add_member(g, cx, member);
    // A new member cannot heartbeat while parked: bound the park by the new-member join timeout.
    cx.arm_heartbeat(&g.id, &member_id, cx.config.new_member_join_timeout_ms);
    maybe_prepare_rebalance_or_complete_join(g, cx, RebalanceReason::NewMember);
}

/// §3.7: a known group instance id joins with no member id; the member moves to `new_id`.
fn replace_static_member(g: &mut Group, cx: &mut Ctx, j: Join, old_id: &str, new_id: &str) {
    let leader_before = g.leader.clone().unwrap_or_default();
    let Some((old_join, old_sync)) = g.replace_member_id(old_id, new_id) else {
        return;
    };
    if let Some(w) = old_join {
        let response = join_error(w.version, code::FENCED_INSTANCE_ID, old_id);
        cx.reply(w.token, Response::JoinGroup(response));
    }
    if let Some(w) = old_sync {
        let response =
            super::rebalance::sync_response(None, code::FENCED_INSTANCE_ID, Bytes::new());
        cx.reply(w.token, Response::SyncGroup(response));
    }
    cx.cancel_heartbeat(&g.id, old_id);
    let session = g.members.get(new_id).map_or(0, |m| m.session_timeout_ms);
    cx.arm_heartbeat(&g.id, new_id, session);
    update_member(g, cx, new_id, &j);

    match g.state {
        GroupState::Stable if g.select_protocol() == g.protocol_name => {
            // No rebalance: the same generation, answered once the record with the new member
            // id is stored (persistence point, §3.9).
            if let Some(m) = g.members.get_mut(new_id) {
                m.join_waiter = None;
            }
            let version = j.meta.version;
            let response = if version >= 9 {
                let is_leader = g.is_leader(new_id);
                let members = if is_leader {
                    current_members(g)
                } else {
                    Vec::new()
                };
                let leader = g.leader.clone().unwrap_or_default();
                join_ok(g, version, new_id, &leader, members, is_leader)
            } else {
                // The old leader id makes a restarted leader behave as a follower.
                join_ok(g, version, new_id, &leader_before, Vec::new(), false)
            };
            let rec = cx.persist.durable.then(|| record(g, cx.now, None));
            let effect = Effect::StaticJoin {
                token: j.meta.token,
                version,
                response,
                old_id: old_id.to_string(),
                new_id: new_id.to_string(),
                generation: g.generation,
            };
            cx.persist(g, move || Write::Record(rec.unwrap_or_default()), effect);
        }
        GroupState::Stable => {
            maybe_prepare_rebalance_or_complete_join(g, cx, RebalanceReason::StaticProtocolChange)
        }
        GroupState::CompletingRebalance => {
            prepare_rebalance(g, cx, RebalanceReason::StaticProtocolChange)
        }
        _ => maybe_complete_join_phase(g, cx),
    }
}

/// The record of a static member's replacement settled: answer its JoinGroup, or (failure) put
/// the old member id back if nothing moved meanwhile and answer the error with MemberId "" (§3.7).
#[allow(clippy::too_many_arguments)]
pub(crate) fn static_join_settled(
    c: &mut Coordinator,
    now: Millis,
    group: &str,
    same_group: bool,
    (token, version, response): (super::Token, i16, JoinGroupResponse),
    (old_id, new_id, generation): (&str, &str, i32),
    outcome: Result<(), i16>,
    out: &mut Vec<Output>,
) {
    let (groups, _, mut cx) = c.parts(now, out);
    let cx = &mut cx;
    let error = match outcome {
        Ok(()) => return cx.reply(token, Response::JoinGroup(response)),
        Err(error) => error,
    };
    let g = groups.get_mut(group).filter(|g| {
        same_group
            && g.state == GroupState::Stable
            && g.generation == generation
            && g.members.contains_key(new_id)
            && !g.members.contains_key(old_id)
    });
    if let Some(g) = g {
        if let Some((join, sync)) = g.replace_member_id(new_id, old_id) {
            for w in join.into_iter() {
                let r = join_error(w.version, error, "");
                cx.reply(w.token, Response::JoinGroup(r));
            }
            for w in sync.into_iter() {
                let r = super::rebalance::sync_response(None, error, Bytes::new());
                cx.reply(w.token, Response::SyncGroup(r));
            }
        }
        cx.cancel_heartbeat(&g.id, new_id);
        let session = g.members.get(old_id).map_or(0, |m| m.session_timeout_ms);
        cx.arm_heartbeat(&g.id, old_id, session);
    }
    cx.reply(token, Response::JoinGroup(join_error(version, error, "")));
}
