//! Consumer group (KIP-848) tests on a fake clock, named after the Kafka `GroupMetadataManagerTest`
//! cases they mirror. `H` checks after every call that no partition is held by two members, both
//! as the coordinator records it and as the clients were told.

mod classic;
mod classic_members;
mod classic_props;
mod convert;
mod heartbeat;
mod props;
mod reconcile;
mod records;
mod statics;
mod timeouts;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{CallContext, ConsumerConfig, ConsumerEvent, ConsumerGroup, ConsumerGroups, Topics};
use crate::group::Millis;

pub(super) const G: &str = "g";
pub(super) const FOO: u128 = 0xf00;
pub(super) const BAR: u128 = 0xba2;

pub(super) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub(super) fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// An assignment written as `[(topic, [partitions])]`.
pub(super) type Parts = BTreeMap<u128, BTreeSet<i32>>;

pub(super) fn parts(v: &[(u128, &[i32])]) -> Parts {
    v.iter()
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .collect()
}

/// A heartbeat under construction. Defaults: v1, group "g".
#[derive(Clone)]
pub(super) struct Hb(pub ConsumerGroupHeartbeatRequest, pub i16);

impl Hb {
    /// A join (epoch 0) subscribing to `topics`, rebalance timeout 300000 (librdkafka's default
    /// max.poll.interval.ms), owning nothing.
    pub(super) fn join(member: &str, topics: &[&str]) -> Hb {
        Hb(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(G)))
                .with_member_id(s(member))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(300_000)
                .with_subscribed_topic_names(Some(topics.iter().map(|t| TopicName(s(t))).collect()))
                .with_topic_partitions(Some(vec![])),
            1,
        )
    }

    /// A heartbeat at `epoch` reporting `owned` (fields a client leaves out when unchanged).
    pub(super) fn beat(member: &str, epoch: i32, owned: &Parts) -> Hb {
        Hb(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(G)))
                .with_member_id(s(member))
                .with_member_epoch(epoch)
                .with_rebalance_timeout_ms(-1)
                .with_topic_partitions(Some(wire(owned))),
            1,
        )
    }

    pub(super) fn leave(member: &str, epoch: i32) -> Hb {
        Hb(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(G)))
                .with_member_id(s(member))
                .with_member_epoch(epoch)
                .with_rebalance_timeout_ms(-1),
            1,
        )
    }

    pub(super) fn instance(mut self, instance: &str) -> Hb {
        self.0.instance_id = Some(s(instance));
        self
    }

    pub(super) fn assignor(mut self, name: &str) -> Hb {
        self.0.server_assignor = Some(s(name));
        self
    }

    pub(super) fn regex(mut self, regex: &str) -> Hb {
        self.0.subscribed_topic_regex = Some(s(regex));
        self
    }

    pub(super) fn topics(mut self, topics: &[&str]) -> Hb {
        self.0.subscribed_topic_names = Some(topics.iter().map(|t| TopicName(s(t))).collect());
        self
    }

    pub(super) fn rebalance_timeout(mut self, ms: i32) -> Hb {
        self.0.rebalance_timeout_ms = ms;
        self
    }

    pub(super) fn group(mut self, group: &str) -> Hb {
        self.0.group_id = GroupId(s(group));
        self
    }

    pub(super) fn version(mut self, v: i16) -> Hb {
        self.1 = v;
        self
    }

    pub(super) fn with(mut self, f: impl FnOnce(&mut ConsumerGroupHeartbeatRequest)) -> Hb {
        f(&mut self.0);
        self
    }
}

pub(super) fn wire(p: &Parts) -> Vec<TopicPartitions> {
    p.iter()
        .map(|(t, ps)| {
            TopicPartitions::default()
                .with_topic_id(id(*t))
                .with_partitions(ps.iter().copied().collect())
        })
        .collect()
}

/// The assignment a heartbeat response carries (`None`: none sent).
pub(super) fn assigned(r: &ConsumerGroupHeartbeatResponse) -> Option<Parts> {
    r.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .map(|tp| {
                (
                    tp.topic_id.as_u128(),
                    tp.partitions.iter().copied().collect(),
                )
            })
            .collect()
    })
}

/// The harness: a coordinator on a fake clock, topics foo (6 partitions) and bar (3).
pub(super) struct H {
    pub c: ConsumerGroups,
    pub now: Millis,
    pub events: Vec<ConsumerEvent>,
    /// What each client may be consuming, per (group, member id): what it last reported
    /// owning plus what it was given since.
    pub told: BTreeMap<(String, String), Parts>,
}

impl H {
    pub(super) fn new() -> H {
        H::with_config(ConsumerConfig::default())
    }

    pub(super) fn with_config(config: ConsumerConfig) -> H {
        let mut h = H {
            c: ConsumerGroups::with_seed(config, 7),
            now: 1_000,
            events: Vec::new(),
            told: BTreeMap::new(),
        };
        h.set_topics(&[("foo", FOO, 6), ("bar", BAR, 3)]);
        h
    }

    pub(super) fn set_topics(&mut self, topics: &[(&str, u128, i32)]) {
        let t = Topics::new(topics.iter().map(|(n, i, p)| (n.to_string(), id(*i), *p)));
        self.c.set_topics(self.now, t, &mut self.events);
        self.check();
    }

    pub(super) fn hb(&mut self, hb: Hb) -> ConsumerGroupHeartbeatResponse {
        let cx = CallContext {
            api_version: hb.1,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
        };
        let r = self.c.heartbeat(self.now, &cx, &hb.0, &mut self.events);
        let group = hb.0.group_id.to_string();
        let member = r
            .member_id
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| hb.0.member_id.to_string());
        let key = (group, member);
        // A client holds what it reports, plus what it is given, until it reports again.
        if let Some(owned) = &hb.0.topic_partitions {
            let reported: Parts = owned
                .iter()
                .map(|tp| {
                    (
                        tp.topic_id.as_u128(),
                        tp.partitions.iter().copied().collect(),
                    )
                })
                .collect();
            self.told.insert(key.clone(), reported);
        }
        // Fenced or unknown, the client abandons all its partitions.
        if (r.error_code == 0 && hb.0.member_epoch < 0) || [25, 110].contains(&r.error_code) {
            self.told.remove(&key);
        } else if let Some(a) = assigned(&r) {
            let held = self.told.entry(key).or_default();
            for (t, ps) in a {
                held.entry(t).or_default().extend(ps);
            }
        }
        self.check();
        r
    }

    /// Moves the clock and fires what is due.
    pub(super) fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.c.tick(self.now, &mut self.events);
        self.check();
    }

    pub(super) fn group(&self) -> &ConsumerGroup {
        self.c.group(G).expect("group g")
    }

    pub(super) fn epoch_of(&self, member: &str) -> i32 {
        self.group().members[member].member_epoch
    }

    /// No partition held twice: by the coordinator's records and by what clients were told.
    /// A client whose member is gone (left, fenced, replaced) has abandoned its partitions.
    pub(super) fn check(&mut self) {
        let live: BTreeSet<(String, String)> = self
            .c
            .groups()
            .flat_map(|g| g.members.keys().map(move |m| (g.id.clone(), m.clone())))
            .collect();
        self.told.retain(|k, _| live.contains(k));
        for g in self.c.groups() {
            if let Err(e) = g.check_ownership() {
                panic!("group {}: {e}", g.id);
            }
        }
        let mut seen: BTreeMap<(String, u128, i32), &str> = BTreeMap::new();
        for ((g, m), p) in &self.told {
            for (t, ps) in p {
                for q in ps {
                    if let Some(other) = seen.insert((g.clone(), *t, *q), m) {
                        panic!("{t:x}-{q} told to {other} and {m}");
                    }
                }
            }
        }
    }

    pub(super) fn take_events(&mut self) -> Vec<ConsumerEvent> {
        std::mem::take(&mut self.events)
    }
}
