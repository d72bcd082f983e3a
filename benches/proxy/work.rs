//! The workloads, each run against one address for a bounded time: pipelined produce, fetch,
//! produce latency at a fixed rate, and many idle connections.

use std::net::TcpStream as StdStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hdrhistogram::Histogram;
use kafka_protocol::messages::ApiKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::wire::{self, Blocking};

/// Longest wait for any one response before a run is declared failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a throughput run moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    pub requests: u64,
    pub msgs: u64,
    /// Record-batch bytes (what the application produced or consumed).
    pub payload: u64,
    /// Request and response frames, both directions (what a proxy forwards).
    pub wire: u64,
    pub secs: f64,
    pub errors: u64,
}

impl Moved {
    pub fn mb_per_s(&self) -> f64 {
        self.payload as f64 / 1e6 / self.secs
    }
    pub fn msgs_per_s(&self) -> f64 {
        self.msgs as f64 / self.secs
    }
    fn add(&mut self, other: Moved) {
        self.requests += other.requests;
        self.msgs += other.msgs;
        self.payload += other.payload;
        self.wire += other.wire;
        self.errors += other.errors;
    }
}

/// A pipelined produce workload: each connection sends one template to its own partition.
pub struct Produce {
    pub templates: Vec<Bytes>,
    pub version: i16,
    pub depth: usize,
    pub msgs_per_request: u64,
    pub payload_per_request: u64,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(256 << 20)
        .new_codec()
}

pub async fn produce(addr: &str, spec: &Produce, seconds: f64) -> Moved {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let runs = spec
        .templates
        .iter()
        .map(|t| produce_conn(addr, t.clone(), spec.depth, spec.version, deadline));
    let mut total = Moved::default();
    for m in futures::future::join_all(runs).await {
        total.add(m);
    }
    total.secs = start.elapsed().as_secs_f64();
    total.msgs = total.requests * spec.msgs_per_request;
    total.payload = total.requests * spec.payload_per_request;
    total
}

async fn produce_conn(
    addr: &str,
    template: Bytes,
    depth: usize,
    version: i16,
    deadline: Instant,
) -> Moved {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let window = Semaphore::new(depth);
    let sent = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let writer = async {
        let mut out = BytesMut::with_capacity(template.len() * depth);
        let mut corr = 0i32;
        while Instant::now() < deadline {
            let Ok(permit) = window.acquire().await else {
                break;
            };
            permit.forget();
            let mut batch = 1;
            corr += 1;
            wire::put_request(&mut out, &template, corr);
            while batch < depth {
                let Ok(permit) = window.try_acquire() else {
                    break;
                };
                permit.forget();
                batch += 1;
                corr += 1;
                wire::put_request(&mut out, &template, corr);
            }
            write.write_all(&out).await.expect("write request");
            out.clear();
            sent.store(corr as u64, Ordering::Release);
        }
        done.store(true, Ordering::Release);
        window.add_permits(1); // wake the reader if it waits on nothing
    };
    let reader = async {
        let mut frames = FramedRead::with_capacity(read, codec(), 64 * 1024);
        let mut moved = Moved::default();
        loop {
            if done.load(Ordering::Acquire) && moved.requests >= sent.load(Ordering::Acquire) {
                break;
            }
            let next = tokio::time::timeout(Duration::from_millis(200), frames.next()).await;
            let Ok(frame) = next else {
                continue; // re-check whether everything sent was answered
            };
            let frame = frame.expect("connection closed early").expect("read");
            moved.requests += 1;
            moved.wire += 4 + frame.len() as u64;
            let corr = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
            assert_eq!(corr as u64, moved.requests, "responses out of order");
            if moved.requests % 64 == 1 && wire::produce_error(&frame.freeze(), version) != 0 {
                moved.errors += 1;
            }
            window.add_permits(1);
        }
        moved
    };
    let (_, mut moved) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()) + RESPONSE_TIMEOUT,
        async { futures::join!(writer, reader) },
    )
    .await
    .expect("produce run timed out");
    moved.wire += moved.requests * template.len() as u64;
    moved
}

/// A fetch workload: each connection reads its partition from the start, one fetch at a time
/// (as a consumer does), wrapping around at the end.
pub struct Fetch {
    pub topic: String,
    pub partitions: i32,
    pub version: i16,
    pub max_bytes: i32,
}

pub async fn fetch(addr: &str, spec: &Fetch, seconds: f64) -> Moved {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let runs = (0..spec.partitions).map(|p| fetch_conn(addr, spec, p, deadline));
    let mut total = Moved::default();
    for m in futures::future::join_all(runs).await {
        total.add(m);
    }
    total.secs = start.elapsed().as_secs_f64();
    total
}

async fn fetch_conn(addr: &str, spec: &Fetch, partition: i32, deadline: Instant) -> Moved {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::with_capacity(read, codec(), 64 * 1024);
    let mut moved = Moved::default();
    let mut offset = 0i64;
    let mut corr = 0i32;
    let mut out = BytesMut::new();
    while Instant::now() < deadline {
        let request = wire::fetch(spec.version, &spec.topic, partition, offset, spec.max_bytes);
        corr += 1;
        wire::put_request(&mut out, &request, corr);
        write.write_all(&out).await.expect("write fetch");
        out.clear();
        let frame = tokio::time::timeout(RESPONSE_TIMEOUT, frames.next())
            .await
            .expect("fetch response timed out")
            .expect("connection closed early")
            .expect("read")
            .freeze();
        moved.requests += 1;
        moved.wire += (4 + frame.len() + request.len()) as u64;
        let r = wire::fetch_result(&frame, spec.version);
        if r.error_code != 0 {
            moved.errors += 1;
            offset = r.log_start.max(0);
            continue;
        }
        moved.msgs += r.records;
        moved.payload += r.record_bytes;
        offset = match r.next {
            Some(next) if next < r.high_watermark => next,
            _ => r.log_start.max(0),
        };
    }
    moved
}

/// Sends one produce template at `rate` per second for `seconds` on one connection (open loop:
/// sends do not wait for responses) and records each response time in microseconds.
pub fn latency(addr: &str, template: &Bytes, rate: f64, seconds: f64) -> Histogram<u64> {
    let count = ((rate * seconds) as usize).max(1);
    let mut conn = Blocking::connect(addr).expect("connect");
    let mut reader = conn.stream.try_clone().expect("clone socket");
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let receiver = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            for _ in 0..count {
                let frame = wire::read_frame(&mut reader).expect("latency response");
                let now = origin.elapsed().as_nanos() as u64;
                let corr = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
                let at = sent[(corr - 1) as usize].load(Ordering::Acquire);
                hist.saturating_record((now.saturating_sub(at) / 1000).max(1));
            }
            hist
        })
    };
    let interval = Duration::from_secs_f64(1.0 / rate);
    for i in 0..count {
        let due = interval * i as u32;
        let now = origin.elapsed();
        if due > now {
            std::thread::sleep(due - now);
        }
        sent[i].store(origin.elapsed().as_nanos() as u64, Ordering::Release);
        conn.send(template).expect("send");
    }
    receiver.join().expect("latency receiver")
}

/// Opens `n` connections, each doing ApiVersions and one small produce (so a proxy has opened its
/// backend side too), and keeps them open until the returned sockets drop.
pub fn idle_connections(addr: &str, n: usize, produce: &Bytes) -> Vec<StdStream> {
    let api_versions = wire::request(
        ApiKey::ApiVersions,
        0,
        &kafka_protocol::messages::ApiVersionsRequest::default(),
    );
    (0..n)
        .map(|_| {
            let mut conn = Blocking::connect(addr).expect("connect idle connection");
            conn.call(&api_versions).expect("ApiVersions");
            conn.call(produce).expect("produce");
            conn.stream
        })
        .collect()
}
