//! The classic side of online migration between classic and consumer groups
//! (`group.consumer.migration.policy`): a classic group exported as plain data for an upgrade
//! (`classic_snapshot`, then `export_classic` once the consumer side took it), and a downgraded
//! consumer group installed as a classic group that starts a rebalance (`import_classic`, Kafka's
//! `convertToClassicGroup`). It only moves group state; it never decides a migration (the
//! consumer coordinator does) and never touches committed offsets (both kinds share them).

use bytes::Bytes;
use indexmap::IndexMap;

use super::consumer::{
    ClassicMemberSnapshot, ClassicSnapshot, Downgrade, DowngradeReason, FenceCause,
};
use super::group::{code, Group, Member, Protocol};
use super::load::{install, record};
use super::persist::{Effect, Write};
use super::rebalance::{join_error, prepare_rebalance, sync_response};
use super::state::{GroupState, RebalanceReason};
use super::{Coordinator, Event, Millis, Output, Response};

impl Coordinator {
    /// Members of the classic group `group` (`None`: no such classic group here).
    #[cfg(test)]
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
    /// session timer armed from `now`, the group record written; then, when the downgrade asks
    /// for it (`Downgrade::rebalances`), a rebalance begins whose reason follows the way the last
    /// consumer-protocol member went, so the members rejoin as a classic group on their next
    /// Heartbeat. A group of that id already here is replaced.
    pub fn import_classic(&mut self, now: Millis, downgrade: Downgrade, out: &mut Vec<Output>) {
        let rebalance = downgrade.rebalances();
        let Downgrade { snapshot, reason } = downgrade;
        self.run_timers(now, out);
        let id = snapshot.group_id.clone();
        // Not expected (one namespace), but no parked call may go unanswered.
        if self.groups.contains_key(&id) {
            self.export_classic(now, &id, out);
        }
        let (groups, _, mut cx) = self.parts(now, out);
        let mut g = restore(snapshot, now);
        install(&mut cx, &mut g);
        let written = record(&g, now, None);
        cx.persist(&g, || Write::Record(written), Effect::None);
        let reason = match reason {
            DowngradeReason::Fenced(FenceCause::Leave) => RebalanceReason::Leave,
            DowngradeReason::Fenced(FenceCause::SessionTimeout) => RebalanceReason::SessionExpiry,
            DowngradeReason::Fenced(FenceCause::JoinTimeout) => RebalanceReason::JoinTimeout,
            DowngradeReason::Fenced(FenceCause::RebalanceTimeout | FenceCause::SyncTimeout) => {
                RebalanceReason::SyncTimeout
            }
            DowngradeReason::StaticMemberReplaced { .. } => RebalanceReason::StaticProtocolChange,
        };
        if rebalance && !g.members.is_empty() {
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
    g.protocol_name = s
        .protocol_name
        .filter(|p| g.supported_by_all(p))
        .or_else(|| g.select_protocol());
    g.state = GroupState::Stable;
    g.previous_state = GroupState::Empty;
    g.subscribed_topics = g.compute_subscribed_topics();
    g
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{
        ConsumerGroupHeartbeatRequest, ConsumerProtocolAssignment, ConsumerProtocolSubscription,
        GroupId, SyncGroupRequest, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use uuid::Uuid;

    use super::*;
    use crate::group::consumer::{
        CallContext, ConsumerConfig, ConsumerEvent, ConsumerGroups, Topics,
    };
    use crate::group::tests::{jr, Harness, G};
    use crate::group::Request;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    fn subscription(topics: &[&str]) -> Bytes {
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(topics.iter().map(|t| s(t)).collect());
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        sub.encode(&mut buf, 1).unwrap();
        buf.freeze()
    }

    fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(s(topic)))
                .with_partitions(partitions.to_vec()),
        ]);
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        a.encode(&mut buf, 1).unwrap();
        buf.freeze()
    }

    /// Two members with real ConsumerProtocol bytes, Stable at generation 1: the leader gives
    /// itself foo 0–2 and the other foo 3–5. Returns the ids, leader first.
    fn stable_consumer_group(h: &mut Harness) -> Vec<String> {
        let mut j = jr();
        j.protocols = vec![("range".into(), subscription(&["foo"]))];
        let joined: Vec<(String, u64)> = (0..2).map(|_| h.new_member(j.clone())).collect();
        let tokens: Vec<u64> = joined.iter().map(|(_, t)| *t).collect();
        h.advance_until_answered(&tokens, 1000, 60_000);
        let leader = h.group().leader.clone().unwrap();
        let other = joined
            .iter()
            .map(|(id, _)| id.clone())
            .find(|id| *id != leader)
            .unwrap();
        let mut req = SyncGroupRequest::default();
        req.group_id = GroupId(s(G));
        req.member_id = s(&leader);
        req.generation_id = 1;
        req.protocol_type = Some(s("consumer"));
        req.protocol_name = Some(s("range"));
        req.assignments = [(&leader, [0, 1, 2]), (&other, [3, 4, 5])]
            .into_iter()
            .map(|(m, ps)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(s(m))
                    .with_assignment(assignment("foo", &ps))
            })
            .collect();
        let t = h.send(5, "c", "/127.0.0.1", Request::SyncGroup(req));
        assert_eq!(h.sres(t).error_code, 0);
        let t = h.sync(&other, 1, &[]);
        assert_eq!(h.sres(t).error_code, 0);
        assert_eq!(h.state(), GroupState::Stable);
        vec![leader, other]
    }

    #[test]
    fn export_answers_parked_calls_and_keeps_offsets() {
        let mut h = Harness::new();
        let ids = stable_consumer_group(&mut h);
        let r = h.commit_full(8, G, &ids[0], None, 1, &[("foo", 0, 42, "")]);
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        // A third member parks in the rebalance it starts.
        let (_, parked) = h.new_member(jr().protos(&[("range", "x")]));
        assert!(!h.answered(parked));
        assert_eq!(h.c.classic_members(G), Some(3));
        let snap = h.c.classic_snapshot(G).unwrap();
        assert_eq!(snap.generation, 1);
        assert_eq!(snap.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(snap.protocol_name.as_deref(), Some("range"));
        assert_eq!(snap.leader.as_deref(), Some(ids[0].as_str()));
        assert_eq!(snap.members[0].member_id, ids[0]);
        assert_eq!(snap.members[0].assignment, assignment("foo", &[0, 1, 2]));
        assert_eq!(snap.members[0].session_timeout_ms, 10_000);
        assert_eq!(snap.members[0].rebalance_timeout_ms, 30_000);
        let mut out = Vec::new();
        let taken = h.c.export_classic(h.now, G, &mut out).unwrap();
        h.absorb(out);
        assert_eq!(taken, snap);
        assert_eq!(
            h.jres(parked).error_code,
            27,
            "told to rejoin the consumer group"
        );
        assert!(h.all_answered());
        assert_eq!(h.c.classic_members(G), None);
        assert!(h.events.contains(&Event::GroupReleased { group: G.into() }));
        assert_eq!(h.committed(G, "foo", 0), 42, "offsets belong to the id");
        let mut out = Vec::new();
        assert!(h.c.export_classic(h.now, G, &mut out).is_none());
    }

    #[test]
    fn import_starts_a_rebalance_and_the_members_rejoin() {
        let mut h = Harness::new();
        let ids = stable_consumer_group(&mut h);
        let mut out = Vec::new();
        let snap = h.c.export_classic(h.now, G, &mut out).unwrap();
        h.absorb(out);
        let mut snap = snap;
        snap.generation = 7;
        snap.protocol_name = None;
        h.events.clear();
        let mut out = Vec::new();
        let d = Downgrade {
            snapshot: snap,
            reason: DowngradeReason::Fenced(FenceCause::Leave),
        };
        h.c.import_classic(h.now, d, &mut out);
        h.absorb(out);
        let g = h.group();
        assert_eq!((g.state, g.generation), (GroupState::PreparingRebalance, 7));
        assert_eq!(
            g.protocol_name.as_deref(),
            Some("range"),
            "selected by vote"
        );
        assert_eq!(g.leader.as_deref(), Some(ids[0].as_str()));
        assert_eq!(g.members[&ids[1]].assignment, assignment("foo", &[3, 4, 5]));
        assert_eq!(
            h.disk.records[G].generation, 7,
            "the converted group is written"
        );
        assert_eq!(h.disk.records[G].members.len(), 2);
        assert!(h.events.contains(&Event::RebalanceStarted {
            group: G.into(),
            reason: RebalanceReason::Leave,
        }));
        // Their next Heartbeat tells them; they rejoin and the group forms at generation 8.
        assert_eq!(h.heartbeat(&ids[0], 7), 27);
        let t: Vec<u64> = ids.iter().map(|id| h.join(jr().member(id))).collect();
        h.advance_until_answered(&t, 1000, 60_000);
        assert_eq!(h.jres(t[0]).generation_id, 8);
        h.sync_all(&ids, "B");
        assert_eq!(h.state(), GroupState::Stable);
    }

    #[test]
    fn import_over_an_existing_group_answers_its_parked_calls() {
        let mut h = Harness::new();
        let ids = stable_consumer_group(&mut h);
        let snap = h.c.classic_snapshot(G).unwrap();
        let (_, parked) = h.new_member(jr());
        assert!(!h.answered(parked));
        let mut out = Vec::new();
        let d = Downgrade {
            snapshot: snap,
            reason: DowngradeReason::StaticMemberReplaced {
                subscription_changed: false,
            },
        };
        h.c.import_classic(h.now, d, &mut out);
        h.absorb(out);
        assert_eq!(h.jres(parked).error_code, 27);
        assert!(h.all_answered());
        // No rebalance asked: Stable, and the members heartbeat on.
        assert_eq!(h.state(), GroupState::Stable);
        assert_eq!(h.heartbeat(&ids[1], 1), 0);
    }

    #[test]
    fn import_arms_every_session() {
        let mut h = Harness::new();
        let ids = stable_consumer_group(&mut h);
        let mut out = Vec::new();
        let snap = h.c.export_classic(h.now, G, &mut out).unwrap();
        h.absorb(out);
        let mut out = Vec::new();
        let d = Downgrade {
            snapshot: snap,
            reason: DowngradeReason::Fenced(FenceCause::SessionTimeout),
        };
        h.c.import_classic(h.now, d, &mut out);
        h.absorb(out);
        // Only the first member keeps its session alive.
        for _ in 0..3 {
            h.advance(4_000);
            h.heartbeat(&ids[0], 1);
        }
        assert!(h.group().members.contains_key(&ids[0]));
        assert!(!h.group().members.contains_key(&ids[1]));
    }

    /// The whole trip through both coordinators, as the shell wires it: a consumer-protocol
    /// member upgrades the classic group, leaves, and the classic members carry on classic.
    #[test]
    fn upgrade_then_downgrade_through_both_coordinators() {
        let mut h = Harness::new();
        let ids = stable_consumer_group(&mut h);
        let foo = Uuid::from_u128(0xf00);
        let mut cg = ConsumerGroups::with_seed(ConsumerConfig::default(), 1);
        let mut ev: Vec<ConsumerEvent> = Vec::new();
        cg.set_topics(h.now, Topics::new([("foo".to_string(), foo, 6)]), &mut ev);
        let cx = CallContext {
            api_version: 1,
            client_id: "new".into(),
            client_host: "/127.0.0.1".into(),
        };
        let join = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_member_id(s("a"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("foo"))]))
            .with_topic_partitions(Some(vec![]));
        assert_eq!(h.c.classic_members(G), Some(2));
        let snap = h.c.classic_snapshot(G).unwrap();
        let (r, upgraded) = cg.upgrade_from(h.now, &cx, &snap, &join, &mut ev);
        assert!(upgraded, "{r:?}");
        let mut out = Vec::new();
        h.c.export_classic(h.now, G, &mut out).unwrap();
        h.absorb(out);
        let g = cg.group(G).unwrap();
        assert_eq!(g.members.len(), 3);
        assert_eq!(g.members[&ids[0]].assigned[&foo].len(), 3);
        // The consumer member leaves: the group goes back.
        let leave = join.clone().with_member_epoch(-1);
        let r = cg.heartbeat(h.now, &cx, &leave, &mut ev);
        assert_eq!(r.error_code, 0);
        assert!(!cg.contains(G));
        let downgrades = cg.take_downgrades();
        assert_eq!(downgrades.len(), 1);
        let d = downgrades.into_iter().next().unwrap();
        assert_eq!(d.snapshot.generation, 2);
        let mut out = Vec::new();
        h.c.import_classic(h.now, d, &mut out);
        h.absorb(out);
        assert_eq!(h.state(), GroupState::PreparingRebalance);
        assert_eq!(h.heartbeat(&ids[1], 2), 27);
        let t: Vec<u64> = ids.iter().map(|id| h.join(jr().member(id))).collect();
        h.advance_until_answered(&t, 1000, 60_000);
        assert_eq!(h.jres(t[0]).generation_id, 3);
    }
}
