//! Online upgrade and downgrade (`group.consumer.migration.policy`): Kafka's
//! `testConsumerGroupHeartbeatWith…ClassicGroup`, `testLastConsumerProtocolMemberLeaving…`/`…SessionTimeout…`,
//! `testNoConversionWhenSizeExceedsClassicMaxGroupSize` cases, on plain `ClassicSnapshot`s.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartition;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Encodable;

use super::classic::{cx, decoded, subscription, Cj, Classic};
use super::*;
use crate::group::consumer::{
    ClassicMemberSnapshot, ClassicSnapshot, ConsumerGroupState, Downgrade, DowngradeReason,
    FenceCause, MemberState, MigrationPolicy,
};

fn assignment(parts: &[(&str, &[i32])]) -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        parts
            .iter()
            .map(|(t, ps)| {
                AssignedPartition::default()
                    .with_topic(TopicName(s(t)))
                    .with_partitions(ps.to_vec())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    a.encode(&mut buf, 1).unwrap();
    buf.freeze()
}

fn classic_member(id: &str, assigned: &[(&str, &[i32])]) -> ClassicMemberSnapshot {
    let meta = subscription(1, &["foo"], &[]);
    ClassicMemberSnapshot {
        member_id: id.into(),
        group_instance_id: None,
        client_id: "classic".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocols: vec![
            ("range".into(), meta.clone()),
            ("cooperative-sticky".into(), meta),
        ],
        assignment: assignment(assigned),
    }
}

/// A Stable classic group at generation 3: c1 owns foo 0–2, c2 foo 3–5.
pub(super) fn stable_classic() -> ClassicSnapshot {
    ClassicSnapshot {
        group_id: G.into(),
        generation: 3,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        leader: Some("c1".into()),
        members: vec![
            classic_member("c1", &[("foo", &[0, 1, 2])]),
            classic_member("c2", &[("foo", &[3, 4, 5])]),
        ],
    }
}

fn upgrade(
    h: &mut H,
    snapshot: &ClassicSnapshot,
    hb: Hb,
) -> (ConsumerGroupHeartbeatResponse, bool) {
    let r =
        h.c.upgrade_from(h.now, &cx(hb.1), snapshot, &hb.0, &mut h.events);
    h.check();
    r
}

#[test]
fn test_consumer_group_heartbeat_with_stable_classic_group() {
    let mut h = H::new();
    let (r, upgraded) = upgrade(&mut h, &stable_classic(), Hb::join("a", &["foo"]));
    assert!(upgraded);
    assert_eq!(r.error_code, 0);
    let g = h.group();
    // The classic members keep their partitions at the generation; the join moved the epoch.
    for (m, ps) in [("c1", [0, 1, 2]), ("c2", [3, 4, 5])] {
        let m = &g.members[m];
        assert!(m.uses_classic_protocol());
        assert_eq!(m.member_epoch, 3);
        assert_eq!(m.classic.as_ref().unwrap().session_timeout_ms, 10_000);
        assert_eq!(m.assigned[&id(FOO)], ps.into_iter().collect());
    }
    assert_eq!(g.group_epoch, 4);
    assert_eq!(g.assignment_epoch, 4);
    assert_eq!(r.member_epoch, 4);
    assert_eq!(g.members["a"].state, MemberState::UnreleasedPartitions);
    assert_eq!(assigned(&r), Some(Parts::new()), "all of foo is still held");
    assert!(h.c.take_dirty().contains(G));
    settle_classic(&mut h);
    let r = h.hb(Hb::beat("a", 4, &Parts::new()));
    assert_eq!(assigned(&r).unwrap()[&FOO].len(), 2);
    assert_eq!(h.group().state, ConsumerGroupState::Stable);
    // Sessions: the classic ones are theirs (10000), a's the consumer one (45000).
    h.advance(10_000);
    assert_eq!(h.group().members.keys().collect::<Vec<_>>(), vec!["a"]);
}

#[test]
fn test_upgrade_refused_when_policy_disables_it() {
    for policy in [MigrationPolicy::Disabled, MigrationPolicy::Downgrade] {
        let mut h = H::with_config(ConsumerConfig {
            migration_policy: policy,
            ..ConsumerConfig::default()
        });
        let (r, upgraded) = upgrade(&mut h, &stable_classic(), Hb::join("a", &["foo"]));
        assert!(!upgraded);
        assert_eq!(r.error_code, 69);
        assert_eq!(
            r.error_message.as_ref().map(|m| m.to_string()).as_deref(),
            Some("Cannot upgrade classic group g to consumer group because online upgrade is disabled.")
        );
        assert!(!h.c.contains(G));
        assert_eq!(h.c.timer_count(), 0);
        assert!(h.c.take_dirty().is_empty());
    }
}

#[test]
fn test_upgrade_refused_for_other_protocol_types_sizes_and_garbage() {
    let mut h = H::new();
    let mut connect = stable_classic();
    connect.protocol_type = Some("connect".into());
    let (r, upgraded) = upgrade(&mut h, &connect, Hb::join("a", &["foo"]));
    assert!(!upgraded);
    assert_eq!(r.error_code, 69);
    assert!(r
        .error_message
        .unwrap()
        .contains("does not use the consumer embedded protocol"));

    let mut garbage = stable_classic();
    garbage.members[1].assignment = Bytes::from_static(&[0, 1, 0xff]);
    let (r, upgraded) = upgrade(&mut h, &garbage, Hb::join("a", &["foo"]));
    assert!(!upgraded);
    assert!(r.error_message.unwrap().contains("malformed"));

    let mut twice = stable_classic();
    twice.members[1].assignment = assignment(&[("foo", &[2, 3])]);
    let (r, upgraded) = upgrade(&mut h, &twice, Hb::join("a", &["foo"]));
    assert!(!upgraded, "one partition assigned twice: {r:?}");

    let mut h = H::with_config(ConsumerConfig {
        max_size: 1,
        ..ConsumerConfig::default()
    });
    let (r, upgraded) = upgrade(&mut h, &stable_classic(), Hb::join("a", &["foo"]));
    assert!(!upgraded);
    assert!(r
        .error_message
        .unwrap()
        .contains("exceeds the consumer group maximum size"));
    assert!(!h.c.contains(G));
}

#[test]
fn test_upgrade_rolled_back_when_the_heartbeat_fails() {
    // Two classic members fit `max_size` 2, but the joining third does not: Kafka applies none
    // of it, so the group stays classic.
    let mut h = H::with_config(ConsumerConfig {
        max_size: 2,
        ..ConsumerConfig::default()
    });
    let (r, upgraded) = upgrade(&mut h, &stable_classic(), Hb::join("a", &["foo"]));
    assert!(!upgraded);
    assert_eq!(r.error_code, 81);
    assert!(!h.c.contains(G));
    assert_eq!(h.c.timer_count(), 0);
    assert!(h.c.take_dirty().is_empty());
    // A rejoin (epoch > 0) is never an upgrade.
    let (r, upgraded) = upgrade(&mut h, &stable_classic(), Hb::beat("a", 1, &Parts::new()));
    assert!(!upgraded);
    assert_eq!(r.error_code, 69);
}

/// After an upgrade from `stable_classic` with "a" joining: the classic members are told to
/// rejoin, give up a partition each (cooperatively) and end Stable at epoch 4.
fn settle_classic(h: &mut H) {
    for c in ["c1", "c2"] {
        let owned: Vec<i32> = h.group().members[c].assigned[&id(FOO)]
            .iter()
            .copied()
            .collect();
        h.told.insert((G.into(), c.into()), parts(&[(FOO, &owned)]));
    }
    for c in ["c1", "c2"] {
        assert_eq!(h.cbeat(c, 3), 27);
        let owned: Vec<i32> = h.group().members[c].assigned[&id(FOO)]
            .iter()
            .copied()
            .collect();
        let j = h.cjoin(Cj::new(c, &["foo"], &[("foo", &owned)]));
        assert_eq!(j.generation_id, 3);
        let kept = decoded(&h.csync(c, 3).assignment);
        assert_eq!(kept[&FOO].len(), 2);
        let owned: Vec<i32> = kept[&FOO].iter().copied().collect();
        let j = h.cjoin(Cj::new(c, &["foo"], &[("foo", &owned)]));
        assert_eq!(j.generation_id, 4);
        h.csync(c, 4);
        assert_eq!(h.cbeat(c, 4), 0);
    }
}

/// Upgraded with c1, c2 (classic) and a (consumer), then a leaves in the way `leave` says.
fn downgraded(h: &mut H, leave: impl FnOnce(&mut H)) -> Vec<Downgrade> {
    let (r, upgraded) = upgrade(h, &stable_classic(), Hb::join("a", &["foo"]));
    assert!(upgraded && r.error_code == 0);
    h.c.take_dirty();
    leave(h);
    h.c.take_downgrades()
}

#[test]
fn test_last_consumer_protocol_member_leaving_consumer_group() {
    let mut h = H::new();
    let target_c1 = {
        let (_, _) = upgrade(&mut h, &stable_classic(), Hb::join("a", &["foo"]));
        h.group().target["c1"].clone()
    };
    let r = h.hb(Hb::leave("a", -1));
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    let downgrades = h.c.take_downgrades();
    assert_eq!(downgrades.len(), 1);
    let Downgrade { snapshot, reason } = &downgrades[0];
    assert_eq!(*reason, DowngradeReason::Fenced(FenceCause::Leave));
    assert!(downgrades[0].rebalances());
    assert!(!h.c.contains(G), "the consumer group is gone");
    assert!(
        h.c.take_dirty().contains(G),
        "its record must go (a tombstone)"
    );
    assert!(h.c.record(G).is_none());
    assert_eq!(h.c.timer_count(), 0);
    assert_eq!(
        snapshot.generation, 4,
        "the group epoch becomes the generation"
    );
    assert_eq!(snapshot.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(snapshot.protocol_name.as_deref(), Some("range"));
    assert_eq!(snapshot.leader.as_deref(), Some("c1"));
    let ids: Vec<&str> = snapshot
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids, vec!["c1", "c2"]);
    let c1 = &snapshot.members[0];
    assert_eq!(
        (c1.session_timeout_ms, c1.rebalance_timeout_ms),
        (10_000, 30_000)
    );
    assert_eq!(c1.protocols.len(), 2);
    // Each member's assignment is its target, encoded at its subscription's version.
    let want: Parts = target_c1
        .iter()
        .map(|(t, ps)| (t.as_u128(), ps.clone()))
        .collect();
    assert_eq!(decoded(&c1.assignment), want);
    assert_eq!(i16::from_be_bytes([c1.assignment[0], c1.assignment[1]]), 1);
    assert!(h.c.take_downgrades().is_empty(), "taken once");
}

#[test]
fn test_last_consumer_protocol_member_session_timeout_in_consumer_group() {
    let mut h = H::new();
    let d = downgraded(&mut h, |h| {
        settle_classic(h);
        // The classic members heartbeat, a does not.
        for _ in 0..5 {
            h.advance(9_000);
            if !h.c.contains(G) {
                break;
            }
            assert_eq!(h.cbeat("c1", 4), 0);
            assert_eq!(h.cbeat("c2", 4), 0);
        }
    });
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].reason,
        DowngradeReason::Fenced(FenceCause::SessionTimeout)
    );
}

#[test]
fn test_no_downgrade_when_policy_is_upgrade_only() {
    let mut h = H::with_config(ConsumerConfig {
        migration_policy: MigrationPolicy::Upgrade,
        ..ConsumerConfig::default()
    });
    let d = downgraded(&mut h, |h| {
        h.hb(Hb::leave("a", -1));
    });
    assert!(d.is_empty());
    let g = h.group();
    assert_eq!(g.members.len(), 2, "a consumer group of classic members");
    assert_eq!(g.group_epoch, 5);
}

#[test]
fn test_no_conversion_when_size_exceeds_classic_max_group_size() {
    let mut h = H::with_config(ConsumerConfig {
        classic_max_size: 1,
        ..ConsumerConfig::default()
    });
    let d = downgraded(&mut h, |h| {
        h.hb(Hb::leave("a", -1));
    });
    assert!(d.is_empty());
    assert!(h.c.contains(G));
}

#[test]
fn test_no_downgrade_while_a_consumer_protocol_member_remains() {
    let mut h = H::new();
    let d = downgraded(&mut h, |h| {
        h.hb(Hb::join("b", &["foo"]));
        h.hb(Hb::leave("a", -1));
    });
    assert!(d.is_empty());
    // A classic member leaving never downgrades either.
    h.cleave(&[("c1", None)]);
    assert!(h.c.take_downgrades().is_empty());
    assert!(h.c.contains(G));
}

#[test]
fn test_migration_policy_names() {
    assert_eq!(MigrationPolicy::default(), MigrationPolicy::Bidirectional);
    assert_eq!(
        ConsumerConfig::default().migration_policy,
        MigrationPolicy::Bidirectional
    );
    for p in ["disabled", "upgrade", "downgrade", "bidirectional"] {
        assert_eq!(MigrationPolicy::parse(p).unwrap().name(), p);
    }
    assert_eq!(
        MigrationPolicy::parse("UPGRADE"),
        Some(MigrationPolicy::Upgrade)
    );
    assert_eq!(MigrationPolicy::parse("sideways"), None);
}

#[test]
fn test_last_static_consumer_protocol_member_replaced_by_classic_protocol_member() {
    let mut h = H::new();
    let (r, upgraded) = upgrade(
        &mut h,
        &stable_classic(),
        Hb::join("a", &["foo"]).instance("i-a"),
    );
    assert!(upgraded && r.error_code == 0);
    settle_classic(&mut h);
    let a_target = h.group().target["a"].clone();
    let epoch = h.group().group_epoch;
    // The static member's process restarts with the classic protocol, same subscription.
    let j = h.cjoin(Cj::new("", &["foo"], &[]).instance("i-a"));
    assert_eq!(j.error_code, 0);
    let new_id = j.member_id.to_string();
    assert!(
        !h.c.contains(G),
        "every member is classic now: back to the classic side"
    );
    let d = h.c.take_downgrades();
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].reason,
        DowngradeReason::StaticMemberReplaced {
            subscription_changed: false
        }
    );
    assert!(!d[0].rebalances());
    let snap = &d[0].snapshot;
    assert_eq!(snap.generation, epoch);
    let joiner = snap.members.iter().find(|m| m.member_id == new_id).unwrap();
    assert_eq!(joiner.group_instance_id.as_deref(), Some("i-a"));
    // It takes over the replaced member's target.
    let want: Parts = a_target
        .iter()
        .map(|(t, ps)| (t.as_u128(), ps.clone()))
        .collect();
    assert_eq!(decoded(&joiner.assignment), want);
    assert_eq!(snap.members.len(), 3);
}

#[test]
fn test_static_replacement_with_new_subscription_downgrades_with_a_rebalance() {
    let mut h = H::new();
    upgrade(
        &mut h,
        &stable_classic(),
        Hb::join("a", &["foo"]).instance("i-a"),
    );
    settle_classic(&mut h);
    h.cjoin(Cj::new("", &["foo", "bar"], &[]).instance("i-a"));
    let d = h.c.take_downgrades();
    assert_eq!(
        d[0].reason,
        DowngradeReason::StaticMemberReplaced {
            subscription_changed: true
        }
    );
    assert!(d[0].rebalances());
}

#[test]
fn test_static_replacement_keeps_consumer_group_while_consumer_members_remain() {
    let mut h = H::new();
    upgrade(
        &mut h,
        &stable_classic(),
        Hb::join("a", &["foo"]).instance("i-a"),
    );
    h.hb(Hb::join("b", &["foo"]));
    h.cjoin(Cj::new("", &["foo"], &[]).instance("i-a"));
    assert!(h.c.take_downgrades().is_empty());
    assert!(h.c.contains(G));
}
