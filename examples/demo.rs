//! The kelp demo client (run by scripts/demo): through one bootstrap address, create a
//! 3-partition topic, start a 3-member consumer group, produce N messages, consume them all,
//! and check that every acknowledged message was consumed exactly once.
//!
//!   demo --bootstrap 127.0.0.1:9092 [--messages 10000] [--topic T] [--group G] [--timeout-secs 180]
//!
//! Prints progress and a final `produced=N consumed=N duplicates=0 missing=0`; exits 1 on a mismatch.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

const PARTITIONS: i32 = 3;
const MEMBERS: usize = 3;

struct Args {
    bootstrap: String,
    messages: usize,
    topic: String,
    group: String,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut a = Args {
        bootstrap: "127.0.0.1:9092".into(),
        messages: 10_000,
        topic: format!("kelp-demo-{stamp}"),
        group: format!("kelp-demo-group-{stamp}"),
        timeout: Duration::from_secs(180),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bootstrap" => a.bootstrap = val()?,
            "--messages" => a.messages = val()?.parse().map_err(|e| format!("--messages: {e}"))?,
            "--topic" => a.topic = val()?,
            "--group" => a.group = val()?,
            "--timeout-secs" => {
                a.timeout =
                    Duration::from_secs(val()?.parse().map_err(|e| format!("--timeout-secs: {e}"))?)
            }
            "-h" | "--help" => {
                println!("demo --bootstrap HOST:PORT [--messages N] [--topic T] [--group G] [--timeout-secs S]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    c
}

// ---- consumers ---------------------------------------------------------------------------------

#[derive(Default)]
struct MemberState {
    assignment: Vec<i32>,
    rebalances: usize,
    /// (partition, offset, payload)
    records: Vec<(i32, i64, Vec<u8>)>,
}

struct Ctx(Arc<Mutex<MemberState>>);
impl ClientContext for Ctx {}
impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let mut s = self.0.lock().unwrap();
        match r {
            Rebalance::Assign(tpl) => {
                s.assignment = tpl.elements().iter().map(|e| e.partition()).collect();
                s.assignment.sort();
            }
            Rebalance::Revoke(_) => s.assignment.clear(),
            Rebalance::Error(e) => eprintln!("demo: rebalance error: {e}"),
        }
        s.rebalances += 1;
    }
}

struct Member {
    state: Arc<Mutex<MemberState>>,
    thread: thread::JoinHandle<()>,
}

fn start_member(a: &Args, i: usize, stop: Arc<AtomicBool>) -> Result<Member, String> {
    let state = Arc::new(Mutex::new(MemberState::default()));
    let mut cfg = config(&a.bootstrap);
    cfg.set("group.id", &a.group)
        .set("client.id", format!("kelp-demo-{i}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    let consumer: BaseConsumer<Ctx> = cfg
        .create_with_context(Ctx(state.clone()))
        .map_err(|e| format!("consumer: {e}"))?;
    consumer
        .subscribe(&[&a.topic])
        .map_err(|e| format!("subscribe: {e}"))?;
    let s2 = state.clone();
    let thread = thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(3600);
        while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => s2.lock().unwrap().records.push((
                    m.partition(),
                    m.offset(),
                    m.payload().unwrap_or_default().to_vec(),
                )),
                Some(Err(e)) => eprintln!("demo: member {i}: {e}"),
                None => {}
            }
        }
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
        // close (LeaveGroup), bounded
        if consumer.close_queue().is_ok() {
            let t = Instant::now();
            while !consumer.closed() && t.elapsed() < Duration::from_secs(20) {
                consumer.poll(Duration::from_millis(100));
            }
        }
        if consumer.closed() {
            drop(consumer);
        } else {
            eprintln!("demo: member {i} did not close within 20 s");
            std::mem::forget(consumer);
        }
    });
    Ok(Member { state, thread })
}

// ---- producer ----------------------------------------------------------------------------------

struct Delivery {
    acked: AtomicUsize,
    failed: AtomicUsize,
    delivered: Mutex<Vec<(i32, i64, Vec<u8>)>>,
}
impl ClientContext for Delivery {}
impl ProducerContext for Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                self.delivered.lock().unwrap().push((
                    m.partition(),
                    m.offset(),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("demo: delivery failed: {e}");
                }
            }
        }
    }
}

fn run(a: &Args) -> Result<bool, String> {
    let t0 = Instant::now();
    let deadline = t0 + a.timeout;
    println!(
        "demo: bootstrap {} topic {} group {} messages {}",
        a.bootstrap, a.topic, a.group, a.messages
    );

    // 1. topic
    let admin: AdminClient<DefaultClientContext> =
        config(&a.bootstrap).create().map_err(|e| e.to_string())?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let res = futures::executor::block_on(admin.create_topics(
        [&NewTopic::new(
            &a.topic,
            PARTITIONS,
            TopicReplication::Fixed(1),
        )],
        &opts,
    ))
    .map_err(|e| format!("CreateTopics: {e}"))?;
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, c)) => return Err(format!("CreateTopics {t}: {c:?}")),
        }
    }
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(&a.topic), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        if md.topics().iter().any(|t| {
            t.name() == a.topic
                && t.error().is_none()
                && t.partitions().len() == PARTITIONS as usize
        }) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "topic {} never showed {PARTITIONS} partitions",
                a.topic
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
    println!(
        "demo: created topic {} with {PARTITIONS} partitions ({:.1} s)",
        a.topic,
        t0.elapsed().as_secs_f64()
    );

    // 2. the group settles first: one partition per member, unchanged for 2 s
    let stop = Arc::new(AtomicBool::new(false));
    let members: Vec<Member> = (1..=MEMBERS)
        .map(|i| start_member(a, i, stop.clone()))
        .collect::<Result<_, _>>()?;
    let snapshot = || {
        members
            .iter()
            .map(|m| {
                let s = m.state.lock().unwrap();
                (s.assignment.clone(), s.rebalances)
            })
            .collect::<Vec<_>>()
    };
    let mut last = snapshot();
    let mut since = Instant::now();
    loop {
        let now = snapshot();
        if now != last {
            last = now;
            since = Instant::now();
        } else {
            let parts: BTreeSet<i32> = last.iter().flat_map(|(p, _)| p.iter().copied()).collect();
            if last.iter().all(|(p, _)| p.len() == 1)
                && parts.len() == MEMBERS
                && since.elapsed() >= Duration::from_secs(2)
            {
                break;
            }
        }
        if Instant::now() > deadline {
            stop.store(true, Ordering::SeqCst);
            return Err(format!(
                "the group never settled on one partition per member: {last:?}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
    let assigned: Vec<String> = last
        .iter()
        .enumerate()
        .map(|(i, (p, _))| format!("member-{} -> {:?}", i + 1, p))
        .collect();
    println!(
        "demo: group {} stable with {MEMBERS} members: {} ({:.1} s)",
        a.group,
        assigned.join(", "),
        t0.elapsed().as_secs_f64()
    );

    // 3. produce
    let mut pcfg = config(&a.bootstrap);
    pcfg.set("linger.ms", "5")
        .set("acks", "all")
        .set("message.timeout.ms", "60000");
    let producer: BaseProducer<Delivery> = pcfg
        .create_with_context(Delivery {
            acked: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            delivered: Mutex::new(Vec::new()),
        })
        .map_err(|e| e.to_string())?;
    let tp = Instant::now();
    let step = (a.messages / 5).max(1);
    for i in 0..a.messages {
        let key = format!("k{i}");
        let value = format!("{}/{i:07}", a.topic);
        let mut rec = BaseRecord::to(&a.topic).key(&key).payload(&value);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    if Instant::now() > deadline {
                        return Err(format!("produce: {e}"));
                    }
                    rec = r;
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
        producer.poll(Duration::ZERO);
        if (i + 1) % step == 0 {
            println!(
                "demo: sent {}/{} (acked so far {})",
                i + 1,
                a.messages,
                producer.context().acked.load(Ordering::Relaxed)
            );
        }
    }
    let _ = producer.flush(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1)),
    );
    let ctx = producer.context();
    let acked = ctx.acked.load(Ordering::Relaxed);
    let delivered: Vec<(i32, i64, Vec<u8>)> = std::mem::take(&mut *ctx.delivered.lock().unwrap());
    println!(
        "demo: produced={} acked={acked} failed={} in {:.2} s",
        a.messages,
        ctx.failed.load(Ordering::Relaxed),
        tp.elapsed().as_secs_f64()
    );

    // 4. consume until every acknowledged message arrived (or the deadline)
    let count = || {
        members
            .iter()
            .map(|m| m.state.lock().unwrap().records.len())
            .sum::<usize>()
    };
    let mut reported = 0;
    while count() < acked && Instant::now() < deadline {
        let c = count();
        if c >= reported + step {
            reported = c - c % step;
            println!("demo: consumed {c}/{acked}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    // a short grace to catch duplicates that arrive right after the last message, bounded
    let grace = Instant::now();
    while grace.elapsed() < Duration::from_millis(500) {
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let mut per_member = Vec::new();
    let mut all: Vec<(i32, i64, Vec<u8>)> = Vec::new();
    for (i, m) in members.into_iter().enumerate() {
        let _ = m.thread.join();
        let s = m.state.lock().unwrap();
        let read: BTreeSet<i32> = s.records.iter().map(|(p, _, _)| *p).collect();
        per_member.push(format!(
            "member-{}: {} from partitions {:?}",
            i + 1,
            s.records.len(),
            read
        ));
        all.extend(s.records.iter().cloned());
    }
    println!("demo: {}", per_member.join(", "));

    // 5. verify
    let consumed = all.len();
    let distinct: HashSet<(i32, i64)> = all.iter().map(|(p, o, _)| (*p, *o)).collect();
    let duplicates = consumed - distinct.len();
    let got: HashMap<(i32, i64), &Vec<u8>> = all.iter().map(|(p, o, v)| ((*p, *o), v)).collect();
    let mut missing = 0;
    let mut wrong = 0;
    for (p, o, v) in &delivered {
        match got.get(&(*p, *o)) {
            None => missing += 1,
            Some(g) if *g != v => wrong += 1,
            _ => {}
        }
    }
    missing += a.messages - acked;
    println!(
        "produced={} consumed={consumed} duplicates={duplicates} missing={missing}",
        a.messages
    );
    if wrong > 0 {
        println!("demo: {wrong} messages came back with a different payload");
    }
    println!("demo: done in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(consumed == a.messages && duplicates == 0 && missing == 0 && wrong == 0)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo: FAILED: counts do not match");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
