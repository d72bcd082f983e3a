//! OffsetFetch for tests/faults_ownership.rs without panics (a kelp under a fault may not answer),
//! and a sampler that records every committed offset that moved backwards. It only observes:
//! the tests decide what is a violation.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

pub use crate::peers::lost_commits;

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

/// The sampler's bookkeeping on made-up answers: a lower offset is recorded once, errors count.
#[test]
fn offset_watch_records_backwards_once() {
    let mut w = OffsetWatch::default();
    let m = |v: &[(i32, i64)]| Ok(v.iter().copied().collect::<BTreeMap<i32, i64>>());
    w.observe(0.0, m(&[(0, 5), (1, -1)]));
    w.observe(0.5, m(&[(0, 9), (1, 3)]));
    w.observe(1.0, Err("error 15".into()));
    w.observe(1.5, m(&[(0, 4), (1, 3)]));
    w.observe(2.0, m(&[(0, 4), (1, 3)]));
    w.observe(2.5, m(&[(0, 10), (1, 3)]));
    assert_eq!(w.backwards, vec![(0, 9, 4, 1.5)]);
    assert_eq!((w.samples, w.errors), (5, 1));
    assert_eq!(w.high, BTreeMap::from([(0, 10), (1, 3)]));
    assert_eq!(
        lost_commits(&BTreeMap::from([(0, 10), (1, 4)]), &w.high),
        vec![(1, 4, Some(3))]
    );
}
