//! A standalone `weed filer` for tests/faults_ownership.rs that a test can kill -9 and start again
//! on the same ports and store directory, so the kelps' filer (and its lock service, whose leases
//! live only in its memory) really restarts. It registers with the stack's master (the stack's
//! volume server keeps the file contents), in a filer group of its own so it shares neither
//! metadata nor the lock ring with the stack's filer, which the Kafka gateway and the MQ broker go
//! on using: the topics' metadata is never touched. Its metadata lives in an embedded store under
//! the test's directory and survives the restart.
//!
//! It only runs the process and says when it answers; it asserts nothing about kelp. Killed on
//! drop (and registered with the stack's watchdog, which stops it if the test binary dies).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support;

pub struct StandaloneFiler {
    /// Its HTTP port; gRPC (the lock service) on this + 10000, SeaweedFS's convention.
    pub port: u16,
    args: Vec<String>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pub starts: usize,
}

fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// A port in 10000-15999 (below the ephemeral range, so no outgoing connection takes it while
/// the filer is down) whose gRPC neighbour (+10000) is free too.
fn pick_port() -> u16 {
    let mut x = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64)
        ^ ((std::process::id() as u64) << 20)
        | 1;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 10000 + (x % 6000) as u16;
        if free(port) && free(port + 10000) {
            return port;
        }
    }
    panic!("no free port p in 10000-15999 with p + 10000 free after 2000 tries");
}

impl StandaloneFiler {
    /// Starts `weed filer` against the stack's master `master` ("127.0.0.1:M") with its store and
    /// log under `dir`; waits (at most 60 s) until it answers.
    pub fn start(master: &str, dir: &Path) -> StandaloneFiler {
        fs::create_dir_all(dir.join("store")).expect("create the filer's store dir");
        let port = pick_port();
        let args = vec![
            "filer".to_string(),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-port={port}"),
            format!("-port.grpc={}", port + 10000),
            format!("-master={master}"),
            format!("-defaultStoreDir={}", dir.join("store").display()),
            format!("-filerGroup=kelp-restart-{}", std::process::id()),
        ];
        let mut f = StandaloneFiler {
            port,
            args,
            dir: dir.to_path_buf(),
            log: dir.join("filer.log"),
            child: None,
            starts: 0,
        };
        f.spawn();
        if let Err(e) = f.wait_ready(Duration::from_secs(60)) {
            panic!(
                "the standalone filer did not start: {e}\n{}",
                f.log_tail(30)
            );
        }
        f
    }

    /// "http://127.0.0.1:P", for `--filer`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn spawn(&mut self) {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the filer's log");
        self.starts += 1;
        let _ = writeln!(log, "---- kelp test: start #{} ----", self.starts);
        // Its working directory is the test's, so no filer.toml of the machine's is picked up.
        let child = Command::new(support::weed_bin())
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", support::weed_bin().display()));
        support::register_child(child.id());
        self.child = Some(child);
    }

    /// Waits until the filer answers an HTTP listing of `/` and its gRPC port accepts; Err with
    /// why when it exited or `timeout` passed.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("weed filer exited ({st})"));
                }
            }
            if http_status(self.port, "/") == Some(200) && accepts(self.port + 10000) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(format!("weed filer did not answer within {timeout:?}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 (no shutdown: its in-memory leases are gone at once); returns when it has exited.
    pub fn kill9(&mut self) -> Instant {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Instant::now()
    }

    /// Starts it again with the same ports, master and store; waits until it answers.
    pub fn start_again(&mut self, timeout: Duration) -> Result<Duration, String> {
        assert!(self.child.is_none(), "the filer still runs");
        self.spawn();
        self.wait_ready(timeout)
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        format!(
            "--- standalone filer {}:\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }
}

impl Drop for StandaloneFiler {
    fn drop(&mut self) {
        self.kill9();
        // weed leaves its local gRPC sockets behind when killed.
        for sock in [
            format!("/tmp/seaweedfs-filer-{}.sock", self.port),
            format!("/tmp/seaweedfs-filer-grpc-{}.sock", self.port + 10000),
        ] {
            let _ = fs::remove_file(sock);
        }
    }
}

fn accepts(port: u16) -> bool {
    let sock = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&sock, Duration::from_millis(300)).is_ok()
}

/// The status of `GET path` on 127.0.0.1:`port` (1 s timeouts), None when it does not answer.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let sock = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 16];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
