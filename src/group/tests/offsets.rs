//! §6 K: offset commit fencing (§3.8), fetch, and retention on the fake clock.

use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};

use super::*;
use crate::group::GroupState::*;

/// (topic, partition, offset, epoch, metadata, error) of a v<8 fetch response.
type Row = (String, i32, i64, i32, String, i16);

fn fetch(h: &mut Harness, v: i16, group: &str, topics: Option<&[(&str, &[i32])]>) -> Vec<Row> {
    let mut r = OffsetFetchRequest::default();
    r.group_id = s(group).into();
    r.topics = topics.map(|ts| {
        ts.iter()
            .map(|(t, ps)| {
                let mut x = OffsetFetchRequestTopic::default();
                x.name = s(t).into();
                x.partition_indexes = ps.to_vec();
                x
            })
            .collect()
    });
    let t = h.send(v, "c", "h", Request::OffsetFetch(r));
    let Response::OffsetFetch(resp) = &h.replies[&t] else {
        panic!("no fetch response")
    };
    assert_eq!(resp.error_code, 0);
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let metadata = p.metadata.as_deref().unwrap_or("").to_string();
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    metadata,
                    p.error_code,
                )
            })
        })
        .collect()
}

fn row(t: &str, p: i32, offset: i64, epoch: i32, metadata: &str) -> Row {
    (t.into(), p, offset, epoch, metadata.into(), 0)
}

#[test]
fn k1_commit_in_stable_then_fetch_returns_offset_epoch_metadata() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let r = h.commit_full(8, G, &ids[0], None, 1, &[("t", 0, 42, "meta")]);
    assert_eq!(commit_codes(&r), vec![0]);
    assert_eq!(
        fetch(&mut h, 7, G, Some(&[("t", &[0])])),
        vec![row("t", 0, 42, 7, "meta")]
    );
}

#[test]
fn k2_commit_with_old_generation_is_22_on_every_partition() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.join(jr().member(&ids[0]));
    h.join(jr().member(&ids[1]));
    h.sync_all(&ids, "B");
    assert_eq!(h.commit(&ids[0], 1), vec![22, 22]);
}

#[test]
fn k3_commit_during_preparing_rebalance_with_current_generation_is_accepted() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.new_member(jr());
    assert_eq!(h.state(), PreparingRebalance);
    assert_eq!(h.commit(&ids[0], 1), vec![0, 0]);
}

#[test]
fn k4_commit_in_completing_rebalance_is_27_or_22() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.join(jr().member(&ids[0]));
    h.join(jr().member(&ids[1]));
    assert_eq!(h.state(), CompletingRebalance);
    assert_eq!(h.commit(&ids[0], 2), vec![27, 27]);
    assert_eq!(h.commit(&ids[0], 1), vec![22, 22]);
}

#[test]
fn k5_commit_by_unknown_member_is_25() {
    let mut h = Harness::new();
    h.stable(2);
    assert_eq!(h.commit("ghost", 1), vec![25, 25]);
}

#[test]
fn k6_commit_without_group_creates_a_simple_group() {
    let mut h = Harness::new();
    assert_eq!(h.commit("", -1), vec![0, 0]);
    let t = h.send(
        4,
        "c",
        "h",
        Request::ListGroups(ListGroupsRequest::default()),
    );
    let Response::ListGroups(l) = &h.replies[&t] else {
        panic!()
    };
    assert_eq!(l.groups.len(), 1);
    assert_eq!(
        (
            l.groups[0].protocol_type.as_str(),
            l.groups[0].group_state.as_str()
        ),
        ("", "Empty")
    );
}

#[test]
fn k7_commit_without_membership_to_an_active_group_is_25() {
    let mut h = Harness::new();
    h.stable(2);
    assert_eq!(h.commit("", -1), vec![25, 25]);
}

#[test]
fn k8_commit_with_generation_to_a_missing_group_is_22_before_v9_and_69_from_v9() {
    let mut h = Harness::new();
    let r = h.commit_full(8, G, "m", None, 3, &[("t", 0, 1, "")]);
    assert_eq!(commit_codes(&r), vec![22]);
    let r = h.commit_full(9, G, "m", None, 3, &[("t", 0, 1, "")]);
    assert_eq!(commit_codes(&r), vec![69]);
    assert_eq!(h.c.group_count(), 0);
}

#[test]
fn k9_oversized_metadata_fails_only_its_partition() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let big = "x".repeat(4097);
    let r = h.commit_full(
        8,
        G,
        &ids[0],
        None,
        1,
        &[("t", 0, 5, &big), ("t", 1, 6, "ok")],
    );
    assert_eq!(commit_codes(&r), vec![12, 0]);
    assert_eq!(
        fetch(&mut h, 7, G, Some(&[("t", &[0, 1])])),
        vec![row("t", 0, -1, -1, ""), row("t", 1, 6, 7, "ok")]
    );
}

#[test]
fn k10_fetch_unknown_group_or_partition_is_minus_one_with_no_error() {
    let mut h = Harness::new();
    assert_eq!(
        fetch(&mut h, 5, "nope", Some(&[("t", &[0])])),
        vec![row("t", 0, -1, -1, "")]
    );
    assert!(fetch(&mut h, 5, "nope", None).is_empty());
    h.commit("", -1);
    assert_eq!(
        fetch(&mut h, 1, G, Some(&[("t0", &[5])])),
        vec![row("t0", 5, -1, -1, "")]
    );
}

#[test]
fn k11_fetch_v8_batches_groups_and_v6_v7_single_group_still_work() {
    let mut h = Harness::new();
    h.commit_full(8, "g1", "", None, -1, &[("t", 0, 1, "a"), ("u", 0, 2, "b")]);
    h.commit_full(8, "g2", "", None, -1, &[("t", 0, 3, "c")]);
    let mut req = OffsetFetchRequest::default();
    let mut g1 = OffsetFetchRequestGroup::default();
    g1.group_id = s("g1").into();
    g1.topics = None;
    let mut g2 = OffsetFetchRequestGroup::default();
    g2.group_id = s("g2").into();
    let mut t = OffsetFetchRequestTopics::default();
    t.name = s("t").into();
    t.partition_indexes = vec![0];
    g2.topics = Some(vec![t]);
    req.groups = vec![g1, g2];
    let token = h.send(8, "c", "h", Request::OffsetFetch(req));
    let Response::OffsetFetch(r) = &h.replies[&token] else {
        panic!()
    };
    assert!(r.topics.is_empty());
    let summary: Vec<(String, Vec<(String, i64)>)> = r
        .groups
        .iter()
        .map(|g| {
            let offsets = g.topics.iter().flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.to_string(), p.committed_offset))
            });
            (g.group_id.to_string(), offsets.collect())
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("g1".into(), vec![("t".into(), 1), ("u".into(), 2)]),
            ("g2".into(), vec![("t".into(), 3)])
        ]
    );
    for v in [6, 7] {
        assert_eq!(fetch(&mut h, v, "g2", None), vec![row("t", 0, 3, 7, "c")]);
    }
}

#[test]
fn k13_commit_with_the_old_id_of_a_replaced_static_member_is_82() {
    let mut h = Harness::new();
    let t = h.join(jr().instance("s2"));
    h.advance(3000);
    let old = h.jres(t).member_id.to_string();
    h.sync_all(std::slice::from_ref(&old), "A");
    h.join(jr().instance("s2"));
    let r = h.commit_full(8, G, &old, Some("s2"), 1, &[("t", 0, 1, "")]);
    assert_eq!(commit_codes(&r), vec![82]);
}

#[test]
fn k15_offsets_of_an_empty_group_expire_and_the_group_is_removed() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    assert_eq!(h.commit(&ids[0], 1), vec![0, 0]);
    h.leave(3, G, &[(&ids[0], None)]);
    assert_eq!(h.state(), Empty);
    let week = 7 * 24 * 3600 * 1000;
    h.advance(week - 1);
    assert_eq!(h.c.group_count(), 1);
    assert_eq!(fetch(&mut h, 7, G, None).len(), 2);
    h.advance(600_000);
    assert_eq!(h.c.group_count(), 0);
    assert!(fetch(&mut h, 7, G, None).is_empty());
    let t = h.send(
        4,
        "c",
        "h",
        Request::ListGroups(ListGroupsRequest::default()),
    );
    assert!(matches!(&h.replies[&t], Response::ListGroups(l) if l.groups.is_empty()));
    assert_eq!(h.describe().group_state.as_str(), "Dead");
    assert!(h.events.contains(&Event::GroupDeleted { group: G.into() }));
}

/// A ConsumerProtocolSubscription v0 for `topics`, with null user data.
pub(super) fn subscription(topics: &[&str]) -> Bytes {
    let mut v: Vec<u8> = vec![0, 0];
    v.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        v.extend_from_slice(&(t.len() as i16).to_be_bytes());
        v.extend_from_slice(t.as_bytes());
    }
    v.extend_from_slice(&[0xff; 4]);
    Bytes::from(v)
}

#[test]
fn k16_offsets_of_unsubscribed_topics_expire_in_a_stable_group() {
    let mut h = Harness::with(Config {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 10_000,
        ..config()
    });
    let mut j = jr();
    j.protocols = vec![("range".into(), subscription(&["t1"]))];
    let ids = h.stable_with(1, j);
    let r = h.commit_full(
        8,
        G,
        &ids[0],
        None,
        1,
        &[("t1", 0, 1, ""), ("t2", 0, 2, "")],
    );
    assert_eq!(commit_codes(&r), vec![0, 0]);
    for _ in 0..25 {
        h.advance(3000);
        assert_eq!(h.heartbeat(&ids[0], 1), 0);
    }
    assert_eq!(h.state(), Stable);
    let rows = fetch(&mut h, 7, G, None);
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        vec!["t1"]
    );
}
