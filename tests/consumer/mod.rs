//! Helpers of tests/consumer_protocol.rs (KIP-848 with real librdkafka members): the kelp flags
//! that make the consumer protocol fast enough to test, members with `group.protocol=consumer`
//! (tests/peers/member.py in child processes), a sampler of their assignments, the group's type as
//! a real admin client lists it, and metric waits. Nothing here asserts what the tests check.
#![allow(dead_code)]

#[path = "mixed.rs"]
pub mod mixed;
#[path = "restart.rs"]
pub mod restart;
pub mod timeline;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::peers::{self, distinct, wall_now, Member};
use crate::support::{self, Kelp};
use timeline::Life;

/// The consumer group session timeout kelp gives members in these tests (Kafka's default: 45 s).
pub const SESSION: Duration = Duration::from_secs(6);
/// The heartbeat interval kelp gives members in these tests (Kafka's default: 5 s).
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// A member killed without leaving: its partitions move within the session timeout, plus one
/// heartbeat of each survivor and a margin for a loaded machine.
pub const TAKEOVER: Duration = Duration::from_millis(6000 + 500 + 3000);

/// The client setting that opts a librdkafka consumer into KIP-848.
pub const KIP848: &[(&str, &str)] = &[("group.protocol", "consumer")];

/// kelp flags for the consumer protocol in tests: short sessions and heartbeats, topics refreshed
/// every second.
pub fn consumer_flags() -> Vec<String> {
    [
        "--group-consumer-session-timeout-ms",
        &SESSION.as_millis().to_string(),
        "--group-consumer-heartbeat-interval-ms",
        &HEARTBEAT.as_millis().to_string(),
        "--topic-metadata-interval-ms",
        "1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One kelp with `--filer` (a prefix of its own), the consumer flags and no initial rebalance
/// delay for classic members, plus `extra`.
pub fn kelp(test: &str, extra: &[&str]) -> Kelp {
    let prefix = format!("/kelp-e2e-kip848/{test}-{}", std::process::id());
    let filer = support::stack().filer.clone();
    let mut args: Vec<String> = vec!["--filer".into(), filer, "--store-prefix".into(), prefix];
    args.extend(["--group-initial-rebalance-delay-ms".into(), "0".into()]);
    args.extend(consumer_flags());
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let k = Kelp::start(&refs);
    eprintln!(
        "kelp {test}: client {} metrics {} log {}",
        k.addr(),
        k.metrics_addr(),
        k.log_path().display()
    );
    k
}

/// A KIP-848 member (asynchronous commits of every message, so its poll loop never waits on the
/// coordinator).
pub fn member(bootstrap: &str, group: &str, name: &str, topic: &str) -> Member {
    Member::start_with(bootstrap, group, name, topic, 0, true, KIP848)
}

/// A classic member with `partition.assignment.strategy` `strategy`.
pub fn classic_member(
    bootstrap: &str,
    group: &str,
    name: &str,
    topic: &str,
    strategy: &str,
) -> Member {
    Member::start_with(
        bootstrap,
        group,
        name,
        topic,
        0,
        true,
        &[("partition.assignment.strategy", strategy)],
    )
}

/// `members` as timelines; `gone` gives the time a member was killed or closed.
pub fn lives(members: &[&Member], gone: &[(usize, f64)]) -> Vec<Life> {
    members
        .iter()
        .enumerate()
        .map(|(i, m)| Life {
            name: m.name.clone(),
            timeline: m.timeline(),
            gone_at: gone.iter().find(|(j, _)| *j == i).map(|(_, t)| *t),
        })
        .collect()
}

/// The members' summaries and the kelp's log tail, for failure messages.
pub fn diag(members: &[&Member], kelp: &Kelp) -> String {
    let log = kelp.log();
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "\nmembers:\n  {}\nkelp log {} (last 25 lines):\n{}",
        members
            .iter()
            .map(|m| format!("{} (log {})", m.summary(), m.log_path().display()))
            .collect::<Vec<_>>()
            .join("\n  "),
        kelp.log_path().display(),
        lines[lines.len().saturating_sub(25)..].join("\n")
    )
}

/// Sample times (wall clock) every `every` until `stop`, bounded by `max`: the instants at which
/// the test later reads every member's assignment off its timeline.
pub fn sample_times(stop: &AtomicBool, every: Duration, max: Duration) -> Vec<f64> {
    let start = Instant::now();
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) && start.elapsed() < max {
        out.push(wall_now());
        thread::sleep(every);
    }
    out
}

/// The group's type ("Consumer", "Classic", ...) and state as a real admin client
/// (confluent-kafka's `list_consumer_groups`, ListGroups v5) lists it; None when not listed.
pub fn group_type(bootstrap: &str, group: &str) -> Option<(String, String)> {
    let out = support::python_ok(
        r#"
import sys
from confluent_kafka.admin import AdminClient
a = AdminClient({"bootstrap.servers": sys.argv[1], "broker.address.family": "v4"})
r = a.list_consumer_groups(request_timeout=10).result()
for g in r.valid:
    if g.group_id == sys.argv[2]:
        print(g.type.name, g.state.name)
"#,
        &[bootstrap, group],
    );
    let line = out.lines().next()?.trim().to_string();
    let (t, s) = line.split_once(' ')?;
    Some((t.to_string(), s.to_string()))
}

/// Waits until `group_type` answers `want` (e.g. "CONSUMER"); returns the last answer.
pub fn wait_group_type(
    bootstrap: &str,
    group: &str,
    want: &str,
    timeout: Duration,
) -> Option<(String, String)> {
    let start = Instant::now();
    loop {
        let got = group_type(bootstrap, group);
        if got.as_ref().is_some_and(|(t, _)| t == want) || start.elapsed() >= timeout {
            return got;
        }
        thread::sleep(Duration::from_millis(300));
    }
}

/// The group's KIP-848 series on one /metrics body: (group epoch, target assignment epoch, lowest
/// member epoch, members unreconciled, partitions pending revocation, partitions unreleased).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reconciliation {
    pub group_epoch: Option<f64>,
    pub target_epoch: Option<f64>,
    pub member_epoch_min: Option<f64>,
    pub unreconciled: Option<f64>,
    pub pending_revocation: Option<f64>,
    pub unreleased: Option<f64>,
}

impl Reconciliation {
    pub fn of(kelp: &Kelp, group: &str) -> Reconciliation {
        let body = kelp.http_get("/metrics").1;
        let m = |name: &str| peers::metric_in(&body, name, &[("group", group)]);
        Reconciliation {
            group_epoch: peers::metric_in(
                &body,
                "kelp_group_generation",
                &[("group", group), ("protocol", "consumer")],
            ),
            target_epoch: m("kelp_group_target_assignment_epoch"),
            member_epoch_min: m("kelp_group_member_epoch_min"),
            unreconciled: m("kelp_group_members_unreconciled"),
            pending_revocation: m("kelp_group_partitions_pending_revocation"),
            unreleased: m("kelp_group_partitions_unreleased"),
        }
    }

    /// Every member at the target epoch, which is the group epoch, nothing left to move.
    pub fn settled(&self) -> bool {
        self.group_epoch.is_some()
            && self.group_epoch == self.target_epoch
            && self.target_epoch == self.member_epoch_min
            && self.unreconciled == Some(0.0)
            && self.pending_revocation == Some(0.0)
            && self.unreleased == Some(0.0)
    }
}

/// Waits until the group's reconciliation series say it is settled; returns the last reading.
pub fn wait_settled(kelp: &Kelp, group: &str, timeout: Duration) -> Reconciliation {
    let start = Instant::now();
    loop {
        let r = Reconciliation::of(kelp, group);
        if r.settled() || start.elapsed() >= timeout {
            return r;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// `kelp_consumer_heartbeats_total{error}` summed over the errors given (all when empty).
pub fn heartbeats(kelp: &Kelp, errors: &[&str]) -> f64 {
    let body = kelp.http_get("/metrics").1;
    body.lines()
        .filter(|l| l.starts_with("kelp_consumer_heartbeats_total{"))
        .filter(|l| {
            errors.is_empty() || errors.iter().any(|e| l.contains(&format!("error=\"{e}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// Waits until `members` own `0..partitions` exactly once (each at least one); how long it took.
pub fn cover(
    what: &str,
    partitions: i32,
    timeout: Duration,
    members: &[&Member],
    diag: &dyn Fn() -> String,
) -> Duration {
    let fs: Vec<Box<dyn Fn() -> Vec<i32> + '_>> = members
        .iter()
        .map(|m| Box::new(move || m.partitions()) as Box<dyn Fn() -> Vec<i32>>)
        .collect();
    let refs: Vec<&dyn Fn() -> Vec<i32>> = fs.iter().map(|f| f.as_ref()).collect();
    peers::wait_exact_cover(what, partitions, timeout, &refs, diag)
}

/// Every (partition, offset) consumed by `members`.
pub fn consumed(members: &[&Member]) -> HashSet<(i32, i64)> {
    distinct(&members.iter().flat_map(|m| m.records()).collect::<Vec<_>>())
}

pub fn delivered(d: &[support::Delivered]) -> HashSet<(i32, i64)> {
    d.iter().map(|d| (d.partition, d.offset)).collect()
}
