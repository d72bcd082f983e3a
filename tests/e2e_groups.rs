//! Real consumer groups through kelp's local coordinator, against a real SeaweedFS gateway: members
//! that share a client.id, a member killed without LeaveGroup, a clean leave, a member added, and a
//! group mixing librdkafka with kafka-python (other JoinGroup/LeaveGroup versions).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use support::{GroupConsumer, Kelp, PyClient, PyConsumer, Record};

/// Short sessions keep the test fast; 6000 ms is the smallest the coordinator accepts.
const SESSION: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("auto.commit.interval.ms", "500"),
];

fn kelp() -> Kelp {
    Kelp::start(&["--group-initial-rebalance-delay-ms", "0"])
}

/// Waits until the members' assignments cover `0..partitions` exactly once, each member owning at
/// least one partition; returns how long it took.
fn wait_exact_cover(
    what: &str,
    partitions: i32,
    timeout: Duration,
    members: &[&dyn Fn() -> Vec<i32>],
) -> Duration {
    let start = Instant::now();
    loop {
        let owned: Vec<Vec<i32>> = members.iter().map(|m| m()).collect();
        let all: Vec<i32> = owned.iter().flatten().copied().collect();
        let unique: BTreeSet<i32> = all.iter().copied().collect();
        let every_member_owns = owned.iter().all(|o| !o.is_empty());
        if all.len() == partitions as usize
            && unique.len() == partitions as usize
            && every_member_owns
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: assignments {owned:?} did not cover 0..{partitions} exactly once within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Distinct messages, (partition, offset), consumed across all members.
fn distinct(records: &[Vec<Record>]) -> HashSet<(i32, i64)> {
    records
        .iter()
        .flatten()
        .map(|r| (r.partition, r.offset))
        .collect()
}

fn wait_consumed(what: &str, want: usize, timeout: Duration, count: impl Fn() -> usize) {
    let start = Instant::now();
    while count() < want {
        assert!(
            start.elapsed() < timeout,
            "{what}: consumed {} of {want} within {timeout:?}",
            count()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shared_client_id_members_own_partitions_once_and_survive_kill_leave_and_join() {
    let kelp = kelp();
    let topic = "groups-shared-client-id";
    support::create_topic(kelp.addr(), topic, 6);
    let first = 3000;
    assert_eq!(support::produce(kelp.addr(), topic, first), first);

    // Three members with the same client.id: two rdkafka (in-process), one librdkafka in a child
    // process so it can be killed for real.
    let group = "g-shared";
    let a = GroupConsumer::start_with(kelp.addr(), group, "shared", &[topic], SESSION);
    let b = GroupConsumer::start_with(kelp.addr(), group, "shared", &[topic], SESSION);
    let set: Vec<String> = SESSION.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let set: Vec<(&str, &str)> = set.iter().map(|s| s.split_once('=').unwrap()).collect();
    let c = PyConsumer::start_with(
        PyClient::Confluent,
        kelp.addr(),
        group,
        "shared",
        &[topic],
        &set,
    );
    wait_exact_cover(
        "three members sharing client.id",
        6,
        Duration::from_secs(60),
        &[&|| a.partitions(), &|| b.partitions(), &|| c.partitions()],
    );
    wait_consumed("first batch", first, Duration::from_secs(60), || {
        distinct(&[a.records(), b.records(), c.records()]).len()
    });
    // Exactly once while the group was stable: no message seen twice.
    let all: Vec<Record> = [a.records(), b.records(), c.records()].concat();
    assert_eq!(all.len(), first, "duplicates while stable");

    // Kill one member without LeaveGroup: the other two own everything within session timeout +
    // one rebalance.
    let _ = c.kill9();
    let took = wait_exact_cover(
        "after kill -9",
        6,
        Duration::from_secs(6 + 20),
        &[&|| a.partitions(), &|| b.partitions()],
    );
    eprintln!("takeover after kill -9: {took:?}");

    // A clean close sends LeaveGroup: the rebalance starts at once, well inside the session timeout.
    let left = Instant::now();
    let b_records = b.stop();
    let took = wait_exact_cover(
        "after clean leave",
        6,
        Duration::from_secs(20),
        &[&|| a.partitions()],
    );
    assert!(
        left.elapsed() < Duration::from_secs(6),
        "the clean leave waited for a session timeout ({took:?})"
    );

    // A fourth member joins: a rebalance splits the partitions, and nothing is lost.
    let d = GroupConsumer::start_with(kelp.addr(), group, "shared", &[topic], SESSION);
    wait_exact_cover(
        "after a new member",
        6,
        Duration::from_secs(30),
        &[&|| a.partitions(), &|| d.partitions()],
    );
    let second = 3000;
    let produced = support::produce_with(
        kelp.addr(),
        topic,
        second,
        &[("message.timeout.ms", "30000")],
    );
    assert_eq!(produced.acked, second);
    let want: HashSet<(i32, i64)> = {
        let mut s = distinct(std::slice::from_ref(&all));
        s.extend(produced.delivered.iter().map(|d| (d.partition, d.offset)));
        s
    };
    wait_consumed(
        "second batch",
        first + second,
        Duration::from_secs(60),
        || distinct(&[a.records(), b_records.clone(), d.records()]).len(),
    );
    let got = distinct(&[a.records(), b_records, d.records()]);
    assert_eq!(got, want, "messages lost or invented");
    let per_partition: BTreeMap<i32, usize> = produced.by_partition();
    assert_eq!(per_partition.len(), 6, "produce spread {per_partition:?}");
}

#[test]
fn librdkafka_and_kafka_python_form_one_group() {
    let kelp = kelp();
    let topic = "groups-mixed-clients";
    support::create_topic(kelp.addr(), topic, 4);
    let n = 1000;
    assert_eq!(support::produce(kelp.addr(), topic, n), n);
    let group = "g-mixed";
    let rd = GroupConsumer::start_with(kelp.addr(), group, "rdkafka", &[topic], SESSION);
    let py = PyConsumer::start_with(
        PyClient::KafkaPython,
        kelp.addr(),
        group,
        "kafka-python",
        &[topic],
        &[
            ("session_timeout_ms", "6000"),
            ("heartbeat_interval_ms", "500"),
        ],
    );
    wait_exact_cover(
        "librdkafka + kafka-python",
        4,
        Duration::from_secs(60),
        &[&|| rd.partitions(), &|| py.partitions()],
    );
    wait_consumed("mixed group", n, Duration::from_secs(60), || {
        distinct(&[rd.records(), py.records()]).len()
    });
    let leaves_before = requests(&kelp, "LeaveGroup");
    // kafka-python closes with LeaveGroup (v3 on kafka-python 2.x): librdkafka takes over at once.
    let py_records = py.stop();
    wait_exact_cover(
        "after kafka-python left",
        4,
        Duration::from_secs(6),
        &[&|| rd.partitions()],
    );
    assert!(
        requests(&kelp, "LeaveGroup") > leaves_before,
        "no LeaveGroup reached kelp"
    );
    assert_eq!(distinct(&[rd.records(), py_records]).len(), n);
}

/// kelp_requests_total for a local group API.
fn requests(kelp: &Kelp, api: &str) -> u64 {
    let (_, body) = kelp.http_get("/metrics");
    let needle = format!("kelp_requests_total{{api=\"{api}\",path=\"local\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&needle).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}
