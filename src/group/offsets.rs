//! OffsetCommit (API 8, v2–9), OffsetFetch (API 9, v1–9) and OffsetDelete (API 47, v0):
//! GROUP_SEMANTICS.md §2.5, §2.6, §2.11 and the fencing table of §3.8. A group-level commit error is
//! written into every partition. OffsetFetch never checks membership. Topic existence is not
//! checked (§7 point 2: the gateway may create topics late). With a store, an accepted commit or
//! delete is answered only once the store acknowledged it (`persist.rs`), and the first call for a
//! group kelp has no offsets for waits for the gateway's offsets (`import.rs`).

use std::collections::BTreeSet;

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

use super::consumer::OffsetFence;
use super::group::{code, Group};
use super::import;
use super::persist::{Effect, OffsetEntry, Write};
use super::rebalance::{create_group, sb};
use super::state::GroupState;
use super::store::{CommittedOffset, OffsetStore};
use super::{CallMeta, Coordinator, Event, Millis, Output, Request, Response, Token};

pub(crate) fn commit(
    c: &mut Coordinator,
    now: Millis,
    meta: CallMeta,
    req: OffsetCommitRequest,
    out: &mut Vec<Output>,
) {
    let group_id = req.group_id.0.to_string();
    let generation = req.generation_id_or_member_epoch;
    let loading = c.loading.then_some(code::COORDINATOR_LOAD_IN_PROGRESS);
    let import_error = c.imports.failed(&group_id);
    let consumer = c.consumer.contains(&group_id);
    let precheck = loading
        .or(import_error)
        .or_else(|| match c.groups.get(&group_id) {
            // A consumer group (KIP-848): fenced by member epoch.
            _ if consumer => match c.consumer.fence_offset_commit(
                &group_id,
                req.member_id.as_str(),
                generation,
                meta.version,
            ) {
                OffsetFence::Refuse(code) => Some(code),
                OffsetFence::Accept | OffsetFence::NotConsumerGroup => None,
            },
            None if generation < 0 => None,
            None if meta.version >= 9 => Some(code::GROUP_ID_NOT_FOUND),
            None => Some(code::ILLEGAL_GENERATION),
            Some(g) => validate_offset_commit(
                g,
                req.member_id.as_str(),
                req.group_instance_id.as_deref(),
                generation,
            )
            .err(),
        });
    if precheck.is_none() && import::needed(c, &group_id) {
        let groups = BTreeSet::from([group_id]);
        return import::park(c, meta, Request::OffsetCommit(req), groups, out);
    }

    let max_metadata = c.config.offset_metadata_max_bytes;
    let consumer_incarnation = consumer.then(|| c.consumer_incarnation(&group_id));
    let (groups, _, mut cx) = c.parts(now, out);
    let cx = &mut cx;
    let member_id = req.member_id.as_str();
    let group_error = precheck;
    if group_error.is_none() && !consumer && !groups.contains_key(&group_id) {
        // A "simple" group: offsets committed outside any group membership.
        create_group(groups, cx, &group_id);
    }
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
    let mut response = OffsetCommitResponse::default();
    let mut written = Vec::new();
    let mut values: Vec<OffsetEntry> = Vec::new();
    for (ti, topic) in req.topics.iter().enumerate() {
        let mut t = OffsetCommitResponseTopic::default();
        t.name = topic.name.clone();
        t.topic_id = topic.topic_id;
        for (pi, p) in topic.partitions.iter().enumerate() {
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
                    written.push((ti, pi));
                    values.push((topic.name.to_string(), p.partition_index, value));
                    code::NONE
                }
            };
            let mut r = OffsetCommitResponsePartition::default();
            r.partition_index = p.partition_index;
            r.error_code = error;
            t.partitions.push(r);
        }
        response.topics.push(t);
    }
    let incarnation = match consumer_incarnation {
        Some(i) => Some(i),
        None => groups.get(&group_id).map(|g| g.incarnation),
    };
    match incarnation {
        Some(incarnation) if !values.is_empty() => {
            let write = cx.persist.durable.then(|| values.clone());
            let effect = Effect::Commit {
                token: meta.token,
                response,
                written,
                values,
            };
            let write = move || Write::Offsets(write.unwrap_or_default());
            cx.persist
                .issue(cx.out, &group_id, incarnation, write, effect);
        }
        _ => {
            let error = first_error(&response).unwrap_or(group_error.unwrap_or(code::NONE));
            cx.event(Event::OffsetCommit {
                group: group_id,
                error,
            });
            cx.reply(meta.token, Response::OffsetCommit(response));
        }
    }
}

/// The write of an accepted commit settled: on success the offsets are committed (in memory,
/// unless the group was deleted meanwhile); on failure its partitions carry the error. Answers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn commit_settled(
    c: &mut Coordinator,
    group: String,
    same_group: bool,
    token: Token,
    mut response: OffsetCommitResponse,
    written: Vec<(usize, usize)>,
    values: Vec<OffsetEntry>,
    outcome: Result<(), i16>,
    out: &mut Vec<Output>,
) {
    match outcome {
        Ok(()) if same_group => {
            for (topic, partition, offset) in values {
                c.offsets.commit(&group, &topic, partition, offset);
            }
            c.imports.mark_checked(&group);
        }
        Ok(()) => {}
        Err(error) => {
            for (ti, pi) in written {
                let partition = response
                    .topics
                    .get_mut(ti)
                    .and_then(|t| t.partitions.get_mut(pi));
                if let Some(p) = partition {
                    p.error_code = error;
                }
            }
        }
    }
    let error = first_error(&response).unwrap_or(code::NONE);
    out.push(Output::Event(Event::OffsetCommit { group, error }));
    out.push(Output::Reply {
        token,
        response: Response::OffsetCommit(response),
    });
}

/// The first non-zero partition error of a commit response.
fn first_error(r: &OffsetCommitResponse) -> Option<i16> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .find(|e| *e != code::NONE)
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
/// own error. Group-level errors (loading 14, a failed import): v1 puts them in every requested
/// partition, v2–7 at the top level, v8+ per group.
pub(crate) fn fetch(
    c: &mut Coordinator,
    meta: CallMeta,
    req: OffsetFetchRequest,
    out: &mut Vec<Output>,
) {
    let ids: Vec<&str> = if meta.version >= 8 {
        req.groups.iter().map(|g| g.group_id.as_str()).collect()
    } else {
        vec![req.group_id.as_str()]
    };
    if !c.loading {
        let importing: BTreeSet<String> = ids
            .iter()
            .filter(|g| import::needed(c, g))
            .map(|g| g.to_string())
            .collect();
        if !importing.is_empty() {
            return import::park(c, meta, Request::OffsetFetch(req), importing, out);
        }
    }
    let group_error = |c: &Coordinator, group: &str| {
        if c.loading {
            Some(code::COORDINATOR_LOAD_IN_PROGRESS)
        } else {
            c.imports.failed(group)
        }
    };
    let store = &c.offsets;
    let mut response = OffsetFetchResponse::default();
    if meta.version >= 8 {
        for group in &req.groups {
            let mut g = OffsetFetchResponseGroup::default();
            g.group_id = group.group_id.clone();
            let fence = c.consumer.fence_offset_fetch(
                &group.group_id,
                group.member_id.as_deref(),
                group.member_epoch,
            );
            let fenced = match fence {
                OffsetFence::Refuse(code) => Some(code),
                OffsetFence::Accept | OffsetFence::NotConsumerGroup => None,
            };
            if let Some(error) = group_error(c, &group.group_id).or(fenced) {
                g.error_code = error;
                response.groups.push(g);
                continue;
            }
            let topics = group.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                    .collect()
            });
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
        let error = group_error(c, &req.group_id);
        let topics = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                .collect::<Vec<_>>()
        });
        let found = match (error, topics) {
            (None, topics) => lookup(store, &req.group_id, topics),
            // v1: the error goes into every requested partition.
            (Some(_), Some(topics)) if meta.version < 2 => {
                lookup(&OffsetStore::default(), "", Some(topics))
            }
            (Some(_), _) => Vec::new(),
        };
        for (name, partitions) in found {
            let mut t = OffsetFetchResponseTopic::default();
            t.name = name;
            for f in partitions {
                let mut p = OffsetFetchResponsePartition::default();
                p.partition_index = f.partition;
                p.committed_offset = f.offset;
                p.committed_leader_epoch = f.leader_epoch;
                p.metadata = Some(sb(&f.metadata));
                p.error_code = error.unwrap_or(code::NONE);
                t.partitions.push(p);
            }
            response.topics.push(t);
        }
        if meta.version >= 2 {
            response.error_code = error.unwrap_or(code::NONE);
        }
    }
    out.push(Output::Reply {
        token: meta.token,
        response: Response::OffsetFetch(response),
    });
}

/// OffsetDelete (KIP-496): 69 for a missing group, 68 for an active non-consumer group, 86 for
/// partitions of a topic the group subscribes to; anything else is deleted (or was not there).
/// With a store, offsets that exist leave memory once the store deleted them too.
pub(crate) fn delete(
    c: &mut Coordinator,
    now: Millis,
    meta: CallMeta,
    req: OffsetDeleteRequest,
    out: &mut Vec<Output>,
) {
    let loading = c.loading;
    let (groups, store, mut cx) = c.parts(now, out);
    let mut response = OffsetDeleteResponse::default();
    let group = groups.get(req.group_id.as_str());
    let top_error = match group {
        _ if req.group_id.is_empty() => code::INVALID_GROUP_ID,
        _ if loading => code::COORDINATOR_LOAD_IN_PROGRESS,
        None => code::GROUP_ID_NOT_FOUND,
        Some(g)
            if g.state != GroupState::Empty && g.protocol_type.as_deref() != Some("consumer") =>
        {
            code::NON_EMPTY_GROUP
        }
        Some(_) => code::NONE,
    };
    response.error_code = top_error;
    let mut partitions = Vec::new();
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
                } else if store.get(&g.id, &topic.name, p.partition_index).is_some() {
                    partitions.push((topic.name.to_string(), p.partition_index));
                }
                t.partitions.push(r);
            }
            response.topics.push(t);
        }
        if !partitions.is_empty() {
            let write = cx.persist.durable.then(|| partitions.clone());
            let effect = Effect::OffsetDelete {
                token: meta.token,
                response,
                partitions,
            };
            cx.persist(
                g,
                move || Write::DeleteOffsets(write.unwrap_or_default()),
                effect,
            );
            return;
        }
    }
    cx.reply(meta.token, Response::OffsetDelete(response));
}

/// The store deleted (or failed to delete) the offsets of an OffsetDelete: answer it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn delete_settled(
    c: &mut Coordinator,
    group: &str,
    same_group: bool,
    token: Token,
    mut response: OffsetDeleteResponse,
    partitions: Vec<(String, i32)>,
    outcome: Result<(), i16>,
    out: &mut Vec<Output>,
) {
    match outcome {
        Ok(()) if same_group => {
            for (topic, partition) in partitions {
                c.offsets.delete(group, &topic, partition);
            }
        }
        Ok(()) => {}
        Err(error) => {
            response.error_code = error;
            response.topics.clear();
        }
    }
    out.push(Output::Reply {
        token,
        response: Response::OffsetDelete(response),
    });
}
