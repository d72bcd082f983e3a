//! §6 E (Heartbeat: the generation moves once, at join completion; 27 only in PreparingRebalance
//! with the current generation, 22 for any real mismatch) and F (LeaveGroup v0–5).

use bytes::BufMut;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::Decodable;

use super::*;
use crate::group::GroupState::*;
use crate::group::RebalanceReason;

// ---- E. Heartbeat -------------------------------------------------------------------------------

#[test]
fn e1_heartbeat_in_stable_with_current_generation_is_0() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    assert_eq!(h.heartbeat(&ids[1], 1), 0);
}

#[test]
fn e2_heartbeat_during_preparing_rebalance_with_current_generation_is_27() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.new_member(jr());
    assert_eq!((h.state(), h.gen()), (PreparingRebalance, 1));
    assert_eq!(h.heartbeat(&ids[0], 1), 27);
}

#[test]
fn e3_generation_moves_exactly_once_per_join_phase() {
    let mut h = Harness::new();
    let ids = h.stable(3);
    let (_, t4) = h.new_member(jr());
    let first = h.join(jr().member(&ids[1]));
    let again = h.join(jr().member(&ids[1]));
    assert_eq!(h.jres(first).error_code, 27, "superseded join");
    h.leave(3, G, &[(&ids[2], None)]);
    assert_eq!(h.gen(), 1);
    let t1 = h.join(jr().member(&ids[0]));
    assert!([t1, again, t4]
        .iter()
        .all(|t| h.jres(*t).generation_id == 2));
    let bumps = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::GenerationChanged { generation, .. } if *generation == 2))
        .count();
    assert_eq!(bumps, 1);
}

#[test]
fn e4_heartbeat_in_completing_rebalance_with_new_generation_is_0() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.join(jr().member(&ids[0]));
    h.join(jr().member(&ids[1]));
    assert_eq!((h.state(), h.gen()), (CompletingRebalance, 2));
    assert_eq!(h.heartbeat(&ids[1], 2), 0);
}

#[test]
fn e5_static_member_that_did_not_rejoin_gets_22_with_old_generation() {
    let mut h = Harness::new();
    let (s1, t1) = (
        h.join(jr().instance("s1")),
        h.join(jr().instance("s2").session(60_000)),
    );
    h.advance_until_answered(&[s1, t1], 1000, 10_000);
    let (id1, id2) = (
        h.jres(s1).member_id.to_string(),
        h.jres(t1).member_id.to_string(),
    );
    h.sync_all(&[id1.clone(), id2.clone()], "A");
    h.join(jr().member(&id1).instance("s1"));
    assert_eq!(h.state(), PreparingRebalance);
    h.advance(30_000);
    assert_eq!((h.state(), h.gen()), (CompletingRebalance, 2));
    assert!(h.member_ids().contains(&id2));
    assert_eq!(h.heartbeat_full(G, &id2, Some("s2"), 1), 22);
}

#[test]
fn e6_heartbeat_with_next_or_previous_generation_is_22() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    assert_eq!(h.heartbeat(&ids[0], 2), 22);
    assert_eq!(h.heartbeat(&ids[0], 0), 22);
}

#[test]
fn e7_heartbeat_unknown_member_unknown_group_empty_group_is_25() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    assert_eq!(h.heartbeat("ghost", 1), 25);
    assert_eq!(h.heartbeat_full("nope", &ids[0], None, 1), 25);
    h.leave(1, G, &[(&ids[0], None)]);
    assert_eq!(h.state(), Empty);
    assert_eq!(h.heartbeat(&ids[0], 2), 25);
}

#[test]
fn e8_unknown_member_is_checked_before_the_generation() {
    let mut h = Harness::new();
    h.stable(2);
    assert_eq!(h.heartbeat("ghost", 99), 25);
}

#[test]
fn e10_stale_generation_during_preparing_rebalance_is_22() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.new_member(jr());
    assert_eq!(h.state(), PreparingRebalance);
    assert_eq!(h.heartbeat(&ids[1], 0), 22);
}

// ---- F. LeaveGroup ------------------------------------------------------------------------------

#[test]
fn f1_leave_v1_starts_a_rebalance() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let r = h.leave(1, G, &[(&ids[1], None)]);
    assert_eq!((r.error_code, r.members.len()), (0, 0));
    assert_eq!(h.state(), PreparingRebalance);
    assert_eq!(h.heartbeat(&ids[0], 1), 27);
}

#[test]
fn f2_leave_v2_unknown_member_is_top_level_25() {
    let mut h = Harness::new();
    h.stable(2);
    assert_eq!(h.leave(2, G, &[("ghost", None)]).error_code, 25);
}

#[test]
fn f3_leave_v3_batch_makes_one_rebalance() {
    let mut h = Harness::new();
    let ids = h.stable(3);
    let before = h.rebalances();
    let r = h.leave(3, G, &[(&ids[1], None), (&ids[2], None)]);
    assert_eq!(r.error_code, 0);
    assert_eq!(
        r.members.iter().map(|m| m.error_code).collect::<Vec<_>>(),
        vec![0, 0]
    );
    assert_eq!(h.rebalances() - before, 1);
    let t = h.join(jr().member(&ids[0]));
    assert_eq!((h.jres(t).generation_id, h.jres(t).members.len()), (2, 1));
}

#[test]
fn f4_leave_v3_with_a_ghost_answers_per_member() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let r = h.leave(3, G, &[(&ids[1], None), ("ghost", None)]);
    assert_eq!(r.error_code, 0);
    assert_eq!(
        r.members.iter().map(|m| m.error_code).collect::<Vec<_>>(),
        vec![0, 25]
    );
    assert_eq!(r.members[1].member_id.as_str(), "ghost");
    assert_eq!(h.member_ids(), vec![ids[0].clone()]);
}

/// A G(1) group whose only member is renamed "m", so the golden frames of §2.4 apply.
fn group_with_member_m() -> Harness {
    let mut h = Harness::new();
    let ids = h.stable(1);
    let g = h.c.groups.get_mut(G).unwrap();
    g.replace_member_id(&ids[0], "m").unwrap();
    h
}

#[test]
fn f5_leave_v4_golden_request_decodes_and_response_encodes_flexibly() {
    let frame: &[u8] = &[
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x00, 0x00, 0x07, 0x00, 0x01, b'c', 0x00, // header v2
        0x02, b'g', 0x02, 0x02, b'm', 0x00, 0x00, 0x00, // body
    ];
    let mut buf = Bytes::copy_from_slice(frame);
    let header = RequestHeader::decode(&mut buf, 2).unwrap();
    assert_eq!(
        (
            header.request_api_key,
            header.request_api_version,
            header.correlation_id
        ),
        (13, 4, 7)
    );
    assert_eq!(header.client_id.as_deref(), Some("c"));
    let req = LeaveGroupRequest::decode(&mut buf, 4).unwrap();
    assert!(buf.is_empty());
    assert_eq!((req.group_id.as_str(), req.members.len()), ("g", 1));
    assert_eq!(
        (
            req.members[0].member_id.as_str(),
            req.members[0].group_instance_id.clone()
        ),
        ("m", None)
    );

    let mut h = group_with_member_m();
    let t = h.send(4, "c", "h", Request::LeaveGroup(req));
    let Response::LeaveGroup(resp) = &h.replies[&t] else {
        panic!("no leave response")
    };
    let mut out = BytesMut::new();
    let mut rh = ResponseHeader::default();
    rh.correlation_id = 7;
    rh.encode(&mut out, 1).unwrap();
    assert_eq!(&out[..], &[0, 0, 0, 7, 0]);
    let mut body = BytesMut::new();
    resp.encode(&mut body, 4).unwrap();
    let golden: &[u8] = &[
        0, 0, 0, 0, 0, 0, 0x02, 0x02, b'm', 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(&body[..], golden);
    assert_eq!(h.state(), Empty);
}

#[test]
fn f6_leave_v5_with_reason_works_like_v4() {
    let mut h = group_with_member_m();
    let mut buf = BytesMut::new();
    buf.put_slice(&[
        0x02, b'g', 0x02, 0x02, b'm', 0x00, 0x05, b'b', b'y', b'e', b'!', 0x00, 0x00,
    ]);
    let req = LeaveGroupRequest::decode(&mut buf, 5).unwrap();
    assert_eq!(req.members[0].reason.as_deref(), Some("bye!"));
    let t = h.send(5, "c", "h", Request::LeaveGroup(req));
    let Response::LeaveGroup(resp) = &h.replies[&t] else {
        panic!("no leave response")
    };
    assert_eq!((resp.error_code, resp.members[0].error_code), (0, 0));
    assert!(h.events.contains(&Event::RebalanceStarted {
        group: G.into(),
        reason: RebalanceReason::Leave
    }));
}

fn static_pair(h: &mut Harness) -> (String, String) {
    let t1 = h.join(jr().instance("s1"));
    let t2 = h.join(jr().instance("s2"));
    h.advance_until_answered(&[t1, t2], 1000, 10_000);
    let (id1, id2) = (
        h.jres(t1).member_id.to_string(),
        h.jres(t2).member_id.to_string(),
    );
    h.sync_all(&[id1.clone(), id2.clone()], "A");
    (id1, id2)
}

#[test]
fn f7_admin_removal_of_a_static_member_by_instance_id() {
    let mut h = Harness::new();
    let (_, id2) = static_pair(&mut h);
    let r = h.leave(3, G, &[("", Some("s2"))]);
    assert_eq!((r.error_code, r.members[0].error_code), (0, 0));
    assert!(!h.member_ids().contains(&id2));
    assert!(!h.group().static_members.contains_key("s2"));
    assert_eq!(h.state(), PreparingRebalance);
}

#[test]
fn f8_leave_with_stale_id_for_a_static_member_is_82() {
    let mut h = Harness::new();
    let (_, id2) = static_pair(&mut h);
    let r = h.leave(3, G, &[("old-id", Some("s2"))]);
    assert_eq!((r.error_code, r.members[0].error_code), (0, 82));
    assert!(h.member_ids().contains(&id2));
    assert_eq!(h.state(), Stable);
}

#[test]
fn f9_pending_member_leaving_does_not_rebalance() {
    let mut h = Harness::new();
    h.stable(1);
    let t = h.join(jr().v(4));
    let p = h.jres(t).member_id.to_string();
    let before = h.rebalances();
    let r = h.leave(3, G, &[(&p, None)]);
    assert_eq!(r.members[0].error_code, 0);
    assert!(h.group().pending_join.is_empty());
    assert_eq!((h.state(), h.rebalances()), (Stable, before));
}

#[test]
fn f10_last_member_leaving_empties_the_group_and_bumps_the_generation() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    assert_eq!(h.leave(1, G, &[(&ids[0], None)]).error_code, 0);
    assert_eq!((h.state(), h.gen()), (Empty, 2));
}

#[test]
fn f11_leave_for_a_missing_group_v3_per_member_v0_top_level() {
    let mut h = Harness::new();
    let r = h.leave(3, G, &[("m1", None)]);
    assert_eq!((r.error_code, r.members[0].error_code), (0, 25));
    assert_eq!(h.leave(0, G, &[("m1", None)]).error_code, 25);
}

#[test]
fn f12_leave_of_the_last_member_not_rejoined_completes_the_join() {
    let mut h = Harness::new();
    let ids = h.stable(3);
    let t1 = h.join(jr().member(&ids[0]));
    let t2 = h.join(jr().member(&ids[1]));
    assert!(!h.answered(t1));
    h.leave(3, G, &[(&ids[2], None)]);
    assert_eq!((h.jres(t1).generation_id, h.jres(t2).generation_id), (2, 2));
    assert_eq!(h.member_ids().len(), 2);
}

#[test]
fn f13_leader_leaving_answers_parked_follower_27_and_follower_leads_next() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.join(jr().member(&ids[0]));
    h.join(jr().member(&ids[1]));
    let parked = h.sync(&ids[1], 2, &[]);
    h.leave(3, G, &[(&ids[0], None)]);
    assert_eq!(h.sres(parked).error_code, 27);
    let t = h.join(jr().member(&ids[1]));
    let r = h.jres(t);
    assert_eq!(
        (r.generation_id, r.leader.as_str(), r.members.len()),
        (3, ids[1].as_str(), 1)
    );
}

#[test]
fn f_leave_answers_the_leaving_members_parked_join_with_25() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let parked = h.join(jr().member(&ids[0]));
    h.leave(1, G, &[(&ids[0], None)]);
    assert_eq!(
        (h.jres(parked).error_code, h.jres(parked).member_id.as_str()),
        (25, "")
    );
}

#[test]
fn f_member_leaving_while_its_sync_is_parked_gets_25_for_it() {
    let mut h = Harness::new();
    let ids = h.stable(3);
    for id in &ids {
        h.join(jr().member(id));
    }
    let parked = h.sync(&ids[1], 2, &[]);
    h.leave(3, G, &[(&ids[1], None)]);
    assert_eq!(h.sres(parked).error_code, 25);
    assert_eq!(h.state(), PreparingRebalance);
}
