//! Join, heartbeat and leave: validation, epochs, target assignment, states, assignor choice,
//! topic metadata and regexes, ConsumerGroupDescribe.

use kafka_protocol::messages::{ConsumerGroupDescribeRequest, GroupId};

use super::*;
use crate::group::consumer::{Assignor, ConsumerGroupState, FenceCause, MemberState, OffsetFence};

fn err(r: &ConsumerGroupHeartbeatResponse) -> (i16, String) {
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

#[test]
fn test_consumer_heartbeat_request_validation() {
    let mut h = H::new();
    let cases: Vec<(Hb, &str)> = vec![
        (Hb::join("m", &["foo"]).group(""), "GroupId can't be empty."),
        (Hb::join("m", &["foo"]).instance(""), "InstanceId can't be empty."),
        (Hb::join("m", &["foo"]).with(|r| r.rack_id = Some(s(""))), "RackId can't be empty."),
        (Hb::join("", &["foo"]), "MemberId can't be empty."),
        (Hb::beat("", 1, &parts(&[])).version(0), "MemberId can't be empty."),
        (Hb::leave("", -1).version(0), "MemberId can't be empty."),
        (
            Hb::join("m", &["foo"]).rebalance_timeout(-1),
            "RebalanceTimeoutMs must be provided in first request.",
        ),
        (
            Hb::join("m", &["foo"]).with(|r| r.topic_partitions = None),
            "TopicPartitions must be empty when (re-)joining.",
        ),
        (
            Hb::join("m", &["foo"]).with(|r| r.topic_partitions = Some(wire(&parts(&[(FOO, &[0])])))),
            "TopicPartitions must be empty when (re-)joining.",
        ),
        (
            Hb::join("m", &["foo"]).with(|r| r.subscribed_topic_names = None),
            "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
        ),
        (Hb::leave("m", -2), "InstanceId can't be null."),
        (Hb::leave("m", -3), "MemberEpoch is invalid."),
    ];
    for (hb, message) in cases {
        let r = h.hb(hb);
        assert_eq!(err(&r), (42, message.to_string()));
    }
    assert_eq!(h.c.group_count(), 0, "nothing was created");
    let r = h.hb(Hb::join("m", &["foo"]).assignor("sticky"));
    assert_eq!(r.error_code, 112);
    assert_eq!(
        err(&r).1,
        "ServerAssignor sticky is not supported. Supported assignors: uniform, range."
    );
}

#[test]
fn test_consumer_heartbeat_regex_validation() {
    let mut h = H::new();
    let r = h.hb(Hb::join("m", &[])
        .regex("[")
        .with(|r| r.subscribed_topic_names = None));
    assert_eq!(r.error_code, 128);
    assert_eq!(h.c.group_count(), 0);
}

#[test]
fn test_member_id_generation() {
    // v0: the coordinator names a member that joins without an id.
    let mut h = H::new();
    let r = h.hb(Hb::join("", &["foo"]).version(0));
    assert_eq!(r.error_code, 0);
    let member = r.member_id.unwrap().to_string();
    assert_eq!(member.len(), 22, "like Kafka's Uuid.toString()");
    assert_eq!(r.member_epoch, 1);
    let r2 = h.hb(Hb::join("", &["foo"]).version(0));
    assert_ne!(r2.member_id.unwrap().to_string(), member);
}

#[test]
fn test_unknown_group_id() {
    let mut h = H::new();
    let r = h.hb(Hb::beat("m", 100, &parts(&[])));
    assert_eq!(err(&r), (69, "Consumer group g not found.".to_string()));
    let r = h.hb(Hb::leave("m", -1));
    assert_eq!(r.error_code, 69);
}

#[test]
fn test_unknown_member_id_joins_consumer_group() {
    let mut h = H::new();
    h.hb(Hb::join("m1", &["foo"]));
    let r = h.hb(Hb::beat("unknown", 1, &parts(&[])));
    assert_eq!(
        err(&r),
        (25, "Member unknown is not a member of group g.".to_string())
    );
    let r = h.hb(Hb::leave("unknown", -1));
    assert_eq!(r.error_code, 25);
}

#[test]
fn test_consumer_group_member_epoch_validation() {
    let mut h = H::new();
    let r = h.hb(Hb::join("m", &["foo"]));
    assert_eq!(r.member_epoch, 1);
    let owned = assigned(&r).unwrap();
    // Higher than known: fenced.
    assert_eq!(h.hb(Hb::beat("m", 2, &owned)).error_code, 110);
    // The previous epoch with a subset of the assignment: a lost response, accepted.
    let r = h.hb(Hb::beat("m", 1, &owned).topics(&["foo", "bar"]));
    assert_eq!(r.member_epoch, 2);
    let r = h.hb(Hb::beat("m", 1, &parts(&[(FOO, &[0])])));
    assert_eq!((r.error_code, r.member_epoch), (0, 2));
    // The previous epoch owning something it was never given: fenced.
    let r = h.hb(Hb::beat("m", 1, &parts(&[(0x99, &[0])])));
    assert_eq!(r.error_code, 110);
    // Lower and not the previous epoch: fenced.
    let all = parts(&[(FOO, &[0, 1, 2, 3, 4, 5]), (BAR, &[0, 1, 2])]);
    let r = h.hb(Hb::beat("m", 2, &all).topics(&["foo"]));
    assert_eq!(r.error_code, 0);
    let r = h.hb(Hb::beat("m", 2, &parts(&[(FOO, &[0, 1, 2, 3, 4, 5])])));
    assert_eq!(r.member_epoch, 3);
    let r = h.hb(Hb::beat("m", 1, &parts(&[])));
    assert_eq!(r.error_code, 110);
}

#[test]
fn test_member_joins_empty_consumer_group() {
    let mut h = H::new();
    let r = h.hb(Hb::join("m", &["foo", "bar"]));
    assert_eq!(r.error_code, 0);
    assert_eq!(r.member_id.as_ref().unwrap().as_str(), "m");
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.heartbeat_interval_ms, 5000);
    assert_eq!(
        assigned(&r).unwrap(),
        parts(&[(FOO, &[0, 1, 2, 3, 4, 5]), (BAR, &[0, 1, 2])])
    );
    let g = h.group();
    assert_eq!((g.group_epoch, g.assignment_epoch), (1, 1));
    assert_eq!(g.state, ConsumerGroupState::Stable);
    assert!(h
        .take_events()
        .contains(&ConsumerEvent::MemberJoined { group: G.into() }));
}

#[test]
fn test_consumer_group_heartbeat_full_response() {
    let mut h = H::new();
    let r = h.hb(Hb::join("m", &["foo"]));
    let owned = assigned(&r).unwrap();
    // A plain heartbeat with nothing changed carries no assignment.
    assert!(h.hb(Hb::beat("m", 1, &owned)).assignment.is_none());
    assert!(h
        .hb(Hb::beat("m", 1, &owned).with(|r| r.topic_partitions = None))
        .assignment
        .is_none());
    // A full request (rebalance timeout, subscription and owned partitions) gets it again.
    let full = Hb::beat("m", 1, &owned)
        .rebalance_timeout(300_000)
        .topics(&["foo"]);
    assert_eq!(assigned(&h.hb(full)).unwrap(), owned);
}

#[test]
fn test_updating_subscription_triggers_new_target_assignment() {
    let mut h = H::new();
    let r = h.hb(Hb::join("m", &["foo"]));
    let owned = assigned(&r).unwrap();
    let r = h.hb(Hb::beat("m", 1, &owned).topics(&["foo", "bar"]));
    assert_eq!(r.member_epoch, 2);
    assert_eq!(
        assigned(&r).unwrap(),
        parts(&[(FOO, &[0, 1, 2, 3, 4, 5]), (BAR, &[0, 1, 2])])
    );
    assert_eq!(h.group().group_epoch, 2);
}

#[test]
fn test_new_joining_member_triggers_new_target_assignment() {
    let mut h = H::new();
    let a = assigned(&h.hb(Hb::join("a", &["foo"]))).unwrap();
    let r = h.hb(Hb::join("b", &["foo"]));
    // b gets nothing yet: a still owns every partition.
    assert_eq!(r.member_epoch, 2);
    assert_eq!(assigned(&r).unwrap(), parts(&[]));
    assert_eq!(
        h.group().members["b"].state,
        MemberState::UnreleasedPartitions
    );
    assert_eq!(h.group().state, ConsumerGroupState::Reconciling);
    // a is asked to revoke half, at its epoch.
    let r = h.hb(Hb::beat("a", 1, &a));
    assert_eq!(r.member_epoch, 1);
    let keep = assigned(&r).unwrap();
    assert_eq!(keep[&FOO].len(), 3);
    assert_eq!(
        h.group().members["a"].state,
        MemberState::UnrevokedPartitions
    );
    let rec = h.group().reconciliation();
    assert_eq!(
        (
            rec.members,
            rec.at_target_epoch,
            rec.pending_revocation,
            rec.awaiting_assignment
        ),
        (2, 1, 3, 3)
    );
    // a revokes: epoch 2.
    let r = h.hb(Hb::beat("a", 1, &keep));
    assert_eq!(r.member_epoch, 2);
    // b gets the released half.
    let r = h.hb(Hb::beat("b", 2, &parts(&[])));
    assert_eq!(assigned(&r).unwrap()[&FOO].len(), 3);
    assert_eq!(h.group().state, ConsumerGroupState::Stable);
    let rec = h.group().reconciliation();
    assert_eq!(
        (
            rec.at_target_epoch,
            rec.pending_revocation,
            rec.awaiting_assignment
        ),
        (2, 0, 0)
    );
}

#[test]
fn test_leaving_member_bumps_group_epoch() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]));
    h.hb(Hb::join("b", &["foo"]));
    let before = h.group().group_epoch;
    let r = h.hb(Hb::leave("b", -1));
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    assert_eq!(r.member_id.unwrap().as_str(), "b");
    assert_eq!(h.group().group_epoch, before + 1);
    assert!(!h.group().members.contains_key("b"));
    assert!(h.take_events().contains(&ConsumerEvent::MemberFenced {
        group: G.into(),
        cause: FenceCause::Leave
    }));
    assert_eq!(h.group().state, ConsumerGroupState::Assigning);
}

#[test]
fn test_new_member_is_rejected_with_maximum_members_is_reached() {
    let mut h = H::with_config(ConsumerConfig {
        max_size: 1,
        ..ConsumerConfig::default()
    });
    h.hb(Hb::join("a", &["foo"]));
    let r = h.hb(Hb::join("b", &["foo"]));
    assert_eq!(r.error_code, 81);
    // The member already in keeps going.
    let r = h.hb(Hb::beat("a", 1, &parts(&[(FOO, &[0, 1, 2, 3, 4, 5])])));
    assert_eq!(r.error_code, 0);
}

#[test]
fn test_consumer_group_states() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]));
    assert_eq!(h.group().state, ConsumerGroupState::Stable);
    h.hb(Hb::join("b", &["foo"]));
    assert_eq!(h.group().state, ConsumerGroupState::Reconciling);
    h.hb(Hb::leave("b", -1));
    assert_eq!(h.group().state, ConsumerGroupState::Assigning);
    assert_eq!(h.c.delete(G), Err(68), "not empty");
    h.hb(Hb::leave("a", -1));
    assert_eq!(h.group().state, ConsumerGroupState::Empty);
    assert_eq!(h.group().state.list_name(), "empty");
    assert_eq!(h.c.delete(G), Ok(()));
    assert_eq!(h.c.delete(G), Err(69));
    assert!(h.c.group(G).is_none());
}

#[test]
fn test_server_assignor_is_the_one_most_members_ask_for() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).assignor("range"));
    let r = h.hb(Hb::join("b", &["foo"]).assignor("range"));
    assert_eq!(r.error_code, 0);
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        ConsumerEvent::TargetAssigned {
            assignor: Assignor::Range,
            ..
        }
    )));
    // range: a (sorted first) gets 0-2, b 3-5.
    assert_eq!(h.group().target["a"], [(id(FOO), (0..3).collect())].into());
    assert_eq!(h.group().target["b"], [(id(FOO), (3..6).collect())].into());
}

#[test]
fn test_on_new_metadata_image() {
    let mut h = H::new();
    let a = assigned(&h.hb(Hb::join("a", &["foo"]))).unwrap();
    // A topic nobody subscribes to changes: no new epoch.
    h.set_topics(&[("foo", FOO, 6), ("bar", BAR, 4)]);
    assert_eq!(h.group().group_epoch, 1);
    // foo grows: the group epoch moves, the next heartbeat assigns the new partitions.
    h.set_topics(&[("foo", FOO, 8), ("bar", BAR, 4)]);
    assert_eq!(h.group().group_epoch, 2);
    let r = h.hb(Hb::beat("a", 1, &a));
    assert_eq!(r.member_epoch, 2);
    assert_eq!(
        assigned(&r).unwrap(),
        parts(&[(FOO, &[0, 1, 2, 3, 4, 5, 6, 7])])
    );
    // foo is deleted and recreated with a new id: the old id's partitions are revoked.
    h.set_topics(&[("foo", 0xf01, 2)]);
    let owned = assigned(&r).unwrap();
    let r = h.hb(Hb::beat("a", 2, &owned));
    assert_eq!(assigned(&r).unwrap(), parts(&[]));
    let r = h.hb(Hb::beat("a", r.member_epoch, &parts(&[])));
    assert_eq!(assigned(&r).unwrap(), parts(&[(0xf01, &[0, 1])]));
}

#[test]
fn test_subscribing_to_a_missing_topic_assigns_it_once_it_exists() {
    let mut h = H::new();
    let r = h.hb(Hb::join("a", &["later"]));
    assert_eq!(assigned(&r).unwrap(), parts(&[]));
    h.set_topics(&[("foo", FOO, 6), ("later", 0x1a, 2)]);
    let r = h.hb(Hb::beat("a", 1, &parts(&[])));
    assert_eq!(assigned(&r).unwrap(), parts(&[(0x1a, &[0, 1])]));
}

#[test]
fn test_regex_subscription_is_reevaluated_when_topics_change() {
    let mut h = H::new();
    let r = h.hb(Hb::join("a", &[])
        .regex("fo.*")
        .with(|r| r.subscribed_topic_names = None));
    assert_eq!(assigned(&r).unwrap(), parts(&[(FOO, &[0, 1, 2, 3, 4, 5])]));
    let owned = assigned(&r).unwrap();
    // A new matching topic appears: a new group epoch, assigned at the next heartbeat.
    h.set_topics(&[("foo", FOO, 6), ("bar", BAR, 3), ("food", 0xf0d, 2)]);
    assert_eq!(h.group().group_epoch, 2);
    let r = h.hb(Hb::beat("a", 1, &owned));
    assert_eq!(
        assigned(&r).unwrap(),
        parts(&[(FOO, &[0, 1, 2, 3, 4, 5]), (0xf0d, &[0, 1])])
    );
    // A topic that does not match changes nothing.
    h.set_topics(&[
        ("foo", FOO, 6),
        ("bar", BAR, 3),
        ("food", 0xf0d, 2),
        ("x", 0x5, 1),
    ]);
    assert_eq!(h.group().group_epoch, 2);
}

#[test]
fn test_consumer_group_describe() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    h.hb(Hb::join("b", &["foo"]));
    let req = ConsumerGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(s(G)), GroupId(s("missing"))]);
    let resp = h.c.describe(&req);
    let g = &resp.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.group_state.as_str(), "Reconciling");
    assert_eq!((g.group_epoch, g.assignment_epoch), (2, 2));
    assert_eq!(g.assignor_name.as_str(), "uniform");
    assert_eq!(g.members.len(), 2);
    let a = g
        .members
        .iter()
        .find(|m| m.member_id.as_str() == "a")
        .unwrap();
    assert_eq!(a.instance_id.as_ref().unwrap().as_str(), "i-a");
    assert_eq!(a.member_type, 1);
    assert_eq!(a.assignment.topic_partitions[0].topic_name.as_str(), "foo");
    assert_eq!(
        a.assignment.topic_partitions[0].partitions.len(),
        6,
        "still owns all"
    );
    assert_eq!(a.target_assignment.topic_partitions[0].partitions.len(), 3);
    assert_eq!(resp.groups[1].error_code, 69);
}

#[test]
fn test_offset_commit_and_fetch_fenced_by_member_epoch() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]));
    let c = &h.c;
    assert_eq!(
        c.fence_offset_commit("classic", "x", 3, 9),
        OffsetFence::NotConsumerGroup
    );
    assert_eq!(c.fence_offset_commit(G, "a", 1, 9), OffsetFence::Accept);
    assert_eq!(
        c.fence_offset_commit(G, "a", 0, 9),
        OffsetFence::Refuse(113)
    );
    assert_eq!(
        c.fence_offset_commit(G, "a", 2, 9),
        OffsetFence::Refuse(113)
    );
    assert_eq!(
        c.fence_offset_commit(G, "nobody", 1, 9),
        OffsetFence::Refuse(25)
    );
    assert_eq!(c.fence_offset_commit(G, "a", 1, 8), OffsetFence::Refuse(35));
    // An admin commit (epoch -1) only while the group is empty.
    assert_eq!(c.fence_offset_commit(G, "", -1, 9), OffsetFence::Refuse(25));
    assert_eq!(c.fence_offset_fetch(G, None, -1), OffsetFence::Accept);
    assert_eq!(c.fence_offset_fetch(G, Some("a"), 1), OffsetFence::Accept);
    assert_eq!(
        c.fence_offset_fetch(G, Some("a"), 0),
        OffsetFence::Refuse(113)
    );
    assert_eq!(
        c.fence_offset_fetch(G, Some("zz"), 1),
        OffsetFence::Refuse(25)
    );
    assert_eq!(c.fence_offset_fetch(G, None, 1), OffsetFence::Refuse(25));
    h.hb(Hb::leave("a", -1));
    assert_eq!(h.c.fence_offset_commit(G, "", -1, 9), OffsetFence::Accept);
    assert_eq!(h.c.fence_offset_commit(G, "", -1, 2), OffsetFence::Accept);
}

#[test]
fn test_known_member_rejoining_with_epoch_zero_starts_over() {
    // kelp's choice where Kafka is silent: a known id that joins again (epoch 0, owning nothing,
    // e.g. a v1 client after FENCED_MEMBER_EPOCH) starts over instead of being fenced again.
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]));
    let r = h.hb(Hb::beat("a", 1, &parts(&[])).topics(&["foo", "bar"]));
    assert_eq!(r.member_epoch, 2);
    let r = h.hb(Hb::join("a", &["foo"]));
    assert_eq!(r.error_code, 0);
    assert_eq!(r.member_epoch, 3);
    assert_eq!(assigned(&r).unwrap(), parts(&[(FOO, &[0, 1, 2, 3, 4, 5])]));
    let m = &h.group().members["a"];
    assert_eq!((m.member_epoch, m.previous_member_epoch), (3, 0));
}
