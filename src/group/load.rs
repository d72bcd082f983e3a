//! The group record both ways: `record` takes a group's snapshot at a persistence point (§3.9) and
//! `load` brings groups back from what the store held at startup (Kafka's `onLoaded`): members →
//! Stable with the same generation, leader, protocol and assignments, every member's session timer
//! armed from the load; no members → Empty; offsets only → a simple group (no protocol type).

use std::collections::HashMap;

use bytes::Bytes;
use indexmap::IndexMap;

use super::group::{Group, Member, Protocol};
use super::persist::{GroupRecord, LoadedGroup, MemberRecord};
use super::rebalance::{prepare_rebalance, Ctx};
use super::state::{GroupState, RebalanceReason};
use super::{Coordinator, Event, Millis, Output};

/// The group as a record. `assignments` replaces every member's assignment (the leader's
/// SyncGroup, before it is applied); `None` keeps the current ones.
pub(crate) fn record(
    g: &Group,
    now: Millis,
    assignments: Option<&HashMap<String, Bytes>>,
) -> GroupRecord {
    let protocol = g.protocol_name.as_deref().unwrap_or("");
    GroupRecord {
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol_name.clone(),
        generation: g.generation,
        leader: g.leader.clone(),
        state_since: now,
        members: g
            .members
            .values()
            .map(|m| MemberRecord {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.metadata(protocol),
                assignment: match assignments {
                    Some(a) => a.get(&m.id).cloned().unwrap_or_default(),
                    None => m.assignment.clone(),
                },
            })
            .collect(),
    }
}

/// Restores every loaded group, replacing any group of the same id.
pub(crate) fn load(
    c: &mut Coordinator,
    now: Millis,
    groups: Vec<LoadedGroup>,
    out: &mut Vec<Output>,
) {
    let mut consumer_records = Vec::new();
    for loaded in groups {
        let LoadedGroup {
            group: id,
            record,
            consumer,
            offsets,
        } = loaded;
        c.offsets.take_group(&id);
        if !offsets.is_empty() {
            c.imports.mark_checked(&id);
        }
        for (topic, partition, offset) in offsets {
            c.offsets.commit(&id, &topic, partition, offset);
        }
        if let Some(mut consumer) = consumer {
            // A consumer group (KIP-848): restored by its own state machine, after the loop.
            consumer.group_id = id;
            consumer_records.push(*consumer);
            continue;
        }
        let max_size = c.config.max_group_size;
        let (groups, _, mut cx) = c.parts(now, out);
        let mut g = restore(id.clone(), record, now);
        install(&mut cx, &mut g);
        let over_capacity = g.members.len() > max_size;
        groups.insert(id.clone(), g);
        if let (true, Some(g)) = (over_capacity, groups.get_mut(&id)) {
            // §3.6: a group loaded over the maximum size is made to rebalance.
            prepare_rebalance(g, &mut cx, RebalanceReason::MaxSize);
        }
    }
    c.consumer_load(now, consumer_records, out);
}

/// A group rebuilt from a record or a snapshot takes its place: the timers of whatever had its id
/// stop, it gets a new incarnation, its state, generation and size are announced, and every
/// member's session runs from now.
pub(crate) fn install(cx: &mut Ctx<'_>, g: &mut Group) {
    cx.timers.cancel_group(&g.id);
    g.incarnation = cx.persist.next_incarnation();
    cx.event(Event::StateChanged {
        group: g.id.clone(),
        state: g.state,
    });
    cx.event(Event::GenerationChanged {
        group: g.id.clone(),
        generation: g.generation,
    });
    cx.event(Event::MembersChanged {
        group: g.id.clone(),
        members: g.members.len(),
    });
    for m in g.members.values() {
        cx.arm_heartbeat(&g.id, &m.id, m.session_timeout_ms);
    }
}

/// A group object from its record (see the module docs).
fn restore(id: String, record: Option<GroupRecord>, now: Millis) -> Group {
    let Some(r) = record else {
        return Group::new(id, now);
    };
    let mut g = Group::new(id, r.state_since);
    g.generation = r.generation;
    g.protocol_type = r.protocol_type.clone();
    if r.members.is_empty() {
        return g;
    }
    let protocol = r.protocol_name.clone().unwrap_or_default();
    let protocol_type = r.protocol_type.clone().unwrap_or_default();
    let mut members = IndexMap::new();
    for m in r.members {
        let member = Member {
            id: m.member_id.clone(),
            instance_id: m.instance_id,
            client_id: m.client_id,
            client_host: m.client_host,
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            protocol_type: protocol_type.clone(),
            protocols: vec![Protocol {
                name: protocol.clone(),
                metadata: m.subscription,
            }],
            assignment: m.assignment,
            join_waiter: None,
            sync_waiter: None,
            is_new: false,
        };
        members.insert(m.member_id, member);
    }
    for m in members.into_values() {
        g.add_member(m);
    }
    // `add_member` made the first member leader; the record says who leads.
    g.leader = r
        .leader
        .filter(|l| g.members.contains_key(l))
        .or_else(|| g.members.keys().next().cloned());
    g.protocol_type = r.protocol_type;
    g.protocol_name = Some(protocol);
    g.state = GroupState::Stable;
    g.previous_state = GroupState::Empty;
    g.subscribed_topics = g.compute_subscribed_topics();
    g
}
