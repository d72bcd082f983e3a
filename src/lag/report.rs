//! One round's lag, computed from committed offsets and log-end offsets: per partition
//! `log end − committed` (never below 0), summed and maxed per topic. Only partitions with a
//! commit and a known log end count: kelp does not know a client's `auto.offset.reset`, so a
//! partition never committed has no lag here. Pure data and arithmetic; no I/O.

use std::collections::BTreeMap;

use super::fetch::Offsets;
use super::status::Status;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    pub committed: i64,
    pub log_end: i64,
    pub lag: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicLag {
    pub topic: String,
    /// Summed over the topic's partitions.
    pub lag: i64,
    pub max_partition: i64,
    pub partitions: Vec<PartitionLag>,
}

/// One group's lag and status in a round.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupLag {
    pub group: String,
    /// "local" or "passthrough".
    pub mode: &'static str,
    pub topics: Vec<TopicLag>,
    pub total: i64,
    /// Committed offsets summed over the partitions counted (the status' "commits moving").
    pub committed: i64,
    pub status: Status,
    /// Seconds since the group's last successful commit, when known.
    pub commit_age_seconds: Option<f64>,
}

/// The last round: every group's lag, by group id.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// When the round finished (Unix-epoch milliseconds); 0 before the first.
    pub at_unix_ms: u64,
    pub groups: BTreeMap<String, GroupLag>,
}

/// Lag per topic for `committed` ((topic, partition) → offset) against `log_ends`; partitions
/// without a log end are left out. Returns the topics, the total lag and the committed sum.
pub fn topics(
    committed: &BTreeMap<(String, i32), i64>,
    log_ends: &Offsets,
) -> (Vec<TopicLag>, i64, i64) {
    let mut by_topic: BTreeMap<&str, TopicLag> = BTreeMap::new();
    let (mut total, mut committed_sum) = (0i64, 0i64);
    for ((topic, partition), offset) in committed {
        let Some(&log_end) = log_ends.get(&(topic.clone(), *partition)) else {
            continue;
        };
        let lag = log_end.saturating_sub(*offset).max(0);
        let t = by_topic.entry(topic).or_insert_with(|| TopicLag {
            topic: topic.clone(),
            lag: 0,
            max_partition: 0,
            partitions: Vec::new(),
        });
        t.lag = t.lag.saturating_add(lag);
        t.max_partition = t.max_partition.max(lag);
        t.partitions.push(PartitionLag {
            partition: *partition,
            committed: *offset,
            log_end,
            lag,
        });
        total = total.saturating_add(lag);
        committed_sum = committed_sum.saturating_add(*offset);
    }
    (by_topic.into_values().collect(), total, committed_sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_log_end_minus_committed_summed_and_maxed_per_topic() {
        let committed: BTreeMap<(String, i32), i64> = [
            (("a".to_string(), 0), 10),
            (("a".to_string(), 1), 5),
            (("b".to_string(), 0), 7),
            // No log end known: left out.
            (("c".to_string(), 0), 1),
        ]
        .into();
        let log_ends: Offsets = [
            (("a".to_string(), 0), 13),
            (("a".to_string(), 1), 12),
            // Committed past the log end (a topic re-created): 0, never negative.
            (("b".to_string(), 0), 3),
        ]
        .into();
        let (topics, total, sum) = topics(&committed, &log_ends);
        assert_eq!(total, 10);
        assert_eq!(sum, 22);
        assert_eq!(topics.len(), 2);
        assert_eq!((topics[0].lag, topics[0].max_partition), (10, 7));
        assert_eq!((topics[1].topic.as_str(), topics[1].lag), ("b", 0));
        assert_eq!(topics[0].partitions[1].log_end, 12);
    }
}
