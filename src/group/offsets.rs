//! OffsetCommit (API 8, v2–9), OffsetFetch (API 9, v1–9) and OffsetDelete (API 47, v0):
//! GROUP_SEMANTICS.md §2.5, §2.6, §2.11 and the fencing table of §3.8. A group-level commit error is
//! written into every partition. OffsetFetch never checks membership. Topic existence is not
//! checked (§7 point 2: the gateway may create topics late).

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::group::{code, Group};
use super::rebalance::{create_group, sb};
use super::state::GroupState;
use super::store::{CommittedOffset, OffsetStore};
use super::{CallMeta, Coordinator, Event, Millis, Output, Response};

pub(crate) fn commit(
    c: &mut Coordinator,
    now: Millis,
    meta: CallMeta,
    req: OffsetCommitRequest,
    out: &mut Vec<Output>,
) {
    let max_metadata = c.config.offset_metadata_max_bytes;
    let (groups, store, mut cx) = c.parts(now, out);
    let cx = &mut cx;
    let group_id = req.group_id.0.to_string();
    let generation = req.generation_id_or_member_epoch;
    let member_id = req.member_id.as_str();
    let instance_id = req.group_instance_id.as_deref();

    // (Loading, once a store exists: COORDINATOR_LOAD_IN_PROGRESS in every partition here.)
    let group_error = match groups.get(&group_id) {
        None if generation < 0 => {
            // A "simple" group: offsets committed outside any group membership.
            create_group(groups, cx, &group_id);
            None
        }
        None if meta.version >= 9 => Some(code::GROUP_ID_NOT_FOUND),
        None => Some(code::ILLEGAL_GENERATION),
        Some(g) => validate_offset_commit(g, member_id, instance_id, generation).err(),
    };
    if group_error.is_none() {
        if let Some(g) = groups.get(&group_id) {
            if matches!(g.state, GroupState::Stable | GroupState::PreparingRebalance) {
                if let Some(m) = g.members.get(member_id) {
                    cx.arm_heartbeat(&g.id, member_id, m.session_timeout_ms);
                }
            }
        }
    }

    let expire_timestamp = (meta.version <= 4 && req.retention_time_ms != -1)
        .then(|| now.saturating_add_signed(req.retention_time_ms));
    let mut first_error = group_error.unwrap_or(code::NONE);
    let mut response = OffsetCommitResponse::default();
    for topic in &req.topics {
        let mut t = OffsetCommitResponseTopic::default();
        t.name = topic.name.clone();
        t.topic_id = topic.topic_id;
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or("");
            let error = match group_error {
                Some(error) => error,
                None if metadata.len() > max_metadata => code::OFFSET_METADATA_TOO_LARGE,
                None => {
                    let value = CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: metadata.to_string(),
                        commit_timestamp: now,
                        expire_timestamp,
                    };
                    store.commit(&group_id, &topic.name, p.partition_index, value);
                    code::NONE
                }
            };
            if first_error == code::NONE {
                first_error = error;
            }
            let mut r = OffsetCommitResponsePartition::default();
            r.partition_index = p.partition_index;
            r.error_code = error;
            t.partitions.push(r);
        }
        response.topics.push(t);
    }
    cx.event(Event::OffsetCommit {
        group: group_id,
        error: first_error,
    });
    cx.reply(meta.token, Response::OffsetCommit(response));
}

/// §3.8, Kafka's `ClassicGroup.validateOffsetCommit` for a non-transactional commit.
pub(crate) fn validate_offset_commit(
    g: &Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Result<(), i16> {
    if generation < 0 && g.state == GroupState::Empty {
        return Ok(());
    }
    if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
        g.validate_member(member_id, instance_id)?;
        if generation != g.generation {
            return Err(code::ILLEGAL_GENERATION);
        }
    } else if g.state != GroupState::Empty {
        return Err(code::UNKNOWN_MEMBER_ID);
    }
    if g.state == GroupState::CompletingRebalance {
        return Err(code::REBALANCE_IN_PROGRESS);
    }
    Ok(())
}

/// One partition's fetch result; -1 / -1 / "" when nothing is committed.
struct Fetched {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
}

/// Looks up `topics` (None = every committed partition) for one group.
fn lookup(
    store: &OffsetStore,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Vec<(TopicName, Vec<Fetched>)> {
    let found = |o: Option<&CommittedOffset>, partition: i32| match o {
        Some(o) => Fetched {
            partition,
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
        },
        None => Fetched {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        },
    };
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let results = partitions
                    .into_iter()
                    .map(|p| found(store.get(group, &name, p), p))
                    .collect();
                (name, results)
            })
            .collect(),
        None => store
            .all(group)
            .map(|(topic, partitions)| {
                let results = partitions.iter().map(|(p, o)| found(Some(o), *p)).collect();
                (TopicName(sb(topic)), results)
            })
            .collect(),
    }
}

/// v0–7 answer one group with a top-level error (v2+); v8+ answer a batch of groups, each with its
/// own error. kelp has no group-level fetch errors yet (loading would be the first: v1 puts it in
/// every partition, v2–7 at the top level, v8+ per group).
pub(crate) fn fetch(
    c: &mut Coordinator,
    meta: CallMeta,
    req: OffsetFetchRequest,
    out: &mut Vec<Output>,
) {
    let store = &c.offsets;
    let mut response = OffsetFetchResponse::default();
    if meta.version >= 8 {
        for group in &req.groups {
            let topics = group.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                    .collect()
            });
            let mut g = OffsetFetchResponseGroup::default();
            g.group_id = group.group_id.clone();
            for (name, partitions) in lookup(store, &group.group_id, topics) {
                let mut t = OffsetFetchResponseTopics::default();
                t.name = name;
                for f in partitions {
                    let mut p = OffsetFetchResponsePartitions::default();
                    p.partition_index = f.partition;
                    p.committed_offset = f.offset;
                    p.committed_leader_epoch = f.leader_epoch;
                    p.metadata = Some(sb(&f.metadata));
                    t.partitions.push(p);
                }
                g.topics.push(t);
            }
            response.groups.push(g);
        }
    } else {
        let topics = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                .collect()
        });
        for (name, partitions) in lookup(store, &req.group_id, topics) {
            let mut t = OffsetFetchResponseTopic::default();
            t.name = name;
            for f in partitions {
                let mut p = OffsetFetchResponsePartition::default();
                p.partition_index = f.partition;
                p.committed_offset = f.offset;
                p.committed_leader_epoch = f.leader_epoch;
                p.metadata = Some(sb(&f.metadata));
                t.partitions.push(p);
            }
            response.topics.push(t);
        }
    }
    out.push(Output::Reply {
        token: meta.token,
        response: Response::OffsetFetch(response),
    });
}

/// OffsetDelete (KIP-496): 69 for a missing group, 68 for an active non-consumer group, 86 for
/// partitions of a topic the group subscribes to; anything else is deleted (or was not there).
pub(crate) fn delete(
    c: &mut Coordinator,
    meta: CallMeta,
    req: OffsetDeleteRequest,
    out: &mut Vec<Output>,
) {
    let (groups, store) = (&c.groups, &mut c.offsets);
    let mut response = OffsetDeleteResponse::default();
    let group = groups.get(req.group_id.as_str());
    let top_error = match group {
        _ if req.group_id.is_empty() => code::INVALID_GROUP_ID,
        None => code::GROUP_ID_NOT_FOUND,
        Some(g)
            if g.state != GroupState::Empty && g.protocol_type.as_deref() != Some("consumer") =>
        {
            code::NON_EMPTY_GROUP
        }
        Some(_) => code::NONE,
    };
    if let (Some(g), code::NONE) = (group, top_error) {
        for topic in &req.topics {
            let subscribed = g.is_subscribed_to(&topic.name);
            let mut t = OffsetDeleteResponseTopic::default();
            t.name = topic.name.clone();
            for p in &topic.partitions {
                let mut r = OffsetDeleteResponsePartition::default();
                r.partition_index = p.partition_index;
                if subscribed {
                    r.error_code = code::GROUP_SUBSCRIBED_TO_TOPIC;
                } else {
                    store.delete(&g.id, &topic.name, p.partition_index);
                }
                t.partitions.push(r);
            }
            response.topics.push(t);
        }
    }
    response.error_code = top_error;
    out.push(Output::Reply {
        token: meta.token,
        response: Response::OffsetDelete(response),
    });
}
