//! The classic side of online migration between classic and consumer groups
//! (`group.consumer.migration.policy`): a classic group exported as plain data for an upgrade
//! (`classic_snapshot`, then `export_classic` once the consumer side took it), and a downgraded
//! consumer group installed as a classic group that starts a rebalance (`import_classic`, Kafka's
//! `convertToClassicGroup`). It only moves group state; it never decides a migration (the
//! consumer coordinator does) and never touches committed offsets (both kinds share them).

use bytes::Bytes;
use indexmap::IndexMap;

use super::consumer::{ClassicMemberSnapshot, ClassicSnapshot, FenceCause};
use super::group::{code, Group, Member, Protocol};
use super::load::record;
use super::persist::{Effect, Write};
use super::rebalance::{join_error, prepare_rebalance, sync_response};
use super::state::{GroupState, RebalanceReason};
use super::{Coordinator, Event, Millis, Output, Response};

impl Coordinator {
    /// Members of the classic group `group` (`None`: no such classic group here). The shell
    /// routes by it: a ConsumerGroupHeartbeat joining an id with a non-empty classic group is an
    /// upgrade; with an empty one, Kafka deletes the classic group first.
    pub fn classic_members(&self, group: &str) -> Option<usize> {
        self.groups.get(group).map(|g| g.members.len())
    }

    /// The classic group `group` as plain data (read-only), for `ConsumerGroups::upgrade_from`.
    pub fn classic_snapshot(&self, group: &str) -> Option<ClassicSnapshot> {
        self.groups.get(group).map(snapshot)
    }

    /// Removes the classic group `group` after the consumer side took it over (an upgrade) and
    /// returns what it was. Its parked JoinGroup and SyncGroup calls are answered
    /// REBALANCE_IN_PROGRESS, so those members rejoin the consumer group (Kafka's
    /// `convertToConsumerGroup`); its timers stop and its metric series go (`GroupReleased`).
    /// Committed offsets stay: they belong to the group id, whatever its kind. Nothing is written:
    /// the consumer group's record replaces the classic one in the shell's store.
    pub fn export_classic(
        &mut self,
        now: Millis,
        group: &str,
        out: &mut Vec<Output>,
    ) -> Option<ClassicSnapshot> {
        self.run_timers(now, out);
        self.imports.forget(group);
        let (groups, _, mut cx) = self.parts(now, out);
        let mut g = groups.remove(group)?;
        cx.timers.cancel_group(group);
        let taken = snapshot(&g);
        for m in g.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let response = join_error(w.version, code::REBALANCE_IN_PROGRESS, &m.id);
                cx.reply(w.token, Response::JoinGroup(response));
            }
            if let Some(w) = m.sync_waiter.take() {
                let response = sync_response(None, code::REBALANCE_IN_PROGRESS, Bytes::new());
                cx.reply(w.token, Response::SyncGroup(response));
            }
        }
        cx.event(Event::GroupReleased {
            group: group.to_string(),
        });
        Some(taken)
    }

    /// Installs a consumer group that became classic again (`ConsumerGroups::take_downgrades`;
    /// Kafka's `ClassicGroup.fromConsumerGroup` and `convertToClassicGroup`): Stable at the
    /// snapshot's generation with its members, their protocols and assignments, every member's
    /// session timer armed from `now`, the group record written, then a rebalance begins (the
    /// reason follows `cause`, the way the last consumer-protocol member went), so the members
    /// rejoin as a classic group on their next Heartbeat. A group of that id already here is
    /// replaced.
    pub fn import_classic(
        &mut self,
        now: Millis,
        snapshot: ClassicSnapshot,
        cause: FenceCause,
        out: &mut Vec<Output>,
    ) {
        self.run_timers(now, out);
        let id = snapshot.group_id.clone();
        let (groups, _, mut cx) = self.parts(now, out);
        cx.timers.cancel_group(&id);
        let mut g = restore(snapshot, now);
        g.incarnation = cx.persist.next_incarnation();
        cx.event(Event::StateChanged {
            group: id.clone(),
            state: g.state,
        });
        cx.event(Event::GenerationChanged {
            group: id.clone(),
            generation: g.generation,
        });
        cx.event(Event::MembersChanged {
            group: id.clone(),
            members: g.members.len(),
        });
        let sessions: Vec<(String, i32)> = g
            .members
            .values()
            .map(|m| (m.id.clone(), m.session_timeout_ms))
            .collect();
        for (member, session) in sessions {
            cx.arm_heartbeat(&id, &member, session);
        }
        let written = record(&g, now, None);
        cx.persist(&g, || Write::Record(written), Effect::None);
        let reason = match cause {
            FenceCause::Leave => RebalanceReason::Leave,
            FenceCause::SessionTimeout => RebalanceReason::SessionExpiry,
            FenceCause::JoinTimeout => RebalanceReason::JoinTimeout,
            FenceCause::RebalanceTimeout | FenceCause::SyncTimeout => RebalanceReason::SyncTimeout,
        };
        if !g.members.is_empty() {
            prepare_rebalance(&mut g, &mut cx, reason);
        }
        groups.insert(id, g);
        self.settle(now, out);
    }
}

/// A classic group as plain data: its members with their protocols and assignments.
fn snapshot(g: &Group) -> ClassicSnapshot {
    ClassicSnapshot {
        group_id: g.id.clone(),
        generation: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol_name.clone(),
        leader: g.leader.clone(),
        members: g
            .members
            .values()
            .map(|m| ClassicMemberSnapshot {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: m
                    .protocols
                    .iter()
                    .map(|p| (p.name.clone(), p.metadata.clone()))
                    .collect(),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

/// A Stable classic group from a snapshot (an Empty one if it has no members).
fn restore(s: ClassicSnapshot, now: Millis) -> Group {
    let mut g = Group::new(s.group_id, now);
    g.generation = s.generation;
    g.protocol_type = s.protocol_type.clone();
    if s.members.is_empty() {
        return g;
    }
    let protocol_type = s.protocol_type.clone().unwrap_or_default();
    let mut members = IndexMap::new();
    for m in s.members {
        let member = Member {
            id: m.member_id.clone(),
            instance_id: m.group_instance_id,
            client_id: m.client_id,
            client_host: m.client_host,
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            protocol_type: protocol_type.clone(),
            protocols: m
                .protocols
                .into_iter()
                .map(|(name, metadata)| Protocol { name, metadata })
                .collect(),
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
    g.leader = s
        .leader
        .filter(|l| g.members.contains_key(l))
        .or_else(|| g.members.keys().next().cloned());
    g.protocol_type = s.protocol_type;
    // The snapshot's protocol if every member supports it, else the members' vote.
    let supported = |name: &str| {
        g.members
            .values()
            .all(|m| m.protocols.iter().any(|p| p.name == name))
    };
    g.protocol_name = s
        .protocol_name
        .filter(|p| supported(p))
        .or_else(|| g.select_protocol());
    g.state = GroupState::Stable;
    g.previous_state = GroupState::Empty;
    g.subscribed_topics = g.compute_subscribed_topics();
    g
}

