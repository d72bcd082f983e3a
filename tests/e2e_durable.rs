//! Durable offsets and group records through kelp with `--filer`, against this binary's real
//! SeaweedFS stack and real clients: commits survive kill -9 of kelp and consumers resume from the
//! last acknowledged commit; a restart while a 3-member group is Stable keeps its generation and
//! assignments; a group that committed directly through the gateway resumes through kelp from
//! those offsets; and with the filer stopped (SIGSTOP) commits fail retriably, then succeed, and
//! nothing acknowledged is lost.

mod durable;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use durable::{
    commit_offset, commits, committer, generation, metric, not_available, try_create_topic, Script,
    Stopped,
};
use support::{committed, GroupConsumer, Kelp};

/// The filer-stop test takes this for writing (the gateway depends on the filer too); every
/// other test holds it for reading while it runs.
static FILER: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    FILER.read().unwrap_or_else(|e| e.into_inner())
}

/// kelp with a filer store under a prefix of its own.
fn kelp(test: &str, extra: &[&str]) -> Kelp {
    let prefix = format!("/kelp-e2e/{test}-{}", std::process::id());
    let filer = support::stack().filer.clone();
    let mut args = vec![
        "--filer",
        filer.as_str(),
        "--store-prefix",
        prefix.as_str(),
        "--group-initial-rebalance-delay-ms",
        "0",
    ];
    args.extend_from_slice(extra);
    Kelp::start(&args)
}

// ---- 1. kill -9 ---------------------------------------------------------------------------------

/// A confluent-kafka consumer that commits every message synchronously and reports each commit
/// on stdout: `trying P O` before, then `acked P O` (the broker answered success) or `failed P O`.
/// Bounded: 120 s.
const COMMITTING_CONSUMER: &str = r#"
import sys, time
from confluent_kafka import Consumer
bootstrap, group, topic = sys.argv[1:4]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "committer",
              "auto.offset.reset": "earliest", "enable.auto.commit": False,
              "broker.address.family": "v4", "session.timeout.ms": 30000,
              "heartbeat.interval.ms": 1000})
c.subscribe([topic])
end = time.monotonic() + 120
while time.monotonic() < end:
    m = c.poll(0.2)
    if m is None or m.error():
        continue
    print(f"trying {m.partition()} {m.offset() + 1}", flush=True)
    try:
        c.commit(message=m, asynchronous=False)
        print(f"acked {m.partition()} {m.offset() + 1}", flush=True)
    except Exception as e:
        print(f"failed {m.partition()} {m.offset() + 1} {e}", flush=True)
"#;

#[test]
fn commits_survive_kill9_and_consumers_resume_from_the_last_acknowledged_commit() {
    let _shared = shared();
    let mut kelp = kelp("kill9", &[]);
    let (topic, group, total) = ("durable-kill9", "g-durable-kill9", 600usize);
    support::create_topic(kelp.addr(), topic, 3);
    let produced = support::produce_with(kelp.addr(), topic, total, &[]);
    assert_eq!(produced.acked, total);
    let high: BTreeMap<i32, usize> = produced.by_partition();

    let mut a = Script::start(COMMITTING_CONSUMER, &[kelp.addr(), group, topic]);
    support::wait_until("200 acknowledged commits", Duration::from_secs(60), || {
        commits(&a.lines()).2 >= 200
    });
    // The pod dies: kelp and its consumer at once, with commits in flight.
    kelp.kill9();
    a.kill9();
    let (acked, tried, n_acked, n_failed) = commits(&a.lines());
    eprintln!(
        "before kill -9: {n_acked} commits acknowledged, {n_failed} failed; last acknowledged \
         {acked:?}, last attempted {tried:?}"
    );

    kelp.start_again();
    let resume = committed(kelp.addr(), group, topic, 3);
    eprintln!("after restart, kelp answers OffsetFetch with {resume:?}");
    let mut lost = 0;
    for p in 0..3 {
        let at = resume.get(&p).copied().unwrap_or(-1);
        match acked.get(&p) {
            // An acknowledged commit must be there (or the newer one that was in flight).
            Some(&last_acked) => {
                if at < last_acked {
                    lost += 1;
                }
                assert!(
                    at >= last_acked && at <= tried[&p],
                    "partition {p}: kelp answers {at}; acknowledged {last_acked}, attempted {}",
                    tried[&p]
                );
            }
            None => assert!(at <= tried.get(&p).copied().unwrap_or(-1)),
        }
    }
    assert_eq!(lost, 0, "acknowledged commits lost");

    // A new consumer of the group starts exactly there and gets everything after it.
    let b = GroupConsumer::start(kelp.addr(), group, "resumer", &[topic]);
    let want: usize = high
        .iter()
        .map(|(p, n)| n - resume.get(p).copied().unwrap_or(0).max(0) as usize)
        .sum();
    support::wait_until(
        &format!("{want} messages after the committed positions"),
        Duration::from_secs(60),
        || b.count() >= want,
    );
    let records = b.stop();
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &records {
        let e = first.entry(r.partition).or_insert(r.offset);
        *e = (*e).min(r.offset);
    }
    let distinct: HashSet<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    for (p, from) in &first {
        assert_eq!(*from, resume[p].max(0), "partition {p} resumed elsewhere");
    }
    assert_eq!(distinct.len(), want, "messages after the commits missing");
    eprintln!(
        "resumed: {n_acked} acknowledged commits, 0 lost; {want} messages consumed again from {first:?}"
    );
}

// ---- 2. restart while Stable ----------------------------------------------------------------------

/// Sessions long enough to outlast a kelp restart (librdkafka gives up its assignment when no
/// heartbeat succeeds for session.timeout.ms).
const LONG_SESSION: &[(&str, &str)] = &[
    ("session.timeout.ms", "30000"),
    ("heartbeat.interval.ms", "500"),
    ("auto.commit.interval.ms", "500"),
];

#[test]
fn restart_while_a_three_member_group_is_stable_keeps_its_generation_and_assignments() {
    let _shared = shared();
    let mut kelp = kelp("stable", &[]);
    let (topic, group) = ("durable-stable", "g-durable-stable");
    support::create_topic(kelp.addr(), topic, 6);
    let first = 900;
    assert_eq!(support::produce(kelp.addr(), topic, first), first);
    let members: Vec<GroupConsumer> = (0..3)
        .map(|i| {
            GroupConsumer::start_with(kelp.addr(), group, &format!("m{i}"), &[topic], LONG_SESSION)
        })
        .collect();
    let cover = |members: &[GroupConsumer]| {
        let mut all: Vec<i32> = members.iter().flat_map(|m| m.partitions()).collect();
        all.sort();
        all == (0..6).collect::<Vec<_>>() && members.iter().all(|m| !m.partitions().is_empty())
    };
    support::wait_until(
        "3 members own 6 partitions",
        Duration::from_secs(60),
        || cover(&members),
    );
    let distinct = |members: &[GroupConsumer]| {
        members
            .iter()
            .flat_map(|m| m.records())
            .map(|r| (r.partition, r.offset))
            .collect::<HashSet<_>>()
            .len()
    };
    support::wait_until("the first batch", Duration::from_secs(60), || {
        distinct(&members) >= first
    });
    let gen_before = generation(&kelp, group).expect("a generation");
    let assignments_before: Vec<usize> = members
        .iter()
        .map(|m| m.consumed.assignments_seen())
        .collect();
    let owned_before: Vec<Vec<i32>> = members.iter().map(|m| m.partitions()).collect();

    kelp.kill9();
    kelp.start_again();
    support::wait_until("kelp to load the group", Duration::from_secs(30), || {
        generation(&kelp, group).is_some()
    });
    assert_eq!(
        generation(&kelp, group),
        Some(gen_before),
        "the group came back with another generation"
    );
    assert_eq!(
        metric(
            &kelp,
            "kelp_group_state",
            &[("group", group), ("state", "Stable")]
        ),
        Some(1.0)
    );

    let second = 900;
    assert_eq!(support::produce(kelp.addr(), topic, second), second);
    support::wait_until(
        "the second batch, consumed after the restart",
        Duration::from_secs(60),
        || distinct(&members) >= first + second,
    );
    // A few more heartbeats and commits at the old generation, then: nothing moved.
    thread::sleep(Duration::from_secs(2));
    assert_eq!(
        generation(&kelp, group),
        Some(gen_before),
        "a rebalance happened"
    );
    let total_rebalances: f64 = {
        let (_, body) = kelp.http_get("/metrics");
        body.lines()
            .filter(|l| l.starts_with("kelp_group_rebalances_total{") && l.contains(group))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(total_rebalances, 0.0, "rebalances after the restart");
    let assignments_after: Vec<usize> = members
        .iter()
        .map(|m| m.consumed.assignments_seen())
        .collect();
    assert_eq!(
        assignments_after, assignments_before,
        "librdkafka saw a new assignment"
    );
    let owned_after: Vec<Vec<i32>> = members.iter().map(|m| m.partitions()).collect();
    assert_eq!(owned_after, owned_before);
    let errors: Vec<String> = members.iter().flat_map(|m| m.consumed.errors()).collect();
    eprintln!(
        "restart while Stable: generation {gen_before} kept, {} messages, client errors seen: {errors:?}",
        distinct(&members)
    );
    for m in members {
        m.stop();
    }
}

// ---- 3. import from the gateway -------------------------------------------------------------------

/// kafka-python produces 10 messages to each of 2 partitions and commits {0: 3, 1: 6} for the
/// group directly at the real gateway. The gateway advertises port 9093 whatever its port
/// (BACKEND.md): the client's DNS lookup maps 9093 to the real port, so it never reaches another
/// stack's gateway that may own 9093 on this machine.
const COMMIT_AT_THE_GATEWAY: &str = r#"
import sys, time
import kafka.conn
host, port = sys.argv[1].rsplit(":", 1); port = int(port)
topic, group = sys.argv[2], sys.argv[3]
real_lookup = kafka.conn.dns_lookup
kafka.conn.dns_lookup = lambda h, p, afi=0: real_lookup(h, port if p == 9093 else p, afi)
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata
bs = f"{host}:{port}"
KafkaAdminClient(bootstrap_servers=bs).create_topics([NewTopic(topic, 2, 1)])
p = KafkaProducer(bootstrap_servers=bs)
for i in range(20):
    p.send(topic, value=b"m%d" % i, partition=i % 2)
p.flush(); p.close()
c = KafkaConsumer(topic, bootstrap_servers=bs, group_id=group, auto_offset_reset="earliest",
                  enable_auto_commit=False, session_timeout_ms=10000)
got, deadline = 0, time.time() + 60
while got < 20 and time.time() < deadline:
    got += sum(len(v) for v in c.poll(500).values())
if got < 20:
    sys.exit(f"consumed {got} of 20 at the gateway")
want = {0: 3, 1: 6}
c.commit({TopicPartition(topic, q): OffsetAndMetadata(o, "", -1) for q, o in want.items()})
for q, o in want.items():
    back = c.committed(TopicPartition(topic, q))
    if back != o:
        sys.exit(f"committed {o} on {q}, the gateway answers {back}")
c.close()
print("committed", flush=True)
"#;

#[test]
fn a_group_that_committed_through_the_gateway_resumes_through_kelp_from_those_offsets() {
    let _shared = shared();
    let stack = support::stack();
    let topic = format!("durable-import-{}", std::process::id());
    let group = format!("g-durable-import-{}", std::process::id());
    support::python_ok(COMMIT_AT_THE_GATEWAY, &[&stack.kafka, &topic, &group]);

    let kelp = kelp("import", &[]);
    assert_eq!(
        committed(kelp.addr(), &group, &topic, 2),
        BTreeMap::from([(0, 3), (1, 6)]),
        "kelp answers the gateway's offsets"
    );
    let c = GroupConsumer::start(kelp.addr(), &group, "migrated", &[topic.as_str()]);
    support::wait_until(
        "the 11 messages after the gateway's commits",
        Duration::from_secs(60),
        || c.count() >= 11,
    );
    thread::sleep(Duration::from_millis(500));
    let records = c.stop();
    let mut got: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    got.sort();
    got.dedup();
    let want: Vec<(i32, i64)> = (3..10)
        .map(|o| (0, o))
        .chain((6..10).map(|o| (1, o)))
        .collect();
    assert_eq!(got, want, "resumed from the gateway's offsets");
}

// ---- 4. the filer stops -----------------------------------------------------------------------------

#[test]
fn filer_stopped_commits_fail_retriably_then_succeed_and_nothing_acknowledged_is_lost() {
    let _exclusive = FILER.write().unwrap_or_else(|e| e.into_inner());
    let server_pid = *support::stack().pids.first().expect("the weed server pid");
    let mut kelp = kelp("filer-stop", &[]);
    let (topic, group) = ("durable-filer-stop", "g-durable-filer-stop");
    support::create_topic(kelp.addr(), topic, 1);
    let c = Arc::new(committer(kelp.addr(), group));
    for offset in 1..=5 {
        commit_offset(&c, topic, offset)
            .unwrap_or_else(|e| panic!("commit {offset} before the stop: {e}"));
    }
    let mut last_acked = 5;

    let before = not_available(&kelp, group);
    let stopped = Stopped::new(server_pid);
    let t0 = Instant::now();
    // The commit runs in a thread: librdkafka retries COORDINATOR_NOT_AVAILABLE itself and may
    // only return once the filer is back.
    let during = {
        let c = c.clone();
        thread::spawn(move || commit_offset(&c, topic, 6))
    };
    support::wait_until(
        "kelp to answer COORDINATOR_NOT_AVAILABLE",
        Duration::from_secs(60),
        || not_available(&kelp, group) > before,
    );
    let answered_while_stopped = during.is_finished();
    eprintln!(
        "filer stopped: kelp answered {} x COORDINATOR_NOT_AVAILABLE within {:?}; the client call \
         {} returned",
        not_available(&kelp, group) - before,
        t0.elapsed(),
        if answered_while_stopped {
            "has"
        } else {
            "has not yet"
        }
    );
    drop(stopped);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !during.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the commit call did not return within 90 s of SIGCONT"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let result = during.join().expect("commit thread");
    if answered_while_stopped {
        assert!(
            result.is_err(),
            "acknowledged while the filer was stopped: {result:?}"
        );
    }
    eprintln!("the commit made during the stop returned {result:?}");
    // After SIGCONT the client's retry goes through.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match commit_offset(&c, topic, 6) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("commits did not recover within 60 s of SIGCONT: {e}"),
        }
    }
    eprintln!(
        "commits succeed again {:?} after the stop began",
        t0.elapsed()
    );
    for offset in 7..=10 {
        commit_offset(&c, topic, offset)
            .unwrap_or_else(|e| panic!("commit {offset} after the filer returned: {e}"));
        last_acked = offset;
    }
    drop(c);
    // Nothing acknowledged is lost, across a kill -9 of kelp too.
    kelp.kill9();
    kelp.start_again();
    assert_eq!(committed(kelp.addr(), group, topic, 1)[&0], last_acked);
    // Hand the stack back to the other tests only once the gateway serves again.
    let start = Instant::now();
    while let Err(e) = try_create_topic(kelp.addr(), "durable-after-the-stop") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the gateway did not recover within 60 s of SIGCONT: {e}"
        );
        thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "the gateway serves again {:?} after the stop began",
        t0.elapsed()
    );
}
