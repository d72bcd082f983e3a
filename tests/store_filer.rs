//! kelp's filer store (`kelp::store::FilerStore`) against a real SeaweedFS filer: this binary's
//! stack from tests/support. Offsets and group records round trip, per-group call order is apply
//! order, the filer stopped (SIGSTOP) and resumed, a closed port, and the import of offsets that
//! a real Kafka client committed through the real gateway. Plus an `#[ignore]`d startup
//! measurement (10,000 group records), run on demand.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use kelp::store::{
    CommittedOffset, FilerConfig, FilerStore, Store, StoreError, StoredGroup, StoredMember,
};
use tokio::sync::RwLock;

/// Tests share one filer; the test that stops it takes this for writing, the others for reading.
static FILER: RwLock<()> = RwLock::const_new(());

/// A prefix of its own per test (and per run), so listings see only that test's groups.
fn prefix(test: &str) -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    format!(
        "/kelp-test/{test}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(test: &str) -> FilerConfig {
    let mut c = FilerConfig::new(support::stack().filer.clone());
    c.prefix = prefix(test);
    c.request_timeout = Duration::from_secs(2);
    c
}

fn store(c: &FilerConfig) -> FilerStore {
    FilerStore::new(c.clone()).expect("filer store")
}

fn off(offset: i64, metadata: &str) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: 4,
        metadata: metadata.into(),
        commit_timestamp_ms: 1_795_000_000_000 + offset,
        expire_timestamp_ms: None,
    }
}

fn record(generation: i32, members: usize) -> StoredGroup {
    StoredGroup {
        protocol_type: Some("consumer".into()),
        protocol_name: Some("cooperative-sticky".into()),
        generation,
        leader: Some("member-0".into()),
        state_timestamp_ms: 1_795_000_000_000,
        members: (0..members)
            .map(|i| StoredMember {
                member_id: format!("member-{i}"),
                group_instance_id: (i % 2 == 1).then(|| format!("instance-{i}")),
                client_id: "rdkafka".into(),
                client_host: format!("/10.0.0.{i}"),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from(vec![
                    0, 3, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0, 0, 0, 0,
                ]),
                assignment: Bytes::from(vec![
                    0, 3, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0, 0, 0, 1, 0, 0,
                    0, i as u8,
                ]),
            })
            .collect(),
    }
}

#[tokio::test]
async fn offsets_round_trip_overwrite_and_delete() {
    let _shared = FILER.read().await;
    let c = config("offsets");
    let s = store(&c);
    let g = "orders-consumers";
    let weird = "odd/topic %41 ü.";
    s.put_offsets(
        g,
        vec![
            ("orders".into(), 1, off(10, "")),
            ("orders".into(), 0, off(7, "m")),
            (weird.into(), 3, off(5, "x")),
        ],
    )
    .await
    .expect("first commit");
    s.put_offsets(g, vec![("orders".into(), 1, off(12, "again"))])
        .await
        .expect("overwrite");

    let want = vec![
        ("odd/topic %41 ü.".to_string(), 3, off(5, "x")),
        ("orders".into(), 0, off(7, "m")),
        ("orders".into(), 1, off(12, "again")),
    ];
    assert_eq!(s.load_offsets(g).await.expect("load"), want);
    // A second store (a restart) reads the same from the filer alone.
    assert_eq!(
        store(&c)
            .load_offsets(g)
            .await
            .expect("load from a fresh store"),
        want
    );

    s.delete_offsets(
        g,
        vec![
            ("orders".into(), 0),
            ("orders".into(), 99),
            ("never".into(), 1),
        ],
    )
    .await
    .expect("delete");
    s.delete_offsets(g, vec![(weird.into(), 3)])
        .await
        .expect("delete the topic's last partition");
    assert_eq!(
        store(&c).load_offsets(g).await.expect("load"),
        vec![("orders".to_string(), 1, off(12, "again"))]
    );
    // A topic emptied and committed again.
    s.put_offsets(g, vec![(weird.into(), 0, off(1, ""))])
        .await
        .expect("recommit");
    assert_eq!(store(&c).load_offsets(g).await.expect("load").len(), 2);
    assert_eq!(
        s.load_offsets("nobody").await.expect("unknown group"),
        vec![]
    );
}

#[tokio::test]
async fn group_records_listing_and_delete() {
    let _shared = FILER.read().await;
    let c = config("groups");
    let s = store(&c);
    assert_eq!(
        s.list_groups().await.expect("list before anything"),
        Vec::<String>::new()
    );
    let ids = [
        "plain",
        "",
        "a/b",
        "..",
        ".hidden",
        "pct %2F ü",
        "x".repeat(200).as_str(),
    ]
    .map(str::to_string);
    for (i, id) in ids.iter().enumerate() {
        s.put_group(id, record(i as i32, 3).encode())
            .await
            .unwrap_or_else(|e| panic!("put {id:?}: {e}"));
    }
    s.put_offsets("offsets-only", vec![("t".into(), 0, off(1, ""))])
        .await
        .expect("commit");
    s.put_group("plain", record(42, 2).encode())
        .await
        .expect("overwrite a record");

    let fresh = store(&c);
    let listed: BTreeSet<String> = fresh
        .list_groups()
        .await
        .expect("list")
        .into_iter()
        .collect();
    let mut want: BTreeSet<String> = ids.iter().cloned().collect();
    want.insert("offsets-only".into());
    assert_eq!(listed, want);
    for (i, id) in ids.iter().enumerate() {
        let bytes = fresh
            .load_group(id)
            .await
            .expect("load")
            .unwrap_or_else(|| panic!("{id:?} has a record"));
        let want = if id == "plain" {
            record(42, 2)
        } else {
            record(i as i32, 3)
        };
        assert_eq!(StoredGroup::decode(&bytes).expect("decodes"), want);
    }
    assert_eq!(fresh.load_group("offsets-only").await.expect("load"), None);

    s.put_offsets("a/b", vec![("t".into(), 0, off(3, ""))])
        .await
        .expect("commit");
    s.delete_group("a/b").await.expect("delete");
    s.delete_group("never-existed")
        .await
        .expect("deleting nothing is fine");
    assert_eq!(fresh.load_group("a/b").await.expect("load"), None);
    assert_eq!(fresh.load_offsets("a/b").await.expect("load"), vec![]);
    assert!(!fresh
        .list_groups()
        .await
        .expect("list")
        .contains(&"a/b".to_string()));

    let too_long = "é".repeat(100);
    assert!(matches!(
        s.put_group(&too_long, Bytes::new()).await,
        Err(StoreError::Other(_))
    ));
}

/// 200 commits of one partition, all issued before any is awaited: the last one issued wins,
/// and every earlier one is acknowledged. Some futures are dropped unawaited: their writes still
/// happen, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_apply_in_call_order() {
    let _shared = FILER.read().await;
    let c = config("order");
    let s = store(&c);
    let g = "busy";
    let mut futs = Vec::new();
    for i in 0..200i64 {
        // Two topics, so some commits are multi-file; every commit moves partition 0 of "a".
        let mut batch = vec![("a".to_string(), 0, off(i, &format!("commit {i}")))];
        if i % 3 == 0 {
            batch.push(("b".to_string(), (i % 4) as i32, off(i, "")));
        }
        let f = s.put_offsets(g, batch);
        if i % 10 == 5 {
            drop(f);
        } else {
            futs.push(f);
        }
    }
    for (n, r) in join_all(futs).await.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("commit #{n} failed: {e}"));
    }
    let got = store(&c).load_offsets(g).await.expect("load");
    let a0 = got
        .iter()
        .find(|(t, p, _)| t == "a" && *p == 0)
        .expect("a/0 committed");
    assert_eq!(a0.2, off(199, "commit 199"));
    let b: Vec<(i32, i64)> = got
        .iter()
        .filter(|(t, _, _)| t == "b")
        .map(|(_, p, o)| (*p, o.offset))
        .collect();
    assert_eq!(b, vec![(0, 192), (1, 189), (2, 198), (3, 195)]);
}

#[tokio::test]
async fn closed_port_is_unavailable() {
    let mut c = FilerConfig::new(format!("http://127.0.0.1:{}", support::free_port()));
    c.request_timeout = Duration::from_secs(2);
    let s = store(&c);
    let t0 = Instant::now();
    let put = s.put_offsets("g", vec![("t".into(), 0, off(1, ""))]).await;
    assert!(matches!(put, Err(StoreError::Unavailable(_))), "{put:?}");
    assert!(matches!(
        s.list_groups().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "refused connections fail fast: {:?}",
        t0.elapsed()
    );
}

/// SIGCONTs the filer's process when dropped, so a failing test never leaves it stopped.
struct Stopped(u32);

impl Stopped {
    /// Returns once the kernel reports the process stopped (bounded).
    fn new(pid: u32) -> Stopped {
        signal("-STOP", pid);
        let stopped = Stopped(pid);
        support::wait_until(
            &format!("pid {pid} to be stopped"),
            Duration::from_secs(10),
            || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        s.rsplit_once(')').and_then(|(_, rest)| {
                            rest.split_whitespace().next().map(str::to_string)
                        })
                    })
                    .is_some_and(|state| state == "T")
            },
        );
        stopped
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(sig: &str, pid: u32) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill {sig} {pid} failed");
}

/// The filer stops answering (its `weed server` process SIGSTOPped): a commit fails with
/// `Unavailable` within the request timeout, reads within their retries. After SIGCONT the same
/// store works again and nothing acknowledged is lost; the write that timed out, which the filer
/// applies late when it resumes, does not roll back the newer one.
#[tokio::test]
async fn stopped_filer_is_unavailable_then_recovers() {
    let _exclusive = FILER.write().await;
    let stack = support::stack();
    let server_pid = *stack
        .pids
        .first()
        .expect("stack.json lists the weed server pid");
    let mut c = config("stopped");
    c.request_timeout = Duration::from_secs(1);
    c.read_attempts = 2;
    let s = store(&c);
    let g = "survivor";
    s.put_offsets(
        g,
        vec![
            ("t".into(), 0, off(1, "acked")),
            ("t".into(), 1, off(100, "")),
        ],
    )
    .await
    .expect("commit before the stop");
    s.put_group(g, record(3, 1).encode())
        .await
        .expect("record before the stop");

    let stopped = Stopped::new(server_pid);
    let t0 = Instant::now();
    let put = s
        .put_offsets(g, vec![("t".into(), 0, off(2, "timed out"))])
        .await;
    let took = t0.elapsed();
    assert!(matches!(put, Err(StoreError::Unavailable(_))), "{put:?}");
    assert!(
        took < Duration::from_millis(2500),
        "a write fails within its 1 s timeout, took {took:?}"
    );
    let t1 = Instant::now();
    let load = s.load_offsets(g).await;
    eprintln!(
        "stopped filer: commit failed after {took:.2?}, load after {:.2?}",
        t1.elapsed()
    );
    assert!(matches!(load, Err(StoreError::Unavailable(_))), "{load:?}");
    assert!(
        t1.elapsed() < Duration::from_secs(5),
        "2 attempts of 1 s, took {:?}",
        t1.elapsed()
    );
    assert!(matches!(
        s.load_group(g).await,
        Err(StoreError::Unavailable(_))
    ));
    drop(stopped);

    // The same store recovers by itself; the first tries may still meet a filer waking up.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match s
            .put_offsets(g, vec![("t".into(), 0, off(3, "after"))])
            .await
        {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => eprintln!("not yet: {e}"),
            Err(e) => panic!("the store did not recover within 30 s after SIGCONT: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let want = vec![
        ("t".to_string(), 0, off(3, "after")),
        ("t".to_string(), 1, off(100, "")),
    ];
    assert_eq!(s.load_offsets(g).await.expect("load after recovery"), want);
    // Give a late write every chance to land, then read from a fresh store.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store(&c).load_offsets(g).await.expect("fresh load"), want);
    let rec = store(&c)
        .load_group(g)
        .await
        .expect("load record")
        .expect("record kept");
    assert_eq!(StoredGroup::decode(&rec).expect("decodes"), record(3, 1));
}

/// One plain HTTP/1.0 exchange with the filer, bypassing the store: (status, body).
fn raw_http(method: &str, path: &str, body: &[u8], json: bool) -> (u16, Vec<u8>) {
    let filer = support::stack()
        .filer
        .trim_start_matches("http://")
        .to_string();
    let mut s = TcpStream::connect(&filer).unwrap_or_else(|e| panic!("connect {filer}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let accept = if json {
        "Accept: application/json\r\n"
    } else {
        ""
    };
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {filer}\r\nContent-Length: {}\r\n{accept}\r\n",
        body.len()
    )
    .expect("write");
    s.write_all(body).expect("write body");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    (status, answer[split + 4..].to_vec())
}

/// The file names in a filer directory.
fn names_in(dir: &str) -> Vec<String> {
    let (status, body) = raw_http("GET", &format!("{dir}?limit=100"), b"", true);
    assert_eq!(status, 200, "listing {dir}");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("listing JSON");
    let entries = v["Entries"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| e["FullPath"].as_str())
        .filter_map(|p| p.rsplit('/').next())
        .map(str::to_string)
        .collect()
}

/// The filer applies a PUT whose client timed out and left, late (seen with SIGSTOP/SIGCONT).
/// Replaying an earlier commit's file under its own name after a newer commit was acknowledged
/// must not roll the offset back: offsets files are write-once with increasing names.
#[tokio::test]
async fn a_late_write_of_an_earlier_commit_does_not_roll_back() {
    let _shared = FILER.read().await;
    let c = config("late");
    let s = store(&c);
    let dir = format!("{}/groups/g/offsets/t/", c.prefix);
    s.put_offsets("g", vec![("t".into(), 0, off(1, "early"))])
        .await
        .expect("early commit");
    let early = names_in(&dir);
    assert_eq!(early.len(), 1, "one file per topic: {early:?}");
    let early_path = format!("{dir}{}", early[0]);
    let (status, early_body) = raw_http("GET", &early_path, b"", false);
    assert_eq!(status, 200);

    s.put_offsets("g", vec![("t".into(), 0, off(2, "newer"))])
        .await
        .expect("newer commit");
    support::wait_until(
        "the superseded file to be deleted",
        Duration::from_secs(10),
        || !names_in(&dir).contains(&early[0]),
    );
    let (status, _) = raw_http("PUT", &early_path, &early_body, false);
    assert_eq!(status, 201, "replaying the early write");
    assert_eq!(names_in(&dir).len(), 2);

    let got = store(&c).load_offsets("g").await.expect("load");
    assert_eq!(got, vec![("t".to_string(), 0, off(2, "newer"))]);
    // The reader cleans the replayed file up, and the next write continues above it.
    support::wait_until(
        "the replayed file to be deleted",
        Duration::from_secs(10),
        || names_in(&dir).len() == 1,
    );
}

/// Ownership epochs (issue 15): owner A claims a group and commits; B claims it (a new epoch,
/// reading A's commit); A, deposed but unaware, writes an offset, a new topic and a group record
/// afterwards (a paused owner's late writes). Never read by B, nor by C claiming after B, and B's
/// own writes win whatever the late files' sequence numbers.
#[tokio::test]
async fn a_deposed_owners_late_writes_are_never_read() {
    let _shared = FILER.read().await;
    let c = config("epochs");
    let (a, b) = (store(&c), store(&c));
    assert_eq!(a.claim("g").await.expect("A claims"), 1);
    a.put_offsets("g", vec![("t".into(), 0, off(5, "a"))])
        .await
        .expect("A commits");
    a.put_group("g", record(3, 2).encode())
        .await
        .expect("A's record");

    assert_eq!(b.claim("g").await.expect("B claims"), 2);
    assert_eq!(
        b.load_group("g")
            .await
            .expect("load")
            .map(|r| StoredGroup::decode(&r).unwrap()),
        Some(record(3, 2))
    );
    assert_eq!(
        b.load_offsets("g").await.expect("load"),
        vec![("t".to_string(), 0, off(5, "a"))]
    );

    // A's late writes land after B's claim.
    a.put_offsets("g", vec![("t".into(), 0, off(6, "late"))])
        .await
        .expect("the filer takes A's late commit");
    a.put_offsets("g", vec![("u".into(), 1, off(9, "late"))])
        .await
        .expect("and a topic B never saw");
    a.put_group("g", record(4, 1).encode())
        .await
        .expect("and a record");

    let seen = store(&c);
    assert_eq!(seen.claim("g").await.expect("C claims"), 3);
    assert_eq!(
        seen.load_offsets("g").await.expect("load"),
        vec![("t".to_string(), 0, off(5, "a"))],
        "A's late commits are not read"
    );
    assert_eq!(
        seen.load_group("g")
            .await
            .expect("load")
            .map(|r| StoredGroup::decode(&r).unwrap()),
        Some(record(3, 2)),
        "A's late record is not read"
    );
    // B (deposed by C now too) is not the point; a write under the newest epoch always wins.
    seen.put_offsets("g", vec![("t".into(), 0, off(7, "c"))])
        .await
        .expect("C commits");
    a.put_offsets("g", vec![("t".into(), 0, off(8, "later"))])
        .await
        .expect("A again");
    let fresh = store(&c);
    assert_eq!(
        fresh
            .load_offsets("g")
            .await
            .expect("an unclaimed reader follows the latest claim"),
        vec![("t".to_string(), 0, off(7, "c"))]
    );
}

/// kafka-python (a real client) joins group(s) at the real gateway, consumes and commits
/// synchronously. The gateway advertises port 9093 whatever its port (BACKEND.md), so the script
/// maps 9093 to the gateway's real port in the client's DNS lookup, and never reaches another
/// stack's gateway that may own 9093 on this machine.
const COMMIT_THROUGH_GATEWAY: &str = r#"
import json, sys, time
import kafka.conn
host, port = sys.argv[1].rsplit(":", 1); port = int(port)
topic, groups = sys.argv[2], sys.argv[3:]
real_lookup = kafka.conn.dns_lookup
kafka.conn.dns_lookup = lambda h, p, afi=0: real_lookup(h, port if p == 9093 else p, afi)
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata
bs = f"{host}:{port}"
KafkaAdminClient(bootstrap_servers=bs).create_topics([NewTopic(topic, 2, 1)])
p = KafkaProducer(bootstrap_servers=bs)
for i in range(10):
    p.send(topic, value=b"m%d" % i, partition=i % 2)
p.flush(); p.close()
out = {}
for n, group in enumerate(groups):
    c = KafkaConsumer(topic, bootstrap_servers=bs, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=10000)
    got, deadline = 0, time.time() + 60
    while got < 10 and time.time() < deadline:
        got += sum(len(v) for v in c.poll(500).values())
    if got < 10:
        sys.exit(f"group {group}: consumed {got} of 10")
    want = {0: (3 + n, f"meta-{n}"), 1: (5, "")}
    c.commit({TopicPartition(topic, q): OffsetAndMetadata(o, m, -1) for q, (o, m) in want.items()})
    for q, (o, _) in want.items():
        back = c.committed(TopicPartition(topic, q))
        if back != o:
            sys.exit(f"group {group}: committed {o} on {q}, the gateway answers {back}")
    c.close()
    out[group] = {str(q): [o, m] for q, (o, m) in want.items()}
print(json.dumps(out))
"#;

#[tokio::test]
async fn imports_offsets_committed_through_the_real_gateway() {
    let _shared = FILER.read().await;
    let stack = support::stack();
    let topic = format!("store-import-{}", std::process::id());
    let plain = format!("import-plain-{}", std::process::id());
    let nested = format!("import/nested %ü-{}", std::process::id());
    let kafka = stack.kafka.clone();
    let (t, p, n) = (topic.clone(), plain.clone(), nested.clone());
    let out = tokio::task::spawn_blocking(move || {
        support::python_ok(COMMIT_THROUGH_GATEWAY, &[&kafka, &t, &p, &n])
    })
    .await
    .expect("python thread");
    eprintln!("committed through the gateway: {}", out.trim());

    let s = store(&config("import"));
    for (n, group) in [&plain, &nested].into_iter().enumerate() {
        let got = s.import_gateway_offsets(group).await.expect("import");
        let summary: Vec<(String, i32, i64, String)> = got
            .iter()
            .map(|(t, p, o)| (t.clone(), *p, o.offset, o.metadata.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (topic.clone(), 0, 3 + n as i64, format!("meta-{n}")),
                (topic.clone(), 1, 5, String::new())
            ],
            "group {group:?}"
        );
        assert!(got
            .iter()
            .all(|(_, _, o)| o.leader_epoch == -1 && o.commit_timestamp_ms > 1_700_000_000_000));
    }
    assert_eq!(
        s.import_gateway_offsets("never-seen-by-the-gateway")
            .await
            .expect("import"),
        vec![]
    );
    assert_eq!(
        s.import_gateway_offsets("")
            .await
            .expect("import of the empty id"),
        vec![]
    );
    // Read-only: kelp's own layout is untouched by an import.
    assert_eq!(s.list_groups().await.expect("list"), Vec::<String>::new());
}

/// Startup cost: 10,000 group records (3 members each) and one topic file each, then a fresh
/// store lists the groups and loads every record, then every group's offsets.
/// `cargo test --test store_filer -- --ignored --nocapture startup_load_10k_groups`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run on demand"]
async fn startup_load_10k_groups() {
    const GROUPS: usize = 10_000;
    let _shared = FILER.read().await;
    let c = config("bench-10k");
    let s = store(&c);
    let rec = record(7, 3).encode();
    let t0 = Instant::now();
    let writes = (0..GROUPS).flat_map(|i| {
        let g = format!("bench-group-{i:05}");
        [
            s.put_group(&g, rec.clone()),
            s.put_offsets(
                &g,
                (0..3)
                    .map(|p| ("orders".to_string(), p, off(i as i64, "")))
                    .collect(),
            ),
        ]
    });
    for r in join_all(writes).await {
        r.expect("write");
    }
    eprintln!(
        "wrote {GROUPS} records ({} bytes each) + {GROUPS} offsets files in {:.2?}",
        rec.len(),
        t0.elapsed()
    );

    let fresh = store(&c);
    let t1 = Instant::now();
    let groups = fresh.list_groups().await.expect("list");
    let listed = t1.elapsed();
    let loads = join_all(groups.iter().map(|g| fresh.load_group(g))).await;
    let records = t1.elapsed();
    let offsets = join_all(groups.iter().map(|g| fresh.load_offsets(g))).await;
    let all = t1.elapsed();
    assert_eq!(groups.len(), GROUPS);
    for l in loads {
        assert_eq!(l.expect("load").as_ref(), Some(&rec));
    }
    for o in offsets {
        assert_eq!(o.expect("offsets").len(), 3);
    }
    eprintln!(
        "startup over {GROUPS} groups: list {listed:.2?}; list + load records {records:.2?}; \
         + load offsets {:.2?} (total {all:.2?})",
        all - records
    );
}
