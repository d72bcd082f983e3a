//! Helpers of tests/faults_ownership.rs (issue 15, one coordinator per group): real network cuts
//! on the loopback with `iptables` (root) of one kelp's peer traffic or of the kelps' filer
//! connections, always removed again; a
//! double-ownership tracker fed every 250 ms; an OffsetFetch sampler that records any committed
//! offset moving backwards; a trickle producer; a standalone `weed filer` a test can restart.
//!
//! Nothing here asserts the property under test: the tests do, after printing what was measured.
//! Every rule this process adds carries the comment `kelp-test-<pid>`; rules of test processes that
//! are gone are removed at the next cut, and a `Cut` removes its own on drop (also on panic).
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support;

pub mod offsets;
pub mod sampling;
pub mod standalone_filer;

/// The uid the cut kelp runs under (`nobody`), so its own packets can be matched by owner.
pub const CUT_UID: u32 = 65534;

// ------------------------------------------------------------------------------------------------
// the cut

const TAG_PREFIX: &str = "kelp-test-";

fn iptables(args: &[&str]) -> Result<String, String> {
    // Debian puts it in /usr/sbin, which a non-login PATH may lack.
    let program = ["/usr/sbin/iptables", "/sbin/iptables"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("iptables");
    let out = Command::new(program)
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

/// The sum of every series of metric `name` on a /metrics body; None when it has none.
pub fn metric_sum(body: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = body
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The lease metrics (issue 15) of one kelp, for the test output: "held 3, acquired 4, ..." or
/// "no lease metrics" on a build without leases.
pub fn lease_summary(body: &str) -> String {
    let names = [
        ("held", "kelp_leases_held"),
        ("acquired", "kelp_lease_acquisitions_total"),
        ("renew failures", "kelp_lease_renew_failures_total"),
        ("lost", "kelp_lease_losses_total"),
        ("fenced writes", "kelp_fenced_writes_total"),
        ("unleased serving s", UNLEASED),
    ];
    let parts: Vec<String> = names
        .iter()
        .filter_map(|(what, name)| metric_sum(body, name).map(|v| format!("{what} {v}")))
        .collect();
    if parts.is_empty() {
        "no lease metrics".into()
    } else {
        parts.join(", ")
    }
}

/// Seconds a kelp served a group without holding its lease: must stay 0 (absent before leases).
pub const UNLEASED: &str = "kelp_lease_unleased_serving_seconds_total";

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
