//! Helpers of tests/e2e_durable.rs: metrics scraped from kelp, OffsetFetch through librdkafka, a
//! child process whose stdout is collected, a commit-only librdkafka client, and the SIGSTOP guard.

pub mod startup;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::support::{self, Kelp};

/// A metric sample `name{...}` whose labels include every `label="value"` given.
pub fn metric(kelp: &Kelp, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (_, body) = kelp.http_get("/metrics");
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

pub fn generation(kelp: &Kelp, group: &str) -> Option<i64> {
    metric(kelp, "kelp_group_generation", &[("group", group)]).map(|v| v as i64)
}

/// A child process whose stdout lines are collected; SIGKILLed on drop.
pub struct Script {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Script {
    pub fn start(script: &str, args: &[&str]) -> Script {
        let mut child = Command::new(support::python_bin())
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (out, sink) = (child.stdout.take().expect("stdout"), lines.clone());
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Script { child, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Per partition: the last acknowledged commit and the last attempted one; plus the counts.
pub fn commits(lines: &[String]) -> (BTreeMap<i32, i64>, BTreeMap<i32, i64>, usize, usize) {
    let (mut acked, mut tried, mut n_acked, mut n_failed) =
        (BTreeMap::new(), BTreeMap::new(), 0, 0);
    for l in lines {
        let f: Vec<&str> = l.splitn(4, ' ').collect();
        let (Some(p), Some(o)) = (
            f.get(1).and_then(|p| p.parse::<i32>().ok()),
            f.get(2).and_then(|o| o.parse::<i64>().ok()),
        ) else {
            continue;
        };
        match f[0] {
            "trying" => {
                tried.insert(p, o);
            }
            "acked" => {
                acked.insert(p, o);
                n_acked += 1;
            }
            _ => n_failed += 1,
        }
    }
    (acked, tried, n_acked, n_failed)
}

/// SIGCONTs the process when dropped, so a failing test never leaves the filer stopped.
pub struct Stopped(u32);

impl Stopped {
    pub fn new(pid: u32) -> Stopped {
        signal("-STOP", pid);
        let stopped = Stopped(pid);
        support::wait_until(
            &format!("pid {pid} stopped"),
            Duration::from_secs(10),
            || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? == "T"))
                    .unwrap_or(false)
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

pub fn signal(sig: &str, pid: u32) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill {sig} {pid}");
}

/// One CreateTopics through `bootstrap`; an existing topic is fine.
pub fn try_create_topic(bootstrap: &str, name: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .create()
        .map_err(|e| e.to_string())?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts))
        .map_err(|e| e.to_string())?;
    match results.into_iter().next() {
        Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(()),
        Some(Err((_, code))) => Err(format!("{code:?}")),
        None => Err("no result".into()),
    }
}

/// A librdkafka client that only commits (explicit offsets, no assignment: a simple group), so
/// no forwarded Fetch shares its connection with the commits.
pub fn committer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

pub fn commit_offset(c: &BaseConsumer, topic: &str, offset: i64) -> Result<(), String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .expect("partition");
    c.commit(&tpl, CommitMode::Sync).map_err(|e| e.to_string())
}

/// OffsetCommits this kelp answered COORDINATOR_NOT_AVAILABLE (the test's kelp serves one group).
/// Counted from kelp's answers, not the group's series: with the filer gone the group's lease
/// ends and its series go with it (they exist only where the group is coordinated).
pub fn not_available(kelp: &Kelp, _group: &str) -> f64 {
    metric(
        kelp,
        "kelp_request_errors_total",
        &[
            ("api", "OffsetCommit"),
            ("error", "coordinator_not_available"),
        ],
    )
    .unwrap_or(0.0)
}
