//! Per-group modes on the wire, with raw frames against a real kelp and gateway: what ApiVersions
//! advertises follows the rules after a reload; a connection that negotiated a version the gateway
//! does not serve is closed when a request of a passthrough group needs it (the client negotiates
//! again); a batch naming groups of both modes gets NOT_COORDINATOR for the gateway's; ListGroups
//! lists each group from the coordinator its mode names; an all-topics OffsetFetch never reaches
//! the gateway (4.48 runs out of memory on it); a gateway defect (4.48's malformed DescribeGroups)
//! visible while a group is passed through is gone once kelp serves it.

mod raw;
mod support;

use std::path::Path;
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use raw::Raw;
use support::{GroupConsumer, Kelp};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn range(raw: &mut Raw, api: ApiKey) -> Option<(i16, i16)> {
    let r: ApiVersionsResponse = raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    r.api_keys
        .iter()
        .find(|v| v.api_key == api as i16)
        .map(|v| (v.min_version, v.max_version))
}

fn metric(kelp: &Kelp, series: &str) -> f64 {
    let (_, body) = kelp.http_get("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Rewrites the config file, sends SIGHUP and waits until the reload counted as ok.
fn reload(kelp: &Kelp, path: &Path, text: &str) {
    let series = "kelp_config_reloads_total{result=\"ok\"} ";
    let before = metric(kelp, series);
    std::fs::write(path, text).expect("write config");
    let pid = kelp.pid().expect("kelp runs").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .is_ok_and(|s| s.success()));
    support::wait_until("the reload", Duration::from_secs(10), || {
        metric(kelp, series) > before
    });
}

fn join(group: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(bytes::Bytes::from_static(b"m"))])
}

#[test]
fn versions_batches_and_lists_follow_each_groups_mode() {
    let dir = support::scratch_dir().join("wire-migration");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kelp.toml");
    std::fs::write(&config, "[groups]\ndefault_mode = \"local\"\n").unwrap();
    let kelp = Kelp::start(&["--config", config.to_str().unwrap()]);

    // All local: kelp's own group ranges.
    let mut stale = Raw::connect(kelp.addr());
    assert_eq!(range(&mut stale, ApiKey::JoinGroup), Some((0, 9)));
    assert!(range(&mut stale, ApiKey::DeleteGroups).is_some());

    // Some groups passed through: new connections are told the gateway's ranges.
    reload(
        &kelp,
        &config,
        "[groups]\ndefault_mode = \"passthrough\"\n\n[[groups.rules]]\npattern = \"loc-*\"\nmode = \"local\"\n",
    );
    let mut fresh = Raw::connect(kelp.addr());
    let (_, join_max) = range(&mut fresh, ApiKey::JoinGroup).expect("JoinGroup advertised");
    assert!(
        join_max < 9,
        "JoinGroup capped at the gateway's v{join_max}"
    );
    assert_eq!(
        range(&mut fresh, ApiKey::DeleteGroups),
        None,
        "the gateway has no DeleteGroups"
    );

    // The old connection still speaks JoinGroup v9: fine for a local group...
    let r: JoinGroupResponse = stale.call(ApiKey::JoinGroup, 9, &join("loc-stale"));
    assert_eq!(
        r.error_code, 79,
        "MEMBER_ID_REQUIRED from kelp's coordinator"
    );
    // ...but a passthrough group at v9 closes the connection, so the client negotiates again.
    stale.send(ApiKey::JoinGroup, 9, &join("pt-stale"));
    assert!(
        stale.is_closed(),
        "kelp kept a connection whose version the gateway lacks"
    );
    assert!(
        metric(
            &kelp,
            "kelp_connection_errors_total{reason=\"renegotiate\"} "
        ) >= 1.0
    );

    // A local group with offsets (a simple commit), and a live group at the gateway.
    let topic = "wire-migration";
    support::create_topic(kelp.addr(), topic, 2);
    let commit = OffsetCommitRequest::default()
        .with_group_id(gid("loc-1"))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_retention_time_ms(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(5)])]);
    let r: OffsetCommitResponse = fresh.call(ApiKey::OffsetCommit, 2, &commit);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let member = GroupConsumer::start(kelp.addr(), "pt-live", "pt-live-member", &[topic]);
    support::wait_until(
        "the gateway's group formed",
        Duration::from_secs(30),
        || !member.partitions().is_empty(),
    );

    // A batch of both modes: kelp answers its group, NOT_COORDINATOR for the gateway's.
    let mixed = DescribeGroupsRequest::default().with_groups(vec![gid("pt-live"), gid("loc-1")]);
    let r: DescribeGroupsResponse = fresh.call(ApiKey::DescribeGroups, 3, &mixed);
    let got: Vec<(&str, i16)> = r
        .groups
        .iter()
        .map(|g| (g.group_id.as_str(), g.error_code))
        .collect();
    assert_eq!(got, [("pt-live", 16), ("loc-1", 0)]);

    // ListGroups: kelp's groups once each, plus what the gateway lists (4.48's ListGroups body
    // does not decode: it writes the correlation id twice, so it contributes nothing).
    let r: ListGroupsResponse = fresh.call(ApiKey::ListGroups, 3, &ListGroupsRequest::default());
    let listed: Vec<&str> = r.groups.iter().map(|g| g.group_id.as_str()).collect();
    eprintln!("ListGroups through kelp: {listed:?}");
    assert_eq!(r.error_code, 0);
    assert_eq!(
        listed.iter().filter(|g| **g == "loc-1").count(),
        1,
        "{listed:?}"
    );
    assert!(listed.contains(&"loc-stale"), "{listed:?}");

    // An all-topics OffsetFetch of a passthrough group is refused, and the gateway lives on.
    let fetch = OffsetFetchRequest::default()
        .with_group_id(gid("pt-live"))
        .with_topics(None);
    let r: OffsetFetchResponse = fresh.call(ApiKey::OffsetFetch, 5, &fetch);
    assert_eq!(r.error_code, 42, "INVALID_REQUEST");
    let r: MetadataResponse = fresh.call(ApiKey::Metadata, 4, &MetadataRequest::default());
    assert!(r
        .topics
        .iter()
        .any(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic)));

    // A gateway defect visible in passthrough and gone once kelp serves the group: 4.48 answers
    // DescribeGroups with its correlation id written twice, so the body does not describe the
    // group. Moved to kelp, the same request describes it.
    let before = describe(&mut fresh, "pt-live");
    eprintln!("DescribeGroups through the gateway: {before:?}");
    assert!(
        before.is_err(),
        "the gateway's DescribeGroups decoded: {before:?}"
    );
    reload(
        &kelp,
        &config,
        "[groups]\ndefault_mode = \"passthrough\"\n\n[[groups.rules]]\npattern = \"loc-*\"\nmode = \"local\"\n\n[[groups.rules]]\npattern = \"pt-live\"\nmode = \"local\"\n",
    );
    support::wait_until(
        "the member rejoined at kelp",
        Duration::from_secs(30),
        || {
            describe(&mut fresh, "pt-live")
                .is_ok_and(|(state, members)| state == "Stable" && members == 1)
        },
    );
    drop(member);
}

/// DescribeGroups v0 of one group: (state, members), or why the answer does not describe it.
fn describe(raw: &mut Raw, group: &str) -> Result<(String, usize), String> {
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;
    let request = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
    raw.send(ApiKey::DescribeGroups, 0, &request);
    let mut frame = raw.recv_frame().ok_or("connection closed")?;
    let header = ResponseHeader::decode(&mut frame, 0).map_err(|e| e.to_string())?;
    let body = DescribeGroupsResponse::decode(&mut frame, 0).map_err(|e| e.to_string())?;
    if frame.has_remaining() {
        return Err(format!(
            "{} bytes after the body (correlation id {})",
            frame.remaining(),
            header.correlation_id
        ));
    }
    match body.groups.as_slice() {
        [g] if g.group_id.as_str() == group && g.error_code == 0 => {
            Ok((g.group_state.to_string(), g.members.len()))
        }
        other => Err(format!("not a description of {group}: {other:?}")),
    }
}
