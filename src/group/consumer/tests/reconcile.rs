//! Incremental reconciliation (Kafka's `testReconciliationProcess` and `CurrentAssignmentBuilderTest`):
//! partitions are revoked before they are assigned elsewhere; members that keep partitions keep
//! consuming them throughout.

use super::*;
use crate::group::consumer::reconcile::reconcile;
use crate::group::consumer::{Assignment, Member, MemberState};

fn a(v: &[(u128, &[i32])]) -> Assignment {
    v.iter()
        .map(|(t, ps)| (id(*t), ps.iter().copied().collect()))
        .collect()
}

fn member(epoch: i32, state: MemberState, assigned: Assignment, pending: Assignment) -> Member {
    let mut m = Member::new("m".into());
    m.member_epoch = epoch;
    m.previous_member_epoch = epoch - 1;
    m.state = state;
    m.assigned = assigned;
    m.pending_revocation = pending;
    m
}

#[test]
fn test_stable_to_stable() {
    let m = member(10, MemberState::Stable, a(&[(FOO, &[1, 2])]), a(&[]));
    let next = reconcile(&m, 11, &a(&[(FOO, &[1, 2, 3])]), &|_, _| -1, Some(&[]));
    assert_eq!(next.state, MemberState::Stable);
    assert_eq!((next.member_epoch, next.previous_member_epoch), (11, 10));
    assert_eq!(next.assigned, a(&[(FOO, &[1, 2, 3])]));
}

#[test]
fn test_stable_to_unrevoked_partitions() {
    let m = member(10, MemberState::Stable, a(&[(FOO, &[1, 2])]), a(&[]));
    let owned = [(id(FOO), vec![1, 2])];
    let next = reconcile(&m, 11, &a(&[(FOO, &[2, 3])]), &|_, _| -1, Some(&owned));
    assert_eq!(next.state, MemberState::UnrevokedPartitions);
    assert_eq!(next.member_epoch, 10, "stays at its epoch while revoking");
    assert_eq!(
        next.assigned,
        a(&[(FOO, &[2])]),
        "nothing new before the revocation"
    );
    assert_eq!(next.pending_revocation, a(&[(FOO, &[1])]));
}

#[test]
fn test_stable_to_unreleased_partitions() {
    let m = member(10, MemberState::Stable, a(&[(FOO, &[1])]), a(&[]));
    let held = |_, p| if p == 2 { 9 } else { -1 };
    let next = reconcile(&m, 11, &a(&[(FOO, &[1, 2])]), &held, Some(&[]));
    assert_eq!(next.state, MemberState::UnreleasedPartitions);
    assert_eq!(next.member_epoch, 11);
    assert_eq!(next.assigned, a(&[(FOO, &[1])]));
}

#[test]
fn test_unrevoked_partitions_stays_while_owned_then_moves_one_epoch() {
    let m = member(
        10,
        MemberState::UnrevokedPartitions,
        a(&[(FOO, &[2])]),
        a(&[(FOO, &[1])]),
    );
    let target = a(&[(FOO, &[2, 3])]);
    let still = [(id(FOO), vec![1, 2])];
    assert_eq!(reconcile(&m, 12, &target, &|_, _| -1, Some(&still)), m);
    assert_eq!(
        reconcile(&m, 12, &target, &|_, _| -1, None),
        m,
        "no owned list: still owns"
    );
    let done = [(id(FOO), vec![2])];
    let next = reconcile(&m, 12, &target, &|_, _| -1, Some(&done));
    assert_eq!(next.state, MemberState::Stable);
    assert_eq!(next.member_epoch, 12);
    assert_eq!(next.assigned, target);
}

#[test]
fn test_revocation_skipped_when_member_no_longer_owns_the_partitions() {
    let m = member(10, MemberState::Stable, a(&[(FOO, &[1, 2])]), a(&[]));
    let owned = [(id(FOO), vec![2])];
    let next = reconcile(&m, 11, &a(&[(FOO, &[2, 3])]), &|_, _| -1, Some(&owned));
    assert_eq!(next.state, MemberState::Stable);
    assert_eq!(next.assigned, a(&[(FOO, &[2, 3])]));
}

#[test]
fn test_reconciliation_process() {
    // Kafka's case: three members, a new target moves partitions between them; every step is
    // checked by the harness for single ownership (records and what clients hold).
    let mut h = H::new();
    h.set_topics(&[("foo", FOO, 6), ("bar", BAR, 3)]);
    let a1 = assigned(&h.hb(Hb::join("a", &["foo", "bar"]))).unwrap();
    let b1 = h.hb(Hb::join("b", &["foo", "bar"]));
    assert_eq!(assigned(&b1).unwrap(), parts(&[]));
    let c1 = h.hb(Hb::join("c", &["foo", "bar"]));
    assert_eq!(assigned(&c1).unwrap(), parts(&[]));
    let epoch = h.group().group_epoch;
    assert_eq!(epoch, 3);
    // a revokes down to its share at its old epoch 1.
    let r = h.hb(Hb::beat("a", 1, &a1));
    assert_eq!(r.member_epoch, 1);
    let a2 = assigned(&r).unwrap();
    assert_eq!(a2.values().map(BTreeSet::len).sum::<usize>(), 3);
    // b heartbeats: still nothing, a has not revoked yet; b moves to the target epoch.
    let r = h.hb(Hb::beat("b", h.epoch_of("b"), &parts(&[])));
    assert_eq!(r.error_code, 0);
    assert_eq!(r.member_epoch, 3);
    assert!(assigned(&r).is_none(), "unchanged");
    // a acknowledges.
    let r = h.hb(Hb::beat("a", 1, &a2));
    assert_eq!(r.member_epoch, 3);
    // b and c now get theirs.
    let b = assigned(&h.hb(Hb::beat("b", 3, &parts(&[])))).unwrap();
    let c = assigned(&h.hb(Hb::beat("c", h.epoch_of("c"), &parts(&[])))).unwrap();
    assert_eq!(b.values().map(BTreeSet::len).sum::<usize>(), 3);
    assert_eq!(c.values().map(BTreeSet::len).sum::<usize>(), 3);
    assert_eq!(
        h.group().state,
        crate::group::consumer::ConsumerGroupState::Stable
    );
    // a kept consuming its share throughout: its final assignment is what it kept.
    for (t, ps) in &a2 {
        assert!(a1[t].is_superset(ps));
    }
}

#[test]
fn test_members_keeping_partitions_never_have_zero() {
    // The scenario: 12 partitions, 6 members, a 7th joins.
    let mut h = H::new();
    h.set_topics(&[("t", 0x7, 12)]);
    let names: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    for n in &names {
        h.hb(Hb::join(n, &["t"]));
    }
    // Converge: everyone heartbeats with what it holds until Stable (bounded).
    converge(&mut h, &names);
    let mut all = names.clone();
    all.push("m6".into());
    h.hb(Hb::join("m6", &["t"]));
    for _ in 0..10 {
        for n in &names {
            assert!(!h.group().members[n].assigned.is_empty(), "{n} has nothing");
            let epoch = h.epoch_of(n);
            h.hb(Hb::beat(n, epoch, &current(&h, n)));
        }
        let epoch = h.epoch_of("m6");
        h.hb(Hb::beat("m6", epoch, &current(&h, "m6")));
    }
    assert_eq!(
        h.group().state,
        crate::group::consumer::ConsumerGroupState::Stable
    );
    let counts: Vec<usize> = all
        .iter()
        .map(|n| {
            h.group().members[n]
                .assigned
                .values()
                .map(BTreeSet::len)
                .sum()
        })
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 12);
    assert!(counts.iter().all(|c| *c >= 1 && *c <= 2), "{counts:?}");
}

/// What the coordinator last told `member` it owns (what a client that acts at once reports).
pub(super) fn current(h: &H, member: &str) -> Parts {
    h.group().members[member]
        .assigned
        .iter()
        .map(|(t, ps)| (t.as_u128(), ps.clone()))
        .collect()
}

/// Heartbeats every member (acting on each answer at once) until the group is Stable (bounded).
pub(super) fn converge(h: &mut H, members: &[String]) {
    for _ in 0..20 {
        for n in members {
            let epoch = h.epoch_of(n);
            h.hb(Hb::beat(n, epoch, &current(h, n)));
        }
        if h.group().state == crate::group::consumer::ConsumerGroupState::Stable {
            return;
        }
    }
    panic!("did not converge: {:?}", h.group().state);
}
