//! Helpers of tests/e2e_peers.rs: a set of kelps sharing groups through their peer ports (one
//! filer prefix, one `--peers` list), metrics scraped from them, a killable committing member in a
//! child process (tests/peers/member.py), OffsetFetch through librdkafka and exact-cover waits.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::{self, Kelp};

// ------------------------------------------------------------------------------------------------
// metrics

/// A metric sample `name{...}` whose labels include every `label="value"` given.
pub fn metric(kelp: &Kelp, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_in(&kelp.http_get("/metrics").1, name, labels)
}

pub fn metric_in(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Whether any per-group series of `group` is on this /metrics body.
pub fn has_group_series(body: &str, group: &str) -> bool {
    let label = format!("group=\"{group}\"");
    body.lines()
        .any(|l| l.starts_with("kelp_group_") && l.contains(&label))
}

// ------------------------------------------------------------------------------------------------
// the kelps

/// One kelp of a peer set: its peer address and its process (None before it is started).
pub struct Node {
    pub peer: String,
    pub kelp: Option<Kelp>,
    pub up: bool,
}

/// Kelps that list each other in `--peers` and share one filer prefix.
pub struct Cluster {
    pub nodes: Vec<Node>,
    peers: String,
    prefix: String,
    /// `--filer` of every kelp: the stack's filer unless `with_filer` set another.
    filer: Option<String>,
}

impl Cluster {
    /// `n` peer addresses picked up front; no kelp started yet.
    pub fn new(test: &str, n: usize) -> Cluster {
        let nodes: Vec<Node> = (0..n)
            .map(|_| Node {
                peer: format!("127.0.0.1:{}", support::free_port()),
                kelp: None,
                up: false,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| n.peer.clone())
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            nodes,
            peers,
            prefix: format!("/kelp-e2e-peers/{test}-{}", std::process::id()),
            filer: None,
        }
    }

    /// The kelps started from now on use `filer` ("http://host:port") as `--filer` instead of the
    /// stack's own filer (its gRPC lock service then at its port + 10000).
    pub fn with_filer(mut self, filer: &str) -> Cluster {
        self.filer = Some(filer.to_string());
        self
    }

    /// `n` kelps, all started and seeing each other live (within 30 s).
    pub fn running(test: &str, n: usize) -> Cluster {
        let mut c = Cluster::new(test, n);
        for i in 0..n {
            c.start(i);
        }
        c.wait_peers_live(n, Duration::from_secs(30));
        c
    }

    /// Starts kelp `i` (client and metrics ports picked by `Kelp::start`).
    pub fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    /// Starts kelp `i` with `extra` arguments after the mesh's own.
    pub fn start_with(&mut self, i: usize, extra: &[&str]) {
        self.launch(i, extra, None);
    }

    /// Starts kelp `i` as user `uid` (`Kelp::start_as`: root only), so that a test can match its
    /// own packets by owner.
    pub fn start_as(&mut self, i: usize, uid: u32, extra: &[&str]) {
        self.launch(i, extra, Some(uid));
    }

    fn launch(&mut self, i: usize, extra: &[&str], uid: Option<u32>) {
        assert!(self.nodes[i].kelp.is_none(), "kelp {i} was started before");
        let filer = self
            .filer
            .clone()
            .unwrap_or_else(|| support::stack().filer.clone());
        let me = self.nodes[i].peer.clone();
        let mut args = vec![
            "--filer",
            &filer,
            "--store-prefix",
            &self.prefix,
            "--group-initial-rebalance-delay-ms",
            "0",
            "--peer-listen",
            &me,
            "--peer-advertised",
            &me,
            "--peers",
            &self.peers,
            "--peer-probe-interval-ms",
            "500",
        ];
        args.extend_from_slice(extra);
        let kelp = match uid {
            None => Kelp::start(&args),
            Some(uid) => Kelp::start_as(uid, &args),
        };
        eprintln!(
            "kelp {i}: client {} metrics {} peer {me} log {}",
            kelp.addr(),
            kelp.metrics_addr(),
            kelp.log_path().display()
        );
        self.nodes[i].kelp = Some(kelp);
        self.nodes[i].up = true;
    }

    pub fn kelp(&self, i: usize) -> &Kelp {
        self.nodes[i].kelp.as_ref().expect("kelp started")
    }

    pub fn addr(&self, i: usize) -> String {
        self.kelp(i).addr().to_string()
    }

    /// kill -9 kelp `i`.
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kelp.as_mut().expect("kelp started").kill9();
        self.nodes[i].up = false;
    }

    /// The owner kelp::peers::hash computes for `group` among the kelps `among` (their peer
    /// addresses exactly as listed in `--peers`).
    pub fn hash_owner(&self, group: &str, among: &[usize]) -> usize {
        let peers: Vec<String> = among.iter().map(|i| self.nodes[*i].peer.clone()).collect();
        let owner = kelp::peers::hash::group_owner(&peers, group, kelp::lease::DEFAULT_BUCKETS)
            .expect("a peer");
        self.nodes
            .iter()
            .position(|n| n.peer == owner)
            .expect("a listed peer")
    }

    /// Indices of the kelps running now.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].up)
            .collect()
    }

    /// `kelp_peers{state="live"}` of every running kelp, by index.
    pub fn peers_live(&self) -> BTreeMap<usize, Option<f64>> {
        self.live()
            .into_iter()
            .map(|i| (i, metric(self.kelp(i), "kelp_peers", &[("state", "live")])))
            .collect()
    }

    /// Waits until every running kelp counts `n` live peers (itself included).
    pub fn wait_peers_live(&self, n: usize, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let seen = self.peers_live();
            if seen.values().all(|v| *v == Some(n as f64)) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "kelp_peers{{state=\"live\"}} per kelp {seen:?}, want {n} everywhere within {timeout:?}{}",
                self.log_tails(15)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The running kelps that expose per-group series of `group`.
    pub fn exposing(&self, group: &str) -> Vec<usize> {
        self.live()
            .into_iter()
            .filter(|i| has_group_series(&self.kelp(*i).http_get("/metrics").1, group))
            .collect()
    }

    /// Waits until exactly one running kelp exposes `group`'s series, with `members` members and
    /// Stable, and that stays so for `hold` (so an owner that is about to hand the group over is
    /// not taken for the owner); returns it and its generation.
    pub fn wait_owner(
        &self,
        group: &str,
        members: usize,
        hold: Duration,
        timeout: Duration,
    ) -> (usize, i64) {
        let start = Instant::now();
        let mut since: Option<(Instant, usize, i64)> = None;
        let mut last: String;
        loop {
            let bodies: Vec<(usize, String)> = self
                .live()
                .into_iter()
                .map(|i| (i, self.kelp(i).http_get("/metrics").1))
                .collect();
            let owners: Vec<&(usize, String)> = bodies
                .iter()
                .filter(|(_, b)| has_group_series(b, group))
                .collect();
            let now_ok = match owners.as_slice() {
                [(i, b)] => {
                    let m = metric_in(b, "kelp_group_members", &[("group", group)]);
                    let stable = metric_in(
                        b,
                        "kelp_group_state",
                        &[("group", group), ("state", "Stable")],
                    );
                    let generation = metric_in(b, "kelp_group_generation", &[("group", group)]);
                    last = format!(
                        "kelp {i} alone: members {m:?}, Stable {stable:?}, generation {generation:?}"
                    );
                    (m == Some(members as f64) && stable == Some(1.0))
                        .then(|| (*i, generation.unwrap_or(-1.0) as i64))
                }
                many => {
                    last = format!(
                        "series on kelps {:?}",
                        many.iter().map(|(i, _)| *i).collect::<Vec<_>>()
                    );
                    None
                }
            };
            match (now_ok, since) {
                (Some((i, g)), Some((t, j, h))) if i == j && g == h => {
                    if t.elapsed() >= hold {
                        return (i, g);
                    }
                }
                (Some((i, g)), _) => since = Some((Instant::now(), i, g)),
                (None, _) => since = None,
            }
            assert!(
                start.elapsed() < timeout,
                "no single owner of {group} with {members} members, Stable, for {hold:?} within \
                 {timeout:?} (last: {last}){}",
                self.log_tails(20)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `n` lines of every kelp's log, for failure messages.
    pub fn log_tails(&self, n: usize) -> String {
        let mut s = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(k) = &node.kelp {
                let log = k.log();
                let lines: Vec<&str> = log.lines().collect();
                s.push_str(&format!(
                    "\n--- kelp {i} ({}, {}) {}:\n{}",
                    node.peer,
                    if node.up { "up" } else { "killed" },
                    k.log_path().display(),
                    lines[lines.len().saturating_sub(n)..].join("\n")
                ));
            }
        }
        s
    }

    /// No kelp of the set (killed ones included) logged a panic.
    pub fn assert_no_panics(&self) {
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(k) = &node.kelp {
                let log = k.log();
                let hits: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
                assert!(
                    hits.is_empty(),
                    "kelp {i} ({}) panicked:\n{}",
                    k.log_path().display(),
                    hits.join("\n")
                );
            }
        }
    }

    /// A per-kelp summary of the ownership-move counters, for the test output.
    pub fn moves(&self) -> String {
        self.live()
            .into_iter()
            .map(|i| {
                let k = self.kelp(i);
                let m = |d| {
                    metric(k, "kelp_group_ownership_moves_total", &[("direction", d)])
                        .unwrap_or(0.0)
                };
                format!("kelp {i}: in {} out {}", m("in"), m("out"))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

// ------------------------------------------------------------------------------------------------
// a killable member that commits every message and reports each commit

#[derive(Debug, Default)]
pub struct MemberState {
    /// Current assignment, sorted.
    pub assignment: Vec<i32>,
    pub assignments: usize,
    /// When each assignment line arrived, and the assignment.
    pub history: Vec<(Instant, Vec<i32>)>,
    /// Consumed (partition, offset), in order.
    pub records: Vec<(i32, i64)>,
    /// Per partition: highest acknowledged and highest attempted commit.
    pub acked: BTreeMap<i32, i64>,
    pub tried: BTreeMap<i32, i64>,
    pub n_acked: usize,
    /// Times librdkafka declared its assignment lost (session timed out on the client side).
    pub lost: usize,
    pub failed: Vec<String>,
    pub errors: Vec<String>,
    pub closed: bool,
    /// Each assignment as member.py printed it, stamped with the member's own wall clock (unix
    /// seconds, `--stamp`): the order of events across members without the report lag.
    pub timeline: Vec<(f64, Vec<i32>)>,
    /// member.py's wall clock when it subscribed, and at its first consumed message.
    pub subscribed_at: Option<f64>,
    pub first_msg_at: Option<f64>,
    /// member.py's wall clock when its poll loop ended after SIGTERM (it consumes nothing after).
    pub closing_at: Option<f64>,
}

/// tests/peers/member.py in a child process, attached to one kelp.
pub struct Member {
    pub name: String,
    state: Arc<Mutex<MemberState>>,
    child: Option<Child>,
    reader: Option<JoinHandle<()>>,
    log: std::path::PathBuf,
}

impl Member {
    pub fn start(bootstrap: &str, group: &str, name: &str, topic: &str, delay_ms: u32) -> Member {
        Member::start_committing(bootstrap, group, name, topic, delay_ms, false)
    }

    /// A member that commits asynchronously (acknowledgements reported from librdkafka's commit
    /// callback), so its poll loop never blocks on a coordinator it cannot reach and its
    /// reported assignment follows librdkafka's (a lost session is reported when it happens).
    pub fn start_async(
        bootstrap: &str,
        group: &str,
        name: &str,
        topic: &str,
        delay_ms: u32,
    ) -> Member {
        Member::start_committing(bootstrap, group, name, topic, delay_ms, true)
    }

    fn start_committing(
        bootstrap: &str,
        group: &str,
        name: &str,
        topic: &str,
        delay_ms: u32,
        async_commit: bool,
    ) -> Member {
        Member::start_with(bootstrap, group, name, topic, delay_ms, async_commit, &[])
    }

    /// A member with extra librdkafka `settings` (`--set name=value`), e.g.
    /// `("group.protocol", "consumer")` for a KIP-848 member: member.py then leaves the session
    /// timeout and heartbeat interval to the coordinator (librdkafka refuses them with that
    /// protocol); otherwise it runs with session.timeout.ms=6000 and heartbeat.interval.ms=500.
    pub fn start_with(
        bootstrap: &str,
        group: &str,
        name: &str,
        topic: &str,
        delay_ms: u32,
        async_commit: bool,
        settings: &[(&str, &str)],
    ) -> Member {
        let log = support::scratch_dir().join(format!("member-{group}-{name}.log"));
        let errlog = std::fs::File::create(&log).expect("member log");
        let mut cmd = Command::new(support::python_bin());
        cmd.arg(format!("{}/tests/peers/member.py", support::REPO));
        // KELP_TEST_MEMBER_DEBUG=cgrp (librdkafka `debug` contexts) logs the client's group
        // protocol to the member's log in the scratch dir.
        if let Ok(debug) = std::env::var("KELP_TEST_MEMBER_DEBUG") {
            cmd.args(["--set", &format!("debug={debug}")]);
        }
        if async_commit {
            cmd.arg("--async-commit");
        }
        let mut child = cmd
            .args([
                "--bootstrap",
                bootstrap,
                "--group",
                group,
                "--client-id",
                name,
            ])
            .args(["--topic", topic, "--delay-ms", &delay_ms.to_string()])
            .arg("--stamp")
            .args(
                settings
                    .iter()
                    .flat_map(|(k, v)| ["--set".to_string(), format!("{k}={v}")]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(errlog)
            .spawn()
            .expect("spawn member.py");
        let state = Arc::new(Mutex::new(MemberState::default()));
        let (out, sink) = (child.stdout.take().expect("stdout"), state.clone());
        let reader = thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                parse(&sink, &line);
            }
        });
        Member {
            name: name.to_string(),
            state,
            child: Some(child),
            reader: Some(reader),
            log,
        }
    }

    pub fn partitions(&self) -> Vec<i32> {
        self.state.lock().unwrap().assignment.clone()
    }
    pub fn records(&self) -> Vec<(i32, i64)> {
        self.state.lock().unwrap().records.clone()
    }
    pub fn n_records(&self) -> usize {
        self.state.lock().unwrap().records.len()
    }
    pub fn acked(&self) -> BTreeMap<i32, i64> {
        self.state.lock().unwrap().acked.clone()
    }
    pub fn n_acked(&self) -> usize {
        self.state.lock().unwrap().n_acked
    }
    /// How often librdkafka gave its assignment up as lost (its own session timeout).
    pub fn lost(&self) -> usize {
        self.state.lock().unwrap().lost
    }
    pub fn summary(&self) -> String {
        let s = self.state.lock().unwrap();
        format!(
            "{}: owns {:?} ({} assignments, {} lost), {} records, {} commits acked, {} failed{}, errors {:?}",
            self.name,
            s.assignment,
            s.assignments,
            s.lost,
            s.records.len(),
            s.n_acked,
            s.failed.len(),
            s.failed
                .last()
                .map(|f| format!(" (last: {f})"))
                .unwrap_or_default(),
            s.errors.iter().rev().take(3).collect::<Vec<_>>()
        )
    }
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// The assignments received since `t`, with their time after `t` in seconds.
    pub fn history_since(&self, t: Instant) -> Vec<(String, Vec<i32>)> {
        self.state
            .lock()
            .unwrap()
            .history
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(at, a)| (format!("{:.2}s", (*at - t).as_secs_f64()), a.clone()))
            .collect()
    }

    /// Each assignment with the member's own wall-clock time (unix seconds).
    pub fn timeline(&self) -> Vec<(f64, Vec<i32>)> {
        self.state.lock().unwrap().timeline.clone()
    }

    /// member.py's wall clock at its subscribe and at its first consumed message.
    pub fn subscribed_at(&self) -> Option<f64> {
        self.state.lock().unwrap().subscribed_at
    }
    pub fn first_msg_at(&self) -> Option<f64> {
        self.state.lock().unwrap().first_msg_at
    }
    pub fn closed(&self) -> bool {
        self.state.lock().unwrap().closed
    }

    /// SIGTERM: member.py closes the consumer (LeaveGroup, or a leaving heartbeat with the
    /// consumer protocol) and exits. Returns when it stopped consuming (its poll loop ended, by its
    /// own clock; the signal's time if it never said) and whether it printed `closed` and exited
    /// within `timeout` (SIGKILL after that).
    pub fn close(&mut self, timeout: Duration) -> (f64, bool) {
        let at = wall_now();
        let Some(mut c) = self.child.take() else {
            return (at, false);
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let start = Instant::now();
        let mut exited = false;
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = c.try_wait() {
                exited = true;
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            let _ = c.kill();
            let _ = c.wait();
        }
        support::join_within(self.reader.take(), Duration::from_secs(5));
        let s = self.state.lock().unwrap();
        (s.closing_at.unwrap_or(at), exited && s.closed)
    }

    /// SIGKILL: gone without LeaveGroup; what it reported so far stays readable.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        support::join_within(self.reader.take(), Duration::from_secs(5));
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Now, as unix seconds (the clock member.py stamps its lines with).
pub fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn parse(state: &Mutex<MemberState>, line: &str) {
    // `@<unix seconds> ` in front with --stamp.
    let (stamp, line) = match line.strip_prefix('@').and_then(|l| l.split_once(' ')) {
        Some((t, rest)) => (t.parse::<f64>().ok(), rest),
        None => (None, line),
    };
    let f: Vec<&str> = line.splitn(4, ' ').collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    let mut s = state.lock().unwrap();
    match f[0] {
        "assigned" => {
            let mut a: Vec<i32> = f
                .get(1)
                .unwrap_or(&"-")
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            a.sort();
            s.history.push((Instant::now(), a.clone()));
            if let Some(t) = stamp {
                s.timeline.push((t, a.clone()));
            }
            s.assignment = a;
            s.assignments += 1;
        }
        "subscribing" => s.subscribed_at = stamp,
        "closing" => s.closing_at = stamp,
        "msg" => {
            if s.first_msg_at.is_none() {
                s.first_msg_at = stamp;
            }
            if let (Some(p), Some(o)) = (num(1), num(2)) {
                s.records.push((p as i32, o));
            }
        }
        "trying" => {
            if let (Some(p), Some(o)) = (num(1), num(2)) {
                let e = s.tried.entry(p as i32).or_insert(o);
                *e = (*e).max(o);
            }
        }
        "acked" => {
            if let (Some(p), Some(o)) = (num(1), num(2)) {
                let e = s.acked.entry(p as i32).or_insert(o);
                *e = (*e).max(o);
                s.n_acked += 1;
            }
        }
        "lost" => s.lost += 1,
        "failed" => s.failed.push(line.to_string()),
        "error" => s.errors.push(line.to_string()),
        "closed" => s.closed = true,
        _ => {}
    }
}

/// Acknowledged commits above what `now` answers: (partition, acknowledged, now).
pub fn lost_commits(
    acked: &BTreeMap<i32, i64>,
    now: &BTreeMap<i32, i64>,
) -> Vec<(i32, i64, Option<i64>)> {
    acked
        .iter()
        .filter(|(p, o)| now.get(p).map_or(true, |n| n < o))
        .map(|(p, o)| (*p, *o, now.get(p).copied()))
        .collect()
}

/// Per partition, the highest acknowledged commit over `members`.
pub fn acked_max(members: &[&Member]) -> BTreeMap<i32, i64> {
    let mut m = BTreeMap::new();
    for member in members {
        for (p, o) in member.acked() {
            let e = m.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
    }
    m
}

// ------------------------------------------------------------------------------------------------
// offsets, covers

/// Per partition: one past the highest acknowledged offset.
pub fn ends(delivered: &[support::Delivered]) -> BTreeMap<i32, i64> {
    let mut m = BTreeMap::new();
    for d in delivered {
        let e = m.entry(d.partition).or_insert(d.offset + 1);
        *e = (*e).max(d.offset + 1);
    }
    m
}

/// Whether `owned` (one list per member) covers `0..partitions` exactly once, each member owning
/// at least one partition.
pub fn exact_cover(owned: &[Vec<i32>], partitions: i32) -> bool {
    let all: Vec<i32> = owned.iter().flatten().copied().collect();
    let unique: BTreeSet<i32> = all.iter().copied().collect();
    all.len() == partitions as usize
        && unique == (0..partitions).collect()
        && owned.iter().all(|o| !o.is_empty())
}

/// Waits until the members' assignments are an exact cover; returns how long it took.
pub fn wait_exact_cover(
    what: &str,
    partitions: i32,
    timeout: Duration,
    members: &[&dyn Fn() -> Vec<i32>],
    diag: &dyn Fn() -> String,
) -> Duration {
    let start = Instant::now();
    loop {
        let owned: Vec<Vec<i32>> = members.iter().map(|m| m()).collect();
        if exact_cover(&owned, partitions) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: assignments {owned:?} did not cover 0..{partitions} exactly once within \
             {timeout:?}{}",
            diag()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `count()` reaches `want`.
pub fn wait_count(what: &str, want: usize, timeout: Duration, count: impl Fn() -> usize) {
    let start = Instant::now();
    while count() < want {
        assert!(
            start.elapsed() < timeout,
            "{what}: {} of {want} within {timeout:?}",
            count()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn distinct<'a>(records: impl IntoIterator<Item = &'a (i32, i64)>) -> HashSet<(i32, i64)> {
    records.into_iter().copied().collect()
}
