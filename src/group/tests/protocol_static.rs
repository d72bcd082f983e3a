//! §6 G (INCONSISTENT_GROUP_PROTOCOL never mutates anything) and H (static membership, KIP-345/814).

use super::*;
use crate::group::GroupState::*;

/// Everything a failed request must leave untouched.
fn snapshot(h: &Harness) -> String {
    let g = h.group();
    let members: Vec<String> = g
        .members
        .values()
        .map(|m| {
            format!(
                "{}:{:?}:{:?}:{:?}:{}",
                m.id, m.protocols, m.assignment, m.join_waiter, m.session_timeout_ms
            )
        })
        .collect();
    format!(
        "{:?} {} {:?} {:?} {:?} {:?} {:?}",
        g.state, g.generation, g.leader, g.protocol_name, members, g.pending_join, g.pending_sync
    )
}

// ---- G. INCONSISTENT_GROUP_PROTOCOL -------------------------------------------------------------

#[test]
fn g1_new_member_with_other_protocol_type_is_23_and_changes_nothing() {
    let mut h = Harness::new();
    h.stable(2);
    let before = snapshot(&h);
    let t = h.join(jr().ptype("connect"));
    assert_eq!(
        (h.jres(t).error_code, h.jres(t).member_id.as_str()),
        (23, "")
    );
    assert_eq!(snapshot(&h), before);
}

#[test]
fn g2_new_member_with_no_common_protocol_is_23_and_not_pending() {
    let mut h = Harness::new();
    h.stable(2);
    let before = snapshot(&h);
    let t = h.join(jr().protos(&[("cooperative-sticky", "x")]));
    assert_eq!(h.jres(t).error_code, 23);
    assert!(h.group().pending_join.is_empty());
    assert_eq!(h.describe().members.len(), 2);
    assert_eq!(snapshot(&h), before);
}

#[test]
fn g3_failed_rejoin_with_23_changes_nothing() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let before = snapshot(&h);
    let t = h.join(jr().member(&ids[1]).protos(&[("roundrobin", "x")]));
    assert_eq!(
        (h.jres(t).error_code, h.jres(t).member_id.as_str()),
        (23, ids[1].as_str())
    );
    assert_eq!(snapshot(&h), before);
    assert_eq!(h.heartbeat(&ids[1], 1), 0);
    let t = h.sync(&ids[1], 1, &[]);
    assert_eq!(h.sres(t).assignment, b("A2"));
    assert_eq!(h.state(), Stable);
}

#[test]
fn g4_single_member_rejoining_with_only_other_protocols_is_23() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    let before = snapshot(&h);
    let t = h.join(jr().member(&ids[0]).protos(&[("roundrobin", "x")]));
    assert_eq!(h.jres(t).error_code, 23);
    assert_eq!(snapshot(&h), before);
}

#[test]
fn g5_pending_member_with_empty_protocols_stays_pending() {
    let mut h = Harness::new();
    h.stable(1);
    let t = h.join(jr().v(4));
    let p = h.jres(t).member_id.to_string();
    let t = h.join(jr().member(&p).protos(&[]));
    assert_eq!(h.jres(t).error_code, 23);
    assert!(h.group().pending_join.contains(&p));
    let t = h.join(jr().member(&p));
    assert!(!h.answered(t));
    assert!(h.member_ids().contains(&p));
}

/// Pinned choice: a JoinGroup that an Empty group would refuse does not create the group.
#[test]
fn g6_join_creating_a_group_with_no_protocol_is_23_and_no_group() {
    let mut h = Harness::new();
    let t = h.join(jr().ptype(""));
    assert_eq!(h.jres(t).error_code, 23);
    let t = h.join(jr().protos(&[]));
    assert_eq!(h.jres(t).error_code, 23);
    assert_eq!(h.c.group_count(), 0);
}

/// Found by scripts/soak: the only member leaves during the initial delay, so the group is
/// PreparingRebalance with no members. A new member is accepted (Kafka: every protocol is
/// supported by all of no members), not refused with 23.
#[test]
fn g7_joining_a_rebalancing_group_left_without_members_is_accepted() {
    let mut h = Harness::new();
    let first = h.join(jr().v(3));
    let a = h.group().members.keys().next().cloned().expect("a member");
    assert!(!h.answered(first));
    h.leave(1, "g", &[(&a, None)]);
    assert_eq!(h.group().state, GroupState::PreparingRebalance);
    assert!(h.group().members.is_empty());
    let second = h.join(jr().v(3));
    assert!(
        !h.answered(second),
        "parked like any new member, not refused"
    );
    h.advance_until_answered(&[second], 1000, 10_000);
    assert_eq!(h.jres(second).error_code, 0);
}

// ---- H. Static membership -----------------------------------------------------------------------

/// G(2) Stable gen 1 of static members s1 (leader) and s2, holding A1 and A2.
fn static_group(h: &mut Harness, j: Jr) -> (String, String) {
    let t1 = h.join(j.clone().instance("s1"));
    let t2 = h.join(j.instance("s2"));
    h.advance_until_answered(&[t1, t2], 1000, 10_000);
    let (id1, id2) = (
        h.jres(t1).member_id.to_string(),
        h.jres(t2).member_id.to_string(),
    );
    h.sync_all(&[id1.clone(), id2.clone()], "A");
    (id1, id2)
}

#[test]
fn h1_static_member_is_added_without_79() {
    let mut h = Harness::new();
    let t = h.join(jr().instance("s1"));
    assert!(!h.answered(t));
    h.advance(3000);
    assert_eq!(h.jres(t).error_code, 0);
    assert!(h.jres(t).member_id.starts_with("s1-"));
}

#[test]
fn h2_static_restart_in_stable_keeps_generation_and_assignment() {
    let mut h = Harness::new();
    let (id1, id2) = static_group(&mut h, jr());
    let t = h.join(jr().instance("s2"));
    let r = h.jres(t).clone();
    assert_eq!(
        (r.error_code, r.generation_id, r.leader.as_str()),
        (0, 1, id1.as_str())
    );
    assert!(r.members.is_empty());
    assert_ne!(r.member_id.as_str(), id2);
    assert_eq!(h.state(), Stable);
    assert_eq!(h.heartbeat(&id1, 1), 0);
    let t = h.sync_v(3, G, &r.member_id, 1, &[]);
    assert_eq!(h.sres(t).assignment, b("A2"));
}

#[test]
fn h3_old_id_of_a_replaced_static_member_is_fenced() {
    let mut h = Harness::new();
    let (_, old) = static_group(&mut h, jr());
    h.join(jr().instance("s2"));
    assert_eq!(h.heartbeat_full(G, &old, Some("s2"), 1), 82);
    let mut req = SyncGroupRequest::default();
    req.group_id = s(G).into();
    req.member_id = s(&old);
    req.group_instance_id = Some(s("s2"));
    req.generation_id = 1;
    let t = h.send(3, "c", "h", Request::SyncGroup(req));
    assert_eq!(h.sres(t).error_code, 82);
    let r = h.commit_full(8, G, &old, Some("s2"), 1, &[("t", 0, 1, "")]);
    assert_eq!(commit_codes(&r), vec![82]);
    let t = h.join(jr().member(&old).instance("s2"));
    assert_eq!(h.jres(t).error_code, 82);
    assert_eq!(h.heartbeat(&old, 1), 25);
}

#[test]
fn h4_static_rejoin_fences_the_old_parked_join() {
    let mut h = Harness::new();
    let (_, id2) = static_group(&mut h, jr());
    h.join(jr().v(3));
    let old = h.join(jr().member(&id2).instance("s2"));
    assert_eq!(h.state(), PreparingRebalance);
    assert!(!h.answered(old));
    let new = h.join(jr().instance("s2"));
    assert_eq!(
        (h.jres(old).error_code, h.jres(old).member_id.as_str()),
        (82, id2.as_str())
    );
    assert!(!h.answered(new));
    let new_id = h.group().static_members["s2"].clone();
    assert_ne!(new_id, id2);
    assert!(h.group().members[&new_id].join_waiter.is_some());
}

#[test]
fn h5_static_leader_restart_v9_skips_assignment() {
    let mut h = Harness::new();
    let (id1, _) = static_group(&mut h, jr());
    let t = h.join(jr().v(9).instance("s1"));
    let r = h.jres(t).clone();
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert_ne!(r.member_id.as_str(), id1);
    assert_eq!(r.leader, r.member_id);
    assert!(r.skip_assignment);
    assert_eq!(r.members.len(), 2);
    assert_eq!(h.state(), Stable);
}

#[test]
fn h5_static_leader_restart_v8_is_told_the_old_leader_id() {
    let mut h = Harness::new();
    let (id1, _) = static_group(&mut h, jr());
    let t = h.join(jr().v(8).instance("s1"));
    let r = h.jres(t).clone();
    assert_eq!(
        (r.error_code, r.generation_id, r.leader.as_str()),
        (0, 1, id1.as_str())
    );
    assert!(!r.skip_assignment && r.members.is_empty());
    assert_eq!(h.state(), Stable);
    assert_eq!(h.group().leader.as_deref(), Some(r.member_id.as_str()));
}

#[test]
fn h6_static_restart_that_changes_the_selected_protocol_rebalances() {
    let mut h = Harness::new();
    static_group(&mut h, jr().protos(&[("range", "m"), ("rr", "m")]));
    assert_eq!(h.group().protocol_name.as_deref(), Some("range"));
    let t = h.join(jr().instance("s2").protos(&[("rr", "m")]));
    assert!(!h.answered(t));
    assert_eq!(h.state(), PreparingRebalance);
}

#[test]
fn h7_static_restart_in_completing_rebalance_rebalances() {
    let mut h = Harness::new();
    let (id1, id2) = static_group(&mut h, jr());
    h.join(jr().member(&id1).instance("s1"));
    h.join(jr().member(&id2).instance("s2"));
    assert_eq!(h.state(), CompletingRebalance);
    let t = h.join(jr().instance("s2"));
    assert!(!h.answered(t));
    assert_eq!(h.state(), PreparingRebalance);
}

#[test]
fn h8_static_member_that_does_not_rejoin_is_kept_then_removed_if_it_never_syncs() {
    let mut h = Harness::new();
    let (id1, id2) = static_group(&mut h, jr().session(60_000));
    let t = h.join(jr().member(&id1).instance("s1").session(60_000));
    h.advance(30_000);
    let r = h.jres(t).clone();
    assert_eq!(r.generation_id, 2);
    assert!(r.members.iter().any(|m| m.member_id.as_str() == id2));
    h.sync(&id1, 2, &[(&id1, "B1"), (&id2, "B2")]);
    assert!(h.member_ids().contains(&id2));
    h.advance(30_000);
    assert!(!h.member_ids().contains(&id2));
    assert_eq!(h.state(), PreparingRebalance);
}

#[test]
fn h9_static_member_that_stops_heartbeating_is_removed() {
    let mut h = Harness::new();
    let (id1, id2) = static_group(&mut h, jr());
    for _ in 0..3 {
        h.advance(3000);
        h.heartbeat_full(G, &id1, Some("s1"), 1);
    }
    h.advance(1000);
    assert!(!h.member_ids().contains(&id2));
    assert!(!h.group().static_members.contains_key("s2"));
    assert_eq!(h.state(), PreparingRebalance);
}

#[test]
fn h10_known_member_id_with_unknown_instance_id_is_25() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let t = h.join(jr().member(&ids[0]).instance("unknown"));
    assert_eq!(h.jres(t).error_code, 25);
}
