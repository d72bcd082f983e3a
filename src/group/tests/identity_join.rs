//! §6 A (identity: a member is its member id, nothing else) and B (JoinGroup basics, KIP-394,
//! delayed initial join, group size).

use super::*;
use crate::group::GroupState::*;

// ---- A. Identity -------------------------------------------------------------------------------

/// A1 + A6: two consumers sharing client.id "sarama" on two connections are two members.
#[test]
fn a1_same_client_id_on_two_connections_are_two_members() {
    let mut h = Harness::new();
    let (m1, t1) = h.new_member(jr().client("sarama").host("/10.0.0.1"));
    let (m2, t2) = h.new_member(jr().client("sarama").host("/10.0.0.2"));
    assert_ne!(m1, m2);
    assert!(m1.starts_with("sarama-") && m2.starts_with("sarama-"));
    h.advance_until_answered(&[t1, t2], 1000, 10_000);
    let (r1, r2) = (h.jres(t1).clone(), h.jres(t2).clone());
    assert_eq!((r1.generation_id, r2.generation_id), (1, 1));
    assert_eq!(r1.leader.as_str(), m1);
    assert_eq!(r1.members.len(), 2);
    assert!(r2.members.is_empty());
}

#[test]
fn a2_two_joins_pipelined_on_one_connection_are_two_members() {
    let mut h = Harness::new();
    let j = jr().client("sarama").host("/10.0.0.1");
    let (first, second) = (h.join(j.clone()), h.join(j.clone()));
    let (m1, m2) = (
        h.jres(first).member_id.to_string(),
        h.jres(second).member_id.to_string(),
    );
    assert_ne!(m1, m2);
    let (t1, t2) = (h.join(j.clone().member(&m1)), h.join(j.member(&m2)));
    h.advance_until_answered(&[t1, t2], 1000, 10_000);
    assert_eq!(h.member_ids(), vec![m1, m2]);
}

#[test]
fn a3_member_on_a_new_connection_keeps_its_membership() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let mut r = HeartbeatRequest::default();
    r.group_id = s(G).into();
    r.member_id = s(&ids[0]);
    r.generation_id = 1;
    let t = h.send(4, "c", "/10.9.9.9", Request::Heartbeat(r));
    assert!(matches!(&h.replies[&t], Response::Heartbeat(r) if r.error_code == 0));
    assert_eq!(h.member_ids().len(), 2);
    assert_eq!(h.state(), Stable);
}

#[test]
fn a4_rejoin_from_new_connection_same_protocols_answers_current_generation() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t = h.join(jr().member(&ids[1]).host("/10.9.9.9"));
    let r = h.jres(t);
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert_eq!(r.leader.as_str(), ids[0]);
    assert!(r.members.is_empty());
    assert_eq!(h.state(), Stable);
}

#[test]
fn a5_join_v3_without_member_id_adds_members_without_79() {
    let mut h = Harness::new();
    let t1 = h.join(jr().v(3).client("sarama"));
    let t2 = h.join(jr().v(3).client("sarama"));
    assert!(!h.answered(t1) && !h.answered(t2));
    h.advance_until_answered(&[t1, t2], 1000, 10_000);
    assert_eq!((h.jres(t1).generation_id, h.jres(t2).generation_id), (1, 1));
    assert_ne!(h.jres(t1).member_id, h.jres(t2).member_id);
    assert_eq!(h.member_ids().len(), 2);
}

#[test]
fn a6_describe_shows_two_members_with_the_same_client_id() {
    let mut h = Harness::new();
    h.stable_with(2, jr().client("sarama"));
    let d = h.describe();
    assert_eq!(d.members.len(), 2);
    assert!(d.members.iter().all(|m| m.client_id.as_str() == "sarama"));
    assert_ne!(d.members[0].member_id, d.members[1].member_id);
}

// ---- B. JoinGroup basics -------------------------------------------------------------------------

#[test]
fn b1_new_member_v4_gets_79_and_the_group_is_unchanged() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    let t = h.join(jr().v(4));
    let r = h.jres(t);
    assert_eq!((r.error_code, r.generation_id), (79, -1));
    assert!(r.member_id.starts_with("c-"));
    assert_eq!((h.state(), h.gen()), (Stable, 1));
    assert_eq!(h.heartbeat(&ids[0], 1), 0);
}

#[test]
fn b2_pending_member_joining_with_its_id_starts_a_rebalance() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    let (p, tp) = h.new_member(jr().v(4));
    assert!(!h.answered(tp));
    assert_eq!(h.state(), PreparingRebalance);
    assert_eq!(h.heartbeat(&ids[0], 1), 27);
    let t1 = h.join(jr().member(&ids[0]));
    assert_eq!((h.jres(t1).generation_id, h.jres(tp).generation_id), (2, 2));
    assert_eq!(h.jres(tp).member_id.as_str(), p);
}

#[test]
fn b3_pending_member_that_never_returns_expires_after_its_session() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    let t = h.join(jr().v(4).session(10_000));
    let p = h.jres(t).member_id.to_string();
    h.advance(5000);
    assert_eq!(h.heartbeat(&ids[0], 1), 0);
    h.advance(4999);
    assert!(h.group().pending_join.contains(&p));
    h.advance(1);
    assert!(h.group().pending_join.is_empty());
    assert_eq!((h.state(), h.gen(), h.member_ids().len()), (Stable, 1, 1));
}

fn preparing_with_pending() -> (Harness, String, Token, String) {
    let mut h = Harness::new();
    let ids = h.stable(1);
    let t = h.join(jr().v(4));
    let p = h.jres(t).member_id.to_string();
    let t1 = h.join(jr().member(&ids[0]));
    assert_eq!(h.state(), PreparingRebalance);
    (h, ids[0].clone(), t1, p)
}

#[test]
fn b4_join_waits_for_pending_member_then_completes_when_it_joins() {
    let (mut h, _, t1, p) = preparing_with_pending();
    h.advance(5000);
    assert!(!h.answered(t1));
    let tp = h.join(jr().member(&p));
    assert_eq!((h.jres(t1).generation_id, h.jres(tp).generation_id), (2, 2));
    assert_eq!(h.member_ids().len(), 2);
}

#[test]
fn b4_join_waits_for_pending_member_then_completes_when_it_times_out() {
    let (mut h, _, t1, _) = preparing_with_pending();
    h.advance(9999);
    assert!(!h.answered(t1));
    h.advance(1);
    assert_eq!(h.jres(t1).generation_id, 2);
    assert_eq!(h.member_ids().len(), 1);
}

#[test]
fn b5_join_with_unknown_member_id_does_not_create_the_group() {
    let mut h = Harness::new();
    let t = h.join(jr().member("x-1"));
    assert_eq!(h.jres(t).error_code, 25);
    assert_eq!(h.c.group_count(), 0);
}

#[test]
fn b6_join_with_bogus_member_id_changes_nothing() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    let t = h.join(jr().member("bogus"));
    assert_eq!(h.jres(t).error_code, 25);
    assert_eq!((h.state(), h.gen(), h.member_ids()), (Stable, 1, ids));
}

#[test]
fn b7_session_timeout_out_of_range_is_26_and_creates_nothing() {
    let mut h = Harness::new();
    for session in [5999, 1_800_001] {
        let t = h.join(jr().session(session));
        assert_eq!(h.jres(t).error_code, 26);
    }
    assert_eq!(h.c.group_count(), 0);
}

#[test]
fn b8_empty_group_id_is_24_for_join_sync_heartbeat_leave() {
    let mut h = Harness::new();
    let t = h.join(jr().group(""));
    assert_eq!(h.jres(t).error_code, 24);
    let t = h.sync_v(3, "", "m", 1, &[]);
    assert_eq!(h.sres(t).error_code, 24);
    assert_eq!(h.heartbeat_full("", "m", None, 1), 24);
    assert_eq!(h.leave(1, "", &[("m", None)]).error_code, 24);
    assert_eq!(h.leave(3, "", &[("m", None)]).error_code, 24);
}

#[test]
fn b9_initial_delay_is_extended_while_members_keep_arriving() {
    let mut h = Harness::new();
    let t1 = h.join(jr().v(3).rebalance(10_000));
    h.advance(2000);
    let t2 = h.join(jr().v(3).rebalance(10_000));
    h.advance(3999);
    assert!(!h.answered(t1) && !h.answered(t2));
    h.advance(1);
    assert_eq!(h.now, 6000);
    assert_eq!((h.jres(t1).generation_id, h.jres(t2).generation_id), (1, 1));
}

/// Kafka's timer arithmetic completes this at 6000 (the second delay ends there, with nothing
/// left of the rebalance timeout); GROUP_SEMANTICS.md says 6001, i.e. "by then".
#[test]
fn b10_initial_delay_is_capped_by_the_rebalance_timeout() {
    let mut h = Harness::new();
    let t1 = h.join(jr().v(3).rebalance(6000));
    let t2 = h.join(jr().v(3).rebalance(6000));
    h.advance(3001);
    let t3 = h.join(jr().v(3).rebalance(6000));
    h.advance(2998);
    assert!(![t1, t2, t3].iter().any(|t| h.answered(*t)));
    h.advance(2);
    assert!([t1, t2, t3].iter().all(|t| h.jres(*t).generation_id == 1));
}

#[test]
fn b11_single_member_waits_for_the_initial_delay() {
    let mut h = Harness::new();
    let t = h.join(jr().v(3));
    h.advance(2999);
    assert!(!h.answered(t));
    h.advance(1);
    assert_eq!(h.jres(t).generation_id, 1);
}

#[test]
fn b11_initial_delay_zero_answers_at_once() {
    let mut h = Harness::with(Config {
        initial_rebalance_delay_ms: 0,
        ..config()
    });
    let t = h.join(jr().v(3));
    assert_eq!(h.jres(t).generation_id, 1);
    assert_eq!(h.state(), CompletingRebalance);
}

#[test]
fn b12_leader_rejoining_stable_group_with_same_protocols_rebalances() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t = h.join(jr().member(&ids[0]));
    assert!(!h.answered(t));
    assert_eq!(h.state(), PreparingRebalance);
    assert_eq!(h.heartbeat(&ids[1], 1), 27);
}

#[test]
fn b13_follower_rejoin_in_completing_rebalance_gets_current_generation() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t1 = h.join(jr().member(&ids[0]));
    h.join(jr().member(&ids[1]));
    assert_eq!(
        (h.state(), h.jres(t1).generation_id),
        (CompletingRebalance, 2)
    );
    let t = h.join(jr().member(&ids[1]));
    let r = h.jres(t);
    assert_eq!(
        (r.error_code, r.generation_id, r.leader.as_str()),
        (0, 2, ids[0].as_str())
    );
    assert!(r.members.is_empty());
    let t = h.join(jr().member(&ids[0]));
    assert_eq!(h.jres(t).members.len(), 2);
    assert_eq!(h.state(), CompletingRebalance);
}

#[test]
fn b14_protocol_is_the_most_voted_among_those_every_member_supports() {
    let mut h = Harness::new();
    let t1 = h.join(jr().v(3).protos(&[("range", "m1-range"), ("rr", "m1-rr")]));
    let t2 = h.join(jr().v(3).protos(&[("rr", "m2-rr"), ("range", "m2-range")]));
    let t3 = h.join(jr().v(3).protos(&[("rr", "m3-rr")]));
    h.advance_until_answered(&[t1, t2, t3], 1000, 10_000);
    let leader = h.jres(t1).clone();
    assert_eq!(leader.protocol_name.as_deref(), Some("rr"));
    let metadata: Vec<Bytes> = leader.members.iter().map(|m| m.metadata.clone()).collect();
    assert_eq!(metadata, vec![b("m1-rr"), b("m2-rr"), b("m3-rr")]);
}

#[test]
fn b15_full_group_answers_81_before_79() {
    let mut h = Harness::with(Config {
        max_group_size: 1,
        ..config()
    });
    let ids = h.stable(1);
    let t = h.join(jr());
    let r = h.jres(t);
    assert_eq!((r.error_code, r.member_id.as_str()), (81, ""));
    assert_eq!((h.state(), h.member_ids()), (Stable, ids));
    assert!(h.group().pending_join.is_empty());
}

/// kelp completes the join as soon as the evicted member is gone (Kafka waits for the join timer).
#[test]
fn b16_last_rejoining_member_of_an_oversized_group_is_evicted() {
    let mut h = Harness::new();
    let ids = h.stable(3);
    h.c.config.max_group_size = 2;
    let t1 = h.join(jr().member(&ids[0]));
    let t2 = h.join(jr().member(&ids[1]));
    let t3 = h.join(jr().member(&ids[2]));
    assert_eq!(
        (h.jres(t3).error_code, h.jres(t3).member_id.as_str()),
        (81, "")
    );
    assert_eq!((h.jres(t1).generation_id, h.jres(t2).generation_id), (2, 2));
    assert_eq!(h.member_ids(), ids[..2].to_vec());
    assert!(h.events.contains(&Event::MemberEvicted {
        group: G.into(),
        cause: crate::group::EvictionCause::MaxSize
    }));
}

#[test]
fn b17_error_response_shape_v6_vs_v7() {
    let mut h = Harness::new();
    let t6 = h.join(jr().v(6).member("x"));
    let t7 = h.join(jr().v(7).member("x"));
    let (r6, r7) = (h.jres(t6), h.jres(t7));
    assert_eq!(
        (r6.error_code, r6.generation_id, r6.leader.as_str()),
        (25, -1, "")
    );
    assert_eq!(r6.protocol_name.as_deref(), Some(""));
    assert_eq!(
        (r7.protocol_name.clone(), r7.protocol_type.clone()),
        (None, None)
    );
    assert_eq!((r7.generation_id, r7.leader.as_str()), (-1, ""));
}
