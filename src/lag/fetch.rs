//! The lag poller's requests to the gateway: log-end offsets by ListOffsets (latest), one request
//! per topic set per round shared by every group reading that set, and the committed offsets of
//! passthrough groups by OffsetFetch (explicit topics, never "all"). Both run with bounded
//! concurrency on kelp's own connections (`passthrough::gateway::call`), never on a client's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, GroupId, ListOffsetsRequest, ListOffsetsResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::backend::Backend;
use crate::passthrough::gateway;

/// Requests to the gateway in flight at once, per round.
pub const CONCURRENCY: usize = 4;
/// ListOffsets timestamp -1: the log-end offset (high watermark).
const LATEST: i64 = -1;
/// The highest ListOffsets version kelp asks in (v1: one offset per partition, no isolation).
const LIST_OFFSETS_MAX: i16 = 7;

/// A set of topics some group reads (commits offsets for).
pub type TopicSet = BTreeSet<String>;
/// Topic → partitions.
pub type Partitions = BTreeMap<String, BTreeSet<i32>>;
/// (topic, partition) → offset.
pub type Offsets = HashMap<(String, i32), i64>;

/// The distinct topic sets of `groups` (each group: the partitions it has commits for), with the
/// partitions to ask for in each: the union over the groups sharing the set.
pub fn plan<'a>(
    groups: impl IntoIterator<Item = &'a Partitions>,
) -> BTreeMap<TopicSet, Partitions> {
    let mut sets: BTreeMap<TopicSet, Partitions> = BTreeMap::new();
    for partitions in groups {
        if partitions.is_empty() {
            continue;
        }
        let key: TopicSet = partitions.keys().cloned().collect();
        let entry = sets.entry(key).or_default();
        for (topic, ps) in partitions {
            entry.entry(topic.clone()).or_default().extend(ps);
        }
    }
    sets
}

/// The ListOffsets version for this gateway: its highest, capped, at least 1.
fn list_offsets_version(backend: &Backend) -> i16 {
    backend
        .highest(ApiKey::ListOffsets)
        .map_or(1, |max| max.min(LIST_OFFSETS_MAX))
        .max(1)
}

/// One ListOffsets (latest) per topic set, `CONCURRENCY` at a time. A set whose request failed
/// maps to its error; partitions answered with an error are left out of the set's offsets.
pub async fn log_ends(
    backend: &Backend,
    sets: &BTreeMap<TopicSet, Partitions>,
) -> Vec<(TopicSet, Result<Offsets, String>)> {
    let version = list_offsets_version(backend);
    let owned: Vec<(TopicSet, Partitions)> =
        sets.iter().map(|(k, p)| (k.clone(), p.clone())).collect();
    stream::iter(owned)
        .map(|(key, partitions)| async move {
            let result = list_offsets(backend, version, &partitions).await;
            (key, result)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

async fn list_offsets(
    backend: &Backend,
    version: i16,
    partitions: &Partitions,
) -> Result<Offsets, String> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            partitions
                .iter()
                .map(|(topic, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(*p)
                                        .with_timestamp(LATEST)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let response: ListOffsetsResponse =
        gateway::call(backend, ApiKey::ListOffsets, version, &request).await?;
    let mut offsets = Offsets::new();
    for t in &response.topics {
        for p in &t.partitions {
            if p.error_code == 0 && p.offset >= 0 {
                offsets.insert((t.name.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(offsets)
}

/// The committed offsets of passthrough groups from the gateway's OffsetFetch (v1, one group
/// each, only the partitions named), `CONCURRENCY` at a time. Partitions without a commit
/// (-1) or with an error are left out.
pub async fn gateway_commits(
    backend: &Backend,
    groups: Vec<(String, Arc<Partitions>)>,
) -> HashMap<String, Result<Offsets, String>> {
    stream::iter(groups)
        .map(|(group, partitions)| async move {
            let result = offset_fetch(backend, &group, &partitions).await;
            (group, result)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

async fn offset_fetch(
    backend: &Backend,
    group: &str,
    partitions: &Partitions,
) -> Result<Offsets, String> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(
            partitions
                .iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.clone())))
                        .with_partition_indexes(ps.iter().copied().collect())
                })
                .collect(),
        ));
    let response: OffsetFetchResponse =
        gateway::call(backend, ApiKey::OffsetFetch, 1, &request).await?;
    let mut offsets = Offsets::new();
    for t in &response.topics {
        for p in &t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                offsets.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(list: &[(&str, &[i32])]) -> Partitions {
        list.iter()
            .map(|(t, ps)| (t.to_string(), ps.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn groups_reading_the_same_topics_share_one_request() {
        let groups: Vec<Partitions> = (0..1000)
            .map(|i| {
                let topic = format!("t{}", i % 10);
                parts(&[(&topic, &[i % 3])])
            })
            .collect();
        let sets = plan(&groups);
        assert_eq!(sets.len(), 10);
        let t0 = &sets[&TopicSet::from(["t0".to_string()])];
        assert_eq!(t0["t0"], BTreeSet::from([0, 1, 2]));
    }

    #[test]
    fn a_different_set_of_topics_is_its_own_request_and_empty_groups_ask_nothing() {
        let groups = [
            parts(&[("a", &[0]), ("b", &[1])]),
            parts(&[("a", &[2])]),
            parts(&[("b", &[0]), ("a", &[1])]),
            parts(&[]),
        ];
        let sets = plan(&groups);
        assert_eq!(sets.len(), 2);
        let ab = &sets[&TopicSet::from(["a".to_string(), "b".to_string()])];
        assert_eq!(ab["a"], BTreeSet::from([0, 1]));
        assert_eq!(ab["b"], BTreeSet::from([0, 1]));
    }
}
