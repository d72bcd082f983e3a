//! Classic members of a consumer group, continued: Kafka's
//! `testConsumerGroupMemberUsingClassicProtocolFencedWhen…` and `…BatchLeaveGroup…` cases, the
//! offset fence of a classic member, its record, and the classic describe and list views.

use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, HeartbeatRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::Encodable;

use super::classic::{cx, stable_with_classic, with_consumer_member, Cj, Classic};
use super::*;
use crate::group::consumer::{FenceCause, OffsetFence};

#[test]
fn test_consumer_group_member_using_classic_protocol_fenced_when_session_timeout() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    h.classic_member("c", &["foo"]);
    let epoch = h.group().group_epoch;
    h.take_events();
    h.advance(10_000);
    assert!(!h.group().members.contains_key("c"));
    assert_eq!(h.group().group_epoch, epoch + 1);
    assert!(h.take_events().contains(&ConsumerEvent::MemberFenced {
        group: G.into(),
        cause: FenceCause::SessionTimeout,
    }));
}

#[test]
fn test_consumer_group_member_using_classic_protocol_fenced_when_join_timeout() {
    let mut h = H::new();
    stable_with_classic(&mut h);
    h.hb(Hb::join("b", &["foo"]));
    // Told to rejoin; it keeps heartbeating but never rejoins within its rebalance timeout.
    h.take_events();
    for _ in 0..3 {
        assert_eq!(h.cbeat("c", 2), 27);
        h.advance(9_000);
    }
    assert_eq!(h.cbeat("c", 2), 27);
    h.advance(3_000);
    assert!(!h.group().members.contains_key("c"));
    assert!(h.take_events().contains(&ConsumerEvent::MemberFenced {
        group: G.into(),
        cause: FenceCause::JoinTimeout,
    }));
}

#[test]
fn test_consumer_group_member_using_classic_protocol_fenced_when_sync_timeout() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    let r = h.cjoin(Cj::new("c", &["foo"], &[]));
    assert_eq!(r.error_code, 0);
    for _ in 0..3 {
        h.advance(9_000);
        h.cbeat("c", r.generation_id);
    }
    h.advance(3_000);
    assert!(
        !h.group().members.contains_key("c"),
        "no SyncGroup in 30000 ms"
    );
}

#[test]
fn test_consumer_group_member_using_classic_protocol_batch_leave_group() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    h.classic_member("c", &["foo"]);
    let d = h.cjoin(Cj::new("", &["foo", "bar"], &[]).instance("i-d"));
    let d_id = d.member_id.to_string();
    assert!(h.group().subscription_metadata.contains_key("bar"));
    let epoch = h.group().group_epoch;
    // By id, by instance alone (an admin removal), unknown, and a consumer-protocol member.
    let r = h.cleave(&[("c", None), ("", Some("i-d")), ("x", None), ("a", None)]);
    let errors: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(errors, vec![0, 0, 25, 25]);
    assert_eq!(r.members[1].member_id.as_str(), d_id);
    let g = h.group();
    assert_eq!(g.members.keys().collect::<Vec<_>>(), vec!["a"]);
    assert_eq!(g.group_epoch, epoch + 1, "one bump for the batch");
    assert!(
        !g.subscription_metadata.contains_key("bar"),
        "the subscription metadata follows"
    );
}

#[test]
fn test_classic_group_leave_to_consumer_group_without_valid_leave_group_member() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    let epoch = h.group().group_epoch;
    let r = h.cleave(&[("x", None), ("", Some("nobody"))]);
    assert_eq!(
        r.members.iter().map(|m| m.error_code).collect::<Vec<_>>(),
        vec![25, 25]
    );
    assert_eq!(h.group().group_epoch, epoch);
    // v0–2 answer one top-level error.
    let req = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(G)))
        .with_member_id(s("x"));
    let r = h.c.classic_leave(h.now, &cx(1), &req, &mut Vec::new());
    assert_eq!(r.error_code, 25);
}

#[test]
fn test_validate_offset_commit_of_classic_member() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    let (generation, _) = h.classic_member("c", &["foo"]);
    // Any OffsetCommit version; the generation must be the member epoch.
    assert_eq!(
        h.c.fence_offset_commit(G, "c", generation, 2),
        OffsetFence::Accept
    );
    assert_eq!(
        h.c.fence_offset_commit(G, "c", generation - 1, 8),
        OffsetFence::Refuse(22)
    );
    assert_eq!(
        h.c.fence_offset_fetch(G, Some("c"), generation + 1),
        OffsetFence::Refuse(22)
    );
    // A consumer-protocol member still needs v9+ and its epoch.
    assert_eq!(
        h.c.fence_offset_commit(G, "a", 1, 8),
        OffsetFence::Refuse(35)
    );
}

#[test]
fn test_consumer_heartbeat_replaces_classic_static_member() {
    // Kafka's `testConsumerGroupHeartbeatFromExistingClassicStaticMember`: a consumer-protocol
    // incarnation of a classic static member takes over without waiting for a release.
    let mut h = H::new();
    with_consumer_member(&mut h);
    let r = h.cjoin(Cj::new("", &["foo"], &[]).instance("i-c"));
    let old = r.member_id.to_string();
    let r = h.hb(Hb::join("c2", &["foo"]).instance("i-c"));
    assert_eq!(r.error_code, 0);
    let g = h.group();
    assert!(!g.members.contains_key(&old));
    assert!(!g.members["c2"].uses_classic_protocol());
}

#[test]
fn test_classic_member_survives_record_and_load() {
    let mut h = H::new();
    let a = with_consumer_member(&mut h);
    h.classic_member("c", &["foo"]);
    h.hb(Hb::beat("a", 1, &a));
    let record = h.c.record(G).unwrap();
    let json = serde_json::to_string(&record).unwrap();
    assert!(json.contains("\"classic\""));
    let back: crate::group::consumer::ConsumerGroupRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
    let mut h2 = H::new();
    assert!(h2.c.load(h2.now, vec![back], &mut Vec::new()).is_empty());
    let m = &h2.group().members["c"];
    assert_eq!(m.classic, h.group().members["c"].classic);
    // Its session is its classic session timeout, not the consumer one.
    h2.advance(10_000);
    assert!(!h2.group().members.contains_key("c"));
    assert!(h2.group().members.contains_key("a"));
    // A record written before classic members were served still loads.
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    for m in value["members"].as_array_mut().unwrap() {
        m.as_object_mut().unwrap().remove("classic");
    }
    let r: crate::group::consumer::ConsumerGroupRecord = serde_json::from_value(value).unwrap();
    assert!(r.members.iter().all(|m| m.classic.is_none()));
}

#[test]
fn test_describe_groups_and_list_groups_of_a_consumer_group() {
    let mut h = H::new();
    with_consumer_member(&mut h);
    // Kafka 4 looks the id up as a classic group: Dead, and from v6 GROUP_ID_NOT_FOUND.
    let d = h.c.describe_classic(G, 5).unwrap();
    assert_eq!((d.group_state.as_str(), d.error_code), ("Dead", 0));
    let d = h.c.describe_classic(G, 6).unwrap();
    assert_eq!(d.error_code, 69);
    assert_eq!(
        d.error_message.as_ref().map(|m| m.as_str()),
        Some("Group g is not a classic group.")
    );
    assert!(h.c.describe_classic("other", 6).is_none());
    let l = h.c.list(&[], &[]);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].group_state.as_str(), "Stable");
    assert_eq!(l[0].group_type.as_str(), "consumer");
    assert_eq!(l[0].protocol_type.as_str(), "consumer");
    assert_eq!(h.c.list(&["STABLE"], &["Consumer"]).len(), 1);
    assert!(h.c.list(&["empty"], &[]).is_empty());
    assert!(h.c.list(&[], &["classic"]).is_empty());
}

#[test]
fn test_consumer_group_describe_with_classic_member() {
    let mut h = H::new();
    stable_with_classic(&mut h);
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(G))]);
    let d = h.c.describe(&req);
    let types: Vec<(String, i8)> = d.groups[0]
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.member_type))
        .collect();
    assert_eq!(types, vec![("a".into(), 1), ("c".into(), 0)]);
}

/// Every answer of the classic APIs encodes at the version it was asked at (success and error).
#[test]
fn classic_responses_encode_at_every_version() {
    fn encodes(r: &impl Encodable, v: i16) {
        let mut buf = bytes::BytesMut::new();
        assert!(r.encode(&mut buf, v).is_ok(), "v{v}");
    }
    let mut h = H::new();
    with_consumer_member(&mut h);
    for v in 0..=9 {
        let mut j = Cj::new(&format!("c{v}"), &["foo"], &[]);
        j.version = v;
        let ok = h.cjoin(j.clone());
        assert_eq!(ok.error_code, 0, "v{v}");
        encodes(&ok, v);
        let bad = h.cjoin(j.with(|r| r.protocol_type = s("connect")));
        assert_eq!(bad.error_code, 23);
        encodes(&bad, v);
    }
    let unknown = h.cjoin(Cj::new("", &["foo"], &[]));
    assert_eq!(unknown.error_code, 79);
    encodes(&unknown, 5);
    for v in 0..=5 {
        for member in ["c0", "nobody"] {
            let mut req = SyncGroupRequest::default()
                .with_group_id(GroupId(s(G)))
                .with_member_id(s(member))
                .with_generation_id(h.epoch_of("c0"));
            if v >= 5 {
                req = req
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")));
            }
            let r = h.c.classic_sync(h.now, &cx(v), &req, &mut Vec::new());
            encodes(&r, v);
        }
    }
    for v in 0..=4 {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_member_id(s("c0"))
            .with_generation_id(h.epoch_of("c0"));
        encodes(
            &h.c.classic_heartbeat(h.now, &cx(v), &req, &mut Vec::new()),
            v,
        );
    }
    for v in 0..=5 {
        let mut req = LeaveGroupRequest::default().with_group_id(GroupId(s(G)));
        if v >= 3 {
            req.members = vec![
                kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                    .with_member_id(s(&format!("c{v}"))),
            ];
        } else {
            req.member_id = s(&format!("c{v}"));
        }
        let r = h.c.classic_leave(h.now, &cx(v), &req, &mut Vec::new());
        assert_eq!(r.error_code, 0);
        encodes(&r, v);
    }
}
