//! Runs each workload against the three targets in alternating rounds (round r starts at target r
//! mod 3) and turns the samples into table rows.

use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use kafka_protocol::messages::ApiKey;

use crate::report::{median, Compare, Row};
use crate::work::{self, Moved};
use crate::{procs, wire, Args, Setup, Target};

/// One measurement of one target.
#[derive(Clone, Copy, Default)]
struct Sample {
    moved: Moved,
    cpu_ns: Option<u64>,
}

/// Runs `run` on every target, `rounds` times, rotating the order; returns samples[round][target].
fn rounds(args: &Args, setup: &Setup, mut run: impl FnMut(&Target) -> Moved) -> Vec<[Sample; 3]> {
    (0..args.rounds.max(1))
        .map(|round| {
            let mut samples = [Sample::default(); 3];
            for i in 0..3 {
                let t = (round + i) % 3;
                let target = &setup.targets[t];
                let before = target.pid.and_then(procs::cpu_ns);
                let moved = run(target);
                let after = target.pid.and_then(procs::cpu_ns);
                samples[t] = Sample {
                    moved,
                    cpu_ns: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
                };
            }
            samples
        })
        .collect()
}

/// Medians of `metric` per target and medians of kelp's per-round ratios to direct and haproxy.
fn summarize(
    samples: &[[Sample; 3]],
    metric: impl Fn(&Moved) -> f64,
) -> ([Option<f64>; 3], [Option<f64>; 2]) {
    let per = |t: usize| {
        median(
            &mut samples
                .iter()
                .map(|s| metric(&s[t].moved))
                .collect::<Vec<_>>(),
        )
    };
    let ratio = |base: usize| {
        median(
            &mut samples
                .iter()
                .map(|s| metric(&s[2].moved) / metric(&s[base].moved))
                .filter(|r| r.is_finite())
                .collect::<Vec<_>>(),
        )
    };
    ([per(0), per(1), per(2)], [ratio(0), ratio(1)])
}

fn rate_text(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 1e6 => format!("{:.2}M msg/s", v / 1e6),
        Some(v) => format!("{:.1}k msg/s", v / 1e3),
        None => String::new(),
    }
}

fn throughput_row(setup: &Setup, workload: String, samples: &[[Sample; 3]]) -> Row {
    let (values, vs) = summarize(samples, Moved::mb_per_s);
    let (msgs, _) = summarize(samples, Moved::msgs_per_s);
    let errors: u64 = samples.iter().flatten().map(|s| s.moved.errors).sum();
    if errors > 0 {
        eprintln!(
            "{}: {workload}: {errors} responses carried errors",
            setup.backend
        );
    }
    Row {
        backend: setup.backend.into(),
        workload,
        unit: "MB/s",
        values,
        extra: [rate_text(msgs[0]), rate_text(msgs[1]), rate_text(msgs[2])],
        compare: Compare::Ratio,
        vs,
    }
}

/// CPU milliseconds per MB of frames forwarded (both directions), over every sample given.
fn cpu_row(setup: &Setup, workload: String, samples: &[[Sample; 3]]) -> Row {
    let per = |t: usize| {
        let cpu: u64 = samples.iter().filter_map(|s| s[t].cpu_ns).sum();
        let mb: f64 = samples.iter().map(|s| s[t].moved.wire as f64 / 1e6).sum();
        (t > 0 && cpu > 0 && mb > 0.0).then(|| cpu as f64 / 1e6 / mb)
    };
    let values = [per(0), per(1), per(2)];
    let delta = |b: Option<f64>| values[2].zip(b).map(|(k, b)| k - b);
    Row {
        backend: setup.backend.into(),
        workload,
        unit: "ms/MB",
        values,
        extra: Default::default(),
        compare: Compare::Delta,
        vs: [None, delta(values[1])],
    }
}

pub fn produce(args: &Args, setup: &Setup, runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for &size in &args.sizes {
        let count = (args.batch_bytes / size.max(1)).max(1);
        let records = wire::batch(count, size);
        for acks in [1i16, -1] {
            let templates: Vec<Bytes> = (0..args.connections.max(1))
                .map(|p| {
                    let v = setup.produce_version;
                    wire::produce(v, "kelp-bench-produce", p as i32, acks, records.clone())
                })
                .collect();
            let spec = work::Produce {
                templates,
                version: setup.produce_version,
                depth: args.depth.max(1),
                msgs_per_request: count as u64,
                payload_per_request: records.len() as u64,
            };
            let samples = rounds(args, setup, |t| {
                runtime.block_on(work::produce(&t.addr, &spec, args.seconds))
            });
            let acks_name = if acks == 1 { "1" } else { "all" };
            let workload = format!(
                "produce {size} B × {count}/request, acks={acks_name}, {}×{} in flight",
                args.connections, args.depth
            );
            rows.push(throughput_row(setup, workload, &samples));
            all.extend(samples);
        }
    }
    rows.push(cpu_row(setup, "CPU per MB forwarded, produce".into(), &all));
    rows
}

pub fn fetch(args: &Args, setup: &Setup, runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    prefill(args, setup);
    let spec = work::Fetch {
        topic: "kelp-bench-fetch".into(),
        partitions: args.fetch_connections.max(1) as i32,
        version: setup.fetch_version,
        max_bytes: args.fetch_bytes,
    };
    let samples = rounds(args, setup, |t| {
        runtime.block_on(work::fetch(&t.addr, &spec, args.seconds))
    });
    let workload = format!(
        "fetch {} KiB responses, {} connection(s)",
        args.fetch_bytes / 1024,
        spec.partitions
    );
    vec![
        throughput_row(setup, workload, &samples),
        cpu_row(setup, "CPU per MB forwarded, fetch".into(), &samples),
    ]
}

/// Writes `--fetch-mib` MiB of 1000-byte messages to the fetch topic, bounded to 60 s.
fn prefill(args: &Args, setup: &Setup) {
    let partitions = args.fetch_connections.max(1);
    let records = wire::batch(32, 1000);
    let per_partition = (args.fetch_mib << 20) / partitions / records.len() + 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut conn = wire::Blocking::connect(&setup.targets[0].addr).expect("connect");
    for p in 0..partitions {
        let frame = wire::produce(
            setup.produce_version,
            "kelp-bench-fetch",
            p as i32,
            1,
            records.clone(),
        );
        for _ in 0..per_partition {
            if std::time::Instant::now() > deadline {
                eprintln!("{}: fetch prefill stopped at the 60 s bound", setup.backend);
                return;
            }
            let response = conn.call(&frame).expect("prefill produce");
            assert_eq!(
                wire::produce_error(&response, setup.produce_version),
                0,
                "prefill"
            );
        }
    }
}

pub fn latency(args: &Args, setup: &Setup) -> Vec<Row> {
    let rate = if setup.backend == "gateway" {
        args.gateway_rate
    } else {
        args.rate
    };
    let template = wire::produce(
        setup.produce_version,
        "kelp-bench-small",
        0,
        1,
        wire::batch(1, 1000),
    );
    let mut merged: Vec<Histogram<u64>> = (0..3)
        .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"))
        .collect();
    let _ = rounds(args, setup, |t| {
        let hist = work::latency(&t.addr, &template, rate, args.seconds);
        let i = setup
            .targets
            .iter()
            .position(|x| x.name == t.name)
            .expect("target");
        merged[i].add(&hist).expect("same bounds");
        Moved::default()
    });
    [("p50", 50.0), ("p99", 99.0), ("p999", 99.9)]
        .into_iter()
        .map(|(name, q)| {
            let v: Vec<f64> = merged
                .iter()
                .map(|h| h.value_at_quantile(q / 100.0) as f64)
                .collect();
            Row {
                backend: setup.backend.into(),
                workload: format!(
                    "latency {name} (produce 1 KB, acks=1, {rate:.0}/s, 1 connection)"
                ),
                unit: "µs",
                values: [Some(v[0]), Some(v[1]), Some(v[2])],
                extra: Default::default(),
                compare: Compare::Delta,
                vs: [Some(v[2] - v[0]), Some(v[2] - v[1])],
            }
        })
        .collect()
}

pub fn idle(args: &Args, setup: &Setup, produce: &Bytes) -> Vec<Row> {
    let n = args.idle_connections.max(1);
    let mut per = [None; 3];
    for (i, t) in setup.targets.iter().enumerate() {
        let before = t.pid.and_then(procs::rss_kib);
        let conns = work::idle_connections(&t.addr, n, produce);
        std::thread::sleep(Duration::from_millis(500));
        let after = t.pid.and_then(procs::rss_kib);
        per[i] = before
            .zip(after)
            .map(|(b, a)| (a as f64 - b as f64) / n as f64);
        drop(conns);
        std::thread::sleep(Duration::from_millis(300));
    }
    let delta = |b: Option<f64>| per[2].zip(b).map(|(k, b)| k - b);
    vec![
        Row {
            backend: setup.backend.into(),
            workload: "RSS at start (kelp after backend discovery)".into(),
            unit: "MiB",
            values: [None, None, setup.kelp_idle_kib.map(|k| k as f64 / 1024.0)],
            extra: Default::default(),
            compare: Compare::Delta,
            vs: [None, None],
        },
        Row {
            backend: setup.backend.into(),
            workload: format!(
                "RSS per idle connection ({n} open, each after ApiVersions + 1 produce)"
            ),
            unit: "KiB",
            values: per,
            extra: Default::default(),
            compare: Compare::Delta,
            vs: [delta(per[0]), delta(per[1])],
        },
    ]
}

/// Runs one produce and one fetch workload against `addr` alone and prints what moved.
pub fn drive(args: &Args, addr: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut conn = wire::Blocking::connect(addr).expect("connect");
    let produce_version = conn
        .max_version(ApiKey::Produce)
        .ok()
        .flatten()
        .unwrap_or(7)
        .min(9);
    let fetch_version = conn
        .max_version(ApiKey::Fetch)
        .ok()
        .flatten()
        .unwrap_or(7)
        .min(12);
    let partitions = args.connections.max(args.fetch_connections).max(1) as i32;
    let _ = conn.call(&wire::create_topic("kelp-bench-drive", partitions));
    let size = args.sizes.first().copied().unwrap_or(1000).max(1);
    let count = (args.batch_bytes / size).max(1);
    let records = wire::batch(count, size);
    let spec = work::Produce {
        templates: (0..args.connections.max(1))
            .map(|p| {
                wire::produce(
                    produce_version,
                    "kelp-bench-drive",
                    p as i32,
                    1,
                    records.clone(),
                )
            })
            .collect(),
        version: produce_version,
        depth: args.depth.max(1),
        msgs_per_request: count as u64,
        payload_per_request: records.len() as u64,
    };
    let moved = runtime.block_on(work::produce(addr, &spec, args.seconds));
    println!("produce: {moved:?} = {:.0} MB/s", moved.mb_per_s());
    let spec = work::Fetch {
        topic: "kelp-bench-drive".into(),
        partitions: args.fetch_connections.max(1) as i32,
        version: fetch_version,
        max_bytes: args.fetch_bytes,
    };
    let moved = runtime.block_on(work::fetch(addr, &spec, args.seconds));
    println!("fetch: {moved:?} = {:.0} MB/s", moved.mb_per_s());
}
