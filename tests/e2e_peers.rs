//! Several sidecars, one group (issue 7): kelps on 127.0.0.1 that list each other in `--peers`
//! share one filer prefix, and each consumer of a group talks only to its own kelp. Real
//! SeaweedFS stack, real librdkafka members (rdkafka in-process, and confluent-kafka in child
//! processes where a member must die with its kelp).
//!
//! 1. three kelps, three members, 6 partitions: each partition owned once, each message consumed
//!    once, the group's series on exactly one kelp, `kelp_peers{state="live"}` 3 everywhere;
//! 2. kill -9 of the owning kelp and its member: the other two own everything within session
//!    timeout + one rebalance, no acknowledged commit lost, later messages all consumed;
//! 3. a fourth kelp (listed from the start, down until then) that the group's rendezvous hash
//!    moves the group to: no rebalance for the move (loaded from the filer), then a fourth member
//!    on it: exactly one rebalance, ownership exactly once, every message consumed once;
//! 4. a non-owner kelp and its member killed -9 while a rebalance is in progress: the group
//!    re-forms with every partition owned once, nothing acknowledged lost.
//!
//! The owner seen in the metrics is checked against `kelp::peers::hash::group_owner` over the live peers.
//! Every test also checks that no kelp logged a panic. The tests run one at a time (a lock): each
//! starts three or four kelps and their members on a small machine.

mod peers;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use peers::{
    acked_max, distinct, ends, lost_commits, metric, wait_count, wait_exact_cover, Cluster, Member,
};
use support::{committed, GroupConsumer, Record};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Short sessions keep the tests fast; 6000 ms is the smallest the coordinator accepts.
const SESSION: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("auto.commit.interval.ms", "500"),
];

/// What a member dying without LeaveGroup may take: its session timeout, then one rebalance.
const TAKEOVER_BOUND: Duration = Duration::from_secs(6 + 20);

fn pairs(records: &[Record]) -> Vec<(i32, i64)> {
    records.iter().map(|r| (r.partition, r.offset)).collect()
}

fn delivered_set(d: &[support::Delivered]) -> HashSet<(i32, i64)> {
    d.iter().map(|d| (d.partition, d.offset)).collect()
}

/// Records consumed after a fault below the acknowledged commit of their partition: a consumer
/// started there only if the commit was lost.
fn before_acked(after: &[(i32, i64)], acked: &BTreeMap<i32, i64>) -> Vec<(i32, i64)> {
    after
        .iter()
        .filter(|(p, o)| acked.get(p).is_some_and(|a| o < a))
        .copied()
        .collect()
}

/// Waits until OffsetFetch through `bootstrap` answers at least `want` for every partition.
fn wait_committed(
    what: &str,
    bootstrap: &str,
    group: &str,
    topic: &str,
    want: &BTreeMap<i32, i64>,
    timeout: Duration,
) {
    let start = Instant::now();
    loop {
        let got = committed(bootstrap, group, topic, 6);
        if lost_commits(want, &got).is_empty() {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: committed {got:?}, want at least {want:?} within {timeout:?}"
        );
        thread::sleep(Duration::from_millis(300));
    }
}

// ---- 1. three kelps, one group ------------------------------------------------------------------

#[test]
fn three_kelps_one_group() {
    let _serial = serial();
    let t0 = Instant::now();
    let mut c = Cluster::new("three", 3);
    for i in 0..3 {
        c.start(i);
    }
    let took = c.wait_peers_live(3, Duration::from_secs(30));
    eprintln!("three kelps see 3 live peers {took:?} after the last start");
    let (topic, group) = ("peers-three", "g-peers-three");
    support::create_topic(&c.addr(0), topic, 6);

    let members: Vec<GroupConsumer> = (0..3)
        .map(|i| GroupConsumer::start_with(&c.addr(i), group, &format!("m{i}"), &[topic], SESSION))
        .collect();
    let diag = || c.log_tails(15);
    let took = wait_exact_cover(
        "three members on three kelps",
        6,
        Duration::from_secs(60),
        &[
            &|| members[0].partitions(),
            &|| members[1].partitions(),
            &|| members[2].partitions(),
        ],
        &diag,
    );
    let (owner, generation) =
        c.wait_owner(group, 3, Duration::from_secs(2), Duration::from_secs(30));
    eprintln!(
        "3 members cover 6 partitions after {took:?}; owner kelp {owner}, generation {generation}; \
         assignments {:?}",
        members.iter().map(|m| m.partitions()).collect::<Vec<_>>()
    );
    assert_eq!(
        c.exposing(group),
        vec![owner],
        "the group's series on more than one kelp"
    );
    assert_eq!(
        owner,
        c.hash_owner(group, &[0, 1, 2]),
        "not the rendezvous owner"
    );
    for (i, live) in c.peers_live() {
        assert_eq!(live, Some(3.0), "kelp {i}: kelp_peers{{state=\"live\"}}");
    }

    let n = 900;
    let produced = support::produce_with(&c.addr(1), topic, n, &[]);
    assert_eq!(produced.acked, n, "produce errors {:?}", produced.errors);
    assert_eq!(
        produced.by_partition().len(),
        6,
        "produce spread {:?}",
        produced.by_partition()
    );
    wait_count("messages consumed", n, Duration::from_secs(60), || {
        distinct(
            &members
                .iter()
                .flat_map(|m| pairs(&m.records()))
                .collect::<Vec<_>>(),
        )
        .len()
    });
    thread::sleep(Duration::from_secs(1)); // a duplicate would arrive by now
    let all: Vec<(i32, i64)> = members.iter().flat_map(|m| pairs(&m.records())).collect();
    assert_eq!(all.len(), n, "messages consumed more than once");
    assert_eq!(distinct(&all), delivered_set(&produced.delivered));
    // Each member consumed exactly its own partitions.
    for m in &members {
        let owned: HashSet<i32> = m.partitions().into_iter().collect();
        assert!(
            m.records().iter().all(|r| owned.contains(&r.partition)),
            "a member consumed a partition it does not own"
        );
    }
    let (owner_after, generation_after) = c.wait_owner(
        group,
        3,
        Duration::from_millis(500),
        Duration::from_secs(10),
    );
    assert_eq!(
        (owner_after, generation_after),
        (owner, generation),
        "the owner or generation changed while stable"
    );
    eprintln!(
        "three_kelps_one_group: {n} messages consumed once by 3 members on 3 kelps; {}; {:.1} s",
        c.moves(),
        t0.elapsed().as_secs_f64()
    );
    for m in members {
        m.stop();
    }
    c.assert_no_panics();
}

// ---- 2. the owner killed ------------------------------------------------------------------------

#[test]
fn owner_killed() {
    let _serial = serial();
    let t0 = Instant::now();
    let mut c = Cluster::running("owner-killed", 3);
    let (topic, group) = ("peers-owner-killed", "g-peers-owner-killed");
    support::create_topic(&c.addr(0), topic, 6);

    // Members commit every message synchronously (5 ms apart), so commits are in flight at the kill.
    let mut members: Vec<Member> = (0..3)
        .map(|i| Member::start(&c.addr(i), group, &format!("m{i}"), topic, 5))
        .collect();
    let diag = || {
        format!(
            "\nmembers: {:?}{}",
            members.iter().map(|m| m.summary()).collect::<Vec<_>>(),
            c.log_tails(20)
        )
    };
    wait_exact_cover(
        "three members on three kelps",
        6,
        Duration::from_secs(60),
        &[
            &|| members[0].partitions(),
            &|| members[1].partitions(),
            &|| members[2].partitions(),
        ],
        &diag,
    );
    let (owner, generation) =
        c.wait_owner(group, 3, Duration::from_secs(1), Duration::from_secs(30));
    assert_eq!(
        owner,
        c.hash_owner(group, &[0, 1, 2]),
        "not the rendezvous owner"
    );
    let survivors: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let (a, b) = (survivors[0], survivors[1]);
    eprintln!("owner kelp {owner} (generation {generation}); survivors {a}, {b}");

    let n1 = 900;
    let first = support::produce_with(&c.addr(a), topic, n1, &[]);
    assert_eq!(first.acked, n1, "produce errors {:?}", first.errors);
    wait_count(
        "acknowledged commits before the kill",
        300,
        Duration::from_secs(60),
        || members.iter().map(|m| m.n_acked()).sum(),
    );

    // The owner's pod dies: its kelp and its member, with commits in flight.
    c.kill9(owner);
    members[owner].kill9();
    let t_kill = Instant::now();
    let acked_before = acked_max(&members.iter().collect::<Vec<_>>());
    let marks: Vec<usize> = members.iter().map(|m| m.n_records()).collect();
    eprintln!(
        "killed kelp {owner} and member m{owner}; acknowledged commits before: {acked_before:?}; \
         {:?}",
        members.iter().map(|m| m.summary()).collect::<Vec<_>>()
    );

    // Messages produced after the kill, through a surviving kelp.
    let second = {
        let addr = c.addr(a);
        thread::spawn(move || support::produce_with(&addr, topic, 300, &[]))
    };
    let diag = || {
        format!(
            "\nmembers: {:?}{}",
            members.iter().map(|m| m.summary()).collect::<Vec<_>>(),
            c.log_tails(30)
        )
    };
    wait_exact_cover(
        "the two survivors after the owner's kill",
        6,
        TAKEOVER_BOUND,
        &[&|| members[a].partitions(), &|| members[b].partitions()],
        &diag,
    );
    let covered = t_kill.elapsed();
    let (new_owner, new_generation) =
        c.wait_owner(group, 2, Duration::from_secs(1), Duration::from_secs(30));
    let settled = t_kill.elapsed() - Duration::from_secs(1);
    eprintln!(
        "takeover: survivors own all 6 partitions {covered:?} after the kill; new owner kelp \
         {new_owner} Stable with 2 members at generation {new_generation} by {settled:?}; {}",
        c.moves()
    );
    eprintln!(
        "assignments after the kill: m{a} {:?}, m{b} {:?}; {:?}",
        members[a].history_since(t_kill),
        members[b].history_since(t_kill),
        [a, b].map(|i| members[i].summary())
    );
    let lost: usize = [a, b].iter().map(|i| members[*i].lost()).sum();
    if lost > 0 {
        // librdkafka gave its assignment up after session.timeout.ms without a successful
        // coordinator response: the survivors rejoin as new members and the join waits for their
        // old ids to expire too (about two session timeouts in all). Seen when a synchronous
        // commit was in flight at the kill (KELP_TEST_MEMBER_DEBUG=cgrp shows SESSTMOUT).
        eprintln!(
            "note: {lost} survivor(s) lost their session on the client side during the takeover"
        );
    }
    assert!(covered <= TAKEOVER_BOUND);
    assert_eq!(
        new_owner,
        c.hash_owner(group, &[a, b]),
        "not the rendezvous owner among the survivors"
    );

    let second = second.join().expect("producer thread");
    assert_eq!(second.acked, 300, "produce errors {:?}", second.errors);
    let mut want = delivered_set(&first.delivered);
    want.extend(delivered_set(&second.delivered));
    let consumed = || distinct(&members.iter().flat_map(|m| m.records()).collect::<Vec<_>>());
    wait_count(
        "every message consumed",
        want.len(),
        Duration::from_secs(60),
        || consumed().intersection(&want).count(),
    );
    assert!(want.is_subset(&consumed()));

    // No acknowledged commit lost: survivors never start below one, and OffsetFetch answers them.
    let after: Vec<(i32, i64)> = [a, b]
        .iter()
        .flat_map(|i| members[*i].records()[marks[*i]..].to_vec())
        .collect();
    let below = before_acked(&after, &acked_before);
    assert!(
        below.is_empty(),
        "consumed again below an acknowledged commit (commit lost): {below:?}, acknowledged \
         {acked_before:?}"
    );
    let now = committed(&c.addr(b), group, topic, 6);
    let lost = lost_commits(&acked_before, &now);
    assert!(
        lost.is_empty(),
        "acknowledged commits lost (partition, acked, now): {lost:?}"
    );
    let mut end = ends(&first.delivered);
    for (p, o) in ends(&second.delivered) {
        let e = end.entry(p).or_insert(o);
        *e = (*e).max(o);
    }
    wait_committed(
        "commits through the new owner",
        &c.addr(a),
        group,
        topic,
        &end,
        Duration::from_secs(30),
    );
    let total: usize = members.iter().map(|m| m.n_records()).sum();
    eprintln!(
        "owner_killed: takeover {covered:?}; {} messages, {} deliveries ({} again after the kill); \
         OffsetFetch right after: {now:?}; {:.1} s",
        want.len(),
        total,
        total - want.len(),
        t0.elapsed().as_secs_f64()
    );
    drop(members);
    c.assert_no_panics();
}

// ---- 3. a fourth kelp joins ---------------------------------------------------------------------

#[test]
fn fourth_kelp_joins() {
    let _serial = serial();
    let t0 = Instant::now();
    // Four peers listed from the start; the fourth is down until it starts.
    let mut c = Cluster::new("fourth", 4);
    for i in 0..3 {
        c.start(i);
    }
    c.wait_peers_live(3, Duration::from_secs(30));
    // A group the fourth kelp will own (by kelp's rendezvous hash over the listed peers), so
    // its arrival moves the group: the new owner loads it from the filer.
    let group = (0..1000)
        .map(|i| format!("g-peers-fourth-{i}"))
        .find(|g| c.hash_owner(g, &[0, 1, 2, 3]) == 3)
        .expect("a group id the fourth kelp owns");
    let (topic, group) = ("peers-fourth", group.as_str());
    support::create_topic(&c.addr(0), topic, 6);
    let mut members: Vec<GroupConsumer> = (0..3)
        .map(|i| GroupConsumer::start_with(&c.addr(i), group, &format!("m{i}"), &[topic], SESSION))
        .collect();
    wait_exact_cover(
        "three members on three kelps",
        6,
        Duration::from_secs(60),
        &[
            &|| members[0].partitions(),
            &|| members[1].partitions(),
            &|| members[2].partitions(),
        ],
        &|| c.log_tails(15),
    );
    let (owner1, gen1) = c.wait_owner(group, 3, Duration::from_secs(1), Duration::from_secs(30));
    assert_eq!(
        owner1,
        c.hash_owner(group, &[0, 1, 2]),
        "not the rendezvous owner"
    );
    let n1 = 600;
    let first = support::produce_with(&c.addr(0), topic, n1, &[]);
    assert_eq!(first.acked, n1, "produce errors {:?}", first.errors);
    wait_count("first batch consumed", n1, Duration::from_secs(60), || {
        distinct(
            &members
                .iter()
                .flat_map(|m| pairs(&m.records()))
                .collect::<Vec<_>>(),
        )
        .len()
    });
    // Everything consumed is committed before the group changes, so nothing is read twice.
    wait_committed(
        "auto-commits of the first batch",
        &c.addr(1),
        group,
        topic,
        &ends(&first.delivered),
        Duration::from_secs(20),
    );

    let owned_before: Vec<Vec<i32>> = members.iter().map(|m| m.partitions()).collect();
    let seen_before: Vec<usize> = members
        .iter()
        .map(|m| m.consumed.assignments_seen())
        .collect();
    let started = Instant::now();
    c.start(3);
    let seen = c.wait_peers_live(4, Duration::from_secs(30));
    let (owner2, gen2) = c.wait_owner(group, 3, Duration::from_secs(3), Duration::from_secs(30));
    eprintln!(
        "fourth kelp: 4 live peers everywhere {seen:?} after its start; owner kelp {owner1} -> \
         {owner2}, generation {gen1} -> {gen2} ({:?} after the start); moves: {}",
        started.elapsed(),
        c.moves()
    );
    assert_eq!(owner2, 3, "the group did not move to the fourth kelp");
    assert_eq!(gen2, gen1, "the ownership move rebalanced a Stable group");
    let owned_after: Vec<Vec<i32>> = members.iter().map(|m| m.partitions()).collect();
    let seen_after: Vec<usize> = members
        .iter()
        .map(|m| m.consumed.assignments_seen())
        .collect();
    assert_eq!(
        owned_after, owned_before,
        "assignments changed with the move"
    );
    assert_eq!(
        seen_after, seen_before,
        "librdkafka saw a new assignment with the move"
    );
    let moved = |i: usize, d: &str| {
        metric(
            c.kelp(i),
            "kelp_group_ownership_moves_total",
            &[("direction", d)],
        )
        .unwrap_or(0.0)
    };
    assert!(moved(3, "in") >= 1.0, "kelp 3 counted no move in");
    assert!(
        moved(owner1, "out") >= 1.0,
        "kelp {owner1} counted no move out"
    );

    members.push(GroupConsumer::start_with(
        &c.addr(3),
        group,
        "m3",
        &[topic],
        SESSION,
    ));
    let took = wait_exact_cover(
        "four members on four kelps",
        6,
        Duration::from_secs(30),
        &[
            &|| members[0].partitions(),
            &|| members[1].partitions(),
            &|| members[2].partitions(),
            &|| members[3].partitions(),
        ],
        &|| c.log_tails(15),
    );
    let (owner3, gen3) = c.wait_owner(group, 4, Duration::from_secs(2), Duration::from_secs(30));
    eprintln!(
        "fourth member: 4 members cover 6 partitions {took:?} after it started; owner kelp \
         {owner3}, generation {gen2} -> {gen3}; assignments {:?}",
        members.iter().map(|m| m.partitions()).collect::<Vec<_>>()
    );
    assert_eq!(owner3, owner2, "the owner changed with no peer change");
    assert_eq!(
        gen3,
        gen2 + 1,
        "not exactly one rebalance for the fourth member"
    );

    let n2 = 600;
    let second = support::produce_with(&c.addr(3), topic, n2, &[]);
    assert_eq!(second.acked, n2, "produce errors {:?}", second.errors);
    let mut want = delivered_set(&first.delivered);
    want.extend(delivered_set(&second.delivered));
    wait_count(
        "both batches consumed",
        n1 + n2,
        Duration::from_secs(60),
        || {
            distinct(
                &members
                    .iter()
                    .flat_map(|m| pairs(&m.records()))
                    .collect::<Vec<_>>(),
            )
            .len()
        },
    );
    thread::sleep(Duration::from_secs(1));
    let all: Vec<(i32, i64)> = members.iter().flat_map(|m| pairs(&m.records())).collect();
    assert_eq!(distinct(&all), want, "messages lost or invented");
    assert_eq!(all.len(), n1 + n2, "messages consumed more than once");
    assert!(members[3].count() > 0, "the fourth member consumed nothing");
    eprintln!(
        "fourth_kelp_joins: {} messages consumed once by 4 members on 4 kelps; {:.1} s",
        n1 + n2,
        t0.elapsed().as_secs_f64()
    );
    for m in members {
        m.stop();
    }
    c.assert_no_panics();
}

// ---- 4. a non-owner kelp killed mid-rebalance ---------------------------------------------------

#[test]
fn peer_killed_mid_rebalance() {
    let _serial = serial();
    let t0 = Instant::now();
    let mut c = Cluster::running("mid-rebalance", 3);
    let (topic, group) = ("peers-mid-rebalance", "g-peers-mid-rebalance");
    support::create_topic(&c.addr(0), topic, 6);
    let mut members: Vec<Member> = (0..3)
        .map(|i| Member::start(&c.addr(i), group, &format!("m{i}"), topic, 0))
        .collect();
    wait_exact_cover(
        "three members on three kelps",
        6,
        Duration::from_secs(60),
        &[
            &|| members[0].partitions(),
            &|| members[1].partitions(),
            &|| members[2].partitions(),
        ],
        &|| c.log_tails(15),
    );
    let (owner, gen0) = c.wait_owner(group, 3, Duration::from_secs(1), Duration::from_secs(30));
    assert_eq!(
        owner,
        c.hash_owner(group, &[0, 1, 2]),
        "not the rendezvous owner"
    );
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let (x, y) = (others[0], others[1]);
    let n1 = 600;
    let first = support::produce_with(&c.addr(owner), topic, n1, &[]);
    assert_eq!(first.acked, n1, "produce errors {:?}", first.errors);
    let end1 = ends(&first.delivered);
    support::wait_until(
        "the first batch consumed and committed",
        Duration::from_secs(60),
        || lost_commits(&end1, &acked_max(&members.iter().collect::<Vec<_>>())).is_empty(),
    );

    // A fourth member on non-owner kelp x starts a rebalance; while it runs, kelp y and its member die.
    members.push(Member::start(&c.addr(x), group, "m3", topic, 0));
    let joined = Instant::now();
    let mut trigger = None;
    while trigger.is_none() && joined.elapsed() < Duration::from_secs(30) {
        let body = c.kelp(owner).http_get("/metrics").1;
        let state = |s| {
            peers::metric_in(&body, "kelp_group_state", &[("group", group), ("state", s)])
                == Some(1.0)
        };
        let generation = peers::metric_in(&body, "kelp_group_generation", &[("group", group)]);
        if state("PreparingRebalance") {
            trigger = Some("the owner in PreparingRebalance");
        } else if state("CompletingRebalance") {
            trigger = Some("the owner in CompletingRebalance");
        } else if members[y].partitions().is_empty() {
            trigger = Some("the member on kelp y revoked its partitions");
        } else if generation.is_some_and(|g| g as i64 > gen0) {
            panic!(
                "the rebalance finished (generation {gen0} -> {generation:?}) before it was seen \
                 in progress{}",
                c.log_tails(15)
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
    let trigger = trigger.unwrap_or_else(|| {
        panic!(
            "no rebalance within 30 s of the fourth member's start{}",
            c.log_tails(20)
        )
    });
    c.kill9(y);
    members[y].kill9();
    let t_kill = Instant::now();
    let acked_before = acked_max(&members.iter().collect::<Vec<_>>());
    let marks: Vec<usize> = members.iter().map(|m| m.n_records()).collect();
    eprintln!(
        "owner kelp {owner}; fourth member on kelp {x}; killed kelp {y} and m{y} {:?} after the \
         fourth member started, on {trigger}",
        t_kill - joined
    );

    let second = {
        let addr = c.addr(owner);
        thread::spawn(move || support::produce_with(&addr, topic, 300, &[]))
    };
    let survivors = [owner, x, 3];
    let diag = || {
        format!(
            "\nmembers: {:?}{}",
            members.iter().map(|m| m.summary()).collect::<Vec<_>>(),
            c.log_tails(30)
        )
    };
    wait_exact_cover(
        "the three live members after the kill",
        6,
        TAKEOVER_BOUND,
        &[
            &|| members[survivors[0]].partitions(),
            &|| members[survivors[1]].partitions(),
            &|| members[survivors[2]].partitions(),
        ],
        &diag,
    );
    let covered = t_kill.elapsed();
    let (owner_after, gen_after) =
        c.wait_owner(group, 3, Duration::from_secs(1), Duration::from_secs(30));
    let settled = t_kill.elapsed() - Duration::from_secs(1);
    eprintln!(
        "recovery: 3 members own all 6 partitions {covered:?} after the kill; owner kelp \
         {owner_after} Stable with 3 members at generation {gen_after} (was {gen0}) by {settled:?}"
    );
    eprintln!(
        "assignments after the kill: {:?}",
        survivors
            .iter()
            .map(|i| (members[*i].summary(), members[*i].history_since(t_kill)))
            .collect::<Vec<_>>()
    );
    assert_eq!(owner_after, owner, "a non-owner's death moved the group");

    let second = second.join().expect("producer thread");
    assert_eq!(second.acked, 300, "produce errors {:?}", second.errors);
    let mut want = delivered_set(&first.delivered);
    want.extend(delivered_set(&second.delivered));
    let consumed = || distinct(&members.iter().flat_map(|m| m.records()).collect::<Vec<_>>());
    wait_count(
        "every message consumed",
        want.len(),
        Duration::from_secs(60),
        || consumed().intersection(&want).count(),
    );
    let after: Vec<(i32, i64)> = survivors
        .iter()
        .flat_map(|i| members[*i].records()[marks[*i]..].to_vec())
        .collect();
    let below = before_acked(&after, &acked_before);
    assert!(
        below.is_empty(),
        "consumed again below an acknowledged commit (commit lost): {below:?}, acknowledged \
         {acked_before:?}"
    );
    let now = committed(&c.addr(x), group, topic, 6);
    let lost = lost_commits(&acked_before, &now);
    assert!(
        lost.is_empty(),
        "acknowledged commits lost (partition, acked, now): {lost:?}"
    );
    let mut end = end1.clone();
    for (p, o) in ends(&second.delivered) {
        let e = end.entry(p).or_insert(o);
        *e = (*e).max(o);
    }
    wait_committed(
        "commits after the recovery",
        &c.addr(owner),
        group,
        topic,
        &end,
        Duration::from_secs(30),
    );
    let m3 = &members[3];
    assert!(
        !m3.partitions().is_empty(),
        "the fourth member owns nothing"
    );
    let total: usize = members.iter().map(|m| m.n_records()).sum();
    eprintln!(
        "peer_killed_mid_rebalance: recovery {covered:?}; {} messages, {} deliveries; {}; {:.1} s",
        want.len(),
        total,
        c.moves(),
        t0.elapsed().as_secs_f64()
    );
    drop(members);
    c.assert_no_panics();
}
