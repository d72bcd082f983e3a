//! Several kelps at the wire level (raw Kafka frames, one real SeaweedFS stack): batches naming
//! groups of different owners are split and merged in request order through any kelp; ListGroups
//! through any kelp lists the whole mesh; the peer listener refuses what its kelp does not own
//! with NOT_COORDINATOR (after waiting `Peers::failover_window` for its view to agree with the
//! sender's) instead of forwarding it again; and the owner's mode decides where a group is
//! coordinated, whatever the mode of the kelp its members talk to.

mod peers;
mod raw;
mod support;

use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use peers::{metric, Cluster};
use raw::Raw;
use support::{create_topic, produce, wait_until, GroupConsumer};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

/// A group id per kelp `0..n`, owned by that kelp when all are live.
fn owned_groups(c: &Cluster, prefix: &str, n: usize) -> Vec<String> {
    let all: Vec<usize> = (0..n).collect();
    (0..n)
        .map(|k| {
            (0..10_000)
                .map(|i| format!("{prefix}-{i}"))
                .find(|g| c.hash_owner(g, &all) == k)
                .expect("a group id for every kelp")
        })
        .collect()
}

/// A simple commit (no member, generation -1) of `offset` on partition 0 of `topic`.
fn commit(conn: &mut Raw, group: &str, topic: &str, offset: i64) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let r: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 8, &request);
    r.topics[0].partitions[0].error_code
}

fn listed(conn: &mut Raw) -> Vec<String> {
    let r: ListGroupsResponse = conn.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert_eq!(r.error_code, 0, "ListGroups");
    r.groups.iter().map(|g| g.group_id.to_string()).collect()
}

#[test]
fn batches_and_lists_span_the_mesh() {
    let c = Cluster::running("wire-batches", 3);
    let groups = owned_groups(&c, "wire-batch", 3);
    let topic = "wire-peers";
    let mut via = [
        Raw::connect(&c.addr(0)),
        Raw::connect(&c.addr(1)),
        Raw::connect(&c.addr(2)),
    ];
    for conn in via.iter_mut() {
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
    }
    // Each group gets offsets through kelp 0: two of the three commits are forwarded.
    for (i, g) in groups.iter().enumerate() {
        assert_eq!(
            commit(&mut via[0], g, topic, 100 + i as i64),
            0,
            "commit of {g}"
        );
    }
    for (i, g) in groups.iter().enumerate() {
        assert_eq!(c.exposing(g), vec![i], "{g} lives on its owner only");
    }

    // ListGroups through any kelp lists every kelp's groups.
    for (k, conn) in via.iter_mut().enumerate() {
        let names = listed(conn);
        for g in &groups {
            assert!(
                names.contains(g),
                "ListGroups via kelp {k} misses {g}: {names:?}"
            );
        }
    }

    // DescribeGroups of all three, in a shuffled order, through kelp 1: answers in request order.
    let order = [groups[2].clone(), groups[0].clone(), groups[1].clone()];
    let r: DescribeGroupsResponse = via[1].call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(order.iter().map(|g| gid(g)).collect()),
    );
    let got: Vec<(String, i16, String)> = r
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.error_code,
                g.group_state.to_string(),
            )
        })
        .collect();
    let want: Vec<(String, i16, String)> = order
        .iter()
        .map(|g| (g.clone(), 0, "Empty".to_string()))
        .collect();
    assert_eq!(got, want);

    // OffsetFetch v8 of all three through kelp 2: each group's own offset, in request order.
    let fetch = OffsetFetchRequest::default().with_groups(
        order
            .iter()
            .map(|g| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid(g))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s(topic)))
                        .with_partition_indexes(vec![0])]))
            })
            .collect(),
    );
    let r: OffsetFetchResponse = via[2].call(ApiKey::OffsetFetch, 8, &fetch);
    let got: Vec<(String, i16, i64)> = r
        .groups
        .iter()
        .map(|g| {
            let offset = g
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .map_or(-2, |p| p.committed_offset);
            (g.group_id.to_string(), g.error_code, offset)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (order[0].clone(), 0, 102),
            (order[1].clone(), 0, 100),
            (order[2].clone(), 0, 101)
        ]
    );

    // DeleteGroups of all three through kelp 0; then no kelp lists them.
    let r: DeleteGroupsResponse = via[0].call(
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(groups.iter().map(|g| gid(g)).collect()),
    );
    let got: Vec<(String, i16)> = r
        .results
        .iter()
        .map(|g| (g.group_id.to_string(), g.error_code))
        .collect();
    assert_eq!(
        got,
        groups.iter().map(|g| (g.clone(), 0)).collect::<Vec<_>>()
    );
    let names = listed(&mut via[1]);
    assert!(
        groups.iter().all(|g| !names.contains(g)),
        "deleted groups still listed: {names:?}"
    );
    c.assert_no_panics();
}

#[test]
fn the_peer_listener_refuses_what_its_kelp_does_not_own() {
    let c = Cluster::running("wire-refuse", 2);
    let groups = owned_groups(&c, "wire-refuse", 2);
    let mut peer0 = Raw::connect(&c.nodes[0].peer);
    peer0
        .stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // A Heartbeat for kelp 1's group on kelp 0's peer listener: refused, not forwarded.
    let r: HeartbeatResponse = peer0.call(
        ApiKey::Heartbeat,
        4,
        &HeartbeatRequest::default()
            .with_group_id(gid(&groups[1]))
            .with_member_id(s("m"))
            .with_generation_id(1),
    );
    assert_eq!(r.error_code, 16);
    // A batch naming both kelps' groups: refused whole (a peer only sends what it thinks we own).
    let r: DescribeGroupsResponse = peer0.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![gid(&groups[0]), gid(&groups[1])]),
    );
    assert_eq!(
        r.groups.iter().map(|g| g.error_code).collect::<Vec<_>>(),
        vec![16, 16]
    );
    // Its own group is served there.
    let r: DescribeGroupsResponse = peer0.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![gid(&groups[0])]),
    );
    assert_eq!(
        (r.groups[0].error_code, r.groups[0].group_state.as_str()),
        (0, "Dead")
    );
    assert!(
        peers::metric(
            c.kelp(0),
            "kelp_requests_total",
            &[("api", "Heartbeat"), ("path", "peer")]
        )
        .unwrap_or(0.0)
            == 0.0,
        "kelp 0 forwarded nothing"
    );
    c.assert_no_panics();
}

#[test]
fn the_owners_mode_decides_across_kelps() {
    // A config skew: kelp 0 passes groups through to the gateway, kelp 1 coordinates them itself.
    let mut c = Cluster::new("wire-modes", 2);
    c.start_with(0, &["--group-mode", "passthrough"]);
    c.start_with(1, &["--group-mode", "local"]);
    c.wait_peers_live(2, Duration::from_secs(30));
    let groups = owned_groups(&c, "wire-modes", 2);
    let topic = "wire-peers-modes";
    create_topic(&c.addr(1), topic, 2);
    assert_eq!(produce(&c.addr(1), topic, 50), 50);

    // A member on kelp 1 of a group kelp 0 owns: kelp 0's mode (passthrough) decides.
    let passed = GroupConsumer::start(&c.addr(1), &groups[0], "modes-a", &[topic]);
    // A member on kelp 0 of a group kelp 1 owns: kelp 1's mode (local) decides.
    let local = GroupConsumer::start(&c.addr(0), &groups[1], "modes-b", &[topic]);
    wait_until(
        "both groups consume all 50 records",
        Duration::from_secs(90),
        || passed.count() >= 50 && local.count() >= 50,
    );
    let join = |k: usize, path: &str| {
        metric(
            c.kelp(k),
            "kelp_requests_total",
            &[("api", "JoinGroup"), ("path", path)],
        )
        .unwrap_or(0.0)
    };
    assert!(
        join(1, "peer") >= 1.0,
        "kelp 1 forwarded its member's JoinGroup to the owner"
    );
    assert!(
        join(0, "passthrough") >= 1.0,
        "the owner passed it on to the gateway"
    );
    assert!(
        join(0, "peer") >= 1.0,
        "kelp 0 forwarded the other group's JoinGroup to its owner"
    );
    assert_eq!(
        c.exposing(&groups[1]),
        vec![1],
        "the local group is coordinated by kelp 1 only"
    );
    // The owner observes the passed-through group as it passes (mode passthrough); nobody
    // coordinates it locally.
    let mode = |k: usize, m: &str| {
        metric(
            c.kelp(k),
            "kelp_group_mode",
            &[("group", &groups[0]), ("mode", m)],
        )
    };
    assert_eq!(
        mode(0, "passthrough"),
        Some(1.0),
        "kelp 0 passes {} through",
        groups[0]
    );
    assert_eq!(
        mode(1, "local"),
        None,
        "kelp 1 does not coordinate {}",
        groups[0]
    );
    drop(passed.stop());
    drop(local.stop());
    c.assert_no_panics();
}
