//! The admin APIs: DescribeGroups (15, v0–6), ListGroups (16, v0–5) and DeleteGroups (42, v0–2),
//! GROUP_SEMANTICS.md §2.8–§2.10. An unknown group is "Dead" (error 0) before DescribeGroups v6 and
//! GROUP_ID_NOT_FOUND from v6. Only Empty groups can be deleted; with a store, the answer waits for
//! the tombstone, and a failed tombstone puts the group back.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    ListGroupsRequest, ListGroupsResponse,
};

use super::group::{code, Group};
use super::persist::HeldDelete;
use super::rebalance::{delete_group, sb};
use super::state::GroupState;
use super::store::TopicMap;
use super::{CallMeta, Coordinator, Event, Millis, Output, Response, Token};

/// READ | DELETE | DESCRIBE: what a group allows when there is no authorizer.
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub(crate) fn describe(
    c: &mut Coordinator,
    meta: CallMeta,
    req: DescribeGroupsRequest,
    out: &mut Vec<Output>,
) {
    let mut response = DescribeGroupsResponse::default();
    for id in &req.groups {
        let mut d = if c.loading {
            let mut d = DescribedGroup::default();
            d.error_code = code::COORDINATOR_LOAD_IN_PROGRESS;
            d
        } else if let Some(d) = c
            .consumer_groups()
            .describe_classic(id.as_str(), meta.version)
        {
            // A consumer group, as Kafka 4 answers DescribeGroups for one.
            d
        } else {
            match c.groups.get(id.as_str()) {
                Some(g) => described(g),
                None => {
                    let mut d = DescribedGroup::default();
                    d.group_state = sb(GroupState::Dead.as_str());
                    if meta.version >= 6 {
                        d.error_code = code::GROUP_ID_NOT_FOUND;
                        d.error_message = Some(sb(&format!("Group {} not found.", id.as_str())));
                    }
                    d
                }
            }
        };
        d.group_id = id.clone();
        if meta.version >= 3 && req.include_authorized_operations {
            d.authorized_operations = GROUP_AUTHORIZED_OPERATIONS;
        }
        response.groups.push(d);
    }
    out.push(Output::Reply {
        token: meta.token,
        response: Response::DescribeGroups(response),
    });
}

/// Stable shows the protocol and each member's metadata; other states show neither, but still
/// the stored assignments (as Kafka does).
fn described(g: &Group) -> DescribedGroup {
    let mut d = DescribedGroup::default();
    d.group_state = sb(g.state.as_str());
    d.protocol_type = sb(g.protocol_type.as_deref().unwrap_or(""));
    let protocol =
        (g.state == GroupState::Stable).then(|| g.protocol_name.clone().unwrap_or_default());
    d.protocol_data = sb(protocol.as_deref().unwrap_or(""));
    d.members = g
        .members
        .values()
        .map(|m| {
            let mut dm = DescribedGroupMember::default();
            dm.member_id = sb(&m.id);
            dm.group_instance_id = m.instance_id.as_deref().map(sb);
            dm.client_id = sb(&m.client_id);
            dm.client_host = sb(&m.client_host);
            dm.member_metadata = protocol
                .as_deref()
                .map(|p| m.metadata(p))
                .unwrap_or_default();
            dm.member_assignment = m.assignment.clone();
            dm
        })
        .collect();
    d
}

/// StatesFilter (v4+) and TypesFilter (v5+) are case-insensitive; empty means all.
pub(crate) fn list(
    c: &mut Coordinator,
    meta: CallMeta,
    req: ListGroupsRequest,
    out: &mut Vec<Output>,
) {
    let states: Vec<&str> = if meta.version >= 4 {
        req.states_filter.iter().map(|s| s.as_str()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<&str> = if meta.version >= 5 {
        req.types_filter.iter().map(|s| s.as_str()).collect()
    } else {
        Vec::new()
    };
    let mut response = ListGroupsResponse::default();
    if c.loading {
        response.error_code = code::COORDINATOR_LOAD_IN_PROGRESS;
        out.push(Output::Reply {
            token: meta.token,
            response: Response::ListGroups(response),
        });
        return;
    }
    let wanted = |filter: &[&str], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
    };
    for g in c.groups.values() {
        if !wanted(&states, g.state.as_str()) || !wanted(&types, "classic") {
            continue;
        }
        let mut l = ListedGroup::default();
        l.group_id = sb(&g.id).into();
        l.protocol_type = sb(g.protocol_type.as_deref().unwrap_or(""));
        l.group_state = sb(g.state.as_str());
        l.group_type = sb("classic");
        response.groups.push(l);
    }
    // Consumer groups (KIP-848), with their type and Kafka's consumer-group state names.
    response
        .groups
        .extend(c.consumer_groups().list(&states, &types));
    out.push(Output::Reply {
        token: meta.token,
        response: Response::ListGroups(response),
    });
}

/// Missing → 69; active (not Empty) → 68; Empty → the group and all its offsets are deleted, 0.
pub(crate) fn delete(
    c: &mut Coordinator,
    now: Millis,
    meta: CallMeta,
    req: DeleteGroupsRequest,
    out: &mut Vec<Output>,
) {
    let token = meta.token;
    let loading = c.loading;
    let mut response = DeleteGroupsResponse::default();
    let mut outstanding = 0;
    for (index, id) in req.groups_names.iter().enumerate() {
        let error = match c.consumer_groups().contains(id.as_str()) {
            _ if loading => code::COORDINATOR_LOAD_IN_PROGRESS,
            true => match c.consumer_delete(id.as_str(), token, index, out) {
                Ok(()) => {
                    outstanding += 1;
                    code::NONE
                }
                Err(error) => error,
            },
            false => {
                let (groups, store, mut cx) = c.parts(now, out);
                match groups.get(id.as_str()).map(|g| g.state) {
                    None => code::GROUP_ID_NOT_FOUND,
                    Some(GroupState::Empty) => {
                        delete_group(groups, store, &mut cx, id, Some((token, index)));
                        outstanding += 1;
                        code::NONE
                    }
                    Some(_) => code::NON_EMPTY_GROUP,
                }
            }
        };
        let mut r = DeletableGroupResult::default();
        r.group_id = id.clone();
        r.error_code = error;
        response.results.push(r);
    }
    if outstanding > 0 {
        let held = HeldDelete {
            response,
            outstanding,
        };
        c.persist.held_deletes.insert(token, held);
        return;
    }
    out.push(Output::Reply {
        token,
        response: Response::DeleteGroups(response),
    });
}

/// A tombstone settled. If it failed, a group deleted by DeleteGroups comes back (unless one of
/// the same id exists again) and its result carries the error. The DeleteGroups answer goes out
/// with its last tombstone.
pub(crate) fn tombstone_settled(
    c: &mut Coordinator,
    group: &str,
    token: Option<Token>,
    index: usize,
    restore: Option<Box<(Group, TopicMap)>>,
    outcome: Result<(), i16>,
    out: &mut Vec<Output>,
) {
    if let (Err(_), Some(restore)) = (&outcome, restore) {
        if !c.groups.contains_key(group) {
            let (g, offsets) = *restore;
            out.push(Output::Event(Event::StateChanged {
                group: group.to_string(),
                state: g.state,
            }));
            out.push(Output::Event(Event::GenerationChanged {
                group: group.to_string(),
                generation: g.generation,
            }));
            out.push(Output::Event(Event::MembersChanged {
                group: group.to_string(),
                members: g.members.len(),
            }));
            c.groups.insert(group.to_string(), g);
            c.offsets.put_group(group, offsets);
        }
    }
    let Some(token) = token else { return };
    let Some(held) = c.persist.held_deletes.get_mut(&token) else {
        return;
    };
    if let (Err(error), Some(r)) = (outcome, held.response.results.get_mut(index)) {
        r.error_code = error;
    }
    held.outstanding = held.outstanding.saturating_sub(1);
    if held.outstanding == 0 {
        if let Some(held) = c.persist.held_deletes.remove(&token) {
            out.push(Output::Reply {
                token,
                response: Response::DeleteGroups(held.response),
            });
        }
    }
}
