//! Helpers of tests/faults_ownership.rs (issue 15, one coordinator per group): real network cuts
//! on the loopback with `iptables` (root) of one kelp's peer traffic or of the kelps' filer
//! connections, always removed again; a
//! double-ownership tracker fed every 250 ms; an OffsetFetch sampler that records any committed
//! offset moving backwards; a trickle producer.
//!
//! Nothing here asserts the property under test: the tests do, after printing what was measured.
//! Every rule this process adds carries the comment `kelp-test-<pid>`; rules of test processes that
//! are gone are removed at the next cut, and a `Cut` removes its own on drop (also on panic).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::support;

/// The uid the cut kelp runs under (`nobody`), so its own packets can be matched by owner.
pub const CUT_UID: u32 = 65534;

// ------------------------------------------------------------------------------------------------
// the cut

const TAG_PREFIX: &str = "kelp-test-";

fn iptables(args: &[&str]) -> Result<String, String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(["5"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run iptables: {e} (scripts/setup installs the iptables package)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "iptables {args:?}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Deletes every rule of the filter table's INPUT and OUTPUT chains whose comment `keep` does not
/// accept; returns how many went.
fn delete_rules(keep: impl Fn(&str) -> bool) -> usize {
    let mut gone = 0;
    for chain in ["INPUT", "OUTPUT"] {
        let Ok(list) = iptables(&["-S", chain]) else {
            continue;
        };
        for line in list.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(at) = words.iter().position(|w| *w == "--comment") else {
                continue;
            };
            let comment = words.get(at + 1).copied().unwrap_or("").trim_matches('"');
            if !comment.starts_with(TAG_PREFIX) || keep(comment) {
                continue;
            }
            if words.first() == Some(&"-A") {
                let mut del = vec!["-D"];
                del.extend_from_slice(&words[1..]);
                if iptables(&del).is_ok() {
                    gone += 1;
                }
            }
        }
    }
    gone
}

/// One rule on the loopback: `<chain> -i|-o <dev> -p tcp --dport <port> [-m owner --uid-owner
/// <uid>] -j <target...>` (`-i` for INPUT, `-o` for OUTPUT).
fn rule(chain: &str, dev: &str, port: &str, uid: Option<u32>, target: &str) -> Vec<String> {
    let side = if chain == "INPUT" { "-i" } else { "-o" };
    let mut r: Vec<String> = [chain, side, dev, "-p", "tcp", "--dport", port]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(uid) = uid {
        r.extend(["-m", "owner", "--uid-owner"].iter().map(|s| s.to_string()));
        r.push(uid.to_string());
    }
    r.push("-j".into());
    r.extend(target.split_whitespace().map(str::to_string));
    r
}

/// Whether a process running as `uid` connects to 127.0.0.1:`port` within 3 s (bash's
/// /dev/tcp, started under that uid): checks what a cut really lets through.
pub fn reaches_as(uid: u32, port: u16) -> bool {
    use std::os::unix::process::CommandExt;
    Command::new("timeout")
        .args([
            "3",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/127.0.0.1/{port}"),
        ])
        .uid(uid)
        .gid(uid)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// One kelp's peer traffic cut on the loopback, everything else left alone:
/// - `INPUT -i lo -p tcp --dport <its peer port> -j DROP`: the other kelps (and their existing
///   connections) no longer reach its peer listener;
/// - `OUTPUT -o lo -p tcp --dport <other peer port> -m owner --uid-owner <its uid> -j DROP` for
///   each other kelp: its own connections to their peer listeners go nowhere. Only the cut kelp
///   runs as that uid, so the other kelps, the clients, the filer and the gateway are untouched.
///
/// Removed by `heal` or on drop (also when the test panics). `filer_for` cuts the filer instead.
pub struct Cut {
    tag: String,
    rules: Vec<Vec<String>>,
}

impl Cut {
    pub fn peer_traffic(cut_peer: &str, uid: u32, other_peers: &[&str]) -> Cut {
        let port = |p: &str| p.rsplit(':').next().unwrap_or("").to_string();
        let mut rules = vec![rule("INPUT", "lo", &port(cut_peer), None, "DROP")];
        for other in other_peers {
            rules.push(rule("OUTPUT", "lo", &port(other), Some(uid), "DROP"));
        }
        Cut::install(rules)
    }

    /// The filer gone for the kelps running as `uid` (and only for them: the gateway and the MQ
    /// broker keep their own filer connections): `OUTPUT -o lo -p tcp --dport <port> -m owner
    /// --uid-owner <uid> -j REJECT --reject-with tcp-reset` for each of `ports` (the filer's HTTP
    /// port and its gRPC port), as a filer that is down refuses connections and resets open ones.
    pub fn filer_for(uid: u32, ports: &[u16]) -> Cut {
        let rules = ports
            .iter()
            .map(|p| {
                rule(
                    "OUTPUT",
                    "lo",
                    &p.to_string(),
                    Some(uid),
                    "REJECT --reject-with tcp-reset",
                )
            })
            .collect();
        Cut::install(rules)
    }

    fn install(rules: Vec<Vec<String>>) -> Cut {
        let tag = format!("{TAG_PREFIX}{}", std::process::id());
        // Rules left by test processes that are gone (a kill -9 skips every destructor).
        let stale = delete_rules(|c| {
            c.strip_prefix(TAG_PREFIX)
                .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        });
        if stale > 0 {
            eprintln!("ownership: removed {stale} iptables rule(s) of earlier test runs");
        }
        let mut cut = Cut {
            tag: tag.clone(),
            rules: Vec::new(),
        };
        for mut r in rules {
            // The tag goes before the target (`-j ...`, the rule's last words).
            let at = r.iter().position(|w| w == "-j").unwrap_or(r.len());
            for (i, w) in ["-m", "comment", "--comment", &tag].iter().enumerate() {
                r.insert(at + i, w.to_string());
            }
            let mut args = vec!["-I".to_string()];
            args.extend(r.iter().cloned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Err(e) = iptables(&args) {
                panic!("the cut needs root and iptables: {e}");
            }
            cut.rules.push(r);
        }
        eprintln!("ownership: cut in place:\n{}", cut.listing());
        cut
    }

    /// This process's rules as `iptables -S` shows them.
    pub fn listing(&self) -> String {
        ["INPUT", "OUTPUT"]
            .iter()
            .filter_map(|c| iptables(&["-S", c]).ok())
            .flat_map(|l| l.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| l.contains(&self.tag))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Removes the cut's rules (and any other rule carrying this process's tag).
    pub fn heal(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        for r in std::mem::take(&mut self.rules) {
            let mut args = vec!["-D".to_string()];
            args.extend(r);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = iptables(&args);
        }
        let tag = self.tag.clone();
        delete_rules(|c| c != tag);
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Whether this process can cut: root, and `iptables -S` answers.
pub fn can_cut() -> Result<(), String> {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Err(format!(
            "the network cut needs root (uid {uid}); CI runs as root"
        ));
    }
    iptables(&["-S", "INPUT"]).map(|_| ())
}

// ------------------------------------------------------------------------------------------------
// double ownership

/// Longest stretches during which one partition was owned by two or more live members, from
/// samples (every 250 ms). A stretch runs from the first sample that saw the double ownership to
/// the first that did not.
#[derive(Debug, Default, Clone)]
pub struct DoubleOwnership {
    /// Per partition: since when it is owned twice (None: not now).
    since: BTreeMap<i32, Instant>,
    pub longest: Duration,
    /// The partition and the owners of the longest stretch.
    pub longest_of: Option<(i32, Vec<usize>)>,
    pub samples: usize,
    pub double_samples: usize,
    last: Option<Instant>,
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
        self.last = Some(now);
    }

    fn account(&mut self, p: i32, d: Duration) {
        if d > self.longest {
            self.longest = d;
            self.longest_of = Some((p, self.owners_now.get(&p).cloned().unwrap_or_default()));
        }
    }

    /// Partitions owned twice at the last sample.
    pub fn open(&self) -> Vec<i32> {
        self.since.keys().copied().collect()
    }
}

// ------------------------------------------------------------------------------------------------
// OffsetFetch without panics

fn encode_request<T: Encodable>(api: ApiKey, version: i16, body: &T) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("ownership-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.request_header_version(version))
        .expect("encode header");
    body.encode(&mut buf, version).expect("encode body");
    let mut frame = Vec::with_capacity(buf.len() + 4);
    frame.put_i32(buf.len() as i32);
    frame.extend_from_slice(&buf);
    frame
}

/// OffsetFetch v5 of `group`'s partitions `0..partitions` of `topic` through `bootstrap`, on a
/// fresh connection with a `timeout` on every step: Ok(partition -> committed offset, -1 for
/// none) when neither the group nor any partition carries an error; Err(why) otherwise.
pub fn offset_fetch(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, String> {
    let version = 5;
    let sock: SocketAddr = bootstrap.parse().map_err(|e| format!("{e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = OffsetFetchRequest::default()
        .with_group_id(StrBytes::from_string(group.into()).into())
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_indexes((0..partitions).collect())]));
    s.write_all(&encode_request(ApiKey::OffsetFetch, version, &request))
        .map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = i32::from_be_bytes(len);
    if !(0..64 << 20).contains(&len) {
        return Err(format!("response length {len}"));
    }
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    let mut frame = bytes::Bytes::from(buf);
    ResponseHeader::decode(
        &mut frame,
        ApiKey::OffsetFetch.response_header_version(version),
    )
    .map_err(|e| e.to_string())?;
    let r = OffsetFetchResponse::decode(&mut frame, version).map_err(|e| e.to_string())?;
    if frame.remaining() != 0 {
        return Err("trailing bytes".into());
    }
    if r.error_code != 0 {
        return Err(format!("error {}", r.error_code));
    }
    let mut out = BTreeMap::new();
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(format!(
                    "partition {} error {}",
                    p.partition_index, p.error_code
                ));
            }
            out.insert(p.partition_index, p.committed_offset);
        }
    }
    Ok(out)
}

/// What an OffsetFetch sampler saw: per partition the highest committed offset, and each offset
/// answered lower than an earlier one, the first time it was (partition, highest before, now,
/// seconds after the sampler started).
#[derive(Debug, Default, Clone)]
pub struct OffsetWatch {
    pub high: BTreeMap<i32, i64>,
    pub backwards: Vec<(i32, i64, i64, f64)>,
    pub samples: usize,
    pub errors: usize,
    pub last_error: Option<String>,
}

impl OffsetWatch {
    pub fn observe(&mut self, at: f64, got: Result<BTreeMap<i32, i64>, String>) {
        match got {
            Err(e) => {
                self.errors += 1;
                self.last_error = Some(e);
            }
            Ok(m) => {
                self.samples += 1;
                for (p, o) in m {
                    let h = self.high.entry(p).or_insert(o);
                    if o >= *h {
                        *h = o;
                    } else if !self.backwards.iter().any(|b| b.0 == p && b.2 == o) {
                        // Each (partition, lower offset) once: a stale answer repeats.
                        self.backwards.push((p, *h, o, at));
                    }
                }
            }
        }
    }
}

/// Samples OffsetFetch through `bootstrap()` every `period` in a thread until `stop`; bounded by
/// `max` in time. The bootstrap is asked again each time (the test may change it).
pub fn watch_offsets(
    bootstrap: Arc<Mutex<String>>,
    group: &str,
    topic: &str,
    partitions: i32,
    period: Duration,
    max: Duration,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<OffsetWatch> {
    let (group, topic) = (group.to_string(), topic.to_string());
    thread::spawn(move || {
        let mut w = OffsetWatch::default();
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst) && start.elapsed() < max {
            let addr = bootstrap.lock().unwrap().clone();
            let got = offset_fetch(&addr, &group, &topic, partitions, Duration::from_secs(3));
            w.observe(start.elapsed().as_secs_f64(), got);
            thread::sleep(period);
        }
        w
    })
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

// ------------------------------------------------------------------------------------------------
// metrics without panics

/// GET /metrics of `metrics_addr` with short timeouts; None when it does not answer in time (a
/// paused kelp accepts the connection and answers nothing).
pub fn try_metrics(metrics_addr: &str, timeout: Duration) -> Option<String> {
    let sock: SocketAddr = metrics_addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {metrics_addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

// ------------------------------------------------------------------------------------------------
// a trickle of messages

/// Produces `per_round` messages through `bootstrap` every `period` until `stop` (at most `max`);
/// returns every acknowledged delivery.
pub fn trickle(
    bootstrap: String,
    topic: &str,
    per_round: usize,
    period: Duration,
    max: Duration,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<support::Delivered>> {
    let topic = topic.to_string();
    thread::spawn(move || {
        let mut all = Vec::new();
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst) && start.elapsed() < max {
            let r = support::produce_with(
                &bootstrap,
                &topic,
                per_round,
                &[("message.timeout.ms", "20000")],
            );
            all.extend(r.delivered);
            thread::sleep(period);
        }
        all
    })
}

// ------------------------------------------------------------------------------------------------
// small things

/// Sleeps until `t`, in steps of at most 250 ms.
pub fn sleep_until(t: Instant) {
    while Instant::now() < t {
        thread::sleep((t - Instant::now()).min(Duration::from_millis(250)));
    }
}

/// A shared stop flag.
pub fn flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

/// Sets every flag it holds when dropped: a test that panics also stops its producer and
/// samplers instead of leaving them running until their time bound.
pub struct StopGuard(pub Vec<Arc<AtomicBool>>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        for f in &self.0 {
            f.store(true, Ordering::SeqCst);
        }
    }
}
