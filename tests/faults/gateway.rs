//! The stack's SeaweedFS gateway as a fault to inject: killed with SIGKILL and started again in
//! place with the same command line, so kelp and the clients see the same address come back.
#![allow(dead_code)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::support::{stack, wait_until};

/// The stack's gateway process: its command line is read from /proc so it restarts identically.
pub struct Gateway {
    argv: Vec<String>,
    pid: u32,
}

impl Gateway {
    /// The pid of `weed server` (master, volume, filer and MQ broker in one process).
    pub fn server_pid() -> u32 {
        let pids: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(stack().dir.join("pids.json")).unwrap())
                .unwrap();
        pids["server"]["pid"]
            .as_u64()
            .expect("server pid in pids.json") as u32
    }

    pub fn of_stack() -> Gateway {
        let pids: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(stack().dir.join("pids.json")).unwrap())
                .unwrap();
        let pid = pids["gateway"]["pid"]
            .as_u64()
            .expect("gateway pid in pids.json") as u32;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).expect("gateway runs");
        let argv = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Gateway { argv, pid }
    }

    pub fn kill9(&self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        wait_until("the gateway to die", Duration::from_secs(30), || {
            fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        });
    }

    /// Starts the same command again in its own process group, logging to the stack's gateway.log,
    /// and records it in the stack's pids.json so that the stack's stop and watchdog end it.
    fn restart(&mut self) {
        let dir = &stack().dir;
        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join("gateway.log"))
            .unwrap();
        let child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("restart the gateway");
        self.pid = child.id();
        let start = fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.split_whitespace().nth(19).unwrap_or("").to_string())
            });
        let path = dir.join("pids.json");
        let mut pids: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        pids["gateway"] = serde_json::json!({"pid": self.pid, "start": start});
        fs::write(&path, pids.to_string()).unwrap();
        std::mem::forget(child); // the stack owns it from here
    }
}

impl Gateway {
    pub fn alive(&self) -> bool {
        fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    }

    /// Restarts the gateway until `up` holds (bounded: 3 starts, 90 s each). A gateway that starts
    /// while the MQ broker is busy can exit at once ("broker health check failed"), as
    /// scripts/stack also allows for.
    pub fn restart_until(&mut self, mut up: impl FnMut() -> bool) {
        for attempt in 1..=3 {
            self.restart();
            let deadline = Instant::now() + Duration::from_secs(90);
            while Instant::now() < deadline && self.alive() {
                if up() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
            eprintln!("faults: restarted gateway not up (attempt {attempt}); starting it again");
            self.kill9();
        }
        panic!(
            "the gateway did not come back after 3 starts; see {}",
            stack().dir.join("gateway.log").display()
        );
    }
}
