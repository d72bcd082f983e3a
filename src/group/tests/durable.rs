//! Persistence effects on the fake clock (GROUP_SEMANTICS.md §3.9, §2.2 D11, §3.7): a reply that
//! depends on a write waits for the store, a failed write answers a retriable error and changes
//! nothing, outcomes apply in issue order, and the gateway import.

use super::*;
use crate::group::GroupState::*;
use crate::group::{CommittedOffset, RebalanceReason};

const NOT_AVAILABLE: i16 = 15;

fn persisted_writes(h: &Harness) -> Vec<Write> {
    h.stream
        .iter()
        .filter_map(|o| match o {
            Output::Persist(p) => Some(p.write.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn commit_is_answered_only_after_the_store_acknowledged_it() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.hold_writes = true;
    let t = h.commit_send(8, G, &ids[0], None, 1, &[("t", 0, 42, "m")]);
    h.settle_imports(None);
    assert!(!h.answered(t));
    assert_eq!(h.held.len(), 1);
    assert_eq!(
        h.committed(G, "t", 0),
        -1,
        "not visible before the store has it"
    );
    h.settle(1, Ok(()));
    assert_eq!(commit_codes(&h.commit_response(t)), vec![0]);
    assert_eq!(h.committed(G, "t", 0), 42);
    assert_eq!(h.disk.offsets[G][&("t".to_string(), 0)].offset, 42);
    assert!(h.events.contains(&Event::OffsetCommit {
        group: G.into(),
        error: 0
    }));
}

#[test]
fn failed_commit_write_is_15_on_its_partitions_and_nothing_is_applied() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.hold_writes = true;
    let big = "x".repeat(4097);
    let t = h.commit_send(
        8,
        G,
        &ids[0],
        None,
        1,
        &[("t", 0, 5, &big), ("t", 1, 6, "")],
    );
    h.settle_imports(None);
    match &h.held[0].write {
        Write::Offsets(v) => assert_eq!(v.len(), 1, "the 12 partition is not written"),
        other => panic!("{other:?}"),
    }
    h.settle(1, Err(NOT_AVAILABLE));
    assert_eq!(commit_codes(&h.commit_response(t)), vec![12, 15]);
    assert_eq!(h.committed(G, "t", 1), -1);
    assert!(h.disk.offsets.is_empty());
    // The store is back: the client's retry goes through.
    let t = h.commit_send(8, G, &ids[0], None, 1, &[("t", 1, 6, "")]);
    h.settle(1, Ok(()));
    assert_eq!(commit_codes(&h.commit_response(t)), vec![0]);
    assert_eq!(h.committed(G, "t", 1), 6);
}

#[test]
fn outcomes_arriving_out_of_order_apply_in_issue_order() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    h.hold_writes = true;
    let first = h.commit_send(8, G, &ids[0], None, 1, &[("t", 0, 10, "")]);
    let second = h.commit_send(8, G, &ids[0], None, 1, &[("t", 0, 20, "")]);
    h.settle_imports(None);
    let (id1, id2) = (h.held[0].id, h.held[1].id);
    h.settle_id(id2, Ok(()));
    assert!(
        !h.answered(second),
        "waits for the earlier write of its group"
    );
    h.settle_id(id1, Ok(()));
    assert!(h.answered(first) && h.answered(second));
    assert_eq!(h.committed(G, "t", 0), 20);
}

#[test]
fn writes_of_different_groups_do_not_wait_for_each_other() {
    let mut h = Harness::new();
    h.hold_writes = true;
    let a = h.commit_send(8, "a", "", None, -1, &[("t", 0, 1, "")]);
    h.settle_imports(None);
    let b = h.commit_send(8, "b", "", None, -1, &[("t", 0, 2, "")]);
    h.settle_imports(None);
    let id_b = h.held.iter().find(|p| p.group == "b").map(|p| p.id);
    h.settle_id(id_b.expect("b's write"), Ok(()));
    assert!(h.answered(b) && !h.answered(a));
}

/// G(2) CompletingRebalance gen 2 with the follower's SyncGroup parked.
fn completing_with_parked_follower(h: &mut Harness) -> (Vec<String>, Token) {
    let ids = h.stable(2);
    for id in &ids {
        h.join(jr().member(id));
    }
    assert_eq!((h.state(), h.gen()), (CompletingRebalance, 2));
    let follower = h.sync(&ids[1], 2, &[]);
    assert!(!h.answered(follower));
    (ids, follower)
}

#[test]
fn leader_sync_is_answered_once_the_record_is_stored() {
    let mut h = Harness::new();
    let (ids, follower) = completing_with_parked_follower(&mut h);
    h.hold_writes = true;
    let leader = h.sync(&ids[0], 2, &[(&ids[0], "B1"), (&ids[1], "B2")]);
    assert!(!h.answered(leader) && !h.answered(follower));
    assert_eq!(h.state(), CompletingRebalance);
    assert_eq!(
        h.heartbeat(&ids[1], 2),
        0,
        "members keep heartbeating meanwhile"
    );
    h.settle(1, Ok(()));
    assert_eq!(h.sres(leader).assignment, b("B1"));
    assert_eq!(h.sres(follower).assignment, b("B2"));
    assert_eq!(h.state(), Stable);
    let rec = &h.disk.records[G];
    assert_eq!(
        (rec.generation, rec.leader.as_deref()),
        (2, Some(ids[0].as_str()))
    );
    assert_eq!(rec.protocol_name.as_deref(), Some("range"));
    let stored: Vec<(&str, Bytes)> = rec
        .members
        .iter()
        .map(|m| (m.member_id.as_str(), m.assignment.clone()))
        .collect();
    assert_eq!(
        stored,
        vec![(ids[0].as_str(), b("B1")), (ids[1].as_str(), b("B2"))]
    );
}

#[test]
fn d11_failed_record_write_at_the_leader_sync_answers_parked_syncs_15_and_rebalances() {
    let mut h = Harness::new();
    let (ids, follower) = completing_with_parked_follower(&mut h);
    h.hold_writes = true;
    let leader = h.sync(&ids[0], 2, &[(&ids[0], "B1"), (&ids[1], "B2")]);
    h.settle(1, Err(NOT_AVAILABLE));
    assert_eq!(h.sres(leader).error_code, NOT_AVAILABLE);
    assert_eq!(h.sres(follower).error_code, NOT_AVAILABLE);
    assert_eq!(h.state(), PreparingRebalance);
    assert!(h.member_ids().iter().all(|m| h.assignment(m).is_empty()));
    assert!(h.events.contains(&Event::RebalanceStarted {
        group: G.into(),
        reason: RebalanceReason::Load
    }));
    // Both rejoin; the next round completes normally once the store is back.
    h.hold_writes = false;
    h.join(jr().member(&ids[0]));
    h.join(jr().member(&ids[1]));
    assert_eq!((h.state(), h.gen()), (CompletingRebalance, 3));
    h.sync_all(&ids, "C");
    assert_eq!(h.disk.records[G].generation, 3);
}

#[test]
fn outcome_of_a_round_that_was_aborted_meanwhile_is_ignored() {
    let mut h = Harness::new();
    let (ids, follower) = completing_with_parked_follower(&mut h);
    h.hold_writes = true;
    let leader = h.sync(&ids[0], 2, &[(&ids[0], "B1"), (&ids[1], "B2")]);
    h.new_member(jr());
    assert_eq!(h.sres(follower).error_code, 27);
    assert_eq!(h.sres(leader).error_code, 27);
    assert_eq!(h.state(), PreparingRebalance);
    h.settle(1, Ok(()));
    assert_eq!(h.state(), PreparingRebalance);
    assert!(h.member_ids().iter().all(|m| h.assignment(m).is_empty()));
}

#[test]
fn static_replacement_is_answered_after_its_record_and_reverted_when_that_fails() {
    let mut h = Harness::new();
    let t1 = h.join(jr().instance("s1"));
    let t2 = h.join(jr().instance("s2"));
    h.advance_until_answered(&[t1, t2], 1000, 10_000);
    let (id1, id2) = (
        h.jres(t1).member_id.to_string(),
        h.jres(t2).member_id.to_string(),
    );
    h.sync_all(&[id1.clone(), id2.clone()], "A");
    h.hold_writes = true;
    let t = h.join(jr().instance("s2"));
    assert!(!h.answered(t));
    h.settle(1, Err(NOT_AVAILABLE));
    let r = h.jres(t);
    assert_eq!((r.error_code, r.member_id.as_str()), (NOT_AVAILABLE, ""));
    assert_eq!(
        h.heartbeat_full(G, &id2, Some("s2"), 1),
        0,
        "the old id is back"
    );
    assert_eq!((h.state(), h.gen()), (Stable, 1));
    // Retried with the store back: replaced, same generation, no rebalance.
    h.hold_writes = false;
    let t = h.join(jr().instance("s2"));
    let r = h.jres(t).clone();
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert!(h.disk.records[G]
        .members
        .iter()
        .any(|m| m.member_id == r.member_id.as_str()));
    assert_eq!(h.rebalances(), 1);
}

fn delete_groups(h: &mut Harness, groups: &[&str]) -> Token {
    let mut r = DeleteGroupsRequest::default();
    r.groups_names = groups.iter().map(|g| s(g).into()).collect();
    h.send(2, "c", "h", Request::DeleteGroups(r))
}

fn delete_results(h: &Harness, t: Token) -> Vec<i16> {
    match h.replies.get(&t) {
        Some(Response::DeleteGroups(r)) => r.results.iter().map(|x| x.error_code).collect(),
        other => panic!("no DeleteGroups answer: {other:?}"),
    }
}

#[test]
fn delete_groups_waits_for_the_tombstone_and_a_failed_one_puts_the_group_back() {
    let mut h = Harness::new();
    h.commit_full(8, "e", "", None, -1, &[("t", 0, 9, "")]);
    h.stable(1);
    h.hold_writes = true;
    let t = delete_groups(&mut h, &["e", G, "nope"]);
    assert!(!h.answered(t));
    assert_eq!(h.c.group_count(), 1, "gone from memory at once");
    h.settle(1, Err(NOT_AVAILABLE));
    assert_eq!(delete_results(&h, t), vec![NOT_AVAILABLE, 68, 69]);
    assert_eq!(
        h.committed("e", "t", 0),
        9,
        "the group and its offsets are back"
    );
    let t = delete_groups(&mut h, &["e"]);
    h.settle(1, Ok(()));
    assert_eq!(delete_results(&h, t), vec![0]);
    assert!(!h.disk.offsets.contains_key("e"));
    assert_eq!(h.committed("e", "t", 0), -1);
}

#[test]
fn offset_delete_waits_for_the_store() {
    let mut h = Harness::new();
    h.commit_full(8, G, "", None, -1, &[("t", 0, 9, ""), ("t", 1, 3, "")]);
    h.hold_writes = true;
    let mut r = OffsetDeleteRequest::default();
    r.group_id = s(G).into();
    let mut topic = offset_delete_request::OffsetDeleteRequestTopic::default();
    topic.name = s("t").into();
    let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
    p.partition_index = 0;
    topic.partitions = vec![p];
    r.topics = vec![topic];
    let t = h.send(0, "c", "h", Request::OffsetDelete(r.clone()));
    assert!(!h.answered(t));
    h.settle(1, Err(NOT_AVAILABLE));
    assert!(matches!(&h.replies[&t], Response::OffsetDelete(x) if x.error_code == 15));
    assert_eq!(h.committed(G, "t", 0), 9);
    let t = h.send(0, "c", "h", Request::OffsetDelete(r));
    h.settle(1, Ok(()));
    assert!(matches!(&h.replies[&t], Response::OffsetDelete(x) if x.error_code == 0));
    assert_eq!(h.committed(G, "t", 0), -1);
    assert_eq!(h.disk.offsets[G].len(), 1);
}

#[test]
fn last_member_leaving_writes_the_empty_group_record() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    h.leave(1, G, &[(&ids[0], None)]);
    let rec = &h.disk.records[G];
    assert_eq!((rec.generation, rec.members.len()), (2, 0));
    assert_eq!(rec.protocol_type.as_deref(), Some("consumer"));
}

#[test]
fn k15_retention_deletes_expired_offsets_and_the_group_from_the_store() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    h.commit(&ids[0], 1);
    h.leave(3, G, &[(&ids[0], None)]);
    assert_eq!(h.disk.offsets[G].len(), 2);
    h.advance(7 * 24 * 3600 * 1000 + 600_000);
    assert_eq!(h.c.group_count(), 0);
    assert!(h.disk.offsets.is_empty() && h.disk.records.is_empty());
    let writes = persisted_writes(&h);
    assert!(writes.contains(&Write::DeleteGroup));
}

#[test]
fn retention_leaves_a_group_with_a_write_in_flight_for_the_next_run() {
    let mut h = Harness::with(Config {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 10_000,
        ..config()
    });
    h.commit_full(8, G, "", None, -1, &[("t", 0, 1, "")]);
    h.advance(55_000);
    h.hold_writes = true;
    let t = h.commit_send(8, G, "", None, -1, &[("t", 1, 1, "")]);
    h.advance(10_000);
    assert_eq!(
        h.committed(G, "t", 0),
        1,
        "not expired while a write is in flight"
    );
    h.settle(1, Ok(()));
    assert!(h.answered(t));
    h.advance(10_000);
    assert_eq!(h.committed(G, "t", 0), -1);
    assert_eq!(h.committed(G, "t", 1), 1);
}

// ---- import of the gateway's offsets --------------------------------------------------------

fn gateway_offset(offset: i64) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: "gw".into(),
        commit_timestamp: 1,
        expire_timestamp: None,
    }
}

#[test]
fn first_fetch_waits_for_the_gateway_offsets_which_kelp_then_keeps() {
    let mut h = Harness::new();
    h.gateway.insert(
        G.into(),
        vec![
            ("t".into(), 0, gateway_offset(5)),
            ("t".into(), 1, gateway_offset(7)),
        ],
    );
    h.hold_writes = true;
    let t = h.fetch_send(7, G, Some(("t", &[0, 1])));
    assert!(!h.answered(t));
    assert_eq!(h.held_imports.len(), 1);
    h.settle_imports(None);
    assert!(!h.answered(t), "waits until kelp's store has them");
    h.settle(1, Ok(()));
    let r = h.fetch_response(t);
    let got: Vec<i64> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(got, vec![5, 7]);
    assert_eq!(h.disk.offsets[G].len(), 2);
    h.fetch_send(7, G, None);
    assert!(h.held_imports.is_empty(), "imported once");
}

#[test]
fn import_finding_nothing_is_not_repeated_and_a_group_with_offsets_is_never_imported() {
    let mut h = Harness::new();
    h.committed("empty", "t", 0);
    h.committed("empty", "t", 0);
    let imports = |h: &Harness| {
        h.stream
            .iter()
            .filter(|o| matches!(o, Output::Import { .. }))
            .count()
    };
    assert_eq!(imports(&h), 1);
    h.commit_full(8, "mine", "", None, -1, &[("t", 0, 3, "")]);
    assert_eq!(imports(&h), 2, "the commit checked first");
    h.gateway
        .insert("mine".into(), vec![("t".into(), 0, gateway_offset(99))]);
    assert_eq!(h.committed("mine", "t", 0), 3);
    assert_eq!(imports(&h), 2);
}

#[test]
fn failed_import_answers_15_and_is_tried_again() {
    let mut h = Harness::new();
    h.gateway
        .insert(G.into(), vec![("t".into(), 0, gateway_offset(5))]);
    h.hold_writes = true;
    let t = h.fetch_send(5, G, Some(("t", &[0])));
    h.settle_imports(Some(NOT_AVAILABLE));
    assert_eq!(h.fetch_response(t).error_code, NOT_AVAILABLE);
    let t1 = h.fetch_send(1, G, Some(("t", &[0])));
    h.settle_imports(Some(NOT_AVAILABLE));
    let r = h.fetch_response(t1);
    assert_eq!(
        r.topics[0].partitions[0].error_code, NOT_AVAILABLE,
        "v1: in the partition"
    );
    h.hold_writes = false;
    assert_eq!(h.committed(G, "t", 0), 5);
}

#[test]
fn commit_to_an_unknown_group_waits_for_the_import_and_then_wins() {
    let mut h = Harness::new();
    h.gateway.insert(
        G.into(),
        vec![
            ("t".into(), 0, gateway_offset(5)),
            ("t".into(), 1, gateway_offset(7)),
        ],
    );
    let r = h.commit_full(8, G, "", None, -1, &[("t", 0, 10, "")]);
    assert_eq!(commit_codes(&r), vec![0]);
    assert_eq!((h.committed(G, "t", 0), h.committed(G, "t", 1)), (10, 7));
    assert_eq!(h.disk.offsets[G][&("t".to_string(), 0)].offset, 10);
}

#[test]
fn fetch_v8_of_several_groups_waits_for_each_import() {
    let mut h = Harness::new();
    h.gateway
        .insert("a".into(), vec![("t".into(), 0, gateway_offset(1))]);
    h.gateway
        .insert("b".into(), vec![("t".into(), 0, gateway_offset(2))]);
    h.hold_writes = true;
    let mut req = OffsetFetchRequest::default();
    req.groups = ["a", "b"]
        .iter()
        .map(|g| {
            let mut x = offset_fetch_request::OffsetFetchRequestGroup::default();
            x.group_id = s(g).into();
            x.topics = None;
            x
        })
        .collect();
    let t = h.send(8, "c", "h", Request::OffsetFetch(req));
    assert_eq!(h.held_imports.len(), 2);
    h.settle_imports(None);
    h.settle(1, Ok(()));
    assert!(!h.answered(t));
    h.settle(1, Ok(()));
    let r = h.fetch_response(t);
    let got: Vec<i64> = r
        .groups
        .iter()
        .map(|g| g.topics[0].partitions[0].committed_offset)
        .collect();
    assert_eq!(got, vec![1, 2]);
}

#[test]
fn without_a_store_nothing_is_emitted_and_everything_is_answered_at_once() {
    let mut h = Harness::with(Config {
        durable: false,
        ..config()
    });
    h.hold_writes = true;
    let ids = h.stable(2);
    assert_eq!(h.commit(&ids[0], 1), vec![0, 0]);
    assert_eq!(h.committed(G, "t0", 0), 10);
    h.leave(3, G, &[(&ids[0], None), (&ids[1], None)]);
    let t = delete_groups(&mut h, &[G]);
    assert_eq!(delete_results(&h, t), vec![0]);
    assert!(h.held.is_empty() && h.held_imports.is_empty());
    assert!(!h
        .stream
        .iter()
        .any(|o| matches!(o, Output::Persist(_) | Output::Import { .. })));
    assert_eq!(h.c.writes_in_flight(), 0);
}
