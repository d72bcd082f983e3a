//! Coordinator benchmarks (not tests): JoinGroup+SyncGroup+Heartbeat ops/s through the state machine
//! on one core, heap for 10,000 groups × 10 members, and, when `KELP_BIN` names a kelp binary, the
//! same ops through a running kelp (raw frames, `KELP_BENCH_CLIENTS` connections, default 1,8).
//! Rebalance latency with real clients is `benches/rebalance_latency.py`. With `KELP_BENCH_FILER`
//! (a SeaweedFS filer URL) too, the Heartbeat latency of a member whose group another kelp owns
//! (forwarded over the peer link) against the owner's own clients' (`scripts/bench-peers`);
//! `KELP_BENCH_ONLY=peers` skips the rest; `KELP_BENCH_ONLY=lease` measures the filer lease traffic
//! of a kelp coordinating 10,000 groups instead (`scripts/bench-lease`).
//!
//! `KELP_BIN=target/release/kelp cargo bench --bench coordinator`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kelp::group::{Call, Config, Coordinator, Output, Request, Response};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(&[
                0, 1, 0, 0, 0, 1, 0, 5, b't', b'o', b'p', b'i', b'c', 0, 0, 0, 0,
            ]))])
}

fn sync(group: &str, member: &str, generation: i32, members: &[String]) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            members
                .iter()
                .map(|m| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from_static(b"assignment-bytes"))
                })
                .collect(),
        )
}

fn heartbeat(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
}

/// Drives the state machine directly.
struct Machine {
    c: Coordinator,
    out: Vec<Output>,
    token: u64,
    now: u64,
}

impl Machine {
    fn new() -> Machine {
        let config = Config {
            // Joins issued back to back land in one join phase, completed by the next ticks.
            initial_rebalance_delay_ms: 1,
            ..Config::default()
        };
        Machine {
            c: Coordinator::with_seed(config, 1),
            out: Vec::new(),
            token: 0,
            now: 0,
        }
    }
    fn call(&mut self, version: i16, request: Request) {
        self.token += 1;
        let call = Call {
            token: self.token,
            api_version: version,
            client_id: "bench".into(),
            client_host: "/127.0.0.1".into(),
            request,
        };
        self.c.handle(self.now, call, &mut self.out);
    }
    fn replies(&mut self) -> Vec<Response> {
        self.out
            .drain(..)
            .filter_map(|o| match o {
                Output::Reply { response, .. } => Some(response),
                _ => None, // events; no Persist or Import: the store is not durable here
            })
            .collect()
    }
    /// Forms `group` with `n` members (joins v3, no MEMBER_ID_REQUIRED round); returns member ids and generation.
    fn form(&mut self, group: &str, n: usize) -> (Vec<String>, i32) {
        for _ in 0..n {
            self.call(3, Request::JoinGroup(join(group, "")));
        }
        let mut members = Vec::new();
        let mut generation = 0;
        let mut leader = String::new();
        for _ in 0..10 {
            self.now += 1;
            self.c.tick(self.now, &mut self.out);
            for r in self.replies() {
                if let Response::JoinGroup(j) = r {
                    members.push(j.member_id.to_string());
                    generation = j.generation_id;
                    leader = j.leader.to_string();
                }
            }
            if members.len() == n {
                break;
            }
        }
        assert_eq!(members.len(), n, "join phase incomplete for {group}");
        let followers: Vec<String> = members.iter().filter(|m| **m != leader).cloned().collect();
        for m in &followers {
            self.call(3, Request::SyncGroup(sync(group, m, generation, &[])));
        }
        self.call(
            3,
            Request::SyncGroup(sync(group, &leader, generation, &members)),
        );
        let synced = self.replies().len();
        assert_eq!(synced, n, "sync incomplete for {group}");
        (members, generation)
    }
}

fn machine_ops() -> (f64, f64) {
    // Join+Sync+Heartbeat cycles for many one-member groups: 3 requests each.
    let mut m = Machine::new();
    let groups = 50_000;
    let start = Instant::now();
    for g in 0..groups {
        let group = format!("g{g}");
        let (members, generation) = m.form(&group, 1);
        m.call(
            3,
            Request::Heartbeat(heartbeat(&group, &members[0], generation)),
        );
        m.out.clear();
    }
    let cycle = (groups * 3) as f64 / start.elapsed().as_secs_f64();
    // Steady state: heartbeats against formed groups.
    let (members, generation) = m.form("hb", 10);
    let beats = 500_000;
    let start = Instant::now();
    for i in 0..beats {
        m.call(
            3,
            Request::Heartbeat(heartbeat("hb", &members[i % members.len()], generation)),
        );
        m.out.clear();
    }
    (cycle, beats as f64 / start.elapsed().as_secs_f64())
}

fn machine_memory() -> f64 {
    let before = counting_alloc::live();
    let mut m = Machine::new();
    for g in 0..10_000 {
        m.form(&format!("memory-group-{g:05}"), 10);
    }
    m.out.shrink_to_fit();
    let after = counting_alloc::live();
    assert_eq!(m.c.group_count(), 10_000);
    (after - before) as f64 / (1024.0 * 1024.0)
}

// ---- through a running kelp ----

struct Conn {
    stream: TcpStream,
    corr: i32,
}

impl Conn {
    fn new(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn { stream, corr: 0 }
    }
    fn frame<T: Encodable>(&mut self, api: ApiKey, version: i16, body: &T) -> Vec<u8> {
        self.corr += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.corr)
            .with_client_id(Some(s("bench")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        frame
    }
    fn recv<T: Decodable>(&mut self, api: ApiKey, version: i16) -> T {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("response length");
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).expect("response body");
        let mut buf = Bytes::from(buf);
        ResponseHeader::decode(&mut buf, api.response_header_version(version)).unwrap();
        T::decode(&mut buf, version).unwrap()
    }
    fn call<Q: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, body: &Q) -> R {
        let frame = self.frame(api, version, body);
        self.stream.write_all(&frame).unwrap();
        self.recv(api, version)
    }
}

fn start_kelp(bin: &str, backend: &str, extra: &[&str]) -> (Child, String) {
    let (child, addr, _) = start_kelp_with_metrics(bin, backend, extra);
    (child, addr)
}

/// `start_kelp`, also returning the metrics listener's address.
fn start_kelp_with_metrics(bin: &str, backend: &str, extra: &[&str]) -> (Child, String, String) {
    let port = free_port();
    let mport = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "--listen",
            &addr,
            "--backend",
            backend,
            "--metrics-listen",
            &format!("127.0.0.1:{mport}"),
        ])
        .args(["--group-initial-rebalance-delay-ms", "0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(match std::env::var("KELP_BENCH_LOG") {
            Ok(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            Err(_) => Stdio::null(),
        })
        .spawn()
        .expect("spawn kelp");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "kelp did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, addr, format!("127.0.0.1:{mport}"))
}

/// The value of an unlabelled metric on a kelp's /metrics.
fn scrape(metrics: &str, name: &str) -> f64 {
    let mut conn = TcpStream::connect(metrics).expect("metrics listener");
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Filer lease traffic of one kelp (`--filer`) that coordinates `groups` groups: one simple
/// commit (generation -1) to each through 8 connections, then `kelp_lease_requests_total` sampled
/// over `secs`. Returns (requests/s, leases held, groups committed).
fn lease_traffic(bin: &str, filer: &str, groups: usize, secs: u64) -> (f64, f64, usize) {
    let prefix = format!("/kelp-bench-lease/{}", std::process::id());
    let (mut kelp, addr, metrics) = start_kelp_with_metrics(
        bin,
        "127.0.0.1:1",
        &["--filer", filer, "--store-prefix", &prefix],
    );
    let committed: usize = (0..8)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::new(&addr);
                let mut ok = 0;
                for i in (c..groups).step_by(8) {
                    let mut r = OffsetCommitRequest::default();
                    r.group_id = s(&format!("lease-bench-{i}")).into();
                    r.generation_id_or_member_epoch = -1;
                    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
                    t.name = s("t").into();
                    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
                    p.committed_offset = i as i64;
                    t.partitions = vec![p];
                    r.topics = vec![t];
                    let a: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 2, &r);
                    ok += usize::from(a.topics[0].partitions[0].error_code == 0);
                }
                ok
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .sum();
    let before = scrape(&metrics, "kelp_lease_requests_total");
    std::thread::sleep(Duration::from_secs(secs));
    let after = scrape(&metrics, "kelp_lease_requests_total");
    let held = scrape(&metrics, "kelp_leases_held");
    let _ = kelp.kill();
    ((after - before) / secs as f64, held, committed)
}

/// Join+Sync+Heartbeat cycles through kelp from `clients` connections in parallel (one-member groups).
fn kelp_ops(addr: &str, clients: usize, cycles: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut conn = Conn::new(&addr);
                for i in 0..cycles {
                    let group = format!("ops-{clients}-{c}-{i}");
                    let j: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 3, &join(&group, ""));
                    let member = j.member_id.to_string();
                    let _: SyncGroupResponse = conn.call(
                        ApiKey::SyncGroup,
                        3,
                        &sync(
                            &group,
                            &member,
                            j.generation_id,
                            std::slice::from_ref(&member),
                        ),
                    );
                    let h: HeartbeatResponse = conn.call(
                        ApiKey::Heartbeat,
                        3,
                        &heartbeat(&group, &member, j.generation_id),
                    );
                    assert_eq!(h.error_code, 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (clients * cycles * 3) as f64 / start.elapsed().as_secs_f64()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Heartbeat round trips of one member, alternately through the group's owner (local) and
/// through a second kelp that forwards them to the owner; returns (local, forwarded) latencies in
/// microseconds, sorted.
fn peer_heartbeats(
    bin: &str,
    filer: &str,
    rounds: usize,
    per_round: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (pa, pb) = (free_port(), free_port());
    let peers = format!("127.0.0.1:{pa},127.0.0.1:{pb}");
    let prefix = format!("/kelp-bench-peers/{}", std::process::id());
    let start = |port: u16| {
        let listen = format!("127.0.0.1:{port}");
        start_kelp(
            bin,
            "127.0.0.1:1",
            &[
                "--peer-listen",
                &listen,
                "--peers",
                &peers,
                "--filer",
                filer,
                "--store-prefix",
                &prefix,
            ],
        )
    };
    let (mut a, a_addr) = start(pa);
    let (mut b, b_addr) = start(pb);
    // Both must see each other before the group is placed (probes every 500 ms, then settling).
    std::thread::sleep(Duration::from_secs(3));
    let ids = [format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}")];
    let group = (0..1000)
        .map(|i| format!("bench-peer-{i}"))
        .find(|g| {
            // Builds before ownership leases hashed the group id itself.
            let owner = match std::env::var("KELP_BENCH_OWNER_HASH").as_deref() {
                Ok("group") => kelp::peers::hash::owner(&ids, g),
                _ => kelp::peers::hash::group_owner(&ids, g, kelp::lease::DEFAULT_BUCKETS),
            };
            owner == Some(ids[0].as_str())
        })
        .expect("a group owned by the first kelp");
    let mut owner = Conn::new(&a_addr);
    let mut other = Conn::new(&b_addr);
    let j: JoinGroupResponse = owner.call(ApiKey::JoinGroup, 3, &join(&group, ""));
    assert_eq!(j.error_code, 0, "join through the owner");
    let member = j.member_id.to_string();
    let generation = j.generation_id;
    let s: SyncGroupResponse = owner.call(
        ApiKey::SyncGroup,
        3,
        &sync(&group, &member, generation, std::slice::from_ref(&member)),
    );
    assert_eq!(s.error_code, 0);
    let beat = heartbeat(&group, &member, generation);
    let measure = |conn: &mut Conn, into: &mut Vec<f64>| {
        for _ in 0..per_round {
            let t = Instant::now();
            let h: HeartbeatResponse = conn.call(ApiKey::Heartbeat, 3, &beat);
            into.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(h.error_code, 0, "heartbeat");
        }
    };
    let (mut local, mut forwarded) = (Vec::new(), Vec::new());
    measure(&mut owner, &mut Vec::new()); // warm-up, both paths
    measure(&mut other, &mut Vec::new());
    for _ in 0..rounds {
        measure(&mut owner, &mut local);
        measure(&mut other, &mut forwarded);
    }
    let _ = a.kill();
    let _ = b.kill();
    local.sort_by(f64::total_cmp);
    forwarded.sort_by(f64::total_cmp);
    (local, forwarded)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too; measure only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("coordinator benchmark: skipped (run it with `cargo bench --bench coordinator`)");
        return;
    }
    if let (Ok(bin), Ok(filer)) = (std::env::var("KELP_BIN"), std::env::var("KELP_BENCH_FILER")) {
        if std::env::var("KELP_BENCH_ONLY").as_deref() == Ok("lease") {
            let groups = 10_000;
            let (rate, held, committed) = lease_traffic(&bin, &filer, groups, 30);
            println!("| lease traffic, one kelp coordinating {committed} of {groups} groups (committed), 30 s | {rate:.1} requests/s to the lock service, {held} leases held |");
            return;
        }
        let (local, forwarded) = peer_heartbeats(&bin, &filer, 10, 500);
        println!(
            "| Heartbeat round trip (one member, 10 alternating rounds of 500) | p50 µs | p99 µs |"
        );
        println!("|---|---|---|");
        for (label, v) in [
            ("through the owning kelp (local)", &local),
            ("through another kelp (forwarded to the owner)", &forwarded),
        ] {
            println!(
                "| {label} | {:.0} | {:.0} |",
                percentile(v, 0.5),
                percentile(v, 0.99)
            );
        }
        let extra = percentile(&forwarded, 0.5) - percentile(&local, 0.5);
        println!(
            "\nforwarded/local p50 ratio: {:.2} (+{extra:.0} µs per forwarded Heartbeat)",
            percentile(&forwarded, 0.5) / percentile(&local, 0.5)
        );
        if std::env::var("KELP_BENCH_ONLY").as_deref() == Ok("peers") {
            return;
        }
    }
    let (cycle, beats) = machine_ops();
    let memory = machine_memory();
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| state machine, Join+Sync+Heartbeat (1-member groups), one core | {cycle:.0} ops/s |"
    );
    println!("| state machine, Heartbeat on a 10-member group, one core | {beats:.0} ops/s |");
    println!("| heap for 10,000 groups x 10 members (counting allocator) | {memory:.1} MiB |");
    if let Ok(bin) = std::env::var("KELP_BIN") {
        let (mut kelp, addr) = start_kelp(&bin, "127.0.0.1:1", &[]);
        let counts: Vec<usize> = std::env::var("KELP_BENCH_CLIENTS")
            .map(|v| v.split(',').filter_map(|c| c.parse().ok()).collect())
            .unwrap_or_else(|_| vec![1, 8]);
        for clients in counts {
            let ops = kelp_ops(&addr, clients, 4000 / clients.min(4));
            println!(
                "| running kelp, Join+Sync+Heartbeat, {clients} connection(s) | {ops:.0} ops/s |"
            );
        }
        let _ = kelp.kill();
    }
}
