//! kelp's operator HTTP endpoint against a real kelp: `/healthz`, `/readyz` (ready only while the
//! backend answers), `/metrics` in the Prometheus text format, and 404 for anything else.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::Kelp;

fn raw_http(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn ready_with_a_live_backend_and_metrics_in_text_format() {
    let kelp = Kelp::start(&[]);
    support::wait_until("/readyz answers 200", Duration::from_secs(20), || {
        kelp.http_get("/readyz").0 == 200
    });
    assert_eq!(kelp.http_get("/healthz"), (200, "ok\n".to_string()));
    let (status, body) = kelp.http_get("/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE kelp_requests_total counter"),
        "{body}"
    );
    assert!(body.contains("kelp_backend_up 1"), "backend up: {body}");
    assert!(body.contains("kelp_build_info{version="));
    assert_eq!(kelp.http_get("/nope").0, 404);
    let post = raw_http(
        kelp.metrics_addr(),
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 404"), "{post}");
}

#[test]
fn not_ready_without_a_backend_but_alive() {
    // Nothing listens on port 1: the backend is unreachable.
    let kelp = Kelp::start_with_backend("127.0.0.1:1", &[]);
    let (status, body) = kelp.http_get("/readyz");
    assert_eq!(status, 503);
    assert_eq!(body.lines().count(), 1, "one-line reason: {body}");
    assert!(body.contains("127.0.0.1:1"), "{body}");
    assert_eq!(kelp.http_get("/healthz").0, 200);
    let (_, metrics) = kelp.http_get("/metrics");
    assert!(metrics.contains("kelp_backend_up 0"), "{metrics}");
}
