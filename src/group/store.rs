//! Committed offsets in memory, by group, topic and partition: what the store acknowledged (see
//! `persist.rs`: a commit lands here only after its write succeeded). Every change goes through
//! `commit`, `delete`, `take_group`/`put_group` or `expire`.

use std::collections::{BTreeMap, HashMap};

use super::Millis;

/// One committed offset (Kafka's `OffsetAndMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    /// "" when the client sent null.
    pub metadata: String,
    pub commit_timestamp: Millis,
    /// Set by OffsetCommit v2–4 RetentionTimeMs; overrides the retention rules.
    pub expire_timestamp: Option<Millis>,
}

type Partitions = BTreeMap<i32, CommittedOffset>;
/// One group's offsets: topic → partition → offset.
pub(crate) type TopicMap = BTreeMap<String, Partitions>;

#[derive(Default)]
pub(crate) struct OffsetStore {
    groups: HashMap<String, TopicMap>,
}

impl OffsetStore {
    pub(crate) fn commit(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        value: CommittedOffset,
    ) {
        self.groups
            .entry(group.to_string())
            .or_default()
            .entry(topic.to_string())
            .or_default()
            .insert(partition, value);
    }

    pub(crate) fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.groups.get(group)?.get(topic)?.get(&partition)
    }

    /// Every committed offset of a group, by topic then partition.
    pub(crate) fn all(&self, group: &str) -> impl Iterator<Item = (&str, &Partitions)> {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|topics| topics.iter().map(|(t, p)| (t.as_str(), p)))
    }

    /// Every group with at least one committed offset.
    pub(crate) fn group_ids(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    pub(crate) fn has_offsets(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Deletes one offset; true if it existed.
    pub(crate) fn delete(&mut self, group: &str, topic: &str, partition: i32) -> bool {
        let Some(topics) = self.groups.get_mut(group) else {
            return false;
        };
        let Some(partitions) = topics.get_mut(topic) else {
            return false;
        };
        let existed = partitions.remove(&partition).is_some();
        if partitions.is_empty() {
            topics.remove(topic);
        }
        if topics.is_empty() {
            self.groups.remove(group);
        }
        existed
    }

    /// Removes and returns every offset of a group.
    pub(crate) fn take_group(&mut self, group: &str) -> TopicMap {
        self.groups.remove(group).unwrap_or_default()
    }

    /// Puts back offsets taken by `take_group` (those committed since win).
    pub(crate) fn put_group(&mut self, group: &str, topics: TopicMap) {
        if topics.is_empty() {
            return;
        }
        let current = self.groups.entry(group.to_string()).or_default();
        for (topic, partitions) in topics {
            let now = current.entry(topic).or_default();
            for (partition, offset) in partitions {
                now.entry(partition).or_insert(offset);
            }
        }
    }

    /// Deletes the offsets for which `expired(topic, offset)` holds; returns which.
    pub(crate) fn expire(
        &mut self,
        group: &str,
        expired: impl Fn(&str, &CommittedOffset) -> bool,
    ) -> Vec<(String, i32)> {
        let Some(topics) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for (topic, partitions) in topics.iter_mut() {
            partitions.retain(|p, o| {
                let gone = expired(topic, o);
                if gone {
                    removed.push((topic.clone(), *p));
                }
                !gone
            });
        }
        topics.retain(|_, p| !p.is_empty());
        if topics.is_empty() {
            self.groups.remove(group);
        }
        removed
    }
}
