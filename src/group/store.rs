//! Committed offsets, kept in memory by group, topic and partition. Every change goes through
//! `commit`, `delete`, `delete_group` or `expire`, the points where a durable store plugs in later
//! (the group record's persistence points are marked in `sync.rs`, `join.rs` and `rebalance.rs`).

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

#[derive(Default)]
pub(crate) struct OffsetStore {
    groups: HashMap<String, BTreeMap<String, Partitions>>,
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

    /// Deletes all offsets of a group; returns how many there were.
    pub(crate) fn delete_group(&mut self, group: &str) -> usize {
        self.groups
            .remove(group)
            .map_or(0, |topics| topics.values().map(BTreeMap::len).sum())
    }

    /// Deletes the offsets for which `expired(topic, offset)` holds; returns how many.
    pub(crate) fn expire(
        &mut self,
        group: &str,
        expired: impl Fn(&str, &CommittedOffset) -> bool,
    ) -> usize {
        let Some(topics) = self.groups.get_mut(group) else {
            return 0;
        };
        let mut count = 0;
        for (topic, partitions) in topics.iter_mut() {
            let before = partitions.len();
            partitions.retain(|_, o| !expired(topic, o));
            count += before - partitions.len();
        }
        topics.retain(|_, p| !p.is_empty());
        if topics.is_empty() {
            self.groups.remove(group);
        }
        count
    }
}
