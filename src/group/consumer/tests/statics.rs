//! Static membership (`group.instance.id`): Kafka's static-member cases of `GroupMetadataManagerTest`.

use super::*;
use crate::group::consumer::LEAVE_GROUP_STATIC_MEMBER_EPOCH;

#[test]
fn test_group_epoch_bump_when_new_static_member_joins() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    let r = h.hb(Hb::join("b", &["foo"]).instance("i-b"));
    assert_eq!(r.error_code, 0);
    assert_eq!(h.group().group_epoch, 2);
    assert_eq!(h.group().static_members["i-b"], "b");
}

#[test]
fn test_no_group_epoch_bump_when_static_member_temporarily_leaves() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    let r = h.hb(Hb::leave("a", -2).instance("i-a"));
    assert_eq!((r.error_code, r.member_epoch), (0, -2));
    let g = h.group();
    assert_eq!(g.group_epoch, 1);
    let m = &g.members["a"];
    assert_eq!(m.member_epoch, LEAVE_GROUP_STATIC_MEMBER_EPOCH);
    assert_eq!(
        m.assigned.values().map(BTreeSet::len).sum::<usize>(),
        6,
        "kept"
    );
    assert_eq!(g.partition_epoch(id(FOO), 0), -2, "still held");
}

#[test]
fn test_static_member_gets_back_assignment_upon_rejoin() {
    let mut h = H::new();
    let a = assigned(&h.hb(Hb::join("a", &["foo"]).instance("i-a"))).unwrap();
    h.hb(Hb::join("b", &["foo"]).instance("i-b"));
    let a = assigned(&h.hb(Hb::beat("a", 1, &a))).unwrap();
    h.hb(Hb::beat("a", 1, &a));
    h.hb(Hb::beat("b", 2, &parts(&[])));
    let before = h.group().members["a"].assigned.clone();
    let epoch = h.group().group_epoch;
    h.hb(Hb::leave("a", -2).instance("i-a"));
    // The instance comes back under a new member id: same partitions, no new group epoch.
    let r = h.hb(Hb::join("a2", &["foo"]).instance("i-a"));
    assert_eq!(r.error_code, 0);
    assert_eq!(r.member_epoch, epoch);
    let back: Parts = assigned(&r).unwrap();
    let want: Parts = before
        .iter()
        .map(|(t, ps)| (t.as_u128(), ps.clone()))
        .collect();
    assert_eq!(back, want);
    let g = h.group();
    assert_eq!(g.group_epoch, epoch);
    assert!(!g.members.contains_key("a"));
    assert_eq!(g.static_members["i-a"], "a2");
    assert_eq!(g.target["a2"], before);
}

#[test]
fn test_static_member_rejoins_with_new_subscribed_topics() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    h.hb(Hb::leave("a", -2).instance("i-a"));
    let r = h.hb(Hb::join("a2", &["foo", "bar"]).instance("i-a"));
    assert_eq!(r.member_epoch, 2);
    assert_eq!(
        assigned(&r).unwrap(),
        parts(&[(FOO, &[0, 1, 2, 3, 4, 5]), (BAR, &[0, 1, 2])])
    );
}

#[test]
fn test_leaving_static_member_bumps_group_epoch() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    h.hb(Hb::join("b", &["foo"]).instance("i-b"));
    let r = h.hb(Hb::leave("b", -1).instance("i-b"));
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    assert_eq!(h.group().group_epoch, 3);
    assert!(!h.group().static_members.contains_key("i-b"));
}

#[test]
fn test_should_thrown_unreleased_instance_id_exception_when_new_member_joins_with_in_use_instance_id(
) {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    let r = h.hb(Hb::join("a2", &["foo"]).instance("i-a"));
    assert_eq!(r.error_code, 111);
}

#[test]
fn test_should_thrown_unknown_member_id_exception_when_unknown_static_member_joins() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    let r = h.hb(Hb::beat("b", 1, &parts(&[])).instance("i-unknown"));
    assert_eq!(r.error_code, 25);
    assert_eq!(
        r.error_message.unwrap().as_str(),
        "Instance id i-unknown is unknown."
    );
}

#[test]
fn test_should_throw_fenced_instance_id_exception_when_static_member_with_different_member_id_joins(
) {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    let r = h.hb(Hb::beat("other", 1, &parts(&[])).instance("i-a"));
    assert_eq!(r.error_code, 82);
}

#[test]
fn test_consumer_group_member_epoch_validation_for_static_member() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    let r = h.hb(Hb::beat("a", 5, &parts(&[])).instance("i-a"));
    assert_eq!(r.error_code, 110);
}

#[test]
fn test_should_throw_unknown_member_id_exception_when_unknown_static_member_leaves() {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    let r = h.hb(Hb::leave("a", -2).instance("i-unknown"));
    assert_eq!(r.error_code, 25);
}

#[test]
fn test_should_throw_fenced_instance_id_exception_when_static_member_with_different_member_id_leaves(
) {
    let mut h = H::new();
    h.hb(Hb::join("a", &["foo"]).instance("i-a"));
    let r = h.hb(Hb::leave("other", -2).instance("i-a"));
    assert_eq!(r.error_code, 82);
}
