//! Shared support for kelp's integration tests: a real SeaweedFS stack (one per test binary),
//! the real kelp binary in front of it, and real Kafka clients (librdkafka through `rdkafka`,
//! and confluent-kafka / kafka-python from the project's venv in child processes).
//!
//! Include with `mod support;` from a file in `tests/`. Everything listens on 127.0.0.1 only.
//! Every wait here is bounded and fails with a message naming what it waited for.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

// ------------------------------------------------------------------------------------------------
// waiting

/// Polls `cond` every 50 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------------------------------------
// paths and the venv

struct Env {
    venv: PathBuf,
    python: PathBuf,
    weed: PathBuf,
}

fn env_paths() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = format!("{REPO}/scripts/lib.sh");
        let read = || {
            let out = Command::new("bash")
                .args(["-c", r#"source "$0" && printf '%s\n%s\n%s\n' "$KELP_VENV" "$KELP_PYTHON" "$KELP_WEED""#, &lib])
                .output()
                .expect("run bash to source scripts/lib.sh");
            assert!(out.status.success(), "sourcing {lib} failed: {}", String::from_utf8_lossy(&out.stderr));
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut l = s.lines().map(PathBuf::from);
            Env { venv: l.next().unwrap(), python: l.next().unwrap(), weed: l.next().unwrap() }
        };
        let env = read();
        if !env.python.exists() || !env.weed.exists() || !env.venv.join(".kelp-complete").exists() {
            eprintln!("support: the venv {} is missing: running scripts/setup", env.venv.display());
            let st = Command::new(format!("{REPO}/scripts/setup"))
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .status()
                .expect("run scripts/setup");
            assert!(st.success(), "scripts/setup failed ({st})");
        }
        env
    })
}

/// The venv's python (built by scripts/setup; run automatically when missing).
pub fn python_bin() -> &'static Path {
    &env_paths().python
}

/// The venv's weed binary (SeaweedFS 4.48), for tests that run a SeaweedFS process of their own.
pub fn weed_bin() -> &'static Path {
    &env_paths().weed
}

/// A scratch directory for this test binary, under cargo's CARGO_TARGET_TMPDIR.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().ok();
        let stem = exe
            .as_ref()
            .and_then(|p| p.file_stem())
            .map(|s| {
                s.to_string_lossy()
                    .split('-')
                    .next()
                    .unwrap_or("test")
                    .to_string()
            })
            .unwrap_or_else(|| "test".into());
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // Remove what earlier runs of this binary left (their stacks are stopped: no stack.json).
        if let Ok(rd) = fs::read_dir(&base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{stem}-"))
                    && !e.path().join("stack").join("stack.json").exists()
                {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("{stem}-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

// ------------------------------------------------------------------------------------------------
// ports

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// A free 127.0.0.1 port from 26000-32699: below the ephemeral range (so outgoing connections
/// never take it) and apart from the range scripts/stack uses. Never the same port twice per process.
pub fn free_port() -> u16 {
    static HANDED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    static SEED: AtomicUsize = AtomicUsize::new(0);
    let handed = HANDED.get_or_init(|| Mutex::new(HashSet::new()));
    let mut x = SEED.fetch_add(0x9E37_79B9, Ordering::Relaxed) as u64
        ^ (std::process::id() as u64) << 32
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 26000 + (x % 6700) as u16;
        let mut h = handed.lock().unwrap();
        if !h.contains(&port) && port_is_free(port) {
            h.insert(port);
            return port;
        }
    }
    panic!("no free port in 26000-32699 after 2000 tries");
}

// ------------------------------------------------------------------------------------------------
// the SeaweedFS stack

/// A running SeaweedFS stack (weed server + Schema Registry stub + Kafka gateway) from scripts/stack.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The gateway, "127.0.0.1:P" (it advertises port 9093 in Metadata, so clients go through kelp).
    pub kafka: String,
    /// The filer's HTTP API, "http://127.0.0.1:F".
    pub filer: String,
    /// The master, "127.0.0.1:M".
    pub master: String,
    /// The stack's directory (logs: server.log, gateway.log, schema-registry.log).
    pub dir: PathBuf,
    pub pids: Vec<u32>,
}

static STACK: OnceLock<Result<Stack, String>> = OnceLock::new();

/// One stack per test binary, started on first use. A watchdog stops it when this process exits.
pub fn stack() -> &'static Stack {
    match STACK.get_or_init(start_stack) {
        Ok(s) => s,
        Err(e) => panic!("the SeaweedFS stack could not start:\n{e}"),
    }
}

/// Starts the stack; a start that fails (a cold or loaded machine can keep SeaweedFS's volume
/// server from registering in time) is stopped and tried once more on fresh ports.
fn start_stack() -> Result<Stack, String> {
    match start_stack_in(&scratch_dir().join("stack")) {
        Ok(stack) => Ok(stack),
        Err(first) => {
            eprintln!("support: stack start failed, retrying once on fresh ports:\n{first}");
            let _ = Command::new(&env_paths().python)
                .arg(format!("{REPO}/scripts/stack"))
                .args(["stop", "--dir"])
                .arg(scratch_dir().join("stack"))
                .env("KELP_WEED", &env_paths().weed)
                .output();
            start_stack_in(&scratch_dir().join("stack-retry"))
                .map_err(|second| format!("{first}\nretry:\n{second}"))
        }
    }
}

fn start_stack_in(dir: &Path) -> Result<Stack, String> {
    let env = env_paths();
    let t0 = Instant::now();
    let out = Command::new(&env.python)
        .arg(format!("{REPO}/scripts/stack"))
        .args(["start", "--dir"])
        .arg(dir)
        .args(["--owner-pid", &std::process::id().to_string()])
        .env("KELP_WEED", &env.weed)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running scripts/stack: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "scripts/stack start failed ({}):\n{stderr}",
            out.status
        ));
    }
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let field =
        |k: &str| json_str(&line, k).ok_or_else(|| format!("no {k:?} in stack JSON: {line}"));
    let s = Stack {
        kafka: field("kafka")?,
        filer: field("filer")?,
        master: field("master")?,
        dir: PathBuf::from(field("dir")?),
        pids: json_u32_array(&line, "pids").unwrap_or_default(),
    };
    eprintln!(
        "support: stack up in {:.1} s: kafka {} filer {} dir {}",
        t0.elapsed().as_secs_f64(),
        s.kafka,
        s.filer,
        s.dir.display()
    );
    Ok(s)
}

/// The string value of `"key":"value"` in a flat JSON object (enough for scripts/stack's line).
fn json_str(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let rest = json[json.find(&pat)? + pat.len()..].trim_start();
    let rest = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
    None
}

fn json_u32_array(json: &str, key: &str) -> Option<Vec<u32>> {
    let pat = format!("\"{key}\":");
    let rest = json[json.find(&pat)? + pat.len()..]
        .trim_start()
        .strip_prefix('[')?;
    let body = &rest[..rest.find(']')?];
    body.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().ok())
        .collect()
}

/// Registers a child process with the stack's watchdog (when this binary has a stack), so it is
/// stopped with the stack even if this test binary dies without running destructors.
pub fn register_child(pid: u32) {
    let Some(Ok(stack)) = STACK.get() else {
        return;
    };
    let Some(start) = proc_starttime(pid) else {
        return;
    };
    let path = stack.dir.join("children");
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{pid} {start}");
    }
}

fn proc_starttime(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)
        .map(str::to_string)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Waits for a child to exit, at most `timeout`.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ------------------------------------------------------------------------------------------------
// kelp

/// The kelp binary the tests run: this build's, or `KELP_TEST_BIN` (another build's, to measure a
/// fault test against it, e.g. `scripts/partition-figure --base REV`).
pub fn kelp_bin() -> String {
    std::env::var("KELP_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kelp").to_string())
}

static KELP_SEQ: AtomicUsize = AtomicUsize::new(0);

/// The real kelp binary, started as a child in front of a backend. Killed on drop.
pub struct Kelp {
    child: Option<Child>,
    addr: String,
    metrics_addr: String,
    args: Vec<String>,
    log: PathBuf,
    /// Runs as this uid (and gid) instead of the test's own user (`start_as`).
    uid: Option<u32>,
}

impl Kelp {
    /// kelp in front of this binary's stack, with `extra` arguments appended.
    pub fn start(extra: &[&str]) -> Kelp {
        Kelp::start_with_backend(&stack().kafka, extra)
    }

    /// kelp in front of any backend `host:port`.
    pub fn start_with_backend(backend: &str, extra: &[&str]) -> Kelp {
        Kelp::launch(backend, extra, None)
    }

    /// kelp in front of this binary's stack running as user `uid` (gid `uid`, no supplementary
    /// groups), from a copy of its binary that user can read (see `binary_for_others`). Needs root;
    /// lets a test match this kelp's own packets (`iptables -m owner --uid-owner`).
    pub fn start_as(uid: u32, extra: &[&str]) -> Kelp {
        Kelp::launch(&stack().kafka, extra, Some(uid))
    }

    fn launch(backend: &str, extra: &[&str], uid: Option<u32>) -> Kelp {
        let addr = format!("127.0.0.1:{}", free_port());
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "--listen".into(),
            addr.clone(),
            "--advertised-host".into(),
            "127.0.0.1".into(),
            "--backend".into(),
            backend.into(),
            "--node-id".into(),
            "1".into(),
            "--metrics-listen".into(),
            metrics_addr.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let n = KELP_SEQ.fetch_add(1, Ordering::Relaxed);
        let log = scratch_dir().join(format!("kelp-{n}.log"));
        let mut k = Kelp {
            child: None,
            addr,
            metrics_addr,
            args,
            log,
            uid,
        };
        k.spawn();
        k
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open kelp log");
        let mut cmd = match self.uid {
            None => Command::new(kelp_bin()),
            Some(uid) => {
                use std::os::unix::process::CommandExt;
                let mut c = Command::new(binary_for_others());
                // std drops the supplementary groups too when root changes the uid.
                c.uid(uid).gid(uid);
                c
            }
        };
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", kelp_bin()));
        register_child(child.id());
        self.child = Some(child);
        let sock: SocketAddr = self.addr.parse().unwrap();
        let start = Instant::now();
        loop {
            if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(st)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                panic!(
                    "kelp exited during start ({st}); args {:?}\nlog {}:\n{}",
                    self.args,
                    self.log.display(),
                    tail(&self.log, 40)
                );
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!(
                    "kelp did not accept on {} within 30 s; log {}:\n{}",
                    self.addr,
                    self.log.display(),
                    tail(&self.log, 40)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Client address, "127.0.0.1:P" (use as bootstrap.servers).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// /metrics, /healthz, /readyz listener, "127.0.0.1:P".
    pub fn metrics_addr(&self) -> &str {
        &self.metrics_addr
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (stdout and stderr of every run of this Kelp).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (graceful drain); SIGKILL after `timeout`. Returns the exit status if it exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        signal(c.id(), "-TERM");
        match wait_child(&mut c, timeout) {
            Some(st) => Some(st),
            None => {
                let _ = c.kill();
                let _ = c.wait();
                None
            }
        }
    }

    /// Stops kelp if it runs (SIGTERM, SIGKILL after 10 s) and starts it again with the same
    /// arguments on the same ports; returns when its client port accepts.
    pub fn restart(&mut self) {
        self.terminate(Duration::from_secs(10));
        self.spawn();
    }

    /// Starts kelp again (after `kill9` or `terminate`) with the same arguments and ports.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "kelp still runs; use restart()");
        self.spawn();
    }

    /// GET http://<metrics_addr><path>: (status, body). Plain HTTP/1.0 over a socket, bounded.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(&self.metrics_addr, path)
    }
}

impl Drop for Kelp {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!("support: kelp log: {}", self.log.display());
        }
    }
}

/// The kelp binary where any user can reach it: cargo's target dir may sit in a home directory
/// other users cannot enter. One per test process, in the system temp dir; those left by test
/// processes that are gone are removed first.
fn binary_for_others() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let tmp = std::env::temp_dir();
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("kelp-test-bin-") {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = tmp.join(format!("kelp-test-bin-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the kelp copy's dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod 755");
        let bin = dir.join("kelp");
        // A hard link where the temp dir shares the target dir's file system, else a copy.
        if fs::hard_link(kelp_bin(), &bin).is_err() {
            fs::copy(kelp_bin(), &bin).expect("copy the kelp binary");
        }
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod 755");
        bin
    })
}

/// A bounded HTTP/1.0 GET: (status, body).
/// The value of the first /metrics sample of `kelp` that starts with `series` (0 if none).
pub fn metric(k: &Kelp, series: &str) -> f64 {
    let (_, body) = k.http_get("/metrics");
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let sock: SocketAddr = addr.parse().expect("addr");
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .unwrap_or_else(|e| panic!("read http://{addr}{path}: {e}"));
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

// ------------------------------------------------------------------------------------------------
// rdkafka helpers

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    c
}

/// Creates a topic through `bootstrap` (AdminClient) and waits (bounded) until Metadata shows it
/// with `partitions` partitions. An existing topic with that many partitions is fine.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(20)))
        .request_timeout(Some(Duration::from_secs(30)));
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let res = futures::executor::block_on(admin.create_topics([&topic], &opts));
    match res {
        Ok(v) => {
            for r in v {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((t, code)) => panic!("CreateTopics {t} via {bootstrap}: {code:?}"),
                }
            }
        }
        Err(e) => panic!("CreateTopics {name} via {bootstrap}: {e}"),
    }
    let mut last = String::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        match admin
            .inner()
            .fetch_metadata(Some(name), Duration::from_secs(5))
        {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == name) {
                    if t.error().is_none() && t.partitions().len() == partitions as usize {
                        return;
                    }
                    last = format!("error {:?}, {} partitions", t.error(), t.partitions().len());
                }
            }
            Err(e) => last = e.to_string(),
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("topic {name} not visible with {partitions} partitions via {bootstrap} within 30 s (last: {last})");
}

/// Metadata through `bootstrap` (all topics, or one).
pub fn metadata(bootstrap: &str, topic: Option<&str>) -> Metadata {
    let p: BaseProducer = client_config(bootstrap).create().expect("producer");
    p.client()
        .fetch_metadata(topic, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("Metadata via {bootstrap}: {e}"))
}

struct DeliveryCtx {
    acked: AtomicUsize,
    delivered: Mutex<Vec<Delivered>>,
    errors: Mutex<Vec<String>>,
}

impl ClientContext for DeliveryCtx {}

impl ProducerContext for DeliveryCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                self.delivered.lock().unwrap().push(Delivered {
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Err((e, _)) => self.errors.lock().unwrap().push(e.to_string()),
        }
    }
}

/// One acknowledged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct ProduceReport {
    pub acked: usize,
    pub delivered: Vec<Delivered>,
    pub errors: Vec<String>,
}

impl ProduceReport {
    /// Acked messages per partition.
    pub fn by_partition(&self) -> BTreeMap<i32, usize> {
        let mut m = BTreeMap::new();
        for d in &self.delivered {
            *m.entry(d.partition).or_insert(0) += 1;
        }
        m
    }
}

/// The payload `produce` gives message `i` of `topic`.
pub fn payload(topic: &str, i: usize) -> String {
    format!("{topic}/{i:07}")
}

/// Produces `n` messages (key "k<i>", payload `payload(topic, i)`) and returns how many were acked.
pub fn produce(bootstrap: &str, topic: &str, n: usize) -> usize {
    produce_with(bootstrap, topic, n, &[]).acked
}

/// Like `produce`, with extra producer settings, returning every delivery report.
/// Bounded: gives up 120 s after the start (the report then says fewer acked).
pub fn produce_with(
    bootstrap: &str,
    topic: &str,
    n: usize,
    config: &[(&str, &str)],
) -> ProduceReport {
    let mut cfg = client_config(bootstrap);
    cfg.set("linger.ms", "5").set("message.timeout.ms", "60000");
    for (k, v) in config {
        cfg.set(*k, *v);
    }
    let ctx = DeliveryCtx {
        acked: AtomicUsize::new(0),
        delivered: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
    };
    let producer: BaseProducer<DeliveryCtx> = cfg.create_with_context(ctx).expect("producer");
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..n {
        let key = format!("k{i}");
        let value = payload(topic, i);
        let mut rec = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    if Instant::now() > deadline {
                        panic!("produce to {topic} via {bootstrap}: queue still full at message {i} after 120 s ({e})");
                    }
                    rec = r;
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
        if i % 256 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let _ = producer.flush(left);
    let ctx = producer.context();
    let mut delivered = std::mem::take(&mut *ctx.delivered.lock().unwrap());
    delivered.sort_by_key(|d| (d.partition, d.offset));
    let errors = std::mem::take(&mut *ctx.errors.lock().unwrap());
    ProduceReport {
        acked: ctx.acked.load(Ordering::Relaxed),
        delivered,
        errors,
    }
}

// ------------------------------------------------------------------------------------------------
// consumers

/// One consumed message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct ConsumerState {
    records: Vec<Record>,
    /// Current assignment (topic, partition), sorted.
    assignment: Vec<(String, i32)>,
    /// How many times an assignment was received (rebalances seen).
    assignments: usize,
    errors: Vec<String>,
    closed: bool,
}

/// What a consumer (in-process or child) saw so far; shared with its worker.
#[derive(Clone, Default)]
pub struct Consumed(Arc<Mutex<ConsumerState>>);

impl Consumed {
    pub fn records(&self) -> Vec<Record> {
        self.0.lock().unwrap().records.clone()
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().records.len()
    }
    /// Current assignment: partitions of any topic, sorted.
    pub fn partitions(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .0
            .lock()
            .unwrap()
            .assignment
            .iter()
            .map(|(_, p)| *p)
            .collect();
        v.sort();
        v
    }
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.0.lock().unwrap().assignment.clone()
    }
    /// Number of assignments received so far (one per completed rebalance this member took part in).
    pub fn assignments_seen(&self) -> usize {
        self.0.lock().unwrap().assignments
    }
    pub fn errors(&self) -> Vec<String> {
        self.0.lock().unwrap().errors.clone()
    }
    pub fn closed(&self) -> bool {
        self.0.lock().unwrap().closed
    }
    fn set_assignment(&self, mut a: Vec<(String, i32)>) {
        a.sort();
        let mut s = self.0.lock().unwrap();
        s.assignment = a;
        s.assignments += 1;
    }
}

struct RebalanceCtx {
    consumed: Consumed,
}

impl ClientContext for RebalanceCtx {}

impl ConsumerContext for RebalanceCtx {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.consumed.set_assignment(tpl_pairs(tpl)),
            Rebalance::Revoke(_) => self.consumed.set_assignment(Vec::new()),
            Rebalance::Error(e) => self
                .consumed
                .0
                .lock()
                .unwrap()
                .errors
                .push(format!("rebalance: {e}")),
        }
    }
}

fn tpl_pairs(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// An rdkafka `BaseConsumer` in a thread: subscribes `topics` in group `group_id`, records every
/// message and its assignment, auto-commits every second. `stop()` commits and closes (LeaveGroup).
pub struct GroupConsumer {
    pub consumed: Consumed,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    name: String,
}

impl GroupConsumer {
    pub fn start(
        bootstrap: &str,
        group_id: &str,
        client_id: &str,
        topics: &[&str],
    ) -> GroupConsumer {
        GroupConsumer::start_with(bootstrap, group_id, client_id, topics, &[])
    }

    /// `config` overrides the defaults (auto.offset.reset=earliest, enable.auto.commit=true,
    /// auto.commit.interval.ms=1000, session.timeout.ms=10000, heartbeat.interval.ms=1000).
    pub fn start_with(
        bootstrap: &str,
        group_id: &str,
        client_id: &str,
        topics: &[&str],
        config: &[(&str, &str)],
    ) -> GroupConsumer {
        let mut cfg = client_config(bootstrap);
        cfg.set("group.id", group_id)
            .set("client.id", client_id)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.partition.eof", "false");
        for (k, v) in config {
            cfg.set(*k, *v);
        }
        let consumed = Consumed::default();
        let consumer: BaseConsumer<RebalanceCtx> = cfg
            .create_with_context(RebalanceCtx {
                consumed: consumed.clone(),
            })
            .unwrap_or_else(|e| panic!("consumer {client_id}: {e}"));
        consumer
            .subscribe(topics)
            .unwrap_or_else(|e| panic!("subscribe {topics:?}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (consumed.clone(), stop.clone());
        let name = format!("{group_id}/{client_id}");
        let thread = thread::Builder::new()
            .name(format!("consumer-{client_id}"))
            .spawn(move || consume_loop(consumer, c2, s2))
            .expect("spawn consumer thread");
        GroupConsumer {
            consumed,
            stop,
            thread: Some(thread),
            name,
        }
    }

    pub fn records(&self) -> Vec<Record> {
        self.consumed.records()
    }
    pub fn count(&self) -> usize {
        self.consumed.count()
    }
    pub fn partitions(&self) -> Vec<i32> {
        self.consumed.partitions()
    }

    /// Commits what was consumed, closes the consumer (LeaveGroup), joins the thread (bounded, 30 s).
    pub fn stop(mut self) -> Vec<Record> {
        self.shutdown(Duration::from_secs(30));
        assert!(
            self.consumed.closed(),
            "consumer {} did not close within 30 s",
            self.name
        );
        self.consumed.records()
    }

    fn shutdown(&mut self, timeout: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let start = Instant::now();
            while !t.is_finished() && start.elapsed() < timeout {
                thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                if let Err(p) = t.join() {
                    std::panic::resume_unwind(p);
                }
            }
        }
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(30));
    }
}

fn consume_loop(consumer: BaseConsumer<RebalanceCtx>, consumed: Consumed, stop: Arc<AtomicBool>) {
    let max_life = Instant::now() + Duration::from_secs(1800);
    while !stop.load(Ordering::SeqCst) && Instant::now() < max_life {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                let r = Record {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                };
                consumed.0.lock().unwrap().records.push(r);
            }
            Some(Err(e)) => consumed.0.lock().unwrap().errors.push(e.to_string()),
        }
    }
    let r: KafkaResult<()> = consumer.commit_consumer_state(CommitMode::Sync);
    if let Err(e) = r {
        // "no offset to commit" is normal for a member that consumed nothing
        consumed
            .0
            .lock()
            .unwrap()
            .errors
            .push(format!("final commit: {e}"));
    }
    // close (LeaveGroup), bounded; drop would otherwise loop without a bound
    if consumer.close_queue().is_ok() {
        let start = Instant::now();
        while !consumer.closed() && start.elapsed() < Duration::from_secs(25) {
            consumer.poll(Duration::from_millis(100));
        }
    }
    if consumer.closed() {
        consumed.0.lock().unwrap().closed = true;
        drop(consumer);
    } else {
        consumed
            .0
            .lock()
            .unwrap()
            .errors
            .push("close did not finish within 25 s".into());
        std::mem::forget(consumer); // never block the test on librdkafka's unbounded drop
    }
}

/// Which Python client a `PyConsumer` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyClient {
    /// confluent-kafka (librdkafka)
    Confluent,
    /// kafka-python (pure Python; other JoinGroup/LeaveGroup versions)
    KafkaPython,
}

/// A consumer-group member in a child process (tests/support/consumer.py in the venv), so that
/// it can be killed for real (`kill9`: no LeaveGroup, no final commit) or stopped cleanly
/// (`stop`: commit, close, LeaveGroup).
pub struct PyConsumer {
    pub consumed: Consumed,
    child: Option<Child>,
    reader: Option<JoinHandle<()>>,
    log: PathBuf,
}

impl PyConsumer {
    pub fn start(
        client: PyClient,
        bootstrap: &str,
        group_id: &str,
        client_id: &str,
        topics: &[&str],
    ) -> PyConsumer {
        PyConsumer::start_with(client, bootstrap, group_id, client_id, topics, &[])
    }

    /// `config`: client settings as `name=value` (confluent-kafka names for `Confluent`,
    /// KafkaConsumer keyword names for `KafkaPython`).
    pub fn start_with(
        client: PyClient,
        bootstrap: &str,
        group_id: &str,
        client_id: &str,
        topics: &[&str],
        config: &[(&str, &str)],
    ) -> PyConsumer {
        let n = KELP_SEQ.fetch_add(1, Ordering::Relaxed);
        let log = scratch_dir().join(format!("pyconsumer-{client_id}-{n}.log"));
        let mut cmd = Command::new(python_bin());
        cmd.arg(format!("{REPO}/tests/support/consumer.py"))
            .args([
                "--client",
                if client == PyClient::Confluent {
                    "confluent"
                } else {
                    "kafka-python"
                },
            ])
            .args([
                "--bootstrap",
                bootstrap,
                "--group",
                group_id,
                "--client-id",
                client_id,
            ]);
        for t in topics {
            cmd.args(["--topic", t]);
        }
        for (k, v) in config {
            cmd.args(["--set", &format!("{k}={v}")]);
        }
        let errlog = File::create(&log).expect("create consumer log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(errlog)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn consumer.py: {e}"));
        register_child(child.id());
        let consumed = Consumed::default();
        let stdout = child.stdout.take().unwrap();
        let c2 = consumed.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                parse_consumer_line(&c2, &line);
            }
        });
        PyConsumer {
            consumed,
            child: Some(child),
            reader: Some(reader),
            log,
        }
    }

    pub fn records(&self) -> Vec<Record> {
        self.consumed.records()
    }
    pub fn count(&self) -> usize {
        self.consumed.count()
    }
    pub fn partitions(&self) -> Vec<i32> {
        self.consumed.partitions()
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// SIGTERM: the script commits, closes (LeaveGroup) and exits; bounded (30 s), then SIGKILL and panic.
    pub fn stop(mut self) -> Vec<Record> {
        let mut c = self.child.take().expect("running");
        signal(c.id(), "-TERM");
        let st = wait_child(&mut c, Duration::from_secs(30));
        if st.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.join_reader();
        assert!(
            st.is_some(),
            "python consumer did not stop within 30 s; log {}:\n{}",
            self.log.display(),
            tail(&self.log, 30)
        );
        assert!(
            self.consumed.closed(),
            "python consumer exited without closing ({:?}); log {}:\n{}",
            st,
            self.log.display(),
            tail(&self.log, 30)
        );
        self.consumed.records()
    }

    /// SIGKILL: the member vanishes without LeaveGroup or a final commit.
    pub fn kill9(mut self) -> Vec<Record> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.join_reader();
        self.consumed.records()
    }

    fn join_reader(&mut self) {
        join_within(self.reader.take(), Duration::from_secs(5));
    }
}

/// Joins a child's output reader if it ends within `limit` (it ends when the child's pipe closes);
/// otherwise leaves it detached.
pub fn join_within(reader: Option<JoinHandle<()>>, limit: Duration) {
    if let Some(r) = reader {
        let start = Instant::now();
        while !r.is_finished() && start.elapsed() < limit {
            thread::sleep(Duration::from_millis(10));
        }
        if r.is_finished() {
            let _ = r.join();
        }
    }
}

impl Drop for PyConsumer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.join_reader();
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// Lines from consumer.py: `assigned topic:p,topic:p` (or `assigned -`), `msg topic p offset hex`,
/// `error text`, `closed`.
fn parse_consumer_line(c: &Consumed, line: &str) {
    let mut it = line.splitn(2, ' ');
    match (it.next(), it.next()) {
        (Some("assigned"), Some(rest)) => {
            let a = if rest.trim() == "-" {
                Vec::new()
            } else {
                rest.trim()
                    .split(',')
                    .filter_map(|tp| {
                        let (t, p) = tp.rsplit_once(':')?;
                        Some((t.to_string(), p.parse().ok()?))
                    })
                    .collect()
            };
            c.set_assignment(a);
        }
        (Some("msg"), Some(rest)) => {
            let f: Vec<&str> = rest.split(' ').collect();
            if f.len() == 4 {
                let r = Record {
                    topic: f[0].to_string(),
                    partition: f[1].parse().unwrap_or(-1),
                    offset: f[2].parse().unwrap_or(-1),
                    payload: unhex(f[3]),
                };
                c.0.lock().unwrap().records.push(r);
            }
        }
        (Some("error"), Some(rest)) => c.0.lock().unwrap().errors.push(rest.to_string()),
        (Some("closed"), _) => c.0.lock().unwrap().closed = true,
        _ => {}
    }
}

// ------------------------------------------------------------------------------------------------
// Python

/// Runs Python source `script` with the venv's python (`python -c script args...`), bounded by
/// 120 s (killed and panics after that). Returns its output; check `status` yourself.
pub fn python(script: &str, args: &[&str]) -> Output {
    python_with_timeout(script, args, Duration::from_secs(120))
}

pub fn python_with_timeout(script: &str, args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(python_bin())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let te = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = match wait_child(&mut child, timeout) {
        Some(st) => st,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let err = te.join().unwrap_or_default();
            panic!(
                "python script timed out after {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
    };
    Output {
        status,
        stdout: to.join().unwrap_or_default(),
        stderr: te.join().unwrap_or_default(),
    }
}

/// Like `python`, but panics unless it exits 0; returns stdout.
pub fn python_ok(script: &str, args: &[&str]) -> String {
    let out = python(script, args);
    assert!(
        out.status.success(),
        "python script failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The group's committed offsets as kelp answers OffsetFetch through librdkafka (-1: none);
/// retried while kelp is still loading (bounded).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let start = Instant::now();
    loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(got) => {
                return got
                    .elements()
                    .iter()
                    .map(|e| {
                        let o = match e.offset() {
                            Offset::Offset(o) => o,
                            _ => -1,
                        };
                        (e.partition(), o)
                    })
                    .collect()
            }
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                eprintln!("OffsetFetch through {bootstrap} not yet: {e}");
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("OffsetFetch of {group} through {bootstrap}: {e}"),
        }
    }
}
