//! Durable records: Kafka's `testOnLoaded` (a restored group goes on with no new assignment) and
//! which calls mark a group's record changed.

use super::reconcile::{converge, current};
use super::*;
use crate::group::consumer::{ConsumerGroupState, MemberState};

fn stable_pair(h: &mut H) -> Vec<String> {
    let names = vec!["a".to_string(), "b".to_string()];
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    h.hb(Hb::join("b", &["foo"]));
    converge(h, &names);
    names
}

#[test]
fn test_on_loaded() {
    let mut h = H::new();
    let names = stable_pair(&mut h);
    let record = h.c.record(G).unwrap();
    let json = serde_json::to_string(&record).unwrap();
    let back: crate::group::consumer::ConsumerGroupRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
    // A new coordinator (a restarted or adopting kelp) with the same topics.
    let mut h2 = H::new();
    h2.now = 500_000;
    let refused = h2.c.load(h2.now, vec![back], &mut Vec::new());
    assert!(refused.is_empty());
    h2.check();
    let g = h2.group();
    assert_eq!(g.state, ConsumerGroupState::Stable);
    assert_eq!((g.group_epoch, g.assignment_epoch), (2, 2));
    assert_eq!(g.static_members["i-a"], "a");
    assert!(
        h2.c.take_dirty().is_empty(),
        "what the store holds is not dirty"
    );
    // Same topics again: nothing moves. Members heartbeat on at their epochs, unchanged.
    h2.set_topics(&[("foo", FOO, 6), ("bar", BAR, 3)]);
    assert_eq!(h2.group().group_epoch, 2);
    for n in &names {
        let held = current(&h2, n);
        assert_eq!(held, current(&h, n));
        let r = h2.hb(Hb::beat(n, 2, &held));
        assert_eq!((r.error_code, r.member_epoch), (0, 2));
        assert!(r.assignment.is_none());
    }
    assert!(
        h2.c.take_dirty().is_empty(),
        "steady heartbeats write nothing"
    );
    // Sessions run from the load: a member that never comes back expires 45 s after it.
    h2.advance(40_000);
    h2.hb(Hb::beat("a", 2, &current(&h2, "a")).instance("i-a"));
    h2.advance(5_000);
    assert!(!h2.group().members.contains_key("b"));
    assert_eq!(h2.c.take_dirty(), [G.to_string()].into());
}

#[test]
fn test_on_loaded_member_revoking_gets_a_rebalance_timeout() {
    let mut h = H::new();
    let a = assigned(&h.hb(Hb::join("a", &["foo"]).rebalance_timeout(10_000))).unwrap();
    h.hb(Hb::join("b", &["foo"]));
    h.hb(Hb::beat("a", 1, &a));
    assert_eq!(
        h.group().members["a"].state,
        MemberState::UnrevokedPartitions
    );
    let record = h.c.record(G).unwrap();
    let mut h2 = H::new();
    h2.c.load(h2.now, vec![record], &mut Vec::new());
    assert_eq!(h2.c.timer_count(), 3);
    h2.advance(10_000);
    assert!(
        !h2.group().members.contains_key("a"),
        "fenced: did not revoke in time"
    );
}

#[test]
fn test_damaged_record_is_refused() {
    let mut h = H::new();
    stable_pair(&mut h);
    let mut record = h.c.record(G).unwrap();
    let a = record.members[0].assigned.clone();
    record.members[1].assigned = a;
    let mut h2 = H::new();
    assert_eq!(
        h2.c.load(h2.now, vec![record.clone()], &mut Vec::new()),
        vec![G.to_string()]
    );
    record.members[1].state = "dancing".into();
    assert_eq!(
        h2.c.load(h2.now, vec![record], &mut Vec::new()),
        vec![G.to_string()]
    );
    assert!(h2.c.group(G).is_none());
}

#[test]
fn test_dirty_groups_are_those_whose_record_changed() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).group("one"));
    h.hb(Hb::join("a", &["foo"]).group("two"));
    assert_eq!(
        h.c.take_dirty(),
        ["one".to_string(), "two".to_string()].into()
    );
    h.hb(Hb::beat("a", 1, &parts(&[(FOO, &[0, 1, 2, 3, 4, 5])])).group("one"));
    assert!(h.c.take_dirty().is_empty());
    h.hb(Hb::leave("a", -1).group("one"));
    assert_eq!(h.c.take_dirty(), ["one".to_string()].into());
    assert_eq!(h.c.delete("one"), Ok(()));
    assert_eq!(h.c.take_dirty(), ["one".to_string()].into());
    assert!(h.c.record("one").is_none(), "deleted: a tombstone");
    assert!(h.c.release("two"));
    assert!(h.c.group("two").is_none());
    assert_eq!(h.c.next_deadline(), None);
}
