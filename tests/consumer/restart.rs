//! Test e of tests/consumer_protocol.rs: a consumer group's offsets and record survive a kelp
//! kill -9 (kelp with `--filer`): the members go on without a reassignment, nothing acknowledged is
//! lost or rolled back (OffsetFetch sampled throughout), and fresh members start at the commits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::consumer::{self, consumed, cover, delivered, member, serial, TAKEOVER};
use crate::ownership::offsets::{lost_commits, watch_offsets};
use crate::ownership::{flag, StopGuard};
use crate::peers::{self, acked_max, wait_count, Member};
use crate::support;

#[test]
fn offsets_survive_a_kelp_kill9() {
    let _serial = serial();
    let t0 = Instant::now();
    const P: i32 = 6;
    let mut kelp = consumer::kelp("restart", &[]);
    let (topic, group) = ("kip848-restart", "g-kip848-restart");
    support::create_topic(kelp.addr(), topic, P);
    let mut ms: Vec<Member> = (0..2)
        .map(|i| member(kelp.addr(), group, &format!("m{i}"), topic))
        .collect();
    {
        let refs: Vec<&Member> = ms.iter().collect();
        cover("two members", P, Duration::from_secs(60), &refs, &|| {
            consumer::diag(&refs, &kelp)
        });
    }
    eprintln!(
        "e. {:.1} s: two members own everything",
        t0.elapsed().as_secs_f64()
    );
    let first = support::produce_with(kelp.addr(), topic, 600, &[]);
    assert_eq!(first.acked, 600, "produce errors {:?}", first.errors);
    let want1 = delivered(&first.delivered);
    wait_count(
        "the first 600 consumed",
        want1.len(),
        Duration::from_secs(60),
        || {
            consumed(&ms.iter().collect::<Vec<_>>())
                .intersection(&want1)
                .count()
        },
    );
    let stop_watch = flag();
    let _stops = StopGuard(vec![stop_watch.clone()]);
    let watcher = watch_offsets(
        Arc::new(Mutex::new(kelp.addr().to_string())),
        group,
        topic,
        P,
        Duration::from_millis(300),
        Duration::from_secs(150),
        stop_watch.clone(),
    );
    thread::sleep(Duration::from_secs(1));

    // kill -9 of kelp while the members run; the same kelp again on the same ports.
    let acked_before = acked_max(&ms.iter().collect::<Vec<_>>());
    let t_kill = Instant::now();
    kelp.kill9();
    thread::sleep(Duration::from_secs(1));
    kelp.start_again();
    eprintln!(
        "e. kelp killed -9 and started again {:?} later; acknowledged before: {acked_before:?}",
        t_kill.elapsed()
    );
    eprintln!(
        "e. {:.1} s: kelp is back; producing",
        t0.elapsed().as_secs_f64()
    );
    let second = support::produce_with(kelp.addr(), topic, 300, &[]);
    assert_eq!(second.acked, 300, "produce errors {:?}", second.errors);
    let want2 = delivered(&second.delivered);
    wait_count(
        "the next 300 consumed after the restart",
        want2.len(),
        Duration::from_secs(60),
        || {
            consumed(&ms.iter().collect::<Vec<_>>())
                .intersection(&want2)
                .count()
        },
    );
    let reassigned: Vec<_> = ms
        .iter()
        .map(|m| (m.name.clone(), m.history_since(t_kill)))
        .collect();
    eprintln!("e. assignments since the kill: {reassigned:?}");
    assert!(
        reassigned.iter().all(|(_, h)| h.is_empty()),
        "e. the Stable group was reassigned after the kelp restart: {reassigned:?}"
    );
    // Everything consumed gets committed (the members commit every message).
    let ends = peers::ends(&[first.delivered.clone(), second.delivered.clone()].concat());
    let start = Instant::now();
    let committed_now = loop {
        let got = support::committed(kelp.addr(), group, topic, P);
        if lost_commits(&ends, &got).is_empty() || start.elapsed() > Duration::from_secs(30) {
            break got;
        }
        thread::sleep(Duration::from_millis(300));
    };
    assert!(
        lost_commits(&ends, &committed_now).is_empty(),
        "e. commits {committed_now:?} below the ends {ends:?}"
    );

    // The members die; fresh members of the group start at the commits.
    for m in ms.iter_mut() {
        m.kill9();
    }
    let committed_then = support::committed(kelp.addr(), group, topic, P);
    eprintln!(
        "e. {:.1} s: the members are dead; producing",
        t0.elapsed().as_secs_f64()
    );
    let third = support::produce_with(kelp.addr(), topic, 300, &[]);
    assert_eq!(third.acked, 300, "produce errors {:?}", third.errors);
    let fresh: Vec<Member> = (0..2)
        .map(|i| member(kelp.addr(), group, &format!("n{i}"), topic))
        .collect();
    let want3 = delivered(&third.delivered);
    eprintln!(
        "e. {:.1} s: fresh members started",
        t0.elapsed().as_secs_f64()
    );
    wait_count(
        "the last 300 consumed by fresh members",
        want3.len(),
        TAKEOVER + Duration::from_secs(60),
        || {
            consumed(&fresh.iter().collect::<Vec<_>>())
                .intersection(&want3)
                .count()
        },
    );
    let mut firsts: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o) in fresh.iter().flat_map(|m| m.records()) {
        let e = firsts.entry(p).or_insert(o);
        *e = (*e).min(o);
    }
    stop_watch.store(true, std::sync::atomic::Ordering::SeqCst);
    let watch = watcher.join().expect("offset watcher");
    let acked_all = acked_max(&ms.iter().collect::<Vec<_>>());
    eprintln!(
        "e. committed when the members died {committed_then:?}; fresh members' first offsets {firsts:?}; \
         OffsetFetch samples {} (errors {}, while kelp was down), backwards {:?}; {:.1} s",
        watch.samples,
        watch.errors,
        watch.backwards,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        watch.backwards.is_empty(),
        "e. a committed offset moved backwards: {:?}",
        watch.backwards
    );
    assert!(
        lost_commits(&acked_all, &committed_then).is_empty(),
        "e. acknowledged {acked_all:?}, committed {committed_then:?}"
    );
    // (Every partition got messages, so every partition has a commit.)
    assert!(
        committed_then.values().all(|c| *c >= 0),
        "e. a partition without a commit: {committed_then:?}"
    );
    for (p, c) in &committed_then {
        assert_eq!(
            firsts.get(p),
            Some(c),
            "e. partition {p}: fresh members started at {:?}, committed {c}",
            firsts.get(p)
        );
    }
    assert!(
        !kelp.log().contains("panicked"),
        "kelp panicked: {}",
        kelp.log_path().display()
    );
}
