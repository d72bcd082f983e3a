//! End to end through the proxy: a real SeaweedFS stack with its Kafka gateway, the real kelp
//! binary in front of it, and real librdkafka clients that only ever get kelp's address.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use support::{
    create_topic, metadata, produce_with, python_ok, stack, wait_until, GroupConsumer, Kelp,
};

const MESSAGES: usize = 10_000;
const PARTITIONS: i32 = 3;

/// (a) 10,000 messages produced through kelp to a 3-partition topic are consumed through kelp by
/// a 3-member group, every message exactly once, each partition by exactly one member.
#[test]
fn produce_then_group_consume_exactly_once_through_kelp() {
    // kelp's own coordinator: the gateway's (passthrough) has been seen to give two members the
    // same partition and none another (4.48), which no exactly-once check survives.
    let kelp = Kelp::start(&["--group-mode", "local"]);
    let bootstrap = kelp.addr();
    let topic = "e2e-exactly-once";
    let group = "e2e-exactly-once-group";
    create_topic(bootstrap, topic, PARTITIONS);

    // The group first settles (one partition per member), so that no rebalance moves a partition
    // while messages flow: moving one replays from the last commit, which would be a duplicate.
    let members: Vec<GroupConsumer> = (1..=3)
        .map(|i| GroupConsumer::start(bootstrap, group, &format!("e2e-member-{i}"), &[topic]))
        .collect();
    wait_for_stable_assignment(&members, Duration::from_secs(90));

    let t0 = Instant::now();
    let report = produce_with(bootstrap, topic, MESSAGES, &[("acks", "all")]);
    assert!(
        report.errors.is_empty(),
        "delivery errors: {:?}",
        &report.errors[..report.errors.len().min(5)]
    );
    assert_eq!(report.acked, MESSAGES, "acked");
    let produced = report.by_partition();
    assert_eq!(
        produced.len(),
        PARTITIONS as usize,
        "messages spread over every partition: {produced:?}"
    );
    eprintln!(
        "produced {MESSAGES} in {:.2} s: {produced:?}",
        t0.elapsed().as_secs_f64()
    );

    let t1 = Instant::now();
    wait_until("every message consumed", Duration::from_secs(120), || {
        members.iter().map(|m| m.count()).sum::<usize>() >= MESSAGES
    });
    eprintln!("consumed {MESSAGES} in {:.2} s", t1.elapsed().as_secs_f64());
    let assignments: Vec<Vec<i32>> = members.iter().map(|m| m.partitions()).collect();
    let rebalances: Vec<usize> = members
        .iter()
        .map(|m| m.consumed.assignments_seen())
        .collect();
    let records: Vec<Vec<support::Record>> = members.into_iter().map(|m| m.stop()).collect();

    // each member read only the partition it was assigned
    for (i, recs) in records.iter().enumerate() {
        let parts: BTreeSet<i32> = recs.iter().map(|r| r.partition).collect();
        let assigned: BTreeSet<i32> = assignments[i].iter().copied().collect();
        assert!(
            parts.is_subset(&assigned),
            "member {i} read partitions {parts:?} but was assigned {assigned:?}"
        );
    }
    // per partition: exactly the acknowledged offsets, each once, with the acknowledged payloads
    let mut consumed: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    for r in records.iter().flatten() {
        assert_eq!(r.topic, topic);
        consumed
            .entry(r.partition)
            .or_default()
            .push((r.offset, r.payload.clone()));
    }
    let mut acked: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    for d in &report.delivered {
        acked
            .entry(d.partition)
            .or_default()
            .push((d.offset, d.payload.clone()));
    }
    let mut duplicates = 0;
    let mut missing = 0;
    for p in 0..PARTITIONS {
        let mut got = consumed.remove(&p).unwrap_or_default();
        let want = acked.remove(&p).unwrap_or_default();
        got.sort();
        let n = got.len();
        got.dedup_by_key(|(o, _)| *o);
        duplicates += n - got.len();
        let got_map: HashMap<i64, &Vec<u8>> = got.iter().map(|(o, v)| (*o, v)).collect();
        for (o, v) in &want {
            match got_map.get(o) {
                Some(g) => assert_eq!(*g, v, "partition {p} offset {o}: payload differs"),
                None => missing += 1,
            }
        }
        assert_eq!(
            got.len(),
            want.len(),
            "partition {p}: consumed {} distinct offsets, acked {}",
            got.len(),
            want.len()
        );
    }
    assert!(
        consumed.is_empty(),
        "records from partitions that do not exist: {:?}",
        consumed.keys()
    );
    assert_eq!(
        (duplicates, missing),
        (0, 0),
        "duplicates, missing (rebalances seen per member: {rebalances:?})"
    );
}

/// Waits until the members hold one distinct partition each, and the assignment has not changed
/// for 2 s (a group that is still rebalancing changes it within a heartbeat or two).
fn wait_for_stable_assignment(members: &[GroupConsumer], timeout: Duration) {
    let mut last: Option<(Vec<Vec<i32>>, Vec<usize>)> = None;
    let mut since = Instant::now();
    wait_until(
        "a stable assignment of one partition per member",
        timeout,
        || {
            let parts: Vec<Vec<i32>> = members.iter().map(|m| m.partitions()).collect();
            let seen: Vec<usize> = members
                .iter()
                .map(|m| m.consumed.assignments_seen())
                .collect();
            let now = (parts.clone(), seen);
            if last.as_ref() != Some(&now) {
                last = Some(now);
                since = Instant::now();
                return false;
            }
            let flat: BTreeSet<i32> = parts.iter().flatten().copied().collect();
            parts.iter().all(|p| p.len() == 1)
                && flat.len() == members.len()
                && since.elapsed() >= Duration::from_secs(2)
        },
    );
}

/// (b) Metadata and FindCoordinator answered through kelp name only kelp's host:port.
#[test]
fn metadata_and_coordinator_point_at_kelp() {
    let kelp = Kelp::start(&[]);
    let bootstrap = kelp.addr();
    let (host, port) = bootstrap.rsplit_once(':').unwrap();
    let port: i32 = port.parse().unwrap();
    let topic = "e2e-metadata";
    create_topic(bootstrap, topic, PARTITIONS);

    let md = metadata(bootstrap, None);
    let brokers: Vec<(i32, String, i32)> = md
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port()))
        .collect();
    assert_eq!(
        brokers,
        vec![(1, host.to_string(), port)],
        "brokers in Metadata through kelp"
    );
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("topic in Metadata");
    assert_eq!(t.partitions().len(), PARTITIONS as usize);
    for p in t.partitions() {
        assert_eq!(p.leader(), 1, "partition {} leader", p.id());
        assert!(
            p.replicas().iter().all(|r| *r == 1),
            "partition {} replicas {:?}",
            p.id(),
            p.replicas()
        );
        assert!(
            p.isr().iter().all(|r| *r == 1),
            "partition {} isr {:?}",
            p.id(),
            p.isr()
        );
    }
    assert!(
        !md.brokers()
            .iter()
            .any(|b| format!("{}:{}", b.host(), b.port()) == stack().kafka),
        "gateway address leaked"
    );

    // FindCoordinator, as a real client sees it: a confluent-kafka (librdkafka) group member's
    // statistics list every broker it learned, and the GroupCoordinator it found, by host:port.
    let out = python_ok(
        r#"
import json, sys, time
from confluent_kafka import Consumer
stats = {}
def on_stats(s):
    stats.update(json.loads(s))
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "client.id": "e2e-metadata",
              "broker.address.family": "v4", "statistics.interval.ms": 200, "stats_cb": on_stats,
              "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]])
end = time.monotonic() + 60
while time.monotonic() < end and stats.get("cgrp", {}).get("state") != "up":
    c.poll(0.2)
print("cgrp", stats.get("cgrp", {}).get("state"))
for name, b in sorted(stats.get("brokers", {}).items()):
    print("broker", b["nodeid"], b["nodename"] or "-", b["source"], name.split("/")[0])
c.close()
"#,
        &[bootstrap, "e2e-metadata-group", topic],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("cgrp up"),
        "group never came up through kelp:\n{out}"
    );
    let mut coordinator = None;
    for l in &lines[1..] {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f.len(), 5, "stats line {l:?}");
        let (nodeid, nodename, source, name) = (f[1], f[2], f[3], f[4]);
        assert!(
            nodename == "-" || nodename == bootstrap,
            "librdkafka learned a broker other than kelp: {l}\n{out}"
        );
        if source == "learned" {
            assert_eq!(
                (nodeid, nodename),
                ("1", bootstrap),
                "broker learned from Metadata: {l}"
            );
        }
        if name == "GroupCoordinator" {
            // librdkafka's logical coordinator broker always shows node id -1; its nodename is
            // the host:port from FindCoordinator
            coordinator = Some(nodename.to_string());
        }
    }
    assert_eq!(
        coordinator.as_deref(),
        Some(bootstrap),
        "GroupCoordinator found through kelp:\n{out}"
    );
}
