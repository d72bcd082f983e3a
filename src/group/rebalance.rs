//! The transitions every API shares (GROUP_SEMANTICS.md §3.2–§3.5): prepare a rebalance, complete
//! the join phase, propagate assignments, remove members, and what each timer does when it fires.
//! Every parked request is answered here when its member leaves or its round ends.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::group::{code, Group, Member};
use super::ids::IdGen;
use super::load::record;
use super::persist::{Effect, Persistence, Write, WriteId};
use super::state::{EvictionCause, GroupState, RebalanceReason};
use super::store::{OffsetStore, TopicMap};
use super::timers::{after, TimerAction, TimerKey, Timers};
use super::{Config, Event, Millis, Output, Response, Token};

/// What a transition needs besides the group: time, settings, timers, ids, writes in flight and
/// the output sink.
pub(crate) struct Ctx<'a> {
    pub now: Millis,
    pub config: &'a Config,
    pub timers: &'a mut Timers,
    pub ids: &'a mut IdGen,
    pub persist: &'a mut Persistence,
    pub out: &'a mut Vec<Output>,
}

impl Ctx<'_> {
    /// Queues a write for the group (see `persist.rs`); `write` is built only when it is emitted.
    pub(crate) fn persist(
        &mut self,
        g: &Group,
        write: impl FnOnce() -> Write,
        effect: Effect,
    ) -> WriteId {
        self.persist
            .issue(self.out, &g.id, g.incarnation, write, effect)
    }

    pub(crate) fn reply(&mut self, token: Token, response: Response) {
        self.out.push(Output::Reply { token, response });
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.out.push(Output::Event(event));
    }

    pub(crate) fn arm_heartbeat(&mut self, group: &str, member: &str, delay_ms: i32) {
        let key = TimerKey::Heartbeat(group.to_string(), member.to_string());
        self.timers
            .arm(key, after(self.now, delay_ms), TimerAction::ExpireHeartbeat);
    }

    pub(crate) fn cancel_heartbeat(&mut self, group: &str, member: &str) {
        self.timers
            .cancel(&TimerKey::Heartbeat(group.to_string(), member.to_string()));
    }
}

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

// ---- responses shaped by version -------------------------------------------------------------

/// A JoinGroup error: generation -1, no leader, no members; ProtocolName "" before v7, null from v7.
pub(crate) fn join_error(version: i16, error: i16, member_id: &str) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = error;
    r.generation_id = -1;
    r.member_id = sb(member_id);
    r.leader = StrBytes::new();
    r.protocol_type = None;
    r.protocol_name = if version >= 7 {
        None
    } else {
        Some(StrBytes::new())
    };
    r
}

/// A successful JoinGroup response for the group's current generation.
pub(crate) fn join_ok(
    g: &Group,
    version: i16,
    member_id: &str,
    leader: &str,
    members: Vec<JoinGroupResponseMember>,
    skip_assignment: bool,
) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.generation_id = g.generation;
    r.member_id = sb(member_id);
    r.leader = sb(leader);
    r.members = members;
    r.protocol_type = g.protocol_type.as_deref().map(sb);
    let name = g.protocol_name.as_deref().unwrap_or("");
    r.protocol_name = if version >= 7 && name.is_empty() {
        None
    } else {
        Some(sb(name))
    };
    r.skip_assignment = skip_assignment && version >= 9;
    r
}

/// Every member with its metadata for the selected protocol (the leader's JoinGroup Members).
pub(crate) fn current_members(g: &Group) -> Vec<JoinGroupResponseMember> {
    let protocol = g.protocol_name.as_deref().unwrap_or("");
    g.members
        .values()
        .map(|m| {
            let mut r = JoinGroupResponseMember::default();
            r.member_id = sb(&m.id);
            r.group_instance_id = m.instance_id.as_deref().map(sb);
            r.metadata = m.metadata(protocol);
            r
        })
        .collect()
}

/// A SyncGroup response; protocol type and name are echoed on success only.
pub(crate) fn sync_response(g: Option<&Group>, error: i16, assignment: Bytes) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = error;
    r.assignment = assignment;
    if let (Some(g), code::NONE) = (g, error) {
        r.protocol_type = g.protocol_type.as_deref().map(sb);
        r.protocol_name = g.protocol_name.as_deref().map(sb);
    }
    r
}

// ---- membership -----------------------------------------------------------------------------

pub(crate) fn create_group<'g>(
    groups: &'g mut BTreeMap<String, Group>,
    cx: &mut Ctx,
    id: &str,
) -> &'g mut Group {
    let mut group = Group::new(id.to_string(), cx.now);
    group.incarnation = cx.persist.next_incarnation();
    cx.event(Event::StateChanged {
        group: id.to_string(),
        state: GroupState::Empty,
    });
    cx.event(Event::GenerationChanged {
        group: id.to_string(),
        generation: 0,
    });
    cx.event(Event::MembersChanged {
        group: id.to_string(),
        members: 0,
    });
    groups.entry(id.to_string()).or_insert(group)
}

/// Removes a group and its offsets at once (§7 point 5): later requests see "group missing".
/// Persistence point (§3.9): the tombstone. `held` is the DeleteGroups call (token, result index)
/// that waits on it; such a deletion is undone if the tombstone fails. Retention passes `None`.
pub(crate) fn delete_group(
    groups: &mut BTreeMap<String, Group>,
    store: &mut OffsetStore,
    cx: &mut Ctx,
    id: &str,
    held: Option<(Token, usize)>,
) {
    let Some(group) = groups.remove(id) else {
        return;
    };
    cx.timers.cancel_group(id);
    let offsets: TopicMap = store.take_group(id);
    let (token, index) = held.map_or((None, 0), |(t, i)| (Some(t), i));
    let restore = token.is_some().then(|| Box::new((group, offsets)));
    let incarnation = restore.as_ref().map_or(0, |r| r.0.incarnation);
    cx.persist.issue(
        cx.out,
        id,
        incarnation,
        || Write::DeleteGroup,
        Effect::Tombstone {
            token,
            index,
            restore,
        },
    );
    cx.event(Event::StateChanged {
        group: id.to_string(),
        state: GroupState::Dead,
    });
    cx.event(Event::GroupDeleted {
        group: id.to_string(),
    });
}

pub(crate) fn add_member(g: &mut Group, cx: &mut Ctx, member: Member) {
    g.add_member(member);
    cx.event(Event::MembersChanged {
        group: g.id.clone(),
        members: g.members.len(),
    });
}

/// Removes a member, cancels its session timer and answers whatever it had parked:
/// a JoinGroup with `error` and MemberId "" and a SyncGroup with `error`.
pub(crate) fn remove_member(
    g: &mut Group,
    cx: &mut Ctx,
    member_id: &str,
    error: i16,
) -> Option<Member> {
    let mut member = g.take_member(member_id)?;
    cx.cancel_heartbeat(&g.id, member_id);
    if let Some(w) = member.join_waiter.take() {
        cx.reply(
            w.token,
            Response::JoinGroup(join_error(w.version, error, "")),
        );
    }
    if let Some(w) = member.sync_waiter.take() {
        cx.reply(
            w.token,
            Response::SyncGroup(sync_response(None, error, Bytes::new())),
        );
    }
    cx.event(Event::MembersChanged {
        group: g.id.clone(),
        members: g.members.len(),
    });
    Some(member)
}

/// Removes a member the coordinator gave up on.
pub(crate) fn evict(g: &mut Group, cx: &mut Ctx, member_id: &str, cause: EvictionCause) {
    if remove_member(g, cx, member_id, code::UNKNOWN_MEMBER_ID).is_some() {
        cx.event(Event::MemberEvicted {
            group: g.id.clone(),
            cause,
        });
    }
}

pub(crate) fn transition(g: &mut Group, cx: &mut Ctx, to: GroupState) {
    debug_assert!(g.state.can_become(to), "{:?} -> {:?}", g.state, to);
    g.previous_state = g.state;
    g.state = to;
    g.state_since = cx.now;
    cx.event(Event::StateChanged {
        group: g.id.clone(),
        state: to,
    });
}

// ---- the join phase -------------------------------------------------------------------------

/// Stable, CompletingRebalance or Empty → start a rebalance; PreparingRebalance → maybe complete.
pub(crate) fn maybe_prepare_rebalance_or_complete_join(
    g: &mut Group,
    cx: &mut Ctx,
    reason: RebalanceReason,
) {
    if g.state.can_become(GroupState::PreparingRebalance) {
        prepare_rebalance(g, cx, reason);
    } else {
        maybe_complete_join_phase(g, cx);
    }
}

pub(crate) fn prepare_rebalance(g: &mut Group, cx: &mut Ctx, reason: RebalanceReason) {
    if g.state == GroupState::CompletingRebalance {
        reset_and_propagate_assignment(g, cx, code::REBALANCE_IN_PROGRESS);
    }
    g.pending_sync.clear();
    cx.timers.cancel(&TimerKey::PendingSync(g.id.clone()));

    let initial = g.state == GroupState::Empty;
    if initial {
        let delay_ms = cx.config.initial_rebalance_delay_ms.max(0);
        let remaining_ms = g.rebalance_timeout_ms().saturating_sub(delay_ms).max(0);
        cx.timers.arm(
            TimerKey::Join(g.id.clone()),
            after(cx.now, delay_ms),
            TimerAction::InitialJoin {
                delay_ms,
                remaining_ms,
            },
        );
    }
    transition(g, cx, GroupState::PreparingRebalance);
    g.rebalance_started.get_or_insert(cx.now);
    cx.event(Event::RebalanceStarted {
        group: g.id.clone(),
        reason,
    });

    if !initial {
        if g.has_all_members_joined() {
            complete_join(g, cx);
        } else {
            let at = after(cx.now, g.rebalance_timeout_ms());
            cx.timers
                .arm(TimerKey::Join(g.id.clone()), at, TimerAction::CompleteJoin);
        }
    }
}

/// Completes the join phase if everyone has joined; never during the initial delayed join.
pub(crate) fn maybe_complete_join_phase(g: &mut Group, cx: &mut Ctx) {
    if g.state == GroupState::PreparingRebalance
        && g.previous_state != GroupState::Empty
        && g.has_all_members_joined()
    {
        complete_join(g, cx);
    }
}

/// Ends the join phase: drops dynamic members that did not rejoin, elects a leader, bumps the
/// generation (exactly once), selects the protocol and answers every parked JoinGroup.
pub(crate) fn complete_join(g: &mut Group, cx: &mut Ctx) {
    cx.timers.cancel(&TimerKey::Join(g.id.clone()));
    let missing: Vec<String> = g
        .members
        .values()
        .filter(|m| !m.is_awaiting_join() && m.instance_id.is_none())
        .map(|m| m.id.clone())
        .collect();
    for id in missing {
        evict(g, cx, &id, EvictionCause::JoinTimeout);
    }

    if !g.maybe_elect_new_joined_leader() && !g.members.is_empty() {
        // Only static members remain and none rejoined: wait another rebalance timeout.
        let at = after(cx.now, g.rebalance_timeout_ms().max(1));
        cx.timers
            .arm(TimerKey::Join(g.id.clone()), at, TimerAction::CompleteJoin);
        return;
    }

    g.generation = g.generation.wrapping_add(1);
    cx.event(Event::GenerationChanged {
        group: g.id.clone(),
        generation: g.generation,
    });
    g.pending_sync.clear();
    if g.members.is_empty() {
        g.protocol_name = None;
        g.subscribed_topics = g.compute_subscribed_topics();
        g.rebalance_started = None;
        transition(g, cx, GroupState::Empty);
        // Persistence point (§3.9): the group record of the now Empty group.
        let durable = cx.persist.durable;
        let rec = durable.then(|| record(g, cx.now, None));
        cx.persist(
            g,
            move || Write::Record(rec.unwrap_or_default()),
            Effect::None,
        );
        return;
    }
    g.protocol_name = Some(g.select_protocol().unwrap_or_default());
    g.subscribed_topics = g.compute_subscribed_topics();
    transition(g, cx, GroupState::CompletingRebalance);

    let leader = g.leader.clone().unwrap_or_default();
    let all = current_members(g);
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        let waiter = g.members.get_mut(&id).and_then(|m| {
            m.is_new = false;
            m.join_waiter.take()
        });
        if let Some(w) = waiter {
            let members = if id == leader {
                all.clone()
            } else {
                Vec::new()
            };
            let response = join_ok(g, w.version, &id, &leader, members, false);
            cx.reply(w.token, Response::JoinGroup(response));
        }
        let session = g.members.get(&id).map_or(0, |m| m.session_timeout_ms);
        cx.arm_heartbeat(&g.id, &id, session);
        g.pending_sync.insert(id);
    }
    let generation = g.generation;
    cx.timers.arm(
        TimerKey::PendingSync(g.id.clone()),
        after(cx.now, g.rebalance_timeout_ms()),
        TimerAction::ExpirePendingSync { generation },
    );
}

// ---- the sync phase -------------------------------------------------------------------------

/// The leader's assignment is stored: every member gets its bytes (or empty), parked SyncGroups
/// are answered, and the group is Stable.
pub(crate) fn complete_sync(g: &mut Group, cx: &mut Ctx, assignments: HashMap<String, Bytes>) {
    for m in g.members.values_mut() {
        m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
    }
    propagate_assignment(g, cx, code::NONE);
    transition(g, cx, GroupState::Stable);
    let started = g.rebalance_started.take().unwrap_or(cx.now);
    cx.event(Event::RebalanceCompleted {
        group: g.id.clone(),
        duration_ms: cx.now.saturating_sub(started),
    });
}

/// A CompletingRebalance round aborts: assignments are reset and parked SyncGroups get `error`.
pub(crate) fn reset_and_propagate_assignment(g: &mut Group, cx: &mut Ctx, error: i16) {
    for m in g.members.values_mut() {
        m.assignment = Bytes::new();
    }
    propagate_assignment(g, cx, error);
}

fn propagate_assignment(g: &mut Group, cx: &mut Ctx, error: i16) {
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        let Some(m) = g.members.get_mut(&id) else {
            continue;
        };
        let Some(w) = m.sync_waiter.take() else {
            continue;
        };
        let (assignment, session) = (m.assignment.clone(), m.session_timeout_ms);
        cx.reply(
            w.token,
            Response::SyncGroup(sync_response(Some(g), error, assignment)),
        );
        cx.arm_heartbeat(&g.id, &id, session);
    }
}

/// The member has sent SyncGroup; stop the pending-sync timer once nobody is outstanding.
pub(crate) fn remove_pending_sync_member(g: &mut Group, cx: &mut Ctx, member_id: &str) {
    g.pending_sync.remove(member_id);
    let done = match g.state {
        GroupState::CompletingRebalance | GroupState::Stable => g.pending_sync.is_empty(),
        _ => true,
    };
    if done {
        cx.timers.cancel(&TimerKey::PendingSync(g.id.clone()));
    }
}

// ---- timers ---------------------------------------------------------------------------------

pub(crate) fn fire(
    groups: &mut BTreeMap<String, Group>,
    cx: &mut Ctx,
    key: TimerKey,
    action: TimerAction,
) {
    match (key, action) {
        (
            TimerKey::Join(id),
            TimerAction::InitialJoin {
                delay_ms,
                remaining_ms,
            },
        ) => {
            let Some(g) = groups.get_mut(&id) else { return };
            initial_join_elapsed(g, cx, delay_ms, remaining_ms);
        }
        (TimerKey::Join(id), _) => {
            let Some(g) = groups.get_mut(&id) else { return };
            if g.state == GroupState::PreparingRebalance {
                complete_join(g, cx);
            }
        }
        (TimerKey::Heartbeat(id, member), _) => {
            let Some(g) = groups.get_mut(&id) else { return };
            expire_heartbeat(g, cx, &member);
        }
        (TimerKey::PendingSync(id), TimerAction::ExpirePendingSync { generation }) => {
            let Some(g) = groups.get_mut(&id) else { return };
            expire_pending_sync(g, cx, generation);
        }
        (TimerKey::PendingSync(_), _) | (TimerKey::Cleanup, _) => {}
    }
}

/// §3.4: extend the initial delay while new members keep arriving, up to the rebalance timeout.
fn initial_join_elapsed(g: &mut Group, cx: &mut Ctx, delay_ms: i32, remaining_ms: i32) {
    if g.state != GroupState::PreparingRebalance {
        return;
    }
    if g.new_member_added && remaining_ms != 0 {
        g.new_member_added = false;
        let new_delay = cx
            .config
            .initial_rebalance_delay_ms
            .max(0)
            .min(remaining_ms);
        let new_remaining = remaining_ms.saturating_sub(delay_ms).max(0);
        cx.timers.arm(
            TimerKey::Join(g.id.clone()),
            after(cx.now, new_delay),
            TimerAction::InitialJoin {
                delay_ms: new_delay,
                remaining_ms: new_remaining,
            },
        );
    } else {
        complete_join(g, cx);
    }
}

/// §3.5: a pending member is dropped; a member waiting on the group survives unless it is new;
/// anyone else is removed and the group moves on.
fn expire_heartbeat(g: &mut Group, cx: &mut Ctx, member_id: &str) {
    if g.pending_join.remove(member_id) {
        if g.state == GroupState::PreparingRebalance && g.has_all_members_joined() {
            complete_join(g, cx);
        }
        return;
    }
    let Some(member) = g.members.get(member_id) else {
        return;
    };
    if member.has_satisfied_heartbeat() {
        return;
    }
    let (cause, reason) = if member.is_new {
        (EvictionCause::JoinTimeout, RebalanceReason::JoinTimeout)
    } else {
        (EvictionCause::SessionExpiry, RebalanceReason::SessionExpiry)
    };
    evict(g, cx, member_id, cause);
    match g.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            maybe_prepare_rebalance_or_complete_join(g, cx, reason)
        }
        GroupState::PreparingRebalance if g.has_all_members_joined() => complete_join(g, cx),
        _ => {}
    }
}

/// §2.2: members that did not sync within the rebalance timeout are removed and a rebalance starts.
fn expire_pending_sync(g: &mut Group, cx: &mut Ctx, generation: i32) {
    if generation != g.generation
        || !matches!(
            g.state,
            GroupState::CompletingRebalance | GroupState::Stable
        )
        || g.pending_sync.is_empty()
    {
        return;
    }
    let late: Vec<String> = g.pending_sync.iter().cloned().collect();
    for id in late {
        evict(g, cx, &id, EvictionCause::SyncTimeout);
    }
    prepare_rebalance(g, cx, RebalanceReason::SyncTimeout);
}
