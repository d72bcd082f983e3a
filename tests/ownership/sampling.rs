//! Sampling for tests/faults_ownership.rs: every 250 ms, each member's assignment and which kelps
//! expose a group's per-group series (only its coordinator may); what the samples show (partitions
//! owned twice and for how long, two coordinators at once, a readable timeline); and the waits,
//! member start and lease report the tests share. It measures and reports; the tests assert.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::offsets::{lost_commits, offset_fetch};
use crate::ownership;
use crate::peers::{self, exact_cover, has_group_series, Cluster, Member};
use crate::support;

pub const PARTITIONS: i32 = 6;
/// How often every invariant is sampled.
pub const EVERY: Duration = Duration::from_millis(250);
/// A partition owned by two live members this long is a violation (report lag stays below it).
pub const DOUBLE_LIMIT: Duration = Duration::from_secs(3);
/// The members' session timeout (tests/peers/member.py runs with session.timeout.ms=6000), then
/// one rebalance.
pub const SESSION_PLUS_REBALANCE: Duration = Duration::from_secs(6 + 20);

// ------------------------------------------------------------------------------------------------
// double ownership

/// Longest stretches during which one partition was owned by two or more live members, from
/// samples (every 250 ms). A stretch runs from the first sample that saw the double ownership to
/// the first that did not.
#[derive(Debug, Default, Clone)]
pub struct DoubleOwnership {
    /// Per partition owned twice now: since when.
    since: BTreeMap<i32, Instant>,
    pub longest: Duration,
    /// The partition and the owners of the longest stretch.
    pub longest_of: Option<(i32, Vec<usize>)>,
    pub samples: usize,
    pub double_samples: usize,
    owners_now: BTreeMap<i32, Vec<usize>>,
}

impl DoubleOwnership {
    /// One sample: `owned[i]` is member i's assignment (only live members given).
    pub fn observe(&mut self, now: Instant, owned: &[(usize, Vec<i32>)]) {
        let mut owners: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (m, parts) in owned {
            for p in parts {
                owners.entry(*p).or_default().push(*m);
            }
        }
        let double: BTreeSet<i32> = owners
            .iter()
            .filter(|(_, o)| o.len() > 1)
            .map(|(p, _)| *p)
            .collect();
        self.samples += 1;
        if !double.is_empty() {
            self.double_samples += 1;
        }
        for p in &double {
            self.since.entry(*p).or_insert(now);
            self.owners_now.insert(*p, owners[p].clone());
        }
        let ended: Vec<i32> = self
            .since
            .keys()
            .filter(|p| !double.contains(p))
            .copied()
            .collect();
        for p in ended {
            let from = self.since.remove(&p).unwrap();
            self.account(p, now - from);
        }
        // Open stretches count for what they lasted so far.
        for (p, from) in self.since.clone() {
            self.account(p, now - from);
        }
    }

    fn account(&mut self, p: i32, d: Duration) {
        if d > self.longest {
            self.longest = d;
            self.longest_of = Some((p, self.owners_now.get(&p).cloned().unwrap_or_default()));
        }
    }
}

/// The tracker on made-up samples: the figure the tests print must be right.
#[test]
fn double_ownership_stretches() {
    let t = Instant::now();
    let at = |ms: u64| t + Duration::from_millis(ms);
    let mut d = DoubleOwnership::default();
    d.observe(at(0), &[(0, vec![0, 1]), (1, vec![2])]);
    assert_eq!(d.longest, Duration::ZERO);
    // Partition 1 owned by members 0 and 1 from 250 ms to 1250 ms; partition 2 by 1 and 2 from
    // 500 ms, still at the last sample (1500 ms).
    d.observe(at(250), &[(0, vec![0, 1]), (1, vec![1, 2])]);
    d.observe(at(500), &[(0, vec![0, 1]), (1, vec![1, 2]), (2, vec![2])]);
    d.observe(at(1250), &[(0, vec![0]), (1, vec![1, 2]), (2, vec![2])]);
    assert_eq!(d.longest, Duration::from_millis(1000));
    assert_eq!(d.longest_of, Some((1, vec![0, 1])));
    d.observe(at(1750), &[(0, vec![0]), (1, vec![1, 2]), (2, vec![2])]);
    assert_eq!(d.longest, Duration::from_millis(1250));
    assert_eq!(d.longest_of, Some((2, vec![1, 2])));
    assert_eq!((d.samples, d.double_samples), (5, 4));
}

// ------------------------------------------------------------------------------------------------
// sampling

/// One sample: each member's assignment, which kelps expose the group's per-group series, and
/// which were silent (did not answer /metrics in time, or were left out as paused).
pub struct Sample {
    pub at: Instant,
    pub owned: Vec<(usize, Vec<i32>)>,
    pub exposing: Vec<usize>,
    pub silent: Vec<usize>,
    /// The group's state and generation on each exposing kelp, e.g. "Stable/4".
    pub states: Vec<String>,
}

/// Samples every 250 ms until `stop` (bounded by `max`): every member's assignment and every kelp's
/// /metrics (kelps in `paused` are skipped: a stopped process accepts and answers nothing).
pub fn sample(
    stop: &AtomicBool,
    max: Duration,
    members: &[&Member],
    kelps: &[(usize, String)],
    paused: &Mutex<BTreeSet<usize>>,
    group: &str,
) -> Vec<Sample> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut tick = start;
    while !stop.load(Ordering::SeqCst) && start.elapsed() < max {
        let at = Instant::now();
        let owned = members
            .iter()
            .enumerate()
            .map(|(i, m)| (i, m.partitions()))
            .collect();
        let skip = paused.lock().unwrap().clone();
        let (mut exposing, mut silent, mut states) = (Vec::new(), Vec::new(), Vec::new());
        for (i, addr) in kelps {
            if skip.contains(i) {
                silent.push(*i);
                continue;
            }
            match ownership::try_metrics(addr, Duration::from_secs(1)) {
                Some(body) if has_group_series(&body, group) => {
                    exposing.push(*i);
                    states.push(group_state(&body, group));
                }
                Some(_) => {}
                None => silent.push(*i),
            }
        }
        out.push(Sample {
            at,
            owned,
            exposing,
            silent,
            states,
        });
        tick = (tick + EVERY).max(Instant::now());
        ownership::sleep_until(tick);
    }
    out
}

/// Sets its flag when dropped, so a panic in a test's scope body also ends its sampler thread
/// (`thread::scope` waits for it).
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// "State/generation" of `group` on a /metrics body.
pub fn group_state(body: &str, group: &str) -> String {
    let state = [
        "Empty",
        "PreparingRebalance",
        "CompletingRebalance",
        "Stable",
        "Dead",
    ]
    .into_iter()
    .find(|s| {
        peers::metric_in(body, "kelp_group_state", &[("group", group), ("state", s)]) == Some(1.0)
    })
    .unwrap_or("?");
    let generation = peers::metric_in(body, "kelp_group_generation", &[("group", group)])
        .map_or("?".to_string(), |g| (g as i64).to_string());
    format!("{state}/{generation}")
}

/// Double ownership of partitions over the samples taken at or after `from`.
pub fn double_ownership(samples: &[Sample], from: Instant) -> DoubleOwnership {
    let mut d = DoubleOwnership::default();
    for s in samples.iter().filter(|s| s.at >= from) {
        d.observe(s.at, &s.owned);
    }
    d
}

/// Samples at or after `from` in which two or more kelps exposed the group's series:
/// (seconds after `t0`, the kelps).
pub fn two_coordinators(
    samples: &[Sample],
    from: Instant,
    t0: Instant,
) -> Vec<(String, Vec<usize>)> {
    samples
        .iter()
        .filter(|s| s.at >= from && s.exposing.len() > 1)
        .map(|s| {
            (
                format!("{:.2}s", (s.at - t0).as_secs_f64()),
                s.exposing.clone(),
            )
        })
        .collect()
}

/// Who exposed the group's series, as stretches: "from-to s [kelps] [state/generation]" (times
/// after `t0`), with the kelps that did not answer /metrics (or were paused) as "silent [kelps]".
pub fn exposure_timeline(samples: &[Sample], t0: Instant) -> String {
    let key = |s: &Sample| {
        let mut k = format!("{:?} {:?}", s.exposing, s.states);
        if !s.silent.is_empty() {
            k.push_str(&format!(" silent {:?}", s.silent));
        }
        k
    };
    let mut out: Vec<String> = Vec::new();
    let mut cur: Option<(f64, f64, String)> = None;
    for s in samples {
        let (t, k) = ((s.at - t0).as_secs_f64(), key(s));
        match &mut cur {
            Some((_, to, c)) if *c == k => *to = t,
            _ => {
                if let Some((a, b, c)) = cur.take() {
                    out.push(format!("{a:.1}-{b:.1}s {c}"));
                }
                cur = Some((t, t, k));
            }
        }
    }
    if let Some((a, b, c)) = cur {
        out.push(format!("{a:.1}-{b:.1}s {c}"));
    }
    out.join(", ")
}

/// Waits (without panicking) until the members' assignments cover every partition exactly once.
pub fn wait_cover(members: &[&Member], timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let owned: Vec<Vec<i32>> = members.iter().map(|m| m.partitions()).collect();
        if exact_cover(&owned, PARTITIONS) {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits (without panicking) until OffsetFetch through `bootstrap` answers at least `want`.
pub fn wait_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    want: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, String> {
    let start = Instant::now();
    let mut last = Err("no answer yet".to_string());
    while start.elapsed() < timeout {
        last = offset_fetch(bootstrap, group, topic, PARTITIONS, Duration::from_secs(3));
        if let Ok(got) = &last {
            if lost_commits(want, got).is_empty() {
                return Ok(got.clone());
            }
        }
        thread::sleep(Duration::from_millis(300));
    }
    Err(format!("last answer {last:?}, want at least {want:?}"))
}

/// Prints every kelp's lease metrics and returns the kelps that served a group without holding
/// its lease (`kelp_lease_unleased_serving_seconds_total` above 0; a build without leases has no
/// such series): (kelp, seconds).
pub fn leases(test: &str, kelps: &[(usize, String)]) -> Vec<(usize, f64)> {
    let mut unleased = Vec::new();
    for (i, addr) in kelps {
        let Some(body) = ownership::try_metrics(addr, Duration::from_secs(5)) else {
            eprintln!("{test}: kelp {i}: /metrics did not answer");
            continue;
        };
        eprintln!(
            "{test}: kelp {i} leases: {}",
            ownership::lease_summary(&body)
        );
        if let Some(v) = ownership::metric_sum(&body, ownership::UNLEASED) {
            if v > 0.0 {
                unleased.push((*i, v));
            }
        }
    }
    unleased
}

pub fn summaries(members: &[&Member]) -> Vec<String> {
    members.iter().map(|m| m.summary()).collect()
}

/// Starts one member per kelp address and waits until they own every partition once.
pub fn members_on(c: &Cluster, kelps: &[usize], group: &str, topic: &str) -> Vec<Member> {
    let members: Vec<Member> = kelps
        .iter()
        .map(|i| Member::start_async(&c.addr(*i), group, &format!("m{i}"), topic, 5))
        .collect();
    let refs: Vec<&Member> = members.iter().collect();
    if wait_cover(&refs, Duration::from_secs(60)).is_none() {
        panic!(
            "{} members on {} kelps did not own every partition once within 60 s: {:?}{}",
            members.len(),
            kelps.len(),
            summaries(&refs),
            c.log_tails(20)
        );
    }
    members
}

pub fn wait_acked(members: &[&Member], n: usize, timeout: Duration) {
    support::wait_until(&format!("{n} acknowledged commits"), timeout, || {
        members.iter().map(|m| m.n_acked()).sum::<usize>() >= n
    });
}

pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill {sig} {pid}: {st}");
}

/// How the traffic of a fault test ended: the highest acknowledged commits, OffsetFetch through
/// `via` right after, OffsetFetch once everything produced is committed (or why not within the
/// drain time), and the offsets watched while the fault lasted.
pub struct Wound {
    pub acked: BTreeMap<i32, i64>,
    pub now: Result<BTreeMap<i32, i64>, String>,
    pub drained: Result<BTreeMap<i32, i64>, String>,
    pub offsets: super::offsets::OffsetWatch,
}

/// Stops a fault test's trickle producer and offset watcher in the order every test needs:
/// acknowledged commits and OffsetFetch first (what must not be lost), then the producer, then a
/// wait (at most `drain`) until everything produced is committed, then the watcher.
#[allow(clippy::too_many_arguments)]
pub fn wind_down(
    members: &[&Member],
    via: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    producer: (&AtomicBool, thread::JoinHandle<Vec<support::Delivered>>),
    watcher: (&AtomicBool, thread::JoinHandle<super::offsets::OffsetWatch>),
    drain: Duration,
) -> Wound {
    let acked = peers::acked_max(members);
    let now = offset_fetch(via, group, topic, partitions, Duration::from_secs(10));
    producer.0.store(true, Ordering::SeqCst);
    let delivered = producer.1.join().expect("producer");
    let drained = wait_committed(via, group, topic, &peers::ends(&delivered), drain);
    watcher.0.store(true, Ordering::SeqCst);
    let offsets = watcher.1.join().expect("offset watcher");
    Wound {
        acked,
        now,
        drained,
        offsets,
    }
}
