//! Wire conformance of kelp's group coordinator: raw frames encoded with `kafka-protocol` at the
//! boundary versions of every group API, sent to a running kelp, answers decoded and checked; a
//! pipelined session on one connection; and hand-written golden LeaveGroup v4 bytes.

mod raw;
mod support;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use raw::Raw;

fn kelp() -> support::Kelp {
    support::Kelp::start(&["--group-initial-rebalance-delay-ms", "0"])
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn join(group: &str, member: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))])
}

/// Joins a fresh group alone at JoinGroup `version` (handling MEMBER_ID_REQUIRED from v4) and
/// returns (member id, generation).
fn join_alone(raw: &mut Raw, group: &str, version: i16) -> (String, i32) {
    let mut response: JoinGroupResponse =
        raw.call(ApiKey::JoinGroup, version, &join(group, "", None));
    if version >= 4 {
        assert_eq!(response.error_code, 79, "v{version}: MEMBER_ID_REQUIRED");
        assert!(!response.member_id.is_empty());
        let member = response.member_id.to_string();
        response = raw.call(ApiKey::JoinGroup, version, &join(group, &member, None));
    }
    assert_eq!(response.error_code, 0, "JoinGroup v{version}");
    assert_eq!(response.generation_id, 1);
    assert_eq!(response.leader, response.member_id, "a lone member leads");
    assert_eq!(response.members.len(), 1, "the leader sees every member");
    assert_eq!(response.members[0].metadata.as_ref(), b"subscription");
    if version >= 7 {
        assert_eq!(response.protocol_type.as_deref(), Some("consumer"));
    }
    assert_eq!(response.protocol_name.as_deref(), Some("range"));
    (response.member_id.to_string(), response.generation_id)
}

fn sync(group: &str, member: &str, generation: i32, assignment: &[u8]) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(member))
            .with_assignment(Bytes::copy_from_slice(assignment))])
}

fn heartbeat(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
}

#[test]
fn join_sync_heartbeat_leave_at_boundary_versions() {
    let kelp = kelp();
    let mut raw = Raw::connect(kelp.addr());
    let cases: [(i16, i16, i16, i16); 6] = [
        // (JoinGroup, SyncGroup, Heartbeat, LeaveGroup)
        (0, 0, 0, 0),
        (4, 2, 2, 2),
        (5, 3, 3, 3),
        (6, 4, 4, 4),
        (7, 4, 4, 4),
        (9, 5, 4, 5),
    ];
    for (jv, sv, hv, lv) in cases {
        let group = format!("wire-v{jv}");
        let (member, generation) = join_alone(&mut raw, &group, jv);
        let assignment = format!("assignment-for-{member}");
        let response: SyncGroupResponse = raw.call(
            ApiKey::SyncGroup,
            sv,
            &sync(&group, &member, generation, assignment.as_bytes()),
        );
        assert_eq!(response.error_code, 0, "SyncGroup v{sv}");
        assert_eq!(
            response.assignment.as_ref(),
            assignment.as_bytes(),
            "opaque bytes echoed"
        );
        if sv >= 5 {
            assert_eq!(response.protocol_name.as_deref(), Some("range"));
        }
        let ok: HeartbeatResponse = raw.call(
            ApiKey::Heartbeat,
            hv,
            &heartbeat(&group, &member, generation),
        );
        assert_eq!(ok.error_code, 0, "Heartbeat v{hv}");
        let stale: HeartbeatResponse = raw.call(
            ApiKey::Heartbeat,
            hv,
            &heartbeat(&group, &member, generation + 7),
        );
        assert_eq!(
            stale.error_code, 22,
            "Heartbeat v{hv} with a wrong generation"
        );
        let leave = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(s(&member)),
                    MemberIdentity::default().with_member_id(s("nobody")),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_member_id(s(&member))
        };
        let response: LeaveGroupResponse = raw.call(ApiKey::LeaveGroup, lv, &leave);
        assert_eq!(response.error_code, 0, "LeaveGroup v{lv}");
        if lv >= 3 {
            let codes: Vec<i16> = response.members.iter().map(|m| m.error_code).collect();
            assert_eq!(codes, vec![0, 25], "per-member results of LeaveGroup v{lv}");
        }
        let gone: HeartbeatResponse = raw.call(
            ApiKey::Heartbeat,
            hv,
            &heartbeat(&group, &member, generation),
        );
        assert_eq!(gone.error_code, 25, "a member that left is unknown");
    }
}

fn commit(
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offset: i64,
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_metadata(Some(s("meta")))])])
}

#[test]
fn offsets_describe_list_delete_at_boundary_versions() {
    let kelp = kelp();
    let mut raw = Raw::connect(kelp.addr());
    let group = "wire-offsets";
    let (member, generation) = join_alone(&mut raw, group, 9);
    let _: SyncGroupResponse = raw.call(
        ApiKey::SyncGroup,
        5,
        &sync(group, &member, generation, b"a"),
    );
    for (i, version) in [2i16, 7, 8, 9].into_iter().enumerate() {
        let response: OffsetCommitResponse = raw.call(
            ApiKey::OffsetCommit,
            version,
            &commit(group, &member, generation, "t", 100 + i as i64),
        );
        assert_eq!(
            response.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{version}"
        );
        let stale: OffsetCommitResponse = raw.call(
            ApiKey::OffsetCommit,
            version,
            &commit(group, &member, generation + 1, "t", 1),
        );
        assert_eq!(
            stale.topics[0].partitions[0].error_code, 22,
            "OffsetCommit v{version} stale"
        );
    }
    let last = 103;
    for version in [1i16, 5, 6, 7] {
        let request = OffsetFetchRequest::default()
            .with_group_id(gid(group))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0, 1])]));
        let response: OffsetFetchResponse = raw.call(ApiKey::OffsetFetch, version, &request);
        let parts = &response.topics[0].partitions;
        assert_eq!(
            (parts[0].committed_offset, parts[1].committed_offset),
            (last, -1),
            "OffsetFetch v{version}"
        );
        assert_eq!(parts[0].metadata.as_deref(), Some("meta"));
    }
    for version in [8i16, 9] {
        let request = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(gid(group))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0])])),
            OffsetFetchRequestGroup::default()
                .with_group_id(gid("wire-never-seen"))
                .with_topics(None),
        ]);
        let response: OffsetFetchResponse = raw.call(ApiKey::OffsetFetch, version, &request);
        assert_eq!(response.groups.len(), 2, "OffsetFetch v{version} batched");
        assert_eq!(
            response.groups[0].topics[0].partitions[0].committed_offset,
            last
        );
        assert!(
            response.groups[1].topics.is_empty(),
            "an unknown group has no offsets"
        );
    }
    for version in [0i16, 4, 5] {
        let request =
            DescribeGroupsRequest::default().with_groups(vec![gid(group), gid("wire-missing")]);
        let response: DescribeGroupsResponse = raw.call(ApiKey::DescribeGroups, version, &request);
        let (ours, missing) = (&response.groups[0], &response.groups[1]);
        assert_eq!(
            ours.group_state.as_str(),
            "Stable",
            "DescribeGroups v{version}"
        );
        assert_eq!(ours.protocol_data.as_str(), "range");
        assert_eq!(ours.members.len(), 1);
        assert_eq!(ours.members[0].client_id.as_str(), "wire-test");
        assert_eq!(ours.members[0].member_assignment.as_ref(), b"a");
        assert_eq!(
            (missing.error_code, missing.group_state.as_str()),
            (0, "Dead")
        );
    }
    for version in [0i16, 3, 4, 5] {
        let mut request = ListGroupsRequest::default();
        if version >= 4 {
            request.states_filter = vec![s("stable")];
        }
        let response: ListGroupsResponse = raw.call(ApiKey::ListGroups, version, &request);
        let ids: Vec<&str> = response
            .groups
            .iter()
            .map(|g| g.group_id.as_str())
            .collect();
        assert!(ids.contains(&group), "ListGroups v{version}: {ids:?}");
        if version >= 4 {
            assert!(response
                .groups
                .iter()
                .all(|g| g.group_state.as_str() == "Stable"));
        }
    }
    // A group with members cannot be deleted; once Empty it can, offsets and all.
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![gid(group)]);
    let response: DeleteGroupsResponse = raw.call(ApiKey::DeleteGroups, 2, &delete);
    assert_eq!(response.results[0].error_code, 68, "NON_EMPTY_GROUP");
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid(group))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&member))]);
    let _: LeaveGroupResponse = raw.call(ApiKey::LeaveGroup, 5, &leave);
    for version in [0i16, 2] {
        let response: DeleteGroupsResponse = raw.call(ApiKey::DeleteGroups, version, &delete);
        let want = if version == 0 { 0 } else { 69 };
        assert_eq!(
            response.results[0].error_code, want,
            "DeleteGroups v{version}"
        );
    }
}

#[test]
fn group_requests_pipelined_on_one_connection_come_back_in_order() {
    let kelp = kelp();
    let mut raw = Raw::connect(kelp.addr());
    let group = "wire-pipelined";
    // JoinGroup v3 (no MEMBER_ID_REQUIRED) parks until the join completes; everything written after
    // it, local or forwarded, must come back after it and in order.
    let mut sent = vec![(
        ApiKey::JoinGroup,
        3,
        raw.send(ApiKey::JoinGroup, 3, &join(group, "", None)),
    )];
    sent.push((
        ApiKey::ApiVersions,
        3,
        raw.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
    ));
    sent.push((
        ApiKey::Metadata,
        4,
        raw.send(ApiKey::Metadata, 4, &MetadataRequest::default()),
    ));
    let describe = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
    sent.push((
        ApiKey::DescribeGroups,
        5,
        raw.send(ApiKey::DescribeGroups, 5, &describe),
    ));
    sent.push((
        ApiKey::ListGroups,
        5,
        raw.send(ApiKey::ListGroups, 5, &ListGroupsRequest::default()),
    ));
    let find = FindCoordinatorRequest::default().with_key(s(group));
    sent.push((
        ApiKey::FindCoordinator,
        3,
        raw.send(ApiKey::FindCoordinator, 3, &find),
    ));
    for (api, version, corr) in sent {
        let mut frame = raw.recv_frame().expect("response");
        let header = <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(
            &mut frame,
            api.response_header_version(version),
        )
        .unwrap();
        assert_eq!(header.correlation_id, corr, "{api:?} out of order");
        if api == ApiKey::JoinGroup {
            let join = <JoinGroupResponse as kafka_protocol::protocol::Decodable>::decode(
                &mut frame, version,
            )
            .unwrap();
            assert_eq!((join.error_code, join.generation_id), (0, 1));
        }
    }
}

/// GROUP_SEMANTICS.md §2.4: LeaveGroup v4 for group "g", member "m", written byte by byte. The group
/// does not exist, so the answer is top-level 0 and UNKNOWN_MEMBER_ID (25) for the member.
#[test]
fn leave_group_v4_golden_bytes() {
    let kelp = kelp();
    let mut raw = Raw::connect(kelp.addr());
    #[rustfmt::skip]
    let request: &[u8] = &[
        0, 0, 0, 20,                    // frame length
        0x00, 0x0d, 0x00, 0x04,         // LeaveGroup v4
        0x00, 0x00, 0x00, 0x2a,         // correlation id 42
        0x00, 0x01, b'c', 0x00,         // client id "c" (non-compact), header tags
        0x02, b'g',                     // GroupId "g"
        0x02,                           // Members: 1
        0x02, b'm', 0x00, 0x00,         // MemberId "m", GroupInstanceId null, member tags
        0x00,                           // top-level tags
    ];
    raw.send_bytes(request).unwrap();
    let response = raw.recv_frame().expect("a LeaveGroup v4 response");
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x00, 0x00, 0x00, 0x2a, 0x00,   // correlation id, header tags (response header v1)
        0x00, 0x00, 0x00, 0x00,         // ThrottleTimeMs
        0x00, 0x00,                     // ErrorCode
        0x02,                           // Members: 1
        0x02, b'm', 0x00, 0x00, 0x19, 0x00, // MemberId "m", GroupInstanceId null, 25, member tags
        0x00,                           // top-level tags
    ];
    assert_eq!(response.as_ref(), expected);
}
