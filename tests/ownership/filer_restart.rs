//! Test e of tests/faults_ownership.rs (one coordinator per group, issue 15): the filer the kelps
//! use really restarted (kill -9, then started again on its ports and store) while a rebalance is
//! in progress, so the leases it held in memory are gone. A module of that test binary (its lock,
//! its stack); it measures and prints first, then asserts. The filer is a standalone `weed filer`
//! (tests/ownership/standalone_filer.rs); the gateway keeps the stack's own, so restarting it
//! never touches topic metadata. Nothing here restarts a kelp.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::ownership::offsets::lost_commits;
use crate::ownership::sampling::*;
use crate::ownership::standalone_filer::StandaloneFiler;
use crate::ownership::{self, flag};
use crate::peers::{self, exact_cover, has_group_series, Cluster, Member};
use crate::serial;
use crate::support;

/// How long the filer stays down: beyond a lease (2 s), so every holder's lease has run out
/// before it is back; well under the members' session (6 s) plus its restart, so members are
/// still there to be served.
const FILER_DOWN_FOR: Duration = Duration::from_secs(4);

/// From the restarted filer answering to the group served again with exact ownership
/// (`--lease-ttl-secs` left at its default, 2 s): the old holder's lease runs out (one ttl: the
/// restarted filer forgot it, so its renewal fails at the latest one ttl after the last success),
/// a fresh take waits one more ttl (the new holder cannot know the old lease is gone), then the
/// members' session timeout (6 s: a member whose requests failed meanwhile may be expelled only
/// then) and one rebalance (20 s, the allowance of `SESSION_PLUS_REBALANCE`: members rediscover
/// the coordinator with librdkafka's backoff and rejoin, the new holder loads the group from the
/// filer, on a loaded 2-core machine).
const RECOVERY_BOUND: Duration = Duration::from_secs(2 * kelp::lease::DEFAULT_TTL_SECS + 6 + 20);

/// Waits (polling every 100 ms, at most `timeout`) until a rebalance of `group` is seen in
/// progress on kelp `owner` (PreparingRebalance or CompletingRebalance); Err when it finished
/// (generation above `gen0`) before it was seen, or on timeout.
fn rebalance_in_progress(
    c: &Cluster,
    owner: usize,
    group: &str,
    gen0: i64,
    timeout: Duration,
) -> Result<&'static str, String> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let body = c.kelp(owner).http_get("/metrics").1;
        let state = |s| {
            peers::metric_in(&body, "kelp_group_state", &[("group", group), ("state", s)])
                == Some(1.0)
        };
        if state("PreparingRebalance") {
            return Ok("PreparingRebalance");
        }
        if state("CompletingRebalance") {
            return Ok("CompletingRebalance");
        }
        if peers::metric_in(&body, "kelp_group_generation", &[("group", group)])
            .is_some_and(|g| g as i64 > gen0)
        {
            return Err("the rebalance finished before it was seen in progress".into());
        }
        thread::sleep(Duration::from_millis(5));
    }
    Err(format!("no rebalance within {timeout:?}"))
}

/// The group served again: exactly one kelp exposes it, Stable with `n` members, and the members'
/// assignments cover every partition exactly once. Waits at most `timeout` (polling every
/// 100 ms); returns how long it took, the kelp and its generation.
fn wait_served(
    c: &Cluster,
    members: &[&Member],
    group: &str,
    n: usize,
    timeout: Duration,
) -> Option<(Duration, usize, i64)> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let owned: Vec<Vec<i32>> = members.iter().map(|m| m.partitions()).collect();
        if exact_cover(&owned, PARTITIONS) {
            let exposing: Vec<(usize, String)> = c
                .live()
                .into_iter()
                .filter_map(|i| {
                    ownership::try_metrics(c.kelp(i).metrics_addr(), Duration::from_secs(1))
                        .map(|b| (i, b))
                })
                .filter(|(_, b)| has_group_series(b, group))
                .collect();
            if let [(i, b)] = exposing.as_slice() {
                let m = peers::metric_in(b, "kelp_group_members", &[("group", group)]);
                let stable = peers::metric_in(
                    b,
                    "kelp_group_state",
                    &[("group", group), ("state", "Stable")],
                );
                let generation = peers::metric_in(b, "kelp_group_generation", &[("group", group)]);
                if m == Some(n as f64) && stable == Some(1.0) {
                    return Some((start.elapsed(), *i, generation.unwrap_or(-1.0) as i64));
                }
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The group's series on kelps that expose it without a `kelp_group_state` (so without serving it
/// as its coordinator does), scraped every 250 ms until `stop` (at most `max`): (kelp, series
/// without its value), each once, for the report.
fn stateless_series(
    stop: &AtomicBool,
    max: Duration,
    kelps: &[(usize, String)],
    group: &str,
) -> BTreeSet<(usize, String)> {
    let label = format!("group=\"{group}\"");
    let mut seen = BTreeSet::new();
    let start = Instant::now();
    while !stop.load(Ordering::SeqCst) && start.elapsed() < max {
        for (i, addr) in kelps {
            let Some(body) = ownership::try_metrics(addr, Duration::from_secs(1)) else {
                continue;
            };
            let mine: Vec<&str> = body
                .lines()
                .filter(|l| l.starts_with("kelp_group_") && l.contains(&label))
                .collect();
            if !mine.iter().any(|l| l.starts_with("kelp_group_state{")) {
                for l in mine {
                    let series = l.rsplit_once(' ').map_or(l, |(s, _)| s);
                    seen.insert((*i, series.to_string()));
                }
            }
        }
        thread::sleep(EVERY);
    }
    seen
}

/// Two peered kelps whose `--filer` is a standalone `weed filer`; a librdkafka member on each
/// (tests/peers/member.py, committing every message asynchronously), a trickle of messages. A
/// third member joins; while that rebalance is in progress the filer is killed with SIGKILL, stays
/// down 4 s and is started again on the same ports and store directory. Sampled every 250 ms
/// from the kill until the end.
///
/// Must never happen:
/// - two kelps serving the group (its per-group `kelp_group_*` series on two kelps at one sample);
/// - a partition owned by two live members for 3 s or more;
/// - an acknowledged commit lost (OffsetFetch after the recovery below what a member had
///   acknowledged) or a committed offset moving backwards (OffsetFetch through the non-owner
///   every 500 ms);
/// - `kelp_lease_unleased_serving_seconds_total` above 0 on any kelp.
///
/// Must happen, with no kelp restarted (both still run at the end): within `RECOVERY_BOUND` of
/// the restarted filer answering, one kelp serves the group Stable with the 3 members, whose
/// assignments cover the 6 partitions exactly once; every message produced is committed in the
/// end. Prints the timings.
#[test]
fn filer_restarted_mid_rebalance() {
    let _serial = serial();
    let t0 = Instant::now();
    let stack = support::stack();
    let mut filer =
        StandaloneFiler::start(&stack.master, &support::scratch_dir().join("filer-restart"));
    eprintln!(
        "filer_restarted_mid_rebalance: standalone filer {} (gRPC {}), log {}",
        filer.url(),
        filer.port + 10000,
        filer.log_path().display()
    );
    let mut c = Cluster::new("own-filer-restart", 2).with_filer(&filer.url());
    c.start(0);
    c.start(1);
    c.wait_peers_live(2, Duration::from_secs(30));
    let (group, topic) = ("g-own-filer-restart", "own-filer-restart");
    support::create_topic(&c.addr(0), topic, PARTITIONS);
    let mut members = members_on(&c, &[0, 1], group, topic);
    let (owner, gen0) = c.wait_owner(group, 2, Duration::from_secs(1), Duration::from_secs(30));
    let other = 1 - owner;
    let stop_producing = flag();
    let producer = ownership::trickle(
        c.addr(other),
        topic,
        20,
        Duration::from_millis(500),
        Duration::from_secs(120),
        stop_producing.clone(),
    );
    wait_acked(
        &members.iter().collect::<Vec<_>>(),
        60,
        Duration::from_secs(60),
    );
    let stop_watch = flag();
    let watcher = ownership::offsets::watch_offsets(
        Arc::new(Mutex::new(c.addr(other))),
        group,
        topic,
        PARTITIONS,
        Duration::from_millis(500),
        Duration::from_secs(120),
        stop_watch.clone(),
    );
    let _stops = ownership::StopGuard(vec![stop_producing.clone(), stop_watch.clone()]);
    // A third member on the other kelp starts a rebalance; the filer is killed while it runs.
    members.push(Member::start_async(&c.addr(other), group, "m2", topic, 5));
    let trigger = rebalance_in_progress(&c, owner, group, gen0, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}{}", c.log_tails(20)));
    let refs: Vec<&Member> = members.iter().collect();
    let kelps: Vec<(usize, String)> = (0..2)
        .map(|i| (i, c.kelp(i).metrics_addr().to_string()))
        .collect();
    let paused = Mutex::new(BTreeSet::new());
    let stop_sampling = AtomicBool::new(false);
    let mut killed_at = Instant::now();
    let (mut restarted_at, mut back_at) = (killed_at, killed_at);
    let (mut restart, mut served) = (Err("not restarted".to_string()), None);
    let samples = thread::scope(|s| {
        let sampler = s.spawn(|| {
            sample(
                &stop_sampling,
                Duration::from_secs(120),
                &refs,
                &kelps,
                &paused,
                group,
            )
        });
        let stateless =
            s.spawn(|| stateless_series(&stop_sampling, Duration::from_secs(120), &kelps, group));
        let _stop = StopOnDrop(&stop_sampling);
        killed_at = filer.kill9();
        ownership::sleep_until(killed_at + FILER_DOWN_FOR);
        restarted_at = Instant::now();
        restart = filer.start_again(Duration::from_secs(30));
        back_at = Instant::now();
        if restart.is_ok() {
            served = wait_served(&c, &refs, group, 3, RECOVERY_BOUND);
        }
        // A little more sampling after the recovery.
        thread::sleep(Duration::from_secs(2));
        stop_sampling.store(true, Ordering::SeqCst);
        (
            sampler.join().expect("sampler"),
            stateless.join().expect("series scraper"),
        )
    });
    let (samples, stateless) = samples;
    let Wound {
        acked,
        now,
        drained,
        offsets,
    } = wind_down(
        &refs,
        &c.addr(other),
        group,
        topic,
        PARTITIONS,
        (&stop_producing, producer),
        (&stop_watch, watcher),
        Duration::from_secs(30),
    );
    let running: Vec<bool> = (0..2)
        .map(|i| c.nodes[i].kelp.as_mut().is_some_and(|k| k.is_running()))
        .collect();

    let double = double_ownership(&samples, killed_at);
    let twice = two_coordinators(&samples, killed_at, killed_at);
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    // When a kelp exposed the group again after the filer came back (it may also have kept it).
    let first_served = samples
        .iter()
        .find(|s| s.at >= back_at && !s.exposing.is_empty())
        .map(|s| (secs(s.at - back_at), s.exposing.clone(), s.states.clone()));
    eprintln!(
        "filer_restarted_mid_rebalance: filer killed on {trigger} (owner kelp {owner}, generation \
         {gen0}); down {} until restarted; answering again {} after the restart \
         ({restart:?}); a kelp exposing the group {first_served:?} after that; served Stable with \
         3 members and exact ownership {} after the filer answered (bound {}: {:?}); {} from the \
         kill to exact ownership",
        secs(restarted_at - killed_at),
        secs(back_at - restarted_at),
        served.map_or("never".to_string(), |s| secs(s.0)),
        secs(RECOVERY_BOUND),
        served.map(|s| (format!("kelp {}", s.1), format!("generation {}", s.2))),
        served.map_or("-".to_string(), |s| secs(back_at - killed_at + s.0)),
    );
    eprintln!(
        "filer_restarted_mid_rebalance: longest double ownership {:.1} s ({:?}); two kelps with \
         the series: {twice:?}; series per kelp (s after the kill): {}; the group's series on \
         a kelp without its state series (kelp, series): {stateless:?}",
        double.longest.as_secs_f64(),
        double.longest_of,
        exposure_timeline(&samples, killed_at),
    );
    eprintln!(
        "filer_restarted_mid_rebalance: OffsetFetch via kelp {other}: {} samples, {} errors (last \
         {:?}), moved backwards {:?}; acknowledged {acked:?}, committed {now:?}; kelps running at \
         the end {running:?}; members {:?}; {:.1} s",
        offsets.samples,
        offsets.errors,
        offsets.last_error,
        offsets.backwards,
        summaries(&refs),
        t0.elapsed().as_secs_f64()
    );
    for m in &refs {
        eprintln!(
            "filer_restarted_mid_rebalance: {} assignments (s after the kill): {:?}",
            m.name,
            m.history_since(killed_at)
        );
    }
    let unleased = leases("filer_restarted_mid_rebalance", &kelps);

    if let Err(e) = &restart {
        panic!(
            "the standalone filer did not come back: {e}\n{}",
            filer.log_tail(30)
        );
    }
    assert!(
        twice.is_empty(),
        "two kelps served the group: {twice:?}{}",
        c.log_tails(20)
    );
    assert!(
        double.longest < DOUBLE_LIMIT,
        "a partition was owned by two live members for {:.1} s: {:?}",
        double.longest.as_secs_f64(),
        double.longest_of
    );
    assert!(
        unleased.is_empty(),
        "kelps served the group without holding its lease (kelp, seconds): {unleased:?}"
    );
    let now = now.unwrap_or_else(|e| panic!("OffsetFetch via kelp {other}: {e}"));
    let lost = lost_commits(&acked, &now);
    assert!(
        lost.is_empty(),
        "acknowledged commits lost (partition, acknowledged, committed): {lost:?}"
    );
    assert!(
        offsets.backwards.is_empty(),
        "committed offsets moved backwards (partition, before, after, s): {:?}",
        offsets.backwards
    );
    assert_eq!(
        running,
        vec![true, true],
        "a kelp exited during the test{}",
        c.log_tails(20)
    );
    assert!(
        served.is_some(),
        "the group was not served again (one kelp, Stable, 3 members, every partition owned \
         once) within {RECOVERY_BOUND:?} of the filer answering, no kelp restarted: {:?}{}\n{}",
        summaries(&refs),
        c.log_tails(30),
        filer.log_tail(20)
    );
    if let Err(e) = drained {
        panic!("the messages produced were not all committed within 30 s of the end: {e}");
    }
    drop(members);
    c.assert_no_panics();
}
