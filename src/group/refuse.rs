//! One answer for any group request that carries an error for every group it names: how kelp says
//! NOT_COORDINATOR (16) for a group another kelp owns, or a peer that could not be reached. The
//! shape follows each API's version: a top-level error where the version has one, otherwise one
//! error per group, topic or partition the request named.

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerDescribedGroup;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatResponse, DeleteGroupsResponse,
    DescribeGroupsResponse, HeartbeatResponse, LeaveGroupResponse, ListGroupsResponse,
    OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchResponse,
};

use super::rebalance::{join_error, sync_response};
use super::{Request, Response};

/// The answer to `request` (at `version`) that refuses all of it with `code`.
pub fn refusal(request: &Request, version: i16, code: i16) -> Response {
    match request {
        Request::JoinGroup(r) => Response::JoinGroup(join_error(version, code, &r.member_id)),
        Request::SyncGroup(_) => Response::SyncGroup(sync_response(None, code, Default::default())),
        Request::Heartbeat(_) => {
            Response::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        Request::LeaveGroup(_) => {
            Response::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        Request::OffsetCommit(r) => Response::OffsetCommit(
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        Request::OffsetFetch(r) if version >= 8 => Response::OffsetFetch(
            OffsetFetchResponse::default().with_groups(
                r.groups
                    .iter()
                    .map(|g| {
                        OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        Request::OffsetFetch(_) if version >= 2 => {
            Response::OffsetFetch(OffsetFetchResponse::default().with_error_code(code))
        }
        // v0–1 have no top-level error: every requested partition carries it.
        Request::OffsetFetch(r) => Response::OffsetFetch(
            OffsetFetchResponse::default().with_topics(
                r.topics
                    .iter()
                    .flatten()
                    .map(|t| {
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(-1)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        Request::OffsetDelete(_) => {
            Response::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code))
        }
        Request::DescribeGroups(r) => Response::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(
                r.groups
                    .iter()
                    .map(|g| {
                        DescribedGroup::default()
                            .with_group_id(g.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        Request::ListGroups(_) => {
            Response::ListGroups(ListGroupsResponse::default().with_error_code(code))
        }
        Request::DeleteGroups(r) => Response::DeleteGroups(
            DeleteGroupsResponse::default().with_results(
                r.groups_names
                    .iter()
                    .map(|g| {
                        DeletableGroupResult::default()
                            .with_group_id(g.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        Request::ConsumerGroupHeartbeat(_) => Response::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default().with_error_code(code),
        ),
        Request::ConsumerGroupDescribe(r) => Response::ConsumerGroupDescribe(
            ConsumerGroupDescribeResponse::default().with_groups(
                r.group_ids
                    .iter()
                    .map(|g| {
                        ConsumerDescribedGroup::default()
                            .with_group_id(g.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
    }
}

/// The group ids a request names, in request order (ListGroups names none).
pub fn named_groups(request: &Request) -> Vec<&str> {
    match request {
        Request::JoinGroup(r) => vec![r.group_id.as_str()],
        Request::SyncGroup(r) => vec![r.group_id.as_str()],
        Request::Heartbeat(r) => vec![r.group_id.as_str()],
        Request::LeaveGroup(r) => vec![r.group_id.as_str()],
        Request::OffsetCommit(r) => vec![r.group_id.as_str()],
        Request::OffsetDelete(r) => vec![r.group_id.as_str()],
        // v8+ carries a list of groups; earlier versions one group id.
        Request::OffsetFetch(r) if r.groups.is_empty() => vec![r.group_id.as_str()],
        Request::OffsetFetch(r) => r.groups.iter().map(|g| g.group_id.as_str()).collect(),
        Request::DescribeGroups(r) => r.groups.iter().map(|g| g.as_str()).collect(),
        Request::DeleteGroups(r) => r.groups_names.iter().map(|g| g.as_str()).collect(),
        Request::ListGroups(_) => Vec::new(),
        Request::ConsumerGroupHeartbeat(r) => vec![r.group_id.as_str()],
        Request::ConsumerGroupDescribe(r) => r.group_ids.iter().map(|g| g.as_str()).collect(),
    }
}
