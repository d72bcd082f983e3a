//! Helpers of tests/e2e_migration.rs: kelp's metrics and config reloads, committed offsets sampled
//! through kelp, a steady producer, the three members and their progress (switch-over times), and
//! the checks on assignments and redelivered messages.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientContext, Message};

use crate::raw::Raw;
use crate::support::{self, GroupConsumer, Kelp, PyConsumer, Record};

pub const PARTITIONS: i32 = 6;
pub const RDKAFKA: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("auto.commit.interval.ms", "500"),
];

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A metric's value (the first series whose text starts with `series`), 0 if absent.
pub fn metric(kelp: &Kelp, series: &str) -> f64 {
    let (_, body) = kelp.http_get("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

pub fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("replace config");
}

pub fn sighup(kelp: &Kelp) {
    let pid = kelp.pid().expect("kelp runs");
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -HUP {pid}");
}

/// Reloads with `text` (file rewritten, then SIGHUP) and waits for the reload to count.
pub fn reload(kelp: &Kelp, path: &Path, text: &str, result: &str) {
    let series = format!("kelp_config_reloads_total{{result=\"{result}\"}} ");
    let before = metric(kelp, &series);
    write_config(path, text);
    sighup(kelp);
    support::wait_until(
        &format!("a config reload counted as {result}"),
        Duration::from_secs(10),
        || metric(kelp, &series) > before,
    );
}

/// Committed offsets of `group` for `topic` through kelp (OffsetFetch v5, partitions named).
pub fn committed(addr: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let mut raw = Raw::connect(addr);
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes((0..PARTITIONS).collect())]));
    let response: OffsetFetchResponse = raw.call(ApiKey::OffsetFetch, 5, &request);
    response
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.error_code == 0)
        .map(|p| (p.partition_index, p.committed_offset))
        .collect()
}

/// What `OffsetWatch` saw: the highest offset per partition, offsets that went backwards, samples.
#[derive(Default)]
pub struct Watched {
    high: BTreeMap<i32, i64>,
    backwards: Vec<String>,
    samples: usize,
}

/// Samples the group's committed offsets every 250 ms and remembers any that went backwards.
pub struct OffsetWatch {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<Watched>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl OffsetWatch {
    pub fn start(addr: &str, group: &str, topic: &str) -> OffsetWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(Watched::default()));
        let (addr, group, topic) = (addr.to_string(), group.to_string(), topic.to_string());
        let (st, sp) = (state.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(600);
            while !sp.load(Ordering::SeqCst) && Instant::now() < end {
                let got = committed(&addr, &group, &topic);
                let mut s = st.lock().unwrap();
                for (p, o) in got {
                    let last = s.high.get(&p).copied().unwrap_or(-1);
                    if o < last && s.backwards.len() < 20 {
                        s.backwards.push(format!("partition {p}: {last} -> {o}"));
                    }
                    if o >= 0 {
                        s.high.insert(p, o.max(last));
                    }
                }
                s.samples += 1;
                drop(s);
                thread::sleep(Duration::from_millis(250));
            }
        });
        OffsetWatch {
            stop,
            state,
            thread: Some(thread),
        }
    }

    /// The highest committed offset seen per partition so far.
    pub fn high(&self) -> BTreeMap<i32, i64> {
        self.state.lock().unwrap().high.clone()
    }

    pub fn samples(&self) -> usize {
        self.state.lock().unwrap().samples
    }

    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.state.lock().unwrap().backwards.clone()
    }
}

/// Delivery reports of the steady producer: every acked (partition, offset).
#[derive(Default)]
pub struct Acked(Mutex<Vec<(i32, i64)>>);

impl ClientContext for Acked {}

impl ProducerContext for Acked {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = r {
            self.0.lock().unwrap().push((m.partition(), m.offset()));
        }
    }
}

/// Produces one message every 5 ms (about 200/s) with one producer until stopped; returns every
/// acked (partition, offset).
pub struct Producer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Vec<(i32, i64)>>>,
}

impl Producer {
    pub fn start(addr: &str, topic: &str) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let (topic, sp) = (topic.to_string(), stop.clone());
        let producer: BaseProducer<Acked> = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("broker.address.family", "v4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create_with_context(Acked::default())
            .expect("producer");
        let thread = thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(600);
            let mut i = 0u64;
            while !sp.load(Ordering::SeqCst) && Instant::now() < end {
                let key = format!("k{i}");
                let value = format!("{topic}/{i:07}");
                // A full queue drops this message: only acked ones are expected back.
                let _ = producer.send(BaseRecord::to(&topic).key(&key).payload(&value));
                producer.poll(Duration::ZERO);
                i += 1;
                thread::sleep(Duration::from_millis(5));
            }
            let _ = producer.flush(Duration::from_secs(30));
            std::mem::take(&mut *producer.context().0.lock().unwrap())
        });
        Producer {
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> Vec<(i32, i64)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().expect("producer"))
            .unwrap_or_default()
    }
}

/// The three members and what they consumed.
pub struct Members {
    pub a: GroupConsumer,
    pub b: GroupConsumer,
    pub c: PyConsumer,
}

impl Members {
    pub fn records(&self) -> Vec<Vec<Record>> {
        vec![self.a.records(), self.b.records(), self.c.records()]
    }
    pub fn count(&self) -> usize {
        self.a.count() + self.b.count() + self.c.count()
    }
    pub fn assignments(&self) -> Vec<Vec<i32>> {
        vec![
            self.a.partitions(),
            self.b.partitions(),
            self.c.partitions(),
        ]
    }
}

/// One sample of the members: per member, messages consumed and assignment changes seen.
pub struct Sample {
    at: Instant,
    counts: Vec<usize>,
    changes: Vec<usize>,
}

/// The members' progress, sampled every 20 ms (the resolution of the switch-over times).
pub struct Progress {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Progress {
    pub fn start(members: Arc<Members>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (sp, ss) = (stop.clone(), samples.clone());
        thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(600);
            while !sp.load(Ordering::SeqCst) && Instant::now() < end {
                let consumed = [
                    &members.a.consumed,
                    &members.b.consumed,
                    &members.c.consumed,
                ];
                ss.lock().unwrap().push(Sample {
                    at: Instant::now(),
                    counts: consumed.iter().map(|c| c.count()).collect(),
                    changes: consumed.iter().map(|c| c.assignments_seen()).collect(),
                });
                thread::sleep(Duration::from_millis(20));
            }
        });
        Progress { stop, samples }
    }

    /// Per member, after a switch at `from`: the time from its last message under the old
    /// coordinator (before it lost its partitions) to its first under the new one (after its new
    /// assignment). `None` for a member that got no partitions.
    pub fn switch_over(&self, from: Instant) -> Vec<Option<Duration>> {
        let samples = self.samples.lock().unwrap();
        let s: Vec<&Sample> = samples.iter().filter(|x| x.at >= from).collect();
        (0..3).map(|m| switch_over(&s, m)).collect()
    }
}

pub fn switch_over(s: &[&Sample], m: usize) -> Option<Duration> {
    let base = s.first()?.changes[m];
    let grew = |i: &usize| *i > 0 && s[*i].counts[m] > s[*i - 1].counts[m];
    // The sample in which the member was seen losing its partitions (messages counted in it may
    // already be new ones), and the one in which it had been assigned again (two changes).
    let lost = s.iter().position(|x| x.changes[m] > base)?;
    let assigned = s.iter().position(|x| x.changes[m] >= base + 2)?;
    let last_old = (0..lost).rev().find(grew).unwrap_or(0);
    let first_new = (assigned.max(last_old + 1)..s.len()).find(grew)?;
    Some(s[first_new].at.saturating_duration_since(s[last_old].at))
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Waits until consumption grows by `more` messages.
pub fn wait_more(what: &str, members: &Members, more: usize, timeout: Duration) {
    let want = members.count() + more;
    support::wait_until(what, timeout, || members.count() >= want);
}

/// Waits until the three members own every partition exactly once (kelp's coordinator).
pub fn wait_exact_cover(what: &str, members: &Members, timeout: Duration) {
    support::wait_until(what, timeout, || {
        let owned = members.assignments();
        let all: Vec<i32> = owned.iter().flatten().copied().collect();
        let unique: BTreeSet<i32> = all.iter().copied().collect();
        all.len() == PARTITIONS as usize
            && unique.len() == all.len()
            && owned.iter().all(|o| !o.is_empty())
    });
}

/// How the gateway's coordinator assigned the partitions: (overlapping, missing) partitions.
pub fn cover_faults(owned: &[Vec<i32>]) -> (usize, usize) {
    let mut count: HashMap<i32, usize> = HashMap::new();
    for p in owned.iter().flatten() {
        *count.entry(*p).or_default() += 1;
    }
    let overlapping = count.values().filter(|n| **n > 1).count();
    let missing = (0..PARTITIONS).filter(|p| !count.contains_key(p)).count();
    (overlapping, missing)
}

/// Messages consumed again after a switch: those of `after` (consumed after it) already in
/// `before`. Each must lie at or above the committed offset known before the switch.
pub fn redelivered(
    before: &[Vec<Record>],
    after: &[Vec<Record>],
    committed: &BTreeMap<i32, i64>,
) -> (usize, Vec<String>) {
    let seen: BTreeSet<(i32, i64)> = before
        .iter()
        .flatten()
        .map(|r| (r.partition, r.offset))
        .collect();
    let mut dups = 0;
    let mut outside = Vec::new();
    for r in after.iter().flatten() {
        if seen.contains(&(r.partition, r.offset)) {
            dups += 1;
            let floor = committed.get(&r.partition).copied().unwrap_or(-1);
            if r.offset < floor && outside.len() < 10 {
                outside.push(format!(
                    "p{} offset {} below committed {}",
                    r.partition, r.offset, floor
                ));
            }
        }
    }
    (dups, outside)
}

/// Each member's records from `counts` on (what it consumed after that moment).
pub fn since(records: &[Vec<Record>], counts: &[usize]) -> Vec<Vec<Record>> {
    records
        .iter()
        .zip(counts)
        .map(|(r, n)| r[(*n).min(r.len())..].to_vec())
        .collect()
}
