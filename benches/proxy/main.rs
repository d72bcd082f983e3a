//! Proxy benchmark (not a test): the same workloads against the backend directly, through an L4
//! relay (haproxy) and through kelp, in alternating rounds, printed as one table of ratios.
//! Backends: the synthetic in-memory backend (`examples/synthetic_backend`) and, with `--gateway`,
//! a running SeaweedFS Kafka gateway. `scripts/bench` builds everything and runs this; see
//! docs/PERFORMANCE.md.

mod procs;
mod report;
mod suites;
mod wire;
mod work;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use kafka_protocol::messages::ApiKey;

use procs::{free_port, Proc};
use report::{Compare, Row};
use wire::Blocking;

#[derive(Parser, Debug, Clone)]
#[command(about = "kelp vs direct vs an L4 relay, on loopback")]
pub struct Args {
    /// The kelp binary (release build).
    #[arg(long, env = "KELP_BIN")]
    kelp_bin: Option<PathBuf>,
    /// The synthetic backend binary (`cargo build --release --example synthetic_backend`).
    #[arg(long, env = "KELP_SYNTHETIC_BIN")]
    synthetic_bin: Option<PathBuf>,
    /// haproxy, the L4 relay baseline.
    #[arg(long, default_value = "haproxy")]
    haproxy_bin: String,
    /// A/B aid: put a kelp built from another commit in haproxy's place (its column then compares
    /// kelp with that build, in the same alternating rounds).
    #[arg(long)]
    baseline_kelp_bin: Option<PathBuf>,
    /// A `--config` file for the kelp under test only (not the baseline): with
    /// `--baseline-kelp-bin` set to the same binary, an A/B of a config such as an `[access]`
    /// section (benches/proxy/access-20.toml) against none.
    #[arg(long)]
    kelp_config: Option<PathBuf>,
    /// A running SeaweedFS Kafka gateway (host:port) to benchmark as a second backend.
    #[arg(long, env = "KELP_BENCH_GATEWAY")]
    gateway: Option<String>,
    /// Skip the synthetic backend.
    #[arg(long)]
    no_synthetic: bool,
    /// Profiling aid: drive only this address (already running, e.g. a kelp under perf or
    /// strace) with the first produce size at acks=1 and then fetch, and print what moved.
    #[arg(long)]
    drive: Option<String>,
    /// Workloads to run (idle, produce, fetch, latency).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "idle,produce,fetch,latency"
    )]
    workloads: Vec<String>,
    /// Seconds per measurement (one target, one round).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds; each round runs every target once, in a rotated order.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Produce message sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    sizes: Vec<usize>,
    /// Approximate produce request size: messages per request = max(1, this / size).
    #[arg(long, default_value_t = 32 * 1024)]
    batch_bytes: usize,
    /// Produce connections (one partition each).
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Produce requests in flight per connection.
    #[arg(long, default_value_t = 8)]
    depth: usize,
    /// Fetch connections (one partition each, one fetch in flight).
    #[arg(long, default_value_t = 2)]
    fetch_connections: usize,
    /// Bytes per fetch response (max_bytes and partition_max_bytes).
    #[arg(long, default_value_t = 1 << 20)]
    fetch_bytes: i32,
    /// MiB written to the fetch topic before the fetch runs.
    #[arg(long, default_value_t = 64)]
    fetch_mib: usize,
    /// Produce requests per second in the latency run (synthetic backend).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Produce requests per second in the latency run (gateway).
    #[arg(long, default_value_t = 100.0)]
    gateway_rate: f64,
    /// Connections opened for the idle-connection memory run.
    #[arg(long, default_value_t = 1000)]
    idle_connections: usize,
    /// The command line to print with the table.
    #[arg(long, default_value = "")]
    command: String,
    /// Extra version text to print (toolchain, gateway).
    #[arg(long, default_value = "")]
    versions: String,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One way of reaching the backend.
pub struct Target {
    pub name: &'static str,
    pub addr: String,
    /// The process whose memory and CPU are measured (None: not ours to measure).
    pub pid: Option<u32>,
}

/// Everything started for one backend.
pub struct Setup {
    pub backend: &'static str,
    pub targets: Vec<Target>,
    pub produce_version: i16,
    pub fetch_version: i16,
    pub kelp_idle_kib: Option<u64>,
    pub kelp_pid: u32,
    _procs: Vec<Proc>,
}

fn main() {
    let args = Args::parse();
    // `cargo test --all-targets` runs bench binaries too; measure only under `cargo bench`.
    if !args.bench {
        println!(
            "proxy benchmark: skipped (run it with scripts/bench or `cargo bench --bench proxy`)"
        );
        return;
    }
    if let Some(addr) = &args.drive {
        suites::drive(&args, addr);
        return;
    }
    let (Some(kelp), Some(synthetic)) = (args.kelp_bin.clone(), args.synthetic_bin.clone()) else {
        println!("proxy bench: set KELP_BIN and KELP_SYNTHETIC_BIN (scripts/bench does); skipping");
        return;
    };
    let dir = std::env::temp_dir().join(format!("kelp-proxy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let started = Instant::now();
    println!(
        "command: {}",
        if args.command.is_empty() {
            "cargo bench --bench proxy"
        } else {
            &args.command
        }
    );
    println!(
        "versions: {}; {}; kafka-protocol 0.18 load generator; {}",
        procs::version_line(kelp.to_str().unwrap_or("kelp"), "--version"),
        procs::version_line(&args.haproxy_bin, "-v"),
        args.versions
    );
    println!(
        "machine: {} CPUs, load average {} at start; {} s per measurement, {} rounds",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        procs::load_average(),
        args.seconds,
        args.rounds
    );
    let mut rows = Vec::new();
    if !args.no_synthetic {
        let setup = start_synthetic(&args, &kelp, &synthetic, &dir);
        rows.extend(run_suite(&args, &setup));
    }
    if let Some(gateway) = &args.gateway {
        let setup = start_gateway(&args, &kelp, gateway, &dir);
        rows.extend(run_suite(&args, &setup));
    }
    println!();
    let middle = if args.baseline_kelp_bin.is_some() {
        "kelp baseline"
    } else {
        "haproxy"
    };
    report::print_table(&rows, middle);
    if !args.no_synthetic {
        report::print_targets(&rows, "synthetic");
    }
    println!(
        "\nload average {} at the end; {:.0} s in all",
        procs::load_average(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn start_haproxy(args: &Args, dir: &Path, listen: &str, server: &str) -> Proc {
    if let Some(baseline) = &args.baseline_kelp_bin {
        let mut kelp = start_kelp(baseline, None, dir, listen, server);
        kelp.name = "haproxy";
        return kelp;
    }
    let config = procs::haproxy_config(dir, listen, server);
    let mut cmd = Command::new(&args.haproxy_bin);
    cmd.arg("-db").arg("-f").arg(&config);
    Proc::spawn("haproxy", &mut cmd, &dir.join("haproxy.log"))
}

fn start_kelp(kelp: &Path, config: Option<&Path>, dir: &Path, listen: &str, backend: &str) -> Proc {
    let log = dir.join(format!("kelp-{}.log", listen.replace(':', "-")));
    let mut cmd = Command::new(kelp);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(["--listen", listen, "--backend", backend, "--node-id", "1"])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "warn");
    Proc::spawn("kelp", &mut cmd, &log)
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn start_synthetic(args: &Args, kelp: &Path, synthetic: &Path, dir: &Path) -> Setup {
    let (direct, relayed, relay, kelp_port) = (free_port(), free_port(), free_port(), free_port());
    let mut cmd = Command::new(synthetic);
    cmd.args(["--listen", &addr(direct)])
        .args(["--listen", &format!("{}={}", addr(relayed), addr(relay))])
        .args(["--retain-bytes", &(128usize << 20).to_string()])
        .args(["--max-seconds", "7200"]);
    let backend = Proc::spawn("synthetic backend", &mut cmd, &dir.join("synthetic.log"));
    let backend_pid = backend.pid();
    assert!(
        procs::wait_listening(&addr(direct), Duration::from_secs(10)),
        "synthetic backend did not start"
    );
    let haproxy = start_haproxy(args, dir, &addr(relay), &addr(relayed));
    let kelp_proc = start_kelp(
        kelp,
        args.kelp_config.as_deref(),
        dir,
        &addr(kelp_port),
        &addr(direct),
    );
    let targets = vec![
        Target {
            name: "direct",
            addr: addr(direct),
            pid: Some(backend_pid),
        },
        Target {
            name: "haproxy",
            addr: addr(relay),
            pid: Some(haproxy.pid()),
        },
        Target {
            name: "kelp",
            addr: addr(kelp_port),
            pid: Some(kelp_proc.pid()),
        },
    ];
    finish_setup(
        args,
        "synthetic",
        targets,
        vec![backend, haproxy, kelp_proc],
    )
}

fn start_gateway(args: &Args, kelp: &Path, gateway: &str, dir: &Path) -> Setup {
    let (relay, kelp_port) = (free_port(), free_port());
    let haproxy = start_haproxy(args, dir, &addr(relay), gateway);
    let kelp_proc = start_kelp(
        kelp,
        args.kelp_config.as_deref(),
        dir,
        &addr(kelp_port),
        gateway,
    );
    let targets = vec![
        Target {
            name: "direct",
            addr: gateway.to_string(),
            pid: None,
        },
        Target {
            name: "haproxy",
            addr: addr(relay),
            pid: Some(haproxy.pid()),
        },
        Target {
            name: "kelp",
            addr: addr(kelp_port),
            pid: Some(kelp_proc.pid()),
        },
    ];
    finish_setup(args, "gateway", targets, vec![haproxy, kelp_proc])
}

/// Waits for every target, settles the API versions all three share and creates the topics.
fn finish_setup(
    args: &Args,
    backend: &'static str,
    targets: Vec<Target>,
    mut procs: Vec<Proc>,
) -> Setup {
    let mut produce_version = 9;
    let mut fetch_version = 12;
    for t in &targets {
        assert!(
            procs::wait_listening(&t.addr, Duration::from_secs(15)),
            "{} did not start",
            t.name
        );
        // kelp answers ApiVersions only once it knows the backend's ranges: retry briefly.
        let deadline = Instant::now() + Duration::from_secs(15);
        let (p, f) = loop {
            let versions = Blocking::connect(&t.addr).and_then(|mut c| {
                Ok((
                    c.max_version(ApiKey::Produce)?,
                    c.max_version(ApiKey::Fetch)?,
                ))
            });
            match versions {
                Ok((Some(p), Some(f))) => break (p, f),
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                other => panic!("{} does not advertise Produce and Fetch: {other:?}", t.name),
            }
        };
        produce_version = produce_version.min(p);
        fetch_version = fetch_version.min(f);
    }
    for p in &mut procs {
        p.check_running();
    }
    let kelp_pid = targets[2].pid.expect("kelp pid");
    std::thread::sleep(Duration::from_millis(300));
    let kelp_idle_kib = procs::rss_kib(kelp_pid);
    let direct = &targets[0].addr;
    let mut conn = Blocking::connect(direct).expect("connect to the backend");
    for (topic, partitions) in [
        ("kelp-bench-produce", args.connections.max(1)),
        ("kelp-bench-fetch", args.fetch_connections.max(1)),
        ("kelp-bench-small", 1),
    ] {
        conn.call(&wire::create_topic(topic, partitions as i32))
            .expect("CreateTopics");
    }
    println!(
        "{backend}: Produce v{produce_version}, Fetch v{fetch_version}; kelp RSS at start {} KiB",
        kelp_idle_kib.unwrap_or(0)
    );
    Setup {
        backend,
        targets,
        produce_version,
        fetch_version,
        kelp_idle_kib,
        kelp_pid,
        _procs: procs,
    }
}

/// A produce frame that must succeed before the suite starts (a new topic may take a moment).
fn wait_produce_ok(addr: &str, frame: &bytes::Bytes, version: i16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = Blocking::connect(addr).expect("connect");
    loop {
        let response = conn.call(frame).expect("produce");
        let error = wire::produce_error(&response, version);
        if error == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "produce keeps failing with error {error}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_suite(args: &Args, setup: &Setup) -> Vec<Row> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    let small = wire::produce(
        setup.produce_version,
        "kelp-bench-small",
        0,
        1,
        wire::batch(1, 100),
    );
    wait_produce_ok(&setup.targets[0].addr, &small, setup.produce_version);
    for w in &args.workloads {
        match w.as_str() {
            "idle" => rows.extend(suites::idle(args, setup, &small)),
            "produce" => rows.extend(suites::produce(args, setup, &runtime)),
            "fetch" => rows.extend(suites::fetch(args, setup, &runtime)),
            "latency" => rows.extend(suites::latency(args, setup)),
            other => eprintln!("unknown workload {other}; skipped"),
        }
    }
    let peak = procs::status_kib(setup.kelp_pid, "VmHWM");
    rows.push(Row {
        backend: setup.backend.into(),
        workload: "RSS peak (VmHWM) after the run".into(),
        unit: "MiB",
        values: [None, None, peak.map(|k| k as f64 / 1024.0)],
        extra: Default::default(),
        compare: Compare::Delta,
        vs: [None, None],
    });
    rows
}
