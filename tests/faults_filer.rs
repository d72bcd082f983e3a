//! Fault injection with real parts: the SeaweedFS filer stopped mid-commit. kelp keeps offsets in
//! the filer (`--filer`); `weed server`, which holds the filer, is paused (SIGSTOP) for 6 s while a
//! client commits and is resumed (SIGCONT). Commits kelp could not store are refused with a
//! retriable error; the last acknowledged commit is what kelp serves afterwards and what a kelp
//! killed -9 and started again loads. Its own binary (and stack): pausing the broker's process can
//! cost the gateway its leader lock, which must not disturb the cases in tests/faults.rs.

#[path = "faults/common.rs"]
mod common;
#[path = "faults/gateway.rs"]
mod gateway;
mod raw;
mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{commit_once, committed, kelp_has_filer, ready, row};
use gateway::Gateway;
use support::{stack, wait_until, Kelp};

#[test]
fn filer_stopped_mid_commit() {
    assert!(kelp_has_filer(), "kelp has --filer");
    let filer_url = stack().filer.clone();
    let mut k = Kelp::start(&["--filer", filer_url.as_str()]);
    let (group, topic) = ("faults-filer-g", "faults-filer-t");
    let server = Gateway::server_pid();
    let mut gateway = Gateway::of_stack();
    let stop = Arc::new(Mutex::new(false));
    let (acked, errors) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let committer = {
        let (addr, stop, acked, errors) = (
            k.addr().to_string(),
            stop.clone(),
            acked.clone(),
            errors.clone(),
        );
        thread::spawn(move || {
            let mut c = raw::Raw::connect(&addr);
            for offset in 1..20_000i64 {
                if *stop.lock().unwrap() {
                    break;
                }
                match commit_once(&mut c, group, topic, offset) {
                    Ok(0) => acked.lock().unwrap().push(offset),
                    Ok(code) => errors.lock().unwrap().push(format!("error {code}")),
                    Err(e) => {
                        errors.lock().unwrap().push(e);
                        thread::sleep(Duration::from_millis(200));
                        c = raw::Raw::connect(&addr);
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    wait_until("50 commits acknowledged", Duration::from_secs(60), || {
        acked.lock().unwrap().len() >= 50
    });
    // The filer (inside `weed server`) stops answering for a while, then comes back.
    let paused = Instant::now();
    let _ = Command::new("kill")
        .args(["-STOP", &server.to_string()])
        .status();
    thread::sleep(Duration::from_secs(6));
    let _ = Command::new("kill")
        .args(["-CONT", &server.to_string()])
        .status();
    let before = acked.lock().unwrap().len();
    wait_until(
        "commits acknowledged again after the filer came back",
        Duration::from_secs(120),
        || acked.lock().unwrap().len() >= before + 50,
    );
    let recovered = paused.elapsed();
    *stop.lock().unwrap() = true;
    committer.join().unwrap();
    let last = *acked.lock().unwrap().last().unwrap();
    let live = committed(k.addr(), group, topic, 1)[&0];
    // And from the filer alone: kelp killed and started again loads what it acknowledged.
    k.kill9();
    k.start_again();
    let mut reloaded = -1;
    wait_until(
        "kelp to load the group from the filer",
        Duration::from_secs(60),
        || {
            reloaded = committed(k.addr(), group, topic, 1)
                .get(&0)
                .copied()
                .unwrap_or(-1);
            reloaded >= 0
        },
    );
    let errors = errors.lock().unwrap().clone();
    let retriable = |e: &String| {
        [
            "error 15",
            "error 16",
            "error 7",
            "error 14",
            "connection closed",
        ]
        .iter()
        .any(|r| e.contains(r))
            || e.contains("Connection reset")
    };
    let lost = usize::from(live < last) + usize::from(reloaded < last);
    row(
        "filer (weed server) stopped 6 s mid-commit",
        &format!(
            "{} commits refused or cut ({:?}...), all retriable",
            errors.len(),
            errors.iter().take(2).collect::<Vec<_>>()
        ),
        recovered,
        lost,
        None,
    );
    assert!(
        errors.iter().all(retriable),
        "non-retriable commit errors: {errors:?}"
    );
    assert_eq!(
        live, last,
        "the last acknowledged commit is what kelp serves"
    );
    assert_eq!(
        reloaded, last,
        "the last acknowledged commit survives a kelp restart (filer)"
    );
    if !gateway.alive() {
        // The gateway checks the broker it lives on; a paused broker can make it exit.
        gateway.restart_until(|| ready(&k));
    }
}
