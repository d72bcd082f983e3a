//! One coordinator per group under faults (issue 15), with real parts: kelps on one SeaweedFS
//! stack, librdkafka members in child processes (tests/peers/member.py, which commits every
//! message and reports each assignment and acknowledged commit), and real faults on the loopback:
//!
//! a. `peer_partition`: three peered kelps; one (not the group's preferred owner) has its peer
//!    traffic cut with iptables for 30 s while its clients, filer and gateway still reach it;
//! b. `paused_owner`: the coordinating kelp SIGSTOPped for 10 s (beyond its lease), then SIGCONT;
//! c. `unpeered_kelps_one_filer`: two kelps without `--peers` on one filer prefix, a member on each;
//! d. `filer_down_mid_rebalance`: the filer unreachable for the kelps (iptables) for 8 s while a
//!    rebalance is in progress, no kelp restarted;
//! e. `filer_restarted_mid_rebalance`: the kelps' filer (a standalone `weed filer`) killed with
//!    SIGKILL during a rebalance and started again on its ports and store 4 s later (its
//!    in-memory leases gone), no kelp restarted.
//!
//! Each test names what must never happen and samples for it every 250 ms while the fault lasts:
//! no partition owned by two live members for 3 s or more, never two kelps coordinating one group
//! (its per-group `kelp_group_*` series exist only on its coordinator), no acknowledged commit lost
//! and no committed offset moving backwards (OffsetFetch through a kelp not under the fault). What
//! was measured is printed before anything is asserted, so `scripts/partition-figure` can quote
//! `longest double ownership: X s` from test (a) also when it fails. The tests run one at a time
//! (a lock) and leave no iptables rule behind (`ownership::Cut` removes its rules on drop).
//! Tests c and d are in tests/ownership/filer_cases.rs, e in tests/ownership/filer_restart.rs; the
//! helpers in tests/ownership/.

#[path = "ownership/filer_cases.rs"]
mod filer_cases;
#[path = "ownership/filer_restart.rs"]
mod filer_restart;
mod ownership;
mod peers;
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ownership::offsets::lost_commits;
use ownership::sampling::*;
use ownership::{flag, CUT_UID};
use peers::{Cluster, Member};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the peer traffic stays cut.
const CUT_FOR: Duration = Duration::from_secs(30);
/// How long the owner stays stopped: well beyond its lease (`--lease-ttl-secs`, default 2).
const PAUSE_FOR: Duration = Duration::from_secs(10);

// ---- a. the peer partition ------------------------------------------------------------------------

/// Must never happen: a partition owned by two live members for 3 s or more while kelp 0's peer
/// traffic is cut (and after the heal), an acknowledged commit lost, a committed offset moving
/// backwards. Also: after the heal, every partition owned exactly once again within the session
/// timeout + one rebalance. Prints `longest double ownership: X s` before asserting anything.
#[test]
fn peer_partition() {
    let _serial = serial();
    if let Err(e) = ownership::can_cut() {
        panic!("peer_partition cuts the loopback with iptables: {e}");
    }
    let t0 = Instant::now();
    let mut c = Cluster::new("own-partition", 3);
    c.start_as(0, CUT_UID, &[]);
    c.start(1);
    c.start(2);
    c.wait_peers_live(3, Duration::from_secs(30));
    // As in the issue: the cut kelp is not the group's owner, the other two go on coordinating.
    let group = (0..1000)
        .map(|i| format!("g-own-partition-{i}"))
        .find(|g| c.hash_owner(g, &[0, 1, 2]) != 0)
        .expect("a group kelp 0 does not own");
    let (group, topic) = (group.as_str(), "own-partition");
    support::create_topic(&c.addr(1), topic, PARTITIONS);
    let members = members_on(&c, &[0, 1, 2], group, topic);
    let refs: Vec<&Member> = members.iter().collect();
    let (owner, generation) =
        c.wait_owner(group, 3, Duration::from_secs(1), Duration::from_secs(30));
    let via = if owner != 0 { owner } else { 1 };
    eprintln!(
        "peer_partition: owner kelp {owner} (generation {generation}); kelp 0 (uid {CUT_UID}) will \
         be cut; produce and OffsetFetch through kelp {via}"
    );
    let stop_producing = flag();
    let producer = ownership::trickle(
        c.addr(via),
        topic,
        20,
        Duration::from_millis(500),
        Duration::from_secs(180),
        stop_producing.clone(),
    );
    wait_acked(&refs, 60, Duration::from_secs(60));

    let stop_watch = flag();
    let watcher = ownership::offsets::watch_offsets(
        Arc::new(Mutex::new(c.addr(via))),
        group,
        topic,
        PARTITIONS,
        Duration::from_millis(500),
        Duration::from_secs(180),
        stop_watch.clone(),
    );
    let _stops = ownership::StopGuard(vec![stop_producing.clone(), stop_watch.clone()]);
    let kelps: Vec<(usize, String)> = (0..3)
        .map(|i| (i, c.kelp(i).metrics_addr().to_string()))
        .collect();
    let paused = Mutex::new(BTreeSet::new());
    let stop_sampling = AtomicBool::new(false);
    let (mut cut_at, mut healed_at) = (Instant::now(), Instant::now());
    let (mut isolated, mut recovered) = (None, None);
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
        let others = [c.nodes[1].peer.as_str(), c.nodes[2].peer.as_str()];
        let cut = ownership::Cut::peer_traffic(&c.nodes[0].peer, CUT_UID, &others);
        cut_at = Instant::now();
        // Verify the cut isolates exactly kelp 0: the others count 2 live peers, kelp 0 counts
        // itself alone, kelp 0's client port still answers and its user still reaches the filer
        // and the gateway.
        let deadline = cut_at + Duration::from_secs(20);
        while Instant::now() < deadline {
            let live = c.peers_live();
            if live[&0] == Some(1.0) && live[&1] == Some(2.0) && live[&2] == Some(2.0) {
                isolated = Some(cut_at.elapsed());
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let md = support::metadata(&c.addr(0), Some(topic));
        assert_eq!(
            md.topics().first().map(|t| t.partitions().len()),
            Some(PARTITIONS as usize),
            "kelp 0's clients must still reach it through the cut"
        );
        // And as kelp 0's user: the filer and the gateway yes, the other peer ports no.
        let port = |a: &str| a.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        let stack = support::stack();
        for (what, addr, want) in [
            ("the filer", stack.filer.as_str(), true),
            ("the gateway", stack.kafka.as_str(), true),
            ("kelp 1's peer port", others[0], false),
            ("kelp 2's peer port", others[1], false),
        ] {
            let p = port(addr).expect("a port");
            assert_eq!(
                ownership::reaches_as(CUT_UID, p),
                want,
                "through the cut, kelp 0's user reaching {what} ({addr})"
            );
        }
        ownership::sleep_until(cut_at + CUT_FOR);
        drop(cut);
        healed_at = Instant::now();
        eprintln!(
            "peer_partition: healed after {:.1} s; kelp_peers live {:?}",
            (healed_at - cut_at).as_secs_f64(),
            c.peers_live()
        );
        recovered = wait_cover(&refs, SESSION_PLUS_REBALANCE);
        // A little more sampling after the recovery.
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
        &c.addr(via),
        group,
        topic,
        PARTITIONS,
        (&stop_producing, producer),
        (&stop_watch, watcher),
        Duration::from_secs(40),
    );

    let double = double_ownership(&samples, cut_at);
    // The figure first (scripts/partition-figure quotes it), then the details, then the checks.
    eprintln!(
        "longest double ownership: {:.1} s",
        double.longest.as_secs_f64()
    );
    eprintln!(
        "peer_partition: cut {:.1} s (kelp 0 isolated {isolated:?} after the cut); partition \
         {:?} (members) owned twice longest; {} of {} samples with a partition owned twice; \
         exact ownership {recovered:?} after the heal; series per kelp over time (s after the \
         cut): {}",
        (healed_at - cut_at).as_secs_f64(),
        double.longest_of,
        double.double_samples,
        double.samples,
        exposure_timeline(&samples, cut_at)
    );
    eprintln!(
        "peer_partition: OffsetFetch via kelp {via}: {} samples, {} errors (last {:?}), moved \
         backwards {:?}; acknowledged {acked:?}, committed right after {now:?}; members {:?}; \
         {:.1} s",
        offsets.samples,
        offsets.errors,
        offsets.last_error,
        offsets.backwards,
        summaries(&refs),
        t0.elapsed().as_secs_f64()
    );
    for m in &refs {
        eprintln!(
            "peer_partition: {} assignments (s after the cut): {:?}",
            m.name,
            m.history_since(cut_at)
        );
    }

    let unleased = leases("peer_partition", &kelps);
    assert!(
        isolated.is_some(),
        "the cut did not isolate kelp 0 within 20 s (kelp_peers live: {:?})",
        c.peers_live()
    );
    assert!(
        double.longest < DOUBLE_LIMIT,
        "a partition was owned by two live members for {:.1} s (limit {DOUBLE_LIMIT:?}): {:?}",
        double.longest.as_secs_f64(),
        double.longest_of
    );
    assert!(
        recovered.is_some(),
        "every partition not owned exactly once within {SESSION_PLUS_REBALANCE:?} of the heal: \
         {:?}{}",
        summaries(&refs),
        c.log_tails(20)
    );
    let now = now.unwrap_or_else(|e| panic!("OffsetFetch via kelp {via} after the heal: {e}"));
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
        panic!("the messages produced were not all committed within 40 s of the end: {e}");
    }
    assert!(
        unleased.is_empty(),
        "kelps served the group without holding its lease (kelp, seconds): {unleased:?}"
    );
    drop(members);
    c.assert_no_panics();
}

// ---- b. the paused owner --------------------------------------------------------------------------

/// Must never happen: after the stopped owner resumes, two kelps coordinating the group at one
/// sample (1 s of grace for its runtime to run its overdue timers), a committed offset moving
/// backwards (its late writes visible through another kelp), an acknowledged commit lost, a
/// partition owned by two live members for 3 s or more.
#[test]
fn paused_owner() {
    let _serial = serial();
    let t0 = Instant::now();
    let c = Cluster::running("own-paused", 3);
    let (group, topic) = ("g-own-paused", "own-paused");
    support::create_topic(&c.addr(0), topic, PARTITIONS);
    let members = members_on(&c, &[0, 1, 2], group, topic);
    let refs: Vec<&Member> = members.iter().collect();
    let (owner, generation) =
        c.wait_owner(group, 3, Duration::from_secs(1), Duration::from_secs(30));
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let via = others[0];
    eprintln!(
        "paused_owner: owner kelp {owner} (generation {generation}); produce and OffsetFetch \
         through kelp {via}"
    );
    let stop_producing = flag();
    let producer = ownership::trickle(
        c.addr(via),
        topic,
        20,
        Duration::from_millis(500),
        Duration::from_secs(150),
        stop_producing.clone(),
    );
    wait_acked(&refs, 60, Duration::from_secs(60));
    let stop_watch = flag();
    let watcher = ownership::offsets::watch_offsets(
        Arc::new(Mutex::new(c.addr(via))),
        group,
        topic,
        PARTITIONS,
        EVERY,
        Duration::from_secs(150),
        stop_watch.clone(),
    );
    let _stops = ownership::StopGuard(vec![stop_producing.clone(), stop_watch.clone()]);
    let kelps: Vec<(usize, String)> = (0..3)
        .map(|i| (i, c.kelp(i).metrics_addr().to_string()))
        .collect();
    let paused = Mutex::new(BTreeSet::new());
    let stop_sampling = AtomicBool::new(false);
    let pid = c.kelp(owner).pid().expect("owner runs");
    let (mut stopped_at, mut resumed_at) = (Instant::now(), Instant::now());
    let (mut acked_in_pause, mut recovered) = (0, None);
    let samples = thread::scope(|s| {
        let sampler = s.spawn(|| {
            sample(
                &stop_sampling,
                Duration::from_secs(150),
                &refs,
                &kelps,
                &paused,
                group,
            )
        });
        let _stop = StopOnDrop(&stop_sampling);
        thread::sleep(Duration::from_secs(1));
        paused.lock().unwrap().insert(owner);
        let acked_before: usize = others.iter().map(|i| refs[*i].n_acked()).sum();
        signal(pid, "-STOP");
        stopped_at = Instant::now();
        ownership::sleep_until(stopped_at + PAUSE_FOR);
        acked_in_pause = others.iter().map(|i| refs[*i].n_acked()).sum::<usize>() - acked_before;
        signal(pid, "-CONT");
        resumed_at = Instant::now();
        paused.lock().unwrap().remove(&owner);
        // The resumed kelp's late work happens now; keep sampling through it.
        thread::sleep(Duration::from_secs(8));
        recovered = wait_cover(&refs, SESSION_PLUS_REBALANCE);
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
        &c.addr(via),
        group,
        topic,
        PARTITIONS,
        (&stop_producing, producer),
        (&stop_watch, watcher),
        Duration::from_secs(40),
    );

    let grace = resumed_at + Duration::from_secs(1);
    let twice = two_coordinators(&samples, grace, stopped_at);
    let takeover = samples
        .iter()
        .find(|s| s.at > stopped_at && s.at < resumed_at && s.exposing.iter().any(|k| *k != owner))
        .map(|s| (s.at - stopped_at, s.exposing.clone()));
    let double = double_ownership(&samples, stopped_at);
    eprintln!(
        "paused_owner: kelp {owner} stopped {:.1} s; another kelp coordinating {takeover:?} after \
         the stop; {acked_in_pause} commits acknowledged to the other members during the pause; \
         two kelps with the group's series after the resume (+1 s): {twice:?}; series per kelp \
         (s after the stop): {}",
        (resumed_at - stopped_at).as_secs_f64(),
        exposure_timeline(&samples, stopped_at)
    );
    eprintln!(
        "paused_owner: longest double ownership {:.1} s ({:?}); exact ownership {recovered:?} after \
         the resume + 8 s; OffsetFetch via kelp {via}: {} samples, {} errors, moved backwards \
         {:?}; acknowledged {acked:?}, committed {now:?}; members {:?}; {:.1} s",
        double.longest.as_secs_f64(),
        double.longest_of,
        offsets.samples,
        offsets.errors,
        offsets.backwards,
        summaries(&refs),
        t0.elapsed().as_secs_f64()
    );

    let unleased = leases("paused_owner", &kelps);
    assert!(
        takeover.is_some(),
        "no other kelp took the group over during the {PAUSE_FOR:?} pause{}",
        c.log_tails(20)
    );
    assert!(
        acked_in_pause > 0,
        "the members on the other kelps had no commit acknowledged during the pause"
    );
    assert!(
        offsets.backwards.is_empty(),
        "committed offsets moved backwards (the paused owner's late writes visible through kelp \
         {via}) (partition, before, after, s): {:?}",
        offsets.backwards
    );
    assert!(
        twice.is_empty(),
        "two kelps coordinated the group after the owner resumed: {twice:?}"
    );
    assert!(
        double.longest < DOUBLE_LIMIT,
        "a partition was owned by two live members for {:.1} s: {:?}",
        double.longest.as_secs_f64(),
        double.longest_of
    );
    let now = now.unwrap_or_else(|e| panic!("OffsetFetch via kelp {via}: {e}"));
    let lost = lost_commits(&acked, &now);
    assert!(
        lost.is_empty(),
        "acknowledged commits lost (partition, acknowledged, committed): {lost:?}"
    );
    assert!(
        recovered.is_some(),
        "every partition not owned exactly once after the resume: {:?}{}",
        summaries(&refs),
        c.log_tails(20)
    );
    if let Err(e) = drained {
        panic!("the messages produced were not all committed within 40 s of the end: {e}");
    }
    assert!(
        unleased.is_empty(),
        "kelps served the group without holding its lease (kelp, seconds): {unleased:?}"
    );
    drop(members);
    c.assert_no_panics();
}
