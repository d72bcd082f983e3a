//! §6 M (the coordinator's side): responses encode and decode at every version of each group API,
//! JoinGroup v0 takes the session timeout as rebalance timeout, SyncGroup v5 echoes the protocol.

use kafka_protocol::protocol::Decodable;

use super::*;
use crate::group::GroupState::*;

/// Encodes at `version` and decodes back.
fn roundtrip<T: Encodable + Decodable>(value: &T, version: i16) -> T {
    let mut buf = BytesMut::new();
    value.encode(&mut buf, version).unwrap();
    let mut bytes = buf.freeze();
    let back = T::decode(&mut bytes, version).unwrap();
    assert!(bytes.is_empty(), "trailing bytes at v{version}");
    back
}

/// M3 from the coordinator's side: at every version the crate knows, each API's response (success
/// and error shapes) encodes, decodes back, and keeps the fields that version carries.
#[test]
fn m3_group_api_responses_round_trip_at_every_version() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    for v in 0..=9 {
        let t = h.join(jr().v(v).member(&ids[1]));
        let r = roundtrip(h.jres(t), v);
        assert_eq!(
            (r.error_code, r.generation_id, r.member_id.as_str()),
            (0, 1, ids[1].as_str())
        );
        let t = h.join(jr().v(v).member("ghost"));
        assert_eq!(roundtrip(h.jres(t), v).error_code, 25);
    }
    for v in 0..=5 {
        let t = h.sync_v(v, G, &ids[1], 1, &[]);
        assert_eq!(roundtrip(h.sres(t), v).assignment, b("A2"));
        let l = h.leave(v, G, &[("ghost", None)]);
        let back = roundtrip(&l, v);
        assert_eq!(
            if v >= 3 {
                back.members[0].error_code
            } else {
                back.error_code
            },
            25
        );
    }
    for v in 0..=4 {
        assert_eq!(h.heartbeat_full(G, &ids[0], None, 1), 0);
        let mut r = HeartbeatRequest::default();
        r.group_id = s(G).into();
        r.member_id = s(&ids[0]);
        r.generation_id = 1;
        let t = h.send(v, "c", "h", Request::Heartbeat(r));
        let Response::Heartbeat(resp) = &h.replies[&t] else {
            panic!()
        };
        assert_eq!(roundtrip(resp, v).error_code, 0);
    }
    for v in 2..=9 {
        let r = h.commit_full(v, G, &ids[0], None, 1, &[("t", 0, 5, "m")]);
        assert_eq!(commit_codes(&roundtrip(&r, v)), vec![0]);
    }
    for v in 0..=6 {
        let mut r = DescribeGroupsRequest::default();
        r.groups = vec![s(G).into(), s("nope").into()];
        r.include_authorized_operations = true;
        let t = h.send(v, "c", "h", Request::DescribeGroups(r));
        let Response::DescribeGroups(d) = &h.replies[&t] else {
            panic!()
        };
        let back = roundtrip(d, v);
        assert_eq!(back.groups[0].members.len(), 2);
        assert_eq!(back.groups[1].group_state.as_str(), "Dead");
    }
    for v in 0..=5 {
        let t = h.send(
            v,
            "c",
            "h",
            Request::ListGroups(ListGroupsRequest::default()),
        );
        let Response::ListGroups(l) = &h.replies[&t] else {
            panic!()
        };
        assert_eq!(roundtrip(l, v).groups.len(), 1);
    }
    for v in 0..=2 {
        let mut r = DeleteGroupsRequest::default();
        r.groups_names = vec![s("nope").into()];
        let t = h.send(v, "c", "h", Request::DeleteGroups(r));
        let Response::DeleteGroups(d) = &h.replies[&t] else {
            panic!()
        };
        assert_eq!(roundtrip(d, v).results[0].error_code, 69);
    }
}

#[test]
fn m3_offset_fetch_responses_round_trip_at_every_version() {
    let mut h = Harness::new();
    h.commit_full(8, G, "", None, -1, &[("t", 0, 5, "m")]);
    for v in 1..=9 {
        let mut r = OffsetFetchRequest::default();
        if v >= 8 {
            let mut g =
                kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default();
            g.group_id = s(G).into();
            g.topics = None;
            r.groups = vec![g];
        } else {
            r.group_id = s(G).into();
            let mut t =
                kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic::default();
            t.name = s("t").into();
            t.partition_indexes = vec![0];
            r.topics = Some(vec![t]);
        }
        let t = h.send(v, "c", "h", Request::OffsetFetch(r));
        let Response::OffsetFetch(resp) = &h.replies[&t] else {
            panic!()
        };
        let back = roundtrip(resp, v);
        let offset = if v >= 8 {
            back.groups[0].topics[0].partitions[0].committed_offset
        } else {
            back.topics[0].partitions[0].committed_offset
        };
        assert_eq!(offset, 5);
    }
}

#[test]
fn m4_join_v0_uses_the_session_timeout_as_rebalance_timeout() {
    let mut h = Harness::new();
    let t = h.join(jr().v(0).session(12_000).rebalance(99_999));
    h.advance(3000);
    assert_eq!(h.jres(t).error_code, 0);
    let id = h.member_ids()[0].clone();
    assert_eq!(h.group().members[&id].rebalance_timeout_ms, 12_000);
}

#[test]
fn m6_sync_v5_echoes_protocol_type_and_name_v4_has_neither() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t = h.sync_v(5, G, &ids[1], 1, &[]);
    let r = h.sres(t).clone();
    assert_eq!(
        (r.protocol_type.as_deref(), r.protocol_name.as_deref()),
        (Some("consumer"), Some("range"))
    );
    let back = roundtrip(&r, 4);
    assert_eq!(
        (back.protocol_type, back.protocol_name, back.assignment),
        (None, None, b("A2"))
    );
    assert_eq!(h.state(), Stable);
}

#[test]
fn m_join_v9_for_a_follower_never_sets_skip_assignment_and_v7_nulls_empty_names() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t = h.join(jr().v(9).member(&ids[1]));
    let r = h.jres(t);
    assert!(!r.skip_assignment);
    assert_eq!(
        (r.protocol_type.as_deref(), r.protocol_name.as_deref()),
        (Some("consumer"), Some("range"))
    );
}
