//! §6 I (session, join and new-member timeouts) and J (leader election).

use super::*;
use crate::group::timers::TimerKey;
use crate::group::EvictionCause;
use crate::group::GroupState::*;

#[test]
fn i1_silent_member_is_removed_at_its_session_timeout_not_before() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    assert_eq!(h.heartbeat(&ids[1], 1), 0);
    for _ in 0..3 {
        h.advance(3000);
        assert_eq!(h.heartbeat(&ids[0], 1), 0);
    }
    h.advance(999);
    assert_eq!(h.member_ids().len(), 2);
    h.advance(1);
    assert_eq!(h.member_ids(), vec![ids[0].clone()]);
    assert!(h.events.contains(&Event::MemberEvicted {
        group: G.into(),
        cause: EvictionCause::SessionExpiry
    }));
    assert_eq!(h.heartbeat(&ids[0], 1), 27);
    let t = h.join(jr().member(&ids[0]));
    assert_eq!((h.jres(t).generation_id, h.jres(t).members.len()), (2, 1));
}

#[test]
fn i2_heartbeats_keep_a_member() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    for _ in 0..20 {
        h.advance(3000);
        for id in &ids {
            assert_eq!(h.heartbeat(id, 1), 0);
        }
    }
    assert_eq!((h.member_ids().len(), h.state()), (2, Stable));
}

#[test]
fn i3_valid_offset_commits_keep_a_member() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    for _ in 0..20 {
        h.advance(3000);
        assert_eq!(h.heartbeat(&ids[0], 1), 0);
        assert_eq!(h.commit(&ids[1], 1), vec![0, 0]);
    }
    assert_eq!((h.member_ids().len(), h.state()), (2, Stable));
}

/// G(3) Stable gen 1, then M1 and M2 rejoin; M3 heartbeats (27) but never rejoins.
fn preparing_with_silent_m3(h: &mut Harness, ids: &[String]) -> (Token, Token) {
    let t1 = h.join(jr().member(&ids[0]));
    let t2 = h.join(jr().member(&ids[1]));
    assert_eq!(h.state(), PreparingRebalance);
    (t1, t2)
}

#[test]
fn i4_member_that_does_not_rejoin_is_removed_at_the_rebalance_timeout() {
    let mut h = Harness::new();
    let ids = h.stable(3);
    let (t1, t2) = preparing_with_silent_m3(&mut h, &ids);
    for _ in 0..9 {
        h.advance(3000);
        assert_eq!(h.heartbeat(&ids[2], 1), 27);
    }
    h.advance(2999);
    assert!(!h.answered(t1));
    h.advance(1);
    assert_eq!((h.jres(t1).generation_id, h.jres(t2).generation_id), (2, 2));
    assert_eq!(h.member_ids(), ids[..2].to_vec());
}

#[test]
fn i5_group_rebalance_timeout_is_the_maximum_over_members() {
    let mut h = Harness::new();
    let t = (0..3)
        .map(|i| h.new_member(jr().rebalance(if i == 2 { 60_000 } else { 30_000 })))
        .collect::<Vec<_>>();
    let ids: Vec<String> = t.iter().map(|(id, _)| id.clone()).collect();
    h.advance_until_answered(&t.iter().map(|(_, t)| *t).collect::<Vec<_>>(), 1000, 10_000);
    h.sync_all(&ids, "A");
    let (t1, _) = preparing_with_silent_m3(&mut h, &ids);
    for _ in 0..19 {
        h.advance(3000);
        assert_eq!(h.heartbeat(&ids[2], 1), 27);
    }
    h.advance(2999);
    assert!(!h.answered(t1));
    h.advance(1);
    assert_eq!(h.jres(t1).generation_id, 2);
}

#[test]
fn i6_member_parked_in_join_longer_than_its_session_is_not_expired() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t1 = h.join(jr().member(&ids[0]));
    for _ in 0..6 {
        h.advance(3000);
        assert_eq!(h.heartbeat(&ids[1], 1), 27);
    }
    assert!(h.member_ids().contains(&ids[0]));
    assert!(!h.answered(t1));
    h.advance(12_000);
    assert_eq!(h.jres(t1).generation_id, 2);
}

#[test]
fn i7_new_member_parked_past_the_join_timeout_gets_25_and_is_removed() {
    let mut h = Harness::new();
    let ids = h.stable_with(1, jr().rebalance(600_000));
    let (m2, t2) = h.new_member(jr());
    assert_eq!(h.state(), PreparingRebalance);
    for _ in 0..99 {
        h.advance(3000);
        assert_eq!(h.heartbeat(&ids[0], 1), 27);
    }
    assert!(!h.answered(t2));
    h.advance(3000);
    assert_eq!(
        (h.jres(t2).error_code, h.jres(t2).member_id.as_str()),
        (25, "")
    );
    assert!(!h.member_ids().contains(&m2));
    assert!(h.events.contains(&Event::MemberEvicted {
        group: G.into(),
        cause: EvictionCause::JoinTimeout
    }));
}

#[test]
fn i8_join_phase_with_no_static_member_rejoined_is_extended() {
    let mut h = Harness::new();
    let j = jr().session(60_000);
    let t1 = h.join(j.clone().instance("s1"));
    let t2 = h.join(j.clone().instance("s2"));
    h.advance_until_answered(&[t1, t2], 1000, 10_000);
    let ids = vec![
        h.jres(t1).member_id.to_string(),
        h.jres(t2).member_id.to_string(),
    ];
    h.sync_all(&ids, "A");
    let t3 = h.join(j.clone().v(3));
    assert!(!h.answered(t3));
    let m3 = h.member_ids().last().unwrap().clone();
    h.leave(3, G, &[(&m3, None)]);
    assert_eq!(h.state(), PreparingRebalance);
    h.advance(30_000);
    assert_eq!((h.state(), h.gen()), (PreparingRebalance, 1));
    assert_eq!(
        h.c.timers.deadline(&TimerKey::Join(G.into())),
        Some(h.now + 30_000)
    );
}

// ---- J. Leader ----------------------------------------------------------------------------------

#[test]
fn j1_first_member_is_the_leader_of_generation_1() {
    let mut h = Harness::new();
    let tokens: Vec<Token> = (0..3).map(|_| h.join(jr().v(3))).collect();
    h.advance_until_answered(&tokens, 1000, 30_000);
    let first = h.jres(tokens[0]).member_id.clone();
    assert!(tokens
        .iter()
        .all(|t| h.jres(*t).leader == first && h.jres(*t).generation_id == 1));
}

#[test]
fn j2_leader_leaving_after_others_rejoined_hands_over_leadership() {
    let mut h = Harness::new();
    let ids = h.stable(3);
    let t2 = h.join(jr().member(&ids[1]).protos(&[("range", "changed")]));
    let t3 = h.join(jr().member(&ids[2]));
    assert_eq!(h.state(), PreparingRebalance);
    h.leave(3, G, &[(&ids[0], None)]);
    let (r2, r3) = (h.jres(t2), h.jres(t3));
    assert_eq!((r2.generation_id, r3.generation_id), (2, 2));
    let leader = r2.leader.to_string();
    assert!(leader == ids[1] || leader == ids[2]);
    assert_eq!(r3.leader.as_str(), leader);
    let with_members: Vec<&str> = [r2, r3]
        .iter()
        .filter(|r| !r.members.is_empty())
        .map(|r| r.member_id.as_str())
        .collect();
    assert_eq!(with_members, vec![leader.as_str()]);
}

#[test]
fn j3_leader_that_never_rejoins_is_replaced_at_the_join_timeout() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t2 = h.join(jr().member(&ids[1]).protos(&[("range", "changed")]));
    for _ in 0..9 {
        h.advance(3000);
        assert_eq!(h.heartbeat(&ids[0], 1), 27);
    }
    h.advance(3000);
    let r = h.jres(t2);
    assert_eq!(
        (r.generation_id, r.leader.as_str(), r.members.len()),
        (2, ids[1].as_str(), 1)
    );
    assert_eq!(h.member_ids(), vec![ids[1].clone()]);
}

#[test]
fn j4_every_generation_has_exactly_one_leader_response_with_all_members() {
    let mut h = Harness::new();
    let ids = h.stable(3);
    for generation in 2..5 {
        let tokens: Vec<Token> = ids.iter().map(|id| h.join(jr().member(id))).collect();
        let leaders: Vec<&JoinGroupResponse> = tokens
            .iter()
            .map(|t| h.jres(*t))
            .filter(|r| r.member_id == r.leader)
            .collect();
        assert_eq!(leaders.len(), 1);
        assert_eq!(
            (leaders[0].generation_id, leaders[0].members.len()),
            (generation, 3)
        );
        h.sync_all(&ids, "A");
    }
}
