//! Consumer groups (KIP-848) inside the coordinator, on the fake clock: one group-id namespace
//! with classic groups (Kafka's `getOrMaybeCreateConsumerGroup`), answers held until the group's
//! record is durable, offsets fenced by member epoch (`ConsumerGroup.validateOffsetCommit` /
//! `validateOffsetFetch`), ListGroups/DeleteGroups of consumer groups, a restart or adoption that
//! keeps a Stable group's assignment, release, and timeouts fired by `tick`. The consumer rules
//! themselves are tested in `group::consumer::tests`.

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::{s, Harness, G};
use crate::group::consumer::{ConsumerGroupState, Topics};
use crate::group::{Event, Request, Response, Token, Write};

const TOPIC: &str = "orders";

fn topic_id() -> Uuid {
    Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef)
}

/// A harness whose consumer groups know topic `orders` with `partitions` partitions.
fn harness(partitions: i32) -> Harness {
    let mut h = Harness::new();
    let mut out = Vec::new();
    let topics = Topics::new([(TOPIC.to_string(), topic_id(), partitions)]);
    h.c.set_topics(h.now, topics, &mut out);
    h.absorb(out);
    h
}

fn join_req(member: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(300_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]))
        .with_topic_partitions(Some(vec![]))
}

fn beat_req(member: &str, epoch: i32, owned: &[i32]) -> ConsumerGroupHeartbeatRequest {
    let owned = vec![TopicPartitions::default()
        .with_topic_id(topic_id())
        .with_partitions(owned.to_vec())];
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
        .with_topic_partitions(Some(owned))
}

impl Harness {
    fn cgh(&mut self, req: ConsumerGroupHeartbeatRequest) -> Token {
        self.send(1, "c", "/127.0.0.1", Request::ConsumerGroupHeartbeat(req))
    }

    fn cgh_response(&self, t: Token) -> &ConsumerGroupHeartbeatResponse {
        match self.replies.get(&t) {
            Some(Response::ConsumerGroupHeartbeat(r)) => r,
            other => panic!("no ConsumerGroupHeartbeat answer: {other:?}"),
        }
    }

    /// Joins `member` and heartbeats until it owns its target; returns (epoch, partitions).
    fn join_consumer(&mut self, member: &str) -> (i32, Vec<i32>) {
        let t = self.cgh(join_req(member));
        let r = self.cgh_response(t).clone();
        assert_eq!(r.error_code, 0, "{r:?}");
        let owned = assigned(&r).unwrap_or_default();
        (r.member_epoch, owned)
    }

    fn consumer_commit(&mut self, version: i16, member: &str, epoch: i32) -> i16 {
        let t = self.commit_send(version, G, member, None, epoch, &[(TOPIC, 0, 5, "")]);
        super::commit_codes(&self.commit_response(t))[0]
    }
}

/// A classic member's ConsumerProtocolSubscription (v1) naming `topics`.
fn subscription(topics: &[&str]) -> bytes::Bytes {
    use bytes::BufMut;
    use kafka_protocol::protocol::Encodable;
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut buf = bytes::BytesMut::new();
    buf.put_i16(1);
    sub.encode(&mut buf, 1).expect("encodes");
    buf.freeze()
}

/// A classic leader's ConsumerProtocolAssignment (v1) of `orders` partitions.
fn classic_assignment(partitions: &[i32]) -> bytes::Bytes {
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        TopicPartition::default()
            .with_topic(TopicName(s(TOPIC)))
            .with_partitions(partitions.to_vec()),
    ]);
    let mut buf = bytes::BytesMut::new();
    buf.put_i16(1);
    a.encode(&mut buf, 1).expect("encodes");
    buf.freeze()
}

/// The partitions of `orders` an answer assigns (`None`: no assignment in the answer).
fn assigned(r: &ConsumerGroupHeartbeatResponse) -> Option<Vec<i32>> {
    let a = r.assignment.as_ref()?;
    Some(
        a.topic_partitions
            .iter()
            .filter(|t| t.topic_id == topic_id())
            .flat_map(|t| t.partitions.iter().copied())
            .collect(),
    )
}

#[test]
fn consumer_group_heartbeat_joins_and_is_assigned_through_the_coordinator() {
    let mut h = harness(4);
    let (epoch, owned) = h.join_consumer("m1");
    assert_eq!(epoch, 1, "the group's first epoch");
    assert_eq!(owned, vec![0, 1, 2, 3]);
    assert!(h.c.is_consumer_group(G));
    // The record is on the disk, as the consumer group.
    assert!(h.disk.consumer_records.contains_key(G));
    assert!(!h.disk.records.contains_key(G));
    // Metric events: a target assignment and where the group stands.
    assert!(h
        .events
        .contains(&Event::TargetAssigned { group: G.into() }));
    let progress = h.c.consumer_progress(G).expect("a consumer group");
    assert_eq!(progress.state, ConsumerGroupState::Stable);
    assert_eq!((progress.group_epoch, progress.target_epoch), (1, 1));
}

#[test]
fn test_consumer_heartbeat_with_non_empty_classic_group() {
    // Kafka: a ConsumerGroupHeartbeat for a classic group with members is GROUP_ID_NOT_FOUND,
    // unless it is a join the migration policy lets upgrade the group.
    let mut config = super::config();
    config.consumer.migration_policy = crate::group::consumer::MigrationPolicy::Disabled;
    let mut h = Harness::with(config);
    h.stable(1);
    let t = h.cgh(join_req("m1"));
    let r = h.cgh_response(t);
    assert_eq!(r.error_code, 69);
    assert_eq!(
        r.error_message.as_deref(),
        Some(
            "Cannot upgrade classic group g to consumer group because online upgrade is disabled."
        )
    );
    let t = h.cgh(beat_req("m1", 3, &[]));
    let r = h.cgh_response(t);
    assert_eq!(r.error_code, 69);
    assert_eq!(
        r.error_message.as_deref(),
        Some("Group g is not a consumer group.")
    );
    assert!(!h.c.is_consumer_group(G));
    assert_eq!(h.state(), crate::group::GroupState::Stable);
}

#[test]
fn test_online_upgrade_and_downgrade_through_the_coordinator() {
    // Kafka's testConsumerGroupHeartbeatWithStableClassicGroup and
    // testLastConsumerProtocolMemberLeavingConsumerGroup, through `Coordinator::handle`.
    let mut h = harness(4);
    let mut classic = super::jr();
    classic.protocols = vec![("range".into(), subscription(&[TOPIC]))];
    let (id, t) = h.new_member(classic);
    h.advance_until_answered(&[t], 1000, 60_000);
    let generation = h.gen();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_member_id(s(&id))
        .with_generation_id(generation)
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![
            kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&id))
                .with_assignment(classic_assignment(&[0, 1, 2, 3])),
        ]);
    let t = h.send(5, "c", "/127.0.0.1", Request::SyncGroup(sync));
    assert_eq!(h.sres(t).error_code, 0);
    let ids = [id];
    let (epoch, owned) = h.join_consumer("m2");
    assert!(h.c.is_consumer_group(G), "upgraded");
    assert!(!h.c.groups.contains_key(G));
    assert!(epoch > 0, "{owned:?}");
    // The record on the disk is the consumer group's now.
    assert!(h.disk.consumer_records.contains_key(G));
    assert!(!h.disk.records.contains_key(G));
    // The classic member is served by the consumer group: its heartbeat answers (it must rejoin
    // to move towards its new target: REBALANCE_IN_PROGRESS, or 0 if nothing moves).
    let code = h.heartbeat(&ids[0], h.c.consumer_groups().group(G).unwrap().group_epoch);
    assert!(code == 0 || code == 27 || code == 22, "{code}");
    // The consumer-protocol member leaves: the group goes back to classic, with the classic member.
    let t = h.cgh(beat_req("m2", epoch, &owned).with_member_epoch(-1));
    assert_eq!(h.cgh_response(t).error_code, 0);
    assert!(!h.c.is_consumer_group(G), "downgraded");
    assert!(h.c.groups.contains_key(G));
    assert_eq!(h.member_ids(), vec![ids[0].clone()]);
    assert!(
        h.disk.records.contains_key(G),
        "the classic record supersedes"
    );
    assert!(!h.disk.consumer_records.contains_key(G));
}

#[test]
fn test_consumer_heartbeat_with_empty_classic_group_replaces_it_and_keeps_offsets() {
    let mut h = harness(4);
    // A simple group: offsets committed outside any membership.
    let t = h.commit_send(2, G, "", None, -1, &[(TOPIC, 0, 42, "")]);
    assert_eq!(super::commit_codes(&h.commit_response(t)), vec![0]);
    let (epoch, _) = h.join_consumer("m1");
    assert!(epoch > 0);
    assert!(h.c.is_consumer_group(G));
    assert!(!h.c.groups.contains_key(G), "the classic group gave way");
    assert_eq!(h.committed(G, TOPIC, 0), 42);
}

#[test]
fn a_heartbeat_answer_waits_for_its_record_and_a_failed_write_is_retried() {
    let mut h = harness(4);
    h.hold_writes = true;
    let t = h.cgh(join_req("m1"));
    assert!(!h.answered(t), "the answer waits for the record");
    assert!(matches!(h.held[0].write, Write::ConsumerRecord(_)));
    h.settle(1, Err(15));
    let r = h.cgh_response(t).clone();
    assert_eq!(
        r.error_code, 15,
        "a failed write answers COORDINATOR_NOT_AVAILABLE"
    );
    // The client retries with epoch 0 (its join was never answered); the record goes again.
    let t = h.cgh(join_req("m1"));
    assert!(matches!(h.held[0].write, Write::ConsumerRecord(_)));
    h.settle(1, Ok(()));
    let r = h.cgh_response(t);
    assert_eq!(r.error_code, 0);
    assert_eq!(assigned(r), Some(vec![0, 1, 2, 3]));
    assert!(h.disk.consumer_records.contains_key(G));
}

#[test]
fn a_steady_heartbeat_writes_nothing_but_waits_behind_writes_in_flight() {
    let mut h = harness(4);
    let (epoch, owned) = h.join_consumer("m1");
    // The group's first commit reads the gateway's offsets once; get that out of the way.
    assert_eq!(h.consumer_commit(9, "m1", epoch), 0);
    h.hold_writes = true;
    let t = h.cgh(beat_req("m1", epoch, &owned));
    assert!(
        h.answered(t),
        "nothing in flight, nothing to write: answered at once"
    );
    assert!(h.held.is_empty());
    // A commit in flight for the group: the next heartbeat answer leaves after it.
    let c = h.commit_send(9, G, "m1", None, epoch, &[(TOPIC, 0, 7, "")]);
    assert!(!h.answered(c));
    let t = h.cgh(beat_req("m1", epoch, &owned));
    assert!(!h.answered(t));
    h.settle(1, Ok(()));
    assert!(h.answered(c) && h.answered(t));
}

#[test]
fn test_consumer_group_offset_commit_fenced_by_member_epoch() {
    // Kafka's OffsetMetadataManagerTest: testConsumerGroupOffsetCommitWith{StaleMemberEpoch,
    // UnknownMemberId, VersionSmallerThanVersion9}, testConsumerGroupOffsetCommit.
    let mut h = harness(4);
    let (epoch, _) = h.join_consumer("m1");
    assert_eq!(
        h.consumer_commit(9, "m1", epoch + 1),
        113,
        "STALE_MEMBER_EPOCH"
    );
    assert_eq!(
        h.consumer_commit(9, "nobody", epoch),
        25,
        "UNKNOWN_MEMBER_ID"
    );
    assert_eq!(
        h.consumer_commit(8, "m1", epoch),
        35,
        "UNSUPPORTED_VERSION below v9"
    );
    assert_eq!(h.consumer_commit(9, "m1", epoch), 0);
    assert_eq!(h.committed(G, TOPIC, 0), 5);
    // The commit is durable with the group's other writes.
    assert!(h.disk.offsets.contains_key(G));
}

#[test]
fn test_consumer_group_offset_fetch_fenced_by_member_epoch() {
    let mut h = harness(4);
    let (epoch, _) = h.join_consumer("m1");
    assert_eq!(h.consumer_commit(9, "m1", epoch), 0);
    let fetch = |h: &mut Harness, member: Option<&str>, epoch: i32| {
        let group = OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(G)))
            .with_member_id(member.map(s))
            .with_member_epoch(epoch)
            .with_topics(None);
        let req = OffsetFetchRequest::default().with_groups(vec![group]);
        let t = h.send(9, "c", "/127.0.0.1", Request::OffsetFetch(req));
        h.fetch_response(t).groups[0].clone()
    };
    assert_eq!(fetch(&mut h, Some("m1"), epoch + 1).error_code, 113);
    assert_eq!(fetch(&mut h, Some("nobody"), epoch).error_code, 25);
    let g = fetch(&mut h, Some("m1"), epoch);
    assert_eq!(g.error_code, 0);
    assert_eq!(g.topics[0].partitions[0].committed_offset, 5);
    // Admin tools send no member: accepted.
    assert_eq!(fetch(&mut h, None, -1).error_code, 0);
}

#[test]
fn list_groups_shows_consumer_groups_with_their_type_and_state() {
    let mut h = harness(4);
    h.stable(1);
    let t = h.cgh(join_req("m1").with_group_id(GroupId(s("cg"))));
    assert_eq!(h.cgh_response(t).error_code, 0);
    let list = |h: &mut Harness, types: &[&str]| {
        let req =
            ListGroupsRequest::default().with_types_filter(types.iter().map(|t| s(t)).collect());
        let t = h.send(5, "c", "/127.0.0.1", Request::ListGroups(req));
        let Some(Response::ListGroups(r)) = h.replies.get(&t) else {
            panic!("no ListGroups answer")
        };
        r.groups
            .iter()
            .map(|g| {
                (
                    g.group_id.to_string(),
                    g.group_type.to_string(),
                    g.group_state.to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let all = list(&mut h, &[]);
    assert!(all.contains(&("cg".into(), "consumer".into(), "Stable".into())));
    assert!(all.contains(&(G.into(), "classic".into(), "Stable".into())));
    assert_eq!(
        list(&mut h, &["consumer"]),
        vec![("cg".into(), "consumer".into(), "Stable".into())]
    );
}

#[test]
fn delete_groups_removes_an_empty_consumer_group_and_its_offsets() {
    let mut h = harness(4);
    let (epoch, _) = h.join_consumer("m1");
    assert_eq!(h.consumer_commit(9, "m1", epoch), 0);
    let delete = |h: &mut Harness| {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(G))]);
        let t = h.send(2, "c", "/127.0.0.1", Request::DeleteGroups(req));
        let Some(Response::DeleteGroups(r)) = h.replies.get(&t) else {
            panic!("no DeleteGroups answer")
        };
        r.results[0].error_code
    };
    assert_eq!(delete(&mut h), 68, "NON_EMPTY_GROUP while it has a member");
    let t = h.cgh(beat_req("m1", -1, &[]).with_member_epoch(-1));
    assert_eq!(h.cgh_response(t).error_code, 0);
    assert_eq!(delete(&mut h), 0);
    assert!(!h.c.is_consumer_group(G));
    assert!(!h.disk.consumer_records.contains_key(G));
    assert!(!h.disk.offsets.contains_key(G));
    assert!(h.events.contains(&Event::GroupDeleted { group: G.into() }));
}

#[test]
fn a_restart_brings_a_stable_consumer_group_back_without_a_new_assignment() {
    let mut h = harness(4);
    let (epoch, owned) = h.join_consumer("m1");
    h.restart();
    let mut out = Vec::new();
    let topics = Topics::new([(TOPIC.to_string(), topic_id(), 4)]);
    h.c.set_topics(h.now, topics, &mut out);
    h.absorb(out);
    let t = h.cgh(beat_req("m1", epoch, &owned));
    let r = h.cgh_response(t);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.member_epoch, epoch, "same epoch: no new assignment");
}

#[test]
fn a_released_consumer_group_is_gone_and_refused_with_not_coordinator() {
    let mut h = harness(4);
    h.c.shard();
    let mut out = Vec::new();
    h.c.adopt(h.now, G, None, &mut out);
    h.absorb(out);
    let (epoch, owned) = h.join_consumer("m1");
    let mut out = Vec::new();
    h.c.release(h.now, G, &mut out);
    h.absorb(out);
    assert!(!h.c.is_consumer_group(G));
    assert!(h.events.contains(&Event::GroupReleased { group: G.into() }));
    let t = h.cgh(beat_req("m1", epoch, &owned));
    assert_eq!(h.cgh_response(t).error_code, 16);
    // Adopted again from the store: as it was.
    let loaded = h.disk.loaded().into_iter().find(|g| g.group == G);
    let mut out = Vec::new();
    h.c.adopt(h.now, G, loaded, &mut out);
    h.absorb(out);
    let t = h.cgh(beat_req("m1", epoch, &owned));
    assert_eq!(h.cgh_response(t).member_epoch, epoch);
}

#[test]
fn an_expired_session_is_fenced_by_tick_and_reported() {
    let mut h = harness(4);
    h.join_consumer("m1");
    h.advance(45_001);
    let progress = h.c.consumer_progress(G).expect("the group stays");
    assert_eq!(progress.members, 0);
    assert_eq!(progress.state, ConsumerGroupState::Empty);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::MemberEvicted { group, .. } if group == G
    )));
}

#[test]
fn a_subscription_to_an_unknown_topic_asks_for_fresh_metadata() {
    let mut h = harness(4);
    let req = join_req("m1").with_subscribed_topic_names(Some(vec![TopicName(s("new-topic"))]));
    let t = h.cgh(req);
    assert_eq!(h.cgh_response(t).error_code, 0);
    assert_eq!(h.refreshes, 1);
    // When it appears, the member's next heartbeat is assigned its partitions.
    let mut out = Vec::new();
    let topics = Topics::new([
        (TOPIC.to_string(), topic_id(), 4),
        ("new-topic".to_string(), Uuid::from_u128(7), 2),
    ]);
    h.c.set_topics(h.now, topics, &mut out);
    h.absorb(out);
    let epoch = h.cgh_response(t).member_epoch;
    let t = h.cgh(beat_req("m1", epoch, &[]));
    let r = h.cgh_response(t);
    let parts: usize = r
        .assignment
        .iter()
        .flat_map(|a| a.topic_partitions.iter())
        .map(|t| t.partitions.len())
        .sum();
    assert_eq!(parts, 2, "{r:?}");
}

#[test]
fn a_consumer_group_is_in_the_views_with_its_members_assignments() {
    let mut h = harness(4);
    let (epoch, _) = h.join_consumer("m1");
    assert_eq!(h.consumer_commit(9, "m1", epoch), 0);
    let views = h.c.views();
    let v = views.iter().find(|v| v.group == G).expect("listed");
    assert_eq!(v.protocol_type, "consumer");
    assert_eq!(v.state, crate::group::GroupState::Stable);
    assert_eq!(v.generation, epoch);
    assert_eq!(v.members.len(), 1);
    let owned = crate::lag::json::assignment(&v.members[0].assignment).expect("decodes");
    assert_eq!(owned.get(TOPIC), Some(&vec![0, 1, 2, 3]));
    assert_eq!(v.offsets.len(), 1);
}

#[test]
fn an_empty_consumer_groups_offsets_expire_and_the_group_goes() {
    // Kafka's ConsumerGroup.offsetExpirationCondition: an Empty group's offsets expire retention
    // after their commit; the group goes with its last offsets.
    let mut config = super::config();
    config.offsets_retention_ms = 60_000;
    config.offsets_retention_check_interval_ms = 10_000;
    let mut h = Harness::with(config);
    let mut out = Vec::new();
    h.c.set_topics(
        h.now,
        Topics::new([(TOPIC.to_string(), topic_id(), 4)]),
        &mut out,
    );
    h.absorb(out);
    let (epoch, owned) = h.join_consumer("m1");
    assert_eq!(h.consumer_commit(9, "m1", epoch), 0);
    // With a member, nothing expires.
    for _ in 0..10 {
        h.advance(10_000);
        let t = h.cgh(beat_req("m1", epoch, &owned));
        assert_eq!(h.cgh_response(t).error_code, 0);
    }
    assert_eq!(h.committed(G, TOPIC, 0), 5);
    let t = h.cgh(beat_req("m1", -1, &[]).with_member_epoch(-1));
    assert_eq!(h.cgh_response(t).error_code, 0);
    // Empty: the offsets (committed >60 s ago) go at the next check, and the group with them.
    h.advance(10_000);
    assert!(!h.c.is_consumer_group(G));
    assert!(!h.disk.offsets.contains_key(G));
    assert!(!h.disk.consumer_records.contains_key(G));
    assert!(h.events.contains(&Event::GroupDeleted { group: G.into() }));
}
