//! LeaveGroup (API 13, v0–5), GROUP_SEMANTICS.md §2.4. v0–2 carry one MemberId and answer one
//! top-level error; v3+ carry a batch of {MemberId, GroupInstanceId, Reason(v5)} and answer per
//! member (v4+ flexible: the codec handles it). Members are removed one by one, then the group makes
//! one transition for the whole batch.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::group::{code, Group};
use super::rebalance::{
    maybe_complete_join_phase, maybe_prepare_rebalance_or_complete_join, remove_member, Ctx,
};
use super::state::{GroupState, RebalanceReason};
use super::{CallMeta, Coordinator, Millis, Output, Response};

/// What one entry of the batch did.
enum Outcome {
    Removed,
    RemovedPending,
    Failed(i16),
}

pub(crate) fn handle(
    c: &mut Coordinator,
    now: Millis,
    meta: CallMeta,
    req: LeaveGroupRequest,
    out: &mut Vec<Output>,
) {
    let loading = c.loading;
    let (groups, _, mut cx) = c.parts(now, out);
    let cx = &mut cx;
    let batched = meta.version >= 3;
    // Kafka's `normalizedData()`: v0–2 become a one-element batch.
    let leaving: Vec<(StrBytes, Option<StrBytes>)> = if batched {
        req.members
            .iter()
            .map(|m| (m.member_id.clone(), m.group_instance_id.clone()))
            .collect()
    } else {
        vec![(req.member_id.clone(), None)]
    };

    let mut response = LeaveGroupResponse::default();
    let group = if req.group_id.is_empty() {
        response.error_code = code::INVALID_GROUP_ID;
        None
    } else if loading {
        response.error_code = code::COORDINATOR_LOAD_IN_PROGRESS;
        None
    } else {
        groups.get_mut(req.group_id.as_str())
    };
    let results: Vec<i16> = match group {
        None if response.error_code != code::NONE => Vec::new(),
        // Group missing: every member is unknown.
        None => leaving.iter().map(|_| code::UNKNOWN_MEMBER_ID).collect(),
        Some(g) => {
            let outcomes: Vec<Outcome> = leaving
                .iter()
                .map(|(member_id, instance_id)| leave_one(g, cx, member_id, instance_id.as_deref()))
                .collect();
            after_batch(g, cx, &outcomes);
            outcomes
                .iter()
                .map(|o| match o {
                    Outcome::Failed(error) => *error,
                    Outcome::Removed | Outcome::RemovedPending => code::NONE,
                })
                .collect()
        }
    };

    if batched {
        response.members = leaving
            .into_iter()
            .zip(results)
            .map(|((member_id, instance_id), error)| {
                let mut m = MemberResponse::default();
                m.member_id = member_id;
                m.group_instance_id = instance_id;
                m.error_code = error;
                m
            })
            .collect();
    } else if response.error_code == code::NONE {
        response.error_code = results
            .into_iter()
            .find(|e| *e != code::NONE)
            .unwrap_or(code::NONE);
    }
    cx.reply(meta.token, Response::LeaveGroup(response));
}

fn leave_one(g: &mut Group, cx: &mut Ctx, member_id: &str, instance_id: Option<&str>) -> Outcome {
    if member_id.is_empty() {
        // Admin removal of a static member by instance id (KIP-345).
        let target = instance_id.and_then(|i| g.static_members.get(i)).cloned();
        return match target {
            Some(id) => {
                remove_member(g, cx, &id, code::UNKNOWN_MEMBER_ID);
                Outcome::Removed
            }
            None => Outcome::Failed(code::UNKNOWN_MEMBER_ID),
        };
    }
    if g.pending_join.remove(member_id) {
        cx.cancel_heartbeat(&g.id, member_id);
        return Outcome::RemovedPending;
    }
    match g.validate_member(member_id, instance_id) {
        Ok(()) => {
            remove_member(g, cx, member_id, code::UNKNOWN_MEMBER_ID);
            Outcome::Removed
        }
        Err(error) => Outcome::Failed(error),
    }
}

/// One transition for the batch. A pending member leaving alone does not start a rebalance
/// (GROUP_SEMANTICS.md §2.4, F9), but it may let a PreparingRebalance join phase complete.
fn after_batch(g: &mut Group, cx: &mut Ctx, outcomes: &[Outcome]) {
    let removed_member = outcomes.iter().any(|o| matches!(o, Outcome::Removed));
    let removed_pending = outcomes
        .iter()
        .any(|o| matches!(o, Outcome::RemovedPending));
    match g.state {
        GroupState::Stable | GroupState::CompletingRebalance if removed_member => {
            maybe_prepare_rebalance_or_complete_join(g, cx, RebalanceReason::Leave)
        }
        GroupState::PreparingRebalance if removed_member || removed_pending => {
            maybe_complete_join_phase(g, cx)
        }
        _ => {}
    }
}
