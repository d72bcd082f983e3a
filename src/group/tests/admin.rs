//! §6 L: DescribeGroups, ListGroups, DeleteGroups and OffsetDelete.

use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};

use super::offsets::subscription;
use super::*;

#[test]
fn l1_describe_stable_shows_protocol_and_metadata_other_states_do_not() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let d = h.describe();
    assert_eq!(
        (
            d.error_code,
            d.group_state.as_str(),
            d.protocol_type.as_str()
        ),
        (0, "Stable", "consumer")
    );
    assert_eq!(d.protocol_data.as_str(), "range");
    assert_eq!(d.members[0].member_metadata, b("meta"));
    assert_eq!(d.members[1].member_assignment, b("A2"));
    assert_eq!(d.members[0].client_host.as_str(), "/127.0.0.1");
    h.join(jr().member(&ids[0]));
    let d = h.describe();
    assert_eq!(
        (d.group_state.as_str(), d.protocol_data.as_str()),
        ("PreparingRebalance", "")
    );
    assert!(d.members.iter().all(|m| m.member_metadata.is_empty()));
    assert_eq!(d.members[1].member_assignment, b("A2"));
}

#[test]
fn l2_describe_unknown_group_is_dead_before_v6_and_69_from_v6() {
    let mut h = Harness::new();
    let d = h.describe_v(5, "nope");
    assert_eq!(
        (d.error_code, d.group_state.as_str(), d.group_id.as_str()),
        (0, "Dead", "nope")
    );
    let d = h.describe_v(6, "nope");
    assert_eq!(d.error_code, 69);
    assert!(d.error_message.is_some());
}

fn list(h: &mut Harness, v: i16, states: &[&str], types: &[&str]) -> Vec<(String, String, String)> {
    let mut r = ListGroupsRequest::default();
    r.states_filter = states.iter().map(|x| s(x)).collect();
    r.types_filter = types.iter().map(|x| s(x)).collect();
    let t = h.send(v, "c", "h", Request::ListGroups(r));
    let Response::ListGroups(l) = &h.replies[&t] else {
        panic!()
    };
    l.groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.group_state.to_string(),
                g.group_type.to_string(),
            )
        })
        .collect()
}

#[test]
fn l3_list_groups_filters_by_state_and_type_case_insensitively() {
    let mut h = Harness::new();
    h.stable(1);
    h.commit_full(8, "simple", "", None, -1, &[("t", 0, 1, "")]);
    h.join(jr().v(3).group("joining"));
    let stable = list(&mut h, 4, &["STABLE"], &[]);
    assert_eq!(
        stable.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        vec!["g"]
    );
    let classic = list(&mut h, 5, &[], &["classic"]);
    assert_eq!(classic.len(), 3);
    assert!(classic.iter().all(|g| g.2 == "classic"));
    assert!(list(&mut h, 5, &[], &["consumer"]).is_empty());
    let states: Vec<String> = list(&mut h, 4, &[], &[]).into_iter().map(|g| g.1).collect();
    assert_eq!(states, vec!["Stable", "PreparingRebalance", "Empty"]);
}

#[test]
fn l4_delete_groups_active_unknown_empty() {
    let mut h = Harness::new();
    h.stable(1);
    h.commit_full(8, "empty", "", None, -1, &[("t", 0, 1, "")]);
    let mut r = DeleteGroupsRequest::default();
    r.groups_names = vec![s(G).into(), s("unknown").into(), s("empty").into()];
    let t = h.send(2, "c", "h", Request::DeleteGroups(r));
    let Response::DeleteGroups(d) = &h.replies[&t] else {
        panic!()
    };
    assert_eq!(
        d.results.iter().map(|r| r.error_code).collect::<Vec<_>>(),
        vec![68, 69, 0]
    );
    assert!(!h.c.groups.contains_key("empty"));
    assert!(!h.c.offsets.has_offsets("empty"));
    assert_eq!(h.describe_v(5, "empty").group_state.as_str(), "Dead");
    let r = h.commit_full(9, "empty", "m", None, 1, &[("t", 0, 1, "")]);
    assert_eq!(commit_codes(&r), vec![69]);
}

fn offset_delete(h: &mut Harness, group: &str, topics: &[&str]) -> OffsetDeleteResponse {
    let mut r = OffsetDeleteRequest::default();
    r.group_id = s(group).into();
    r.topics = topics
        .iter()
        .map(|t| {
            let mut x = OffsetDeleteRequestTopic::default();
            x.name = s(t).into();
            let mut p = OffsetDeleteRequestPartition::default();
            p.partition_index = 0;
            x.partitions = vec![p];
            x
        })
        .collect();
    let t = h.send(0, "c", "h", Request::OffsetDelete(r));
    let Response::OffsetDelete(d) = &h.replies[&t] else {
        panic!()
    };
    d.clone()
}

#[test]
fn l5_offset_delete_refuses_subscribed_topics() {
    let mut h = Harness::new();
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
    let d = offset_delete(&mut h, G, &["t1", "t2"]);
    assert_eq!(d.error_code, 0);
    let codes: Vec<i16> = d
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(codes, vec![86, 0]);
    assert!(h.c.offsets.get(G, "t2", 0).is_none());
    assert!(h.c.offsets.get(G, "t1", 0).is_some());
    assert_eq!(offset_delete(&mut h, "nope", &["t1"]).error_code, 69);
}

#[test]
fn l5_offset_delete_on_active_non_consumer_group_is_68() {
    let mut h = Harness::new();
    h.stable_with(1, jr().ptype("connect"));
    assert_eq!(offset_delete(&mut h, G, &["t"]).error_code, 68);
}

/// `views` (for the lag task and `GET /groups`): every group with members or offsets, its state,
/// members and assignments, and each committed offset with its commit time; reading changes nothing.
#[test]
fn views_show_every_group_with_its_members_and_committed_offsets() {
    let mut h = Harness::new();
    let ids = h.stable(2);
    let generation = h.gen();
    h.advance(500);
    let committed_at = h.now;
    let r = h.commit_full(
        2,
        G,
        &ids[0],
        None,
        generation,
        &[("t", 0, 42, ""), ("t", 1, 7, "")],
    );
    assert_eq!(commit_codes(&r), [0, 0]);
    // A simple group: offsets only, no member ever joined.
    let r = h.commit_full(2, "simple", "", None, -1, &[("u", 3, 9, "")]);
    assert_eq!(commit_codes(&r), [0]);
    let views = h.c.views();
    assert_eq!(views, h.c.views(), "reading twice gives the same picture");
    let names: Vec<&str> = views.iter().map(|v| v.group.as_str()).collect();
    assert_eq!(names, [G, "simple"]);
    let g = &views[0];
    assert_eq!((g.state, g.generation), (GroupState::Stable, generation));
    assert_eq!(
        (g.protocol_type.as_str(), g.protocol.as_str()),
        ("consumer", "range")
    );
    assert_eq!(g.leader.as_deref(), Some(ids[0].as_str()));
    let assigned: Vec<(&str, Bytes)> = g
        .members
        .iter()
        .map(|m| (m.member_id.as_str(), m.assignment.clone()))
        .collect();
    assert_eq!(
        assigned,
        [(ids[0].as_str(), b("A1")), (ids[1].as_str(), b("A2"))]
    );
    let offsets: Vec<(&str, i32, i64, Millis)> = g
        .offsets
        .iter()
        .map(|o| (o.topic.as_str(), o.partition, o.offset, o.commit_timestamp))
        .collect();
    assert_eq!(
        offsets,
        [("t", 0, 42, committed_at), ("t", 1, 7, committed_at)]
    );
    let simple = &views[1];
    assert!(simple.members.is_empty());
    assert_eq!(simple.offsets.len(), 1);
    assert_eq!(h.state(), GroupState::Stable, "the group is untouched");
}
