//! KIP-848 (issue 16) with real clients: librdkafka 2.16 members (confluent-kafka 2.16.1,
//! tests/peers/member.py in child processes) with `group.protocol=consumer`, against a real kelp
//! (`--filer`) in front of the real SeaweedFS stack. kelp gives these members a 6 s session and a
//! 500 ms heartbeat interval (`--group-consumer-*`; the client may not set them).
//!
//! a. three members own the topic's partitions exactly once;
//! b. a fourth joins: the three keep every partition they keep (none of them is ever without one
//!    of those, so never at zero partitions) and consume on, and no partition is owned twice;
//! c. kill -9 of a member: the others own its partitions within the session timeout (+ a heartbeat
//!    and 3 s);
//! d. a member closes cleanly: the others own its partitions before its session could have
//!    expired (the leave, not an expiry, moved them);
//! e. offsets survive a kelp kill -9: the group goes on without a reassignment after the restart,
//!    nothing acknowledged is lost or rolled back, and fresh members start at the commits;
//! f. a classic member and a consumer member in one group (Kafka's migration rules, policy
//!    `bidirectional`): the consumer member upgrades the group online, the classic member consumes
//!    throughout, and the group is classic again when the consumer member leaves;
//! g. three kelps, members spread over them: exact ownership and one coordinator.
//!
//! Must never happen, anywhere: a partition owned by two live members at the same instant. Each
//! member stamps its assignment changes with its own clock, so this is checked at every change
//! (no sampling gap, no report lag) and, as the issue words it, at samples every 200 ms. The tests
//! run one at a time (a lock); a–d share one group to keep the binary short; e is in
//! tests/consumer/restart.rs, f in tests/consumer/mixed.rs.

mod consumer;
mod ownership;
mod peers;
mod support;

use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use consumer::timeline::{double_owned, double_owned_at_samples, dropped_to_zero, kept_and_paused};
use consumer::{
    consumed, cover, delivered, lives, member, serial, HEARTBEAT, SAMPLE_EVERY, SESSION, TAKEOVER,
};
use ownership::{flag, trickle, StopGuard};
use peers::{wait_count, wall_now, Cluster, Member};

// ---- a-d. one group: three members, a fourth, a kill -9, a clean close -------------------------

#[test]
fn join_kill_and_close() {
    let _serial = serial();
    let t0 = Instant::now();
    const P: i32 = 8;
    let kelp = consumer::kelp("lifecycle", &[]);
    let (topic, group) = ("kip848-lifecycle", "g-kip848-lifecycle");
    support::create_topic(kelp.addr(), topic, P);
    let stop_producing = flag();
    let _stops = StopGuard(vec![stop_producing.clone()]);
    let producer = trickle(
        kelp.addr().to_string(),
        topic,
        16,
        Duration::from_millis(300),
        Duration::from_secs(150),
        stop_producing.clone(),
    );

    // a. three members: exact ownership.
    let mut ms: Vec<Member> = (0..3)
        .map(|i| member(kelp.addr(), group, &format!("m{i}"), topic))
        .collect();
    let start = wall_now();
    let took = {
        let refs: Vec<&Member> = ms.iter().collect();
        cover(
            "a. three KIP-848 members",
            P,
            Duration::from_secs(60),
            &refs,
            &|| consumer::diag(&refs, &kelp),
        )
    };
    let kind = consumer::wait_group_type(kelp.addr(), group, "CONSUMER", Duration::from_secs(10));
    let rec = consumer::wait_settled(&kelp, group, Duration::from_secs(10));
    eprintln!(
        "a. 3 members own {P} partitions exactly once after {took:?}: {:?}; listed as {kind:?}; {rec:?}",
        ms.iter().map(|m| m.partitions()).collect::<Vec<_>>()
    );
    assert_eq!(
        kind.map(|k| k.0),
        Some("CONSUMER".to_string()),
        "ListGroups type of {group}"
    );
    assert!(
        rec.settled(),
        "a. reconciliation series not settled: {rec:?}"
    );
    assert_eq!(
        peers::metric(
            &kelp,
            "kelp_group_members",
            &[("group", group), ("protocol", "consumer")]
        ),
        Some(3.0),
        "kelp_group_members{{protocol=\"consumer\"}}"
    );
    assert!(
        consumer::heartbeats(&kelp, &["ok"]) > 0.0,
        "no successful ConsumerGroupHeartbeat counted"
    );

    // b. a fourth member joins while the others consume; samples every 200 ms.
    let b_from = wall_now();
    let marks: Vec<usize> = ms.iter().map(|m| m.n_records()).collect();
    let stop_sampling = AtomicBool::new(false);
    let (samples, took) = thread::scope(|s| {
        let sampler = s.spawn(|| {
            consumer::sample_times(&stop_sampling, SAMPLE_EVERY, Duration::from_secs(90))
        });
        ms.push(member(kelp.addr(), group, "m3", topic));
        let refs: Vec<&Member> = ms.iter().collect();
        let took = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cover(
                "b. four members",
                P,
                Duration::from_secs(60),
                &refs,
                &|| consumer::diag(&refs, &kelp),
            )
        }));
        // Keep sampling a little: a late change would show.
        thread::sleep(Duration::from_secs(2));
        stop_sampling.store(true, std::sync::atomic::Ordering::SeqCst);
        let samples = sampler.join().expect("sampler");
        (
            samples,
            took.unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let b_to = wall_now();
    let refs: Vec<&Member> = ms.iter().collect();
    let ls = lives(&refs, &[]);
    let doubles = double_owned(&ls, start, b_to);
    let sampled = double_owned_at_samples(&ls, &samples);
    let kept: Vec<(Vec<i32>, f64)> = ls[..3]
        .iter()
        .map(|l| kept_and_paused(l, b_from, b_to))
        .collect();
    let drops: Vec<Option<f64>> = ls[..3]
        .iter()
        .map(|l| dropped_to_zero(l, b_from, b_to))
        .collect();
    eprintln!(
        "b. four members own {P} partitions exactly once {took:?} after the fourth started; {} samples; \
         kept (partitions, seconds without some of them): {kept:?}; assignments since: {:?}",
        samples.len(),
        ms.iter().map(|m| (m.name.clone(), m.history_since(t0))).collect::<Vec<_>>()
    );
    assert!(
        doubles.is_empty(),
        "b. partitions owned twice (members' clocks): {doubles:?}"
    );
    assert!(
        sampled.is_empty(),
        "b. partitions owned twice at samples: {sampled:?}"
    );
    assert!(
        drops.iter().all(Option::is_none),
        "b. a member of the three went to zero partitions: {drops:?}"
    );
    for (i, (k, paused)) in kept.iter().enumerate() {
        assert!(!k.is_empty(), "b. m{i} kept no partition: {kept:?}");
        assert_eq!(
            *paused, 0.0,
            "b. m{i} was without partitions it kept ({k:?}) for {paused} s"
        );
    }
    // The three go on consuming what they keep (messages keep coming on every partition).
    for (i, (k, _)) in kept.iter().enumerate() {
        wait_count(
            &format!("b. m{i} consuming its kept partitions {k:?}"),
            1,
            Duration::from_secs(20),
            || {
                ms[i].records()[marks[i]..]
                    .iter()
                    .filter(|(p, _)| k.contains(p))
                    .count()
            },
        );
    }
    wait_count(
        "b. the fourth member consuming",
        1,
        Duration::from_secs(20),
        || ms[3].n_records(),
    );
    let rec = consumer::wait_settled(&kelp, group, Duration::from_secs(10));
    assert!(
        rec.settled(),
        "b. reconciliation series not settled after the join: {rec:?}"
    );

    // c. kill -9 of m0: the other three own its partitions within the session timeout.
    let c_from = wall_now();
    let killed_at = wall_now();
    let t_kill = Instant::now();
    ms[0].kill9();
    let took = {
        let refs: Vec<&Member> = ms[1..].iter().collect();
        cover("c. the three after a kill -9", P, TAKEOVER, &refs, &|| {
            consumer::diag(&refs, &kelp)
        })
    };
    thread::sleep(Duration::from_secs(1));
    let c_to = wall_now();
    let refs: Vec<&Member> = ms.iter().collect();
    let ls = lives(&refs, &[(0, killed_at)]);
    let doubles = double_owned(&ls, c_from, c_to);
    let drops: Vec<Option<f64>> = ls[1..]
        .iter()
        .map(|l| dropped_to_zero(l, c_from, c_to))
        .collect();
    let kept: Vec<(Vec<i32>, f64)> = ls[1..]
        .iter()
        .map(|l| kept_and_paused(l, c_from, c_to))
        .collect();
    eprintln!(
        "c. after kill -9 of m0 the others own everything {:?} after the kill (bound {TAKEOVER:?}); \
         covered {took:?} after; kept {kept:?}",
        t_kill.elapsed().saturating_sub(Duration::from_secs(1))
    );
    assert!(doubles.is_empty(), "c. partitions owned twice: {doubles:?}");
    assert!(
        drops.iter().all(Option::is_none),
        "c. a survivor went to zero partitions: {drops:?}"
    );
    assert!(
        kept.iter().all(|(_, p)| *p == 0.0),
        "c. a survivor lost partitions it kept for a while: {kept:?}"
    );

    // d. m1 closes cleanly: its partitions move before its session could have expired.
    let d_from = wall_now();
    let t_close = Instant::now();
    let (closed_at, closed) = ms[1].close(Duration::from_secs(10));
    assert!(
        closed,
        "d. m1 did not close within 10 s: {}",
        ms[1].summary()
    );
    // An expiry could not come before the session timeout less one heartbeat after the close.
    let clean_bound = SESSION - HEARTBEAT;
    let left = clean_bound.saturating_sub(t_close.elapsed());
    let took = {
        let refs: Vec<&Member> = ms[2..].iter().collect();
        cover("d. the two after a clean close", P, left, &refs, &|| {
            consumer::diag(&refs, &kelp)
        })
    };
    let moved = t_close.elapsed();
    thread::sleep(Duration::from_secs(1));
    let d_to = wall_now();
    let refs: Vec<&Member> = ms.iter().collect();
    let ls = lives(&refs, &[(0, killed_at), (1, closed_at)]);
    let doubles = double_owned(&ls, d_from, d_to);
    let drops: Vec<Option<f64>> = ls[2..]
        .iter()
        .map(|l| dropped_to_zero(l, d_from, d_to))
        .collect();
    eprintln!("d. after m1's close the others own everything {moved:?} after the close (covered {took:?} after it returned; bound {clean_bound:?})");
    assert!(
        moved < clean_bound,
        "d. the clean close took {moved:?} to move partitions (an expiry?)"
    );
    assert!(doubles.is_empty(), "d. partitions owned twice: {doubles:?}");
    assert!(
        drops.iter().all(Option::is_none),
        "d. a member went to zero partitions: {drops:?}"
    );

    // Over the whole run: never owned twice, nothing produced left unconsumed.
    let all_doubles = double_owned(&ls, start, wall_now());
    assert!(
        all_doubles.is_empty(),
        "partitions owned twice: {all_doubles:?}"
    );
    stop_producing.store(true, std::sync::atomic::Ordering::SeqCst);
    let produced = producer.join().expect("producer");
    let want = delivered(&produced);
    wait_count(
        "every produced message consumed",
        want.len(),
        Duration::from_secs(60),
        || consumed(&refs).intersection(&want).count(),
    );
    let rec = consumer::wait_settled(&kelp, group, Duration::from_secs(10));
    eprintln!(
        "join_kill_and_close: {} messages consumed; {rec:?}; heartbeats by error: ok {} errors {}; {:.1} s",
        want.len(),
        consumer::heartbeats(&kelp, &["ok"]),
        consumer::heartbeats(&kelp, &[]) - consumer::heartbeats(&kelp, &["ok"]),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        rec.settled(),
        "reconciliation series not settled at the end: {rec:?}"
    );
    assert!(
        !kelp.log().contains("panicked"),
        "kelp panicked: {}",
        kelp.log_path().display()
    );
}

// ---- g. three kelps ------------------------------------------------------------------------------

#[test]
fn three_kelps_one_coordinator() {
    let _serial = serial();
    let t0 = Instant::now();
    const P: i32 = 6;
    let mut c = Cluster::new("kip848-three", 3);
    let flags = consumer::consumer_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    for i in 0..3 {
        c.start_with(i, &flags);
    }
    c.wait_peers_live(3, Duration::from_secs(30));
    let (topic, group) = ("kip848-three", "g-kip848-three");
    support::create_topic(&c.addr(0), topic, P);
    let ms: Vec<Member> = (0..3)
        .map(|i| member(&c.addr(i), group, &format!("m{i}"), topic))
        .collect();
    let refs: Vec<&Member> = ms.iter().collect();
    let start = wall_now();
    let diag = || {
        format!(
            "\nmembers: {:?}{}",
            refs.iter().map(|m| m.summary()).collect::<Vec<_>>(),
            c.log_tails(20)
        )
    };
    let took = cover(
        "three members on three kelps",
        P,
        Duration::from_secs(60),
        &refs,
        &diag,
    );
    let (owner, epoch) = c.wait_owner(group, 3, Duration::from_secs(1), Duration::from_secs(30));
    eprintln!("g. exact ownership after {took:?}; coordinator kelp {owner}, group epoch {epoch}");
    assert_eq!(
        c.exposing(group),
        vec![owner],
        "g. the group's series on more than one kelp"
    );
    assert_eq!(
        owner,
        c.hash_owner(group, &[0, 1, 2]),
        "g. not the rendezvous owner"
    );
    let n = 600;
    let produced = support::produce_with(&c.addr(1), topic, n, &[]);
    assert_eq!(produced.acked, n, "produce errors {:?}", produced.errors);
    let want = delivered(&produced.delivered);
    wait_count(
        "g. every message consumed",
        n,
        Duration::from_secs(60),
        || consumed(&refs).intersection(&want).count(),
    );
    thread::sleep(Duration::from_secs(1));
    let all: Vec<(i32, i64)> = refs.iter().flat_map(|m| m.records()).collect();
    assert_eq!(all.len(), n, "g. messages consumed more than once");
    let doubles = double_owned(&lives(&refs, &[]), start, wall_now());
    assert!(doubles.is_empty(), "g. partitions owned twice: {doubles:?}");
    assert_eq!(
        c.wait_owner(
            group,
            3,
            Duration::from_millis(500),
            Duration::from_secs(10)
        ),
        (owner, epoch),
        "g. the coordinator or epoch changed while stable"
    );
    eprintln!(
        "three_kelps_one_coordinator: {n} messages consumed once; {}; {:.1} s",
        c.moves(),
        t0.elapsed().as_secs_f64()
    );
    c.assert_no_panics();
}
