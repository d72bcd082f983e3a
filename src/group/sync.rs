//! SyncGroup (API 14, v0–5), GROUP_SEMANTICS.md §2.2: PreparingRebalance answers 27 at once;
//! CompletingRebalance parks every SyncGroup until the leader's assignment is stored, then answers
//! each member with its own bytes exactly as the leader sent them; Stable answers from the group.
//! With a store, the leader's assignment is stored in the group record first (§3.9); if that
//! write fails the round resets: parked SyncGroups get the error and the group rebalances.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::messages::SyncGroupRequest;

use super::group::{code, Waiter};
use super::load::record;
use super::persist::{Effect, Write, WriteId};
use super::rebalance::{
    complete_sync, prepare_rebalance, remove_pending_sync_member, reset_and_propagate_assignment,
    sync_response,
};
use super::state::{GroupState, RebalanceReason};
use super::{CallMeta, Coordinator, Millis, Output, Response};

pub(crate) fn handle(
    c: &mut Coordinator,
    now: Millis,
    meta: CallMeta,
    req: SyncGroupRequest,
    out: &mut Vec<Output>,
) {
    let loading = c.loading;
    let (groups, _, mut cx) = c.parts(now, out);
    let cx = &mut cx;
    let token = meta.token;
    let fail = |cx: &mut super::rebalance::Ctx, error: i16| {
        cx.reply(
            token,
            Response::SyncGroup(sync_response(None, error, Bytes::new())),
        );
    };

    if meta.version >= 5 && (req.protocol_type.is_none() || req.protocol_name.is_none()) {
        return fail(cx, code::INCONSISTENT_GROUP_PROTOCOL);
    }
    if req.group_id.is_empty() {
        return fail(cx, code::INVALID_GROUP_ID);
    }
    if loading {
        return fail(cx, code::COORDINATOR_LOAD_IN_PROGRESS);
    }
    let Some(g) = groups.get_mut(req.group_id.as_str()) else {
        return fail(cx, code::UNKNOWN_MEMBER_ID);
    };
    if g.state == GroupState::Empty {
        return fail(cx, code::UNKNOWN_MEMBER_ID);
    }
    let member_id = req.member_id.to_string();
    if let Err(error) = g.validate_member(&member_id, req.group_instance_id.as_deref()) {
        return fail(cx, error);
    }
    if req.generation_id != g.generation {
        return fail(cx, code::ILLEGAL_GENERATION);
    }
    if inconsistent(req.protocol_type.as_deref(), g.protocol_type.as_deref())
        || inconsistent(req.protocol_name.as_deref(), g.protocol_name.as_deref())
    {
        return fail(cx, code::INCONSISTENT_GROUP_PROTOCOL);
    }

    match g.state {
        GroupState::PreparingRebalance => fail(cx, code::REBALANCE_IN_PROGRESS),
        GroupState::CompletingRebalance => {
            let Some(m) = g.members.get_mut(&member_id) else {
                return;
            };
            let waiter = Waiter {
                token,
                version: meta.version,
            };
            if let Some(old) = m.sync_waiter.replace(waiter) {
                // A repeated SyncGroup supersedes the parked one.
                let response = sync_response(None, code::REBALANCE_IN_PROGRESS, Bytes::new());
                cx.reply(old.token, Response::SyncGroup(response));
            }
            remove_pending_sync_member(g, cx, &member_id);
            if g.is_leader(&member_id) {
                // Later entries for the same member win, like Kafka's map. Ids that are not members
                // are ignored; members the leader omits get empty bytes.
                let assignments: HashMap<String, Bytes> = req
                    .assignments
                    .iter()
                    .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                    .collect();
                // Persistence point (§3.9): the round completes once the record is stored.
                let rec = cx
                    .persist
                    .durable
                    .then(|| record(g, cx.now, Some(&assignments)));
                let generation = g.generation;
                let id = cx.persist(
                    g,
                    move || Write::Record(rec.unwrap_or_default()),
                    Effect::Assignment {
                        generation,
                        assignments,
                    },
                );
                g.assignment_write = Some(id);
            }
        }
        GroupState::Stable => {
            remove_pending_sync_member(g, cx, &member_id);
            let assignment = g
                .members
                .get(&member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default();
            cx.reply(
                token,
                Response::SyncGroup(sync_response(Some(g), code::NONE, assignment)),
            );
        }
        GroupState::Empty | GroupState::Dead => fail(cx, code::UNKNOWN_MEMBER_ID),
    }
}

/// Both sides known and different.
fn inconsistent(requested: Option<&str>, current: Option<&str>) -> bool {
    matches!((requested, current), (Some(r), Some(c)) if r != c)
}

/// The record write of the leader's SyncGroup settled. If the round it belongs to is still on,
/// it completes (success) or resets with the error and rebalances (failure, §2.2 and D11).
#[allow(clippy::too_many_arguments)]
pub(crate) fn assignment_settled(
    c: &mut Coordinator,
    now: Millis,
    group: &str,
    id: WriteId,
    generation: i32,
    assignments: HashMap<String, Bytes>,
    outcome: Result<(), i16>,
    out: &mut Vec<Output>,
) {
    let (groups, _, mut cx) = c.parts(now, out);
    let Some(g) = groups.get_mut(group) else {
        return;
    };
    if g.state != GroupState::CompletingRebalance
        || g.generation != generation
        || g.assignment_write != Some(id)
    {
        return;
    }
    g.assignment_write = None;
    match outcome {
        Ok(()) => complete_sync(g, &mut cx, assignments),
        Err(error) => {
            reset_and_propagate_assignment(g, &mut cx, error);
            prepare_rebalance(g, &mut cx, RebalanceReason::Load);
        }
    }
}
