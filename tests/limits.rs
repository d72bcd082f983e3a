//! Connection limit, listening sockets and graceful shutdown of the real kelp binary, with raw
//! Kafka frames on loopback. These need no backend: kelp answers ApiVersions and the group APIs
//! itself (its backend address points at a closed port).

mod raw;
mod support;

use std::fs;
use std::process::ExitStatus;
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, JoinGroupRequest, ListGroupsRequest,
    ListGroupsResponse, MetadataRequest,
};
use kafka_protocol::protocol::StrBytes;

use raw::Raw;
use support::{free_port, metric, wait_until, Kelp};

fn kelp(extra: &[&str]) -> Kelp {
    let nowhere = format!("127.0.0.1:{}", free_port());
    Kelp::start_with_backend(&nowhere, extra)
}

/// A connection kelp serves: ApiVersions answered without error.
fn served(addr: &str) -> Option<Raw> {
    let mut c = Raw::connect(addr);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let sent = c.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let mut frame = c.recv_frame()?;
    let header =
        <kafka_protocol::messages::ResponseHeader as kafka_protocol::protocol::Decodable>::decode(
            &mut frame, 0,
        )
        .ok()?;
    let body =
        <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut frame, 3).ok()?;
    (header.correlation_id == sent && body.error_code == 0).then_some(c)
}

#[test]
fn connections_beyond_max_connections_are_closed_with_a_log_line_and_a_metric() {
    let k = kelp(&["--max-connections", "2"]);
    let active = r#"kelp_connections_active{listener="client"}"#;
    wait_until(
        "the start-up probe connection to close",
        Duration::from_secs(30),
        || metric(&k, active) == 0.0,
    );
    let first = served(k.addr()).expect("first connection served");
    let second = served(k.addr()).expect("second connection served");
    let mut third = Raw::connect(k.addr());
    third
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = third.send_bytes(&[0, 0, 0, 0]);
    assert!(
        third.is_closed(),
        "a third connection must be closed at once"
    );
    let refused = r#"kelp_connection_errors_total{reason="max_connections"}"#;
    assert!(metric(&k, refused) >= 1.0, "refusals are counted");
    assert!(
        k.log()
            .contains("refusing client connections: --max-connections 2 are open"),
        "{}",
        k.log()
    );
    // A slot frees up when a connection closes; kelp serves the next one.
    drop(first);
    wait_until(
        "a freed slot to serve a new connection",
        Duration::from_secs(30),
        || served(k.addr()).is_some(),
    );
    drop(second);
}

/// Listening TCP sockets of a process: (local address, port), from /proc (IPv4 and IPv6).
fn listening(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    l.strip_prefix("socket:[")
                        .and_then(|r| r.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let (ip, port) = f[1].split_once(':').unwrap();
                let port = u16::from_str_radix(port, 16).unwrap();
                let ip = if ip.len() == 8 {
                    let n = u32::from_str_radix(ip, 16).unwrap().to_le_bytes();
                    format!("{}.{}.{}.{}", n[0], n[1], n[2], n[3])
                } else {
                    format!("[{ip}]")
                };
                out.push(format!("{ip}:{port}"));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn kelp_listens_only_where_configured() {
    let k = kelp(&[]);
    let pid = k.pid().expect("kelp runs");
    let mut want = vec![k.addr().to_string(), k.metrics_addr().to_string()];
    want.sort();
    assert_eq!(listening(pid), want, "kelp's listening sockets");

    // With peers: the peer listener too, and nothing else. The filer is only read when a group is
    // asked for, so an unreachable one does not matter here.
    let peer = format!("127.0.0.1:{}", free_port());
    let other = format!("127.0.0.1:{}", free_port());
    let peers = format!("{peer},{other}");
    let filer = format!("http://127.0.0.1:{}", free_port());
    let k = kelp(&["--peer-listen", &peer, "--peers", &peers, "--filer", &filer]);
    let pid = k.pid().expect("kelp runs");
    let mut want = vec![
        k.addr().to_string(),
        k.metrics_addr().to_string(),
        peer.clone(),
    ];
    want.sort();
    assert_eq!(
        listening(pid),
        want,
        "kelp's listening sockets with a peer listener"
    );
    // The peer listener serves probes, and closes a connection that sends it a data API.
    let mut probe = served(&peer).expect("the peer listener answers ApiVersions");
    probe.send(ApiKey::Metadata, 9, &MetadataRequest::default());
    wait_until(
        "the peer listener to close on a data API",
        Duration::from_secs(10),
        || probe.is_closed(),
    );
    wait_until("the close to be counted", Duration::from_secs(10), || {
        metric(
            &k,
            r#"kelp_connection_errors_total{reason="not_for_peers"}"#,
        ) >= 1.0
    });
}

fn join(group: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(StrBytes::from_string(group.into()).into())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(60_000)
        .with_member_id(StrBytes::default())
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(bytes::Bytes::from_static(&[
                0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
            ]))])
}

fn sigterm(k: &Kelp) {
    let pid = k.pid().expect("kelp runs").to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success(), "kill -TERM {pid}");
}

/// Waits for the drain's last log line, then collects kelp's exit status.
fn exit_after_drain(k: &mut Kelp) -> ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let log = k.log();
        if log.contains("drained; exiting") || log.contains("drain time is up") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kelp did not finish its drain within 60 s; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    k.terminate(Duration::from_secs(60))
        .expect("kelp exits by itself after its drain")
}

#[test]
fn sigterm_answers_what_is_in_flight_closes_connections_and_exits() {
    // A long drain time and a long initial rebalance delay: kelp must not wait for either.
    let mut k = kelp(&[
        "--drain-timeout-ms",
        "600000",
        "--group-initial-rebalance-delay-ms",
        "600000",
    ]);
    let mut idle = served(k.addr()).expect("idle connection");
    let mut parked = Raw::connect(k.addr());
    // v3: a new member waits in the join phase (v4+ would first get MEMBER_ID_REQUIRED).
    parked.send(ApiKey::JoinGroup, 3, &join("drain-group"));
    let mut busy = Raw::connect(k.addr());
    // Pipelined: written before the SIGTERM, so kelp has read them; every one is answered, in order.
    let sent: Vec<i32> = (0..20)
        .map(|_| busy.send(ApiKey::ListGroups, 4, &ListGroupsRequest::default()))
        .collect();
    let first: (i32, ListGroupsResponse) = busy.recv(ApiKey::ListGroups, 4);
    assert_eq!(first.0, sent[0]);
    sigterm(&k);
    for want in &sent[1..] {
        let (got, r): (i32, ListGroupsResponse) = busy.recv(ApiKey::ListGroups, 4);
        assert_eq!((got, r.error_code), (*want, 0));
    }
    for (name, c) in [
        ("idle", &mut idle),
        ("parked", &mut parked),
        ("busy", &mut busy),
    ] {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        assert!(
            c.is_closed(),
            "the {name} connection is closed by the drain"
        );
    }
    let status = exit_after_drain(&mut k);
    assert!(status.success(), "kelp exits 0 after a drain: {status}");
    let log = k.log();
    assert!(log.contains("shutting down: draining connections"), "{log}");
    assert!(log.contains("drained; exiting"), "{log}");
}

#[test]
fn a_connection_that_never_finishes_is_cut_at_the_drain_timeout() {
    // A backend that accepts and reads but never answers (as a stopped gateway would).
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = black_hole.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        black_hole.set_nonblocking(true).unwrap();
        for _ in 0..1200 {
            if let Ok((c, _)) = black_hole.accept() {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mut k = Kelp::start_with_backend(&backend, &["--drain-timeout-ms", "300"]);
    let mut stuck = Raw::connect(k.addr());
    stuck.send(
        ApiKey::Metadata,
        1,
        &kafka_protocol::messages::MetadataRequest::default(),
    );
    wait_until(
        "the Metadata request to be forwarded",
        Duration::from_secs(30),
        || metric(&k, r#"kelp_requests_total{api="Metadata",path="backend"}"#) >= 1.0,
    );
    let status = k
        .terminate(Duration::from_secs(60))
        .expect("kelp exits by itself");
    assert!(status.success(), "{status}");
    let log = k.log();
    assert!(
        log.contains("drain time is up; exiting with connections still open"),
        "{log}"
    );
    drop(stuck);
    drop(held);
}

#[test]
fn a_draining_kelp_is_not_ready_and_a_second_sigterm_ends_the_drain() {
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = black_hole.local_addr().unwrap().to_string();
    let mut k = Kelp::start_with_backend(&backend, &["--drain-timeout-ms", "600000"]);
    let mut stuck = Raw::connect(k.addr());
    stuck.send(
        ApiKey::Metadata,
        1,
        &kafka_protocol::messages::MetadataRequest::default(),
    );
    wait_until(
        "the Metadata request to be forwarded",
        Duration::from_secs(30),
        || metric(&k, r#"kelp_requests_total{api="Metadata",path="backend"}"#) >= 1.0,
    );
    sigterm(&k);
    wait_until(
        "/readyz to report the drain",
        Duration::from_secs(30),
        || k.http_get("/readyz") == (503, "not ready: draining\n".to_string()),
    );
    // The request is still in flight (the backend never answers): a second signal ends it.
    let status = k
        .terminate(Duration::from_secs(60))
        .expect("kelp exits on the second signal");
    assert!(status.success(), "{status}");
    assert!(
        k.log().contains("second signal: exiting without waiting"),
        "{}",
        k.log()
    );
    drop((stuck, black_hole));
}
