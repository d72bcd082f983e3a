//! TLS on the real kelp binary. The client listener with mutual TLS (`--tls-client-ca`): a client
//! certificate from the deployment CA gets in; none, an expired one, or one from another CA is
//! refused at the handshake (log line + `kelp_connection_errors_total{reason="tls_handshake"}`);
//! a rotated server certificate is picked up. The backend link over TLS, with real parts: a
//! client talks plain to kelp B, kelp B talks mutual TLS to kelp A (`--backend-tls-*`), kelp A
//! forwards to the SeaweedFS gateway; records go through and back, and a kelp that does not trust
//! A's certificate reports the backend unreachable.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::ServerName;

use support::{create_topic, metric, produce, scratch_dir, stack, wait_until, GroupConsumer, Kelp};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: PathBuf,
}

fn dir() -> PathBuf {
    let d = scratch_dir().join("tls");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    let pem = dir().join(format!("{}.ca.pem", name.replace(' ', "-")));
    std::fs::write(&pem, cert.pem()).unwrap();
    Ca { cert, key, pem }
}

/// A certificate for `names` signed by `ca`, written as `<file>.pem` and `<file>.key`.
fn leaf(ca: &Ca, file: &str, names: &[&str], expired: bool) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        dir().join(format!("{file}.pem")),
        dir().join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// An ApiVersions v0 request over TLS (with `identity` as client certificate): Ok(error code) or
/// the error that ended the connection.
fn api_versions_over_tls(
    addr: &str,
    ca: &Ca,
    identity: Option<&(PathBuf, PathBuf)>,
) -> Result<i16, String> {
    let config =
        kelp::tls::client_config(&ca.pem, identity.map(|(c, k)| (c.as_path(), k.as_path())))
            .unwrap();
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // ApiVersions v0: api key 18, version 0, correlation id 7, client id "t".
    let request = [0, 18, 0, 0, 0, 0, 0, 7, 0, 1, b't'];
    let mut frame = (request.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&request);
    tls.write_all(&frame).map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    tls.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    tls.read_exact(&mut body).map_err(|e| e.to_string())?;
    assert_eq!(&body[..4], &[0, 0, 0, 7], "correlation id");
    Ok(i16::from_be_bytes([body[4], body[5]]))
}

#[test]
fn mutual_tls_on_the_client_listener_lets_in_only_the_deployments_certificates() {
    let deployment = ca("deployment CA");
    let stranger = ca("stranger CA");
    let server = leaf(&deployment, "listener", &["127.0.0.1", "localhost"], false);
    let good = leaf(&deployment, "client-good", &["sidecar-a"], false);
    let expired = leaf(&deployment, "client-expired", &["sidecar-b"], true);
    let foreign = leaf(&stranger, "client-foreign", &["sidecar-c"], false);
    let nowhere = format!("127.0.0.1:{}", support::free_port());
    let k = Kelp::start_with_backend(
        &nowhere,
        &[
            "--tls-cert",
            s(&server.0),
            "--tls-key",
            s(&server.1),
            "--tls-client-ca",
            s(&deployment.pem),
            "--tls-reload-secs",
            "1",
        ],
    );
    assert_eq!(
        api_versions_over_tls(k.addr(), &deployment, Some(&good)),
        Ok(0)
    );
    for (name, identity) in [
        ("no certificate", None),
        ("an expired certificate", Some(&expired)),
        ("another CA's certificate", Some(&foreign)),
    ] {
        let result = api_versions_over_tls(k.addr(), &deployment, identity);
        assert!(result.is_err(), "{name}: must be refused, got {result:?}");
    }
    let handshakes = r#"kelp_connection_errors_total{reason="tls_handshake"}"#;
    wait_until(
        "three refused handshakes counted",
        Duration::from_secs(30),
        || metric(&k, handshakes) >= 3.0,
    );
    assert!(k.log().contains("TLS handshake failed"), "{}", k.log());
    // Plain TCP on a TLS listener is refused too.
    let mut plain = TcpStream::connect(k.addr()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = plain.write_all(&[0, 0, 0, 11, 0, 18, 0, 0, 0, 0, 0, 7, 0, 1, b't']);
    let mut buf = [0u8; 64];
    assert!(
        matches!(plain.read(&mut buf), Ok(0) | Err(_)) || buf[0] == 0x15,
        "a plain client gets no Kafka answer"
    );

    // Rotation: a new server certificate (same CA) is picked up without a restart.
    let rotated = leaf(&deployment, "listener-rotated", &["127.0.0.1"], false);
    std::fs::copy(&rotated.0, &server.0).unwrap();
    std::fs::copy(&rotated.1, &server.1).unwrap();
    let ok = r#"kelp_tls_reloads_total{result="ok",tls="client"}"#;
    wait_until(
        "the rotated certificate to be loaded",
        Duration::from_secs(30),
        || metric(&k, ok) >= 1.0,
    );
    assert_eq!(
        api_versions_over_tls(k.addr(), &deployment, Some(&good)),
        Ok(0)
    );
}

#[test]
fn records_go_through_a_mutual_tls_backend_link() {
    let deployment = ca("backend CA");
    let a_cert = leaf(&deployment, "kelp-a", &["127.0.0.1"], false);
    let b_identity = leaf(&deployment, "kelp-b", &["kelp-b"], false);
    // kelp A: TLS listener requiring the deployment's certificates, in front of the gateway.
    let a = Kelp::start_with_backend(
        &stack().kafka,
        &[
            "--tls-cert",
            s(&a_cert.0),
            "--tls-key",
            s(&a_cert.1),
            "--tls-client-ca",
            s(&deployment.pem),
        ],
    );
    // kelp B: plain for its client, mutual TLS to A.
    let b = Kelp::start_with_backend(
        a.addr(),
        &[
            "--backend-tls-ca",
            s(&deployment.pem),
            "--backend-tls-cert",
            s(&b_identity.0),
            "--backend-tls-key",
            s(&b_identity.1),
        ],
    );
    wait_until(
        "kelp B to reach its TLS backend",
        Duration::from_secs(60),
        || b.http_get("/readyz").0 == 200,
    );
    let topic = "tls-backend";
    create_topic(b.addr(), topic, 2);
    assert_eq!(produce(b.addr(), topic, 200), 200);
    let c = GroupConsumer::start(b.addr(), "tls-backend-g", "tls-c", &[topic]);
    wait_until(
        "200 records through the TLS link",
        Duration::from_secs(90),
        || c.count() >= 200,
    );
    drop(c.stop());

    // A kelp that trusts another CA cannot reach A: the backend stays unreachable.
    let stranger = ca("backend stranger CA");
    let other = Kelp::start_with_backend(a.addr(), &["--backend-tls-ca", s(&stranger.pem)]);
    wait_until(
        "the untrusting kelp to give up on its backend",
        Duration::from_secs(60),
        || other.log().contains("backend not reachable yet"),
    );
    assert_eq!(
        other.http_get("/readyz").0,
        503,
        "an untrusted backend certificate is not accepted"
    );
}

/// One kelp of a TLS peer mesh: the peer listener on `port`, `peers` listed, `cert` its identity.
fn peer_kelp(port: u16, peers: &str, ca: &Ca, cert: &(PathBuf, PathBuf), prefix: &str) -> Kelp {
    let listen = format!("127.0.0.1:{port}");
    Kelp::start(&[
        "--peer-listen",
        &listen,
        "--peers",
        peers,
        "--peer-probe-interval-ms",
        "200",
        "--filer",
        &stack().filer,
        "--store-prefix",
        prefix,
        "--group-initial-rebalance-delay-ms",
        "0",
        "--peer-tls-cert",
        s(&cert.0),
        "--peer-tls-key",
        s(&cert.1),
        "--peer-tls-ca",
        s(&ca.pem),
        "--peer-tls-server-name",
        "kelp-peer",
        "--tls-reload-secs",
        "1",
    ])
}

#[test]
fn mutual_tls_on_the_peer_port_admits_only_the_deployments_sidecars() {
    let deployment = ca("peer CA");
    let stranger = ca("peer stranger CA");
    // Every sidecar's certificate names the peers' shared name (and the loopback address for
    // the raw handshakes below).
    let names = ["kelp-peer", "127.0.0.1"];
    let (pa, pb, pc) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let peers = format!("127.0.0.1:{pa},127.0.0.1:{pb}");
    let prefix = format!("/kelp-tls-peers/{}", std::process::id());
    let a_cert = leaf(&deployment, "peer-a", &names, false);
    let a = peer_kelp(pa, &peers, &deployment, &a_cert, &prefix);
    let b = peer_kelp(
        pb,
        &peers,
        &deployment,
        &leaf(&deployment, "peer-b", &names, false),
        &prefix,
    );
    let live = r#"kelp_peers{state="live"}"#;
    wait_until(
        "both kelps to see each other over mutual TLS",
        Duration::from_secs(30),
        || metric(&a, live) == 2.0 && metric(&b, live) == 2.0,
    );

    // The peer port: the deployment's certificate gets in; none, an expired one or another CA's
    // does not.
    let a_peer = format!("127.0.0.1:{pa}");
    let good = leaf(&deployment, "peer-client-good", &names, false);
    assert_eq!(
        api_versions_over_tls(&a_peer, &deployment, Some(&good)),
        Ok(0)
    );
    let expired = leaf(&deployment, "peer-client-expired", &names, true);
    let foreign = leaf(&stranger, "peer-client-foreign", &names, false);
    let before = metric(
        &a,
        r#"kelp_connection_errors_total{reason="tls_handshake"}"#,
    );
    for (name, identity) in [
        ("no certificate", None),
        ("an expired certificate", Some(&expired)),
        ("another CA's certificate", Some(&foreign)),
    ] {
        let result = api_versions_over_tls(&a_peer, &deployment, identity);
        assert!(result.is_err(), "{name}: must be refused, got {result:?}");
    }
    wait_until(
        "the refused handshakes counted",
        Duration::from_secs(30),
        || {
            metric(
                &a,
                r#"kelp_connection_errors_total{reason="tls_handshake"}"#,
            ) >= before + 3.0
        },
    );

    // A sidecar of another deployment (another CA) lists A but never sees it live, so it never
    // sends it a group's requests.
    let c = peer_kelp(
        pc,
        &format!("127.0.0.1:{pa},127.0.0.1:{pc}"),
        &stranger,
        &leaf(&stranger, "peer-c", &names, false),
        &format!("{prefix}-other"),
    );
    thread_sleep(Duration::from_secs(2));
    assert_eq!(metric(&c, live), 1.0, "a stranger's probes must not get in");
    assert_eq!(metric(&c, r#"kelp_peers{state="down"}"#), 1.0);

    // A group owned by A, consumed through B: its requests cross the mutual TLS link.
    let ids = [format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}")];
    let group = (0..1000)
        .map(|i| format!("tls-peer-g{i}"))
        .find(|g| {
            kelp::peers::hash::group_owner(&ids, g, kelp::lease::DEFAULT_BUCKETS)
                == Some(ids[0].as_str())
        })
        .expect("some group id hashes to A");
    let topic = "tls-peers";
    create_topic(b.addr(), topic, 2);
    assert_eq!(produce(b.addr(), topic, 100), 100);
    let consumer = GroupConsumer::start(b.addr(), &group, "tls-peer-c", &[topic]);
    wait_until(
        "100 records consumed through B, coordinated by A",
        Duration::from_secs(90),
        || consumer.count() >= 100,
    );
    drop(consumer.stop());
    let forwarded = r#"kelp_requests_total{api="JoinGroup",path="peer"}"#;
    assert!(
        metric(&b, forwarded) >= 1.0,
        "B forwarded the group's JoinGroup to A"
    );
    let owner_series = format!("kelp_group_generation{{group=\"{group}\"");
    assert!(
        a.http_get("/metrics").1.contains(&owner_series),
        "A owns the group"
    );
    assert!(
        !b.http_get("/metrics").1.contains(&owner_series),
        "only the owner has its series"
    );

    // Rotation: A's new peer certificate (same CA) is picked up without a restart, and B still
    // sees A live through it.
    let rotated = leaf(&deployment, "peer-a-rotated", &names, false);
    std::fs::copy(&rotated.0, &a_cert.0).unwrap();
    std::fs::copy(&rotated.1, &a_cert.1).unwrap();
    let reloaded = r#"kelp_tls_reloads_total{result="ok",tls="peer_listener"}"#;
    wait_until(
        "A to load its rotated peer certificate",
        Duration::from_secs(30),
        || metric(&a, reloaded) >= 1.0,
    );
    assert_eq!(
        api_versions_over_tls(&a_peer, &deployment, Some(&good)),
        Ok(0)
    );
    thread_sleep(Duration::from_secs(1));
    assert_eq!(
        metric(&b, live),
        2.0,
        "B still sees A live after the rotation"
    );
}

fn thread_sleep(d: Duration) {
    std::thread::sleep(d);
}
