//! §6 C (a rejoin keeps the assignment) and D (SyncGroup is parked in CompletingRebalance and
//! answered 27 at once only in PreparingRebalance).

use super::*;
use crate::group::GroupState::*;

/// G(n) Stable gen 1, then the leader rejoins and every other member too: CompletingRebalance gen 2.
/// Returns the ids.
fn completing(h: &mut Harness, n: usize) -> Vec<String> {
    let ids = h.stable(n);
    for id in &ids {
        h.join(jr().member(id));
    }
    assert_eq!((h.state(), h.gen()), (CompletingRebalance, 2));
    ids
}

// ---- C. A rejoin keeps the assignment -----------------------------------------------------------

#[test]
fn c1_follower_rejoin_keeps_its_assignment_byte_for_byte() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t = h.join(jr().member(&ids[1]));
    assert_eq!((h.jres(t).error_code, h.jres(t).generation_id), (0, 1));
    let t = h.sync(&ids[1], 1, &[]);
    assert_eq!(h.sres(t).assignment, b("A2"));
    assert_eq!(h.state(), Stable);
}

#[test]
fn c2_changed_metadata_rebalances_and_new_assignments_come_from_the_leader() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t2 = h.join(jr().member(&ids[1]).protos(&[("range", "new-meta")]));
    assert_eq!(h.state(), PreparingRebalance);
    let t1 = h.join(jr().member(&ids[0]));
    assert_eq!((h.jres(t1).generation_id, h.jres(t2).generation_id), (2, 2));
    let leader_members = &h.jres(t1).members;
    assert_eq!(leader_members[1].metadata, b("new-meta"));
    let s2 = h.sync(&ids[1], 2, &[]);
    assert!(!h.answered(s2));
    let s1 = h.sync(&ids[0], 2, &[(&ids[0], "B1"), (&ids[1], "B2")]);
    assert_eq!(
        (h.sres(s1).assignment.clone(), h.sres(s2).assignment.clone()),
        (b("B1"), b("B2"))
    );
}

#[test]
fn c3_repeated_rejoins_with_same_protocols_change_nothing() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    for _ in 0..3 {
        let t = h.join(jr().member(&ids[1]));
        assert_eq!(h.jres(t).generation_id, 1);
    }
    assert_eq!(h.heartbeat(&ids[1], 1), 0);
    assert_eq!(h.gen(), 1);
    let d = h.describe();
    let assignments: Vec<Bytes> = d
        .members
        .iter()
        .map(|m| m.member_assignment.clone())
        .collect();
    assert_eq!(assignments, vec![b("A1"), b("A2")]);
}

#[test]
fn c4_member_the_leader_omits_gets_empty_bytes() {
    let mut h = Harness::new();
    let ids = completing(&mut h, 3);
    let t = h.sync(&ids[0], 2, &[(&ids[0], "B1"), (&ids[1], "B2")]);
    assert_eq!(h.sres(t).assignment, b("B1"));
    let t = h.sync(&ids[2], 2, &[]);
    assert_eq!(
        (h.sres(t).error_code, h.sres(t).assignment.clone()),
        (0, Bytes::new())
    );
}

#[test]
fn c5_new_member_during_completing_rebalance_resets_assignments() {
    let mut h = Harness::new();
    let ids = completing(&mut h, 2);
    let parked = h.sync(&ids[1], 2, &[]);
    assert!(!h.answered(parked));
    let (m3, t3) = h.new_member(jr());
    assert_eq!(h.sres(parked).error_code, 27);
    assert_eq!(h.state(), PreparingRebalance);
    assert!(ids.iter().all(|id| h.assignment(id).is_empty()));
    let t1 = h.join(jr().member(&ids[0]));
    let t2 = h.join(jr().member(&ids[1]));
    assert!([t1, t2, t3].iter().all(|t| h.jres(*t).generation_id == 3));
    let all = vec![ids[0].clone(), ids[1].clone(), m3.clone()];
    h.sync_all(&all, "X");
    assert_eq!(
        [
            h.assignment(&ids[0]),
            h.assignment(&ids[1]),
            h.assignment(&m3)
        ],
        [b("X1"), b("X2"), b("X3")]
    );
}

// ---- D. SyncGroup -------------------------------------------------------------------------------

#[test]
fn d1_follower_sync_waits_for_leader() {
    let mut h = Harness::new();
    let ids = completing(&mut h, 2);
    let follower = h.sync(&ids[1], 2, &[]);
    assert!(!h.answered(follower));
    let leader = h.sync(&ids[0], 2, &[(&ids[0], "B1"), (&ids[1], "B2")]);
    assert_eq!(
        (h.sres(leader).error_code, h.sres(leader).assignment.clone()),
        (0, b("B1"))
    );
    assert_eq!(
        (
            h.sres(follower).error_code,
            h.sres(follower).assignment.clone()
        ),
        (0, b("B2"))
    );
    assert_eq!(h.state(), Stable);
}

#[test]
fn d2_follower_after_leader_is_answered_at_once() {
    let mut h = Harness::new();
    let ids = completing(&mut h, 2);
    let leader = h.sync(&ids[0], 2, &[(&ids[0], "B1"), (&ids[1], "B2")]);
    assert_eq!(h.sres(leader).error_code, 0);
    let follower = h.sync(&ids[1], 2, &[]);
    assert_eq!(
        (
            h.sres(follower).error_code,
            h.sres(follower).assignment.clone()
        ),
        (0, b("B2"))
    );
}

#[test]
fn d3_sync_in_preparing_rebalance_is_27_at_once() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.new_member(jr());
    assert_eq!(h.state(), PreparingRebalance);
    let t = h.sync(&ids[1], 1, &[]);
    assert_eq!(h.sres(t).error_code, 27);
}

#[test]
fn d4_parked_follower_gets_27_when_a_member_leaves() {
    let mut h = Harness::new();
    let ids = completing(&mut h, 3);
    let parked = h.sync(&ids[1], 2, &[]);
    h.leave(3, G, &[(&ids[2], None)]);
    assert_eq!(h.sres(parked).error_code, 27);
    assert_eq!(h.state(), PreparingRebalance);
}

#[test]
fn d4_parked_follower_gets_27_when_a_member_joins() {
    let mut h = Harness::new();
    let ids = completing(&mut h, 2);
    let parked = h.sync(&ids[1], 2, &[]);
    h.join(jr().v(3));
    assert_eq!(h.sres(parked).error_code, 27);
    assert_eq!(h.state(), PreparingRebalance);
}

#[test]
fn d5_sync_with_previous_generation_is_22() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t = h.sync(&ids[1], 0, &[]);
    assert_eq!(h.sres(t).error_code, 22);
}

#[test]
fn d6_sync_unknown_member_unknown_group_empty_group_is_25() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    let t = h.sync("ghost", 1, &[]);
    assert_eq!(h.sres(t).error_code, 25);
    let t = h.sync_v(3, "nope", &ids[0], 1, &[]);
    assert_eq!(h.sres(t).error_code, 25);
    h.leave(3, G, &[(&ids[0], None)]);
    assert_eq!(h.state(), Empty);
    let t = h.sync(&ids[0], 2, &[]);
    assert_eq!(h.sres(t).error_code, 25);
}

#[test]
fn d7_sync_v5_with_null_or_wrong_protocol_is_23_and_changes_nothing() {
    let mut h = Harness::new();
    let ids = completing(&mut h, 2);
    let mut req = SyncGroupRequest::default();
    req.group_id = s(G).into();
    req.member_id = s(&ids[1]);
    req.generation_id = 2;
    req.protocol_type = Some(s("consumer"));
    let t = h.send(5, "c", "h", Request::SyncGroup(req.clone()));
    assert_eq!(h.sres(t).error_code, 23);
    req.protocol_name = Some(s("roundrobin"));
    let t = h.send(5, "c", "h", Request::SyncGroup(req));
    assert_eq!(h.sres(t).error_code, 23);
    assert_eq!(h.state(), CompletingRebalance);
    assert!(h.group().members.values().all(|m| m.sync_waiter.is_none()));
}

#[test]
fn d8_member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut h = Harness::new();
    let ids = completing(&mut h, 3);
    h.sync(
        &ids[0],
        2,
        &[(&ids[0], "B1"), (&ids[1], "B2"), (&ids[2], "B3")],
    );
    h.sync(&ids[1], 2, &[]);
    assert_eq!(h.state(), Stable);
    for _ in 0..9 {
        h.advance(3000);
        for id in &ids {
            assert_eq!(h.heartbeat(id, 2), 0);
        }
    }
    h.advance(2999);
    assert_eq!(h.member_ids().len(), 3);
    h.advance(1);
    assert_eq!(h.member_ids(), ids[..2].to_vec());
    assert_eq!(h.state(), PreparingRebalance);
    assert!(h.events.contains(&Event::MemberEvicted {
        group: G.into(),
        cause: crate::group::EvictionCause::SyncTimeout
    }));
}

#[test]
fn d9_leader_that_never_syncs_is_removed_and_the_parked_follower_gets_27() {
    let mut h = Harness::new();
    let ids = completing(&mut h, 2);
    let parked = h.sync(&ids[1], 2, &[]);
    h.advance(9999);
    assert!(!h.answered(parked));
    h.advance(1);
    assert_eq!(h.sres(parked).error_code, 27);
    assert_eq!(h.member_ids(), vec![ids[1].clone()]);
    assert_eq!(h.state(), PreparingRebalance);
}

#[test]
fn d10_leader_sync_in_stable_does_not_change_assignments() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t = h.sync(&ids[0], 1, &[(&ids[0], "Z1"), (&ids[1], "Z2")]);
    assert_eq!(h.sres(t).assignment, b("A1"));
    let t = h.sync(&ids[1], 1, &[]);
    assert_eq!(h.sres(t).assignment, b("A2"));
}

#[test]
fn d_repeated_parked_sync_supersedes_the_first_with_27() {
    let mut h = Harness::new();
    let ids = completing(&mut h, 2);
    let first = h.sync(&ids[1], 2, &[]);
    let second = h.sync(&ids[1], 2, &[]);
    assert_eq!(h.sres(first).error_code, 27);
    assert!(!h.answered(second));
    h.sync(&ids[0], 2, &[(&ids[1], "B2")]);
    assert_eq!(h.sres(second).assignment, b("B2"));
}
