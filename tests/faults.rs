//! Fault injection with real parts: the SeaweedFS gateway killed (-9) and restarted mid-produce and
//! mid-consume, and kelp itself killed -9 during a rebalance (the filer stopped mid-commit is in
//! tests/faults_filer.rs, with its own stack). Each case checks that clients see only retriable errors (no failed delivery, no fatal consumer error), that kelp recovers by itself, that
//! no acknowledged produce or commit is lost (counted), and that the group re-forms with every
//! partition owned once. Each prints one row of the fault table.
//!
//! The 4.48 gateway cannot read back what it stored before a restart (BACKEND.md). Records acked
//! before the kill are therefore counted separately as the gateway's own loss; kelp's loss is what
//! was acked after the restart and cannot be read back, and must be 0.

#[path = "faults/common.rs"]
mod common;
#[path = "faults/gateway.rs"]
mod gateway;
mod raw;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use common::{committed, kelp_has_filer, ready, row};
use gateway::Gateway;
use support::{create_topic, stack, wait_until, GroupConsumer, Kelp};

// ------------------------------------------------------------------------------------------------
// a paced producer that remembers when each record was acknowledged

#[derive(Default)]
struct Acks {
    acked: Vec<(Instant, i32, i64, String)>,
    errors: Vec<String>,
}

struct AckCtx(Arc<Mutex<Acks>>);

impl ClientContext for AckCtx {}
impl ProducerContext for AckCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let mut acks = self.0.lock().unwrap();
        match r {
            Ok(m) => {
                let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                acks.acked
                    .push((Instant::now(), m.partition(), m.offset(), payload));
            }
            Err((e, _)) => acks.errors.push(e.to_string()),
        }
    }
}

/// Produces `n` records named `<tag>-<i>` to `topic`, one every `every`, in a thread.
fn produce_paced(
    bootstrap: &str,
    topic: &str,
    tag: &str,
    n: usize,
    every: Duration,
) -> (Arc<Mutex<Acks>>, thread::JoinHandle<()>) {
    let acks = Arc::new(Mutex::new(Acks::default()));
    let producer: BaseProducer<AckCtx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "180000")
        .set("retry.backoff.ms", "250")
        .create_with_context(AckCtx(acks.clone()))
        .expect("producer");
    let (topic, tag) = (topic.to_string(), tag.to_string());
    let handle = thread::spawn(move || {
        for i in 0..n {
            let payload = format!("{tag}-{i:06}");
            let key = format!("k{i}");
            let mut record = BaseRecord::to(&topic).key(&key).payload(&payload);
            let deadline = Instant::now() + Duration::from_secs(180);
            while let Err((_, r)) = producer.send(record) {
                assert!(Instant::now() < deadline, "producer queue full for 180 s");
                record = r;
                producer.poll(Duration::from_millis(50));
            }
            producer.poll(Duration::ZERO);
            thread::sleep(every);
        }
        let _ = producer.flush(Duration::from_secs(180));
    });
    (acks, handle)
}

/// Reads `topic` from `start` offsets per partition (assign, no group) until every payload in
/// `want` is seen or `within` passes; returns the payloads seen.
fn read_back(
    bootstrap: &str,
    topic: &str,
    start: &BTreeMap<i32, i64>,
    want: &HashSet<String>,
    within: Duration,
) -> HashSet<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", format!("faults-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for (p, o) in start {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut seen = HashSet::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && !want.iter().all(|w| seen.contains(w)) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            seen.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    seen
}

// ------------------------------------------------------------------------------------------------
// committed offsets, straight from kelp

/// The member count of `group` when kelp describes it Stable.
fn stable_members(bootstrap: &str, group: &str) -> Option<usize> {
    let mut c = raw::Raw::connect(bootstrap);
    let request = kafka_protocol::messages::DescribeGroupsRequest::default()
        .with_groups(vec![StrBytes::from_string(group.into()).into()]);
    let r: kafka_protocol::messages::DescribeGroupsResponse =
        c.call(ApiKey::DescribeGroups, 3, &request);
    let g = r.groups.first()?;
    (g.error_code == 0 && g.group_state.as_str() == "Stable").then_some(g.members.len())
}

/// Commits below what was acknowledged before: (partition, before, after).
fn lost_commits(before: &BTreeMap<i32, i64>, after: &BTreeMap<i32, i64>) -> Vec<(i32, i64, i64)> {
    before
        .iter()
        .filter(|(p, o)| after.get(p).copied().unwrap_or(-1) < **o)
        .map(|(p, o)| (*p, *o, after.get(p).copied().unwrap_or(-1)))
        .collect()
}

/// Every partition of `topics` (`0..partitions` each) owned by exactly one of `consumers`.
fn owned_once(consumers: &[&GroupConsumer], topics: &[&str], partitions: i32) -> bool {
    let mut all = Vec::new();
    for c in consumers {
        all.extend(c.consumed.assignment());
    }
    let unique: BTreeSet<(String, i32)> = all.iter().cloned().collect();
    let want: BTreeSet<(String, i32)> = topics
        .iter()
        .flat_map(|t| (0..partitions).map(move |p| (t.to_string(), p)))
        .collect();
    all.len() == want.len() && unique == want
}

/// Consumer errors that are not retriable (librdkafka marks fatal ones).
fn fatal(errors: &[String]) -> Vec<String> {
    errors
        .iter()
        .filter(|e| e.to_lowercase().contains("fatal"))
        .cloned()
        .collect()
}

/// The cases share one stack and kill parts of it: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ------------------------------------------------------------------------------------------------
// the cases

#[test]
fn gateway_killed_and_restarted_mid_produce() {
    let _one = serial();
    let k = Kelp::start(&[]);
    let topic = "faults-produce";
    create_topic(k.addr(), topic, 3);
    let total = 1500;
    let (acks, producer) = produce_paced(k.addr(), topic, "p", total, Duration::from_millis(4));
    wait_until("300 records acknowledged", Duration::from_secs(60), || {
        acks.lock().unwrap().acked.len() >= 300
    });

    let mut gateway = Gateway::of_stack();
    let killed = Instant::now();
    gateway.kill9();
    wait_until(
        "kelp to see the backend down",
        Duration::from_secs(30),
        || !ready(&k),
    );
    // Every answer of the old gateway reached the producer by now (it polls all the while).
    let restarted = Instant::now();
    gateway.restart_until(|| ready(&k));
    let recovered = killed.elapsed();
    producer.join().expect("producer thread");

    let acks = acks.lock().unwrap();
    assert!(
        acks.errors.is_empty(),
        "failed deliveries (not retried): {:?}",
        acks.errors
    );
    let acked: HashSet<&str> = acks.acked.iter().map(|a| a.3.as_str()).collect();
    assert_eq!(acked.len(), total, "every record acknowledged");
    // Before the kill: the old gateway's lifetime; after: the new one's.
    let (old, new): (Vec<_>, Vec<_>) = acks.acked.iter().partition(|a| a.0 < restarted);
    let mut start = BTreeMap::new();
    for a in &new {
        let o = start.entry(a.1).or_insert(a.2);
        *o = (*o).min(a.2);
    }
    let want_new: HashSet<String> = new.iter().map(|a| a.3.clone()).collect();
    let seen = read_back(k.addr(), topic, &start, &want_new, Duration::from_secs(90));
    let lost: Vec<&String> = want_new.iter().filter(|w| !seen.contains(*w)).collect();
    let want_old: HashSet<String> = old.iter().map(|a| a.3.clone()).collect();
    let from_zero = (0..3).map(|p| (p, 0)).collect();
    let seen_old = read_back(
        k.addr(),
        topic,
        &from_zero,
        &want_old,
        Duration::from_secs(15),
    );
    let gateway_lost = want_old.iter().filter(|w| !seen_old.contains(*w)).count();
    row(
        "gateway kill -9 + restart mid-produce",
        "producer retried; 0 failed deliveries",
        recovered,
        lost.len(),
        Some(gateway_lost),
    );
    assert!(
        lost.is_empty(),
        "{} records acknowledged after the restart are lost: {lost:?}",
        lost.len()
    );
}

#[test]
fn gateway_killed_and_restarted_mid_consume() {
    let _one = serial();
    let k = Kelp::start(&["--group-initial-rebalance-delay-ms", "0"]);
    // Records of the second topic are produced only after the restart: what the 4.48 gateway held
    // before a restart it does not serve after it (BACKEND.md), so each topic lives in one lifetime.
    let (topic, after_topic, group) = ("faults-consume", "faults-consume-2", "faults-consume-g");
    let topics = [topic, after_topic];
    create_topic(k.addr(), topic, 3);
    create_topic(k.addr(), after_topic, 3);
    let a = GroupConsumer::start(k.addr(), group, "fc-a", &topics);
    let b = GroupConsumer::start(k.addr(), group, "fc-b", &topics);
    wait_until(
        "the group to own every partition once",
        Duration::from_secs(60),
        || owned_once(&[&a, &b], &topics, 3),
    );
    let (acks, p1) = produce_paced(k.addr(), topic, "c1", 300, Duration::from_millis(2));
    p1.join().unwrap();
    assert!(acks.lock().unwrap().errors.is_empty());
    wait_until(
        "both consumers to read the first 300",
        Duration::from_secs(60),
        || a.count() + b.count() >= 300,
    );
    wait_until(
        "the group to commit what it read",
        Duration::from_secs(30),
        || {
            committed(k.addr(), group, topic, 3)
                .values()
                .map(|o| (*o).max(0))
                .sum::<i64>()
                >= 300
        },
    );
    let before = committed(k.addr(), group, topic, 3);

    // The consumers keep fetching, heartbeating and committing while the gateway dies.
    let mut gateway = Gateway::of_stack();
    let killed = Instant::now();
    gateway.kill9();
    wait_until(
        "kelp to see the backend down",
        Duration::from_secs(30),
        || !ready(&k),
    );
    gateway.restart_until(|| ready(&k));
    let recovered = killed.elapsed();

    let after = committed(k.addr(), group, topic, 3);
    let lost_c = lost_commits(&before, &after);
    let (acks2, p2) = produce_paced(k.addr(), after_topic, "c2", 300, Duration::from_millis(2));
    p2.join().unwrap();
    let acks2 = acks2.lock().unwrap();
    assert!(
        acks2.errors.is_empty(),
        "failed deliveries: {:?}",
        acks2.errors
    );
    let want: HashSet<String> = acks2.acked.iter().map(|a| a.3.clone()).collect();
    let read = |c: &GroupConsumer| -> Vec<String> {
        c.records()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let missing = loop {
        let seen: HashSet<String> = read(&a).into_iter().chain(read(&b)).collect();
        let missing = want.iter().filter(|w| !seen.contains(*w)).count();
        if missing == 0 || Instant::now() > deadline {
            break missing;
        }
        thread::sleep(Duration::from_millis(100));
    };
    if missing > 0 {
        let mut start = BTreeMap::new();
        for x in acks2.acked.iter() {
            let o = start.entry(x.1).or_insert(x.2);
            *o = (*o).min(x.2);
        }
        let readable = read_back(
            k.addr(),
            after_topic,
            &start,
            &want,
            Duration::from_secs(30),
        );
        panic!(
            "the group read {} of {} records produced after the restart (a {:?} b {:?}; first offsets {:?}; a fresh reader through kelp reads {}); errors a {:?} b {:?}; committed {:?}",
            want.len() - missing,
            want.len(),
            a.partitions(),
            b.partitions(),
            start,
            readable.len(),
            a.consumed.errors(),
            b.consumed.errors(),
            committed(k.addr(), group, topic, 3)
        );
    }
    wait_until(
        "the group to own every partition once",
        Duration::from_secs(60),
        || owned_once(&[&a, &b], &topics, 3),
    );
    let errors: Vec<String> = a
        .consumed
        .errors()
        .into_iter()
        .chain(b.consumed.errors())
        .collect();
    row(
        "gateway kill -9 + restart mid-consume",
        &format!("{} consumer errors, all retriable", errors.len()),
        recovered,
        lost_c.len(),
        None,
    );
    assert!(lost_c.is_empty(), "acknowledged commits lost: {lost_c:?}");
    assert!(
        fatal(&errors).is_empty(),
        "fatal consumer errors: {errors:?}"
    );
    drop((a.stop(), b.stop()));
}

#[test]
fn kelp_killed_during_a_rebalance() {
    let _one = serial();
    let filer = kelp_has_filer();
    let mut args = vec!["--group-initial-rebalance-delay-ms", "0"];
    let filer_url = stack().filer.clone();
    if filer {
        args.extend(["--filer", filer_url.as_str()]);
    }
    let mut k = Kelp::start(&args);
    let (topic, group) = ("faults-kelp", "faults-kelp-g");
    create_topic(k.addr(), topic, 4);
    // Heartbeats every 3 s: the members learn of the rebalance that late, so it stays open long
    // enough to be seen.
    let slow = [("heartbeat.interval.ms", "3000")];
    let a = GroupConsumer::start_with(k.addr(), group, "fk-a", &[topic], &slow);
    let b = GroupConsumer::start_with(k.addr(), group, "fk-b", &[topic], &slow);
    wait_until(
        "the group to own every partition once",
        Duration::from_secs(60),
        || owned_once(&[&a, &b], &[topic], 4),
    );
    let (acks, p1) = produce_paced(k.addr(), topic, "k1", 400, Duration::from_millis(1));
    p1.join().unwrap();
    assert!(acks.lock().unwrap().errors.is_empty());
    wait_until(
        "the group to commit the first 400",
        Duration::from_secs(60),
        || {
            committed(k.addr(), group, topic, 4)
                .values()
                .map(|o| (*o).max(0))
                .sum::<i64>()
                >= 400
        },
    );
    let before = committed(k.addr(), group, topic, 4);

    // A third member starts a rebalance; kelp dies in the middle of it.
    let c = GroupConsumer::start(k.addr(), group, "fk-c", &[topic]);
    // One connection, polled without pause: the rebalance may last only a heartbeat interval.
    let mut probe = raw::Raw::connect(k.addr());
    let describe = kafka_protocol::messages::DescribeGroupsRequest::default()
        .with_groups(vec![StrBytes::from_string(group.into()).into()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let r: kafka_protocol::messages::DescribeGroupsResponse =
            probe.call(ApiKey::DescribeGroups, 3, &describe);
        let state = r
            .groups
            .first()
            .map(|g| g.group_state.to_string())
            .unwrap_or_default();
        if state == "PreparingRebalance" || state == "CompletingRebalance" {
            break state;
        }
        assert!(
            Instant::now() < deadline,
            "the group never rebalanced after a third member joined (last {state})"
        );
    };
    eprintln!("faults: killing kelp while the group is {state}");
    let killed = Instant::now();
    k.kill9();
    k.start_again();
    wait_until(
        "kelp to show the group Stable with 3 members",
        Duration::from_secs(120),
        || stable_members(k.addr(), group) == Some(3),
    );
    wait_until(
        "the group to re-form: every partition owned once",
        Duration::from_secs(120),
        || {
            // 4 partitions over 3 members: the new one owns some once the group re-formed.
            [&a, &b, &c].iter().all(|g| !g.partitions().is_empty())
                && owned_once(&[&a, &b, &c], &[topic], 4)
        },
    );
    let recovered = killed.elapsed();
    let after = committed(k.addr(), group, topic, 4);
    let lost_c = lost_commits(&before, &after);

    let (acks2, p2) = produce_paced(k.addr(), topic, "k2", 400, Duration::from_millis(1));
    p2.join().unwrap();
    let acks2 = acks2.lock().unwrap();
    assert!(
        acks2.errors.is_empty(),
        "failed deliveries: {:?}",
        acks2.errors
    );
    let want: HashSet<String> = acks2.acked.iter().map(|x| x.3.clone()).collect();
    wait_until(
        "the re-formed group to read what was produced after",
        Duration::from_secs(120),
        || {
            let seen: HashSet<String> = [&a, &b, &c]
                .iter()
                .flat_map(|g| g.records())
                .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
                .collect();
            want.iter().all(|w| seen.contains(w))
        },
    );
    let errors: Vec<String> = [&a, &b, &c]
        .iter()
        .flat_map(|g| g.consumed.errors())
        .collect();
    let store = if filer {
        "offsets in the filer"
    } else {
        "no --filer: offsets in memory"
    };
    row(
        &format!("kelp kill -9 during a rebalance ({store})"),
        &format!(
            "{} consumer errors, all retriable; members rejoined",
            errors.len()
        ),
        recovered,
        lost_c.len(),
        None,
    );
    assert!(
        fatal(&errors).is_empty(),
        "fatal consumer errors: {errors:?}"
    );
    if filer {
        assert!(lost_c.is_empty(), "acknowledged commits lost: {lost_c:?}");
    } else {
        eprintln!(
            "faults: without --filer kelp keeps commits in memory; lost on kill -9: {lost_c:?}"
        );
    }
    drop((a.stop(), b.stop(), c.stop()));
}
