//! Classic-protocol members in a consumer group (Kafka's `testJoiningConsumerGroup…`,
//! `testClassicGroupSyncToConsumerGroup…`, `testClassicGroupHeartbeatToConsumer…`,
//! `testConsumerGroupMemberUsingClassicProtocol…`, `testReconciliationInJoiningConsumerGroupWith…`
//! cases). What a classic client was given in SyncGroup counts as told, so `H::check` also
//! proves that no partition is handed to a classic and a consumer member at once.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::Encodable;

use super::*;
use crate::group::consumer::classic::decode_assignment;
use crate::group::consumer::{ConsumerGroupState, MemberState};

/// A ConsumerProtocolSubscription at `version` (owned partitions need v1+).
pub(in crate::group) fn subscription(
    version: i16,
    topics: &[&str],
    owned: &[(&str, &[i32])],
) -> Bytes {
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| s(t)).collect())
        .with_owned_partitions(
            owned
                .iter()
                .map(|(t, ps)| {
                    OwnedPartition::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(ps.to_vec())
                })
                .collect(),
        );
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    sub.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn topic_id(name: &str) -> u128 {
    match name {
        "foo" => FOO,
        "bar" => BAR,
        other => panic!("unknown topic {other}"),
    }
}

/// A SyncGroup assignment as `Parts` (panics if it does not parse).
pub(super) fn decoded(bytes: &[u8]) -> Parts {
    let a = decode_assignment(bytes).expect("assignment parses");
    let mut p = Parts::new();
    for tp in a.assigned_partitions {
        p.entry(topic_id(tp.topic.as_str()))
            .or_default()
            .extend(tp.partitions);
    }
    p
}

/// A classic JoinGroup under construction: v5, "range" and "cooperative-sticky" protocols
/// (v1 subscription), session 10000, rebalance 30000.
#[derive(Clone)]
pub(super) struct Cj {
    pub req: JoinGroupRequest,
    pub version: i16,
}

impl Cj {
    pub(super) fn new(member: &str, topics: &[&str], owned: &[(&str, &[i32])]) -> Cj {
        let meta = subscription(1, topics, owned);
        let protocols = ["range", "cooperative-sticky"]
            .iter()
            .map(|n| {
                JoinGroupRequestProtocol::default()
                    .with_name(s(n))
                    .with_metadata(meta.clone())
            })
            .collect();
        Cj {
            req: JoinGroupRequest::default()
                .with_group_id(GroupId(s(G)))
                .with_member_id(s(member))
                .with_protocol_type(s("consumer"))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(30_000)
                .with_protocols(protocols),
            version: 5,
        }
    }

    pub(super) fn instance(mut self, i: &str) -> Cj {
        self.req.group_instance_id = Some(s(i));
        self
    }

    pub(super) fn with(mut self, f: impl FnOnce(&mut JoinGroupRequest)) -> Cj {
        f(&mut self.req);
        self
    }
}

pub(super) fn cx(version: i16) -> CallContext {
    CallContext {
        api_version: version,
        client_id: "classic".into(),
        client_host: "/127.0.0.1".into(),
    }
}

/// The classic APIs through the harness, keeping `told` up to date.
pub(super) trait Classic {
    fn cjoin(&mut self, j: Cj) -> JoinGroupResponse;
    fn csync(&mut self, member: &str, generation: i32) -> SyncGroupResponse;
    fn cbeat(&mut self, member: &str, generation: i32) -> i16;
    fn cleave(&mut self, members: &[(&str, Option<&str>)]) -> LeaveGroupResponse;
    /// Joins a classic member with a known id and syncs it: (generation, assignment).
    fn classic_member(&mut self, member: &str, topics: &[&str]) -> (i32, Parts);
}

impl Classic for H {
    fn cjoin(&mut self, j: Cj) -> JoinGroupResponse {
        let r = self
            .c
            .classic_join(self.now, &cx(j.version), &j.req, &mut self.events);
        if r.error_code == 0 {
            // The client holds what it reported owning in its subscription.
            let meta = &j.req.protocols[0].metadata;
            let (_, sub) = crate::group::consumer::classic::decode_subscription(meta).unwrap();
            let mut owned = Parts::new();
            for tp in sub.owned_partitions {
                owned
                    .entry(topic_id(tp.topic.as_str()))
                    .or_default()
                    .extend(tp.partitions);
            }
            self.told
                .insert((G.to_string(), r.member_id.to_string()), owned);
        }
        self.check();
        r
    }

    fn csync(&mut self, member: &str, generation: i32) -> SyncGroupResponse {
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_member_id(s(member))
            .with_generation_id(generation)
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")));
        let r = self
            .c
            .classic_sync(self.now, &cx(5), &req, &mut self.events);
        if r.error_code == 0 {
            // A classic client consumes exactly what its SyncGroup gives it.
            self.told
                .insert((G.to_string(), member.to_string()), decoded(&r.assignment));
        }
        self.check();
        r
    }

    fn cbeat(&mut self, member: &str, generation: i32) -> i16 {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_member_id(s(member))
            .with_generation_id(generation);
        let r = self
            .c
            .classic_heartbeat(self.now, &cx(4), &req, &mut self.events);
        self.check();
        r.error_code
    }

    fn cleave(&mut self, members: &[(&str, Option<&str>)]) -> LeaveGroupResponse {
        let req = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_members(
                members
                    .iter()
                    .map(|(m, i)| {
                        MemberIdentity::default()
                            .with_member_id(s(m))
                            .with_group_instance_id(i.map(s))
                    })
                    .collect(),
            );
        let r = self
            .c
            .classic_leave(self.now, &cx(5), &req, &mut self.events);
        self.check();
        r
    }

    fn classic_member(&mut self, member: &str, topics: &[&str]) -> (i32, Parts) {
        let j = self.cjoin(Cj::new(member, topics, &[]));
        assert_eq!(j.error_code, 0, "join of {member}");
        let r = self.csync(member, j.generation_id);
        assert_eq!(r.error_code, 0, "sync of {member}");
        (j.generation_id, decoded(&r.assignment))
    }
}

/// A consumer-protocol member "a" and a classic member "c", both Stable at epoch 2 with three
/// partitions of foo each. Returns what a holds.
pub(super) fn stable_with_classic(h: &mut H) -> Parts {
    let a = with_consumer_member(h);
    h.classic_member("c", &["foo"]);
    let kept = assigned(&h.hb(Hb::beat("a", 1, &a))).unwrap();
    h.hb(Hb::beat("a", 1, &kept));
    assert_eq!(h.cbeat("c", 2), 27);
    assert_eq!(h.cjoin(Cj::new("c", &["foo"], &[])).generation_id, 2);
    assert_eq!(decoded(&h.csync("c", 2).assignment)[&FOO].len(), 3);
    assert_eq!(h.cbeat("c", 2), 0);
    assert_eq!(h.group().state, ConsumerGroupState::Stable);
    kept
}

/// A consumer-protocol member "a" owning all of foo, Stable at epoch 1.
pub(super) fn with_consumer_member(h: &mut H) -> Parts {
    let a = assigned(&h.hb(Hb::join("a", &["foo"]))).unwrap();
    assert_eq!(a, parts(&[(FOO, &[0, 1, 2, 3, 4, 5])]));
    h.hb(Hb::beat("a", 1, &a));
    a
}

#[test]
fn test_joining_consumer_group_with_new_dynamic_member() {
    let mut h = H::new();
    let a = with_consumer_member(&mut h);
    assert!(h.c.serves_classic_join(G));
    // v4+: an unknown dynamic member is given an id first.
    let r = h.cjoin(Cj::new("", &["foo"], &[]));
    assert_eq!(r.error_code, 79);
    let id = r.member_id.to_string();
    assert!(!id.is_empty());
    assert!(!h.group().members.contains_key(&id));
    let r = h.cjoin(Cj::new(&id, &["foo"], &[]));
    assert_eq!(r.error_code, 0);
    assert_eq!(r.member_id.as_str(), id);
    assert_eq!(
        r.protocol_type.as_ref().map(|p| p.as_str()),
        Some("consumer")
    );
    assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    assert_eq!(
        r.leader.as_str(),
        "",
        "the coordinator assigns; nobody leads"
    );
    assert!(r.members.is_empty());
    let g = h.group();
    assert_eq!(g.group_epoch, 2);
    let m = &g.members[&id];
    assert!(m.uses_classic_protocol());
    assert_eq!(m.classic.as_ref().unwrap().session_timeout_ms, 10_000);
    assert_eq!(m.rebalance_timeout_ms, 30_000);
    // Its half of foo is still a's: it waits at the new epoch for the release.
    assert_eq!(r.generation_id, 2);
    assert_eq!(m.state, MemberState::UnreleasedPartitions);
    let s1 = h.csync(&id, 2);
    assert_eq!(s1.error_code, 0);
    assert_eq!(s1.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    assert!(decoded(&s1.assignment).is_empty());
    // a revokes, then the classic member is told to rejoin and gets its half.
    let r = h.hb(Hb::beat("a", 1, &a));
    let kept = assigned(&r).unwrap();
    h.hb(Hb::beat("a", 1, &kept));
    assert_eq!(
        h.cbeat(&id, 2),
        27,
        "rejoin to collect the released partitions"
    );
    let r = h.cjoin(Cj::new(&id, &["foo"], &[]));
    assert_eq!(r.generation_id, 2);
    let got = decoded(&h.csync(&id, 2).assignment);
    assert_eq!(got.values().map(BTreeSet::len).sum::<usize>(), 3);
    assert_eq!(h.cbeat(&id, 2), 0);
    assert_eq!(h.group().state, ConsumerGroupState::Stable);
}

#[test]
fn test_classic_join_before_v4_gets_an_id_at_once() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    let mut j = Cj::new("", &["foo"], &[]);
    j.version = 3;
    let r = h.cjoin(j);
    assert_eq!(r.error_code, 0);
    assert!(h.group().members.contains_key(r.member_id.as_str()));
}

#[test]
fn test_joining_consumer_group_throws_exception_if_protocol_is_not_supported() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    let r = h.cjoin(Cj::new("c", &["foo"], &[]).with(|r| r.protocol_type = s("connect")));
    assert_eq!(r.error_code, 23);
    let r = h.cjoin(Cj::new("c", &["foo"], &[]).with(|r| r.protocols.clear()));
    assert_eq!(r.error_code, 23);
    h.classic_member("c", &["foo"]);
    // Every classic member must support one of the joiner's protocols.
    let r = h.cjoin(Cj::new("d", &["foo"], &[]).with(|r| {
        r.protocols.retain(|p| p.name.as_str() == "roundrobin");
        r.protocols.push(
            JoinGroupRequestProtocol::default()
                .with_name(s("roundrobin"))
                .with_metadata(subscription(1, &["foo"], &[])),
        );
    }));
    assert_eq!(r.error_code, 23);
    // Garbage metadata is refused, not a panic.
    let r = h.cjoin(Cj::new("e", &["foo"], &[]).with(|r| {
        r.protocols[0].metadata = Bytes::from_static(&[0xff]);
    }));
    assert_eq!(r.error_code, 23);
    assert!(!h.group().members.contains_key("e"));
}

#[test]
fn test_joining_consumer_group_throws_exception_if_group_over_max_size() {
    let mut h = H::with_config(ConsumerConfig {
        max_size: 1,
        ..ConsumerConfig::default()
    });
    with_consumer_member(&mut h);
    let r = h.cjoin(Cj::new("c", &["foo"], &[]));
    assert_eq!(r.error_code, 81);
}

#[test]
fn test_joining_consumer_group_with_new_static_member() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    // A static member needs no second round, even without an id.
    let r = h.cjoin(Cj::new("", &["foo"], &[]).instance("i-c"));
    assert_eq!(r.error_code, 0);
    let id = r.member_id.to_string();
    assert_eq!(h.group().static_members["i-c"], id);
}

#[test]
fn test_joining_consumer_group_replacing_existing_static_member() {
    let mut h = H::new();
    assert!(!h.c.serves_classic_join(G), "no consumer group yet");
    let a = with_consumer_member(&mut h);
    let old = h.cjoin(Cj::new("", &["foo"], &[]).instance("i-c"));
    let old_id = old.member_id.to_string();
    h.csync(&old_id, old.generation_id);
    let kept = assigned(&h.hb(Hb::beat("a", 1, &a))).unwrap();
    h.hb(Hb::beat("a", 1, &kept));
    h.cjoin(Cj::new(&old_id, &["foo"], &[]).instance("i-c"));
    let before = h.group().members[&old_id].assigned.clone();
    assert_eq!(before.values().map(BTreeSet::len).sum::<usize>(), 3);
    // The instance restarts: a new id takes over, with its partitions and no new group epoch.
    let epoch = h.group().group_epoch;
    let r = h.cjoin(Cj::new("", &["foo"], &[]).instance("i-c"));
    assert_eq!(r.error_code, 0);
    let new_id = r.member_id.to_string();
    assert_ne!(new_id, old_id);
    let g = h.group();
    assert!(!g.members.contains_key(&old_id));
    assert_eq!(g.members[&new_id].assigned, before);
    assert_eq!(g.group_epoch, epoch);
    // The old incarnation is fenced.
    assert_eq!(h.cbeat(&old_id, r.generation_id), 25);
}

#[test]
fn test_static_member_joining_consumer_group_with_unknown_instance_id() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    let r = h.cjoin(Cj::new("known-id", &["foo"], &[]).instance("nobody"));
    assert_eq!(r.error_code, 25);
}

#[test]
fn test_static_member_joining_consumer_group_with_unmatched_member_id() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    h.cjoin(Cj::new("", &["foo"], &[]).instance("i-c"));
    let r = h.cjoin(Cj::new("other", &["foo"], &[]).instance("i-c"));
    assert_eq!(r.error_code, 82);
}

#[test]
fn test_reconciliation_in_joining_consumer_group_with_cooperative_protocol() {
    let mut h = H::new();
    let a = with_consumer_member(&mut h);
    let (_, _) = h.classic_member("c", &["foo"]);
    let kept = assigned(&h.hb(Hb::beat("a", 1, &a))).unwrap();
    h.hb(Hb::beat("a", 1, &kept));
    h.cjoin(Cj::new("c", &["foo"], &[]));
    let (generation, mine) = {
        let r = h.csync("c", 2);
        (2, decoded(&r.assignment))
    };
    assert_eq!(mine.values().map(BTreeSet::len).sum::<usize>(), 3);
    // A third member (consumer protocol) joins: c must give one partition up.
    h.hb(Hb::join("b", &["foo"]));
    assert_eq!(h.cbeat("c", generation), 27);
    let owned: Vec<i32> = mine[&FOO].iter().copied().collect();
    let r = h.cjoin(Cj::new("c", &["foo"], &[("foo", &owned)]));
    // Still owning what it must revoke: same generation, the rest in SyncGroup.
    assert_eq!(r.generation_id, generation);
    assert_eq!(
        h.group().members["c"].state,
        MemberState::UnrevokedPartitions
    );
    let less = decoded(&h.csync("c", generation).assignment);
    assert_eq!(less[&FOO].len(), 2);
    assert_eq!(h.cbeat("c", generation), 27, "rejoin once revoked");
    let owned: Vec<i32> = less[&FOO].iter().copied().collect();
    let r = h.cjoin(Cj::new("c", &["foo"], &[("foo", &owned)]));
    assert_eq!(r.generation_id, 3);
    assert_eq!(h.group().members["c"].state, MemberState::Stable);
    assert_eq!(decoded(&h.csync("c", 3).assignment), less);
    assert_eq!(h.cbeat("c", 3), 0);
}

#[test]
fn test_reconciliation_in_joining_consumer_group_with_eager_protocol() {
    let mut h = H::new();
    let a = with_consumer_member(&mut h);
    h.classic_member("c", &["foo"]);
    let kept = assigned(&h.hb(Hb::beat("a", 1, &a))).unwrap();
    h.hb(Hb::beat("a", 1, &kept));
    h.cjoin(Cj::new("c", &["foo"], &[]));
    h.csync("c", 2);
    h.hb(Hb::join("b", &["foo"]));
    // An eager member revoked everything before rejoining: it moves to the new epoch at once.
    let r = h.cjoin(Cj::new("c", &["foo"], &[]));
    assert_eq!(r.generation_id, 3);
    let got = decoded(&h.csync("c", 3).assignment);
    assert_eq!(got[&FOO].len(), 2);
}

#[test]
fn test_classic_group_sync_to_consumer_group_with_all_consumer_protocol_versions() {
    for version in 0..=3 {
        let mut h = H::new();
        let j = Cj::new("c", &["foo"], &[]).with(|r| {
            for p in &mut r.protocols {
                p.metadata = subscription(version, &["foo"], &[]);
            }
        });
        // The first member of a consumer group is a consumer-protocol one.
        let a = with_consumer_member(&mut h);
        let r = h.cjoin(j);
        let kept = assigned(&h.hb(Hb::beat("a", 1, &a))).unwrap();
        h.hb(Hb::beat("a", 1, &kept));
        let r = h.csync("c", r.generation_id);
        assert_eq!(r.error_code, 0);
        assert_eq!(
            i16::from_be_bytes([r.assignment[0], r.assignment[1]]),
            version,
            "the assignment is encoded at the subscription's version"
        );
    }
}

#[test]
fn test_classic_group_sync_to_consumer_group_errors() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    let r = h.cjoin(Cj::new("", &["foo"], &[]).instance("i-c"));
    let id = r.member_id.to_string();
    let generation = r.generation_id;
    let sync = |member: &str, instance: Option<&str>, gen: i32, pt: &str, pn: &str| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_generation_id(gen)
            .with_protocol_type(Some(s(pt)))
            .with_protocol_name(Some(s(pn)))
    };
    let mut run = |req: SyncGroupRequest| {
        h.c.classic_sync(h.now, &cx(5), &req, &mut Vec::new())
            .error_code
    };
    // testClassicGroupSyncToConsumerGroupWithUnknownMemberId
    assert_eq!(
        run(sync("nobody", None, generation, "consumer", "range")),
        25
    );
    // testClassicGroupSyncToConsumerGroupWithFencedInstanceId
    assert_eq!(
        run(sync("other", Some("i-c"), generation, "consumer", "range")),
        82
    );
    // testClassicGroupSyncToConsumerGroupWithInconsistentGroupProtocol
    assert_eq!(
        run(sync(&id, Some("i-c"), generation, "connect", "range")),
        23
    );
    assert_eq!(
        run(sync(&id, Some("i-c"), generation, "consumer", "roundrobin")),
        23
    );
    // testClassicGroupSyncToConsumerGroupWithIllegalGeneration
    assert_eq!(
        run(sync(&id, Some("i-c"), generation + 1, "consumer", "range")),
        22
    );
    // A consumer-protocol member cannot use the classic APIs.
    assert_eq!(run(sync("a", None, 1, "consumer", "range")), 25);
    assert_eq!(
        run(sync(&id, Some("i-c"), generation, "consumer", "range")),
        0
    );
}

#[test]
fn test_classic_group_sync_to_consumer_group_rebalance_in_progress() {
    let mut h = H::new();
    stable_with_classic(&mut h);
    h.hb(Hb::join("b", &["foo"]));
    assert_eq!(h.csync("c", 2).error_code, 27);
    // Told to rejoin: the join timeout (its rebalance timeout) runs from now.
    for _ in 0..3 {
        h.advance(9_000);
        h.cbeat("c", 2);
    }
    h.advance(2_999);
    assert!(h.group().members.contains_key("c"));
    h.advance(1);
    assert!(!h.group().members.contains_key("c"));
}

#[test]
fn test_classic_group_heartbeat_to_consumer_group_maintains_session() {
    let mut h = H::new();
    let kept = stable_with_classic(&mut h);
    for _ in 0..5 {
        h.advance(9_000);
        h.hb(Hb::beat("a", 2, &kept));
        assert_eq!(h.cbeat("c", 2), 0);
    }
    assert!(h.group().members.contains_key("c"));
    h.advance(10_000);
    assert!(!h.group().members.contains_key("c"), "session 10000 ms");
}

#[test]
fn test_classic_group_heartbeat_to_consumer_group_errors() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    let r = h.cjoin(Cj::new("", &["foo"], &[]).instance("i-c"));
    let id = r.member_id.to_string();
    let beat = |member: &str, instance: Option<&str>, gen: i32| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_generation_id(gen)
    };
    let mut run = |req: HeartbeatRequest| {
        h.c.classic_heartbeat(h.now, &cx(4), &req, &mut Vec::new())
            .error_code
    };
    // testClassicGroupHeartbeatToConsumerWithUnknownMember
    assert_eq!(run(beat("nobody", None, 1)), 25);
    // testClassicGroupHeartbeatToConsumerWithFencedInstanceId
    assert_eq!(run(beat("other", Some("i-c"), r.generation_id)), 82);
    // testClassicGroupHeartbeatToConsumerWithIllegalGenerationId
    assert_eq!(run(beat(&id, Some("i-c"), r.generation_id + 1)), 22);
    // testClassicGroupHeartbeatToConsumerWithMemberNotUsingClassicProtocol
    assert_eq!(run(beat("a", None, 1)), 25);
}
