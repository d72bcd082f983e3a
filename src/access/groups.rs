//! The access checks of the group APIs, per group id as Kafka's group coordinator handlers do:
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup and OffsetCommit need Read on the group, OffsetFetch
//! and DescribeGroups Describe, DeleteGroups and OffsetDelete Delete; OffsetCommit and OffsetDelete
//! also need Read on each topic, OffsetFetch Describe. Batches (DescribeGroups, DeleteGroups,
//! OffsetFetch v8+) go on with the allowed groups and the refused ones are answered
//! GROUP_AUTHORIZATION_FAILED in request order. ListGroups lists the groups the principal may
//! Describe (all of them with Describe on the cluster); FindCoordinator refuses a group key the
//! principal may not Describe.

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ListGroupsResponse,
    OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{
    refuse, Ctx, Operation, Patch, ResourceType, Rule, Verdict, GROUP_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
};
use crate::coordinator;
use crate::group::{named_groups, refusal, Request};
use crate::protocol::{decode_request, FrameError};

const GROUP: ResourceType = ResourceType::Group;
const TOPIC: ResourceType = ResourceType::Topic;

/// FindCoordinator (ApiVersions needs nothing): a group key the principal may not Describe gets
/// GROUP_AUTHORIZATION_FAILED in kelp's answer.
pub fn check_answered(ctx: &Ctx, frame: &Bytes) -> Result<Verdict, FrameError> {
    if ctx.peek.api_key != ApiKey::FindCoordinator {
        return Ok(Verdict::Pass);
    }
    let (_, request) = decode_request::<FindCoordinatorRequest>(frame.slice(4..), &ctx.peek)?;
    if request.key_type != 0 {
        return Ok(Verdict::Pass); // Transactional ids: not checked by kelp.
    }
    let keys = if ctx.peek.api_version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let refused: Vec<StrBytes> = keys
        .into_iter()
        .filter(|k| !ctx.allowed(GROUP, k, Operation::Describe))
        .collect();
    if refused.is_empty() {
        return Ok(Verdict::Pass);
    }
    let patch = ctx.patch(move |r: &mut FindCoordinatorResponse| {
        if r.coordinators.is_empty() {
            r.error_code = GROUP_AUTHORIZATION_FAILED;
            r.error_message = None;
            (r.node_id, r.host, r.port) = (BrokerId(-1), StrBytes::default(), -1);
        }
        for c in r
            .coordinators
            .iter_mut()
            .filter(|c| refused.contains(&c.key))
        {
            c.error_code = GROUP_AUTHORIZATION_FAILED;
            c.error_message = None;
            (c.node_id, c.host, c.port) = (BrokerId(-1), StrBytes::default(), -1);
        }
    });
    Ok(Verdict::Rewrite {
        frame: None,
        patch: Some(patch),
    })
}

/// Checks one group request (see the module docs).
pub fn check(ctx: &Ctx, frame: &Bytes) -> Result<Verdict, FrameError> {
    let (client_id, request) = coordinator::decode(&ctx.peek, frame.slice(4..))?;
    let whole = |op| -> Option<bool> {
        let groups = named_groups(&request);
        Some(ctx.allowed(GROUP, groups.first()?, op))
    };
    let refuse_all = |ctx: &Ctx, request: &Request| {
        let response = refusal(request, ctx.peek.api_version, GROUP_AUTHORIZATION_FAILED);
        Ok(Verdict::Answer(Some(encode(ctx, &response)?)))
    };
    match request {
        Request::JoinGroup(_)
        | Request::SyncGroup(_)
        | Request::Heartbeat(_)
        | Request::LeaveGroup(_)
        | Request::ConsumerGroupHeartbeat(_) => match whole(Operation::Read) {
            Some(false) => refuse_all(ctx, &request),
            _ => Ok(Verdict::Pass),
        },
        Request::OffsetCommit(ref r) => {
            if whole(Operation::Read) == Some(false) {
                return refuse_all(ctx, &request);
            }
            let mut reduced = r.clone();
            let refused = refuse(&mut reduced.topics, |t| {
                ctx.allowed(TOPIC, &t.name, Operation::Read)
            });
            if refused.is_empty() {
                return Ok(Verdict::Pass);
            }
            let fill = move |r: &mut OffsetCommitResponse| {
                r.topics.extend(refused.into_iter().map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                })
                                .collect(),
                        )
                }))
            };
            let empty = reduced.topics.is_empty();
            ctx.finish(Some(&client_id), &reduced, empty, fill)
        }
        Request::OffsetDelete(ref r) => {
            if whole(Operation::Delete) == Some(false) {
                return refuse_all(ctx, &request);
            }
            let mut reduced = r.clone();
            let refused = refuse(&mut reduced.topics, |t| {
                ctx.allowed(TOPIC, &t.name, Operation::Read)
            });
            if refused.is_empty() {
                return Ok(Verdict::Pass);
            }
            let fill = move |r: &mut OffsetDeleteResponse| {
                r.topics.extend(refused.into_iter().map(|t| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                })
                                .collect(),
                        )
                }))
            };
            let empty = reduced.topics.is_empty();
            ctx.finish(Some(&client_id), &reduced, empty, fill)
        }
        Request::OffsetFetch(_) => offset_fetch(ctx, &client_id, request),
        Request::DescribeGroups(_) => batch(ctx, &client_id, request, Operation::Describe),
        Request::DeleteGroups(_) => batch(ctx, &client_id, request, Operation::Delete),
        Request::ConsumerGroupDescribe(_) => batch(ctx, &client_id, request, Operation::Describe),
        Request::ListGroups(_) => {
            if ctx.allowed_silently(ResourceType::Cluster, "kafka-cluster", Operation::Describe) {
                return Ok(Verdict::Pass);
            }
            let rules: Vec<Rule> = ctx.rules.to_vec();
            let patch = ctx.patch(move |r: &mut ListGroupsResponse| {
                r.groups.retain(|g| {
                    super::rules::decide(rules.iter(), GROUP, &g.group_id, Operation::Describe)
                })
            });
            Ok(Verdict::Rewrite {
                frame: None,
                patch: Some(patch),
            })
        }
    }
}

/// A batch split into the part `op` is allowed for and the part it is refused for, and whether
/// any group was refused.
fn refused_part(ctx: &Ctx, request: &Request, op: Operation) -> (Request, Request, bool) {
    let allowed: Vec<bool> = named_groups(request)
        .into_iter()
        .map(|g| ctx.allowed(GROUP, g, op))
        .collect();
    let pick = |want: bool| {
        let mut part = request.clone();
        let mut i = 0;
        let mut keep = || {
            let k = allowed.get(i).copied().unwrap_or(true) == want;
            i += 1;
            k
        };
        match &mut part {
            Request::DescribeGroups(r) => r.groups.retain(|_| keep()),
            Request::DeleteGroups(r) => r.groups_names.retain(|_| keep()),
            Request::OffsetFetch(r) => r.groups.retain(|_| keep()),
            Request::ConsumerGroupDescribe(r) => r.group_ids.retain(|_| keep()),
            _ => {}
        }
        part
    };
    let any_refused = allowed.iter().any(|a| !a);
    (pick(true), pick(false), any_refused)
}

/// A patch merging the answer to the allowed part with GROUP_AUTHORIZATION_FAILED for the
/// refused part, in the order of `original`; `then` edits the merged answer.
fn merge_patch(
    ctx: &Ctx,
    original: Request,
    refused: Option<Request>,
    then: impl FnOnce(&mut crate::group::Response) + Send + 'static,
) -> Patch {
    let peek = ctx.peek;
    Box::new(move |frame: Bytes| {
        let answer = crate::peers::scatter::decode(peek.api_key, peek.api_version, frame)
            .map_err(|e| format!("cannot read a {:?} answer: {e}", peek.api_key))?;
        // Only batches are merged: a whole answer (OffsetFetch before v8 has its topics at the
        // top level) is edited as it came.
        let mut merged = match &refused {
            Some(refused) => {
                let refused = refusal(refused, peek.api_version, GROUP_AUTHORIZATION_FAILED);
                crate::peers::scatter::merge(&original, vec![answer, refused])
            }
            None => answer,
        };
        then(&mut merged);
        coordinator::encode(&peek, &merged).map_err(|e| e.to_string())
    })
}

/// DescribeGroups and DeleteGroups: per group.
fn batch(
    ctx: &Ctx,
    client_id: &str,
    request: Request,
    op: Operation,
) -> Result<Verdict, FrameError> {
    let (allowed, refused, any_refused) = refused_part(ctx, &request, op);
    if !any_refused {
        return Ok(Verdict::Pass);
    }
    if named_groups(&allowed).is_empty() {
        let response = refusal(&request, ctx.peek.api_version, GROUP_AUTHORIZATION_FAILED);
        return Ok(Verdict::Answer(Some(encode(ctx, &response)?)));
    }
    Ok(Verdict::Rewrite {
        frame: Some(encode_request(ctx, client_id, &allowed)?),
        patch: Some(merge_patch(ctx, request, Some(refused), |_| {})),
    })
}

/// OffsetFetch: Describe on each group (v8+ batches per group), and on each topic: a topic asked
/// for and refused gets TOPIC_AUTHORIZATION_FAILED, one not asked for (all topics) is left out.
fn offset_fetch(ctx: &Ctx, client_id: &str, request: Request) -> Result<Verdict, FrameError> {
    let Request::OffsetFetch(r) = &request else {
        return Ok(Verdict::Pass);
    };
    let v8 = !r.groups.is_empty();
    let (allowed, refused, any_refused) = refused_part(ctx, &request, Operation::Describe);
    if any_refused && (!v8 || named_groups(&allowed).is_empty()) {
        let response = refusal(&request, ctx.peek.api_version, GROUP_AUTHORIZATION_FAILED);
        return Ok(Verdict::Answer(Some(encode(ctx, &response)?)));
    }
    // Topics asked for by name and refused (counted and logged once, here).
    let asked: Vec<&str> = match r.groups.is_empty() {
        true => r.topics.iter().flatten().map(|t| t.name.as_str()).collect(),
        false => r
            .groups
            .iter()
            .flat_map(|g| g.topics.iter().flatten().map(|t| t.name.as_str()))
            .collect(),
    };
    let refused_topics: Vec<String> = asked
        .into_iter()
        .filter(|t| !ctx.allowed(TOPIC, t, Operation::Describe))
        .map(str::to_string)
        .collect();
    let rules: Vec<Rule> = ctx.rules.to_vec();
    let may =
        move |topic: &str| super::rules::decide(rules.iter(), TOPIC, topic, Operation::Describe);
    let filter = move |response: &mut crate::group::Response| {
        if let crate::group::Response::OffsetFetch(r) = response {
            filter_topics(r, &refused_topics, &may);
        }
    };
    let (frame, refused) = match any_refused {
        true => (
            Some(encode_request(ctx, client_id, &allowed)?),
            Some(refused),
        ),
        false => (None, None),
    };
    Ok(Verdict::Rewrite {
        frame,
        patch: Some(merge_patch(ctx, request, refused, filter)),
    })
}

/// In an OffsetFetch answer: a refused topic the request named gets TOPIC_AUTHORIZATION_FAILED on
/// each partition (no offset); any other topic the principal may not Describe (an all-topics
/// request lists every committed one) is left out.
fn filter_topics(r: &mut OffsetFetchResponse, asked: &[String], may: &dyn Fn(&str) -> bool) {
    macro_rules! filter {
        ($topics:expr) => {
            $topics.retain(|t| asked.iter().any(|a| a == t.name.as_str()) || may(&t.name));
            for t in $topics.iter_mut() {
                if asked.iter().any(|a| a == t.name.as_str()) {
                    for p in &mut t.partitions {
                        p.error_code = TOPIC_AUTHORIZATION_FAILED;
                        p.committed_offset = -1;
                        p.metadata = None;
                    }
                }
            }
        };
    }
    filter!(r.topics);
    for g in &mut r.groups {
        filter!(g.topics);
    }
}

fn encode(ctx: &Ctx, response: &crate::group::Response) -> Result<Bytes, FrameError> {
    coordinator::encode(&ctx.peek, response).map_err(|e| FrameError::Undecodable {
        api: ctx.peek.api_key,
        version: ctx.peek.api_version,
        reason: e.to_string(),
    })
}

fn encode_request(ctx: &Ctx, client_id: &str, request: &Request) -> Result<Bytes, FrameError> {
    coordinator::encode_request(&ctx.peek, client_id, request).map_err(|e| {
        FrameError::Undecodable {
            api: ctx.peek.api_key,
            version: ctx.peek.api_version,
            reason: e.to_string(),
        }
    })
}
