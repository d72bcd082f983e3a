//! Tests c and d of tests/faults_ownership.rs (one coordinator per group, issue 15), the cases
//! about the filer: two kelps without peers sharing one filer prefix, and the filer going away
//! during a rebalance. A module of that test binary (its lock, its stack); asserts only after it
//! printed what it measured.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::ownership::offsets::{lost_commits, offset_fetch};
use crate::ownership::sampling::*;
use crate::ownership::{self, flag, CUT_UID};
use crate::peers::{self, acked_max, Cluster, Member};
use crate::serial;
use crate::support::{self, Kelp};

// ---- c. two kelps without peers on one filer ------------------------------------------------------

/// Must never happen: two kelps without `--peers` but on one filer prefix both coordinating the
/// group (its series on both at one sample), a partition owned by two live members for 3 s or
/// more, an acknowledged commit lost. The group must still be served: some member owns every
/// partition.
#[test]
fn unpeered_kelps_one_filer() {
    let _serial = serial();
    let t0 = Instant::now();
    let filer = support::stack().filer.clone();
    let prefix = format!("/kelp-e2e-own/unpeered-{}", std::process::id());
    let args = [
        "--filer",
        filer.as_str(),
        "--store-prefix",
        prefix.as_str(),
        "--group-initial-rebalance-delay-ms",
        "0",
    ];
    let kelps: Vec<Kelp> = (0..2).map(|_| Kelp::start(&args)).collect();
    let (group, topic) = ("g-own-unpeered", "own-unpeered");
    support::create_topic(kelps[0].addr(), topic, PARTITIONS);
    let stop_producing = flag();
    let producer = ownership::trickle(
        kelps[0].addr().to_string(),
        topic,
        20,
        Duration::from_millis(500),
        Duration::from_secs(90),
        stop_producing.clone(),
    );
    let _stops = ownership::StopGuard(vec![stop_producing.clone()]);
    // Both members at once: which kelp may serve the group (holds its lease) is not the test's
    // to choose, and a member behind the other one is never served (it has no peer to forward to).
    let started = Instant::now();
    let m0 = Member::start_async(kelps[0].addr(), group, "m0", topic, 5);
    let m1 = Member::start_async(kelps[1].addr(), group, "m1", topic, 5);
    let refs = [&m0, &m1];
    let metrics: Vec<(usize, String)> = kelps
        .iter()
        .enumerate()
        .map(|(i, k)| (i, k.metrics_addr().to_string()))
        .collect();
    let paused = Mutex::new(BTreeSet::new());
    let stop_sampling = AtomicBool::new(false);
    let samples = thread::scope(|s| {
        let sampler = s.spawn(|| {
            sample(
                &stop_sampling,
                Duration::from_secs(60),
                &refs,
                &metrics,
                &paused,
                group,
            )
        });
        let _stop = StopOnDrop(&stop_sampling);
        thread::sleep(Duration::from_secs(25));
        stop_sampling.store(true, Ordering::SeqCst);
        sampler.join().expect("sampler")
    });
    let acked = acked_max(&refs);
    let coordinators: Vec<usize> = samples
        .last()
        .map(|s| s.exposing.clone())
        .unwrap_or_default();
    let now = coordinators.first().map(|k| {
        offset_fetch(
            kelps[*k].addr(),
            group,
            topic,
            PARTITIONS,
            Duration::from_secs(10),
        )
    });
    stop_producing.store(true, Ordering::SeqCst);
    producer.join().expect("producer");

    let twice = two_coordinators(&samples, t0, started);
    let double = double_ownership(&samples, t0);
    let served = samples.iter().any(|s| {
        let all: BTreeSet<i32> = s.owned.iter().flat_map(|(_, p)| p.clone()).collect();
        all.len() == PARTITIONS as usize
    });
    eprintln!(
        "unpeered_kelps_one_filer: longest double ownership {:.1} s ({:?}); samples with the \
         group's series on both kelps: {} of {} (first {:?}); series per kelp (s after the members \
         started): {}; acknowledged {acked:?}, committed via {coordinators:?} {now:?}; members {:?}; \
         {:.1} s",
        double.longest.as_secs_f64(),
        double.longest_of,
        twice.len(),
        samples.len(),
        twice.first(),
        exposure_timeline(&samples, started),
        summaries(&refs),
        t0.elapsed().as_secs_f64()
    );
    let unleased = leases("unpeered_kelps_one_filer", &metrics);
    assert!(
        twice.is_empty(),
        "two unpeered kelps on one filer both coordinated {group}: {} samples, first {:?}",
        twice.len(),
        twice.first()
    );
    assert!(
        double.longest < DOUBLE_LIMIT,
        "a partition was owned by two live members for {:.1} s: {:?}",
        double.longest.as_secs_f64(),
        double.longest_of
    );
    assert!(
        served,
        "no member owned the partitions: {:?}",
        summaries(&refs)
    );
    match now {
        Some(Ok(now)) => {
            let lost = lost_commits(&acked, &now);
            assert!(
                lost.is_empty(),
                "acknowledged commits lost (partition, acknowledged, committed): {lost:?}"
            );
        }
        Some(Err(e)) => panic!("OffsetFetch via the coordinating kelp: {e}"),
        None => panic!("no kelp coordinated {group} at the end"),
    }
    assert!(
        unleased.is_empty(),
        "kelps served the group without holding its lease (kelp, seconds): {unleased:?}"
    );
}

// ---- d. the filer down mid-rebalance -------------------------------------------------------------

/// How long the filer stays away: beyond the lease (2 s) and the members' session (6 s).
const FILER_DOWN_FOR: Duration = Duration::from_secs(8);

/// Must never happen: an acknowledged commit lost or a committed offset moving backwards across the
/// filer going away and coming back during a rebalance; two kelps coordinating the group; a
/// partition owned by two live members for 3 s or more. The group recovers (every partition owned
/// once by the three members) without restarting any kelp.
///
/// The filer goes away for the kelps only: they run as `nobody`, and iptables resets their
/// connections to the filer's HTTP and gRPC ports for 8 s (`Cut::filer_for`), as a filer that is
/// restarting refuses them. Not `weed server` itself: it also holds the MQ broker, and both a
/// kill -9 + fresh start and an 8 s SIGSTOP of it brought the test's 6-partition topic back with 4
/// or 1 partitions (librdkafka's leader then assigned what it saw), so the test would measure
/// SeaweedFS, not kelp. What this leaves out: a restarted filer forgets its in-memory locks.
#[test]
fn filer_down_mid_rebalance() {
    let _serial = serial();
    let t0 = Instant::now();
    if let Err(e) = ownership::can_cut() {
        panic!("filer_down_mid_rebalance cuts the filer off with iptables: {e}");
    }
    let mut c = Cluster::new("own-filer", 2);
    c.start_as(0, CUT_UID, &[]);
    c.start_as(1, CUT_UID, &[]);
    c.wait_peers_live(2, Duration::from_secs(30));
    let (group, topic) = ("g-own-filer", "own-filer");
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
        Duration::from_secs(180),
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
        Duration::from_secs(180),
        stop_watch.clone(),
    );
    let _stops = ownership::StopGuard(vec![stop_producing.clone(), stop_watch.clone()]);
    // A third member on the other kelp starts a rebalance; the filer goes away while it runs.
    members.push(Member::start_async(&c.addr(other), group, "m2", topic, 5));
    let joined = Instant::now();
    let mut trigger = None;
    while trigger.is_none() && joined.elapsed() < Duration::from_secs(30) {
        let body = c.kelp(owner).http_get("/metrics").1;
        let state = |s| {
            peers::metric_in(&body, "kelp_group_state", &[("group", group), ("state", s)])
                == Some(1.0)
        };
        if state("PreparingRebalance") {
            trigger = Some("PreparingRebalance");
        } else if state("CompletingRebalance") {
            trigger = Some("CompletingRebalance");
        } else if peers::metric_in(&body, "kelp_group_generation", &[("group", group)])
            .is_some_and(|g| g as i64 > gen0)
        {
            panic!("the rebalance finished before it was seen in progress");
        }
        thread::sleep(Duration::from_millis(5));
    }
    let trigger = trigger.unwrap_or_else(|| panic!("no rebalance within 30 s{}", c.log_tails(20)));
    let refs: Vec<&Member> = members.iter().collect();
    let kelps: Vec<(usize, String)> = (0..2)
        .map(|i| (i, c.kelp(i).metrics_addr().to_string()))
        .collect();
    let paused = Mutex::new(BTreeSet::new());
    let stop_sampling = AtomicBool::new(false);
    let filer_port: u16 = support::stack()
        .filer
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the filer's port");
    let (mut stopped_at, mut filer_back, mut cut_held, mut recovered) =
        (Instant::now(), None, false, None);
    let samples = thread::scope(|s| {
        let sampler = s.spawn(|| {
            sample(
                &stop_sampling,
                Duration::from_secs(180),
                &refs,
                &kelps,
                &paused,
                group,
            )
        });
        let _stop = StopOnDrop(&stop_sampling);
        let cut = ownership::Cut::filer_for(CUT_UID, &[filer_port, filer_port + 10000]);
        stopped_at = Instant::now();
        cut_held = !ownership::reaches_as(CUT_UID, filer_port);
        ownership::sleep_until(stopped_at + FILER_DOWN_FOR);
        drop(cut);
        if ownership::reaches_as(CUT_UID, filer_port) {
            filer_back = Some(stopped_at.elapsed());
        }
        recovered = wait_cover(&refs, Duration::from_secs(60));
        thread::sleep(Duration::from_secs(2));
        stop_sampling.store(true, Ordering::SeqCst);
        sampler.join().expect("sampler")
    });
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
        Duration::from_secs(60),
    );
    let double = double_ownership(&samples, stopped_at);
    let twice = two_coordinators(&samples, stopped_at, stopped_at);
    eprintln!(
        "filer_down_mid_rebalance: the filer cut off from the kelps for {FILER_DOWN_FOR:?} on \
         {trigger} (owner kelp {owner}; the cut held: {cut_held}); filer reached again \
         {filer_back:?} after the cut; exact ownership {recovered:?} \
         after that; longest double ownership {:.1} s ({:?}); two kelps with the series: \
         {twice:?}; series per kelp (s after the stop): {}; OffsetFetch via kelp {other}: {} \
         samples, {} errors (last {:?}), moved backwards {:?}; acknowledged {acked:?}, committed \
         {now:?}; members {:?}; {:.1} s",
        double.longest.as_secs_f64(),
        double.longest_of,
        exposure_timeline(&samples, stopped_at),
        offsets.samples,
        offsets.errors,
        offsets.last_error,
        offsets.backwards,
        summaries(&refs),
        t0.elapsed().as_secs_f64()
    );
    let unleased = leases("filer_down_mid_rebalance", &kelps);
    assert!(
        cut_held,
        "the kelps' user still reached the filer through the cut"
    );
    assert!(
        filer_back.is_some(),
        "the kelps' user did not reach the filer after the cut was removed"
    );
    assert!(
        recovered.is_some(),
        "the group did not recover (every partition owned once by 3 members) within 60 s of the \
         filer's return, no kelp restarted: {:?}{}",
        summaries(&refs),
        c.log_tails(20)
    );
    assert!(
        double.longest < DOUBLE_LIMIT,
        "a partition was owned by two live members for {:.1} s: {:?}",
        double.longest.as_secs_f64(),
        double.longest_of
    );
    assert!(
        twice.is_empty(),
        "two kelps coordinated the group: {twice:?}"
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
    if let Err(e) = drained {
        panic!("the messages produced were not all committed within 60 s of the end: {e}");
    }
    assert!(
        unleased.is_empty(),
        "kelps served the group without holding its lease (kelp, seconds): {unleased:?}"
    );
    drop(members);
    c.assert_no_panics();
}
