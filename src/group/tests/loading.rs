//! Loading at startup on the fake clock: what the group APIs answer while loading (§1.2, E9, K12),
//! and groups and offsets restored from the store after a restart (§3.9, K14, N4): a Stable group
//! keeps its generation, leader, protocol and assignments, and its members go on without a rebalance.

use super::offsets::subscription;
use super::*;
use crate::group::GroupState::*;
use crate::group::RebalanceReason;

const LOADING: i16 = 14;

fn loading() -> Harness {
    let mut h = Harness::new();
    h.c.begin_loading();
    h
}

#[test]
fn e9_heartbeat_while_loading_is_0() {
    let mut h = loading();
    assert_eq!(h.heartbeat("anyone", 3), 0);
    assert_eq!(
        h.heartbeat_full("", "m", None, 1),
        24,
        "the group id is checked first"
    );
}

#[test]
fn k12_offset_fetch_while_loading_is_14_in_partitions_v1_top_level_v5_per_group_v8() {
    let mut h = loading();
    let t = h.fetch_send(1, G, Some(("t", &[0, 1])));
    let r = h.fetch_response(t);
    let codes: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![LOADING, LOADING]);
    let t = h.fetch_send(5, G, Some(("t", &[0])));
    let r = h.fetch_response(t);
    assert_eq!((r.error_code, r.topics.len()), (LOADING, 0));
    let mut req = OffsetFetchRequest::default();
    let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
    g.group_id = s(G).into();
    req.groups = vec![g];
    let t = h.send(8, "c", "h", Request::OffsetFetch(req));
    let r = h.fetch_response(t);
    assert_eq!((r.error_code, r.groups[0].error_code), (0, LOADING));
    assert!(h.held_imports.is_empty() && h.held.is_empty());
}

#[test]
fn every_other_group_api_answers_14_while_loading() {
    let mut h = loading();
    let t = h.join(jr());
    assert_eq!(h.jres(t).error_code, LOADING);
    let t = h.sync("m", 1, &[]);
    assert_eq!(h.sres(t).error_code, LOADING);
    assert_eq!(h.leave(1, G, &[("m", None)]).error_code, LOADING);
    assert_eq!(h.leave(3, G, &[("m", None)]).error_code, LOADING);
    assert_eq!(h.commit("", -1), vec![LOADING, LOADING]);
    assert_eq!(h.describe().error_code, LOADING);
    let t = h.send(
        4,
        "c",
        "h",
        Request::ListGroups(ListGroupsRequest::default()),
    );
    assert!(matches!(&h.replies[&t], Response::ListGroups(l) if l.error_code == LOADING));
    let mut d = DeleteGroupsRequest::default();
    d.groups_names = vec![s(G).into()];
    let t = h.send(2, "c", "h", Request::DeleteGroups(d));
    assert!(
        matches!(&h.replies[&t], Response::DeleteGroups(r) if r.results[0].error_code == LOADING)
    );
    let mut o = OffsetDeleteRequest::default();
    o.group_id = s(G).into();
    let t = h.send(0, "c", "h", Request::OffsetDelete(o));
    assert!(matches!(&h.replies[&t], Response::OffsetDelete(r) if r.error_code == LOADING));
    assert_eq!(h.c.group_count(), 0, "nothing was created");
    assert!(h.c.is_loading());
    let mut out = Vec::new();
    h.c.load(h.now, Vec::new(), &mut out);
    assert!(!h.c.is_loading());
    assert_eq!(h.commit("", -1), vec![0, 0]);
}

#[test]
fn k14_committed_offsets_survive_a_restart() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.commit_full(
        8,
        G,
        &ids[0],
        None,
        1,
        &[("t", 0, 42, "meta"), ("t", 3, 7, "")],
    );
    h.commit_full(8, "simple", "", None, -1, &[("u", 1, 5, "x")]);
    h.advance(1000);
    h.restart();
    let seen = h.stream.len();
    let t = h.fetch_send(7, G, Some(("t", &[0, 3])));
    let r = h.fetch_response(t);
    let got: Vec<(i64, i32, String)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| {
            let m = p.metadata.as_deref().unwrap_or("").to_string();
            (p.committed_offset, p.committed_leader_epoch, m)
        })
        .collect();
    assert_eq!(got, vec![(42, 7, "meta".into()), (7, 7, String::new())]);
    assert_eq!(h.committed("simple", "u", 1), 5);
    assert!(
        !h.stream[seen..]
            .iter()
            .any(|o| matches!(o, Output::Import { .. })),
        "a group with offsets is not imported after a restart"
    );
}

#[test]
fn stable_group_comes_back_stable_and_its_members_go_on_without_a_rebalance() {
    let mut h = Harness::new();
    let ids = h.stable(3);
    let before = h.describe();
    let rebalances = h.rebalances();
    h.advance(2000);
    h.restart();
    assert_eq!((h.state(), h.gen()), (Stable, 1));
    assert_eq!(h.group().leader.as_deref(), Some(ids[0].as_str()));
    let after = h.describe();
    assert_eq!(after.protocol_data.as_str(), "range");
    let assignments = |d: &kafka_protocol::messages::describe_groups_response::DescribedGroup| {
        d.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.member_assignment.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(assignments(&after), assignments(&before));
    for _ in 0..20 {
        h.advance(3000);
        for id in &ids {
            assert_eq!(h.heartbeat(id, 1), 0);
        }
    }
    let t = h.sync(&ids[2], 1, &[]);
    assert_eq!(h.sres(t).assignment, b("A3"));
    let t = h.join(jr().member(&ids[1]));
    assert_eq!((h.jres(t).error_code, h.jres(t).generation_id), (0, 1));
    assert_eq!(h.commit(&ids[1], 1), vec![0, 0]);
    assert_eq!(
        (h.state(), h.gen(), h.rebalances()),
        (Stable, 1, rebalances)
    );
}

#[test]
fn a_loaded_member_that_stops_heartbeating_expires_after_its_session() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.restart();
    for _ in 0..3 {
        h.advance(3000);
        assert_eq!(h.heartbeat(&ids[0], 1), 0);
    }
    h.advance(1001);
    assert_eq!(h.member_ids(), vec![ids[0].clone()]);
    assert_eq!(h.state(), PreparingRebalance);
    assert_eq!(h.heartbeat(&ids[0], 1), 27);
}

#[test]
fn leader_rejoin_after_a_restart_rebalances_into_the_next_generation() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    h.restart();
    let t1 = h.join(jr().member(&ids[0]));
    let t2 = h.join(jr().member(&ids[1]));
    assert_eq!((h.jres(t1).generation_id, h.jres(t2).generation_id), (2, 2));
    assert_eq!(h.jres(t1).members.len(), 2);
    h.sync_all(&ids, "B");
    assert_eq!(h.disk.records[G].generation, 2);
}

#[test]
fn static_members_keep_their_instance_ids_across_a_restart() {
    let mut h = Harness::new();
    let t1 = h.join(jr().instance("s1"));
    let t2 = h.join(jr().instance("s2"));
    h.advance_until_answered(&[t1, t2], 1000, 10_000);
    let (id1, id2) = (
        h.jres(t1).member_id.to_string(),
        h.jres(t2).member_id.to_string(),
    );
    h.sync_all(&[id1.clone(), id2.clone()], "A");
    h.restart();
    assert_eq!(h.heartbeat_full(G, &id2, Some("s2"), 1), 0);
    let t = h.join(jr().instance("s2"));
    let r = h.jres(t).clone();
    assert_eq!(
        (r.error_code, r.generation_id, r.leader.as_str()),
        (0, 1, id1.as_str())
    );
    assert_eq!(h.heartbeat_full(G, &id2, Some("s2"), 1), 82);
    let t = h.sync(&r.member_id, 1, &[]);
    assert_eq!(h.sres(t).assignment, b("A2"));
}

#[test]
fn k15_an_empty_group_keeps_its_retention_clock_across_a_restart() {
    let mut h = Harness::new();
    let ids = h.stable(1);
    h.commit(&ids[0], 1);
    h.leave(3, G, &[(&ids[0], None)]);
    let day = 24 * 3600 * 1000;
    h.advance(3 * day);
    h.restart();
    assert_eq!((h.state(), h.gen()), (Empty, 2));
    assert_eq!(h.group().protocol_type.as_deref(), Some("consumer"));
    h.advance(4 * day - 600_000);
    assert_eq!(h.committed(G, "t0", 0), 10);
    h.advance(600_000);
    assert_eq!(h.c.group_count(), 0);
    assert!(h.disk.offsets.is_empty());
}

#[test]
fn k16_subscriptions_are_known_after_a_restart() {
    let mut h = Harness::with(Config {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 10_000,
        ..config()
    });
    let mut j = jr();
    j.protocols = vec![("range".into(), subscription(&["t1"]))];
    let ids = h.stable_with(1, j);
    h.commit_full(
        8,
        G,
        &ids[0],
        None,
        1,
        &[("t1", 0, 1, ""), ("t2", 0, 2, "")],
    );
    h.restart();
    for _ in 0..25 {
        h.advance(3000);
        assert_eq!(h.heartbeat(&ids[0], 1), 0);
    }
    assert_eq!((h.committed(G, "t1", 0), h.committed(G, "t2", 0)), (1, -1));
}

#[test]
fn a_group_loaded_over_the_maximum_size_rebalances() {
    let mut h = Harness::new();
    h.stable(3);
    h.c.config.max_group_size = 2;
    h.restart();
    assert_eq!(h.state(), PreparingRebalance);
    assert!(h.events.contains(&Event::RebalanceStarted {
        group: G.into(),
        reason: RebalanceReason::MaxSize
    }));
}

#[test]
fn loading_reports_every_group_to_the_metrics() {
    let mut h = Harness::new();
    h.stable(2);
    h.commit_full(8, "simple", "", None, -1, &[("u", 0, 1, "")]);
    h.events.clear();
    h.restart();
    for (group, state, generation, members) in [(G, Stable, 1, 2), ("simple", Empty, 0, 0)] {
        assert!(h.events.contains(&Event::StateChanged {
            group: group.into(),
            state
        }));
        assert!(h.events.contains(&Event::GenerationChanged {
            group: group.into(),
            generation
        }));
        assert!(h.events.contains(&Event::MembersChanged {
            group: group.into(),
            members
        }));
    }
    assert_eq!(h.group_named("simple").protocol_type, None);
}
