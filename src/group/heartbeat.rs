//! Heartbeat (API 12, v0–4), GROUP_SEMANTICS.md §2.3: the member is checked before the generation;
//! any generation mismatch is ILLEGAL_GENERATION (22) in every state; with the current generation,
//! PreparingRebalance answers REBALANCE_IN_PROGRESS (27) and CompletingRebalance/Stable answer 0.
//! An accepted heartbeat (27 included) refreshes the session.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::group::code;
use super::state::GroupState;
use super::{CallMeta, Coordinator, Millis, Output, Response};

pub(crate) fn handle(
    c: &mut Coordinator,
    now: Millis,
    meta: CallMeta,
    req: HeartbeatRequest,
    out: &mut Vec<Output>,
) {
    let loading = c.loading;
    let (groups, _, mut cx) = c.parts(now, out);
    let error = (|| {
        if req.group_id.is_empty() {
            return code::INVALID_GROUP_ID;
        }
        if loading {
            // §1.2: "respond blindly" while the groups are loaded.
            return code::NONE;
        }
        let Some(g) = groups.get(req.group_id.as_str()) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        let member_id = req.member_id.as_str();
        if let Err(error) = g.validate_member(member_id, req.group_instance_id.as_deref()) {
            return error;
        }
        if req.generation_id != g.generation {
            return code::ILLEGAL_GENERATION;
        }
        let session = g.members.get(member_id).map_or(0, |m| m.session_timeout_ms);
        match g.state {
            GroupState::Empty | GroupState::Dead => code::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => {
                cx.arm_heartbeat(&g.id, member_id, session);
                code::REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                cx.arm_heartbeat(&g.id, member_id, session);
                code::NONE
            }
        }
    })();
    let mut response = HeartbeatResponse::default();
    response.error_code = error;
    cx.reply(meta.token, Response::Heartbeat(response));
}
