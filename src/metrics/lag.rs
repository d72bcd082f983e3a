//! The lag series (issue 17): `kelp_group_lag{group,topic}`, `kelp_group_lag_max_partition`,
//! `kelp_group_commit_age_seconds{group}`, `kelp_group_lag_status{group,status}` and, behind
//! `--lag-partition-metrics`, `kelp_group_lag_partition{group,topic,partition}`; plus the
//! poller's own (rounds, ListOffsets and OffsetFetch requests, topic sets, round time). Each round
//! replaces the previous one's series: a group or topic gone from the report loses its series.
//! Groups beyond the tracked-groups cap fold into `group="__other__"` (lag summed, max maxed per
//! topic; no status or commit age). Must not grow without bound: series follow the report only.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use super::group::OTHER;
use crate::lag::report::Report;
use crate::lag::status::Status;

/// The label sets of one round's series, to remove the ones the next round no longer has.
#[derive(Default)]
struct Published {
    topics: HashSet<(String, String)>,
    partitions: HashSet<(String, String, String)>,
    groups: HashSet<String>,
    ages: HashSet<String>,
}

/// The requests one round sent to the gateway: [ok, error] each.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundRequests {
    pub list_offsets: [u64; 2],
    pub offset_fetches: [u64; 2],
}

pub struct LagMetrics {
    lag: IntGaugeVec,
    max_partition: IntGaugeVec,
    partition: IntGaugeVec,
    commit_age: GaugeVec,
    status: IntGaugeVec,
    pub rounds: IntCounter,
    list_offsets: IntCounterVec,
    offset_fetches: IntCounterVec,
    pub topic_sets: IntGauge,
    round_duration: Histogram,
    published: Mutex<Published>,
}

impl LagMetrics {
    pub fn new(registry: &Registry) -> LagMetrics {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        }
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            reg(
                registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric"),
            )
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("static metric"),
            )
        };
        LagMetrics {
            lag: gauge(
                "kelp_group_lag",
                "Messages between the log end and the group's committed offset, summed over the topic's committed partitions",
                &["group", "topic"],
            ),
            max_partition: gauge(
                "kelp_group_lag_max_partition",
                "The largest lag of one partition of the topic",
                &["group", "topic"],
            ),
            partition: gauge(
                "kelp_group_lag_partition",
                "Lag of one partition (--lag-partition-metrics)",
                &["group", "topic", "partition"],
            ),
            commit_age: reg(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "kelp_group_commit_age_seconds",
                        "Seconds since the group's last successful offset commit",
                    ),
                    &["group"],
                )
                .expect("static metric"),
            ),
            status: gauge(
                "kelp_group_lag_status",
                "1 for the group's lag status (ok, warning, stalled, stopped), 0 for the others",
                &["group", "status"],
            ),
            rounds: reg(
                registry,
                IntCounter::new("kelp_lag_rounds_total", "Lag rounds completed")
                    .expect("static metric"),
            ),
            list_offsets: counter(
                "kelp_lag_list_offsets_requests_total",
                "ListOffsets requests the lag poller sent to the gateway, by result",
                &["result"],
            ),
            offset_fetches: counter(
                "kelp_lag_offset_fetch_requests_total",
                "OffsetFetch requests for passthrough groups' commits the lag poller sent to the gateway, by result",
                &["result"],
            ),
            topic_sets: reg(
                registry,
                IntGauge::new(
                    "kelp_lag_topic_sets",
                    "Distinct topic sets in the last lag round (one ListOffsets each)",
                )
                .expect("static metric"),
            ),
            round_duration: reg(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "kelp_lag_round_duration_seconds",
                        "Time one lag round took, the gateway's answers included",
                    )
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                )
                .expect("static metric"),
            ),
            published: Mutex::new(Published::default()),
        }
    }

    /// Counts a finished round and its requests together, so a scrape sees whole rounds.
    pub fn round_done(&self, took: Duration, requests: &RoundRequests) {
        for (family, [ok, error]) in [
            (&self.list_offsets, requests.list_offsets),
            (&self.offset_fetches, requests.offset_fetches),
        ] {
            family.with_label_values(&["ok"]).inc_by(ok);
            family.with_label_values(&["error"]).inc_by(error);
        }
        self.rounds.inc();
        self.round_duration.observe(took.as_secs_f64());
    }

    /// Replaces the lag series with `report`'s. `label_of(group, mode)` is the group's label under
    /// the tracked-groups cap (itself or `__other__`).
    pub fn publish(
        &self,
        report: &Report,
        per_partition: bool,
        label_of: &dyn Fn(&str, &'static str) -> String,
    ) {
        let Ok(mut published) = self.published.lock() else {
            return;
        };
        let mut now = Published::default();
        // __other__: topic → (sum, max), partition → sum.
        let mut other: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut other_partitions: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for g in report.groups.values() {
            let label = label_of(&g.group, g.mode);
            if label == OTHER {
                for t in &g.topics {
                    let e = other.entry(t.topic.clone()).or_default();
                    e.0 = e.0.saturating_add(t.lag);
                    e.1 = e.1.max(t.max_partition);
                    for p in &t.partitions {
                        *other_partitions
                            .entry((t.topic.clone(), p.partition))
                            .or_default() += p.lag;
                    }
                }
                continue;
            }
            for t in &g.topics {
                self.lag.with_label_values(&[&label, &t.topic]).set(t.lag);
                self.max_partition
                    .with_label_values(&[&label, &t.topic])
                    .set(t.max_partition);
                now.topics.insert((label.clone(), t.topic.clone()));
                if per_partition {
                    for p in &t.partitions {
                        let partition = p.partition.to_string();
                        self.partition
                            .with_label_values(&[&label, &t.topic, &partition])
                            .set(p.lag);
                        now.partitions
                            .insert((label.clone(), t.topic.clone(), partition));
                    }
                }
            }
            for s in Status::ALL {
                self.status
                    .with_label_values(&[&label, s.as_str()])
                    .set(i64::from(s == g.status));
            }
            if let Some(age) = g.commit_age_seconds {
                self.commit_age.with_label_values(&[&label]).set(age);
                now.ages.insert(label.clone());
            }
            now.groups.insert(label);
        }
        for (topic, (sum, max)) in other {
            self.lag.with_label_values(&[OTHER, &topic]).set(sum);
            self.max_partition
                .with_label_values(&[OTHER, &topic])
                .set(max);
            now.topics.insert((OTHER.to_string(), topic));
        }
        if per_partition {
            for ((topic, partition), lag) in other_partitions {
                let partition = partition.to_string();
                self.partition
                    .with_label_values(&[OTHER, &topic, &partition])
                    .set(lag);
                now.partitions.insert((OTHER.to_string(), topic, partition));
            }
        }
        for (g, t) in published.topics.difference(&now.topics) {
            let _ = self.lag.remove_label_values(&[g, t]);
            let _ = self.max_partition.remove_label_values(&[g, t]);
        }
        for (g, t, p) in published.partitions.difference(&now.partitions) {
            let _ = self.partition.remove_label_values(&[g, t, p]);
        }
        for g in published.groups.difference(&now.groups) {
            for s in Status::ALL {
                let _ = self.status.remove_label_values(&[g, s.as_str()]);
            }
        }
        for g in published.ages.difference(&now.ages) {
            let _ = self.commit_age.remove_label_values(&[g]);
        }
        *published = now;
    }

    /// Removes every lag series of `group` at once (released to another kelp, or deleted): lag
    /// series, like the other per-group series, exist only where the group is coordinated.
    pub fn forget(&self, group: &str) {
        let Ok(mut published) = self.published.lock() else {
            return;
        };
        published.topics.retain(|(g, t)| {
            let gone = g == group;
            if gone {
                let _ = self.lag.remove_label_values(&[g, t]);
                let _ = self.max_partition.remove_label_values(&[g, t]);
            }
            !gone
        });
        published.partitions.retain(|(g, t, p)| {
            let gone = g == group;
            if gone {
                let _ = self.partition.remove_label_values(&[g, t, p]);
            }
            !gone
        });
        if published.groups.remove(group) {
            for s in Status::ALL {
                let _ = self.status.remove_label_values(&[group, s.as_str()]);
            }
        }
        if published.ages.remove(group) {
            let _ = self.commit_age.remove_label_values(&[group]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::report::{GroupLag, PartitionLag, TopicLag};
    use prometheus::Encoder;

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn group(name: &str, lag: i64, status: Status) -> GroupLag {
        GroupLag {
            group: name.into(),
            mode: "local",
            topics: vec![TopicLag {
                topic: "t".into(),
                lag,
                max_partition: lag,
                partitions: vec![PartitionLag {
                    partition: 0,
                    committed: 1,
                    log_end: 1 + lag,
                    lag,
                }],
            }],
            total: lag,
            committed: 1,
            status,
            commit_age_seconds: Some(2.5),
        }
    }

    fn report(groups: Vec<GroupLag>) -> Report {
        Report {
            at_unix_ms: 1,
            groups: groups.into_iter().map(|g| (g.group.clone(), g)).collect(),
        }
    }

    #[test]
    fn a_round_replaces_the_last_and_untracked_groups_fold_into_other() {
        let registry = Registry::new();
        let m = LagMetrics::new(&registry);
        let tracked = |g: &str, _: &'static str| {
            if g == "a" {
                g.to_string()
            } else {
                OTHER.to_string()
            }
        };
        m.publish(
            &report(vec![
                group("a", 5, Status::Stalled),
                group("b", 3, Status::Ok),
                group("c", 4, Status::Ok),
            ]),
            true,
            &tracked,
        );
        let out = text(&registry);
        assert!(
            out.contains(r#"kelp_group_lag{group="a",topic="t"} 5"#),
            "{out}"
        );
        assert!(out.contains(r#"kelp_group_lag{group="__other__",topic="t"} 7"#));
        assert!(out.contains(r#"kelp_group_lag_max_partition{group="__other__",topic="t"} 4"#));
        assert!(out.contains(r#"kelp_group_lag_status{group="a",status="stalled"} 1"#));
        assert!(out.contains(r#"kelp_group_lag_status{group="a",status="ok"} 0"#));
        assert!(out.contains(r#"kelp_group_commit_age_seconds{group="a"} 2.5"#));
        assert!(out.contains(r#"kelp_group_lag_partition{group="a",partition="0",topic="t"} 5"#));
        assert!(!out.contains(r#"status{group="__other__""#));
        // The next round has only b (now tracked): a's series and __other__'s go.
        let all = |g: &str, _: &'static str| g.to_string();
        m.publish(&report(vec![group("b", 0, Status::Ok)]), false, &all);
        let out = text(&registry);
        assert!(!out.contains(r#"group="a""#), "{out}");
        assert!(!out.contains(r#"group="__other__""#));
        assert!(!out.contains("kelp_group_lag_partition{"));
        assert!(out.contains(r#"kelp_group_lag{group="b",topic="t"} 0"#));
    }
}
