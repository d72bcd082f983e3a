//! Member session and rebalance timeouts on the fake clock (Kafka's `testSessionTimeoutLifecycle`,
//! `testSessionTimeoutExpiration`, `testSessionTimeoutExpirationStaticMember`,
//! `testRebalanceTimeoutLifecycle`, `testRebalanceTimeoutExpiration`).

use super::*;
use crate::group::consumer::{FenceCause, MemberState};

#[test]
fn test_session_timeout_lifecycle() {
    let mut h = H::new();
    let a = assigned(&h.hb(Hb::join("a", &["foo"]))).unwrap();
    assert_eq!(h.c.next_deadline(), Some(h.now + 45_000));
    // Each heartbeat pushes the session forward.
    h.advance(40_000);
    h.hb(Hb::beat("a", 1, &a));
    assert_eq!(h.c.next_deadline(), Some(h.now + 45_000));
    h.advance(40_000);
    assert!(h.group().members.contains_key("a"));
    // Leaving stops the timer.
    h.hb(Hb::leave("a", -1));
    assert_eq!(h.c.next_deadline(), None);
}

#[test]
fn test_session_timeout_expiration() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]));
    h.advance(44_999);
    assert!(h.group().members.contains_key("a"));
    h.advance(1);
    assert!(!h.group().members.contains_key("a"));
    assert_eq!(h.group().group_epoch, 2);
    assert!(h.take_events().contains(&ConsumerEvent::MemberFenced {
        group: G.into(),
        cause: FenceCause::SessionTimeout
    }));
    // The expired member is unknown now.
    let r = h.hb(Hb::beat("a", 1, &parts(&[])));
    assert_eq!(r.error_code, 25);
}

#[test]
fn test_session_timeout_expiration_static_member() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    h.hb(Hb::join("b", &["foo"]));
    h.hb(Hb::leave("a", -2).instance("i-a"));
    // b keeps heartbeating; the departed static member holds its partitions until its session ends.
    for _ in 0..9 {
        h.advance(5_000);
        let epoch = h.epoch_of("b");
        h.hb(Hb::beat("b", epoch, &super::reconcile::current(&h, "b")));
    }
    assert!(!h.group().members.contains_key("a"), "expired after 45 s");
    assert!(!h.group().static_members.contains_key("i-a"));
    let epoch = h.epoch_of("b");
    h.hb(Hb::beat("b", epoch, &super::reconcile::current(&h, "b")));
    assert_eq!(
        super::reconcile::current(&h, "b"),
        parts(&[(FOO, &[0, 1, 2, 3, 4, 5])])
    );
}

#[test]
fn test_rebalance_timeout_lifecycle() {
    let mut h = H::new();
    let a = assigned(&h.hb(Hb::join("a", &["foo"]).rebalance_timeout(12_000))).unwrap();
    h.hb(Hb::join("b", &["foo"]));
    // a must revoke: its rebalance timer runs.
    let keep = assigned(&h.hb(Hb::beat("a", 1, &a))).unwrap();
    assert_eq!(
        h.group().members["a"].state,
        MemberState::UnrevokedPartitions
    );
    assert_eq!(
        h.c.timer_count(),
        3,
        "two sessions and a's rebalance timeout"
    );
    // a revokes in time: the timer stops.
    h.advance(10_000);
    h.hb(Hb::beat("a", 1, &keep));
    assert_eq!(h.c.timer_count(), 2);
    h.advance(5_000);
    assert!(h.group().members.contains_key("a"));
}

#[test]
fn test_rebalance_timeout_expiration() {
    let mut h = H::new();
    let a = assigned(&h.hb(Hb::join("a", &["foo"]).rebalance_timeout(12_000))).unwrap();
    h.hb(Hb::join("b", &["foo"]));
    h.hb(Hb::beat("a", 1, &a));
    // a keeps heartbeating but never lets go of the revoked partitions.
    h.advance(6_000);
    h.hb(Hb::beat("a", 1, &a));
    h.advance(6_000);
    assert!(!h.group().members.contains_key("a"), "fenced at 12 s");
    assert!(h.take_events().contains(&ConsumerEvent::MemberFenced {
        group: G.into(),
        cause: FenceCause::RebalanceTimeout
    }));
    let r = h.hb(Hb::beat("a", 1, &a));
    assert_eq!(r.error_code, 25);
    let epoch = h.epoch_of("b");
    let r = h.hb(Hb::beat("b", epoch, &parts(&[])));
    assert_eq!(assigned(&r).unwrap(), parts(&[(FOO, &[0, 1, 2, 3, 4, 5])]));
}

#[test]
fn test_late_tick_fires_each_timer_at_its_deadline() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]));
    h.advance(10_000);
    h.hb(Hb::join("b", &["foo"]));
    // Far past both sessions: both expire in one tick.
    h.advance(500_000);
    assert!(h.group().members.is_empty());
    assert_eq!(
        h.group().state,
        crate::group::consumer::ConsumerGroupState::Empty
    );
}
