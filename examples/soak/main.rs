//! The soak load for `scripts/soak`: many client connections churning through many consumer groups
//! against a real kelp, with raw Kafka frames (kafka-protocol codecs): join, sync (the leader
//! assigns), heartbeats, commits, then a clean leave, a kill (the connection just drops, so the
//! session expires) or a rejoin. Every loop is bounded by `--seconds`; every read by a timeout.
//!
//!   soak --kelp 127.0.0.1:9092 --connections 1000 --groups 1000 --seconds 600
//!
//! Prints one line of totals at the end (operations by kind, errors by Kafka code).

mod member;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use member::{Member, Tally};

struct Args {
    kelp: String,
    connections: usize,
    groups: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        kelp: "127.0.0.1:9092".into(),
        connections: 1000,
        groups: 1000,
        seconds: 600,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--kelp" => a.kelp = value,
            "--connections" => a.connections = value.parse().expect("--connections N"),
            "--groups" => a.groups = value.parse().expect("--groups N"),
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            other => panic!("soak: unknown argument {other}"),
        }
    }
    a
}

#[tokio::main]
async fn main() {
    let a = args();
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for i in 0..a.connections {
        // Each connection is a member of two neighbouring groups, so every group has members that
        // join, leave and die independently (and so rebalances).
        let groups = [i % a.groups, (i + 1) % a.groups].map(|g| format!("soak-{g}"));
        let member = Member::new(a.kelp.clone(), i, groups, deadline, tally.clone());
        tasks.push(tokio::spawn(member.run()));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let t = tally.lock().unwrap();
    let errors: BTreeMap<_, _> = t.errors.iter().collect();
    println!(
        "soak: {} connections, {} groups, {} s: joins {} syncs {} heartbeats {} commits {} leaves {} kills {} reconnects {} errors {:?}",
        a.connections, a.groups, a.seconds, t.joins, t.syncs, t.heartbeats, t.commits, t.leaves, t.kills, t.reconnects, errors
    );
}
